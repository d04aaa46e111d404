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


def _scaling(norm):
    """Squarings ``s`` with ``norm * 2**-s <= 1`` (capped) and whether the cap was
    exceeded; no gradient."""
    norm = jax.lax.stop_gradient(jnp.where(jnp.isfinite(norm), norm, 0.0))
    wanted = jnp.ceil(jnp.log2(jnp.maximum(norm, 1e-300)))
    return jnp.clip(wanted, 0, _MAX_SQUARINGS), wanted > _MAX_SQUARINGS


def _taylor(x, matmul, identity_plus):
    r"""Degree-16 Taylor polynomial of ``x`` by Paterson–Stockmeyer (six products).

    ``identity_plus(c, terms)`` forms $cI + \sum_i w_i X_i$ from ``terms`` = pairs
    ``(w_i, X_i)``, in the caller's representation of matrices.
    """
    x2 = matmul(x, x)
    x3 = matmul(x2, x)
    x4 = matmul(x2, x2)
    c = _TAYLOR

    def block(i):
        return identity_plus(c[i], [(c[i + 1], x), (c[i + 2], x2), (c[i + 3], x3)])

    out = identity_plus(0.0, [(1.0, block(12)), (c[16], x4)])
    for i in (8, 4, 0):
        out = identity_plus(0.0, [(1.0, block(i)), (1.0, matmul(x4, out))])
    return out


def _square(out, squarings, matmul):
    """``out`` squared ``squarings`` times (per batch element) in a fixed-length loop
    whose body is skipped once the whole batch is done.

    The loop sits in a ``lax.cond`` and is rematerialised, so a batch that needs no
    squaring (small steps) pays nothing for it, in the backward pass either.
    """
    needed = jnp.max(squarings)

    def square(i, e):
        def go(e):
            e2 = matmul(e, e)
            return jax.tree_util.tree_map(
                lambda new, old: jnp.where(i < squarings, new, old), e2, e
            )

        return jax.lax.cond(i < needed, go, lambda e: e, e)

    @jax.checkpoint
    def loop(e):
        return jax.lax.fori_loop(0, _MAX_SQUARINGS, square, e)

    return jax.lax.cond(needed > 0, loop, lambda e: e, out)


@jax.checkpoint  # recomputing the products in the backward pass beats storing them
def expm(m):
    r"""Matrix exponential of ``(*batch, n, n)`` matrices, without data-dependent loops.

    Valid for $\|m\|_1 \le 2^{10}$; larger norms give NaN.

    Each matrix is scaled by $2^{-s}$, $s = \max(0, \lceil \log_2 \|m\|_1 \rceil)$, its
    exponential taken by a degree-16 Taylor polynomial and squared $s$ times. The
    squarings run as a fixed-length loop whose body is skipped (``lax.cond``) once every
    matrix of the batch is done, so a batch with small norms pays for no squarings.
    """
    n = m.shape[-1]
    squarings, too_big = _scaling(jnp.max(jnp.sum(jnp.abs(m), axis=-2), axis=-1))
    x = m * jnp.exp2(-squarings)[..., None, None]
    x = jnp.where(too_big[..., None, None], jnp.nan, x)
    eye = jnp.broadcast_to(jnp.eye(n, dtype=m.dtype), m.shape)

    def identity_plus(c, terms):
        return c * eye + sum(w * t for w, t in terms)

    out = _taylor(x, jnp.matmul, identity_plus)
    return _square(out, squarings[..., None, None], jnp.matmul)


# -- the same algorithm on matrices held entry by entry --------------------------------
# A matrix is a list of rows of batch-shaped arrays, None marking a structural zero.
# Products become elementwise arithmetic over the batch, which XLA fuses into a few
# vectorised loops: for the small Van Loan generators of d <= 2 states this is 10-20x
# faster than batched matrix products (forward and reverse), and the zeros of the
# block-triangular generator cost nothing.
_UNROLLED_MAX_SIZE = 5  # larger generators: compile time grows as n^3 terms


def _entry_sum(terms):
    terms = [t for t in terms if t is not None]
    if not terms:
        return None
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


def _entry_matmul(a, b):
    return [
        [
            _entry_sum(
                [
                    None if a_ik is None or b[k][j] is None else a_ik * b[k][j]
                    for k, a_ik in enumerate(row)
                ]
            )
            for j in range(len(b[0]))
        ]
        for row in a
    ]


def _entry_identity_plus(c, terms):
    n = len(terms[0][1])
    return [
        [
            _entry_sum(
                [None if t[i][j] is None else w * t[i][j] for w, t in terms]
                + [c if (i == j and c) else None]
            )
            for j in range(n)
        ]
        for i in range(n)
    ]


def _expm_entries(m, batch):
    """:func:`expm` of a matrix given entry by entry (see above); entries broadcast to
    ``batch``; returns the same form with every entry an array (None: exact zero)."""
    n = len(m)
    col_sums = [
        _entry_sum([None if m[i][j] is None else jnp.abs(m[i][j]) for i in range(n)])
        for j in range(n)
    ]
    norm = jnp.max(
        jnp.stack([jnp.broadcast_to(c, batch) for c in col_sums if c is not None]),
        axis=0,
    )
    squarings, too_big = _scaling(norm)
    factor = jnp.where(too_big, jnp.nan, jnp.exp2(-squarings))
    x = [[None if e is None else e * factor for e in row] for row in m]
    out = _taylor(x, _entry_matmul, _entry_identity_plus)
    out = [
        [None if e is None else jnp.broadcast_to(e, batch) for e in row] for row in out
    ]
    return _square(out, squarings, _entry_matmul)


