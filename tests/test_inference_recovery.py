"""Inference through Path: parameter recovery with NUTS and simulation-based calibration."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS

import sdeppl as sp


def ou_model(ts, x=None):
    theta = numpyro.sample("theta", dist.HalfNormal(1.0))
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    sde = sp.SDE(drift=lambda t, x: theta * (mu - x), diffusion=lambda t, x: sigma)
    return numpyro.sample("x", sp.Path(sde, ts, x0=0.0, method="local_linear"), obs=x)


def test_nuts_recovers_ou_parameters():
    truth = {"theta": 0.5, "mu": 1.0, "sigma": 0.3}
    ts = jnp.arange(400) * 0.1
    x = sp.Path(sp.OU(**truth), ts, x0=0.0, method="exact").sample(jax.random.key(0))
    mcmc = MCMC(NUTS(ou_model), num_warmup=500, num_samples=500, progress_bar=False)
    mcmc.run(jax.random.key(1), ts, x=x)
    draws = mcmc.get_samples()
    for name, value in truth.items():
        lo, hi = np.quantile(draws[name], [0.05, 0.95])
        assert lo < value < hi, (name, lo, hi)


def latent_model(ts, y=None):
    """A latent OU path observed with noise at every other time; non-centred via reparam."""
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    x = numpyro.sample(
        "x",
        sp.Path(sp.OU(1.0, 0.0, sigma), ts, x0=dist.Normal(0.0, 1.0), method="exact"),
    )
    numpyro.sample("y", dist.Normal(x[::2], 0.1), obs=y)


@pytest.mark.slow
def test_nuts_on_a_noncentred_latent_path():
    ts = jnp.arange(101) * 0.1
    x = sp.Path(
        sp.OU(1.0, 0.0, 0.8), ts, x0=dist.Normal(0.0, 1.0), method="exact"
    ).sample(jax.random.key(2))
    y = x[::2] + 0.1 * jax.random.normal(jax.random.key(3), x[::2].shape)
    mcmc = MCMC(
        NUTS(sp.reparam_paths(latent_model)),
        num_warmup=500,
        num_samples=500,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(4), ts, y=y, extra_fields=("diverging",))
    assert int(mcmc.get_extra_fields()["diverging"].sum()) == 0
    sigma = mcmc.get_samples()["sigma"]
    lo, hi = np.quantile(sigma, [0.05, 0.95])
    assert lo < 0.8 < hi
    # the latent path tracks the truth at unobserved times
    path_mean = mcmc.get_samples()["x"].mean(0)
    assert float(jnp.sqrt(jnp.mean((path_mean[1::2] - x[1::2]) ** 2))) < 0.3


@pytest.mark.slow
def test_simulation_based_calibration_of_the_ou_posterior():
    """Ranks of prior draws among posterior draws are uniform (Talts et al. 2018): 64
    replicates of prior draw -> simulated path -> NUTS fit, the sampler compiled once."""
    result = sp.sbc(
        ou_model,
        jnp.arange(40) * 0.25,
        observed="x",
        num_replicates=64,
        num_draws=99,
        warmup=200,
        progress=False,
    )
    assert set(result.ranks) == {"theta", "mu", "sigma"}
    assert result.passed(alpha=0.01), result.pvalues
