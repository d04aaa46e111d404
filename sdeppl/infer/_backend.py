"""The backend registry: how ``sdeppl.fit`` finds and runs an inference method.

A backend is any object implementing :class:`Backend`: a name, a table of options
(defaults and validation), the requirements it puts on a model, and ``run``, which
turns a model (as a :class:`~sdeppl.infer.ModelAdapter`) into a :class:`BackendResult`
of draws and statistics. ``sdeppl.fit`` is *validate -> run -> shared post-processing*
(log-likelihoods, predictive draws, forecasts, latent paths, ``InferenceData``), so a
backend never deals with any of that. Recipes, :func:`~sdeppl.sbc` and the backend
tests iterate over :func:`backends`; a new one is one file that calls
:func:`register_backend`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import numpy as np


class Option(NamedTuple):
    """A backend option: its default, a check that returns the cleaned value or
    raises ``ValueError`` with a message (``check(value) -> value``), and a help
    line."""

    default: Any
    check: Callable[[Any], Any]
    help: str


def int_option(default: int, minimum: int, help: str) -> Option:
    """An integer option ``>= minimum``."""

    def check(value):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | np.integer)
            or value < minimum
        ):
            raise ValueError(f"must be an int >= {minimum}; got {value!r}")
        return int(value)

    return Option(default, check, help)


def optional_int_option(default: int | None, minimum: int, help: str) -> Option:
    """An integer option ``>= minimum``, or ``None`` (the method's own choice)."""

    as_int = int_option(minimum, minimum, help).check

    def check(value):
        if value is None:
            return None
        try:
            return as_int(value)
        except ValueError:
            raise ValueError(
                f"must be None or an int >= {minimum}; got {value!r}"
            ) from None

    return Option(default, check, help)


def float_option(default: float, low: float, high: float, help: str) -> Option:
    """A float option in the open interval ``(low, high)``."""

    def check(value):
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise ValueError(f"must be a number in ({low}, {high}); got {value!r}")
        if not low < float(value) < high:
            raise ValueError(f"must be in ({low}, {high}); got {value!r}")
        return float(value)

    return Option(default, check, help)


def bool_option(default: bool, help: str) -> Option:
    def check(value):
        if not isinstance(value, bool | np.bool_):
            raise ValueError(f"must be True or False; got {value!r}")
        return bool(value)

    return Option(default, check, help)


def choice_option(default: str, choices: tuple[str, ...], help: str) -> Option:
    def check(value):
        if value not in choices:
            raise ValueError(f"must be one of {choices}; got {value!r}")
        return value

    return Option(default, check, help)


class BackendResult(NamedTuple):
    """What a backend returns to ``sdeppl.fit``.

    Attributes
    ----------
    draws: constrained values of every latent and deterministic site, arrays shaped
        ``(chain, draw, ...)``.
    sample_stats: per-draw statistics ``(chain, draw)`` in ArviZ names (``diverging``,
        ``energy``, ``lp``, ``tree_depth``, ...; ``log_weight`` for importance
        log-weights of the draws against the posterior).
    tuning: adapted settings (step size, mass matrix, ...) for the run's metadata.
    checks: extra diagnostics rows ``(check, value, status, advice)`` that only this
        backend can judge (e.g. an optimiser's convergence); shown beside the generic
        checks in :meth:`Fit.diagnostics` and the report.
    info: JSON-serialisable facts for the run's metadata (e.g. a log-evidence).
    independent_draws: True when draws are independent (not a Markov chain): R-hat
        and ESS then do not apply.
    model_keys: for models with a random density (particle filters), the raw key
        data ``(chain, draw, 2)`` (uint32) of the estimate kept with each draw; the
        shared post-processing runs the model under ``seed`` with it, so pointwise
        log-likelihoods and latent paths come from the very particle system the
        chain accepted. None: the model is seeded with 0.
    step_stats: statistics of an optimiser's steps, ``{name: (chain, step)}`` (the
        ELBO of variational inference); stored in ``sample_stats`` with a ``step``
        dim (numbered from 1) instead of ``draw``.
    """

    draws: dict
    sample_stats: dict
    tuning: dict = {}
    checks: tuple = ()
    info: dict = {}
    independent_draws: bool = False
    model_keys: np.ndarray | None = None
    step_stats: dict = {}


@runtime_checkable
class Backend(Protocol):
    """An inference method for ``sdeppl.fit``.

    Attributes
    ----------
    name: the ``method=`` of ``sdeppl.fit``.
    summary: one line for listings.
    options: ``{name: Option}``; ``fit`` validates user values with them.
    needs_gradients: the method differentiates the log-density.
    discrete_latent: the method handles discrete latent sites (by enumeration).
    jittable: :meth:`draws` exists (pure and jit-able; used by SBC).
    estimated_density: (optional, default False) the method works with a random,
        unbiased estimate of the likelihood (particle filters), which it evaluates
        with :meth:`~sdeppl.infer.ModelAdapter.seeded_logdensity`.
    """

    name: str
    summary: str
    options: dict
    needs_gradients: bool
    discrete_latent: bool
    jittable: bool

    def check(self, options: dict) -> None:
        """Checks across options (each option is already valid on its own)."""

    def run(self, model, key, options: dict, progress: bool) -> BackendResult:
        """Run on ``model`` (a :class:`~sdeppl.infer.ModelAdapter`)."""

    def draws(self, model, key, options: dict) -> dict:
        """One chain's constrained draws ``(draw, ...)`` as a pure, jit-able function
        (when :attr:`jittable`)."""


_REGISTRY: dict[str, Backend] = {}


def register_backend(backend: Backend, *, replace: bool = False) -> Backend:
    """Make ``backend`` available as ``sdeppl.fit(..., method=backend.name)``.

    Raises
    ------
    TypeError: if ``backend`` does not implement :class:`Backend`.
    ValueError: if the name is taken (unless ``replace=True``).
    """
    if not isinstance(backend, Backend):
        missing = [
            n
            for n in (
                "name",
                "summary",
                "options",
                "needs_gradients",
                "discrete_latent",
                "jittable",
                "check",
                "run",
                "draws",
            )
            if not hasattr(backend, n)
        ]
        raise TypeError(
            f"register_backend: {type(backend).__name__} does not implement the "
            f"Backend protocol; missing {missing}."
        )
    if backend.name in _REGISTRY and not replace:
        raise ValueError(
            f"register_backend: a backend named {backend.name!r} exists; pass "
            "replace=True to replace it."
        )
    _REGISTRY[backend.name] = backend
    return backend


def backends() -> dict[str, Backend]:
    """The registered backends by name (a copy)."""
    _load_builtin()
    return dict(_REGISTRY)


def get_backend(name: str, owner: str = "fit") -> Backend:
    """The backend registered as ``name``, or a ``ValueError`` listing them."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(
            f"{owner}: unknown method {name!r}; expected one of {tuple(_REGISTRY)}."
        )
    return _REGISTRY[name]


def resolve_options(backend: Backend, given: dict, owner: str = "fit") -> dict:
    """Defaults of ``backend`` updated with ``given``, each value checked."""
    unknown = set(given) - set(backend.options)
    if unknown:
        raise ValueError(
            f"{owner}: method={backend.name!r} has no option(s) {sorted(unknown)}; "
            f"its options are {sorted(backend.options)}."
        )
    out = {}
    for name, option in backend.options.items():
        value = given.get(name, option.default)
        try:
            out[name] = option.check(value)
        except ValueError as e:
            raise ValueError(f"{owner}: {name} {e}.") from None
    try:
        backend.check(out)
    except ValueError as e:
        raise ValueError(f"{owner}: {e}") from None
    return out


def _load_builtin() -> None:
    """Register the built-in backends (their modules register themselves)."""
    from . import map as _map  # noqa: F401
    from . import mcmc as _mcmc  # noqa: F401
    from . import particle_gibbs as _particle_gibbs  # noqa: F401
    from . import pmmh as _pmmh  # noqa: F401
    from . import smc as _smc  # noqa: F401
    from . import vi as _vi  # noqa: F401


#: The independent uses of a run's key: a backend draws from ``"sampler"`` only.
STREAMS = ("sampler", "latent", "predictive", "one_step", "forecast", "prior")


def stream_key(key, name: str):
    """The independent key for one use of the run's key (:data:`STREAMS`); cheap
    inside compiled programs, which is where it is called (one split, no extra
    compile)."""
    return jax.random.split(key, len(STREAMS))[STREAMS.index(name)]
