"""method="map": exact on a conjugate Gaussian posterior, honest where the posterior is
not Gaussian."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import sdeppl as sp

RNG = np.random.default_rng(0)
X = RNG.normal(size=(30, 2))
Y = X @ np.array([1.5, -0.7]) + 0.5 * RNG.normal(size=30)
NOISE, PRIOR_SD = 0.5, 2.0


def regression(X, y=None):
    beta = numpyro.sample("beta", dist.Normal(0.0, PRIOR_SD).expand([2]).to_event(1))
    numpyro.sample("y", dist.Normal(jnp.asarray(X) @ beta, NOISE), obs=y)


def test_map_recovers_the_conjugate_posterior_mode_and_covariance():
    precision = X.T @ X / NOISE**2 + np.eye(2) / PRIOR_SD**2
    cov = np.linalg.inv(precision)
    mean = cov @ X.T @ Y / NOISE**2
    fit = sp.fit(regression, X, y=Y, method="map", progress=False, seed=3)
    info = fit.metadata["backend_info"]
    np.testing.assert_allclose(info["mode"]["beta"], mean, rtol=0, atol=1e-6)
    np.testing.assert_allclose(info["laplace_covariance"], cov, rtol=1e-6, atol=0)
    draws = fit.idata.posterior["beta"].values.reshape(-1, 2)
    assert draws.shape == (2000, 2)
    assert np.all(np.abs(draws.mean(0) - mean) < 4 * np.sqrt(np.diag(cov) / 2000))
    table = fit.diagnostics()
    assert fit.verdict == "pass", table
    assert table.set_index("check").loc["R-hat, ESS", "status"] == "n/a"
    assert float(table.set_index("check").loc["Pareto k (Laplace)", "value"]) < 0.5
    assert "log_weight" in fit.idata.sample_stats


def two_modes(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 3.0))
    mixture = dist.MixtureSameFamily(
        dist.Categorical(jnp.array([0.5, 0.5])),
        dist.Normal(jnp.stack([mu, -mu]), 0.3),
    )
    numpyro.sample("y", mixture, obs=y)


def test_map_says_when_the_laplace_approximation_fails():
    """Two symmetric modes at mu = +-2: the starts disagree (importance weights of draws
    around one mode cannot see the other, so that check is the optimiser's). A
    curved (banana) posterior: the Pareto k of the Laplace draws does not pass."""
    y = jnp.array([2.1, 1.9, 2.0, -2.05])
    fit = sp.fit(two_modes, y=y, method="map", starts=8, progress=False, seed=1)
    table = fit.diagnostics().set_index("check")
    assert table.loc["optimiser", "status"] == "warn"
    assert "multimodal" in table.loc["optimiser", "advice"]
    assert fit.verdict == "warn"

    def banana():
        a = numpyro.sample("a", dist.Normal(0.0, 1.0))
        numpyro.sample("b", dist.Normal(a**2, 0.2))

    fit = sp.fit(banana, method="map", progress=False)  # k 0.83-0.97 over seeds 0-3
    table = fit.diagnostics().set_index("check")
    assert table.loc["Pareto k (Laplace)", "status"] != "pass"
    assert float(table.loc["Pareto k (Laplace)", "value"]) > 0.7


def test_map_options_are_checked():
    import pytest

    with pytest.raises(ValueError, match="fit: starts must be an int >= 1; got 0"):
        sp.fit(regression, X, y=Y, method="map", starts=0)
    with pytest.raises(ValueError, match=r"'chains' is an option of method \["):
        sp.fit(regression, X, y=Y, method="map", chains=2)
    jax.clear_caches()
