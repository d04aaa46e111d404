"""Strong and weak orders of the steppers, measured (GBM for Euler/Milstein, additive noise for SRA1)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdeppl.solvers import (
    Diffusion,
    build_transition,
    euler_step,
    milstein_step,
    sra1_step,
)

T_END = 1.0
NUM_FINE = 2**10
NUM_PATHS = 4000


def _run(step, drift, diffusion, x0, dws, h):
    """Drive ``step`` over the leading axis of ``dws`` (a pytree of increments)."""

    def body(x, args):
        k, dw = args
        t = k * h
        return step(drift, diffusion, t, t + h, x, dw), None

    num = jax.tree_util.tree_leaves(dws)[0].shape[0]
    x, _ = jax.lax.scan(body, x0, (jnp.arange(num, dtype=jnp.float64), dws))
    return x


def _coarsen(dw_fine, i10_fine, factor, h_fine):
    """Exact (I_1, I_10) over blocks of ``factor`` fine steps from fine (I_1, I_10)."""
    n, *rest = dw_fine.shape
    dw = dw_fine.reshape((n // factor, factor, *rest))
    i10 = i10_fine.reshape((n // factor, factor, *rest))
    w_before = (
        jnp.cumsum(dw, axis=1) - dw
    )  # W at the start of each fine step, from the block start
    return dw.sum(axis=1), (w_before * h_fine + i10).sum(axis=1)


def _slope(hs, errors):
    return np.polyfit(np.log(hs), np.log(errors), 1)[0]


MU, SIGMA, X0 = 1.0, 0.6, 1.0
GBM_DRIFT = lambda t, x: MU * x  # noqa: E731
GBM_DIFFUSION = Diffusion(lambda t, x: SIGMA * x, "diagonal")


@pytest.fixture(scope="module")
def brownian():
    key = jax.random.key(0)
    h = T_END / NUM_FINE
    u = jax.random.normal(key, (2, NUM_FINE, NUM_PATHS, 1))
    return h, jnp.sqrt(h) * u[0], 0.5 * h**1.5 * (u[0] + u[1] / jnp.sqrt(3.0))


@pytest.mark.parametrize(("step", "order"), [(euler_step, 0.5), (milstein_step, 1.0)])
def test_strong_order_on_gbm(brownian, step, order):
    h_fine, dw_fine, _ = brownian
    w_end = dw_fine.sum(axis=0)
    exact = X0 * jnp.exp((MU - 0.5 * SIGMA**2) * T_END + SIGMA * w_end)
    hs, errors = [], []
    for factor in (2**7, 2**6, 2**5, 2**4, 2**3):
        dw = dw_fine.reshape((NUM_FINE // factor, factor, NUM_PATHS, 1)).sum(axis=1)
        x = _run(
            step,
            GBM_DRIFT,
            GBM_DIFFUSION,
            jnp.full((NUM_PATHS, 1), X0),
            dw,
            h_fine * factor,
        )
        hs.append(h_fine * factor)
        errors.append(float(jnp.mean(jnp.abs(x - exact))))
    assert abs(_slope(hs, errors) - order) < 0.15, (errors, _slope(hs, errors))
    name = "euler" if step is euler_step else "milstein"
    declared = build_transition(name, GBM_DRIFT, GBM_DIFFUSION, 1, 1).caps
    assert declared.strong_order == order


def test_weak_order_of_euler_on_gbm(brownian):
    """E[X_T] = X0 e^{mu T}; common random numbers across step sizes."""
    h_fine, dw_fine, _ = brownian
    hs, errors = [], []
    for factor in (2**8, 2**7, 2**6, 2**5):
        dw = dw_fine.reshape((NUM_FINE // factor, factor, NUM_PATHS, 1)).sum(axis=1)
        x = _run(
            euler_step,
            GBM_DRIFT,
            GBM_DIFFUSION,
            jnp.full((NUM_PATHS, 1), X0),
            dw,
            h_fine * factor,
        )
        hs.append(h_fine * factor)
        # the control variate X0 * prod(1 + sigma dW) has mean X0 exactly; it removes most MC noise
        control = X0 * jnp.prod(1.0 + SIGMA * dw, axis=0)
        errors.append(abs(float(jnp.mean(x - control)) + X0 - X0 * np.exp(MU * T_END)))
    assert abs(_slope(hs, errors) - 1.0) < 0.2, errors


LAMBDA = 1.0


def _additive_drift(t, x):
    return -LAMBDA * x - x**3 + jnp.sin(3.0 * t)


ADDITIVE = Diffusion(
    lambda t, x: 0.5 * (1.0 + t) * jnp.ones_like(x), "diagonal", additive=True
)


def test_strong_order_of_sra1_on_nonlinear_additive_noise(brownian):
    h_fine, dw_fine, i10_fine = brownian
    x0 = jnp.full((NUM_PATHS, 1), 0.5)
    reference = _run(
        sra1_step, _additive_drift, ADDITIVE, x0, (dw_fine, i10_fine), h_fine
    )
    hs, errors = [], []
    for factor in (2**7, 2**6, 2**5, 2**4):
        incr = _coarsen(dw_fine, i10_fine, factor, h_fine)
        x = _run(sra1_step, _additive_drift, ADDITIVE, x0, incr, h_fine * factor)
        hs.append(h_fine * factor)
        errors.append(float(jnp.mean(jnp.abs(x - reference))))
    # strong order 1.5 is a guarantee; with this small noise the order-2 drift error of
    # the Runge–Kutta stages shows too, so the measured slope lies between 1.5 and 2.
    assert 1.4 < _slope(hs, errors) < 2.1, (errors, _slope(hs, errors))


def test_weak_order_of_sra1_on_nonlinear_additive_noise(brownian):
    """E[X_T^2] error against a fine reference on the same Brownian paths shrinks like h^2."""
    h_fine, dw_fine, i10_fine = brownian
    x0 = jnp.full((NUM_PATHS, 1), 0.5)
    reference = _run(
        sra1_step, _additive_drift, ADDITIVE, x0, (dw_fine, i10_fine), h_fine
    )
    hs, errors = [], []
    for factor in (2**8, 2**7, 2**6, 2**5):
        incr = _coarsen(dw_fine, i10_fine, factor, h_fine)
        x = _run(sra1_step, _additive_drift, ADDITIVE, x0, incr, h_fine * factor)
        hs.append(h_fine * factor)
        errors.append(abs(float(jnp.mean(x**2 - reference**2))))
    assert _slope(hs, errors) > 1.7, (errors, _slope(hs, errors))


def test_milstein_rejects_general_noise():
    with pytest.raises(ValueError, match="diagonal noise"):
        milstein_step(
            GBM_DRIFT,
            Diffusion(lambda t, x: jnp.eye(2), "general"),
            0.0,
            0.1,
            jnp.ones(2),
            jnp.ones(2),
        )
