r"""Ornstein–Uhlenbeck process observed without noise (the OU-NUTS benchmark problem).

$dX_t = \theta(\mu - X_t)\,dt + \sigma\,dW_t$, $X_0 = 0$, observed at 1000 times $0.1$
apart; priors $\theta \sim \text{HalfNormal}(1)$, $\mu \sim N(0, 2^2)$,
$\sigma \sim \text{HalfNormal}(1)$.
"""

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

import sdeppl as sp

DESCRIPTION = (
    "Ornstein–Uhlenbeck path observed without noise (simulated, exact transitions)"
)
TRUE_PARAMS = {"theta": 0.5, "mu": 1.0, "sigma": 0.3}


def model(ts, x=None, method="exact"):
    theta = numpyro.sample("theta", dist.HalfNormal(1.0))
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    sde = sp.SDE(drift=lambda t, x: theta * (mu - x), diffusion=lambda t, x: sigma)
    if method == "exact":
        sde = sp.OU(theta, mu, sigma)
    return numpyro.sample("x", sp.Path(sde, ts, x0=0.0, method=method), obs=x)


def data(num_points=1000, dt=0.1, seed=0):
    """A path simulated from the exact transition at ``TRUE_PARAMS``."""
    ts = jnp.arange(num_points) * dt
    path = sp.Path(sp.OU(**TRUE_PARAMS), ts, x0=0.0, method="exact")
    return {"ts": ts, "x": path.sample(jax.random.key(seed))}
