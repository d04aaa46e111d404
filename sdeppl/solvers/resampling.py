r"""Resampling of weighted particles: static-shape, jit- and vmap-able.

A resampler maps normalised weights $W_{1:N}$ to ancestor indices $a_{1:M}$ with
$E[\#\{j : a_j = i\}] = M W_i$ (unbiased). All four take *log* weights, which need not
be normalised, so that a caller never exponentiates unnormalised values:

- ``multinomial``: $a_j$ i.i.d. from $W$ (the reference; the highest variance);
- ``stratified``: one uniform in each stratum $[(j-1)/M, j/M)$;
- ``systematic``: one uniform shared by all strata (the usual default: lowest
  variance in practice, but not ordering-invariant);
- ``residual``: $\lfloor M W_i \rfloor$ copies of each particle, the rest multinomial
  on the remainders.

Log weights that are all $-\infty$ (every particle impossible) resample uniformly:
the caller's log-evidence is then $-\infty$, and nothing downstream sees NaN.

Reference: Douc, Cappé and Moulines (2005), *Comparison of resampling schemes for
particle filtering*; Chopin and Papaspiliopoulos (2020), *An Introduction to Sequential
Monte Carlo*, ch. 9.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def normalise(log_weights):
    r"""Normalised log weights $\log W_i$ and $\log \sum_i e^{\ell_i}$, shape
    ``(..., N)`` and ``(...)``; all-$-\infty$ weights become uniform (their log-sum
    stays $-\infty$)."""
    total = jax.scipy.special.logsumexp(log_weights, axis=-1)
    finite = jnp.isfinite(total)
    safe = jnp.where(finite, total, 0.0)[..., None]
    uniform = -jnp.log(log_weights.shape[-1]) * jnp.ones_like(log_weights)
    return jnp.where(finite[..., None], log_weights - safe, uniform), total


def ess(log_weights):
    r"""Effective sample size $1 / \sum_i W_i^2$ of ``(..., N)`` log weights."""
    log_w, _ = normalise(log_weights)
    return jnp.exp(-jax.scipy.special.logsumexp(2.0 * log_w, axis=-1))


def _inverse_cdf(log_weights, uniforms):
    """Indices ``i`` with ``cdf[i-1] <= u < cdf[i]`` for sorted ``uniforms`` in
    [0, 1)."""
    log_w, _ = normalise(log_weights)
    cdf = jnp.cumsum(jnp.exp(log_w))
    idx = jnp.searchsorted(cdf, uniforms * cdf[-1], side="right")
    return jnp.clip(idx, 0, log_weights.shape[-1] - 1).astype(jnp.int32)


def multinomial(key, log_weights, num: int | None = None):
    """``num`` (default ``N``) i.i.d. ancestor indices from ``(N,)`` log weights."""
    num = log_weights.shape[-1] if num is None else num
    # sorted uniforms by normalised exponential spacings: one pass, no sort
    spacings = jax.random.exponential(key, (num + 1,), log_weights.dtype)
    uniforms = jnp.cumsum(spacings)[:-1] / jnp.sum(spacings)
    return _inverse_cdf(log_weights, uniforms)


def _from_counts(below, num: int):
    r"""Ancestors from ``below[i]`` = how many of the sorted uniforms $u_j$ fall
    below ``cdf[i]``: $a_j = \#\{i : \text{below}_i \le j\}$ (a bincount and a
    cumulative sum: $O(N)$, no binary search)."""
    counts = jnp.zeros(num + 1, jnp.int32).at[below].add(1)
    return jnp.clip(jnp.cumsum(counts)[:num], 0, below.shape[-1] - 1)


def _cdf(log_weights):
    log_w, _ = normalise(log_weights)
    cdf = jnp.cumsum(jnp.exp(log_w))
    return cdf / cdf[-1]


def stratified(key, log_weights, num: int | None = None):
    """Stratified resampling: one uniform per stratum of width ``1 / num``,
    $u_j = (j + U_j) / M$."""
    num = log_weights.shape[-1] if num is None else num
    offsets = jax.random.uniform(key, (num,), log_weights.dtype)
    scaled = _cdf(log_weights) * num
    stratum = jnp.floor(scaled).astype(jnp.int32)  # u_j < cdf_i for every j < it,
    extra = offsets[jnp.clip(stratum, 0, num - 1)] < scaled - stratum  # and maybe it
    return _from_counts(jnp.clip(stratum + extra, 0, num), num)


def systematic(key, log_weights, num: int | None = None):
    """Systematic resampling: one uniform shared by all ``num`` strata,
    $u_j = (j + U) / M$."""
    num = log_weights.shape[-1] if num is None else num
    offset = jax.random.uniform(key, (), log_weights.dtype)
    below = jnp.ceil(_cdf(log_weights) * num - offset).astype(jnp.int32)
    return _from_counts(jnp.clip(below, 0, num), num)


def residual(key, log_weights, num: int | None = None):
    r"""Residual resampling: $\lfloor M W_i \rfloor$ deterministic copies, the other
    $M - \sum_i \lfloor M W_i \rfloor$ indices multinomial on the remainders."""
    num = log_weights.shape[-1] if num is None else num
    log_w, _ = normalise(log_weights)
    expected = num * jnp.exp(log_w)
    copies = jnp.floor(expected).astype(jnp.int32)
    kept = jnp.sum(copies)
    fixed = jnp.repeat(
        jnp.arange(log_weights.shape[-1], dtype=jnp.int32),
        copies,
        total_repeat_length=num,
    )
    remainder = jnp.log(jnp.clip(expected - copies, 0.0, None))
    # i.i.d. and unsorted: the first num - kept of them are a sample of that size
    rest = _inverse_cdf(remainder, jax.random.uniform(key, (num,), log_weights.dtype))
    return jnp.where(jnp.arange(num) < kept, fixed, rest)


#: The resampling schemes by name (``resampling=`` of the particle methods).
RESAMPLERS: dict[str, Callable] = {
    "multinomial": multinomial,
    "stratified": stratified,
    "systematic": systematic,
    "residual": residual,
}


def get_resampler(name: str, owner: str = "resampling") -> Callable:
    """The resampler called ``name``, or a ``ValueError`` listing them."""
    if name not in RESAMPLERS:
        raise ValueError(
            f"{owner}: unknown resampling {name!r}; expected one of "
            f"{tuple(RESAMPLERS)}."
        )
    return RESAMPLERS[name]


def offspring_counts(indices, num_particles: int):
    """How many times each of ``num_particles`` particles was drawn, ``(N,)``."""
    return jnp.zeros(num_particles, jnp.int32).at[indices].add(1)


def stop_gradient_log_weights(log_weights, indices):
    r"""Log weights after resampling that are uniform in value and keep the gradient
    of the ancestors' weights (Ścibior and Wood, 2021):
    $\ell'_j = \ell_{a_j} - \operatorname{sg}(\ell_{a_j}) - \log M$.

    The forward pass equals ordinary resampling; differentiating a log-evidence
    estimate built on these weights gives a consistent estimate of the score
    (Fisher's identity), where resetting to constant weights drops the resampling's
    dependence on the parameters.
    """
    ancestors = log_weights[indices]
    ancestors = jnp.where(jnp.isfinite(ancestors), ancestors, 0.0)
    return ancestors - jax.lax.stop_gradient(ancestors) - jnp.log(indices.shape[-1])
