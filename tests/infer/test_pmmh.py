"""``method="pmmh"``: particle marginal Metropolis–Hastings from a NumPyro model, with
latent paths and forecasts; exact against the Kalman-likelihood posterior at a small
particle count (the specs' check C4)."""

import json

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax.flatten_util import ravel_pytree

import sdeppl as sp
from sdeppl.infer._model import ModelAdapter

TS = np.cumsum(np.random.default_rng(0).uniform(0.2, 1.0, 30))


def counts_model(y=None):
    """An OU log-intensity observed through Poisson counts."""
    theta = numpyro.sample("theta", dist.LogNormal(0.0, 0.5))
    sigma = numpyro.sample("sigma", dist.LogNormal(-0.5, 0.5))
    latent = sp.OU(theta, 1.0, sigma)
    numpyro.sample(
        "y",
        sp.StateSpace(
            latent,
            TS,
            x0=dist.Normal(1.0, 0.5),
            obs=lambda x: dist.Poisson(jnp.exp(x)),
            method="particle",
            num_particles=64,
        ),
        obs=y,
    )


@pytest.fixture(scope="module")
def counts_fit():
    truth = numpyro.handlers.substitute(counts_model, {"theta": 1.0, "sigma": 0.6})
    y = np.asarray(
        numpyro.handlers.trace(numpyro.handlers.seed(truth, 0)).get_trace()["y"][
            "value"
        ]
    )
    fit = sp.fit(
        counts_model,
        y,
        method="pmmh",
        chains=2,
        warmup=300,
        samples=300,
        posterior_predictive=True,
        forecast={"horizon": 2.0, "steps": 4},
        progress=False,
    )
    return y, fit


def test_pmmh_fills_the_same_inference_data(counts_fit):
    y, fit = counts_fit
    post = fit.idata.posterior
    assert post["y_latent"].dims == ("chain", "draw", "time")
    np.testing.assert_allclose(post["time"].values, TS)
    pred = fit.idata.posterior_predictive
    assert pred["y_forecast"].shape == (2, 300, 4)
    assert pred["y_one_step"].shape == (2, 300, 30)
    assert fit.idata.log_likelihood["y"].shape[:2] == (2, 300)
    table = fit.diagnostics()
    rows = dict(zip(table["check"], table["status"], strict=True))
    assert rows["Pareto k (LOO)"] == "n/a"  # particle estimates: PSIS would misread
    assert "PMMH acceptance rate" in rows and "log-likelihood estimate variance" in rows
    meta = json.loads(post.attrs["sdeppl"])
    assert meta["estimated_likelihood"] is True
    assert 0.05 < meta["backend_info"]["acceptance_rate"] < 0.5
    # the latent draws explain the counts: log-intensity near log(count + 1/2)
    latent = post["y_latent"].values.reshape(-1, 30).mean(0)
    assert np.corrcoef(latent, np.log(y + 0.5))[0, 1] > 0.6


def test_each_draw_keeps_the_estimate_it_was_accepted_with(counts_fit):
    """The key stored with a draw reproduces its log-density estimate exactly, so
    the post-processing re-runs the very particle system the chain accepted."""
    y, _ = counts_fit
    adapter = ModelAdapter(counts_model, (y,), {})
    options = {"chains": 2, "warmup": 50, "samples": 20, "thinning": 1}
    result = sp.backends()["pmmh"].run(
        adapter, jax.random.key(1), {**options, "target_accept": 0.2}, False
    )
    unconstrained = {
        n: np.log(result.draws[n]).reshape(-1) for n in adapter.latent_names
    }
    z = jax.vmap(lambda d: ravel_pytree(d)[0])(unconstrained)
    keys = result.model_keys.reshape(-1, 2)
    recomputed = jax.jit(jax.vmap(adapter.seeded_logdensity))(z, keys)
    np.testing.assert_allclose(
        recomputed, result.sample_stats["lp"].reshape(-1), rtol=1e-10
    )


def test_gradient_methods_refuse_a_particle_likelihood(counts_fit):
    y, _ = counts_fit
    with pytest.raises(ValueError, match="particle filter.*pmmh"):
        sp.fit(counts_model, y, method="blackjax", progress=False)


# -- C4: exact posterior at N = 20 ----------------------------------------------------
RHO, SX2, SY2, T_LG = 0.9, 1.0, 1.0, 25
TS_LG = np.arange(T_LG, dtype=float)


def lg_model(y, method="kalman", num_particles=20):
    """x_t = rho x_{t-1} + N(0, sx2), y_t = x_t + N(0, sy2), written as an OU at unit
    gaps; rho ~ U(0, 1) (an OU cannot oscillate), sx2, sy2 ~ InvGamma(2, 2)."""
    rho = numpyro.sample("rho", dist.Uniform(0.0, 1.0))
    sx2 = numpyro.sample("sx2", dist.InverseGamma(2.0, 2.0))
    sy2 = numpyro.sample("sy2", dist.InverseGamma(2.0, 2.0))
    theta, stationary = -jnp.log(rho), sx2 / (1 - rho**2)
    sde = sp.OU(theta, 0.0, jnp.sqrt(2 * theta * stationary))
    extra = {"num_particles": num_particles} if method == "particle" else {}
    numpyro.sample(
        "y",
        sp.StateSpace(
            sde,
            TS_LG,
            x0=dist.Normal(0.0, jnp.sqrt(stationary)),
            obs=sp.LinearGaussian(1.0, sy2),
            method=method,
            **extra,
        ),
        obs=y,
    )


@pytest.mark.slow
def test_pmmh_with_twenty_particles_matches_the_exact_likelihood_posterior():
    rng = np.random.default_rng(0)
    x = np.empty(T_LG)
    x[0] = np.sqrt(SX2 / (1 - RHO**2)) * rng.normal()
    for t in range(1, T_LG):
        x[t] = RHO * x[t - 1] + np.sqrt(SX2) * rng.normal()
    y = x + np.sqrt(SY2) * rng.normal(size=T_LG)
    exact = sp.fit(
        lg_model, y, chains=4, samples=2000, progress=False, latent_paths=False
    )
    pmmh = sp.fit(
        lg_model,
        y,
        method="pmmh",
        model_kwargs={"method": "particle"},
        chains=8,
        warmup=2000,
        samples=5000,
        progress=False,
        latent_paths=False,
        log_likelihood=False,
    )
    for name in ("rho", "sx2", "sy2"):
        a, b = exact.idata.posterior[name], pmmh.idata.posterior[name]
        for stat, prob in (("mean", None), ("quantile", 0.05), ("quantile", 0.95)):
            if stat == "mean":
                va, vb = float(a.mean()), float(b.mean())
                ea, eb = (float(az.mcse(x).to_array().squeeze()) for x in (a, b))
            else:
                va, vb = (float(np.quantile(x.values, prob)) for x in (a, b))
                ea, eb = (
                    float(az.mcse(x, method="quantile", prob=prob).to_array().squeeze())
                    for x in (a, b)
                )
            assert abs(va - vb) < 4 * np.hypot(ea, eb), (name, stat, prob, va, vb)
