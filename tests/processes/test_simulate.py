"""SDE.simulate: shapes, reproducibility, schemes, and the law it samples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import sdeppl as sp


def test_shapes_and_same_key_same_paths():
    sde = sp.SDE(lambda t, x: -x, lambda t, x: 0.3 * jnp.ones_like(x))
    ts = jnp.array([0.0, 0.3, 0.4, 1.0])
    one = sde.simulate(jax.random.key(0), ts, x0=jnp.zeros(2))
    many = sde.simulate(jax.random.key(0), ts, x0=jnp.zeros(2), num_paths=5, substeps=3)
    assert one.shape == (4, 2) and many.shape == (5, 4, 2)
    np.testing.assert_array_equal(
        many,
        sde.simulate(jax.random.key(0), ts, x0=jnp.zeros(2), num_paths=5, substeps=3),
    )
    assert not np.allclose(
        many,
        sde.simulate(jax.random.key(1), ts, x0=jnp.zeros(2), num_paths=5, substeps=3),
    )


@pytest.mark.parametrize("scheme", ["euler", "milstein", "sra1"])
def test_ou_marginal_matches_exact_law(scheme):
    theta, mu, sigma, x0 = 1.5, 0.5, 0.4, -1.0
    ts = jnp.array([0.0, 0.7, 2.0])
    x = sp.OU(theta, mu, sigma).simulate(
        jax.random.key(2), ts, x0=x0, scheme=scheme, substeps=63, num_paths=5000
    )
    for k, t in enumerate(np.asarray(ts)[1:], start=1):
        mean = mu + (x0 - mu) * np.exp(-theta * t)
        sd = sigma * np.sqrt((1 - np.exp(-2 * theta * t)) / (2 * theta))
        assert stats.kstest(np.asarray(x[:, k]), "norm", args=(mean, sd)).pvalue > 1e-3


def test_general_noise_rank_deficient_simulation():
    """A damped oscillator forced in its velocity only: m = 1 < d = 2."""
    osc = sp.LinearSDE(jnp.array([[0.0, 1.0], [-1.0, -0.5]]), jnp.array([[0.0], [0.5]]))
    x = osc.simulate(
        jax.random.key(3),
        jnp.linspace(0.0, 1.0, 11),
        x0=jnp.array([1.0, 0.0]),
        num_paths=3,
    )
    assert x.shape == (3, 11, 2) and np.all(np.isfinite(x))


def test_scheme_capabilities_are_checked():
    ts = jnp.linspace(0.0, 1.0, 5)
    multiplicative = sp.SDE(lambda t, x: x, lambda t, x: 0.2 * x)
    with pytest.raises(ValueError, match="additive noise"):
        multiplicative.simulate(jax.random.key(0), ts, x0=1.0, scheme="sra1")
    general = sp.SDE(lambda t, x: -x, lambda t, x: jnp.eye(2), noise="general")
    with pytest.raises(ValueError, match="scheme 'milstein' accepts noise"):
        general.simulate(jax.random.key(0), ts, x0=jnp.ones(2), scheme="milstein")
    with pytest.raises(ValueError, match="unknown scheme 'rk4'"):
        multiplicative.simulate(jax.random.key(0), ts, x0=1.0, scheme="rk4")
    with pytest.raises(ValueError, match="substeps must be an int"):
        multiplicative.simulate(jax.random.key(0), ts, x0=1.0, substeps=-1)
