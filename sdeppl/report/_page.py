"""The self-contained HTML uncertainty report.

:func:`write_report` turns a :class:`~sdeppl.Fit` (or a saved ``posterior.nc``) into
one HTML page with every image embedded as a base64 PNG and no scripts or external
resources:

1. a verdict banner (the worst diagnostic status),
2. the model and data: observed variables, their shapes, time spans and missing values,
3. parameter posteriors: a table (mean, sd, 5/50/95% quantiles, ESS, R-hat) and one
   panel per parameter on its own scale (histogram, median, 50% and 90% intervals),
4. every path: observations with posterior / posterior-predictive 50% and 90% bands and
   forecasts beyond the last time,
5. trace and rank plots (every chain's draws in order; rank histograms per chain),
6. the diagnostics table with pass/warn/fail and advice,
7. run metadata (backend, settings, seed, versions, devices, wall time).

Everything is read from the ``InferenceData``, so ``sdeppl report posterior.nc``
rebuilds the same page from a saved run.
"""

from __future__ import annotations

import html

import numpy as np

from .._io import atomic_write
from ..diagnostics import check, verdict
from ..diagnostics.checks import (
    PRIOR_DOMINATED,
    contraction,
    one_step_coverage,
    scalar_draws,
)

_STATUS_STYLE = {
    "pass": "#1d7a3a",
    "warn": "#b07a00",
    "fail": "#b3261e",
    "n/a": "#6b6b6b",
}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;\
max-width:1000px;margin:2em auto;
padding:0 1em;color:#1b1b1b;line-height:1.45}
h1{margin-bottom:.2em}\
h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:right}th{background:#f4f4f4}
td.l,th.l{text-align:left}img{max-width:100%;height:auto;display:block;margin:.6em 0}
.badge{display:inline-block;padding:.15em .6em;border-radius:.3em;color:#fff;\
font-weight:600}
.banner{padding:.8em 1em;border-radius:.4em;color:#fff;margin:1em 0}
code{background:#f4f4f4;padding:0 .2em}
"""


def _table(rows, header, left_columns=1) -> str:
    head = "".join(
        f'<th class="{"l" if i < left_columns else ""}">{html.escape(str(h))}</th>'
        for i, h in enumerate(header)
    )
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="{"l" if i < left_columns else ""}">{cell}</td>'
            for i, cell in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _img(png: str | None, alt: str) -> str:
    if png is None:
        return ""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png}">'


def _badge(status: str) -> str:
    return (
        f'<span class="badge" style="background:{_STATUS_STYLE[status]}">'
        f"{status}</span>"
    )


def _fmt(x) -> str:
    x = float(x)
    if not np.isfinite(x):
        return str(x)
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.4g}"


def _data_section(idata) -> str:
    if not hasattr(idata, "observed_data"):
        return "<p>No observed data.</p>"
    rows = []
    for name, arr in idata.observed_data.data_vars.items():
        values = np.asarray(arr.values, dtype=float)
        time_dims = [d for d in arr.dims if d == "time" or d.endswith("_time")]
        span = ""
        if time_dims:
            t = arr[time_dims[0]].values
            span = f"{_fmt(t[0])} – {_fmt(t[-1])} ({t.size} times)"
        rows.append(
            [
                f"<code>{html.escape(name)}</code>",
                html.escape(
                    " × ".join(
                        f"{d}={n}" for d, n in zip(arr.dims, arr.shape, strict=True)
                    )
                ),
                span,
                str(int(np.isnan(values).sum())),
                f"{_fmt(np.nanmin(values))} – {_fmt(np.nanmax(values))}",
            ]
        )
    return _table(
        rows, ["variable", "shape", "time span", "missing", "range"], left_columns=3
    )


def _parameter_table(idata, var_names) -> str:
    import arviz as az

    summary = az.summary(idata, var_names=var_names, stat_focus="mean", hdi_prob=0.9)
    shrink = contraction(idata, var_names)
    rows = []
    for label, draws in scalar_draws(idata.posterior, var_names):
        q05, q50, q95 = np.quantile(draws, [0.05, 0.5, 0.95])
        r = summary.loc[label]
        rows.append(
            [
                f"<code>{html.escape(label)}</code>",
                _fmt(r["mean"]),
                _fmt(r["sd"]),
                _fmt(q05),
                _fmt(q50),
                _fmt(q95),
                f"{r['ess_bulk']:.0f}",
                f"{r['r_hat']:.3f}",
                _informed(shrink.get(label)),
            ]
        )
    return _table(
        rows,
        [
            "parameter",
            "mean",
            "sd",
            "5%",
            "median",
            "95%",
            "bulk ESS",
            "R-hat",
            "contraction",
        ],
    )


def _informed(shrink: float | None) -> str:
    """The posterior contraction cell: a badge where the prior, not the data, sets the
    posterior."""
    if shrink is None:
        return "—"
    if shrink < PRIOR_DOMINATED:
        return f"{shrink:.2f} {_badge('warn')} prior-dominated"
    return f"{shrink:.2f}"


def _path_variables(idata) -> list[tuple[str, str]]:
    """``(name, time_dim)`` of every path-valued variable in the run."""
    found = {}
    for group in ("observed_data", "posterior", "posterior_predictive"):
        if not hasattr(idata, group):
            continue
        for name, arr in getattr(idata, group).data_vars.items():
            if name.endswith(("_forecast", "_one_step")):
                continue
            time_dims = [
                d
                for d in arr.dims
                if d == "time" or (d.endswith("_time") and not d.endswith("_obs_time"))
            ]
            if time_dims:
                found.setdefault(name, time_dims[0])
    return list(found.items())


def _comparison_section(fit, compare: dict, var_names) -> list[str]:
    """Side by side: each run's verdict and time, its parameter summaries, and the
    posteriors overlaid."""
    from . import _plots

    runs = {str(fit.metadata.get("backend", "this run")): fit, **compare}
    header = [
        "<h2>Comparison</h2>",
        "<p>The same model and data fitted by "
        + ", ".join(f"<code>{html.escape(label)}</code>" for label in runs)
        + ": verdicts and times, then every parameter's posterior mean, standard "
        "deviation and 5–95% interval by run (rows grouped by parameter), and the "
        "posteriors overlaid (dashed: medians). Where they disagree, trust the run "
        "whose diagnostics pass.</p>",
    ]
    overview = _table(
        [
            [
                f"<code>{html.escape(label)}</code>",
                _badge(run.verdict),
                _fmt(run.metadata.get("wall_time_s", float("nan"))),
                str(
                    run.idata.posterior.sizes["chain"]
                    * run.idata.posterior.sizes["draw"]
                ),
            ]
            for label, run in runs.items()
        ],
        ["run", "verdict", "wall time (s)", "draws"],
        left_columns=2,
    )
    rows = []
    draws_by_run = {
        label: dict(scalar_draws(run.idata.posterior, var_names))
        for label, run in runs.items()
    }
    for name in draws_by_run[next(iter(runs))]:
        for label, draws in draws_by_run.items():
            if name not in draws:
                continue
            x = np.asarray(draws[name]).ravel()
            q05, q95 = np.quantile(x, [0.05, 0.95])
            rows.append(
                [
                    f"<code>{html.escape(name)}</code>",
                    html.escape(label),
                    _fmt(x.mean()),
                    _fmt(x.std()),
                    _fmt(q05),
                    _fmt(q95),
                ]
            )
    table = _table(
        rows, ["parameter", "run", "mean", "sd", "5%", "95%"], left_columns=2
    )
    figure = _img(
        _plots.comparison_figure(
            {label: run.idata for label, run in runs.items()}, var_names
        ),
        "posteriors of the runs overlaid",
    )
    return header + [overview, table, figure]


def render_report(fit, *, title: str | None = None, compare: dict | None = None) -> str:
    """The report's HTML as a string; ``compare`` (``{label: Fit}``) adds a section
    that sets other fits of the same model beside this one."""
    from . import _plots  # matplotlib loads when a report is rendered

    idata = fit.idata
    meta = fit.metadata
    table = check(idata)
    overall = verdict(table)
    title = title or f"sdeppl report: {meta.get('model', 'model')}"
    var_names = fit.parameter_names()
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<div class='banner' style='background:{_STATUS_STYLE[overall]}'>"
        f"Overall verdict: <b>{overall}</b> — "
        + {
            "pass": (
                "every check passed (convergence, calibration of the predictions, "
                "and every parameter informed by the data): the posterior summaries "
                "below can be trusted."
            ),
            "warn": (
                "some checks need attention (see Diagnostics) before relying on the "
                "numbers."
            ),
            "fail": (
                "at least one check failed: do not trust these results until it is "
                "fixed (see Diagnostics)."
            ),
        }[overall]
        + "</div>",
        "<h2>Model and data</h2>",
        f"<p>Model <code>{html.escape(str(meta.get('model', '?')))}</code>, backend "
        f"<code>{html.escape(str(meta.get('backend', '?')))}</code>, "
        f"{idata.posterior.sizes['chain']} chains × "
        f"{idata.posterior.sizes['draw']} draws. "
        "Parameters: "
        f"{', '.join(f'<code>{html.escape(v)}</code>' for v in var_names) or '—'}"
        ".</p>",
        _data_section(idata),
    ]
    if var_names:
        parts += [
            "<h2>Parameter posteriors</h2>",
            "<p>Posterior mean, standard deviation and 5/50/95% quantiles; the "
            "contraction 1 &minus; Var(posterior)/Var(prior) says how much the data "
            "narrowed each parameter (near 0: the prior, not the data, sets it; "
            "flagged below 0.1). Each panel shows one posterior on its own scale: the "
            "histogram of the draws, the median (line), the 50% (dark) and 90% (light) "
            "central intervals, and the prior (dashed); the title reads median [5%, "
            "95%].</p>",
            _parameter_table(idata, var_names),
            _img(_plots.posterior_figure(idata, var_names), "posterior intervals"),
        ]
    if compare:
        parts += _comparison_section(fit, compare, var_names)
    paths = _path_variables(idata)
    if paths:
        parts.append("<h2>Paths</h2>")
        parts.append(
            "<p>Dots: observations. Blue bands: 50% and 90% intervals of the posterior "
            "(latent paths) or of the one-step-ahead posterior predictive (observed "
            "paths: each point predicted from the previous observation; about 90% of "
            "the dots should fall in the outer band); orange: forecasts beyond the "
            "last time.</p>"
        )
        coverage = one_step_coverage(idata)
        if coverage:
            parts.append(
                "<p>One-step coverage: "
                + "; ".join(
                    f"<code>{html.escape(n)}</code> {100 * f:.0f}% of {c} observations "
                    "inside the 90% band"
                    for n, (f, c) in coverage.items()
                )
                + " (see Diagnostics).</p>"
            )
        for name, time_dim in paths:
            png = _plots.path_figure(idata, name, time_dim)
            if png:
                parts += [
                    f"<h3><code>{html.escape(name)}</code></h3>",
                    _img(png, f"path {name}"),
                ]
    filters = meta.get("backend_info", {}).get("particle_filter")
    if filters:
        parts += [
            "<h2>Particle filter</h2>",
            "<p>The filter at the posterior median: its effective sample size after "
            "each observation, as a fraction of the particles (dips mark "
            "observations the particles could barely explain), and where it "
            "resampled (when the ESS fell below the dashed line).</p>",
            _img(_plots.particle_filter_figure(filters), "particle filter ESS"),
        ]
    stats = getattr(idata, "sample_stats", None)
    if stats is not None and "elbo" in stats and "step" in stats["elbo"].dims:
        info = meta.get("backend_info", {})
        parts += [
            "<h2>Variational fit</h2>",
            "<p>The evidence lower bound (ELBO) at each optimisation step (means over "
            "blocks of steps): it should rise and then level off. Final ELBO "
            f"{info.get('elbo', float('nan')):.6g} ± "
            f"{info.get('elbo_se', float('nan')):.2g}; Pareto k of the importance "
            f"weights {info.get('pareto_k', float('nan')):.2f} (see Diagnostics: "
            "above 0.7 the "
            "variational draws are not the posterior).</p>",
            _img(
                _plots.elbo_figure(np.asarray(stats["elbo"].values[0], float)),
                "ELBO trace",
            ),
        ]
    if var_names:
        parts += [
            "<h2>Traces and ranks</h2>",
            "<p>Left: every chain's draws in order (chains that agree overlap and "
            "show no trend). Right: where each chain's draws rank among all draws; "
            "the bars are flat, near the dashed line, when the chains sample the same "
            "distribution.</p>",
            _img(_plots.trace_figure(idata, var_names), "trace and rank plots"),
        ]
    parts += [
        "<h2>Diagnostics</h2>",
        _table(
            [
                [
                    html.escape(r.check),
                    html.escape(r.value),
                    _badge(r.status),
                    html.escape(r.advice),
                ]
                for r in table.itertuples()
            ],
            ["check", "value", "status", "advice"],
            left_columns=4,
        ),
        "<h2>Run</h2>",
        _table(
            [
                [html.escape(k), f"<code>{html.escape(str(v))}</code>"]
                for k, v in _flatten(meta).items()
            ],
            ["setting", "value"],
            left_columns=2,
        ),
        "</body></html>",
    ]
    return "\n".join(parts)


def _flatten(meta: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in meta.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif isinstance(v, list) and len(str(v)) > 120:
            out[prefix + k] = str(v)[:117] + "..."
        else:
            out[prefix + k] = v
    return out


def write_report(fit, path, *, title: str | None = None, compare=None) -> str:
    """Write the report to ``path`` atomically (rename into place) and return the
    path."""
    text = render_report(fit, title=title, compare=compare)

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write, suffix=".html")
