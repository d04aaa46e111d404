r"""The modified diffusion bridge (Durham & Gallant 2002) for data augmentation.

Given the state $x$ at $t_0$ and the next observation $y$ at $t^* > t_1 > t_0$, the
latent point at $t_1$ is drawn from

$$N\Big(x + (y - x)\frac{\delta}{\Delta},\;
   \frac{\delta\,(\Delta - \delta)}{\Delta}\, g g^\top(t_0, x)\Big),\qquad
   \delta = t_1 - t_0,\ \Delta = t^* - t_0,$$

a Brownian bridge with the local diffusion frozen at $(t_0, x)$. Used as the
non-centred parametrisation of latent points between observations, it keeps the
posterior geometry well conditioned as the number of substeps grows.

References
----------
Durham, G. B. and Gallant, A. R. (2002). Numerical techniques for maximum likelihood
estimation of continuous-time diffusion processes. *J. Bus. Econ. Stat.* 20, 297–338.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._terms import Diffusion


def bridge_scale_kind(diffusion: Diffusion) -> str:
    """Scale kind of :func:`bridge_moments`: ``"diag"`` or ``"tril"``."""
    return "diag" if diffusion.noise == "diagonal" else "tril"


def bridge_moments(drift, diffusion: Diffusion, t0, t1, x0, t_target, x_target):
    """Mean and scale of the modified diffusion bridge step from ``(t0, x0)`` to ``t1``.

    ``drift`` is unused (the bridge is drift-free) and kept for a uniform signature.

    Shapes
    ------
    x0, x_target: ``(*batch, d)``; returns mean ``(*batch, d)`` and a ``"diag"`` or
    ``"tril"`` scale.
    """
    del drift
    dt, rem = t1 - t0, t_target - t0
    mean = x0 + (x_target - x0) * (dt / rem)
    factor = dt * (rem - dt) / rem
    g = diffusion(t0, x0)
    if diffusion.noise == "diagonal":
        return mean, jnp.broadcast_to(g, x0.shape) * jnp.sqrt(factor)
    return mean, jnp.linalg.cholesky(diffusion.covariance(g) * factor)
