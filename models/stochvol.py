r"""Stochastic volatility of the S&P 500: daily log-returns whose log-variance is an
Ornstein–Uhlenbeck process in calendar time.

$r_k \sim N(0, e^{h(t_k)})$ (returns in percent), $dh_t = \theta(\mu - h_t)\,dt +
\sigma\,dW_t$ with $t$ in years, observed on trading days only: weekends and holidays
are longer gaps of the same process, not skipped steps. The likelihood is a particle
filter's estimate (``sp.StateSpace(..., method="particle")``: the observation model is
not Gaussian in $h$), fitted by PMMH or particle Gibbs. Data: the S&P 500 index from
the ``arch`` package (``arch.data.sp500``), 2017–2018 by default.
Priors: $\theta \sim \text{LogNormal}(\log 10, 1)$ (a half-life of weeks),
$\mu \sim N(0, 2^2)$, $\sigma \sim \text{HalfNormal}(5)$; $h(t_0)$ from the stationary
law $N(\mu, \sigma^2 / 2\theta)$.
"""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import sdeppl as sp

DESCRIPTION = (
    "Stochastic volatility of S&P 500 daily returns (arch's sp500), particle filter"
)


def model(ts, returns=None, num_particles=256):
    theta = numpyro.sample("theta", dist.LogNormal(np.log(10.0), 1.0))
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(5.0))
    log_variance = sp.OU(theta, mu, sigma)
    returns_given_h = sp.Observation(lambda h: dist.Normal(0.0, jnp.exp(h / 2)))
    series = sp.StateSpace(
        log_variance,
        ts,
        x0=dist.Normal(mu, sigma / jnp.sqrt(2 * theta)),
        obs=returns_given_h,
        method="particle",
        num_particles=num_particles,
    )
    return numpyro.sample("returns", series, obs=returns)


def data(start="2017-01-01", end="2018-12-31"):
    """Daily log-returns (percent) of the S&P 500 between ``start`` and ``end``, and
    their times in years since ``start``."""
    try:
        from arch.data import sp500
    except ImportError as e:  # the gallery's return series comes from arch
        raise ImportError(
            "models.stochvol needs arch for its data: pip install 'sdeppl[gallery]'"
        ) from e
    prices = sp500.load()["Adj Close"]
    returns = 100 * np.log(prices).diff().loc[start:end]
    days = (returns.index - np.datetime64(start)).days.to_numpy()
    return {
        "ts": jnp.asarray(days / 365.25),
        "returns": jnp.asarray(returns.to_numpy(dtype=np.float64)),
    }
