"""``StateSpace(..., method="particle")``: unbiased against the Kalman filter (the
specs' check C2: continuous-discrete OU at irregular times), Euler substeps converging
at weak order 1, non-Gaussian observations against a grid filter, missing values,
keys, and the time-series protocol."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import sdeppl as sp

THETA, SIGMA, OBS_SD = 1.0, 1.0, 0.5
TS = np.cumsum(np.random.default_rng(0).uniform(0.1, 1.0, 50))
X0 = dist.Normal(0.0, np.sqrt(0.5))  # the stationary law


def kalman_model():
    return sp.StateSpace(
        sp.OU(THETA, 0.0, SIGMA), TS, x0=X0, obs=sp.LinearGaussian(1.0, OBS_SD**2)
    )


def particle_model(sde=None, **kw):
    kw = {"num_particles": 200, "key": jax.random.key(0), **kw}
    return sp.StateSpace(
        sde if sde is not None else sp.OU(THETA, 0.0, SIGMA),
        TS,
        x0=X0,
        obs=sp.LinearGaussian(1.0, OBS_SD**2),
        method="particle",
        **kw,
    )


@pytest.fixture(scope="module")
def data():
    y = np.asarray(kalman_model().sample(jax.random.key(1)))
    y_missing = y.copy()
    y_missing[[3, 4, 20]] = np.nan
    return y, y_missing


def estimates(model, y, num_runs, seed=0):
    run = jax.jit(jax.vmap(lambda k: model.filter_log_prob(y, k)))
    return np.asarray(run(jax.random.split(jax.random.key(seed), num_runs)))


def assert_unbiased(log_estimates, exact):
    ratio = np.exp(log_estimates - exact)
    assert abs(ratio.mean() - 1) < 4 * ratio.std() / np.sqrt(len(ratio)), ratio.mean()


def test_exact_transition_filter_is_unbiased_with_missing_values(data):
    y, y_missing = data
    model = particle_model()
    assert model.exact
    assert_unbiased(estimates(model, y, 800), float(kalman_model().log_prob(y)))
    assert_unbiased(
        estimates(model, y_missing, 800, seed=1),
        float(kalman_model().log_prob(y_missing)),
    )
    all_missing = np.full_like(y, np.nan)
    assert float(model.log_prob(all_missing)) == 0.0


def euler_kalman_log_likelihood(y, substeps):
    """Exact log-likelihood of the OU model discretised by ``substeps`` Euler steps
    per gap (a linear-Gaussian model: the target of the Euler particle filter)."""
    m, p, ll = 0.0, 0.5, 0.0
    for k, t in enumerate(TS):
        if k:
            h = (t - TS[k - 1]) / substeps
            a = 1 - THETA * h
            m = a**substeps * m
            p = a ** (2 * substeps) * p + SIGMA**2 * h * sum(
                a ** (2 * j) for j in range(substeps)
            )
        s = p + OBS_SD**2
        ll += -0.5 * (np.log(2 * np.pi * s) + (y[k] - m) ** 2 / s)
        gain = p / s
        m, p = m + gain * (y[k] - m), (1 - gain) * p
    return ll


def test_euler_substeps_bias_shrinks_as_one_over_m_and_the_filter_targets_it(data):
    y, _ = data
    exact = float(kalman_model().log_prob(y))
    bias = {m: euler_kalman_log_likelihood(y, m) - exact for m in (8, 16, 32, 64)}
    for m in (8, 16, 32):  # weak order 1: halving the step halves the bias (once
        assert 1.8 < bias[m] / bias[2 * m] < 2.2  # steps are below the gaps' scale)
    generic_ou = sp.SDE(lambda t, x: -THETA * x, lambda t, x: SIGMA * jnp.ones_like(x))
    model = particle_model(generic_ou, substeps=4)
    assert not model.exact
    assert_unbiased(estimates(model, y, 400), euler_kalman_log_likelihood(y, 4))


def grid_log_likelihood(y, rate_scale):
    """Poisson counts of exp(x) from the OU: the likelihood by a forward recursion on
    a fine grid (the exact transition kernel, no particles)."""
    from scipy.stats import norm, poisson

    grid = np.linspace(-6, 6, 1201)
    dx = grid[1] - grid[0]
    density = norm.pdf(grid, 0, np.sqrt(0.5)) * dx
    ll = 0.0
    for k, t in enumerate(TS[: len(y)]):
        if k:
            h = t - TS[k - 1]
            a, q = np.exp(-THETA * h), 0.5 * (1 - np.exp(-2 * THETA * h))
            kernel = norm.pdf(grid[None, :], a * grid[:, None], np.sqrt(q)) * dx
            density = density @ kernel
        density = density * poisson.pmf(y[k], rate_scale * np.exp(grid))
        total = density.sum()
        ll += np.log(total)
        density /= total
    return ll


def test_poisson_counts_match_a_grid_filter():
    counts = sp.StateSpace(
        sp.OU(THETA, 0.0, SIGMA),
        TS[:20],
        x0=X0,
        obs=lambda x: dist.Poisson(3.0 * jnp.exp(x)),
        method="particle",
        num_particles=300,
        key=jax.random.key(0),
    )
    y = np.asarray(counts.sample(jax.random.key(2)))
    assert y.dtype.kind == "i" or np.all(y == np.round(y))
    assert_unbiased(estimates(counts, y, 600), grid_log_likelihood(y, 3.0))


def test_keys_decide_the_estimate(data):
    y, _ = data
    model = particle_model()
    again = particle_model()
    assert float(model.log_prob(y)) == float(again.log_prob(y))
    other = particle_model(key=jax.random.key(5))
    assert float(model.log_prob(y)) != float(other.log_prob(y))
    np.testing.assert_allclose(
        float(jnp.sum(model.pointwise_log_prob(y))),
        float(model.log_prob(y)),
        rtol=1e-10,
    )
    no_key = particle_model(key=None)
    with pytest.raises(ValueError, match="random key"):
        no_key.log_prob(y)

    def in_model():  # inside a seeded model the key comes from the seed handler
        return numpyro.sample("y", particle_model(key=None), obs=y)

    tr = numpyro.handlers.trace(numpyro.handlers.seed(in_model, 3)).get_trace()
    assert np.isfinite(float(tr["y"]["fn"].log_prob(y)))


def test_filter_smooth_and_the_time_series_protocol(data):
    y, _ = data
    model = particle_model(num_particles=500)
    result = model.filter(y)
    assert result.particles.shape == (50, 500)
    assert result.ess.shape == result.resampled.shape == (50,)
    assert result.ancestors.shape == result.log_weights.shape == (50, 500)
    assert np.all(np.asarray(result.ess) <= 500 + 1e-9)
    means, variances = model.smooth(y, lag=5)
    k_means, k_vars = kalman_model().smooth(y)
    assert np.max(np.abs(means - k_means)) < 0.2
    assert np.max(np.abs(variances / k_vars - 1)) < 0.6
    assert isinstance(
        model, sp.TimeSeries
    )  # its other methods: tests/infer/test_pmmh.py
    two = np.stack([y, y])  # several series share the parameters
    assert model.log_prob(two).shape == (2,)


def test_vector_state_and_vector_observations():
    drift = jnp.array([[-1.0, 0.5], [0.0, -0.5]])
    sde = sp.LinearSDE(drift, 0.4 * jnp.eye(2))
    ts = np.arange(30.0) * 0.5
    obs = sp.LinearGaussian(jnp.eye(2), 0.3**2 * jnp.eye(2))
    x0 = dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2))
    exact = sp.StateSpace(sde, ts, x0=x0, obs=obs)
    y = np.array(exact.sample(jax.random.key(0)))
    y[5, 0] = np.nan  # one coordinate missing
    model = sp.StateSpace(
        sde,
        ts,
        x0=x0,
        obs=obs,
        method="particle",
        num_particles=300,
        key=jax.random.key(1),
    )
    assert_unbiased(estimates(model, y, 400), float(exact.log_prob(y)))
    assert model.sample_latent(jax.random.key(2), y).shape == (30, 2)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"num_particles": 1}, "num_particles"),
        ({"resampling": "sorted"}, "resampling"),
        ({"ess_threshold": 1.5}, "ess_threshold"),
    ],
)
def test_bad_particle_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        particle_model(**kw)


def test_batched_parameters_are_refused_and_other_methods_point_to_particles():
    with pytest.raises(ValueError, match="one latent process"):
        particle_model(sp.OU(jnp.array([1.0, 2.0]), 0.0, SIGMA))
    with pytest.raises(ValueError, match="method='particle'"):
        sp.StateSpace(
            sp.OU(THETA, 0.0, SIGMA), TS, x0=X0, obs=lambda x: dist.Poisson(jnp.exp(x))
        )
