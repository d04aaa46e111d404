"""Layer 3: ArviZ conversion, convergence checks with verdicts, simulation-based
calibration.

- :func:`check` / :func:`verdict`: the diagnostics table (pass/warn/fail with advice).
- :func:`to_inference_data`: sampler output to ``InferenceData`` with time coordinates.
- :func:`sbc`: simulation-based calibration (prior draws -> data -> fits -> ranks); its
  statistics are here (:mod:`.calibration`), its driver runs the samplers of
  :mod:`sdeppl.infer` and is imported on first use.
"""

from ._convert import PathCoords as PathCoords
from ._convert import metadata_of as metadata_of
from ._convert import to_inference_data as to_inference_data
from .calibration import SBCResult as SBCResult
from .calibration import rank_statistics as rank_statistics
from .calibration import uniformity_pvalue as uniformity_pvalue
from .checks import check as check
from .checks import verdict as verdict


def __getattr__(name):
    if name == "sbc":  # the driver needs the samplers (layer 4): imported on demand
        from ..infer.sbc import sbc

        return sbc
    raise AttributeError(f"module 'sdeppl.diagnostics' has no attribute {name!r}")
