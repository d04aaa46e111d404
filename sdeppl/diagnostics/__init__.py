"""Layer 3: ArviZ conversion, convergence checks with verdicts, simulation-based calibration."""

from ._convert import PathCoords as PathCoords
from ._convert import metadata_of as metadata_of
from ._convert import to_inference_data as to_inference_data
from .checks import check as check
from .checks import verdict as verdict
