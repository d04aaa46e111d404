"""Transitions as the one interface: the table, declared capabilities, the density of
rank-deficient noise, exact simulation, and SDE parameters as pytree leaves."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import sdeppl as sp
from sdeppl.solvers import TRANSITIONS, gaussian_log_prob

TS = jnp.linspace(0.0, 2.0, 9)


def test_every_scheme_of_the_table_builds_and_simulates():
    sde = sp.SDE(lambda t, x: -x, lambda t, x: 0.3, additive=True)
    for name, scheme in TRANSITIONS.items():
        transition = sde.transition(name, (2,))
        assert (
            transition.caps.density
            == scheme.density
            == (transition.log_prob is not None)
        )
        x = sde.simulate(jax.random.key(0), TS, jnp.ones(2), scheme=name, num_paths=3)
        assert x.shape == (3, 9, 2) and np.all(np.isfinite(x))
    exact = sp.OU(1.0, 0.0, 0.3).transition("exact", ())
    assert exact.caps.exact and exact.affine is not None


def test_rank_deficient_euler_density_lives_on_the_noise_subspace():
    """A velocity-forced oscillator (m = 1 < d = 2): Euler's covariance is singular;
    the density is that of the one innovation, never a failed Cholesky."""
    osc = sp.LinearSDE(jnp.array([[0.0, 1.0], [-1.0, -0.5]]), jnp.array([[0.0], [0.4]]))
    transition = osc.transition("euler", (2,))
    assert transition.caps.rank_deficient and transition.noise_size == 1
    x0, h = jnp.array([1.0, -0.3]), 0.1
    x1 = transition.sample(jax.random.key(1), 0.0, h, x0)
    lp = transition.log_prob(jnp.array([0.0]), jnp.array([h]), x0[None], x1[None])[0]
    xi = (x1[1] - (x0[1] + h * (-x0[0] - 0.5 * x0[1]))) / (0.4 * np.sqrt(h))
    np.testing.assert_allclose(
        lp, stats.norm.logpdf(xi) - np.log(0.4 * np.sqrt(h)), rtol=1e-10
    )
    # the same as a general-noise factor through the Gaussian kernel, and finite
    scale = jnp.array([[0.0], [0.4 * np.sqrt(h)]])
    mean = x1 - jnp.array([0.0, xi * 0.4 * np.sqrt(h)])
    np.testing.assert_allclose(
        gaussian_log_prob(x1, mean, scale, "factor"), lp, rtol=1e-10
    )
    path = sp.Path(osc, TS, x0=jnp.array([1.0, 0.0]), method="euler")
    assert np.isfinite(path.log_prob(path.sample(jax.random.key(2))))


def test_exact_scheme_simulates_the_exact_law_on_a_coarse_grid():
    theta, mu, sigma, x0 = 1.5, 0.5, 0.4, -1.0
    x = sp.OU(theta, mu, sigma).simulate(
        jax.random.key(3), jnp.array([0.0, 2.0]), x0=x0, scheme="exact", num_paths=4000
    )
    mean = mu + (x0 - mu) * np.exp(-2 * theta)
    sd = sigma * np.sqrt((1 - np.exp(-4 * theta)) / (2 * theta))
    assert stats.kstest(np.asarray(x[:, 1]), "norm", args=(mean, sd)).pvalue > 1e-3
    with pytest.raises(ValueError, match="unknown scheme 'exact'"):
        sp.SDE(lambda t, x: -x, lambda t, x: 1.0).simulate(
            jax.random.key(0), TS, x0=0.0, scheme="exact"
        )


def _drift(t, x, p):
    return p["theta"] * (p["mu"] - x)


def _diffusion(t, x, p):
    return p["sigma"]


def test_sde_parameters_are_pytree_leaves():
    """An SDE with ``params`` passes through jit (traced once for new values), vmap
    (over parameter values) and grad (matches finite differences)."""
    params = {"theta": 0.7, "mu": 1.0, "sigma": 0.4}
    sde = sp.SDE(_drift, _diffusion, params=jax.tree.map(jnp.asarray, params))
    x = sp.Path(sde, TS, x0=0.0).sample(jax.random.key(4))
    traces = []

    @jax.jit
    def log_lik(sde):
        traces.append(1)
        return sp.Path(sde, TS, x0=0.0).log_prob(x)

    values = [log_lik(sde.replace(params={**params, "theta": th})) for th in (0.5, 0.9)]
    assert len(traces) == 1 and values[0] != values[1]
    thetas = jnp.array([0.5, 0.7, 0.9])
    batched = jax.vmap(
        lambda th: sp.Path(
            sde.replace(params={**params, "theta": th}), TS, x0=0.0
        ).log_prob(x)
    )(thetas)
    np.testing.assert_allclose(np.asarray(batched)[[0, 2]], values, rtol=1e-12)
    grad = jax.grad(lambda s: sp.Path(s, TS, x0=0.0).log_prob(x))(sde).params["theta"]
    eps = 1e-6
    up, down = (
        log_lik(sde.replace(params={**params, "theta": 0.7 + e})) for e in (eps, -eps)
    )
    np.testing.assert_allclose(grad, (up - down) / (2 * eps), rtol=1e-6)
