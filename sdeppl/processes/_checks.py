"""Input checks shared by the process primitives (run outside ``jit``, on concrete values)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(*values) -> bool:
    """True when no leaf of ``values`` is a JAX tracer (so it can be checked eagerly)."""
    leaves = jax.tree_util.tree_leaves(values)
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)


def float_dtype():
    """The default float dtype (float64 when ``jax_enable_x64`` is on)."""
    return jnp.result_type(float)


def check_times(ts, owner: str):
    """Return ``ts`` as a float array after checking it is a strictly increasing ``(T,)`` grid."""
    ts = jnp.asarray(ts)
    if not jnp.issubdtype(ts.dtype, jnp.floating):
        ts = ts.astype(float_dtype())
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(
            f"{owner}: ts must be a 1-D time grid of length >= 2, shape (T,); got shape "
            f"{ts.shape}. Pass one time grid; batch over parameters instead."
        )
    if is_concrete(ts):
        t = np.asarray(ts)
        if not np.all(np.isfinite(t)):
            raise ValueError(f"{owner}: ts must be finite; got non-finite values at {np.flatnonzero(~np.isfinite(t))[:5]}.")
        bad = np.flatnonzero(np.diff(t) <= 0)
        if bad.size:
            k = int(bad[0])
            raise ValueError(
                f"{owner}: ts must be strictly increasing; got ts[{k}]={float(t[k])} >= "
                f"ts[{k + 1}]={float(t[k + 1])}. Sort the times and drop repeated ones."
            )
    return ts


def uniform_step(t0s, t1s):
    """The common step if every ``t1s - t0s`` is equal (concrete grids only), else None."""
    if not is_concrete(t0s, t1s):
        return None
    dts = np.asarray(t1s) - np.asarray(t0s)
    if dts.size and np.allclose(dts, dts[0], rtol=1e-12, atol=0.0):
        return jnp.asarray(dts[0], dtype=jnp.result_type(t0s))
    return None
