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

    fit = sp.fit(ou, ts, x=data)          # BlackJAX NUTS; method="nuts" for NumPyro's
    fit.summary(); fit.diagnostics(); fit.report("ou.html")

The package is layered: :mod:`sdeppl.solvers` (pure JAX), :mod:`sdeppl.processes`
(distributions), :mod:`sdeppl.diagnostics` (ArviZ, checks, calibration),
:mod:`sdeppl.infer` (backends, ``fit``), :mod:`sdeppl.report` and the ``sdeppl`` CLI.
"""

from ._xla import tune_cpu_loops as _tune_cpu_loops

_tune_cpu_loops()  # before JAX starts its backend; see sdeppl/_xla.py

from . import diagnostics as diagnostics  # noqa: E402
from .infer import Fit as Fit  # noqa: E402
from .infer import fit as fit  # noqa: E402
from .infer import load as load  # noqa: E402
from .processes import OU as OU  # noqa: E402
from .processes import SDE as SDE  # noqa: E402
from .processes import GaussianObservation as GaussianObservation  # noqa: E402
from .processes import LinearGaussian as LinearGaussian  # noqa: E402
from .processes import LinearSDE as LinearSDE  # noqa: E402
from .processes import Observation as Observation  # noqa: E402
from .processes import Path as Path  # noqa: E402
from .processes import PathReparam as PathReparam  # noqa: E402
from .processes import StateSpace as StateSpace  # noqa: E402
from .processes import reparam_paths as reparam_paths  # noqa: E402

__version__ = "0.1.0"
