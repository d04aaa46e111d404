"""``sdeppl.fit``: one call from a NumPyro model to an ArviZ-backed :class:`Fit`.

``fit`` = validate -> run the backend (from the registry, :mod:`._backend`) -> shared
post-processing (:mod:`._postprocess`) -> ``InferenceData``.
"""

from __future__ import annotations

import difflib
import inspect
import platform
import time
from importlib.metadata import version

import jax
import jax.numpy as jnp
import numpy as np

from ..diagnostics import Fit, to_inference_data
from ._backend import Backend, backends, get_backend, int_option, resolve_options
from ._model import ModelAdapter
from ._postprocess import (
    discrete_site_draws,
    forecast_draws,
    latent_state_draws,
    one_step_predictive_draws,
    pointwise_log_likelihood,
    posterior_predictive_draws,
    prior_draws,
    series_coords,
)

#: Options of ``fit`` itself (every backend); backend options come from the registry.
FIT_OPTIONS = (
    "method",
    "seed",
    "posterior_predictive",
    "forecast",
    "log_likelihood",
    "latent_paths",
    "progress",
    "model_kwargs",
)


def check_int(name, value, minimum, caller="fit"):
    """``int(value)``, or a ``ValueError`` naming ``caller`` and the argument unless
    ``value`` is an integer >= ``minimum``."""
    try:
        return int_option(minimum, minimum, name).check(value)
    except ValueError as e:
        raise ValueError(f"{caller}: {name} {e}.") from None


def _model_name(model) -> str:
    name = getattr(model, "__name__", type(model).__name__)
    module = getattr(model, "__module__", "") or ""
    return (
        f"{module}.{name}"
        if name == "model" and module not in ("", "__main__")
        else name
    )


def _model_parameters(model) -> tuple[str, ...] | None:
    """Names the model accepts as keywords, or None if it takes ``**kwargs`` (or its
    signature cannot be read)."""
    try:
        params = inspect.signature(model).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return tuple(
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )


def split_options(backend: Backend, model, kwargs: dict, model_kwargs: dict | None):
    """``(backend options, model keywords)`` from ``fit``'s keywords.

    A keyword that names an option of ``backend`` is an option; any other goes to the
    model, unless the model does not accept it: then it is a mistake, reported with
    the option it probably meant (or the backends that have it).
    """
    clash = set(kwargs) & set(model_kwargs or {})
    if clash:
        raise ValueError(
            f"fit: model keyword(s) {sorted(clash)} given both in model_kwargs and "
            "directly."
        )
    options = {k: v for k, v in kwargs.items() if k in backend.options}
    rest = {k: v for k, v in kwargs.items() if k not in backend.options}
    accepted = _model_parameters(model)
    for name in rest:
        if accepted is None or name in accepted:
            continue
        owners = [b.name for b in backends().values() if name in b.options]
        if owners:
            raise ValueError(
                f"fit: {name!r} is an option of method {owners}, not of "
                f"method={backend.name!r} (whose options are "
                f"{sorted(backend.options)}); the model "
                f"{_model_name(model)}({', '.join(accepted)}) does not take it either."
            )
        known = list(backend.options) + list(FIT_OPTIONS)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"fit: unknown keyword {name!r}: not an option of fit or of "
            f"method={backend.name!r} ({sorted(known)}), and the model "
            f"{_model_name(model)}({', '.join(accepted)}) has no such parameter.{hint}"
            " Keywords meant for the model go in model_kwargs when their names clash."
        )
    return options, {**rest, **(model_kwargs or {})}


def _check_forecast(forecast):
    if forecast is None:
        return None
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
    return {
        "horizon": float(forecast["horizon"]),
        "steps": check_int("forecast steps", forecast.get("steps", 10), 1),
    }


