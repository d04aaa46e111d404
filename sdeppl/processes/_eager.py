"""Compiled execution of a distribution's methods when they are called outside ``jit``.

Inside a NumPyro model under a sampler, a process's methods are traced into the
sampler's program. Called directly (``model.log_prob(y)`` in a script or a notebook),
JAX would run them op by op: a filter over 100 time points then takes seconds, every
call. :func:`compiled_when_eager` runs such a call as one compiled program instead,
cached by the distribution's structure, so repeated calls with new parameter values or
data reuse it.

What is static and what is traced: the distribution's concrete NumPy leaves (time
grids, fixed initial states) and non-array arguments (``sample_shape``) are part of
the compiled program, exactly as they are when the distribution is built inside a
traced model; JAX arrays (parameters, data, keys) are its arguments.
"""

from __future__ import annotations

import functools
import inspect

import jax
import numpy as np


class _Static:
    """A concrete NumPy leaf, hashed by its contents."""

    __slots__ = ("value", "_key")

    def __init__(self, value: np.ndarray):
        self.value = value
        self._key = (value.dtype.str, value.shape, value.tobytes())

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, _Static) and self._key == other._key


def _is_array(x) -> bool:
    return isinstance(x, jax.Array | np.ndarray)


@functools.lru_cache(maxsize=64)
def _program(method, treedef, static_leaves, static_args):
    """One jitted function per method, structure and static values."""

    def run(dynamic_leaves, dynamic_args):
        leaves, dynamic = [], iter(dynamic_leaves)
        for item in static_leaves:
            leaves.append(item.value if isinstance(item, _Static) else next(dynamic))
        args, dynamic = [], iter(dynamic_args)
        for item in static_args:
            args.append(next(dynamic) if item is _DYNAMIC else item)
        return method(jax.tree_util.tree_unflatten(treedef, leaves), *args)

    return jax.jit(run)


_DYNAMIC = object()


def compiled_when_eager(method):
    """Decorator: ``method(self, *args)`` runs as one compiled program (see the module
    docstring). Inside a ``jit`` trace that program is simply part of the enclosing
    one; under an eager ``grad`` or ``vmap`` (NumPyro evaluates a model's gradient
    eagerly once, to find a starting point) it spares compiling every operation on its
    own."""

    signature = inspect.signature(method)

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if kwargs:  # as positional arguments, so that the cache sees one form
            args = signature.bind(self, *args, **kwargs).args[1:]
        leaves, treedef = jax.tree_util.tree_flatten(self)
        static_leaves = tuple(
            _Static(x) if isinstance(x, np.ndarray) else None for x in leaves
        )
        dynamic_leaves = [x for x in leaves if not isinstance(x, np.ndarray)]
        static_args = tuple(_DYNAMIC if _is_array(a) else a for a in args)
        dynamic_args = [a for a in args if _is_array(a)]
        try:
            program = _program(method, treedef, static_leaves, static_args)
        except TypeError:  # an unhashable static part: run as written
            return method(self, *args)
        return program(dynamic_leaves, dynamic_args)

    return wrapper
