"""Figures of the uncertainty report, rendered to base64 PNG.

Figures are ``matplotlib.figure.Figure`` objects drawn by the Agg renderer directly,
never through ``pyplot``: the report neither needs nor changes matplotlib's backend,
and this module is imported only when a report is rendered."""

from __future__ import annotations

import base64
import io
import warnings

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from ..diagnostics.checks import scalar_draws

BAND_COLOUR = "#3b6ea8"
DATA_COLOUR = "#222222"
FORECAST_COLOUR = "#c0622b"


def to_png(fig) -> str:
    """Encode a figure as a base64 PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _bands(draws: np.ndarray):
    """5/25/50/75/95% quantiles over the leading (draw) axis (NaN where nothing is
    predicted)."""
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", RuntimeWarning
        )  # all-NaN columns: no prediction there
        return np.nanquantile(draws, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)


def _plot_bands(ax, t, draws, colour, label):
    q05, q25, q50, q75, q95 = _bands(draws)
    ax.fill_between(t, q05, q95, color=colour, alpha=0.18, lw=0, label=f"{label} 90%")
    ax.fill_between(t, q25, q75, color=colour, alpha=0.35, lw=0, label=f"{label} 50%")
    ax.plot(t, q50, color=colour, lw=1.2, label=f"{label} median")


def _series(dataarray, time_dim):
    """Split a variable into 1-D series along ``time_dim``: yields
    (label, values[..., T])."""
    other = [d for d in dataarray.dims if d not in ("chain", "draw", time_dim)]
    stacked = (
        dataarray.stack(_series=other) if other else dataarray.expand_dims(_series=[0])
    )
    for i in range(stacked.sizes["_series"]):
        label = ""
        if other:  # name the coordinate: "state 0", "obs 1, x_dim_0 2"
            values = stacked["_series"].values[i]
            values = values if isinstance(values, tuple) else (values,)
            label = ", ".join(
                f"{dim} {value}" for dim, value in zip(other, values, strict=True)
            )
        yield label, stacked.isel(_series=i)


def path_figure(idata, name: str, time_dim: str, max_series: int = 4) -> str | None:
    """Observed series with posterior / posterior-predictive bands and forecasts."""
    posterior = idata.posterior
    pp = idata.posterior_predictive if hasattr(idata, "posterior_predictive") else None
    observed = idata.observed_data if hasattr(idata, "observed_data") else None
    source = None
    if name in posterior:
        source, label = posterior[name], "posterior"
    elif pp is not None and f"{name}_one_step" in pp:
        source, label = pp[f"{name}_one_step"], "one-step predictive"
    elif pp is not None and name in pp:
        source, label = pp[name], "predictive"
    has_obs = observed is not None and name in observed
    forecast = (
        pp[f"{name}_forecast"] if pp is not None and f"{name}_forecast" in pp else None
    )
    if source is None and not has_obs:
        return None
    reference = source if source is not None else observed[name]
    series = list(_series(reference, time_dim))[:max_series]
    fig = Figure(figsize=(9, 2.8 * len(series)))
    axes = fig.subplots(len(series), 1, squeeze=False)
    for ax, (series_label, values) in zip(axes[:, 0], series, strict=True):
        t = values[time_dim].values
        if source is not None:
            draws = values.values.reshape(-1, t.size)
            _plot_bands(ax, t, draws, BAND_COLOUR, label)
        if has_obs:
            obs_values = _match_series(observed[name], time_dim, series_label)
            ax.plot(t, obs_values, ".", color=DATA_COLOUR, ms=2.5, label="observed")
        if forecast is not None:
            f_time = [d for d in forecast.dims if d.endswith("_forecast")][0]
            f_series = dict(_series(forecast, f_time))
            f_values = f_series.get(series_label)
            if f_values is not None:
                tf = f_values[f_time].values
                _plot_bands(
                    ax,
                    tf,
                    f_values.values.reshape(-1, tf.size),
                    FORECAST_COLOUR,
                    "forecast",
                )
        ax.set_xlabel(time_dim)
        ax.set_ylabel(f"{name} ({series_label})" if series_label else name)
        ax.legend(fontsize=7, ncol=3, loc="best")
    fig.tight_layout()
    return to_png(fig)


def _match_series(observed, time_dim, series_label):
    """Observed values of the series labelled ``series_label`` (see :func:`_series`)."""
    for label, values in _series(observed, time_dim):
        if label == series_label:
            return values.values
    return np.full(observed.sizes[time_dim], np.nan)


def _grid(count: int, columns: int, width: float, row_height: float):
    rows = int(np.ceil(count / columns))
    fig = Figure(figsize=(width, row_height * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel()[count:]:
        ax.set_visible(False)
    return fig, axes.ravel()[:count]


def posterior_figure(idata, var_names) -> str:
    """One panel per parameter, on its own scale: the posterior histogram with its 90%
    (light) and 50% (dark) central intervals and the median (the table's 5/25/50/75/95%
    quantiles), and the prior's density over the same range (dashed outline), so a
    posterior the data barely moved shows as one on top of the other."""
    params = scalar_draws(idata.posterior, var_names)
    in_prior = [n for n in var_names if hasattr(idata, "prior") and n in idata.prior]
    priors = dict(scalar_draws(idata.prior, in_prior)) if in_prior else {}
    fig, axes = _grid(len(params), min(3, len(params)), 9.5, 2.1)
    for ax, (label, draws) in zip(axes, params, strict=True):
        x = draws.ravel()
        x = x[np.isfinite(x)]
        if x.size == 0:
            ax.set_title(f"{label}: no finite draws", fontsize=9)
            continue
        q05, q25, q50, q75, q95 = np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95])
        lo, hi = np.quantile(x, [0.005, 0.995])
        counts, edges = np.histogram(
            x, bins=40, range=(lo, hi) if hi > lo else None, density=True
        )
        ax.stairs(counts, edges, fill=True, color="#d9d9d9")
        if label in priors:
            prior = priors[label].ravel()
            prior_counts, _ = np.histogram(prior[np.isfinite(prior)], bins=edges)
            width = np.diff(edges)
            density = prior_counts / max(prior.size, 1) / width
            ax.stairs(density, edges, color=DATA_COLOUR, lw=0.9, ls="--")
        ax.axvspan(q05, q95, color=BAND_COLOUR, alpha=0.18, lw=0)
        ax.axvspan(q25, q75, color=BAND_COLOUR, alpha=0.35, lw=0)
        ax.axvline(q50, color=BAND_COLOUR, lw=1.5)
        ax.set_title(
            f"{label}: {q50:.3g}  [{q05:.3g}, {q95:.3g}]", fontsize=9, loc="left"
        )
        ax.set_yticks([])
        ax.tick_params(labelsize=8)
        for side in ("left", "right", "top"):
            ax.spines[side].set_visible(False)
    fig.tight_layout()
    return to_png(fig)


def trace_figure(idata, var_names) -> str:
    """Per parameter, the trace of every chain (left) and the histogram of each
    chain's draws' ranks among all draws (right: flat when the chains agree; the
    dashed line is the uniform level)."""
    from scipy.stats import rankdata

    params = scalar_draws(idata.posterior, var_names)
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    fig = Figure(figsize=(10, 1.7 * len(params)))
    axes = fig.subplots(
        len(params), 2, squeeze=False, gridspec_kw={"width_ratios": [2.2, 1]}
    )
    for (ax_trace, ax_rank), (label, draws) in zip(axes, params, strict=True):
        num_chains, num_draws = draws.shape
        for c in range(num_chains):
            ax_trace.plot(draws[c], lw=0.5, alpha=0.75, color=colours[c % len(colours)])
        ax_trace.set_ylabel(label, fontsize=9)
        ax_trace.tick_params(labelsize=8)
        ranks = rankdata(draws.ravel()).reshape(draws.shape)
        bins = max(5, min(20, num_draws // 10))
        edges = np.linspace(0.5, draws.size + 0.5, bins + 1)
        expected = num_draws / bins
        for c in range(num_chains):
            counts, _ = np.histogram(ranks[c], bins=edges)
            ax_rank.bar(
                edges[:-1],
                0.8 * counts / (2 * expected),
                bottom=c,
                width=np.diff(edges),
                align="edge",
                color=colours[c % len(colours)],
                alpha=0.6,
                lw=0,
            )
            ax_rank.axhline(c + 0.4, color="k", ls="--", lw=0.6)
        ax_rank.set_yticks(
            np.arange(num_chains) + 0.4, [str(c) for c in range(num_chains)]
        )
        ax_rank.set_ylabel("chain", fontsize=8)
        ax_rank.tick_params(labelsize=8)
    axes[0, 0].set_title("traces", fontsize=9, loc="left")
    axes[0, 1].set_title("rank histograms", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("draw", fontsize=9)
    axes[-1, 1].set_xlabel("rank among all draws", fontsize=9)
    fig.tight_layout()
    return to_png(fig)


def particle_filter_figure(facts: dict) -> str:
    """Each particle-filter site's effective sample size per time step (a fraction
    of the particles) at the posterior median, with the resampling times marked."""
    fig = Figure(figsize=(8, 2.2 * len(facts)), layout="constrained")
    axes = fig.subplots(len(facts), 1, squeeze=False)[:, 0]
    for ax, (name, site) in zip(axes, facts.items(), strict=True):
        t = np.asarray(site["time"])
        fraction = np.asarray(site["ess_fraction"])
        ax.plot(t, fraction, color=BAND_COLOUR, lw=1.0, label="ESS / N")
        marks = np.asarray(site["resampled"], bool)
        ax.plot(
            t[marks],
            np.zeros(marks.sum()),
            "|",
            color=FORECAST_COLOUR,
            ms=8,
            label="resampled",
        )
        ax.axhline(0.5, color="grey", ls="--", lw=0.8)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("time")
        ax.set_ylabel("ESS / N")
        ax.set_title(f"{name}: {site['num_particles']} particles", fontsize=10)
        ax.legend(loc="lower right", fontsize=8, frameon=False)
    return to_png(fig)


def elbo_figure(elbo: np.ndarray) -> str:
    """The ELBO of a variational fit against the optimisation step: ``elbo (steps,)``
    averaged over blocks so that at most 1000 points are drawn (non-finite steps
    left out)."""
    elbo = np.where(np.isfinite(elbo), elbo, np.nan)
    block = max(1, int(np.ceil(elbo.size / 1000)))
    n = elbo.size // block * block
    blocks = elbo[:n].reshape(-1, block)
    counts = np.isfinite(blocks).sum(axis=1)
    means = np.where(
        counts > 0, np.nansum(blocks, axis=1) / np.maximum(counts, 1), np.nan
    )
    steps = np.arange(n).reshape(-1, block)[:, -1] + 1
    fig = Figure(figsize=(8, 2.6), layout="constrained")
    ax = fig.subplots()
    ax.plot(steps, means, color=BAND_COLOUR, lw=1.0)
    finite = means[np.isfinite(means)]
    if finite.size > 10:  # the start is far below: show the approach to the optimum
        low, high = np.percentile(finite, [5, 100])
        pad = 0.05 * (high - low + 1e-12)
        ax.set_ylim(low - pad, high + pad)
    ax.set_xlabel("step")
    ax.set_ylabel("ELBO")
    ax.set_title("ELBO during optimisation", fontsize=10)
    return to_png(fig)


COMPARE_COLOURS = ("#3b6ea8", "#c8553d", "#4f9d69", "#8e6bb8")


def comparison_figure(idatas: dict, var_names) -> str:
    """One panel per parameter: the posterior of each run (a label -> idata dict) as
    an outlined histogram on a shared range, with each run's median."""
    per_run = {
        label: dict(scalar_draws(idata.posterior, var_names))
        for label, idata in idatas.items()
    }
    labels = list(next(iter(per_run.values())))
    fig, axes = _grid(len(labels), min(3, len(labels)), 9.5, 2.1)
    for ax, name in zip(axes, labels, strict=True):
        runs = {
            run: draws[name].ravel()[np.isfinite(draws[name].ravel())]
            for run, draws in per_run.items()
            if name in draws
        }
        pooled = np.concatenate([x for x in runs.values() if x.size])
        lo, hi = np.quantile(pooled, [0.005, 0.995]) if pooled.size else (0.0, 1.0)
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
        for colour, (run, x) in zip(COMPARE_COLOURS, runs.items(), strict=False):
            if x.size == 0:
                continue
            counts, _ = np.histogram(x, bins=edges, density=True)
            ax.stairs(counts, edges, color=colour, lw=1.2, label=run)
            ax.axvline(np.median(x), color=colour, lw=1.0, ls="--")
        ax.set_title(name, fontsize=9, loc="left")
        ax.set_yticks([])
        ax.tick_params(labelsize=8)
        for side in ("left", "right", "top"):
            ax.spines[side].set_visible(False)
    axes[0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return to_png(fig)
