"""Layer-1 transition densities against SciPy and closed forms."""

import jax.numpy as jnp
import numpy as np
import scipy.linalg
from scipy import stats

from sdeppl.solvers import (
    Diffusion,
    affine_discretisation,
    euler_moments,
    gaussian_log_prob,
    ou_moments,
)


def test_euler_general_noise_is_full_covariance_gaussian():
    G = jnp.array([[0.3, 0.1], [0.0, 0.2]])
    diffusion = Diffusion(lambda t, x: G, "general")
    x0, x1, dt = jnp.array([0.1, -0.2]), jnp.array([0.15, -0.1]), 0.3
    mean, scale = euler_moments(lambda t, x: -x, diffusion, 0.0, dt, x0)
    lp = gaussian_log_prob(x1, mean, scale, "factor")
    ref = stats.multivariate_normal(
        np.asarray(x0 - x0 * dt), np.asarray(G @ G.T * dt)
    ).logpdf(np.asarray(x1))
    np.testing.assert_allclose(lp, ref, rtol=1e-12)


def test_ou_closed_form_limits():
    mean, sd = ou_moments(jnp.array(0.0), 1.0, 0.5, 0.2, jnp.array([2.0]))
    np.testing.assert_allclose(mean, [2.0])
    np.testing.assert_allclose(sd, [0.5 * np.sqrt(0.2)])
    _, sd_small = ou_moments(jnp.array(1e-9), 1.0, 0.5, 0.2, jnp.array([2.0]))
    np.testing.assert_allclose(sd_small, [0.5 * np.sqrt(0.2)], rtol=1e-8)


def test_affine_discretisation_matches_scipy_quadrature():
    A = np.array([[0.0, 1.0], [-2.0, -0.3]])
    L = np.array([[0.1, 0.0], [0.4, 0.2]])
    b = np.array([0.2, -0.1])
    dt = 0.37
    tr = affine_discretisation(jnp.asarray(A), jnp.asarray(b), jnp.asarray(L @ L.T), dt)
    phi = scipy.linalg.expm(A * dt)
    s = np.linspace(0.0, dt, 2001)
    shift = np.trapezoid(
        np.stack([scipy.linalg.expm(A * (dt - u)) @ b for u in s]), s, axis=0
    )
    q = np.trapezoid(
        np.stack(
            [scipy.linalg.expm(A * u) @ L @ L.T @ scipy.linalg.expm(A * u).T for u in s]
        ),
        s,
        axis=0,
    )
    np.testing.assert_allclose(tr.phi, phi, rtol=1e-12)
    np.testing.assert_allclose(tr.shift, shift, rtol=1e-6)
    np.testing.assert_allclose(tr.chol @ tr.chol.T, q, rtol=1e-6, atol=1e-12)


def test_linear_exact_with_singular_drift_matrix():
    """Brownian motion with drift (A = 0): mean x0 + b h, covariance L L^T h."""
    tr = affine_discretisation(
        jnp.zeros((2, 2)), jnp.array([1.0, -1.0]), jnp.eye(2) * 0.25, 2.0
    )
    np.testing.assert_allclose(tr.shift, [2.0, -2.0], atol=1e-12)
    np.testing.assert_allclose(tr.chol @ tr.chol.T, 0.5 * np.eye(2), atol=1e-12)
