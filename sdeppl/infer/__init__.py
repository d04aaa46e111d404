"""Layer 4: inference backends, the registry, and the ``fit`` front door.

- :func:`fit`: NumPyro model -> :class:`~sdeppl.Fit` with any registered backend.
- The registry (:mod:`._backend`): :class:`Backend`, :class:`BackendResult`,
  :class:`Option`, :func:`register_backend`, :func:`backends`.
- Built-in backends: :mod:`.mcmc` (``"blackjax"``, ``"nuts"``, ``"mclmc"``; drivers in
  :mod:`.hmc`), :mod:`.map` (``"map"``: optimisation and a Laplace approximation)
  and :mod:`.vi` (``"svi"``: variational inference; guides in :mod:`._guides`,
  :class:`PathGuide` among them).
- :func:`sbc`: simulation-based calibration of a model and a backend; :func:`vsbc`
  its variational form (symmetry of the guide's probabilities).
- :class:`ModelAdapter`: a NumPyro model as a flat unconstrained log-density, which is
  what a backend gets.
"""

from . import map as map  # noqa: A004 - registers the backend
from . import mcmc as mcmc  # registers the backends
from ._backend import Backend as Backend
from ._backend import BackendResult as BackendResult
from ._backend import Option as Option
from ._backend import backends as backends
from ._backend import get_backend as get_backend
from ._backend import register_backend as register_backend
from ._guides import PathGuide as PathGuide
from ._model import ModelAdapter as ModelAdapter
from .fit import fit as fit
from .sbc import sbc as sbc
from .sbc import vsbc as vsbc
