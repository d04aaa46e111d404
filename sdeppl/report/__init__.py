"""Layer 4: results -- :class:`Fit` (what every backend returns) and the
self-contained HTML uncertainty report it writes.

:func:`write_report` turns a :class:`Fit` (or a saved ``posterior.nc``) into one HTML
page with every image embedded as a base64 PNG and no scripts or external resources
(see :mod:`sdeppl.report._page` for its sections). Everything is read from the
``InferenceData``, so ``sdeppl report posterior.nc`` rebuilds the same page from a
saved run.
"""

from ._fit import Fit as Fit
from ._fit import load as load
from ._page import render_report as render_report
from ._page import write_report as write_report
