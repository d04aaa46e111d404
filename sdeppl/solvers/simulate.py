"""Simulation of paths on arbitrary time grids with any :class:`Transition`.

:func:`simulate` drives a transition's non-centred map with ``jax.lax.scan``; the
scheme (Euler–Maruyama, Milstein, SRA1, or an exact transition) is a
:class:`~sdeppl.solvers.transitions.Transition` from
:data:`~sdeppl.solvers.transitions.TRANSITIONS` or a builder such as
:func:`~sdeppl.solvers.transitions.affine_transition`. The path is reported at the
given times ``ts`` (irregular grids allowed); ``substeps`` extra equal steps are taken
between consecutive times, so a coarse output grid can be simulated finely.

Randomness: one key per step, split from the caller's key up front, so the same key
always gives the same path, and the normals of a step are drawn for the whole batch of
paths at once (the generator, not the drift, bounds throughput; see
``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .transitions import Transition


def fine_grid(ts, substeps: int, xp=jnp):
    """``ts`` with ``substeps`` equal steps inserted in every gap, shape
    ``((T - 1) * (substeps + 1) + 1,)``; ``xp`` is ``jnp`` or ``numpy``."""
    if not substeps:
        return ts
    frac = xp.arange(substeps + 1, dtype=ts.dtype) / (substeps + 1)
    inner = ts[:-1, None] + (ts[1:] - ts[:-1])[:, None] * frac
    return xp.concatenate([inner.reshape(-1), ts[-1:]])


def simulate(transition: Transition, ts, x0, key, substeps: int = 0):
    """Simulate one (batched) path and report it at times ``ts``.

    Parameters
    ----------
    transition: a :class:`~sdeppl.solvers.transitions.Transition`.
    ts: ``(T,)`` strictly increasing output times; ``ts[0]`` is the start.
    x0: ``(*batch, d)`` initial state; every leading dim is an independent path.
    key: PRNG key.
    substeps: extra equal steps between consecutive output times.

    Returns
    -------
    ``(T, *batch, d)`` states at ``ts`` (``x0`` first).
    """
    num_intervals, num_sub = ts.shape[0] - 1, substeps + 1
    fine = fine_grid(ts, substeps)
    coef = transition.coefficients(fine[:-1], fine[1:])  # leading axis: fine steps

    def per_interval(a):  # (intervals * substeps, ...) -> (intervals, substeps, ...)
        return a.reshape((num_intervals, num_sub) + a.shape[1:])

    keys = jax.random.split(key, num_intervals * num_sub)

    def interval(x, args):
        def fine_step(x, args_j):
            t0, t1, key_j, coef_j = args_j
            return transition.sample(key_j, t0, t1, x, coef_j), None

        x, _ = jax.lax.scan(fine_step, x, args)
        return x, x

    xs = (fine[:-1], fine[1:], keys, coef)
    _, out = jax.lax.scan(interval, x0, jax.tree_util.tree_map(per_interval, xs))
    return jnp.concatenate([x0[None], out], axis=0)
