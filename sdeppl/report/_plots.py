"""Figures of the uncertainty report, rendered to base64 PNG (matplotlib, Agg
backend)."""

from __future__ import annotations

import base64
import io
import warnings

import matplotlib

matplotlib.use("Agg", force=False)
import arviz as az  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

BAND_COLOUR = "#3b6ea8"
DATA_COLOUR = "#222222"
FORECAST_COLOUR = "#c0622b"


def to_png(fig) -> str:
    """Encode a figure as a base64 PNG and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
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
        label = "" if not other else str(stacked["_series"].values[i])
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
    fig, axes = plt.subplots(
        len(series), 1, figsize=(9, 2.8 * len(series)), squeeze=False
    )
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
        ax.set_ylabel(f"{name} {series_label}".strip())
        ax.legend(fontsize=7, ncol=3, loc="best")
    fig.tight_layout()
    return to_png(fig)


def _match_series(observed, time_dim, series_label):
    """Observed values of the series labelled ``series_label`` (see :func:`_series`)."""
    for label, values in _series(observed, time_dim):
        if label == series_label:
            return values.values
    return np.full(observed.sizes[time_dim], np.nan)


def posterior_figure(idata, var_names) -> str:
    """Marginal posteriors with 50% and 90% intervals."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = az.plot_forest(
            idata,
            var_names=var_names,
            combined=True,
            hdi_prob=0.9,
            figsize=(7, 0.5 + 0.45 * _count(idata, var_names)),
        )
    return to_png(np.ravel(axes)[0].figure)


def density_figure(idata, var_names) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = az.plot_posterior(
            idata,
            var_names=var_names,
            hdi_prob=0.9,
            figsize=(9, 2.6 * int(np.ceil(_count(idata, var_names) / 3))),
        )
    return to_png(np.ravel(axes)[0].figure)


def trace_figure(idata, var_names) -> str:
    """Trace (left) and rank plots (right) per parameter and chain."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = az.plot_trace(
            idata,
            var_names=var_names,
            kind="rank_bars",
            figsize=(10, 2.0 * _count(idata, var_names)),
        )
    return to_png(np.ravel(axes)[0].figure)


def _count(idata, var_names) -> int:
    post = idata.posterior
    per_draw = post.sizes["chain"] * post.sizes["draw"]
    return max(1, sum(post[v].size // per_draw for v in var_names))
