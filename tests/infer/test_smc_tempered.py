"""method="smc": adaptive tempered SMC against closed forms (SPECS-smc.md, C5).

- Conjugate Bayesian linear regression (T=30, d=3, sigma=0.1, prior N(0, 10^2 I)):
  log Z within 0.1 nat of the closed form, posterior mean and covariance.
- BlackJAX#914's asymmetric case (Cauchy prior, N(2, 0.5^2) likelihood): the adaptive
  schedule reaches beta=1 in a few stages and log Z matches quadrature.
- The prior/likelihood split adds up to the model's log-density; prior particles
  follow the prior; bad options and an unfinished run are reported.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import integrate, stats

import sdeppl as sp
from sdeppl.diagnostics import Fit, to_inference_data
from sdeppl.infer import ModelAdapter, smc

# -- C5: conjugate linear regression ----------------------------------------------

RNG = np.random.default_rng(1)
T, D, NOISE, PRIOR_SD = 30, 3, 0.1, 10.0
X = RNG.standard_normal((T, D))
Y = X @ RNG.standard_normal(D) + NOISE * RNG.standard_normal(T)


def linear_regression(X, y=None):
    beta = numpyro.sample("beta", dist.Normal(0.0, PRIOR_SD).expand([D]).to_event(1))
    numpyro.sample("y", dist.Normal(jnp.asarray(X) @ beta, NOISE), obs=y)


def exact_regression():
    """log Z = log N(y; 0, sigma^2 I + s^2 X X^T), posterior mean and covariance."""
    log_z = stats.multivariate_normal(
        np.zeros(T), NOISE**2 * np.eye(T) + PRIOR_SD**2 * X @ X.T
    ).logpdf(Y)
    cov = np.linalg.inv(X.T @ X / NOISE**2 + np.eye(D) / PRIOR_SD**2)
    return log_z, cov @ X.T @ Y / NOISE**2, cov


@pytest.fixture(scope="module")
def regression_fit():
    return sp.fit(
        linear_regression, X, y=Y, method="smc", particles=4000, seed=1, progress=False
    )


def test_regression_log_evidence_within_a_tenth_of_a_nat(regression_fit):
    fit = regression_fit
    exact, _, _ = exact_regression()
    value, se = fit.log_evidence
    assert abs(value - exact) < 0.1, (value, exact, se)
    assert 0.002 < se < 0.1  # four runs of 4000 particles: about 0.03
    info = fit.metadata["backend_info"]
    assert len(info["log_evidence_runs"]) == 4
    assert np.all(np.abs(np.asarray(info["log_evidence_runs"]) - exact) < 0.3)
    # the schedule is adaptive: ~18 nats of information at ESS 1/2 need many stages
    assert all(10 <= k <= 40 for k in info["tempering_stages"])
    assert info["tempering_schedule"][-1] == 1.0
    assert np.all(np.diff(info["tempering_schedule"]) > 0)


def test_regression_posterior_moments(regression_fit):
    fit = regression_fit
    _, mean, cov = exact_regression()
    draws = fit.idata.posterior["beta"].values
    assert draws.shape == (4, 4000, D)
    flat = draws.reshape(-1, D)
    sd = np.sqrt(np.diag(cov))
    # the draws of one run are correlated through resampling: ~1000 effective of 16000
    assert np.all(np.abs(flat.mean(0) - mean) < 4 * sd / np.sqrt(1000))
    np.testing.assert_allclose(flat.std(0), sd, rtol=0.1)
    corr = np.cov(flat.T) / np.outer(flat.std(0), flat.std(0))
    exact_corr = cov / np.outer(sd, sd)
    np.testing.assert_allclose(corr, exact_corr, atol=0.05)


def test_regression_fit_is_a_complete_fit(regression_fit):
    fit = regression_fit
    idata = fit.idata
    assert {"posterior", "sample_stats", "log_likelihood", "prior"} <= set(
        idata.groups()
    )
    assert idata.sample_stats["lp"].shape == (4, 4000)
    assert np.all(np.isfinite(idata.sample_stats["lp"].values))
    assert idata.log_likelihood["y"].shape == (4, 4000, T)
    table = fit.diagnostics().set_index("check")
    for row in (
        "tempering reached beta=1",
        "log-evidence spread",
        "SMC effective sample size",
        "inner-kernel acceptance",
    ):
        assert table.loc[row, "status"] == "pass", table
    assert table.loc["R-hat, ESS", "status"] == "n/a"
    assert fit.verdict == "pass", table
    assert fit.metadata["independent_draws"] is True
    assert fit.metadata["settings"]["particles"] == 4000
    assert hasattr(fit, "log_evidence")
    assert "smc" in repr(fit)


def test_waste_free_variant():
    """Waste-free SMC (chains of 10 states from 500 resampled particles) costs about
    a tenth of a stage of the plain sampler; its particles are correlated, so its
    evidence is noisier: checked against its own error."""
    exact, mean, cov = exact_regression()
    fit = sp.fit(
        linear_regression,
        X,
        y=Y,
        method="smc",
        particles=5000,
        waste_free=True,
        seed=2,
        progress=False,
        log_likelihood=False,
    )
    value, se = fit.log_evidence
    assert abs(value - exact) < max(0.25, 4 * se), (value, exact, se)
    flat = fit.idata.posterior["beta"].values.reshape(-1, D)
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(flat.mean(0) - mean) < 0.25 * sd)
    np.testing.assert_allclose(flat.std(0), sd, rtol=0.2)
    assert fit.metadata["backend_info"]["waste_free"] is True


@pytest.mark.slow
def test_hmc_inner_kernel():
    exact, mean, cov = exact_regression()
    fit = sp.fit(
        linear_regression,
        X,
        y=Y,
        method="smc",
        kernel="hmc",
        particles=2000,
        seed=3,
        progress=False,
        log_likelihood=False,
    )
    value, se = fit.log_evidence
    assert abs(value - exact) < 0.1, (value, exact, se)
    flat = fit.idata.posterior["beta"].values.reshape(-1, D)
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(flat.mean(0) - mean) < 0.2 * sd)
    np.testing.assert_allclose(flat.std(0), sd, rtol=0.15)


# -- C5: BlackJAX#914's asymmetric case ----------------------------------------------


def cauchy_normal(y=None):
    x = numpyro.sample("x", dist.Cauchy(0.0, 1.0))
    numpyro.sample("y", dist.Normal(x, 0.5), obs=y)


def cauchy_normal_exact():
    """log Z and the posterior mean by quadrature."""

    def joint(x):
        return stats.cauchy.pdf(x) * stats.norm.pdf(2.0, x, 0.5)

    z = integrate.quad(joint, -np.inf, np.inf, epsabs=0, epsrel=1e-12)[0]
    mean = integrate.quad(lambda x: x * joint(x), -np.inf, np.inf)[0] / z
    return np.log(z), mean


def test_asymmetric_likelihood_reaches_beta_one(capsys):
    """With the ESS solver's sign wrong (BlackJAX#914) the schedule stalls near 0."""
    fit = sp.fit(cauchy_normal, y=2.0, method="smc", seed=0, progress=True)
    log_z, mean = cauchy_normal_exact()
    info = fit.metadata["backend_info"]
    assert all(info["reached_posterior"])
    schedule = info["tempering_schedule"]
    assert schedule[-1] == 1.0 and schedule[0] > 0.05 and len(schedule) <= 10
    value, se = fit.log_evidence
    assert abs(value - log_z) < 0.1, (value, log_z, se)
    assert abs(value - log_z) < 5 * se + 0.01
    draws = fit.idata.posterior["x"].values
    assert abs(draws.mean() - mean) < 0.05
    assert "tempered SMC" in capsys.readouterr().err  # the stages' progress bar


