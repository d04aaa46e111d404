"""``sdeppl.fit``: one call from a NumPyro model to an ArviZ-backed :class:`Fit`."""

from __future__ import annotations

import os
import platform
import sys
import time
from importlib.metadata import version

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from numpyro.infer import MCMC, NUTS, Predictive

from .._xla import fast_compile_jit
from ..diagnostics._convert import PathCoords, to_inference_data
from ..processes import reparam_paths
from ._model import ModelAdapter, as_numpy, series_of, unobserve
from ._result import Fit
from .hmc import SamplerStats, _progress_callback, run_mclmc, run_nuts

METHODS = ("blackjax", "nuts", "mclmc")
CHAIN_METHODS = ("auto", "sequential", "vectorized")
_CACHE_ENV = "SDEPPL_COMPILATION_CACHE"


def enable_compilation_cache(path: str | None = None) -> str | None:
    """Turn on JAX's persistent compilation cache (once; respects a user's own setting).

    The cache lives in ``$SDEPPL_COMPILATION_CACHE`` or ``~/.cache/sdeppl/jax``; set
    ``SDEPPL_COMPILATION_CACHE=off`` to disable it. Repeated runs of the same model on
    the same data then skip XLA compilation. Returns the directory in use (or None).
    """
    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    path = (
        path
        or os.environ.get(_CACHE_ENV)
        or os.path.join(
            os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
            "sdeppl",
            "jax",
        )
    )
    if path.lower() in ("off", "0", "none", ""):
        return None
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def _model_name(model) -> str:
    name = getattr(model, "__name__", type(model).__name__)
    module = getattr(model, "__module__", "") or ""
    return (
        f"{module}.{name}"
        if name == "model" and module not in ("", "__main__")
        else name
    )


