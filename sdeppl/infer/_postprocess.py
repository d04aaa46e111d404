"""Shared post-processing of every backend's draws: pointwise log-likelihoods,
posterior and one-step predictive draws, forecasts and hidden-path draws.

Each is computed for all draws at once (vectorised and compiled once), by tracing the
model at a draw and asking each time-series site -- through the
:class:`~sdeppl.processes.TimeSeries` protocol only -- for its per-time terms,
predictions or latent draws.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.distributions import Independent
from numpyro.infer import Predictive

from .._xla import fast_compile_jit
from ..diagnostics import PathCoords
from ..processes import derived_name, reparam_paths, series_of
from ._backend import stream_key
from ._model import unobserve


def series_coords(adapter) -> dict[str, PathCoords]:
    return {
        name: PathCoords(
            site.series.ts,
            site.series.value_dim,
            site.series.latent_dim,
            site.series.batch_ndim,
        )
        for name, site in adapter.raw_sites.items()
        if site.series is not None and site.series.ts is not None
    }


def _series_names(adapter, *, observed: bool | None = None, latent: bool = False):
    """Time-series sites with per-time terms, optionally only observed ones or only
    those with hidden paths to draw."""
    return [
        name
        for name, site in adapter.raw_sites.items()
        if site.series is not None
        and site.series.ts is not None
        and site.series.pointwise
        and (observed is None or site.observed == observed)
        and (not latent or site.series.has_latent)
    ]


def _flat_draws(samples: dict):
    """``(chain, draw, ...)`` -> ``(chain * draw, ...)`` and the leading shape."""
    lead = next(iter(samples.values())).shape[:2]
    return {k: jnp.reshape(v, (-1,) + v.shape[2:]) for k, v in samples.items()}, lead


def _per_draw(
    adapter,
    samples: dict,
    key,
    stream: str,
    names,
    compute,
    *,
    raw: bool = False,
    model_keys=None,
):
    """For every posterior draw, trace the model at the draw and collect
    ``compute(name, fn, value, key) -> dict`` over the sites ``names``, with keys
    from ``stream_key(key, stream)``.

    ``raw=True`` traces the model without path reparametrisation (latent paths are then
    :class:`~sdeppl.Path` sites whose values come from the draw). The model runs under
    ``seed`` with each draw's ``model_keys`` (``(chain, draw, 2)`` raw keys, see
    :class:`~sdeppl.infer.BackendResult`), or with 0. Vectorised over draws and
    compiled once; returns arrays shaped ``(chain, draw, ...)``.
    """
    if not names:
        return {}
    flat, lead = _flat_draws(samples)
    model = adapter.raw_model if raw else adapter.model
    num_draws = next(iter(flat.values())).shape[0]
    if model_keys is None:
        seeds = jnp.broadcast_to(jax.random.PRNGKey(0), (num_draws, 2))
    else:
        seeds = jnp.asarray(model_keys, jnp.uint32).reshape(num_draws, 2)

    def one(draw, key, seed):
        tr = numpyro.handlers.trace(
            numpyro.handlers.substitute(numpyro.handlers.seed(model, seed), data=draw)
        ).get_trace(*adapter.args, **adapter.kwargs)
        out = {}
        for i, name in enumerate(names):
            fn = tr[name]["fn"]
            value = draw[name] if name in draw else tr[name]["value"]
            # a value may be larger than its site's shape (observed without a plate)
            shape = jnp.broadcast_shapes(
                fn.batch_shape + fn.event_shape, jnp.shape(value)
            )
            if isinstance(value, jax.core.Tracer):
                value = jnp.broadcast_to(value, shape)
            else:  # observed data stay concrete (missing-value checks need that)
                value = np.broadcast_to(np.asarray(value), shape)
            out.update(compute(name, fn, value, jax.random.fold_in(key, i)))
        return out

    def all_draws(flat, key, seeds):
        keys = jax.random.split(stream_key(key, stream), num_draws)
        return in_batches(one, (flat, keys, seeds), num_draws)

    values = fast_compile_jit(all_draws)(flat, key, seeds)
    return {k: np.asarray(v).reshape(lead + v.shape[1:]) for k, v in values.items()}


#: draws computed together: enough to vectorise, few enough that a computation with
#: large intermediates (a particle filter's history) stays in memory
BATCH_SIZE = 256


def in_batches(fn, args, num: int):
    """``jax.vmap(fn)(*args)`` over the leading axis ``num`` of ``args``, in batches
    of :data:`BATCH_SIZE` (one traced copy of ``fn``: the last batch is padded)."""
    if num <= BATCH_SIZE:
        return jax.vmap(fn)(*args)
    batches = -(-num // BATCH_SIZE)

    def batched(a):
        pad = jnp.concatenate([a, jnp.repeat(a[-1:], batches * BATCH_SIZE - num, 0)])
        return pad.reshape((batches, BATCH_SIZE) + a.shape[1:])

    out = jax.lax.map(
        lambda batch: jax.vmap(fn)(*batch), jax.tree_util.tree_map(batched, args)
    )
    return jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[2:])[:num], out)


def pointwise_log_likelihood(adapter, samples: dict, model_keys=None):
    r"""Pointwise log-likelihood of every observed site, ``(chain, draw, ...)``.

    A time-series site contributes one term per observed time (a Markov transition for
    :class:`~sdeppl.Path`, $\log p(y_k \mid y_{0:k-1})$ for :class:`~sdeppl.StateSpace`;
    PSIS-LOO then leaves out one step at a time, the usual choice for time series).
    Another site whose value is one event of several dims (``.to_event(k)``, e.g. the
    noisy observations of a latent path) contributes one term per index of its first
    event axis -- the time axis when its length is a time-series site's ``T``; other
    sites their NumPyro batch shape. Returns ``(values, times)`` where ``times[name]``
    are the times kept for sites with a time axis.
    """
    series = set(_series_names(adapter, observed=True))
    masks = {n: adapter.raw_sites[n].series.informative for n in series}
    times = {n: adapter.raw_sites[n].series.ts[masks[n]] for n in series}
    grids = {
        len(s.series.ts): s.series.ts
        for s in adapter.raw_sites.values()
        if s.series is not None and s.series.ts is not None
    }

    event_axis = {}  # sites whose terms run along their first event axis

    def compute(name, fn, value, key):
        if name in series:
            return {name: series_of(fn).pointwise_log_prob(value)[..., masks[name]]}
        terms, event_axis[name] = _leading_event_terms(fn, value)
        return {name: terms}

    names = [n for n, s in adapter.sites.items() if s.observed]
    key = jax.random.key(0)  # unused: log-densities are not random
    values = _per_draw(
        adapter, samples, key, "sampler", names, compute, model_keys=model_keys
    )
    for name, kept in event_axis.items():
        if kept and values[name].shape[-1] in grids:  # observations along the time
            times[name] = grids[values[name].shape[-1]]  # axis of a time series
    for name in times:  # terms constant across draws (e.g. y_0 under a fixed prior, a
        flat = values[name].reshape(-1, values[name].shape[-1])  # masked point) carry
        with np.errstate(invalid="ignore"):  # no information and would break PSIS
            varying = ~(np.ptp(flat, axis=0) == 0)
        values[name], times[name] = values[name][..., varying], times[name][varying]
    return values, times


def _leading_event_terms(fn, value):
    """``(terms, kept)``: ``fn.log_prob(value)``, except that an ``Independent``
    distribution keeps its first reinterpreted (event) axis, summed over the others
    (``kept`` says so)."""
    if isinstance(fn, Independent) and fn.reinterpreted_batch_ndims >= 1:
        elementwise = fn.base_dist.log_prob(value)
        keep = elementwise.ndim - fn.reinterpreted_batch_ndims + 1
        return jnp.sum(elementwise, axis=tuple(range(keep, elementwise.ndim))), True
    return fn.log_prob(value), False


def _predictive(model, adapter, samples, key, names, infer_discrete=False):
    flat, lead = _flat_draws(samples)
    predictive = Predictive(
        model,
        posterior_samples=flat,
        return_sites=list(names),
        infer_discrete=infer_discrete,
    )
    out = predictive(stream_key(key, "predictive"), *adapter.args, **adapter.kwargs)
    return {k: np.asarray(v).reshape(lead + v.shape[1:]) for k, v in out.items()}


def prior_draws(adapter, key, num_draws: int = 1000):
    """Prior draws of the model's parameters (latent sites of at most 16 values),
    ``(1, num_draws, ...)``: the report sets them against the posterior and the
    diagnostics flag parameters the data barely move."""
    names = [
        n
        for n, s in adapter.raw_sites.items()
        if not s.observed and int(np.prod(s.shape)) <= 16
    ]
    if not names:
        return {}
    predictive = Predictive(
        adapter.raw_model, num_samples=num_draws, return_sites=names
    )
    out = predictive(stream_key(key, "prior"), *adapter.args, **adapter.kwargs)
    return {k: np.asarray(v)[None] for k, v in out.items()}


def posterior_predictive_draws(adapter, samples: dict, key):
    """Fresh draws of every observed site given each posterior draw,
    ``(chain, draw, ...)``."""
    names = [n for n, s in adapter.sites.items() if s.observed]
    model = reparam_paths(unobserve(adapter.raw_model))
    return _predictive(model, adapter, samples, key, names)


def discrete_site_draws(adapter, samples: dict, key):
    """Draws of the discrete latent sites (which the backend marginalised by
    enumeration) from their conditional posterior given the data and each posterior
    draw (NumPyro's ``infer_discrete``), ``(chain, draw, ...)``."""
    model = reparam_paths(adapter.raw_model)
    return _predictive(
        model, adapter, samples, key, adapter.discrete_names, infer_discrete=True
    )


def one_step_predictive_draws(adapter, samples: dict, key, model_keys=None):
    """One-step-ahead predictive draws of every observed time series
    (``{name}_one_step``): the natural residual check for time series."""

    def compute(name, fn, value, key):
        return {
            derived_name(name, "one_step"): series_of(fn).one_step_sample(key, value)
        }

    names = _series_names(adapter, observed=True)
    return _per_draw(
        adapter, samples, key, "one_step", names, compute, model_keys=model_keys
    )


def latent_state_draws(adapter, samples: dict, key, model_keys=None):
    """The hidden path of every time-series site that has one (``has_latent``, e.g.
    :class:`~sdeppl.StateSpace`: forward filtering, backward sampling) given the
    observations and each posterior draw: ``{name}_latent`` -- unless the backend
    drew it along its chain (it is then in ``samples``)."""

    def compute(name, fn, value, key):
        return {derived_name(name, "latent"): series_of(fn).sample_latent(key, value)}

    names = [
        n
        for n in _series_names(adapter, observed=True, latent=True)
        if derived_name(n, "latent") not in samples
    ]
    return _per_draw(
        adapter, samples, key, "latent", names, compute, model_keys=model_keys
    )


def forecast_draws(
    adapter, samples: dict, key, horizon: float, num_steps: int, model_keys=None
):
    """Every time series continued ``num_steps`` equal steps to its last time plus
    ``horizon``, one continuation per posterior draw (``{name}_forecast``).

    Paths restart at their last value (observed, or latent from the draw); state-space
    observations restart from the filtered state at the last time. Returns
    ``(values, times)``.
    """
    names = [
        n
        for n, s in adapter.raw_sites.items()
        if s.series is not None and s.series.ts is not None
    ]
    times = {
        n: float(adapter.raw_sites[n].series.ts[-1])
        + horizon * np.arange(1, num_steps + 1) / num_steps
        for n in names
    }

    def compute(name, fn, value, key):
        return {
            derived_name(name, "forecast"): series_of(fn).forecast(
                key, value, times[name]
            )
        }

    values = _per_draw(
        adapter,
        samples,
        key,
        "forecast",
        names,
        compute,
        raw=True,
        model_keys=model_keys,
    )
    return values, times
