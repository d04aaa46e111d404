"""Convergence and fit checks with plain verdicts: ``pass``, ``warn`` or ``fail``.

Each check reads only the ``InferenceData`` (sample statistics and draws), compares a
number with documented thresholds and gives one line of advice:

| check | pass | warn | fail |
|---|---|---|---|
| R-hat (max, rank-normalised split) | <= 1.01 | <= 1.05 | > 1.05 |
| bulk ESS (min) | >= 100 per chain | >= 50 per chain | below |
| tail ESS (min) | >= 100 per chain | >= 50 per chain | below |
| divergences (after warm-up) | 0 | <= 1% of draws | > 1% |
| E-BFMI (min over chains) | >= 0.3 | >= 0.2 | < 0.2 |
| tree-depth saturation | < 1% of draws | < 10% | >= 10% |
| Pareto k of PSIS-LOO (max) | <= 0.7 | <= 1.0 | > 1.0 |

A check that does not apply to a run (R-hat and ESS of independent draws, R-hat of one
chain) is listed as ``n/a`` and does not move the verdict. A backend may add checks
only it can judge (an optimiser's convergence, importance-weight Pareto k): they are
stored with the run's metadata and listed after these.

References: Vehtari et al. (2021) for R-hat/ESS, Betancourt (2016) for E-BFMI,
Vehtari, Gelman & Gabry (2017) for PSIS-LOO.
"""

from __future__ import annotations

import functools
import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # ArviZ and pandas load with the first result
    import arviz as az
    import pandas as pd

from ..processes._series import unchecked_suffixes
from ._convert import metadata_of

STATUS_ORDER = {"n/a": -1, "pass": 0, "warn": 1, "fail": 2}
#: posterior variables left out of R-hat/ESS: standard-normal innovations are a
#: parametrisation (the path values they produce are checked instead), and ``_latent``
#: paths are drawn afresh given each posterior draw (forward filtering, backward
#: sampling), so they say nothing about mixing that the parameters do not -- while
#: the maximum of R-hat over hundreds of them flips a short run between pass and warn.
UNCHECKED_SUFFIXES = unchecked_suffixes()


@functools.cache
def _table_class():
    """A ``pandas.DataFrame`` that prints whole (no column dropped for the terminal's
    width: the status column must show); pandas is imported on first use."""
    import pandas as pd

    class Table(pd.DataFrame):
        @property
        def _constructor(self):
            return Table

        def __repr__(self) -> str:
            return self.to_string()

    return Table


def as_table(*args, **kwargs):
    """A :func:`_table_class` table, built as ``pandas.DataFrame(*args, **kwargs)``."""
    return _table_class()(*args, **kwargs)


#: A parameter whose posterior variance is more than 90% of its prior variance
#: (posterior contraction below this) is set by the prior, not the data.
PRIOR_DOMINATED = 0.1


def scalar_draws(group, var_names) -> list[tuple[str, np.ndarray]]:
    """Every element of the named variables of an ``InferenceData`` group (posterior,
    prior) as ``(label, draws)``, draws ``(chain, draw)``; labels ``name`` or
    ``name[i, j]``, as in ArviZ summaries."""
    out = []
    for name in var_names:
        values = np.asarray(group[name].values, dtype=float)
        shape = values.shape[2:]
        for index in np.ndindex(*shape):
            label = f"{name}[{', '.join(map(str, index))}]" if shape else name
            out.append((label, values[(slice(None), slice(None), *index)]))
    return out


def contraction(idata, var_names) -> dict[str, float]:
    r"""Posterior contraction $1 - \mathrm{Var}_\text{post} / \mathrm{Var}_\text{prior}$
    of every parameter element found in both the posterior and the prior group (0: the
    data taught nothing; near 1: the data dominate). Empty without a prior group."""
    if not hasattr(idata, "prior"):
        return {}
    names = [n for n in var_names if n in idata.prior.data_vars]
    prior = dict(scalar_draws(idata.prior, names))
    out = {}
    for label, draws in scalar_draws(idata.posterior, names):
        prior_var = np.nanvar(prior[label])
        if prior_var > 0 and np.isfinite(prior_var):
            out[label] = float(1.0 - np.nanvar(draws) / prior_var)
    return out


def grade(value, pass_if, warn_if) -> str:
    """``"pass"`` if ``pass_if(value)``, else ``"warn"`` if ``warn_if(value)``, else
    ``"fail"``."""
    if pass_if(value):
        return "pass"
    return "warn" if warn_if(value) else "fail"


def _checked_vars(idata) -> list[str]:
    return [v for v in idata.posterior.data_vars if not v.endswith(UNCHECKED_SUFFIXES)]


def _worst(dataset, reduce):
    """``(value, variable)`` of the worst entry over all variables and elements."""
    best_value, best_name = None, None
    for name, arr in dataset.data_vars.items():
        values = np.asarray(arr.values, dtype=float)
        if values.size == 0 or np.all(np.isnan(values)):
            continue
        v = reduce(values[~np.isnan(values)])
        if best_value is None or reduce(np.array([v, best_value])) == v:
            best_value, best_name = float(v), name
    return best_value, best_name


