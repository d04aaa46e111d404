r"""Gaussian one-step transitions $x_1 \mid x_0 \sim N(m, S S^\top)$.

Every likelihood method for SDE paths (Euler–Maruyama, local linearisation, exact
linear) produces a Gaussian transition given by its mean ``m`` and a scale ``S`` of one
of three kinds, fixed statically by the method and noise type:

- ``"diag"``: ``S`` has shape ``(*batch, d)``, covariance $\mathrm{diag}(S^2)$;
- ``"tril"``: ``S`` is a lower-triangular Cholesky factor ``(*batch, d, d)``;
- ``"factor"``: ``S`` is any ``(*batch, d, m)`` matrix, covariance $S S^\top$. For
  $m \ge d$ the density takes a Cholesky factor of $S S^\top$; for $m < d$ (rank-
  deficient noise) the covariance is singular and the density is the one on the
  subspace $\text{mean} + \mathrm{range}(S)$ (see :func:`gaussian_log_prob`).

A transition is sampled non-centred, $x_1 = m + S \xi$ with $\xi \sim N(0, I_m)$, which
is the map that latent-path reparametrisation uses.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

SCALE_KINDS = ("diag", "tril", "factor")
_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_prob(x1, mean, scale, kind: str):
    r"""Log-density of $N(\text{mean}, S S^\top)$ at ``x1``, summed over the state dim.

    A non-positive ``"diag"`` scale, or a covariance whose Cholesky factorisation fails,
    gives ``-inf`` (never NaN), so an invalid diffusion is rejected by samplers.

    A ``"factor"`` scale with fewer columns $m$ than rows $d$ has a singular
    covariance; the density is then taken on the subspace it spans, with respect to
    the $m$-dimensional measure there:
    $-\tfrac12|\xi|^2 - \tfrac12\log\det(S^\top S) - \tfrac m2\log 2\pi$ with
    $\xi = (S^\top S)^{-1} S^\top (x_1 - \text{mean})$ (only the $m \times m$ Gram
    matrix is factorised). The part of the residual outside the subspace is not
    scored: under the model it is zero.

    Shapes
    ------
    x1, mean: ``(*batch, d)``; scale: as in the module docstring; returns ``(*batch,)``.
    """
    resid = x1 - mean
    if kind == "diag":
        ok = scale > 0
        safe = jnp.where(ok, scale, 1.0)
        z = resid / safe
        lp = -0.5 * (z * z) - jnp.log(safe) - 0.5 * _LOG_2PI
        return jnp.where(jnp.all(ok, axis=-1), jnp.sum(lp, axis=-1), -jnp.inf)
    if kind == "factor" and scale.shape[-1] < scale.shape[-2]:
        return _subspace_log_prob(resid, scale)
    if kind == "factor":
        cov = jnp.einsum("...ik,...jk->...ij", scale, scale)
        scale = jnp.linalg.cholesky(cov)
    elif kind != "tril":
        raise ValueError(
            f"gaussian_log_prob: kind must be one of {SCALE_KINDS}; got {kind!r}."
        )
    diag = jnp.diagonal(scale, axis1=-2, axis2=-1)
    ok = jnp.all(jnp.isfinite(scale), axis=(-2, -1)) & jnp.all(diag > 0, axis=-1)
    safe = jnp.where(
        ok[..., None, None], scale, jnp.eye(scale.shape[-1], dtype=scale.dtype)
    )
    z = solve_triangular(safe, resid[..., None], lower=True)[..., 0]
    d = resid.shape[-1]
    safe_diag = jnp.diagonal(safe, axis1=-2, axis2=-1)
    lp = -0.5 * jnp.sum(z * z, axis=-1) - jnp.sum(jnp.log(safe_diag), axis=-1)
    return jnp.where(ok, lp - 0.5 * d * _LOG_2PI, -jnp.inf)


def _subspace_log_prob(resid, factor):
    """Density of ``resid`` under $N(0, S S^\top)$ on the range of a tall ``factor``
    $S$ ``(*batch, d, m)``, $m < d$ (see :func:`gaussian_log_prob`)."""
    m = factor.shape[-1]
    gram = jnp.einsum("...ki,...kj->...ij", factor, factor)
    chol = jnp.linalg.cholesky(gram)
    diag = jnp.diagonal(chol, axis1=-2, axis2=-1)
    ok = jnp.all(jnp.isfinite(chol), axis=(-2, -1)) & jnp.all(diag > 0, axis=-1)
    safe = jnp.where(ok[..., None, None], chol, jnp.eye(m, dtype=chol.dtype))
    projected = jnp.einsum("...ki,...k->...i", factor, resid)
    w = solve_triangular(safe, projected[..., None], lower=True)
    xi = solve_triangular(safe, w, lower=True, trans="T")[..., 0]
    safe_diag = jnp.diagonal(safe, axis1=-2, axis2=-1)
    lp = -0.5 * jnp.sum(xi * xi, axis=-1) - jnp.sum(jnp.log(safe_diag), axis=-1)
    return jnp.where(ok, lp - 0.5 * m * _LOG_2PI, -jnp.inf)


def noise_for_shift(shift, scale, kind: str):
    r"""The innovation mean $\mu = S^{+} v$ that moves $m + S\xi$ by ``shift`` $v$
    ``(*batch, d)`` (least squares where $S$ has fewer columns than rows; a
    coordinate without noise cannot move: 0 there): ``(*batch, k)``."""
    if kind == "diag":
        noisy = scale != 0
        return jnp.where(noisy, shift / jnp.where(noisy, scale, 1.0), 0.0)
    if kind == "tril":
        return solve_triangular(scale, shift[..., None], lower=True)[..., 0]
    gram = jnp.einsum("...ji,...jk->...ik", scale, scale)  # S^T S, (k, k)
    rhs = jnp.einsum("...ji,...j->...i", scale, shift)
    return jnp.linalg.solve(gram, rhs[..., None])[..., 0]


def gaussian_transform(mean, scale, kind: str, xi):
    r"""Non-centred draw $m + S\xi$; ``xi`` has shape ``(*batch, k)``.

    ``k = d`` for ``"diag"`` and ``"tril"``, ``k = m`` (columns of ``S``) for
    ``"factor"``.
    """
    if kind == "diag":
        return mean + scale * xi
    return mean + jnp.einsum("...ij,...j->...i", scale, xi)
