"""Conversion of sampler output to ArviZ ``InferenceData`` with named dims and time
coords."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:  # ArviZ (and the matplotlib it imports) loads when a result is made
    import arviz as az


class PathCoords(NamedTuple):
    """How a time-series variable is laid out.

    ``value_dim``: name of the trailing dim of its values (None for scalar values);
    ``latent_dim``: the same for an integrated-out latent state (state-space models).
    """

    ts: np.ndarray
    value_dim: str | None
    latent_dim: str | None
    batch_ndim: int


def _time_dim_names(paths: dict[str, PathCoords]) -> dict[str, str]:
    """One shared ``time`` coordinate when all paths share their times, else
    ``{name}_time``."""
    grids = [tuple(np.asarray(p.ts).round(12)) for p in paths.values()]
    if len(set(grids)) <= 1:
        return {name: "time" for name in paths}
    return {name: f"{name}_time" for name in paths}


def path_dims(
    name: str, shape: tuple, paths: dict[str, PathCoords], time_names: dict[str, str]
):
    """Dims of a per-draw value of variable ``name`` (shape without chain/draw), or
    None."""
    base, suffix = name, ""
    for candidate in ("_forecast", "_one_step", "_latent"):
        if name.endswith(candidate) and name[: -len(candidate)] in paths:
            base, suffix = name[: -len(candidate)], candidate
    if base not in paths:
        return None
    p = paths[base]
    time = f"{time_names[base]}_forecast" if suffix == "_forecast" else time_names[base]
    trailing = p.latent_dim if suffix == "_latent" else p.value_dim
    tail = [time] if trailing is None else [time, trailing]
    axis = len(shape) - len(tail)
    if axis < 0 or (suffix != "_forecast" and shape[axis] != len(p.ts)):
        return None  # not on the time grid (e.g. the fine grid of an augmented path)
    lead = [f"{name}_dim_{i}" for i in range(axis)]
    return lead + tail


def to_inference_data(
    posterior: dict,
    sample_stats: dict,
    observed_data: dict,
    prior: dict | None = None,
    log_likelihood: dict | None = None,
    posterior_predictive: dict | None = None,
    paths: dict[str, PathCoords] | None = None,
    forecast_times: dict[str, np.ndarray] | None = None,
    log_likelihood_times: dict[str, np.ndarray] | None = None,
    metadata: dict | None = None,
    step_stats: dict | None = None,
) -> az.InferenceData:
    """Build an ``InferenceData`` from arrays shaped ``(chain, draw, ...)``.

    Path-valued variables (posterior, predictive, observed, pointwise log-likelihood)
    get dims ``(..., time[, state])`` with the model's times as the ``time``
    coordinate; forecasts get a ``time_forecast`` coordinate. ``step_stats``
    (``{name: (chain, step)}``, an optimiser's trace) join ``sample_stats`` with a
    ``step`` dim. ``metadata`` is stored as JSON in the ``sdeppl`` attribute of every
    group.
    """
    import arviz as az

    paths = paths or {}
    time_names = _time_dim_names(paths)
    coords: dict[str, np.ndarray] = {}
    for name, p in paths.items():
        coords[time_names[name]] = np.asarray(p.ts)
    for name, ts in (forecast_times or {}).items():
        coords[f"{time_names[name]}_forecast"] = np.asarray(ts)
    dims: dict[str, list[str]] = {}

    def add_dims(group: dict, per_draw_offset: int):
        for name, value in group.items():
            d = path_dims(name, np.shape(value)[per_draw_offset:], paths, time_names)
            if d is not None:
                dims[name] = d

    add_dims(posterior, 2)
    add_dims(observed_data, 0)
    if posterior_predictive:
        add_dims(posterior_predictive, 2)
    ll_dims = {}
    for name, value in (log_likelihood or {}).items():
        if log_likelihood_times and name in log_likelihood_times:
            coord = f"{name}_obs_time"
            coords[coord] = np.asarray(log_likelihood_times[name])
            lead = [f"{name}_ll_dim_{i}" for i in range(np.ndim(value) - 3)]
            ll_dims[name] = lead + [coord]
    attrs = {"sdeppl": json.dumps(metadata or {}, default=str)}
    idata = az.from_dict(
        posterior={k: np.asarray(v) for k, v in posterior.items()},
        sample_stats={k: np.asarray(v) for k, v in sample_stats.items()},
        observed_data={k: np.asarray(v) for k, v in observed_data.items()},
        posterior_predictive={
            k: np.asarray(v) for k, v in (posterior_predictive or {}).items()
        }
        or None,
        prior={k: np.asarray(v) for k, v in (prior or {}).items()} or None,
        coords=coords,
        dims=dims,
        attrs=attrs,
    )
    if log_likelihood:
        ll = az.from_dict(
            log_likelihood={k: np.asarray(v) for k, v in log_likelihood.items()},
            coords=coords,
            dims=ll_dims,
            attrs=attrs,
        )
        idata.extend(ll)
    for name, value in (step_stats or {}).items():
        value = np.asarray(value)
        idata.sample_stats[name] = (
            ("chain", "step"),
            value,
        )
        idata.sample_stats.coords["step"] = np.arange(1, value.shape[1] + 1)
    for group in idata.groups():
        idata[group].attrs.update(attrs)  # from_dict ignores attrs
    return idata


def metadata_of(idata: az.InferenceData) -> dict:
    """The run metadata stored by :func:`to_inference_data` (empty if absent)."""
    for group in ("posterior", "sample_stats"):
        if hasattr(idata, group) and "sdeppl" in getattr(idata, group).attrs:
            return json.loads(getattr(idata, group).attrs["sdeppl"])
    return {}
