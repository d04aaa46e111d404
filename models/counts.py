r"""Event counts driven by a latent Ornstein–Uhlenbeck log-intensity.

$y_k \sim \text{Poisson}(e^{x(t_k)})$, $dx_t = \theta(\mu - x_t)\,dt + \sigma\,dW_t$,
$x(t_0)$ from the stationary law, observed at irregular times: a Cox process's counts
per window, with a likelihood only a particle filter gives
(``sp.StateSpace(..., method="particle")``). Data: simulated at ``TRUE_PARAMS`` with a
fixed seed. Priors: $\theta \sim \text{LogNormal}(0, 1)$, $\mu \sim N(1, 1)$,
$\sigma \sim \text{HalfNormal}(1)$.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import sdeppl as sp

DESCRIPTION = "Poisson counts of a latent OU log-intensity (simulated), particle filter"
TRUE_PARAMS = {"theta": 0.8, "mu": 1.5, "sigma": 0.7}


def intensity_model(theta, mu, sigma, ts, num_particles, key=None):
    return sp.StateSpace(
        sp.OU(theta, mu, sigma),
        ts,
        x0=dist.Normal(mu, sigma / jnp.sqrt(2 * theta)),
        obs=lambda x: dist.Poisson(jnp.exp(x)),
        method="particle",
        num_particles=num_particles,
        key=key,
    )


def model(ts, counts=None, num_particles=64):
    theta = numpyro.sample("theta", dist.LogNormal(0.0, 1.0))
    mu = numpyro.sample("mu", dist.Normal(1.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    series = intensity_model(theta, mu, sigma, ts, num_particles)
    return numpyro.sample("counts", series, obs=counts)


def data(num_points=120, seed=0):
    """Counts simulated at ``TRUE_PARAMS`` at irregular times (gaps uniform on
    0.1–0.5)."""
    gaps = np.random.default_rng(seed).uniform(0.1, 0.5, num_points - 1)
    ts = jnp.asarray(np.concatenate([[0.0], np.cumsum(gaps)]))
    truth = intensity_model(**TRUE_PARAMS, ts=ts, num_particles=2)
    return {"ts": ts, "counts": truth.sample(jax.random.key(seed))}
