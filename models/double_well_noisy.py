r"""Noisy observations of a double-well diffusion: a nonlinear state-space model.

$dX_t = a (X_t - X_t^3)\,dt + \sigma\,dW_t$, $X_0 \sim N(0, 1)$, observed at 150 times
$0.25$ apart as $y_k = X_{t_k} + \varepsilon_k$, $\varepsilon_k \sim N(0, r^2)$. The
latent path is integrated out by a Gaussian filter whose moment equations are
integrated by RK4 with ``substeps`` steps per gap: the unscented filter
(``method="ukf"``, the default) or the extended one (``method="ekf"``); both are
approximations, since the transition of a nonlinear SDE is not Gaussian: at
``TRUE_PARAMS`` the UKF log-likelihood is 0.5 nats below that of a grid filter (exact up
to discretisation) over the 150 points, the EKF 1.4 nats; ``substeps`` 4 and 40 agree to
$10^{-3}$. The data start at $X_0 = 0$.
Priors: $a \sim \text{HalfNormal}(2)$, $\sigma \sim \text{HalfNormal}(1)$,
$r \sim \text{HalfNormal}(0.5)$.
"""

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

import sdeppl as sp

DESCRIPTION = "Double-well diffusion with noisy observations (simulated, UKF or EKF)"
TRUE_PARAMS = {"a": 1.0, "sigma": 0.7, "r": 0.2}


def _sde(a, sigma):
    return sp.SDE(
        drift=lambda t, x: a * (x - x**3), diffusion=lambda t, x: sigma, additive=True
    )


def model(ts, y=None, method="ukf", substeps=10):
    a = numpyro.sample("a", dist.HalfNormal(2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    r = numpyro.sample("r", dist.HalfNormal(0.5))
    states = sp.StateSpace(
        _sde(a, sigma),
        ts,
        x0=dist.Normal(0.0, 1.0),
        obs=sp.LinearGaussian(H=1.0, R=r**2),
        method=method,
        substeps=substeps,
    )
    return numpyro.sample("y", states, obs=y)


def data(num_points=150, dt=0.25, seed=0):
    """Noisy observations ``y`` at times ``ts`` of a path simulated finely (SRA1, 50
    substeps per interval) at ``TRUE_PARAMS``."""
    key_x, key_eps = jax.random.split(jax.random.key(seed))
    ts = jnp.arange(num_points) * dt
    xs = _sde(TRUE_PARAMS["a"], TRUE_PARAMS["sigma"]).simulate(
        key_x, ts, x0=0.0, scheme="sra1", substeps=49
    )
    y = xs + TRUE_PARAMS["r"] * jax.random.normal(key_eps, xs.shape, xs.dtype)
    return {"ts": ts, "y": y}