def test_unfinished_tempering_is_reported():
    fit = sp.fit(
        cauchy_normal,
        y=2.0,
        method="smc",
        max_stages=2,
        runs=2,
        particles=200,
        progress=False,
        log_likelihood=False,
    )
    info = fit.metadata["backend_info"]
    assert info["reached_posterior"] == [False, False]
    assert info["tempering_stages"] == [2, 2]
    value, se = fit.log_evidence
    assert np.isnan(value) and np.isnan(se)
    table = fit.diagnostics().set_index("check")
    assert table.loc["tempering reached beta=1", "status"] == "fail"
    assert "max_stages" in table.loc["tempering reached beta=1", "advice"]
    assert fit.verdict == "fail"


# -- the pieces ------------------------------------------------------------------------


def constrained_model(y=None):
    scale = numpyro.sample("scale", dist.HalfNormal(2.0))
    upper = numpyro.sample("upper", dist.LogNormal(0.0, 0.5))
    inner = numpyro.sample(
        "inner", dist.Uniform(0.0, upper)
    )  # support depends on upper
    loc = numpyro.sample("loc", dist.Normal(1.0, 3.0).expand([2]).to_event(1))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Normal(loc[0] + inner, scale), obs=y)
    numpyro.factor("penalty", -0.5 * loc[1] ** 2)


