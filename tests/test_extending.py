"""The extension points, used from outside the package: a new process family and a new
backend, both defined in this file and nothing else, give a working ``sp.fit`` with
InferenceData (time coordinates included), diagnostics and the HTML report."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints

import sdeppl as sp


class GaussianWalk(dist.Distribution):
    r"""A random walk observed at times ``ts``: $x_0 = 0$,
    $x_k - x_{k-1} \sim N(0, s^2 (t_k - t_{k-1}))$ -- a new "process family"."""

    arg_constraints = {"scale": constraints.positive}
    pytree_data_fields = ("scale", "ts")
    support = constraints.independent(constraints.real, 1)

    def __init__(self, scale, ts, validate_args=None):
        self.scale, self.ts = scale, np.asarray(ts)
        super().__init__(
            batch_shape=jnp.shape(scale),
            event_shape=self.ts.shape,
            validate_args=validate_args,
        )

    def _steps(self):
        return self.scale * np.sqrt(np.diff(self.ts))

    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape) + self.batch_shape + (self.ts.shape[0] - 1,)
        steps = self._steps() * jax.random.normal(key, shape)
        zero = jnp.zeros(shape[:-1] + (1,))
        return jnp.concatenate([zero, jnp.cumsum(steps, axis=-1)], axis=-1)

    def log_prob(self, value):
        return jnp.sum(self.pointwise_log_prob(value), axis=-1)

    # -- the time-series protocol ---------------------------------------------------
    value_dim = None
    latent_dim = None
    has_latent = False
    pointwise = True

    def pointwise_log_prob(self, value):
        terms = dist.Normal(0.0, self._steps()).log_prob(jnp.diff(value, axis=-1))
        return jnp.concatenate([jnp.zeros(terms.shape[:-1] + (1,)), terms], axis=-1)

    def informative_mask(self, value):
        return np.arange(self.ts.shape[0]) > 0

    def one_step_sample(self, key, value):
        eps = jax.random.normal(key, value.shape[:-1] + (self.ts.shape[0] - 1,))
        draws = value[..., :-1] + self._steps() * eps
        return jnp.concatenate([jnp.full(value.shape[:-1] + (1,), jnp.nan), draws], -1)

    def forecast(self, key, value, future_ts):
        dts = np.diff(np.concatenate([self.ts[-1:], np.asarray(future_ts)]))
        eps = jax.random.normal(key, value.shape[:-1] + dts.shape)
        return value[..., -1:] + jnp.cumsum(self.scale * np.sqrt(dts) * eps, axis=-1)

    def sample_latent(self, key, value):
        raise ValueError("a walk observed directly has no hidden path")


class RandomWalkMetropolis:
    """A new backend: Gaussian random-walk Metropolis on the unconstrained space."""

    name = "rwm-test"
    summary = "random-walk Metropolis (defined in a test)"
    options = {
        "chains": sp.Option(2, int, "chains"),
        "samples": sp.Option(
            3000, int, "iterations per chain (the first half is warm-up)"
        ),
        "step": sp.Option(0.1, float, "proposal scale"),
    }
    needs_gradients = False
    discrete_latent = False
    jittable = True

    def check(self, options):
        if options["step"] <= 0:
            raise ValueError("step must be > 0")

    def draws(self, model, key, options):
        return self._chain(model, key, options)[0]

    def _chain(self, model, key, options):
        dim, _ = model.dim_and_dtype()
        key_init, key_run = jax.random.split(key)
        z0 = model.initial_position(key_init)

        def step(carry, key):
            z, lp = carry
            key_prop, key_acc = jax.random.split(key)
            proposal = z + options["step"] * jax.random.normal(key_prop, (dim,))
            lp_prop = model.logdensity(proposal)
            accept = jnp.log(jax.random.uniform(key_acc)) < lp_prop - lp
            z, lp = jnp.where(accept, proposal, z), jnp.where(accept, lp_prop, lp)
            return (z, lp), (z, accept)

        keys = jax.random.split(key_run, options["samples"])
        _, (zs, accepted) = jax.lax.scan(step, (z0, model.logdensity(z0)), keys)
        half = options["samples"] // 2
        return jax.vmap(model.constrain)(zs[half:]), accepted[half:]

    def run(self, model, key, options, progress):
        keys = jax.random.split(key, options["chains"])
        draws, accepted = jax.jit(jax.vmap(lambda k: self._chain(model, k, options)))(
            keys
        )
        return sp.BackendResult(
            draws={k: np.asarray(v) for k, v in draws.items()},
            sample_stats={"acceptance_rate": np.asarray(accepted, float)},
            checks=(
                (
                    "acceptance",
                    f"{float(accepted.mean()):.2f}",
                    "pass" if 0.1 < float(accepted.mean()) < 0.9 else "warn",
                    "proposal scale suits the posterior",
                ),
            ),
        )


def walk_model(ts, x=None):
    scale = numpyro.sample("scale", dist.LogNormal(0.0, 1.0))
    numpyro.sample("x", GaussianWalk(scale, ts), obs=x)


@pytest.fixture(scope="module")
def extended_fit():
    from sdeppl.infer import _backend

    sp.register_backend(RandomWalkMetropolis(), replace=True)
    ts = np.cumsum(np.full(80, 0.5))
    x = GaussianWalk(0.7, ts).sample(jax.random.key(1))
    yield sp.fit(
        walk_model,
        ts,
        x=x,
        method="rwm-test",
        seed=2,
        progress=False,
        posterior_predictive=True,
        forecast={"horizon": 2.0, "steps": 4},
    )
    _backend._REGISTRY.pop("rwm-test")  # leave the registry as the package made it


def test_new_process_and_backend_fit_end_to_end(extended_fit, tmp_path):
    fit = extended_fit
    assert isinstance(fit, sp.Fit) and fit.metadata["backend"] == "rwm-test"
    idata = fit.idata
    post = idata.posterior["scale"].values.ravel()
    assert abs(np.median(post) - 0.7) < 0.2  # 79 increments inform the scale well
    # the protocol gave every time-series product, with time coordinates
    assert idata.observed_data["x"].dims == ("time",)
    assert idata.log_likelihood["x"].shape[-1] == 79  # index 0 carries no information
    assert idata.posterior_predictive["x_one_step"].dims[-1] == "time"
    assert idata.posterior_predictive["x_forecast"].shape[-1] == 4
    table = fit.diagnostics()
    assert {"R-hat", "bulk ESS", "acceptance", "Pareto k (LOO)"} <= set(table["check"])
    page = open(fit.report(tmp_path / "report.html"), encoding="utf-8").read()
    assert "acceptance" in page and "<code>x</code>" in page
    assert page.count("data:image/png;base64") >= 3  # posteriors, the path, traces


def test_registered_backend_is_listed_and_validated(extended_fit):
    assert "rwm-test" in sp.backends()
    with pytest.raises(ValueError, match="step must be > 0"):
        sp.fit(walk_model, np.arange(3.0), x=np.zeros(3), method="rwm-test", step=-1.0)
    with pytest.raises(ValueError, match="a backend named 'rwm-test' exists"):
        sp.register_backend(RandomWalkMetropolis())
    with pytest.raises(TypeError, match="does not implement the Backend protocol"):
        sp.register_backend(object())
