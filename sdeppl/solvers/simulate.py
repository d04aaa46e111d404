"""Simulation of SDE paths on arbitrary time grids with a choice of stepper.

A scheme is an immutable :class:`Scheme` value that declares what it can do (strong and
weak order, noise types, whether it needs additive noise) as data; :func:`simulate`
drives any scheme with ``jax.lax.scan``. The path is reported at the given times ``ts``
(irregular grids allowed); ``substeps`` extra equal steps are taken between consecutive
times, so a coarse output grid can be simulated finely.

Randomness: one key per step, split from the caller's key up front, so the same key
always gives the same path, and the normals of a step are drawn for the whole batch of
paths at once (the generator, not the drift, bounds throughput; see
``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._terms import Diffusion
from .euler import euler_step
from .milstein import milstein_step
from .sra1 import sra1_increments, sra1_step


def _gaussian_increments(u, h):
    return jnp.sqrt(h) * u[0]


class Scheme(NamedTuple):
    """A stepper and its declared capabilities.

    Attributes
    ----------
    name: registry key.
    step: ``step(drift, diffusion, t0, t1, x0, dw) -> x1``.
    increments: ``increments(u, h) -> dw`` from standard normals ``u`` of shape
        ``(num_normals, *batch, m)``.
    num_normals: standard normals per Brownian motion per step.
    strong_order, weak_order: convergence orders under the scheme's assumptions.
    noise_types: noise structures the scheme accepts.
    needs_additive: True if the orders require a state-independent diffusion.
    """

    name: str
    step: Callable
    increments: Callable
    num_normals: int
    strong_order: float
    weak_order: float
    noise_types: tuple[str, ...]
    needs_additive: bool


SCHEMES: dict[str, Scheme] = {
    "euler": Scheme(
        "euler",
        euler_step,
        _gaussian_increments,
        1,
        0.5,
        1.0,
        ("diagonal", "general"),
        False,
    ),
    "milstein": Scheme(
        "milstein",
        milstein_step,
        _gaussian_increments,
        1,
        1.0,
        1.0,
        ("diagonal",),
        False,
    ),
    "sra1": Scheme(
        "sra1", sra1_step, sra1_increments, 2, 1.5, 2.0, ("diagonal", "general"), True
    ),
}


def get_scheme(scheme: str | Scheme, diffusion: Diffusion) -> Scheme:
    """Look up a scheme by name and check it accepts this diffusion's noise."""
    if isinstance(scheme, str):
        if scheme not in SCHEMES:
            raise ValueError(
                f"simulate: unknown scheme {scheme!r}; "
                f"expected one of {tuple(SCHEMES)}."
            )
        scheme = SCHEMES[scheme]
    if diffusion.noise not in scheme.noise_types:
        raise ValueError(
            f"simulate: scheme {scheme.name!r} accepts noise {scheme.noise_types}; "
            f"this SDE has noise={diffusion.noise!r}. Use scheme='euler'."
        )
    if scheme.needs_additive and not diffusion.additive:
        raise ValueError(
            f"simulate: scheme {scheme.name!r} needs additive noise (a diffusion that "
            "does not depend on the state); declare SDE(..., additive=True) if that "
            "holds, or use scheme='euler' or 'milstein'."
        )
    return scheme


def noise_dim(diffusion: Diffusion, t0, x0) -> int:
    """Number of Brownian motions driving the SDE at state ``x0`` ``(*batch, d)``."""
    if diffusion.noise == "diagonal":
        return x0.shape[-1]
    return jax.eval_shape(diffusion.fn, t0, x0).shape[-1]


def simulate(
    scheme: Scheme, drift, diffusion: Diffusion, ts, x0, key, substeps: int = 0
):
    """Simulate one (batched) path and report it at times ``ts``.

    Parameters
    ----------
    scheme: a :class:`Scheme` (see :data:`SCHEMES`).
    drift: ``drift(t, x) -> (*batch, d)``.
    diffusion: a :class:`~sdeppl.solvers._terms.Diffusion`.
    ts: ``(T,)`` strictly increasing output times; ``ts[0]`` is the start.
    x0: ``(*batch, d)`` initial state; every leading dim is an independent path.
    key: PRNG key.
    substeps: extra equal steps between consecutive output times.

    Returns
    -------
    ``(T, *batch, d)`` states at ``ts`` (``x0`` first).
    """
    num_intervals = ts.shape[0] - 1
    num_sub = substeps + 1
    m = noise_dim(diffusion, ts[0], x0)
    normal_shape = (scheme.num_normals,) + x0.shape[:-1] + (m,)
    keys = jax.random.split(key, num_intervals * num_sub).reshape(
        (num_intervals, num_sub) + key.shape
    )
    dts = (ts[1:] - ts[:-1]) / num_sub

    def interval(x, args):
        t_start, h, keys_k = args

        def fine_step(x, args_j):
            j, key_j = args_j
            t0 = t_start + j * h
            u = jax.random.normal(key_j, normal_shape, x.dtype)
            return scheme.step(
                drift, diffusion, t0, t0 + h, x, scheme.increments(u, h)
            ), None

        x, _ = jax.lax.scan(fine_step, x, (jnp.arange(num_sub), keys_k))
        return x, x

    _, xs = jax.lax.scan(interval, x0, (ts[:-1], dts, keys))
    return jnp.concatenate([x0[None], xs], axis=0)
