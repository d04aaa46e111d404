r"""Cox–Ingersoll–Ross short-rate model fitted to the US 3-month Treasury-bill rate.

$dr_t = \kappa(\theta - r_t)\,dt + \sigma\sqrt{r_t}\,dW_t$ with $r$ in percent and $t$
in years; quarterly data 1959Q1–2009Q3 from statsmodels' ``macrodata`` (203 points,
$\Delta t = 0.25$). The likelihood is exact by default (``method="exact"``: the CIR
transition is a scaled non-central $\chi^2$, :class:`sdeppl.CIR`); ``"euler"`` and
``"local_linear"`` are there for comparison (``substeps`` add latent points between
quarters for them).
Priors: $\kappa \sim \text{HalfNormal}(1)$, $\theta \sim \text{HalfNormal}(10)$,
$\sigma \sim \text{HalfNormal}(2)$.
"""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import sdeppl as sp

DESCRIPTION = (
    "CIR short-rate model on the US 3-month T-bill rate (statsmodels macrodata)"
)


def model(ts, r=None, method="exact", substeps=0):
    kappa = numpyro.sample("kappa", dist.HalfNormal(1.0))
    theta = numpyro.sample("theta", dist.HalfNormal(10.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
    sde = sp.CIR(kappa, theta, sigma)
    path = sp.Path(
        sde, ts, x0=r[0] if r is not None else 5.0, method=method, substeps=substeps
    )
    return numpyro.sample("r", path, obs=r)


def data():
    """Quarterly 3-month T-bill rates (percent) and their times in years since 1959."""
    try:
        from statsmodels.datasets import macrodata
    except ImportError as e:  # the gallery's real data come from statsmodels
        raise ImportError(
            "models.cir needs statsmodels for its data: pip install 'sdeppl[gallery]'"
        ) from e
    frame = macrodata.load_pandas().data
    ts = (frame["year"].to_numpy() - 1959.0) + (frame["quarter"].to_numpy() - 1.0) / 4.0
    return {
        "ts": jnp.asarray(ts),
        "r": jnp.asarray(frame["tbilrate"].to_numpy(dtype=np.float64)),
    }
