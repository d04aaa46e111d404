"""Every backend recovers a known conjugate posterior (STYLE.md §8)."""

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import sdeppl as sp

Y = jax.random.normal(jax.random.key(0), (20,)) + 1.5


def normal_normal(y):
    m = numpyro.sample("m", dist.Normal(0.0, 1.0))
    numpyro.sample("s", dist.Normal(0.0, 1.0))  # untouched by the data
    numpyro.sample("y", dist.Normal(m, 1.0), obs=y)


SETTINGS = {"chains": 2, "warmup": 500, "samples": 1000}


@pytest.mark.parametrize("method", sorted(sp.backends()))
def test_backend_recovers_normal_normal_posterior(method):
    """Every registered backend, with the settings it has."""
    options = sp.backends()[method].options
    fit = sp.fit(
        normal_normal,
        Y,
        method=method,
        seed=0,
        progress=False,
        log_likelihood=False,
        **{k: v for k, v in SETTINGS.items() if k in options},
    )
    m = fit.idata.posterior["m"].values.ravel()
    n = Y.shape[0]
    mean, sd = float(Y.sum()) / (n + 1), 1.0 / np.sqrt(n + 1)
    assert abs(m.mean() - mean) < 4 * sd / np.sqrt(300)
    assert abs(m.std() / sd - 1) < 0.1
    s = fit.idata.posterior["s"].values.ravel()  # the prior, untouched by the data
    assert abs(s.std() - 1) < 0.1
