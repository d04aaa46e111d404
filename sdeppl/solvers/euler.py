r"""Euler–Maruyama: the simplest stepper and its Gaussian transition density.

For $dX_t = f(t, X_t)\,dt + g(t, X_t)\,dW_t$ and a step $h = t_1 - t_0$:

$$X_{t_1} \approx X_{t_0} + f(t_0, X_{t_0})\,h + g(t_0, X_{t_0})\,\Delta W,
\qquad \Delta W \sim N(0, h I_m),$$

so the transition density is $N\big(x_0 + f h,\; g g^\top h\big)$. Strong order 1/2,
weak order 1 (Kloeden & Platen 1992, §10.2 and §14.1).

References
----------
Kloeden, P. E. and Platen, E. (1992). *Numerical Solution of Stochastic Differential
Equations*. Springer.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._terms import Diffusion


def euler_moments(drift, diffusion: Diffusion, t0, t1, x0):
    """Mean and scale of the Euler–Maruyama transition from ``(t0, x0)`` to ``t1``.

    Returns ``(mean, scale)`` with scale kind ``"diag"`` for diagonal noise and
    ``"factor"`` for general noise (see :mod:`sdeppl.solvers.gaussian`).

    Shapes
    ------
    x0: ``(*batch, d)``; mean: ``(*batch, d)``; scale: ``(*batch, d)`` or
    ``(*batch, d, m)``.
    """
    dt = t1 - t0
    mean = x0 + drift(t0, x0) * dt
    return mean, diffusion(t0, x0) * jnp.sqrt(dt)


def euler_scale_kind(diffusion: Diffusion) -> str:
    """The scale kind :func:`euler_moments` returns for this diffusion."""
    return "diag" if diffusion.noise == "diagonal" else "factor"


def euler_step(drift, diffusion: Diffusion, t0, t1, x0, dw):
    """One Euler–Maruyama step; ``dw`` is the Brownian increment ``(*batch, m)``."""
    return x0 + drift(t0, x0) * (t1 - t0) + diffusion.apply(diffusion(t0, x0), dw)
