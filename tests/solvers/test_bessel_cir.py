"""log I_nu(z) in log space, and the exact CIR transition built on it, against SciPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from sdeppl.solvers import cir_log_transition, cir_sample, log_bessel_i, log_bessel_ive

from ..cases import scipy_cir_log_transition

ORDERS = np.concatenate([np.linspace(-0.99, 60.0, 62), [75.0, 150.0, 500.0, 1000.0]])
ARGUMENTS = np.logspace(-8, 8, 97)


def test_log_bessel_matches_scipy_over_orders_and_arguments():
    nu, z = np.meshgrid(ORDERS, ARGUMENTS, indexing="ij")
    with np.errstate(divide="ignore"):
        reference = np.log(special.ive(nu, z))
    ours = np.asarray(jax.jit(log_bessel_ive)(nu, z))
    known = np.isfinite(reference)  # SciPy underflows at large order, tiny argument
    assert known.mean() > 0.85 and np.all(np.isfinite(ours))
    error = np.abs(ours - reference)[known] / np.maximum(1.0, np.abs(reference[known]))
    assert error.max() < 1e-12
    np.testing.assert_allclose(
        log_bessel_i(2.5, 3.0), np.log(special.iv(2.5, 3.0)), rtol=1e-14
    )
    assert log_bessel_i(0.0, 0.0) == 0.0 and log_bessel_i(1.5, 0.0) == -np.inf


@pytest.mark.parametrize(
    "nu, z",
    [
        (-0.6, 1e-3),
        (0.3, 2.0),
        (7.0, 80.0),
        (30.0, 40.0),
        (49.0, 290.0),
        (60.0, 1e4),
        (2.0, 3e3),
    ],
)
def test_log_bessel_gradients_in_both_arguments(nu, z):
    """Derivatives against finite differences in every regime (series, Hankel, Debye),
    and the identity d/dz log I = I_{nu+1}/I + nu/z."""
    g_nu, g_z = jax.grad(log_bessel_i, argnums=(0, 1))(nu, z)
    e = 1e-5
    fd_nu = (log_bessel_ive(nu + e, z) - log_bessel_ive(nu - e, z)) / (2 * e)
    np.testing.assert_allclose(g_nu, fd_nu, rtol=1e-6, atol=1e-9)
    exact_z = (
        np.exp(np.log(special.ive(nu + 1, z)) - np.log(special.ive(nu, z))) + nu / z
    )
    np.testing.assert_allclose(g_z, exact_z, rtol=1e-9)


def test_cir_transition_matches_the_scaled_noncentral_chi_square():
    """Daily to yearly steps, slow to fast reversion, Feller condition met or not,
    rates from near zero to far above the mean: 1e-10 on the log-density."""
    rng = np.random.default_rng(0)
    rows = []
    for h in (1 / 252, 0.25, 2.0):
        for kappa, theta, sigma in (
            (0.05, 4.0, 0.3),
            (0.8, 4.0, 0.7),
            (3.0, 0.5, 2.0),
            (0.4, 6.0, 0.05),
        ):
            mean = theta + (3.0 - theta) * np.exp(-kappa * h)
            sd = np.sqrt(
                3.0 * sigma**2 * np.exp(-kappa * h) * -np.expm1(-kappa * h) / kappa
                + theta * sigma**2 * np.expm1(-kappa * h) ** 2 / (2 * kappa)
            )
            for x1 in np.clip(mean + sd * rng.normal(size=4), 1e-3, None):
                rows.append((kappa, theta, sigma, h, 3.0, x1))
            rows.append((kappa, theta, sigma, h, 0.02, 0.05))
    p = np.array(rows).T
    ours = np.asarray(jax.jit(cir_log_transition)(*p))
    with np.errstate(divide="ignore"):
        reference = scipy_cir_log_transition(*p)
    known = np.isfinite(reference)  # SciPy underflows far in the tails; we do not
    assert known.mean() > 0.9 and np.all(np.isfinite(ours))
    error = np.abs(ours - reference)[known] / np.maximum(1, np.abs(reference[known]))
    assert error.max() < 1e-10, error.max()
    assert cir_log_transition(0.5, 4.0, 0.5, 0.25, 3.0, -1.0) == -np.inf


def test_cir_gradients_and_exact_draws():
    args = (0.8, 4.0, 0.7, 0.25, 3.0, 3.4)
    grads = jax.grad(cir_log_transition, argnums=(0, 1, 2))(*args)
    for i, g in enumerate(grads):
        e = 1e-6
        up = list(args)
        down = list(args)
        up[i] += e
        down[i] -= e
        fd = (cir_log_transition(*up) - cir_log_transition(*down)) / (2 * e)
        np.testing.assert_allclose(g, fd, rtol=1e-6)
    kappa, theta, sigma, h, x0 = 0.8, 4.0, 0.7, 0.5, 3.0
    draws = np.asarray(
        cir_sample(jax.random.key(0), kappa, theta, sigma, h, jnp.full(20000, x0))
    )
    c = 2 * kappa / (sigma**2 * -np.expm1(-kappa * h))
    q = 2 * kappa * theta / sigma**2 - 1
    law = stats.ncx2(2 * q + 2, 2 * c * x0 * np.exp(-kappa * h), scale=1 / (2 * c))
    assert stats.kstest(draws, law.cdf).pvalue > 1e-3
