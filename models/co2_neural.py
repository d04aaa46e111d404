r"""A latent SDE with a neural drift for the Mauna Loa CO$_2$ record (real data).

Weekly CO$_2$ at Mauna Loa, 1962–1967 (statsmodels' ``co2``; 313 weeks, 34 of them
missing, most in the 1964 gap), standardised (``y = (ppm - mean) / sd``), with time
in years. The latent level follows

$$dX_t = f_W(X_t, \sin 2\pi t, \cos 2\pi t)\,dt + \sigma\,dW_t, \qquad
y_k = X_{t_k} + \varepsilon_k,\ \varepsilon_k \sim N(0, \tau^2),$$

where $f_W$ is a one-hidden-layer network (``hidden`` tanh units) of the state and the
season whose weights are sample sites (standard normal priors): the drift's shape --
the seasonal cycle and the trend -- is learned, not written down. Missing weeks are
masked (NaN in the data; the standard NumPyro ``.mask`` idiom). Fitted with the
path-space variational guide (``inference/co2_neural_svi.toml``).
Priors: $W \sim N(0, 1)$, $\sigma \sim \text{HalfNormal}(1)$,
$\tau \sim \text{HalfNormal}(0.2)$, $X_{t_0} \sim N(y_0, 0.5^2)$.
"""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import sdeppl as sp

DESCRIPTION = "Mauna Loa CO2 1962–1967 (weekly, gappy): latent SDE with a neural drift"
FEATURES = 3  # state, sin and cos of the season


def drift_network(weights, x, t):
    """$f_W(x, t)$ for states ``x (*batch,)`` at time ``t``."""
    season = 2.0 * jnp.pi * t
    inputs = jnp.stack(
        jnp.broadcast_arrays(x, jnp.sin(season), jnp.cos(season)), axis=-1
    )
    hidden = jnp.tanh(inputs @ weights["w1"] + weights["b1"])
    return hidden @ weights["w2"] + weights["b2"]


def model(ts, y=None, hidden=8):
    normal = dist.Normal(0.0, 1.0)
    weights = {
        "w1": numpyro.sample("w1", normal.expand([FEATURES, hidden]).to_event(2)),
        "b1": numpyro.sample("b1", normal.expand([hidden]).to_event(1)),
        "w2": numpyro.sample("w2", normal.expand([hidden]).to_event(1)),
        "b2": numpyro.sample("b2", normal),
    }
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    tau = numpyro.sample("tau", dist.HalfNormal(0.2))
    sde = sp.SDE(
        drift=lambda t, x: drift_network(weights, x, t),
        diffusion=lambda t, x: sigma,
    )
    first = 0.0 if y is None else jnp.nan_to_num(y[0])
    x = numpyro.sample("x", sp.Path(sde, ts, x0=dist.Normal(first, 0.5)))
    if y is None:
        return numpyro.sample("y", dist.Normal(x, tau))
    observed = ~jnp.isnan(y)
    return numpyro.sample(
        "y", dist.Normal(x, tau).mask(observed), obs=jnp.where(observed, y, 0.0)
    )


def data(start: str = "1962", stop: str = "1967"):
    """Standardised weekly CO2 (``y``, NaN where missing) and decimal years
    (``ts``); ``scale`` is ``(mean, sd)`` in ppm."""
    try:
        from statsmodels.datasets import co2
    except ImportError as e:  # the gallery's real data come from statsmodels
        raise ImportError(
            "models.co2_neural needs statsmodels for its data: "
            "pip install 'sdeppl[gallery]'"
        ) from e
    frame = co2.load_pandas().data.loc[start:stop]
    ppm = frame["co2"].to_numpy(dtype=np.float64)
    days = (frame.index - frame.index[0]).days.to_numpy(dtype=np.float64)
    mean, sd = np.nanmean(ppm), np.nanstd(ppm)
    return {
        "ts": jnp.asarray(frame.index[0].year + days / 365.25),
        "y": jnp.asarray((ppm - mean) / sd),
    }
