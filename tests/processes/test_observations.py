"""Observation models: densities with any missing pattern, samples, and the wrapping of
a plain function."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from scipy import stats

import sdeppl as sp


def test_gaussian_observation_marginalises_any_missing_pattern():
    rng = np.random.default_rng(0)
    root = rng.normal(size=(3, 3))
    R = root @ root.T + 0.5 * np.eye(3)
    obs = sp.GaussianObservation(lambda x: jnp.stack([x, x**2, jnp.sin(x)], -1), R)
    x = 0.7
    mean = np.array([x, x**2, np.sin(x)])
    y = rng.normal(size=3)
    for observed in ([0, 1, 2], [0, 2], [1], []):
        y_missing = np.full(3, np.nan)
        y_missing[observed] = y[observed]
        expected = (
            stats.multivariate_normal.logpdf(
                y[observed], mean[observed], R[np.ix_(observed, observed)]
            )
            if observed
            else 0.0
        )
        np.testing.assert_allclose(
            obs.log_prob(jnp.asarray(x), y_missing), expected, rtol=1e-10
        )


def test_linear_gaussian_scalar_observations_and_samples():
    obs = sp.LinearGaussian(H=jnp.array([1.0, -1.0]), R=0.2**2)
    x = jnp.array([[1.0, 0.5], [0.0, 0.25]])  # two states (d = 2)
    y = jnp.array([0.4, np.nan])
    lp = obs.log_prob(x, y, scalar_obs=True)
    np.testing.assert_allclose(lp, [stats.norm.logpdf(0.4, 0.5, 0.2), 0.0], rtol=1e-10)
    draws = jax.vmap(lambda k: obs.sample(k, x))(
        jax.random.split(jax.random.key(0), 4000)
    )
    assert draws.shape == (4000, 2)
    np.testing.assert_allclose(draws.mean(0), [0.5, -0.25], atol=0.02)
    np.testing.assert_allclose(draws.std(0), [0.2, 0.2], rtol=0.05)


def test_any_distribution_of_the_state():
    counts = sp.Observation(lambda x: dist.Poisson(jnp.exp(x)))
    x = jnp.array([[0.0, 1.0], [0.5, -0.5]])  # (time, k) with k = 2 counts per time
    y = np.array([[1.0, np.nan], [2.0, 0.0]])
    expected = [
        stats.poisson.logpmf(1, 1.0),
        stats.poisson.logpmf(2, np.exp(0.5)) + stats.poisson.logpmf(0, np.exp(-0.5)),
    ]
    np.testing.assert_allclose(counts.log_prob(x, y), expected, rtol=1e-10)
    assert counts.sample(jax.random.key(0), x).shape == (2, 2)
    with pytest.raises(TypeError, match="fn must be a callable"):
        sp.Observation(3.0)
