"""Layer 5: the self-contained HTML uncertainty report.

:func:`write_report` turns a :class:`~sdeppl.Fit` (or a saved ``posterior.nc``) into one
HTML page with every image embedded as a base64 PNG and no scripts or external
resources (see :mod:`sdeppl.report._page` for its sections). Everything is read from
the ``InferenceData``, so ``sdeppl report posterior.nc`` rebuilds the same page from a
saved run. Importing this package registers :func:`write_report` as the writer behind
:meth:`Fit.report <sdeppl.Fit.report>`.
"""

from ..diagnostics._fit import register_report_writer
from ._page import render_report as render_report
from ._page import write_report as write_report

register_report_writer(write_report)
