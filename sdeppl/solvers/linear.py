r"""Exact transitions of linear (affine) SDEs.

For $dX_t = (A X_t + b + c\,(t - t_0))\,dt + L\,dW_t$ with $\Sigma = L L^\top$, the
transition over a step $h$ is Gaussian, $X_{t_0+h} \mid X_{t_0} = x_0 \sim
N(\Phi x_0 + s,\; Q)$, with

$$\Phi = e^{A h},\quad s = \int_0^h e^{A(h-u)}(b + c\,u)\,du,\quad
  Q = \int_0^h e^{A u} \Sigma\, e^{A^\top u}\,du.$$

All three are read off one matrix exponential (Van Loan, 1978): with the transposed
augmented generator $G^\top$ of $(x, 1, u)$, $u = t - t_0$,

$$M = \begin{pmatrix} -A & [\Sigma\;0\;0] \\ 0 & G^\top \end{pmatrix},\quad
  G^\top = \begin{pmatrix} A^\top & 0 & 0\\ b^\top & 0 & 1\\
  c^\top & 0 & 0\end{pmatrix},
  \quad e^{M h} = \begin{pmatrix} \cdot & F_{12} \\ 0 & e^{G^\top h}\end{pmatrix},$$

$e^{G^\top h}$ holds $\Phi^\top$ (top-left block) and $s^\top$ (the row below), and
$Q = \Phi\,F_{12}[:, :d]$.

The matrix exponential (:func:`expm`) is a degree-16 Taylor polynomial after scaling
by $2^{-s}$ with $\|2^{-s} M h\|_1 \le 1$ (truncation error $\le 1/17! \approx 3\cdot
10^{-15}$), evaluated with six matrix products (Paterson–Stockmeyer), then $s$
squarings. Unlike :func:`jax.scipy.linalg.expm` it has no data-dependent loop, so it
vectorises over thousands of irregular gaps and differentiates in reverse mode cheaply.

References
----------
Van Loan, C. F. (1978). Computing integrals involving the matrix exponential.
*IEEE Trans. Automatic Control* 23(3), 395–404.
Särkkä, S. and Solin, A. (2019). *Applied Stochastic Differential Equations*, §6.3.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp


class AffineTransition(NamedTuple):
    r"""$x_1 \mid x_0 \sim N(\Phi x_0 + s, Q)$.

    Shapes: ``phi (*batch, d, d)``, ``shift (*batch, d)``, ``cov (*batch, d, d)``.
    """

    phi: object
    shift: object
    cov: object


_TAYLOR_DEGREE = 16
_TAYLOR = [1.0 / math.factorial(j) for j in range(_TAYLOR_DEGREE + 1)]
_MAX_SQUARINGS = 10  # scaled norm <= 1 for ||M h||_1 up to 1024; beyond that the
# Van Loan block exp(-A h) of a stable A overflows anyway (|lambda h| > ~700), so the
# result is NaN (a clear failure) rather than silently inaccurate


@jax.checkpoint  # recomputing the products in the backward pass beats storing them
def expm(m):
    r"""Matrix exponential of ``(*batch, n, n)`` matrices, without data-dependent loops.

    Valid for $\|m\|_1 \le 2^{10}$; larger norms give NaN.

    Each matrix is scaled by $2^{-s}$, $s = \max(0, \lceil \log_2 \|m\|_1 \rceil)$, its
    exponential taken by a degree-16 Taylor polynomial and squared $s$ times. The
    squarings run as a fixed-length scan whose body is skipped (``lax.cond``) once every
    matrix of the batch is done, so a batch with small norms pays for no squarings.
    """
    n = m.shape[-1]
    norm = jnp.max(jnp.sum(jnp.abs(m), axis=-2), axis=-1)
    norm = jax.lax.stop_gradient(jnp.where(jnp.isfinite(norm), norm, 0.0))
    wanted = jnp.ceil(jnp.log2(jnp.maximum(norm, 1e-300)))
    squarings = jnp.clip(wanted, 0, _MAX_SQUARINGS)
    x = m * jnp.exp2(-squarings)[..., None, None]
    x = jnp.where((wanted > _MAX_SQUARINGS)[..., None, None], jnp.nan, x)
    eye = jnp.broadcast_to(jnp.eye(n, dtype=m.dtype), m.shape)
    x2 = x @ x
    x3 = x2 @ x
    x4 = x2 @ x2
    c = _TAYLOR

    def block(i):
        return c[i] * eye + c[i + 1] * x + c[i + 2] * x2 + c[i + 3] * x3

    out = block(12) + c[16] * x4
    for i in (8, 4, 0):
        out = block(i) + x4 @ out
    needed = jnp.max(squarings)

    def square(i, e):
        def go(e):
            return jnp.where((i < squarings)[..., None, None], e @ e, e)

        return jax.lax.cond(i < needed, go, lambda e: e, e)

    return jax.lax.fori_loop(0, _MAX_SQUARINGS, square, out)


def _unit_scale(x, event_ndim: int):
    """Largest absolute entry over the event dims (1 where all are zero), no
    gradient."""
    top = jnp.max(jnp.abs(x), axis=tuple(range(-event_ndim, 0)))
    return jax.lax.stop_gradient(jnp.where(top > 0, top, 1.0))


def affine_discretisation(a, b, cov_rate, dt, c=None) -> AffineTransition:
    r"""Exact transition of $dX = (A X + b + c\,(t-t_0))dt + L dW$ over steps ``dt``.

    Parameters
    ----------
    a: ``(*batch, d, d)`` drift matrix $A$.
    b: ``(*batch, d)`` drift offset.
    cov_rate: ``(*batch, d, d)`` diffusion covariance rate $\Sigma = L L^\top$.
    dt: step(s) $h > 0$, shape broadcasting with ``batch`` (e.g. ``(K, 1...)`` for ``K``
        gaps of one SDE; ``dt[:, None]`` when ``a`` has one batch dim).
    c: optional ``(*batch, d)`` drift slope in time.
    """
    d = a.shape[-1]
    dt = jnp.asarray(dt, a.dtype)
    batch = jnp.broadcast_shapes(
        a.shape[:-2], b.shape[:-1], cov_rate.shape[:-2], dt.shape
    )
    if c is not None:
        batch = jnp.broadcast_shapes(batch, c.shape[:-1])
    k = d + 1 if c is None else d + 2  # size of the augmented generator G

    def bt(x, shape):
        return jnp.broadcast_to(x, batch + shape)

    # Q is linear in Sigma and s in (b, c): scale both to O(1) entries so that the
    # generator's norm (hence the number of squarings) reflects A h only
    cov_rate, b = bt(cov_rate, (d, d)), bt(b, (d,))
    scale_q = _unit_scale(cov_rate, 2)
    scale_s = _unit_scale(b, 1)
    if c is not None:
        c = bt(c, (d,))
        scale_s = jnp.maximum(scale_s, _unit_scale(c, 1))
        c = c / scale_s[..., None]
    cov_rate = cov_rate / scale_q[..., None, None]
    b = b / scale_s[..., None]
    gen = jnp.zeros(batch + (d + k, d + k), a.dtype)
    gen = gen.at[..., :d, :d].set(-bt(a, (d, d)))
    gen = gen.at[..., :d, d : 2 * d].set(bt(cov_rate, (d, d)))
    gen = gen.at[..., d : 2 * d, d : 2 * d].set(bt(jnp.swapaxes(a, -1, -2), (d, d)))
    gen = gen.at[..., 2 * d, d : 2 * d].set(bt(b, (d,)))
    if c is not None:
        gen = gen.at[..., 2 * d, 2 * d + 1].set(1.0)
        gen = gen.at[..., 2 * d + 1, d : 2 * d].set(bt(c, (d,)))
    e = expm(gen * dt[..., None, None])
    phi = jnp.swapaxes(e[..., d : 2 * d, d : 2 * d], -1, -2)
    shift = e[..., 2 * d, d : 2 * d] * scale_s[..., None]
    q = (phi @ e[..., :d, d : 2 * d]) * scale_q[..., None, None]
    return AffineTransition(phi, shift, 0.5 * (q + jnp.swapaxes(q, -1, -2)))


def affine_moments(transition: AffineTransition, x0):
    """Mean and ``"tril"`` scale (Cholesky factor of ``Q``) of an
    :class:`AffineTransition` from ``x0`` ``(*batch, d)``."""
    mean = jnp.einsum("...ij,...j->...i", transition.phi, x0) + transition.shift
    return mean, jnp.linalg.cholesky(transition.cov)


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
