"""Layer 2: stochastic processes as NumPyro distributions.

- :class:`SDE`, :class:`LinearSDE`, :class:`OU`, :class:`CIR`: the dynamics.
- :class:`Path`: the distribution of an SDE's path at given times (likelihood with
  ``obs=``, latent path without).
- :class:`StateSpace`: noisy observations of a latent SDE, the path integrated out by a
  Kalman, extended or unscented filter.
- Observation models (:mod:`.observations`): :class:`LinearGaussian`,
  :class:`GaussianObservation`, and :class:`Observation` for any state -> NumPyro
  distribution function.
- :func:`reparam_paths`: non-centred latent paths and data augmentation for inference.
- :class:`TimeSeries`: the protocol every time-series distribution implements, which
  is all ``sdeppl.fit``, the diagnostics and the report use.
"""

from ._series import SUFFIXES as SUFFIXES
from ._series import TimeSeries as TimeSeries
from ._series import derived_name as derived_name
from ._series import series_of as series_of
from .observations import GaussianObservation as GaussianObservation
from .observations import LinearGaussian as LinearGaussian
from .observations import Observation as Observation
from .path import Path as Path
from .reparam import PathReparam as PathReparam
from .reparam import reparam_paths as reparam_paths
from .sde import CIR as CIR
from .sde import OU as OU
from .sde import SDE as SDE
from .sde import LinearSDE as LinearSDE
from .statespace import StateSpace as StateSpace
