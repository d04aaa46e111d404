"""Particle MCMC from a NumPyro model: ``method="pmmh"`` (with latent paths and
forecasts) and ``method="particle_gibbs"``, both exact against the Kalman-likelihood
posterior at a small particle count (the specs' check C4)."""

import json

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import sdeppl as sp

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
    """The post-processing re-runs the very particle system each draw was accepted
    with: its per-time log-likelihood terms add up to the chain's estimate (the
    draw's log density minus the log prior and the log-transform's Jacobian)."""
    _, fit = counts_fit
    post = fit.idata.posterior
    theta, sigma = post["theta"].values, post["sigma"].values
    log_prior = (
        dist.LogNormal(0.0, 0.5).log_prob(theta)
        + dist.LogNormal(-0.5, 0.5).log_prob(sigma)
        + np.log(theta)  # d theta / d log theta
        + np.log(sigma)
    )
    estimate = fit.idata.sample_stats["lp"].values - np.asarray(log_prior)
    terms = fit.idata.log_likelihood["y"].values.sum(-1)
    np.testing.assert_allclose(terms, estimate, rtol=1e-8, atol=1e-8)


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


@pytest.fixture(scope="module")
def lg_exact():
    rng = np.random.default_rng(0)
    x = np.empty(T_LG)
    x[0] = np.sqrt(SX2 / (1 - RHO**2)) * rng.normal()
    for t in range(1, T_LG):
        x[t] = RHO * x[t - 1] + np.sqrt(SX2) * rng.normal()
    y = x + np.sqrt(SY2) * rng.normal(size=T_LG)
    exact = sp.fit(lg_model, y, chains=4, samples=2000, progress=False)
    return y, exact


def assert_same_posterior(exact, other, names=("rho", "sx2", "sy2")):
    """Means and 5% / 95% quantiles agree within 4 combined Monte Carlo errors."""
    for name in names:
        a, b = exact.idata.posterior[name], other.idata.posterior[name]
        for prob in (None, 0.05, 0.95):
            if prob is None:
                va, vb = float(a.mean()), float(b.mean())
                ea, eb = (float(az.mcse(x).to_array().squeeze()) for x in (a, b))
            else:
                va, vb = (float(np.quantile(x.values, prob)) for x in (a, b))
                ea, eb = (
                    float(az.mcse(x, method="quantile", prob=prob).to_array().squeeze())
                    for x in (a, b)
                )
            assert abs(va - vb) < 4 * np.hypot(ea, eb), (name, prob, va, vb)


@pytest.mark.slow
def test_pmmh_with_twenty_particles_matches_the_exact_likelihood_posterior(lg_exact):
    y, exact = lg_exact
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
    assert_same_posterior(exact, pmmh)


@pytest.mark.slow
def test_particle_gibbs_with_ten_particles_matches_the_exact_posterior(lg_exact):
    """Parameters and latent path: conditional SMC with backward sampling keeps
    the exact posterior with a handful of particles."""
    y, exact = lg_exact
    gibbs = sp.fit(
        lg_model,
        y,
        method="particle_gibbs",
        model_kwargs={"method": "particle", "num_particles": 10},
        chains=4,
        warmup=500,
        samples=1500,
        progress=False,
        log_likelihood=False,
    )
    assert_same_posterior(exact, gibbs)
    paths = gibbs.idata.posterior["y_latent"]
    assert paths.dims == ("chain", "draw", "time")
    reference = exact.idata.posterior["y_latent"].values.reshape(-1, T_LG)
    drawn = paths.values.reshape(-1, T_LG)
    se = reference.std(0) / np.sqrt(1000)  # ESS of the paths: ~ 1000 of 6000
    assert np.all(np.abs(drawn.mean(0) - reference.mean(0)) < 4 * se + 0.02)
    assert np.all(np.abs(drawn.std(0) / reference.std(0) - 1) < 0.1)


def test_particle_gibbs_needs_transition_densities():
    euler = sp.StateSpace(
        sp.SDE(lambda t, x: -x, lambda t, x: jnp.ones_like(x)),
        TS_LG,
        x0=0.0,
        obs=sp.LinearGaussian(1.0, 1.0),
        method="particle",
        substeps=4,
        key=jax.random.key(0),
    )
    with pytest.raises(ValueError, match="substeps=1"):
        euler.conditional_path(jax.random.key(1), np.zeros(T_LG), np.zeros(T_LG))
