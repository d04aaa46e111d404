"""Layer 4: inference backends and the ``fit`` front door.

- :func:`fit`: NumPyro model -> :class:`Fit` (BlackJAX NUTS by default, NumPyro NUTS,
  MCLMC), with ArviZ ``InferenceData``, diagnostics, saving and a report.
- :mod:`.hmc`: the fused BlackJAX drivers.
"""

from ._result import Fit as Fit
from ._result import load as load
from .fit import enable_compilation_cache as enable_compilation_cache
from .fit import fit as fit
from .sbc import sbc as sbc
