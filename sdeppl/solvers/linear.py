r"""Exact transitions of linear (affine) SDEs.

For $dX_t = (A X_t + b + c\,(t - t_0))\,dt + L\,dW_t$ with $\Sigma = L L^\top$, the
transition over a step $h$ is Gaussian, $X_{t_0+h} \mid X_{t_0} = x_0 \sim
N(\Phi x_0 + s,\; Q)$, with

$$\Phi = e^{A h},\quad s = \int_0^h e^{A(h-u)}(b + c\,u)\,du,\quad
  Q = \int_0^h e^{A u} \Sigma\, e^{A^\top u}\,du.$$

$(\Phi, s)$ are read off one matrix exponential of the augmented generator
$\begin{pmatrix} A & b & c\\ 0 & 0 & 0\\ 0 & 1 & 0 \end{pmatrix}$ acting on
$(x, 1, u)$, and $Q$ off Van Loan's block exponential
$\exp\begin{pmatrix} -A & \Sigma \\ 0 & A^\top\end{pmatrix} h =
 \begin{pmatrix} \cdot & F_{12} \\ 0 & F_{22}\end{pmatrix}$, $Q = F_{22}^\top F_{12}$.

For the scalar (or elementwise) Ornstein–Uhlenbeck process
$dX_t = \theta(\mu - X_t)\,dt + \sigma\,dW_t$ the closed form is
$\Phi = e^{-\theta h}$, $\Phi x_0 + s = \mu + (x_0 - \mu)e^{-\theta h}$,
$Q = \sigma^2 (1 - e^{-2\theta h}) / (2\theta)$ (and $\sigma^2 h$ at $\theta = 0$).

References
----------
Van Loan, C. F. (1978). Computing integrals involving the matrix exponential.
*IEEE Trans. Automatic Control* 23(3), 395–404.
Särkkä, S. and Solin, A. (2019). *Applied Stochastic Differential Equations*, §6.3.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax.scipy.linalg import expm


class AffineTransition(NamedTuple):
    r"""$x_1 \mid x_0 \sim N(\Phi x_0 + s, Q)$ with ``chol`` the Cholesky factor of
    ``Q``.

    Shapes: ``phi (*batch, d, d)``, ``shift (*batch, d)``, ``chol (*batch, d, d)``.
    """

    phi: object
    shift: object
    chol: object


def affine_discretisation(a, b, cov_rate, dt, c=None) -> AffineTransition:
    r"""Exact transition of $dX = (A X + b + c\,(t-t_0))dt + L dW$ over a step ``dt``.

    Parameters
    ----------
    a: ``(*batch, d, d)`` drift matrix $A$.
    b: ``(*batch, d)`` drift offset.
    cov_rate: ``(*batch, d, d)`` diffusion covariance rate $\Sigma = L L^\top$.
    dt: scalar step $h > 0$.
    c: optional ``(*batch, d)`` drift slope in time.
    """
    d = a.shape[-1]
    batch = jnp.broadcast_shapes(a.shape[:-2], b.shape[:-1], cov_rate.shape[:-2])
    if c is not None:
        batch = jnp.broadcast_shapes(batch, c.shape[:-1])
    a = jnp.broadcast_to(a, batch + (d, d))
    b = jnp.broadcast_to(b, batch + (d,))
    cov_rate = jnp.broadcast_to(cov_rate, batch + (d, d))
    k = d + 1 if c is None else d + 2
    gen = jnp.zeros(batch + (k, k), a.dtype)
    gen = gen.at[..., :d, :d].set(a).at[..., :d, d].set(b)
    if c is not None:
        gen = gen.at[..., :d, d + 1].set(jnp.broadcast_to(c, batch + (d,)))
        gen = gen.at[..., d + 1, d].set(1.0)
    e = expm(gen * dt)
    phi, shift = e[..., :d, :d], e[..., :d, d]

    zeros = jnp.zeros_like(a)
    van_loan = jnp.concatenate(
        [
            jnp.concatenate([-a, cov_rate], axis=-1),
            jnp.concatenate([zeros, jnp.swapaxes(a, -1, -2)], axis=-1),
        ],
        axis=-2,
    )
    f = expm(van_loan * dt)
    q = jnp.swapaxes(f[..., d:, d:], -1, -2) @ f[..., :d, d:]
    q = 0.5 * (q + jnp.swapaxes(q, -1, -2))
    return AffineTransition(phi, shift, jnp.linalg.cholesky(q))


def affine_moments(transition: AffineTransition, x0):
    """Mean and ``"tril"`` scale of an :class:`AffineTransition` from ``x0``
    ``(*batch, d)``."""
    mean = jnp.einsum("...ij,...j->...i", transition.phi, x0) + transition.shift
    return mean, transition.chol


def ou_moments(theta, mu, sigma, dt, x0):
    r"""Closed-form OU transition, elementwise: returns ``(mean, sd)`` (``"diag"``
    scale).

    Stable for small $\theta h$ (uses ``expm1``) and exact at $\theta = 0$ (Brownian
    motion with drift 0). All arguments broadcast.
    """
    decay = jnp.exp(-theta * dt)
    small = jnp.abs(theta) < 1e-12
    safe_theta = jnp.where(small, 1.0, theta)
    var_factor = jnp.where(
        small, dt, -jnp.expm1(-2.0 * safe_theta * dt) / (2.0 * safe_theta)
    )
    mean = mu + (x0 - mu) * decay
    return mean, jnp.broadcast_to(sigma * jnp.sqrt(var_factor), mean.shape)
