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


def check_value_shape(
    value, event_shape, batch_shape, owner: str, timed: bool = True
) -> None:
    """Raise a ``ValueError`` unless ``value`` ends in ``event_shape`` (the time axis
    first) and its leading dims broadcast with ``batch_shape``; with a hint for the
    usual mistakes (series-major data, one big state instead of many series)."""
    shape, event = tuple(jnp.shape(value)), tuple(event_shape)
    n = len(event)
    if len(shape) >= n and shape[len(shape) - n :] == event:
        try:
            jnp.broadcast_shapes(shape[: len(shape) - n], tuple(batch_shape))
            return
        except ValueError:
            raise ValueError(
                f"{owner}: the value's leading dims {shape[: len(shape) - n]} do not "
                f"broadcast with the batch shape {tuple(batch_shape)}."
            ) from None
    if not timed:
        raise ValueError(
            f"{owner}: the value must end in the event shape {event}; got {shape}."
        )
    layout = ", ".join([f"T={event[0]}"] + [str(size) for size in event[1:]])
    hint = ""
    if n == 2 and len(shape) >= 2 and shape[-2] == event[1]:
        hint = f" Time must come first: shape ({event[0]}, {event[1]})."
        if event[1] > 4:
            hint += (
                f" If these are {event[1]} independent series rather than one "
                f"{event[1]}-dimensional state, give the parameters a batch axis of "
                f"{event[1]} and x0 a scalar (or a distribution with that batch), and "
                f"pass data of shape ({event[1]}, {event[0]}): see docs/many-series.md."
            )
    elif n == 1 and len(shape) >= 1:
        hint = (
            f" ts has {event[0]} times; the value has {shape[-1]} along its last axis."
        )
    raise ValueError(
        f"{owner}: the value must have shape (..., {layout}) (time first, then the "
        f"state or observation dims); got {shape}.{hint}"
    )
