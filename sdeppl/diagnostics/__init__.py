"""Layer 3: the :class:`Fit` result, ArviZ conversion, convergence checks with
verdicts, simulation-based calibration statistics.

- :func:`check` / :func:`verdict`: the diagnostics table (pass/warn/fail with advice).
- :func:`to_inference_data`: sampler output to ``InferenceData`` with time coordinates.
- :class:`SBCResult`, :func:`rank_statistics`, :func:`uniformity_pvalue`: the
  statistics of simulation-based calibration, whose driver (:func:`sdeppl.sbc`) runs
  the backends of :mod:`sdeppl.infer`; :class:`VSBCResult` those of its variational
  form (:func:`sdeppl.vsbc`).
"""

from ._convert import PathCoords as PathCoords
from ._convert import metadata_of as metadata_of
from ._convert import to_inference_data as to_inference_data
from ._fit import Fit as Fit
from ._fit import load as load
from .calibration import SBCResult as SBCResult
from .calibration import VSBCResult as VSBCResult
from .calibration import rank_statistics as rank_statistics
from .calibration import uniformity_pvalue as uniformity_pvalue
from .checks import check as check
from .checks import verdict as verdict
