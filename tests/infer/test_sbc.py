"""Simulation-based calibration: the driver, the statistics, and a miscalibrated sampler caught."""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import sdeppl as sp
from sdeppl.diagnostics import SBCResult, rank_statistics, uniformity_pvalue


def ou(ts, x=None):
    theta = numpyro.sample("theta", dist.HalfNormal(1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    return numpyro.sample(
        "x", sp.Path(sp.OU(theta, 0.0, sigma), ts, x0=0.0, method="exact"), obs=x
    )


def test_rank_statistics_and_uniformity():
    rng = np.random.default_rng(0)
    prior = rng.standard_normal(500)
    calibrated = rng.standard_normal((500, 99))
    ranks = rank_statistics(prior, calibrated)
    assert ranks.min() >= 0 and ranks.max() <= 99
    assert uniformity_pvalue(ranks, 99) > 0.01
    overconfident = 0.3 * rng.standard_normal((500, 99))  # too narrow: U-shaped ranks
    assert uniformity_pvalue(rank_statistics(prior, overconfident), 99) < 1e-6


def test_uniformity_test_with_bins_of_unequal_size():
    """51 possible ranks in 4 bins hold 13, 13, 13 and 12 ranks: uniform ranks must
    pass (equal expected counts would reject them at this sample size), and a rank
    histogram missing its top ranks must fail."""
    rng = np.random.default_rng(2)
    uniform = rng.integers(0, 51, 40_000)
    assert uniformity_pvalue(uniform, 50, num_bins=4) > 0.01
    assert uniformity_pvalue(uniform[uniform < 48], 50, num_bins=4) < 1e-6


def test_sbc_result_plot_and_verdict():
    rng = np.random.default_rng(1)
    result = SBCResult({"a": rng.integers(0, 100, 200)}, 99)
    assert result.passed()
    fig = result.plot()
    assert len(fig.axes) == 1


@pytest.mark.slow
def test_sbc_of_the_ou_model_is_uniform():
    result = sp.sbc(
        ou,
        jnp.arange(40) * 0.25,
        observed="x",
        num_replicates=60,
        num_draws=49,
        warmup=200,
        progress=False,
    )
    assert set(result.ranks) == {"theta", "sigma"}
    assert result.ranks["theta"].shape == (60,)
    assert result.passed(), result.pvalues


def test_sbc_argument_errors():
    with pytest.raises(ValueError, match=r"observed site\(s\) \['y'\]"):
        sp.sbc(ou, jnp.arange(5.0), observed="y", num_replicates=2, progress=False)
    with pytest.raises(ValueError, match="sbc: num_replicates must be an int >= 1"):
        sp.sbc(ou, jnp.arange(5.0), observed="x", num_replicates=0)
    with pytest.raises(ValueError, match="sbc: thinning must be an int >= 1; got 1.5"):
        sp.sbc(ou, jnp.arange(5.0), observed="x", thinning=1.5)
