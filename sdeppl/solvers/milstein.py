r"""Milstein stepper for diagonal (commutative) noise.

For $dX_t = f(t, X_t)\,dt + g(t, X_t)\,dW_t$ with diagonal noise, $g_i$ depending on
$x_i$ only, and a step $h$ with increments $\Delta W_i \sim N(0, h)$:

$$X^{(i)}_{t_1} = X^{(i)}_{t_0} + f_i h + g_i \Delta W_i
  + \tfrac12 g_i\,\partial_{x_i} g_i\,(\Delta W_i^2 - h).$$

Strong order 1, weak order 1 (Kloeden & Platen 1992, §10.3). The derivative
$\partial_{x_i} g_i$ is one forward-mode product ``jvp(g, x, 1)``, exact under the
diagonal-noise assumption; cross-derivatives would need Lévy areas and are not used.

References
----------
Kloeden, P. E. and Platen, E. (1992). *Numerical Solution of Stochastic Differential
Equations*. Springer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._terms import Diffusion


def milstein_step(drift, diffusion: Diffusion, t0, t1, x0, dw):
    """One Milstein step; ``dw`` is the Brownian increment ``(*batch, d)``."""
    if diffusion.noise != "diagonal":
        raise ValueError(
            "milstein_step: needs diagonal noise (g_i depending on x_i only); got "
            f"noise={diffusion.noise!r}. Use the Euler–Maruyama or SRA1 scheme."
        )
    h = t1 - t0
    g, dg = jax.jvp(lambda x: diffusion(t0, x), (x0,), (jnp.ones_like(x0),))
    g = jnp.broadcast_to(g, x0.shape)
    return x0 + drift(t0, x0) * h + g * dw + 0.5 * g * dg * (dw * dw - h)