def fit(
    model,
    *args,
    method: str = "blackjax",
    seed: int = 0,
    posterior_predictive: bool = False,
    forecast: dict | None = None,
    log_likelihood: bool = True,
    latent_paths: bool = True,
    progress: bool = True,
    model_kwargs: dict | None = None,
    **kwargs,
) -> Fit:
    """Fit a NumPyro model and return a :class:`~sdeppl.Fit`.

    Parameters
    ----------
    model
        A NumPyro model; ``*args`` and the keywords that are not options (of ``fit`` or
        of the backend) are passed to it. :class:`~sdeppl.Path` sites are
        reparametrised by :func:`~sdeppl.reparam_paths` (non-centred latent paths,
        data augmentation).
    method
        A registered backend (:func:`sdeppl.backends` lists them with their options):

        - ``"blackjax"`` (default): BlackJAX NUTS with Stan's window adaptation,
          warm-up and sampling fused in one compiled program. Options ``chains=4``,
          ``warmup=1000``, ``samples=1000``, ``thinning=1``, ``target_accept=0.8``,
          ``max_tree_depth=10``, ``dense_mass=False``, ``chain_method="auto"``
          (sequential within a device on CPU, vectorised on accelerators; chains are
          split across devices when several exist).
        - ``"nuts"``: NumPyro's NUTS, the reference implementation, which also
          enumerates discrete latent sites (``infer={"enumerate": "parallel"}``;
          their posterior draws given each draw are added to the posterior). Same
          options but ``chain_method``.
        - ``"mclmc"``: BlackJAX's microcanonical Langevin sampler with automatic
          tuning (can be faster than NUTS on long, well-conditioned latent paths, but
          may fail to converge on strongly correlated ones: check R-hat; its draws
          are asymptotically biased by a controlled energy error, see
          docs/inference.md). Options ``chains``, ``warmup``, ``samples``,
          ``thinning``, ``chain_method``.
        - ``"map"``: posterior mode by L-BFGS from several starts, then a Laplace
          approximation (:mod:`sdeppl.infer.map`): the fast first look. Options
          ``starts=4``, ``steps=500``, ``samples=2000``.
        - ``"pmmh"``: particle marginal Metropolis-Hastings (:mod:`sdeppl.infer.pmmh`)
          for models whose likelihood is a particle filter's estimate
          (``sp.StateSpace(..., method="particle")``): the exact posterior for any
          number of particles, with latent paths drawn from the accepted particle
          systems. Options ``chains=4``, ``warmup=1000``, ``samples=2000``,
          ``thinning=1``, ``target_accept=0.2``.
        - ``"smc"``: adaptive tempered SMC over the parameters from the prior to the
          posterior (BlackJAX; :mod:`sdeppl.infer.smc`), which also estimates the
          log-evidence with its Monte Carlo error (:attr:`Fit.log_evidence`). Options
          ``particles=1000``, ``runs=4`` (independent runs, one chain each),
          ``target_ess=0.5``, ``mcmc_steps=10``, ``kernel="rwmh"`` (or ``"hmc"``,
          ``integration_steps=10``), ``waste_free=False``, ``max_stages=500``,
          ``samples=None`` (draws per run; all particles).
    seed
        Same seed, same draws.
    posterior_predictive
        Also draw every observed site afresh for each posterior draw, and for observed
        time series the one-step-ahead predictive ``{name}_one_step`` (each value
        predicted from the past: the natural residual check for time series).
    forecast
        ``{"horizon": h, "steps": n}``: continue every time series ``n`` equal steps
        to its last time plus ``h``, for each posterior draw (group
        ``posterior_predictive``, variables ``{name}_forecast``).
    log_likelihood
        Store pointwise log-likelihoods (for LOO/WAIC and the Pareto-k check).
    latent_paths
        For time-series sites with a hidden path (:class:`~sdeppl.StateSpace`), add
        one draw of it per posterior draw (forward filtering, backward sampling) as
        ``{name}_latent`` in the posterior, with the time coordinate.
    progress
        Show progress bars.
    model_kwargs
        Keyword arguments for the model whose names clash with the options (e.g. a
        model argument called ``method``); merged with the other model keywords.

    Returns
    -------
    :class:`~sdeppl.Fit`

    Raises
    ------
    ValueError
        For an unknown method or option (with the option probably meant), an invalid
        option value, a model without latent sites, or discrete latent sites under a
        backend that cannot enumerate them.

    Notes
    -----
    Compilation dominates short runs. Call :func:`sdeppl.configure` once at the top
    of a script (before any JAX computation) for what the ``sdeppl`` command does:
    XLA's loop tuning for filters and samplers and the persistent compilation cache,
    so a second run of the same model skips compilation.
    """
    backend = get_backend(method)
    options, model_kw = split_options(backend, model, kwargs, model_kwargs)
    options = resolve_options(backend, options)
    seed = check_int("seed", seed, 0)
    forecast = _check_forecast(forecast)

    start = time.perf_counter()
    timing = {}
    adapter = ModelAdapter(model, args, model_kw)
    if adapter.discrete_names and not backend.discrete_latent:
        able = [b.name for b in backends().values() if b.discrete_latent]
        raise ValueError(
            f"fit: latent site(s) {list(adapter.discrete_names)} are discrete; "
            f"method={method!r} needs continuous latent variables. Marginalise them "
            f"in the model, or use method {able} (enumerates discrete sites marked "
            "infer={'enumerate': 'parallel'})."
        )
    estimated_ok = getattr(backend, "estimated_density", False)
    if adapter.estimated and not estimated_ok:
        able = [
            b.name
            for b in backends().values()
            if getattr(b, "estimated_density", False)
        ]
        raise ValueError(
            f"fit: observed site(s) {list(adapter.estimated)} have a likelihood "
            f"estimated by a particle filter (random); method={method!r} needs an "
            f"exact log-density. Use method {able}, or an exact filter "
            "(StateSpace method 'kalman', 'ekf' or 'ukf') for Gaussian observations."
        )
    timing["inspect_s"] = time.perf_counter() - start
    key = jax.random.key(seed)

    def timed(name, compute, *a):
        t0 = time.perf_counter()
        out = compute(*a)
        timing[name] = time.perf_counter() - t0
        return out

    result = timed("run_s", backend.run, adapter, key, options, progress)
    draws = dict(result.draws)
    samples_by_chain = {k: jnp.asarray(v) for k, v in result.draws.items()}
    skipped = {}
    series_ok = not adapter.discrete_names  # traced per draw: discrete sites unknown
    if adapter.discrete_names:
        draws.update(
            timed("discrete_s", discrete_site_draws, adapter, samples_by_chain, key)
        )
        skipped["per-time computations"] = (
            "the model has discrete latent sites (marginalised by enumeration): no "
            "pointwise log-likelihood, latent paths, one-step predictive or forecasts"
        )
    if latent_paths and series_ok:
        draws.update(
            timed(
                "latent_s",
                latent_state_draws,
                adapter,
                samples_by_chain,
                key,
                result.model_keys,
            )
        )
    observed = {
        n: np.asarray(adapter.trace_value(n))
        for n, s in adapter.sites.items()
        if s.observed
    }
    log_lik, ll_times = {}, {}
    if log_likelihood and observed and series_ok:
        log_lik, ll_times = timed(
            "log_likelihood_s",
            pointwise_log_likelihood,
            adapter,
            samples_by_chain,
            result.model_keys,
        )
    predictive = {}
    if posterior_predictive and observed:
        predictive = timed(
            "predictive_s", posterior_predictive_draws, adapter, samples_by_chain, key
        )
        if series_ok:
            predictive.update(
                timed(
                    "one_step_s",
                    one_step_predictive_draws,
                    adapter,
                    samples_by_chain,
                    key,
                    result.model_keys,
                )
            )
    forecast_times = {}
    if forecast is not None and series_ok:
        values, forecast_times = timed(
            "forecast_s",
            forecast_draws,
            adapter,
            samples_by_chain,
            key,
            forecast["horizon"],
            forecast["steps"],
            result.model_keys,
        )
        predictive.update(values)
    prior = timed("prior_s", prior_draws, adapter, key)
    wall_s = time.perf_counter() - start
    metadata = {
        "backend": method,
        "settings": {"method": method, **options},
        "seed": seed,
        "wall_time_s": round(wall_s, 3),
        "sampling_time_s": round(timing["run_s"], 3),
        "timing_s": {k.removesuffix("_s"): round(v, 3) for k, v in timing.items()},
        "model": _model_name(model),
        "devices": [str(d) for d in jax.local_devices()],
        "compilation_cache": jax.config.jax_compilation_cache_dir or None,
        "tuning": {
            k: np.asarray(v).tolist()
            for k, v in result.tuning.items()
            if np.size(v) <= 64
        },
        "independent_draws": bool(result.independent_draws),
        "estimated_likelihood": bool(adapter.estimated),
        "backend_checks": [list(row) for row in result.checks],
        "backend_info": dict(result.info),
        "skipped": skipped,
        "versions": {
            "python": platform.python_version(),
            **{
                pkg: version(pkg)
                for pkg in ("sdeppl", "jax", "numpyro", "blackjax", "arviz")
            },
        },
    }
    idata = to_inference_data(
        posterior=draws,
        prior=prior,
        sample_stats=result.sample_stats,
        observed_data=observed,
        log_likelihood=log_lik,
        posterior_predictive=predictive,
        paths=series_coords(adapter),
        forecast_times=forecast_times,
        log_likelihood_times=ll_times,
        metadata=metadata,
        step_stats=result.step_stats,
    )
    return Fit(idata)