def _unit_scale(x, event_ndim: int):
    """Largest absolute entry over the event dims (1 where all are zero), no
    gradient."""
    top = jnp.max(jnp.abs(x), axis=tuple(range(-event_ndim, 0)))
    return jax.lax.stop_gradient(jnp.where(top > 0, top, 1.0))


def _van_loan(a, b, cov_rate, c, dt, batch):
    r"""$(\Phi, Q, s)$ from the Van Loan exponential (module docstring), with
    ``b``/``c`` possibly None (no offset row; ``s`` None) and ``cov_rate``, ``b``,
    ``c`` already scaled. Small generators are exponentiated entry by entry, larger
    ones as batched matrices."""
    d = a.shape[-1]
    rows = [v for v in (b, c) if v is not None]  # c comes with b (the constant row)
    n = 2 * d + len(rows)
    dt = jnp.asarray(dt, a.dtype)
    if n <= _UNROLLED_MAX_SIZE:
        m = [[None] * n for _ in range(n)]
        for i in range(d):
            for j in range(d):
                m[i][j] = -a[..., i, j] * dt
                m[i][d + j] = cov_rate[..., i, j] * dt
                m[d + i][d + j] = a[..., j, i] * dt
        for r, vec in enumerate(rows):
            for j in range(d):
                m[2 * d + r][d + j] = vec[..., j] * dt
        if c is not None:
            m[2 * d][2 * d + len(rows) - 1] = jnp.broadcast_to(dt, batch)
        e = _expm_entries(m, batch)

        phi = [[e[d + j][d + i] for j in range(d)] for i in range(d)]
        q = _entry_matmul(phi, [row[d : 2 * d] for row in e[:d]])

        def matrix(entries):
            return jnp.stack([jnp.stack(row, -1) for row in entries], -2)

        shift = jnp.stack(e[2 * d][d : 2 * d], -1) if rows else None
        return matrix(phi), matrix(q), shift

    def bt(x, shape):
        return jnp.broadcast_to(x, batch + shape)

    gen = jnp.zeros(batch + (n, n), a.dtype)
    gen = gen.at[..., :d, :d].set(-bt(a, (d, d)))
    gen = gen.at[..., :d, d : 2 * d].set(bt(cov_rate, (d, d)))
    gen = gen.at[..., d : 2 * d, d : 2 * d].set(bt(jnp.swapaxes(a, -1, -2), (d, d)))
    for r, vec in enumerate(rows):
        gen = gen.at[..., 2 * d + r, d : 2 * d].set(bt(vec, (d,)))
    if c is not None:
        gen = gen.at[..., 2 * d, 2 * d + len(rows) - 1].set(1.0)
    e = expm(gen * dt[..., None, None])
    phi = jnp.swapaxes(e[..., d : 2 * d, d : 2 * d], -1, -2)
    shift = e[..., 2 * d, d : 2 * d] if rows else None
    return phi, phi @ e[..., :d, d : 2 * d], shift


def affine_discretisation(a, b, cov_rate, dt, c=None) -> AffineTransition:
    r"""Exact transition of $dX = (A X + b + c\,(t-t_0))dt + L dW$ over steps ``dt``.

    Parameters
    ----------
    a: ``(*batch, d, d)`` drift matrix $A$.
    b: ``(*batch, d)`` drift offset, or None for none (then ``shift`` is zero and the
        generator one row smaller).
    cov_rate: ``(*batch, d, d)`` diffusion covariance rate $\Sigma = L L^\top$.
    dt: step(s) $h > 0$, shape broadcasting with ``batch`` (e.g. ``(K, 1...)`` for ``K``
        gaps of one SDE; ``dt[:, None]`` when ``a`` has one batch dim).
    c: optional ``(*batch, d)`` drift slope in time.
    """
    d = a.shape[-1]
    dt = jnp.asarray(dt, a.dtype)
    shapes = [a.shape[:-2], cov_rate.shape[:-2], dt.shape]
    shapes += [v.shape[:-1] for v in (b, c) if v is not None]
    batch = jnp.broadcast_shapes(*shapes)
    # Q is linear in Sigma and s in (b, c): scale both to O(1) entries so that the
    # generator's norm (hence the number of squarings) reflects A h only
    cov_rate = jnp.broadcast_to(cov_rate, batch + (d, d))
    scale_q = _unit_scale(cov_rate, 2)
    cov_rate = cov_rate / scale_q[..., None, None]
    if c is not None and b is None:  # the drift's constant row carries the slope
        b = jnp.zeros_like(c)
    b, c = (None if v is None else jnp.broadcast_to(v, batch + (d,)) for v in (b, c))
    offsets = [v for v in (b, c) if v is not None]
    scale_s = _unit_scale(jnp.stack(offsets, -1), 2) if offsets else None
    b, c = (None if v is None else v / scale_s[..., None] for v in (b, c))
    phi, q, shift = _van_loan(a, b, cov_rate, c, dt, batch)
    q = q * scale_q[..., None, None]
    shift = (
        jnp.zeros(batch + (d,), phi.dtype)
        if shift is None
        else shift * scale_s[..., None]
    )
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
