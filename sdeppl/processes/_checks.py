"""Input checks shared by the process primitives (run outside ``jit``, on concrete
values)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(*values) -> bool:
    """True when no leaf of ``values`` is a JAX tracer (so it can be checked
    eagerly)."""
    leaves = jax.tree_util.tree_leaves(values)
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)


def float_dtype():
    """The default float dtype (float64 when ``jax_enable_x64`` is on)."""
    return jnp.result_type(float)


def check_times(ts, owner: str):
    """Check ``ts`` is a strictly increasing ``(T,)`` grid and return it as a float
    array.

    Concrete input (NumPy, Python or a concrete JAX array) is checked and returned as a
    NumPy array, so that it stays concrete inside ``jit``-traced model code (JAX turns
    ``jnp.asarray`` of a constant into a tracer there); traced input is returned as is.
    """
    if isinstance(ts, jax.core.Tracer):
        if ts.ndim != 1 or ts.shape[0] < 2:
            raise ValueError(
                f"{owner}: ts must be a 1-D time grid of length >= 2, shape (T,); "
                f"got shape {ts.shape}. Pass one time grid; batch over parameters "
                "instead."
            )
        return (
            ts if jnp.issubdtype(ts.dtype, jnp.floating) else ts.astype(float_dtype())
        )
    t = np.asarray(ts)
    t = t.astype(
        t.dtype
        if np.issubdtype(t.dtype, np.floating)
        and t.dtype.itemsize <= np.dtype(float_dtype()).itemsize
        else float_dtype()
    )
    if t.ndim != 1 or t.shape[0] < 2:
        raise ValueError(
            f"{owner}: ts must be a 1-D time grid of length >= 2, shape (T,); "
            f"got shape {t.shape}. Pass one time grid; batch over parameters instead."
        )
    if not np.all(np.isfinite(t)):
        raise ValueError(
            f"{owner}: ts must be finite; got non-finite values at "
            f"{np.flatnonzero(~np.isfinite(t))[:5]}."
        )
    bad = np.flatnonzero(np.diff(t) <= 0)
    if bad.size:
        k = int(bad[0])
        raise ValueError(
            f"{owner}: ts must be strictly increasing; got ts[{k}]={float(t[k])} >= "
            f"ts[{k + 1}]={float(t[k + 1])}. Sort the times and drop repeated ones."
        )
    return t
