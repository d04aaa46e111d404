r"""Rößler's SRA1: a derivative-free stochastic Runge–Kutta scheme for additive noise.

For $dX_t = f(t, X_t)\,dt + g(t)\,dW_t$ (diffusion independent of the state) and a step
$h$, with $I_1 = \Delta W$ and $I_{10} = \int_{t_0}^{t_1} (W_s - W_{t_0})\,ds$:

$$H_2 = X_0 + \tfrac34 h f(t_0, X_0) + \tfrac32 g(t_0 + h) I_{10}/h,$$
$$X_1 = X_0 + h\big(\tfrac13 f(t_0, X_0) + \tfrac23 f(t_0 + \tfrac34 h, H_2)\big)
      + g(t_0 + h)\,(I_1 - I_{10}/h) + g(t_0)\,I_{10}/h.$$

The pair $(I_1, I_{10})$ is Gaussian with $\mathrm{Var}\,I_1 = h$,
$\mathrm{Var}\,I_{10} = h^3/3$, $\mathrm{Cov} = h^2/2$, drawn as
$I_1 = \sqrt h\,u_1$, $I_{10} = \tfrac12 h^{3/2}(u_1 + u_2/\sqrt3)$.
Strong order 1.5 and weak order 2 for additive noise; two drift evaluations per step.

References
----------
Rößler, A. (2010). Runge–Kutta methods for the strong approximation of solutions of
stochastic differential equations. *SIAM J. Numer. Anal.* 48(3), 922–952 (tableau SRA1).
"""

from __future__ import annotations

import jax.numpy as jnp

from ._terms import Diffusion


def sra1_increments(u, h):
    """Map standard normals ``u`` of shape ``(2, *batch, m)`` to ``(I_1, I_10)``."""
    i1 = jnp.sqrt(h) * u[0]
    i10 = 0.5 * h**1.5 * (u[0] + u[1] / jnp.sqrt(3.0))
    return i1, i10


def sra1_step(drift, diffusion: Diffusion, t0, t1, x0, dw):
    """One SRA1 step; ``dw = (I_1, I_10)`` from :func:`sra1_increments`.

    The diffusion is evaluated at ``x0`` (it must not depend on the state; with a
    state-dependent diffusion the scheme still converges, with strong order 1/2).
    """
    i1, i10 = dw
    h = t1 - t0
    g0 = diffusion(t0, x0)
    g1 = diffusion(t1, x0)
    f0 = drift(t0, x0)
    h2 = x0 + 0.75 * h * f0 + 1.5 * diffusion.apply(g1, i10 / h)
    f2 = drift(t0 + 0.75 * h, h2)
    return (
        x0
        + h * (f0 / 3.0 + 2.0 * f2 / 3.0)
        + diffusion.apply(g1, i1 - i10 / h)
        + diffusion.apply(g0, i10 / h)
    )
