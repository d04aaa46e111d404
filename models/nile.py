r"""Local-level model of the annual flow of the Nile at Aswan, 1871–1970 (real data).

The level is a Brownian motion observed with noise (the "random walk plus noise" model
of Durbin & Koopman):
$dX_t = \sigma_{\text{level}}\,dW_t$, $y_k = X_{t_k} + \varepsilon_k$,
$\varepsilon_k \sim N(0, \sigma_{\text{obs}}^2)$, with $t$ in calendar years and $y$ in
$10^8\,\text{m}^3$; 100 annual flows from statsmodels' ``nile``. The latent level is
integrated out exactly by the Kalman filter (``method="kalman"``).
Priors: $\sigma_{\text{level}} \sim \text{HalfNormal}(100)$,
$\sigma_{\text{obs}} \sim \text{HalfNormal}(200)$, $X_{1871} \sim N(1000, 500^2)$.
The maximum-likelihood estimate is $\sigma^2_{\text{level}} = 1469.1$,
$\sigma^2_{\text{obs}} = 15099$ (Durbin & Koopman 2012, ch. 2; ``MLE``); statsmodels'
``UnobservedComponents(flow, "local level").fit()`` stops at 1479 and 15078, on a
likelihood so flat there that the two differ by less than 0.001 nats.
"""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import sdeppl as sp

DESCRIPTION = "Local-level model (Brownian level plus noise) of the Nile flow 1871–1970"
# maximum-likelihood estimate of the scales (the square roots of the MLE variances)
MLE = {"sigma_level": float(np.sqrt(1469.1)), "sigma_obs": float(np.sqrt(15099.0))}


def local_level(sigma_level, sigma_obs, ts, level0=(1000.0, 500.0)):
    """The model's :class:`~sdeppl.StateSpace` at given scales (a 1-vector state)."""
    level = sp.LinearSDE(A=jnp.zeros((1, 1)), L=jnp.reshape(sigma_level, (1, 1)))
    mean, sd = level0
    return sp.StateSpace(
        level,
        ts,
        x0=dist.Normal(jnp.array([mean]), sd).to_event(1),
        obs=sp.LinearGaussian(H=jnp.array([1.0]), R=sigma_obs**2),
        method="kalman",
    )


def model(ts, flow=None):
    sigma_level = numpyro.sample("sigma_level", dist.HalfNormal(100.0))
    sigma_obs = numpyro.sample("sigma_obs", dist.HalfNormal(200.0))
    return numpyro.sample("flow", local_level(sigma_level, sigma_obs, ts), obs=flow)


def data():
    """Annual flow volumes (``flow``, in 10^8 m^3) and their calendar years (``ts``)."""
    try:
        from statsmodels.datasets import nile
    except ImportError as e:  # the gallery's real data come from statsmodels
        raise ImportError(
            "models.nile needs statsmodels for its data: pip install 'sdeppl[gallery]'"
        ) from e
    frame = nile.load_pandas().data
    return {
        "ts": jnp.asarray(frame["year"].to_numpy(dtype=np.float64)),
        "flow": jnp.asarray(frame["volume"].to_numpy(dtype=np.float64)),
    }
