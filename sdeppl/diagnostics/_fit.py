"""The result of :func:`sdeppl.fit`: an ArviZ ``InferenceData`` with checks, saving and
a report.

It lives in the diagnostics layer, below both inference (every backend returns one) and
the report (which draws one). :meth:`Fit.report` calls the writer that
:mod:`sdeppl.report` registers when it is imported (``import sdeppl`` does), so this
layer never imports the one above it."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .._io import atomic_write
from ._convert import metadata_of
from .checks import as_table, check, verdict

if TYPE_CHECKING:  # ArviZ and pandas load with the first result
    import arviz as az
    import pandas as pd


_REPORT_WRITERS: dict = {}
_SINGLE_PRECISION_GROUPS = ("posterior_predictive", "log_likelihood")


def register_report_writer(writer, kind: str = "html") -> None:
    """Called by :mod:`sdeppl.report` at import: ``writer(fit, path, title=...,
    compare=...)``."""
    _REPORT_WRITERS[kind] = writer


class Fit:
    """Posterior draws and everything needed to judge and report them.

    Attributes
    ----------
    idata: ``arviz.InferenceData`` with groups ``posterior``, ``sample_stats``,
        ``observed_data``, ``log_likelihood`` and, on request, ``posterior_predictive``
        (including ``{path}_forecast`` variables). Path variables have dims
        ``(..., time[, state])`` with the model's times as coordinate.
    metadata: run metadata (backend, settings, seed, versions, wall time).
    """

    def __init__(self, idata: az.InferenceData):
        self.idata = idata

    @property
    def metadata(self) -> dict:
        return metadata_of(self.idata)

    @property
    def log_evidence(self) -> tuple[float, float]:
        r"""The log marginal likelihood $\log p(y) = \log \int p(y \mid \theta)\,
        p(\theta)\,d\theta$ and its Monte Carlo standard error, as
        ``(value, standard_error)``, for a method that estimates it
        (``method="smc"``).

        The standard error is NaN when the run cannot give one (``runs=1``), and both
        are NaN when the run did not reach the posterior (see :meth:`diagnostics`).

        Raises
        ------
        AttributeError
            If the fit's method gives no evidence (``hasattr(fit, "log_evidence")``
            is then False).
        """
        info = self.metadata.get("backend_info", {})
        if "log_evidence" not in info:
            raise AttributeError(
                f"Fit.log_evidence: method={self.metadata.get('backend')!r} gives no "
                "log-evidence; fit with method='smc' (adaptive tempered SMC) for one."
            )
        value = info["log_evidence"]
        se = info.get("log_evidence_se")
        return (
            float("nan") if value is None else float(value),
            float("nan") if se is None else float(se),
        )

    def parameter_names(self) -> list[str]:
        """Posterior variables of at most 16 values per draw (parameters, not paths)."""
        post = self.idata.posterior
        return [
            name
            for name, arr in post.data_vars.items()
            if arr.size // (post.sizes["chain"] * post.sizes["draw"]) <= 16
        ]

    def summary(self, var_names=None, **kwargs) -> pd.DataFrame:
        """``arviz.summary`` of the parameters (or of ``var_names``), printed whole."""
        import arviz as az

        return as_table(
            az.summary(
                self.idata, var_names=var_names or self.parameter_names(), **kwargs
            )
        )

    def diagnostics(self) -> pd.DataFrame:
        """Checks with ``pass``/``warn``/``fail`` (or ``n/a``) and advice (see
        :mod:`sdeppl.diagnostics.checks`), printed whole."""
        return check(self.idata)

    @property
    def verdict(self) -> str:
        """The worst status of :meth:`diagnostics`."""
        return verdict(self.diagnostics())

    def save(self, path) -> str:
        """Write the ``InferenceData`` to NetCDF atomically and return the path.

        The file is written next to its destination and renamed into place, so a crash
        never leaves a truncated file over a previous result. Variables are
        zlib-compressed; the per-draw replicates (groups ``posterior_predictive`` and
        ``log_likelihood``, most of the file) are stored in float32, which halves the
        file (their random digits do not compress) and keeps seven significant digits;
        the posterior and observed data keep their precision.
        """
        small = self.idata.map(
            lambda ds: ds.map(
                lambda a: a.astype("float32") if a.dtype == "float64" else a,
                keep_attrs=True,
            ),
            groups=[g for g in _SINGLE_PRECISION_GROUPS if g in self.idata.groups()],
        )
        return atomic_write(path, small.to_netcdf, suffix=".nc")

    def report(self, path, *, title: str | None = None, compare=None) -> str:
        """Write the self-contained HTML uncertainty report (see
        :mod:`sdeppl.report`). ``compare`` (``{label: Fit}``) sets other fits of the
        same model beside this one (verdicts, times, parameter summaries and the
        posteriors overlaid), e.g. ``{"svi": svi_fit}`` in the report of a NUTS fit.
        """
        if compare is not None and (
            not isinstance(compare, dict)
            or not all(isinstance(v, Fit) for v in compare.values())
        ):
            raise TypeError(
                "Fit.report: compare must be a dict {label: Fit}; got "
                f"{type(compare).__name__}."
            )
        if "html" not in _REPORT_WRITERS:
            raise RuntimeError(
                "Fit.report: no report writer is registered; import sdeppl.report "
                "(import sdeppl does)."
            )
        return _REPORT_WRITERS["html"](self, path, title=title, compare=compare)

    def __repr__(self) -> str:
        meta = self.metadata
        post = self.idata.posterior
        return (
            f"Fit(backend={meta.get('backend')!r}, chains={post.sizes['chain']}, "
            f"draws={post.sizes['draw']}, variables={list(post.data_vars)[:6]})"
        )


def load(path) -> Fit:
    """Load a :class:`Fit` saved with :meth:`Fit.save`."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no such file {os.fspath(path)!r}.")
    import arviz as az

    return Fit(az.from_netcdf(path))