def check(
    idata: az.InferenceData, *, max_tree_depth: int | None = None
) -> pd.DataFrame:
    """Table of checks: columns ``check, value, status, advice``.

    ``max_tree_depth`` enables the tree-depth check (NUTS); otherwise it is read from
    the run metadata when present.
    """
    rows = []
    chains = idata.posterior.sizes["chain"]
    draws = idata.posterior.sizes["draw"]
    meta = metadata_of(idata)
    if meta.get("independent_draws"):
        rows.append(
            (
                "R-hat, ESS",
                "n/a (independent draws)",
                "n/a",
                "the draws are independent, not a Markov chain: mixing checks do not "
                "apply",
            )
        )
    else:
        rows += _mixing_rows(idata, chains)
    rows += _sampler_rows(idata, chains, draws, max_tree_depth, meta)
    rows += _prior_rows(idata) + _coverage_rows(idata)
    rows += [tuple(row) for row in meta.get("backend_checks", [])]
    return as_table(rows, columns=["check", "value", "status", "advice"])


def _mixing_rows(idata, chains: int) -> list:
    """R-hat and bulk/tail ESS rows."""
    import arviz as az

    rows = []
    var_names = _checked_vars(idata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat, rhat_var = _worst(az.rhat(idata, var_names=var_names), np.max)
        bulk, bulk_var = _worst(
            az.ess(idata, var_names=var_names, method="bulk"), np.min
        )
        tail, tail_var = _worst(
            az.ess(idata, var_names=var_names, method="tail"), np.min
        )
    if chains > 1 and rhat is not None:
        rows.append(
            (
                "R-hat",
                f"{rhat:.3f} ({rhat_var})",
                grade(rhat, lambda v: v <= 1.01, lambda v: v <= 1.05),
                "chains agree"
                if rhat <= 1.01
                else "chains disagree: warm up longer, draw more, or reparametrise",
            )
        )
    elif chains == 1:
        rows.append(
            (
                "R-hat",
                "n/a (1 chain)",
                "n/a",
                "run at least 2 chains to check convergence",
            )
        )
    for label, value, var in (
        ("bulk ESS", bulk, bulk_var),
        ("tail ESS", tail, tail_var),
    ):
        if value is None:
            continue
        status = grade(value, lambda v: v >= 100 * chains, lambda v: v >= 50 * chains)
        advice = (
            "enough effective draws"
            if status == "pass"
            else "too few effective draws: draw more, or improve the parametrisation"
        )
        rows.append((label, f"{value:.0f} ({var})", status, advice))
    return rows


def _sampler_rows(idata, chains, draws, max_tree_depth, meta) -> list:
    """Divergences, E-BFMI, tree depth (from sample statistics) and PSIS-LOO rows."""
    import arviz as az

    rows = []
    stats = idata.sample_stats if hasattr(idata, "sample_stats") else None
    if stats is not None and "diverging" in stats:
        n_div = int(np.asarray(stats["diverging"]).sum())
        frac = n_div / (chains * draws)
        status = "pass" if n_div == 0 else ("warn" if frac <= 0.01 else "fail")
        advice = (
            "no divergent transitions"
            if n_div == 0
            else (
                "divergences bias the posterior: raise target_accept, or "
                "reparametrise (non-centre)"
            )
        )
        rows.append(("divergences", f"{n_div} ({100 * frac:.2f}%)", status, advice))
    if stats is not None and "energy" in stats:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bfmi = float(np.min(az.bfmi(idata)))
        status = grade(bfmi, lambda v: v >= 0.3, lambda v: v >= 0.2)
        advice = (
            "momentum resampling explores the energy well"
            if status == "pass"
            else (
                "low E-BFMI: heavy tails or poor adaptation; reparametrise or warm "
                "up longer"
            )
        )
        rows.append(("E-BFMI", f"{bfmi:.2f}", status, advice))
    if max_tree_depth is None:
        max_tree_depth = meta.get("settings", {}).get("max_tree_depth")
    if stats is not None and "tree_depth" in stats and max_tree_depth:
        frac = float(np.mean(np.asarray(stats["tree_depth"]) >= max_tree_depth))
        status = grade(frac, lambda v: v < 0.01, lambda v: v < 0.1)
        advice = (
            "trajectories end by U-turn"
            if status == "pass"
            else (
                "trajectories hit the maximum depth: raise max_tree_depth or "
                "reparametrise"
            )
        )
        rows.append(
            (
                "tree-depth saturation",
                f"{100 * frac:.1f}% at depth {max_tree_depth}",
                status,
                advice,
            )
        )
    if meta.get("estimated_likelihood"):
        rows.append(
            (
                "Pareto k (LOO)",
                "n/a (particle estimates)",
                "n/a",
                "the pointwise log-likelihoods are particle-filter estimates, whose "
                "noise PSIS-LOO would read as influence",
            )
        )
    elif hasattr(idata, "log_likelihood") and len(idata.log_likelihood.data_vars) == 1:
        rows.append(_loo_row(idata))
    return rows


def _parameter_names(idata) -> list[str]:
    """Posterior variables of at most 16 values per draw (parameters, not paths)."""
    post = idata.posterior
    per_draw = post.sizes["chain"] * post.sizes["draw"]
    return [n for n, a in post.data_vars.items() if a.size // per_draw <= 16]


def _prior_rows(idata) -> list:
    """Flag parameters the data barely inform (posterior close to the prior)."""
    shrink = contraction(idata, _parameter_names(idata))
    if not shrink:
        return []
    weak = sorted(label for label, c in shrink.items() if c < PRIOR_DOMINATED)
    if not weak:
        lowest = min(shrink, key=shrink.get)
        return [
            (
                "data inform the parameters",
                f"contraction >= {shrink[lowest]:.2f} ({lowest})",
                "pass",
                "every posterior is narrower than its prior",
            )
        ]
    return [
        (
            "data inform the parameters",
            ", ".join(f"{w} {shrink[w]:.2f}" for w in weak),
            "warn",
            "posterior variance above 90% of the prior's: these are set by the prior, "
            "not the data; check the prior, or whether the data can inform them",
        )
    ]


def one_step_coverage(idata) -> dict[str, tuple[float, int]]:
    """Per observed time series with one-step-ahead predictive draws
    (``{name}_one_step``): ``(fraction of observations inside the draws' central 90%
    interval, number of observations)``."""
    from ..processes._series import derived_name

    if not hasattr(idata, "posterior_predictive") or not hasattr(
        idata, "observed_data"
    ):
        return {}
    out = {}
    for name, observed in idata.observed_data.data_vars.items():
        one_step = derived_name(name, "one_step")
        if one_step not in idata.posterior_predictive:
            continue
        draws = idata.posterior_predictive[one_step]
        draws = np.asarray(draws.values, dtype=float).reshape((-1,) + draws.shape[2:])
        y = np.broadcast_to(np.asarray(observed.values, dtype=float), draws.shape[1:])
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lo, hi = np.nanquantile(draws, [0.05, 0.95], axis=0)
        ok = np.isfinite(y) & np.isfinite(lo) & np.isfinite(hi)
        if ok.sum():
            inside = (y >= lo) & (y <= hi)
            out[name] = (float(inside[ok].mean()), int(ok.sum()))
    return out


def _coverage_rows(idata) -> list:
    """The one-step-ahead predictive's 90% intervals should hold about 90% of the
    observations: outside the binomial 99% range of that count, the model misfits."""
    from scipy import stats

    rows = []
    for name, (fraction, count) in one_step_coverage(idata).items():
        label = f"one-step coverage ({name})"
        value = f"{100 * fraction:.0f}% of {count} in the 90% intervals"
        if count < 10:
            rows.append((label, value, "n/a", "too few observations to judge"))
            continue
        lo, hi = stats.binom.ppf([0.005, 0.995], count, 0.9) / count
        status = "pass" if lo <= fraction <= hi else "warn"
        advice = (
            "the one-step-ahead predictions are calibrated"
            if status == "pass"
            else (
                "too few observations fall inside: the model underestimates the noise "
                "or misses structure"
                if fraction < lo
                else "too many fall inside: the model overestimates the noise"
            )
        )
        rows.append((label, value, status, advice))
    return rows


def _loo_row(idata) -> tuple:
    """PSIS-LOO's largest Pareto k over the observations whose log-likelihood varies
    across draws (a masked or fixed point carries no information, and its constant
    term would give k = inf); n/a with fewer than two."""
    import arviz as az

    ((name, ll),) = idata.log_likelihood.data_vars.items()
    chains, draws = ll.sizes["chain"], ll.sizes["draw"]
    terms = np.asarray(ll.transpose("chain", "draw", ...).values).reshape(
        chains, draws, -1
    )
    with np.errstate(invalid="ignore"):
        varying = np.ptp(terms, axis=(0, 1)) > 0
    count = int(varying.sum())
    if count < 2:
        return (
            "Pareto k (LOO)",
            f"n/a ({count} informative observation{'s' * (count != 1)})",
            "n/a",
            "leave-one-out needs several observations whose likelihood depends on the "
            "parameters",
        )
    reduced = az.from_dict(
        posterior={"draw_index": np.zeros((chains, draws))},
        log_likelihood={name: terms[..., varying]},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loo = az.loo(reduced, pointwise=True)
    k = np.asarray(loo.pareto_k)
    kmax = float(np.nanmax(k))
    status = grade(kmax, lambda v: v <= 0.7, lambda v: v <= 1.0)
    advice = (
        "PSIS-LOO is reliable"
        if status == "pass"
        else (
            f"{int(np.sum(k > 0.7))} observations with k > 0.7: LOO is unreliable "
            "there (influential points or misfit)"
        )
    )
    return ("Pareto k (LOO)", f"{kmax:.2f} ({count} observations)", status, advice)


def verdict(table: pd.DataFrame) -> str:
    """The worst status in a :func:`check` table (``n/a`` rows do not count)."""
    statuses = [s for s in table["status"] if s != "n/a"]
    return max(statuses, key=STATUS_ORDER.__getitem__) if statuses else "pass"
