r"""Local linearisation (Ozaki 1992; Shoji & Ozaki 1998) transition densities.

Over a step from $(t_0, x_0)$ the drift is replaced by its first-order expansion plus
the Itô and time corrections of Shoji & Ozaki,

$$f(t, x) \approx f_0 + J (x - x_0) + c\,(t - t_0),\qquad
  c = \partial_t f + \tfrac12 \sum_{l=1}^{m} \partial^2 f[g_l, g_l],$$

with $f_0 = f(t_0, x_0)$, $J = \partial_x f(t_0, x_0)$ (forward-mode, one ``jvp`` per
state dimension), $g_l$ the columns of the diffusion frozen at $(t_0, x_0)$. The
resulting linear SDE is solved exactly
(:func:`sdeppl.solvers.linear.affine_discretisation`), so the scheme is exact for linear
SDEs with state-independent diffusion and accurate for smooth nonlinear drifts on
coarse grids where Euler–Maruyama is biased.

References
----------
Ozaki, T. (1992). A bridge between nonlinear time series models and nonlinear
stochastic dynamical systems: a local linearization approach. *Statistica Sinica* 2,
113–135.
Shoji, I. and Ozaki, T. (1998). Estimation for nonlinear stochastic differential
equations by a local linearization method. *Stochastic Analysis and Applications*
16(4), 733–752.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._terms import Diffusion
from .linear import affine_discretisation, affine_moments


def _basis(x):
    """Unit vectors ``(d, *x.shape)`` along the last axis of ``x``, broadcast over
    batch."""
    d = x.shape[-1]
    eye = jnp.eye(d, dtype=x.dtype).reshape((d,) + (1,) * (x.ndim - 1) + (d,))
    return jnp.broadcast_to(eye, (d,) + x.shape)


def batched_jacobian(fn, x):
    """Jacobian of ``fn`` at ``x`` ``(*batch, d)``, shape ``(*batch, k, d)``.

    One forward-mode product per input dimension; ``fn`` must act independently on the
    leading batch dims (as drift, diffusion and observation closures do).
    """
    return jax.vmap(lambda v: jax.jvp(fn, (x,), (v,))[1], out_axes=-1)(_basis(x))


def drift_jacobian(drift, t, x):
    r"""$\partial_x f(t, x)$, shape ``(*batch, d, d)`` (rows: outputs, columns:
    inputs)."""
    return batched_jacobian(lambda y: jnp.broadcast_to(drift(t, y), x.shape), x)


def local_linear_moments(drift, diffusion: Diffusion, t0, t1, x0):
    """Mean and ``"tril"`` scale of the Shoji–Ozaki local-linear transition.

    Shapes
    ------
    x0: ``(*batch, d)``; returns mean ``(*batch, d)`` and Cholesky factor
    ``(*batch, d, d)``.
    """
    dt = t1 - t0
    f_x = lambda y: jnp.broadcast_to(drift(t0, y), x0.shape)  # noqa: E731
    f0 = f_x(x0)
    jac = drift_jacobian(drift, t0, x0)
    g = diffusion(t0, x0)
    if diffusion.noise == "diagonal":
        g = jnp.broadcast_to(g, x0.shape)
    cov_rate = diffusion.covariance(g)

    def second_derivative(v):
        return jax.jvp(lambda y: jax.jvp(f_x, (y,), (v,))[1], (x0,), (v,))[1]

    if diffusion.noise == "diagonal":
        columns = _basis(x0) * g[None]
    else:
        columns = jnp.moveaxis(g, -1, 0)
    ito = 0.5 * jnp.sum(jax.vmap(second_derivative)(columns), axis=0)
    time = jax.jvp(
        lambda s: jnp.broadcast_to(drift(s, x0), x0.shape), (t0,), (jnp.ones_like(t0),)
    )[1]
    if x0.shape[-1] == 1:  # scalar state: closed form, no matrix exponential
        return _scalar_moments(f0, jac[..., 0], ito + time, cov_rate[..., 0], dt, x0)
    b = f0 - jnp.einsum("...ij,...j->...i", jac, x0)
    transition = affine_discretisation(jac, b, cov_rate, dt, c=ito + time)
    return affine_moments(transition, x0)


def _scalar_moments(f0, jac, c, var_rate, h, x0):
    r"""Closed form of the scalar local-linear transition.

    With $z = J h$: mean $x_0 + h\,\varphi_1(z) f_0 + h^2 \varphi_2(z)\,c$ and variance
    $h\,\varphi_1(2z)\,g^2$, where $\varphi_1(z) = (e^z - 1)/z$ and
    $\varphi_2(z) = (e^z - 1 - z)/z^2$ (series near $z = 0$). Returns a ``"tril"``
    scale of shape ``(*batch, 1, 1)``.
    """
    z = jac * h
    small = jnp.abs(z) < 1e-4
    safe = jnp.where(small, 1.0, z)
    phi1 = jnp.where(small, 1.0 + z / 2 + z * z / 6, jnp.expm1(safe) / safe)
    phi2 = jnp.where(
        small, 0.5 + z / 6 + z * z / 24, (jnp.expm1(safe) - safe) / (safe * safe)
    )
    safe2 = jnp.where(small, 1.0, 2 * z)
    phi1_2z = jnp.where(small, 1.0 + z + 2 * z * z / 3, jnp.expm1(safe2) / safe2)
    mean = x0 + h * phi1 * f0 + h * h * phi2 * c
    return mean, jnp.sqrt(h * phi1_2z * var_rate)[..., None]