Y_SMALL = jnp.array([0.3, -0.4, 1.1, 0.2, 0.8])


def test_split_adds_up_to_the_log_density():
    model = ModelAdapter(constrained_model, (), {"y": Y_SMALL})
    dim, _ = model.dim_and_dtype()
    zs = jax.random.normal(jax.random.key(0), (5, dim))
    for z in zs:
        prior, likelihood = smc.log_prior_and_likelihood(model, z)
        np.testing.assert_allclose(prior + likelihood, model.logdensity(z), rtol=1e-12)
        v = model.constrain(z)
        expected = (
            dist.Normal(v["loc"][0] + v["inner"], v["scale"]).log_prob(Y_SMALL).sum()
            - 0.5 * v["loc"][1] ** 2
        )
        np.testing.assert_allclose(likelihood, expected, rtol=1e-12)
    split = smc.split_logdensity(model)
    np.testing.assert_allclose(split.logprior_fn(z), prior, rtol=1e-12)
    np.testing.assert_allclose(split.loglikelihood_fn(z), likelihood, rtol=1e-12)


def test_prior_particles_follow_the_prior():
    model = ModelAdapter(constrained_model, (), {"y": Y_SMALL})
    z = jax.jit(lambda key: smc.prior_particles(model, key, 2000))(jax.random.key(1))
    assert z.shape == (2000, model.dim_and_dtype()[0])
    v = jax.vmap(model.constrain)(z)
    assert (
        stats.kstest(np.asarray(v["scale"]), stats.halfnorm(scale=2.0).cdf).pvalue
        > 1e-3
    )
    assert (
        stats.kstest(np.asarray(v["loc"][:, 1]), stats.norm(1.0, 3.0).cdf).pvalue > 1e-3
    )
    ratio = np.asarray(v["inner"] / v["upper"])  # Uniform(0, upper) given upper
    assert stats.kstest(ratio, "uniform").pvalue > 1e-3


def test_combine_log_evidence():
    value, se = smc.combine_log_evidence([-1.0, -1.2, -0.9, -1.1])
    assert value == pytest.approx(np.log(np.mean(np.exp([-1.0, -1.2, -0.9, -1.1]))))
    assert se == pytest.approx(np.std([-1.0, -1.2, -0.9, -1.1], ddof=1) / 2)
    value, se = smc.combine_log_evidence([-3.0])
    assert value == -3.0 and np.isnan(se)
    assert np.isnan(smc.combine_log_evidence([-3.0, -np.inf])[0])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"particles": 5}, "fit: particles must be an int >= 20; got 5"),
        ({"runs": 0}, "fit: runs must be an int >= 1"),
        ({"target_ess": 1.0}, r"fit: target_ess must be in \(0.0, 1.0\); got 1.0"),
        ({"kernel": "nuts"}, r"fit: kernel must be one of \('rwmh', 'hmc'\)"),
        ({"waste_free": "yes"}, "fit: waste_free must be True or False"),
        (
            {"waste_free": True, "particles": 1001},
            r"particles \(1001\) must be a multiple of mcmc_steps \(10\)",
        ),
        ({"samples": 2000}, r"samples \(2000\) must be <= particles \(1000\)"),
        ({"samples": 0}, "fit: samples must be an int >= 1; got 0"),
    ],
)
def test_bad_options_are_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        sp.fit(cauchy_normal, y=2.0, method="smc", progress=False, **options)


def test_fit_without_evidence_says_so():
    idata = to_inference_data(
        posterior={"m": np.zeros((1, 3))},
        sample_stats={},
        observed_data={},
        metadata={"backend": "map", "backend_info": {}},
    )
    fit = Fit(idata)
    assert not hasattr(fit, "log_evidence")
    with pytest.raises(AttributeError, match="method='map' gives no log-evidence"):
        fit.log_evidence  # noqa: B018


def test_sbc_runs_one_compiled_program_with_samples():
    """``jittable``: sp.sbc sets ``samples`` to its number of draws."""
    result = sp.sbc(
        cauchy_normal,
        observed="y",
        num_replicates=3,
        num_draws=19,
        method="smc",
        progress=False,
    )
    assert result.num_draws == 19
    assert np.all((result.ranks["x"] >= 0) & (result.ranks["x"] <= 19))
