r"""The diffusion term of an SDE: how a diffusion value acts on a Brownian increment.

An SDE $dX_t = f(t, X_t)\,dt + g(t, X_t)\,dW_t$ with state $X_t \in \mathbb{R}^d$ and
$m$ independent Brownian motions $W_t$ has a diffusion value $g$ whose layout depends on
the noise structure:

- ``"diagonal"``: $m = d$, $g$ has shape ``(*batch, d)`` and acts elementwise,
  $g\,dW = (g_1 dW_1, \dots, g_d dW_d)$; the covariance rate is $\mathrm{diag}(g^2)$.
  Milstein's correction assumes $g_i$ depends on $x_i$ only (commutative noise).
- ``"general"``: $g$ has shape ``(*batch, d, m)`` and acts by matrix product; the
  covariance rate is $g g^\top$ (rank-deficient when $m < d$).

Leading ``batch`` dims broadcast: a drift or diffusion closure may see a state with
leading batch dims when the model's parameters are batched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

NOISE_TYPES = ("diagonal", "general")


@jax.tree_util.register_static
@dataclass(frozen=True)
class Diffusion:
    """A diffusion closure together with its noise structure.

    Parameters
    ----------
    fn
        ``fn(t, x) -> g``; ``x`` has shape ``(*batch, d)``; ``g`` has shape
        ``(*batch, d)`` for diagonal noise and ``(*batch, d, m)`` for general noise.
    noise
        ``"diagonal"`` or ``"general"``.
    additive
        True when ``fn`` does not depend on ``x`` (enables the order-1.5 SRA1 scheme).
    """

    fn: Callable
    noise: str = "diagonal"
    additive: bool = False

    def __post_init__(self):
        if self.noise not in NOISE_TYPES:
            raise ValueError(
                f"Diffusion: noise must be one of {NOISE_TYPES}; got {self.noise!r}."
            )

    def __call__(self, t, x):
        return self.fn(t, x)

    def apply(self, g, dw):
        r"""The noise term $g\,dW$: ``g`` as returned by ``fn``, ``dw``
        ``(*batch, m)``."""
        if self.noise == "diagonal":
            return g * dw
        return jnp.einsum("...ij,...j->...i", g, dw)

    def covariance(self, g):
        r"""The covariance rate $g g^\top$, shape ``(*batch, d, d)``."""
        if self.noise == "diagonal":
            return (
                g[..., :, None] * jnp.eye(g.shape[-1], dtype=g.dtype) * g[..., None, :]
            )
        return jnp.einsum("...ik,...jk->...ij", g, g)

    def noise_dim(self, g) -> int:
        """Number $m$ of Brownian motions, read off a diffusion value's static shape."""
        return g.shape[-1]
