"""sdeppl: stochastic-process models as first-class NumPyro primitives.

A stochastic differential equation is one ``numpyro.sample`` site whose ``log_prob`` is
a path likelihood computed by a jitted JAX solver::

    import numpyro, numpyro.distributions as dist
    import sdeppl as sp

    def ou(ts, x=None):
        theta = numpyro.sample("theta", dist.HalfNormal(1.0))
        mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        sde = sp.SDE(drift=lambda t, x: theta * (mu - x), diffusion=lambda t, x: sigma)
        numpyro.sample("x", sp.Path(sde, ts, x0=dist.Normal(0.0, 1.0)), obs=x)

    fit = sp.fit(ou, ts, x=data)          # BlackJAX NUTS; method="nuts", "map", ...
    fit.summary(); fit.diagnostics(); fit.report("ou.html")

The package is layered, each layer importing only those before it:
:mod:`sdeppl.solvers` (pure JAX), :mod:`sdeppl.processes` (distributions),
:mod:`sdeppl.diagnostics` (the :class:`Fit` result, ArviZ conversion, checks,
calibration statistics), :mod:`sdeppl.infer` (the backend registry, ``fit``, SBC),
:mod:`sdeppl.report` (the HTML report) and the ``sdeppl`` CLI.

Importing sdeppl has no side effects; :func:`configure` switches on XLA's loop tuning
and the persistent compilation cache (the ``sdeppl`` command calls it).
"""

from . import diagnostics as diagnostics
from . import report as report
from ._config import configure as configure
from .diagnostics import Fit as Fit
from .diagnostics import load as load
from .infer import Backend as Backend
from .infer import BackendResult as BackendResult
from .infer import Option as Option
from .infer import PathGuide as PathGuide
from .infer import backends as backends
from .infer import fit as fit
from .infer import register_backend as register_backend
from .infer import sbc as sbc
from .infer import vsbc as vsbc
from .processes import CIR as CIR
from .processes import OU as OU
from .processes import SDE as SDE
from .processes import GaussianObservation as GaussianObservation
from .processes import LinearGaussian as LinearGaussian
from .processes import LinearSDE as LinearSDE
from .processes import Observation as Observation
from .processes import Path as Path
from .processes import PathReparam as PathReparam
from .processes import StateSpace as StateSpace
from .processes import TimeSeries as TimeSeries
from .processes import reparam_paths as reparam_paths
from .solvers import FKSDEResult as FKSDEResult
from .solvers import ForwardSDE as ForwardSDE
from .solvers import WeightedSDE as WeightedSDE
from .solvers import fk_annealed as fk_annealed
from .solvers import fk_general as fk_general
from .solvers import fk_geometric as fk_geometric
from .solvers import fk_product as fk_product
from .solvers import fk_sde as fk_sde
from .solvers import log_marginal_dtau as log_marginal_dtau
from .solvers import reverse_diffusion as reverse_diffusion
from .solvers import vp_gaussian_score as vp_gaussian_score
from .solvers import vp_marginal as vp_marginal
from .solvers import vp_marginal_var as vp_marginal_var
from .solvers import vp_sde as vp_sde

__version__ = "0.1.0"
