"""The time-series protocol: what inference, diagnostics and the report need from a
process.

A distribution over a time series (``sp.Path``, ``sp.StateSpace``, and every family
after them) implements :class:`TimeSeries`. ``sdeppl.fit`` recognises a sample site
whose distribution implements it (:func:`series_of`) and then, using nothing but the
protocol, gives the site a time coordinate in the ``InferenceData``, stores one
log-likelihood term per observed time (PSIS-LOO leaves out one step at a time), draws
one-step-ahead predictions (the residual check for time series), forecasts, and
latent-path draws. A new family is a time series by implementing these members; no
code in ``infer/``, ``diagnostics/`` or ``report/`` names its class.

The names of the variables derived from a site are defined here, once
(:data:`SUFFIXES`, :func:`derived_name`, :func:`split_derived_name`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from numpyro.distributions import ExpandedDistribution

#: Variables derived from a site ``name`` are ``name + SUFFIXES[kind]``:
#:
#: - ``latent``: the latent path drawn given the data and each posterior draw (a
#:   state-space site), or the centred latent points of an augmented path;
#: - ``forecast``: continuations beyond the last time;
#: - ``one_step``: one-step-ahead predictive draws;
#: - ``noise``, ``bridge``: standard-normal innovations of a non-centred latent path and
#:   of the latent points between coarse observations (a parametrisation, not a
#:   quantity of interest);
#: - ``x0``: the initial state of a non-centred latent path;
#: - ``fine``: a centred latent path on its fine grid.
SUFFIXES = {
    "latent": "_latent",
    "forecast": "_forecast",
    "one_step": "_one_step",
    "noise": "_noise",
    "bridge": "_bridge",
    "x0": "_x0",
    "fine": "_fine",
}

#: Derived kinds left out of convergence checks: innovations are a parametrisation
#: (the values they produce are checked instead), and latent draws given each
#: posterior draw say nothing about mixing that the parameters do not.
UNCHECKED_KINDS = ("noise", "bridge", "latent")

#: Derived kinds that carry the time axis of their site.
TIMED_KINDS = ("latent", "forecast", "one_step")


def derived_name(name: str, kind: str) -> str:
    """The variable holding the ``kind`` (a key of :data:`SUFFIXES`) of site
    ``name``."""
    return name + SUFFIXES[kind]


def split_derived_name(var: str, sites) -> tuple[str, str | None]:
    """``(site, kind)`` when ``var`` is a timed derived variable (:data:`TIMED_KINDS`)
    of one of ``sites``, else ``(var, None)``."""
    for kind in TIMED_KINDS:
        suffix = SUFFIXES[kind]
        if var.endswith(suffix) and var[: -len(suffix)] in sites:
            return var[: -len(suffix)], kind
    return var, None


def unchecked_suffixes() -> tuple[str, ...]:
    """Suffixes of the variables :data:`UNCHECKED_KINDS`."""
    return tuple(SUFFIXES[k] for k in UNCHECKED_KINDS)


@runtime_checkable
class TimeSeries(Protocol):
    """A distribution over a time series, as ``sdeppl.fit`` and the report see it.

    Attributes
    ----------
    ts: ``(T,)`` times of the values.
    value_dim: name of the trailing dim of a value (``"state"``, ``"obs"``), or None
        when the value at one time is a scalar (value ``(..., T)``).
    latent_dim: the same for the latent state drawn by :meth:`sample_latent`.
    has_latent: whether :meth:`sample_latent` draws a hidden path (state-space
        models); a process observed directly has none.
    pointwise: whether :meth:`pointwise_log_prob` exists for observed values (False
        for a path whose density needs latent points, e.g. data augmentation).

    Methods take ``value`` with shape ``(*batch, T, ...)`` (leading plate dims
    allowed) and keys for their randomness.
    """

    ts: object

    @property
    def value_dim(self) -> str | None: ...

    @property
    def latent_dim(self) -> str | None: ...

    @property
    def has_latent(self) -> bool: ...

    @property
    def pointwise(self) -> bool: ...

    def pointwise_log_prob(self, value):
        """Per-time terms of ``log_prob``, ``(..., T)``."""

    def informative_mask(self, value) -> np.ndarray:
        """``(T,)`` mask of the terms that depend on the parameters (concrete
        data)."""

    def one_step_sample(self, key, value):
        """Draws of every value from its one-step-ahead predictive; shape of
        ``value``."""

    def forecast(self, key, value, future_ts):
        """Continuations at ``future_ts`` (``(F,)``) after the last time."""

    def sample_latent(self, key, value):
        """One draw of the hidden path given ``value`` (when :attr:`has_latent`)."""


def series_of(fn) -> TimeSeries | None:
    """The time series behind a sample site's distribution (through ``expand``), or
    None."""
    base = fn.base_dist if isinstance(fn, ExpandedDistribution) else fn
    return base if isinstance(base, TimeSeries) else None
