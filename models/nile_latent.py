r"""The Nile local-level model with the level as a latent path (real data).

The same model as :mod:`models.nile` -- $dX_t = \sigma_{\text{level}}\,dW_t$,
$y_k = X_{t_k} + \varepsilon_k$, $\varepsilon_k \sim N(0, \sigma_{\text{obs}}^2)$ on the
100 annual flows of the Nile (statsmodels' ``nile``, $10^8\,\text{m}^3$) -- but the
level is an :class:`~sdeppl.Path` site (a Brownian motion's Euler transitions are
exact) instead of being integrated out by the Kalman filter. A path-space variational
posterior (``guide="path"``) fits it: the level's posterior should match the Kalman
smoother of :mod:`models.nile` (tested). The priors are those of :mod:`models.nile`.
"""

import numpyro
import numpyro.distributions as dist

import sdeppl as sp
from models.nile import data as data  # noqa: F401 - the same data

DESCRIPTION = "Nile flow 1871–1970, local level as a latent path (variational)"


def model(ts, flow=None, level0=(1000.0, 500.0)):
    sigma_level = numpyro.sample("sigma_level", dist.HalfNormal(100.0))
    sigma_obs = numpyro.sample("sigma_obs", dist.HalfNormal(200.0))
    brownian = sp.SDE(drift=lambda t, x: 0.0 * x, diffusion=lambda t, x: sigma_level)
    mean, sd = level0
    level = numpyro.sample(
        "level", sp.Path(brownian, ts, x0=dist.Normal(mean, sd), method="euler")
    )
    return numpyro.sample("flow", dist.Normal(level, sigma_obs), obs=flow)