def check_int(name, value, minimum, caller="fit"):
    """``int(value)``, or a ``ValueError`` naming ``caller`` and the argument unless
    ``value`` is an integer >= ``minimum``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or value < minimum
    ):
        raise ValueError(
            f"{caller}: {name} must be an int >= {minimum}; got {value!r}."
        )
    return int(value)


STREAMS = ("sampler", "latent", "predictive", "one_step", "forecast")


def stream_key(key, name: str):
    """The independent key for one use of the run's key (:data:`STREAMS`); cheap
    inside compiled programs, which is where it is called (one split, no extra
    compile)."""
    return jax.random.split(key, len(STREAMS))[STREAMS.index(name)]


def _map_chains(one_chain, key, num_chains: int, chain_method: str):
    """Run ``one_chain(key, chain_id)`` for every chain, compiled as one program.

    Chains are split across local devices (``shard_map``) when there are several, and
    within a device run sequentially (``lax.map``: no lock-step waste when trajectories
    differ, the CPU default) or vectorised (``vmap``: the accelerator default).
    """
    if chain_method == "auto":
        chain_method = "sequential" if jax.default_backend() == "cpu" else "vectorized"
    devices = jax.local_devices()
    num_devices = max(d for d in range(1, len(devices) + 1) if num_chains % d == 0)

    def local(key, ids):
        def run(chain_id):
            return one_chain(key, chain_id)

        if chain_method == "vectorized":
            return jax.vmap(run)(ids)
        return jax.lax.map(run, ids)

    if num_devices > 1:
        mesh = Mesh(np.asarray(devices[:num_devices]), ("chain",))
        local = jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(P(), P("chain")),
            out_specs=P("chain"),
            check_vma=False,
        )
    return fast_compile_jit(local)(key, np.arange(num_chains, dtype=np.int32))


def _run_blackjax(adapter, key, settings, progress):
    """BlackJAX NUTS or MCLMC on every chain, in one compiled program that also maps
    the draws to the constrained space."""
    num_chains = settings["chains"]
    total = settings["warmup"] + settings["samples"]
    method = settings["method"]
    label = "MCLMC" if method == "mclmc" else "NUTS"
    callback = _progress_callback(label, settings["warmup"], total, progress)
    runner = run_mclmc if method == "mclmc" else run_nuts
    options = {
        "num_warmup": settings["warmup"],
        "num_samples": settings["samples"],
        "thinning": settings["thinning"],
        "progress": callback,
    }
    if method != "mclmc":
        options.update(
            target_accept=settings["target_accept"],
            max_tree_depth=settings["max_tree_depth"],
            dense_mass=settings["dense_mass"],
        )

    def one_chain(key, chain_id):
        chain_key = jax.random.fold_in(stream_key(key, "sampler"), chain_id)
        key_init, key_run = jax.random.split(chain_key)
        position = adapter.initial_position(key_init)
        draws, stats, tuning = runner(
            key_run, adapter.logdensity, position, chain_id=chain_id, **options
        )
        return jax.vmap(adapter.constrain)(draws), stats, tuning

    if progress:
        print(
            f"sdeppl: compiling the {label} sampler (cached for later runs)...",
            file=sys.stderr,
            flush=True,
        )
    constrained, stats, tuning = _map_chains(
        one_chain, key, num_chains, settings["chain_method"]
    )
    return (
        as_numpy(constrained),
        as_numpy(stats._asdict()),
        as_numpy(tuning),
    )


def _run_numpyro(adapter, key, settings, progress):
    kernel = NUTS(
        adapter.model,
        target_accept_prob=settings["target_accept"],
        max_tree_depth=settings["max_tree_depth"],
        dense_mass=settings["dense_mass"],
    )
    chain_method = (
        "parallel" if jax.local_device_count() >= settings["chains"] else "sequential"
    )
    mcmc = MCMC(
        kernel,
        num_warmup=settings["warmup"],
        num_samples=settings["samples"],
        num_chains=settings["chains"],
        thinning=settings["thinning"],
        chain_method=chain_method,
        progress_bar=progress,
    )
    mcmc.run(
        stream_key(key, "sampler"),
        *adapter.args,
        extra_fields=(
            "diverging",
            "num_steps",
            "accept_prob",
            "energy",
            "potential_energy",
            "adapt_state.step_size",
        ),
        **adapter.kwargs,
    )
    constrained = {
        k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()
    }
    extra = {
        k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()
    }
    stats = SamplerStats(
        diverging=extra["diverging"],
        tree_depth=np.floor(np.log2(extra["num_steps"] + 1)).astype(np.int32),
        n_steps=extra["num_steps"],
        acceptance_rate=extra["accept_prob"],
        energy=extra["energy"],
        lp=-extra["potential_energy"],
        step_size=extra["adapt_state.step_size"],
    )
    return constrained, {k: np.asarray(v) for k, v in stats._asdict().items()}, {}


def _series_coords(adapter) -> dict[str, PathCoords]:
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


def _series_names(adapter, *, observed: bool | None = None, kind: str | None = None):
    """Time-series sites with per-time terms, optionally only observed ones or one
    kind."""
    return [
        name
        for name, site in adapter.raw_sites.items()
        if site.series is not None
        and site.series.ts is not None
        and not site.series.augmented
        and (observed is None or site.observed == observed)
        and (kind is None or site.series.kind == kind)
    ]


def _flat_draws(samples: dict):
    """``(chain, draw, ...)`` -> ``(chain * draw, ...)`` and the leading shape."""
    lead = next(iter(samples.values())).shape[:2]
    return {k: jnp.reshape(v, (-1,) + v.shape[2:]) for k, v in samples.items()}, lead


def _per_draw(
    adapter, samples: dict, key, stream: str, names, compute, *, raw: bool = False
):
    """For every posterior draw, trace the model at the draw and collect
    ``compute(name, fn, value, key) -> dict`` over the sites ``names``, with keys
    from ``stream_key(key, stream)``.

    ``raw=True`` traces the model without path reparametrisation (latent paths are then
    :class:`~sdeppl.Path` sites whose values come from the draw). Vectorised over draws
    and compiled once; returns arrays shaped ``(chain, draw, ...)``.
    """
    if not names:
        return {}
    flat, lead = _flat_draws(samples)
    model = adapter.raw_model if raw else adapter.model

    def one(draw, key):
        tr = numpyro.handlers.trace(
            numpyro.handlers.substitute(numpyro.handlers.seed(model, 0), data=draw)
        ).get_trace(*adapter.args, **adapter.kwargs)
        out = {}
        for i, name in enumerate(names):
            fn = tr[name]["fn"]
            value = draw[name] if name in draw else tr[name]["value"]
            shape = fn.batch_shape + fn.event_shape
            if isinstance(value, jax.core.Tracer):
                value = jnp.broadcast_to(value, shape)
            else:  # observed data stay concrete (missing-value checks need that)
                value = np.broadcast_to(np.asarray(value), shape)
            out.update(compute(name, fn, value, jax.random.fold_in(key, i)))
        return out

    num_draws = next(iter(flat.values())).shape[0]

    def all_draws(flat, key):
        keys = jax.random.split(stream_key(key, stream), num_draws)
        return jax.vmap(one)(flat, keys)

    values = fast_compile_jit(all_draws)(flat, key)
    return {k: np.asarray(v).reshape(lead + v.shape[1:]) for k, v in values.items()}


def pointwise_log_likelihood(adapter, samples: dict):
    r"""Pointwise log-likelihood of every observed site, ``(chain, draw, ...)``.

    A time-series site contributes one term per observed time (a Markov transition for
    :class:`~sdeppl.Path`, $\log p(y_k \mid y_{0:k-1})$ for :class:`~sdeppl.StateSpace`;
    PSIS-LOO then leaves out one step at a time, the usual choice for time series);
    other sites their NumPyro batch shape. Returns ``(values, times)`` where
    ``times[name]`` are the times kept for time-series sites.
    """
    series = set(_series_names(adapter, observed=True))
    masks = {n: adapter.raw_sites[n].series.informative for n in series}
    times = {n: adapter.raw_sites[n].series.ts[masks[n]] for n in series}

    def compute(name, fn, value, key):
        if name in series:
            return {name: series_of(fn).pointwise_log_prob(value)[..., masks[name]]}
        return {name: fn.log_prob(value)}

    names = [n for n, s in adapter.sites.items() if s.observed]
    key = jax.random.key(0)  # unused: log-densities are not random
    values = _per_draw(adapter, samples, key, "sampler", names, compute)
    for name in series:  # terms constant across draws (e.g. y_0 under a fixed prior)
        flat = values[name].reshape(-1, values[name].shape[-1])  # carry no information
        with np.errstate(invalid="ignore"):
            varying = ~(np.ptp(flat, axis=0) == 0)  # and would break PSIS (k = inf)
        values[name], times[name] = values[name][..., varying], times[name][varying]
    return values, times


def posterior_predictive_draws(adapter, samples: dict, key):
    """Fresh draws of every observed site given each posterior draw,
    ``(chain, draw, ...)``."""
    flat, lead = _flat_draws(samples)
    model = reparam_paths(unobserve(adapter.raw_model))
    names = [n for n, s in adapter.sites.items() if s.observed]
    predictive = Predictive(model, posterior_samples=flat, return_sites=names)
    out = predictive(stream_key(key, "predictive"), *adapter.args, **adapter.kwargs)
    return {k: np.asarray(v).reshape(lead + v.shape[1:]) for k, v in out.items()}


def one_step_predictive_draws(adapter, samples: dict, key):
    """One-step-ahead predictive draws of every observed time series
    (``{name}_one_step``): the natural residual check for time series."""

    def compute(name, fn, value, key):
        return {f"{name}_one_step": series_of(fn).one_step_sample(key, value)}

    names = _series_names(adapter, observed=True)
    return _per_draw(adapter, samples, key, "one_step", names, compute)


def latent_state_draws(adapter, samples: dict, key):
    """The latent path of every :class:`~sdeppl.StateSpace` site given the
    observations and each posterior draw (forward filtering, backward sampling):
    ``{name}_latent``."""

    def compute(name, fn, value, key):
        return {f"{name}_latent": series_of(fn).sample_latent(key, value)}

    names = _series_names(adapter, observed=True, kind="statespace")
    return _per_draw(adapter, samples, key, "latent", names, compute)


def forecast_draws(adapter, samples: dict, key, horizon: float, num_steps: int):
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
        return {f"{name}_forecast": series_of(fn).forecast(key, value, times[name])}

    values = _per_draw(adapter, samples, key, "forecast", names, compute, raw=True)
    return values, times


def fit(
    model,
    *args,
    method: str = "blackjax",
    chains: int = 4,
    warmup: int = 1000,
    samples: int = 1000,
    thinning: int = 1,
    seed: int = 0,
    target_accept: float = 0.8,
    max_tree_depth: int = 10,
    dense_mass: bool = False,
    chain_method: str = "auto",
    posterior_predictive: bool = False,
    forecast: dict | None = None,
    log_likelihood: bool = True,
    latent_paths: bool = True,
    progress: bool = True,
    compilation_cache: bool = True,
    model_kwargs: dict | None = None,
    **kwargs,
) -> Fit:
    """Fit a NumPyro model by MCMC and return a :class:`~sdeppl.Fit`.

    Parameters
    ----------
    model
        A NumPyro model; ``*args`` and ``**kwargs`` (all keywords not listed here) are
        passed to it. :class:`~sdeppl.Path` sites are reparametrised by
        :func:`~sdeppl.reparam_paths` (non-centred latent paths, data augmentation).
    method
        ``"blackjax"`` (default): BlackJAX NUTS with Stan's window adaptation, warm-up
        and sampling fused in one compiled program. ``"nuts"``: NumPyro's NUTS, the
        reference implementation (also for models with enumerated discrete sites).
        ``"mclmc"``: BlackJAX's microcanonical Langevin sampler with automatic tuning
        and a Metropolis adjustment-free step (can be faster than NUTS on long,
        well-conditioned latent paths, but may fail to converge on strongly
        correlated ones: check R-hat; its draws are asymptotically biased by a
        controlled energy error, see docs/inference.md).
    chains, warmup, samples, thinning, seed
        Number of chains, warm-up iterations, sampling iterations per chain, thinning,
        and the seed (same seed, same draws).
    target_accept, max_tree_depth, dense_mass
        NUTS settings.
    chain_method
        ``"auto"`` (sequential within a device on CPU, vectorised on accelerators),
        ``"sequential"`` or ``"vectorized"``. Chains are split across devices when
        several exist.
    posterior_predictive
        Also draw every observed site afresh for each posterior draw, and for observed
        paths the one-step-ahead predictive ``{name}_one_step`` (each transition from
        the previous observation: the natural residual check for time series).
    forecast
        ``{"horizon": h, "steps": n}``: continue every path ``n`` equal steps to its
        last time plus ``h``, for each posterior draw (group ``posterior_predictive``,
        variables ``{name}_forecast``).
    log_likelihood
        Store pointwise log-likelihoods (for LOO/WAIC and the Pareto-k check).
    latent_paths
        For :class:`~sdeppl.StateSpace` sites, add one draw of the latent path per
        posterior draw (forward filtering, backward sampling) as ``{name}_latent`` in
        the posterior, with the time coordinate.
    progress
        Show progress bars.
    compilation_cache
        Use JAX's persistent compilation cache (see :func:`enable_compilation_cache`).
    model_kwargs
        Keyword arguments for the model whose names clash with the options above (e.g. a
        model argument called ``method``); merged with ``**kwargs``.

    Returns
    -------
    :class:`~sdeppl.Fit`

    Raises
    ------
    ValueError
        For an unknown method or chain method, non-positive counts, or a model without
        continuous latent sites.
    """
    if method not in METHODS:
        raise ValueError(f"fit: unknown method {method!r}; expected one of {METHODS}.")
    clash = set(kwargs) & set(model_kwargs or {})
    if clash:
        raise ValueError(
            f"fit: model keyword(s) {sorted(clash)} given both in model_kwargs and "
            "directly."
        )
    kwargs = {**kwargs, **(model_kwargs or {})}
    if chain_method not in CHAIN_METHODS:
        raise ValueError(
            f"fit: chain_method must be one of {CHAIN_METHODS}; got {chain_method!r}."
        )
    settings = {
        "method": method,
        "chains": check_int("chains", chains, 1),
        "warmup": check_int("warmup", warmup, 0),
        "samples": check_int("samples", samples, 1),
        "thinning": check_int("thinning", thinning, 1),
        "seed": check_int("seed", seed, 0),
        "target_accept": float(target_accept),
        "max_tree_depth": check_int("max_tree_depth", max_tree_depth, 1),
        "dense_mass": bool(dense_mass),
        "chain_method": chain_method,
    }
    if not 0.0 < settings["target_accept"] < 1.0:
        raise ValueError(
            f"fit: target_accept must be in (0, 1); got {target_accept!r}."
        )
    if settings["samples"] < settings["thinning"]:
        raise ValueError(f"fit: samples ({samples}) must be >= thinning ({thinning}).")
    if forecast is not None:
        if (
            not isinstance(forecast, dict)
            or set(forecast) - {"horizon", "steps"}
            or "horizon" not in forecast
        ):
            raise ValueError(
                "fit: forecast must be a dict {'horizon': float, 'steps': int}; "
                f"got {forecast!r}."
            )
        if not float(forecast["horizon"]) > 0:
            raise ValueError(
                f"fit: forecast horizon must be > 0; got {forecast['horizon']!r}."
            )
    cache_dir = enable_compilation_cache() if compilation_cache else None

    start = time.perf_counter()
    adapter = ModelAdapter(model, args, kwargs)
    key = jax.random.key(settings["seed"])
    if method == "nuts":
        constrained, stats, tuning = _run_numpyro(adapter, key, settings, progress)
    else:
        constrained, stats, tuning = _run_blackjax(adapter, key, settings, progress)
    sampling_s = time.perf_counter() - start
    samples_by_chain = {k: jnp.asarray(v) for k, v in constrained.items()}
    if latent_paths:
        constrained = {
            **constrained,
            **latent_state_draws(adapter, samples_by_chain, key),
        }
    observed = {
        n: np.asarray(adapter.trace_value(n))
        for n, s in adapter.sites.items()
        if s.observed
    }
    log_lik, ll_times = (
        pointwise_log_likelihood(adapter, samples_by_chain)
        if log_likelihood and observed
        else ({}, {})
    )
    predictive = {}
    if posterior_predictive and observed:
        predictive = posterior_predictive_draws(adapter, samples_by_chain, key)
        predictive.update(one_step_predictive_draws(adapter, samples_by_chain, key))
    forecast_times = {}
    if forecast is not None:
        values, forecast_times = forecast_draws(
            adapter,
            samples_by_chain,
            key,
            float(forecast["horizon"]),
            int(forecast.get("steps", 10)),
        )
        predictive.update(values)
    wall_s = time.perf_counter() - start
    metadata = {
        "backend": method,
        "settings": settings,
        "seed": settings["seed"],
        "wall_time_s": round(wall_s, 3),
        "sampling_time_s": round(sampling_s, 3),
        "model": _model_name(model),
        "devices": [str(d) for d in jax.local_devices()],
        "compilation_cache": cache_dir,
        "tuning": {
            k: np.asarray(v).tolist() for k, v in tuning.items() if np.size(v) <= 64
        },
        "versions": {
            "python": platform.python_version(),
            **{
                pkg: version(pkg)
                for pkg in ("sdeppl", "jax", "numpyro", "blackjax", "arviz")
            },
        },
    }
    idata = to_inference_data(
        posterior=constrained,
        sample_stats=stats,
        observed_data=observed,
        log_likelihood=log_lik,
        posterior_predictive=predictive,
        paths=_series_coords(adapter),
        forecast_times=forecast_times,
        log_likelihood_times=ll_times,
        metadata=metadata,
    )
    return Fit(idata)
