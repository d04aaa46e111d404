"""fit() through the Kalman marginal likelihood: recovery, latent paths, predictive, report."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import sdeppl as sp

TRUE = {"theta": 0.5, "mu": 1.0, "sigma": 0.3}
TS = jnp.arange(300) * 0.1


def ou_kf(ts, y=None, method="kalman"):
    theta = numpyro.sample("theta", dist.HalfNormal(1.0))
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    model = sp.StateSpace(
        sp.OU(theta, mu, sigma),
        ts,
        x0=dist.Normal(0.0, 1.0),
        obs=sp.LinearGaussian(1.0, 0.05**2),
        method=method,
    )
    return numpyro.sample("y", model, obs=y)


@pytest.fixture(scope="module")
def data():
    model = sp.StateSpace(
        sp.OU(**TRUE), TS, x0=dist.Normal(0.0, 1.0), obs=sp.LinearGaussian(1.0, 0.05**2)
    )
    y = model.sample(jax.random.key(0))
    return y.at[jnp.array([50, 51, 52])].set(jnp.nan)


@pytest.fixture(scope="module")
def kalman_fit(data):
    return sp.fit(
        ou_kf,
        TS,
        y=data,
        chains=2,
        warmup=500,
        samples=500,
        seed=1,
        progress=False,
        posterior_predictive=True,
        forecast={"horizon": 2.0, "steps": 4},
    )


def test_nuts_through_the_kalman_likelihood_recovers_parameters(kalman_fit):
    """Each true value lies within 3 posterior standard deviations of the posterior mean
    (a miss has probability ~0.3% per parameter if the posterior is calibrated; the
    calibration itself is checked by SBC)."""
    post = kalman_fit.idata.posterior
    for name, value in TRUE.items():
        draws = post[name].values
        assert abs(draws.mean() - value) < 3 * draws.std(), (
            name,
            draws.mean(),
            draws.std(),
        )
    assert kalman_fit.verdict in ("pass", "warn"), kalman_fit.diagnostics().to_string()


def test_statespace_groups_and_coords(kalman_fit, data):
    idata = kalman_fit.idata
    latent = idata.posterior["y_latent"]
    assert latent.dims == ("chain", "draw", "time")
    np.testing.assert_allclose(latent.coords["time"].values, np.asarray(TS))
    ll = idata.log_likelihood["y"]
    # three missing time points have no term, nor y_0 (its law does not depend on the
    # parameters: a constant column, which PSIS-LOO could not handle)
    assert ll.shape == (2, 500, 296)
    assert idata.posterior_predictive["y_one_step"].dims == ("chain", "draw", "time")
    assert idata.posterior_predictive["y_forecast"].dims == (
        "chain",
        "draw",
        "time_forecast",
    )
    # the latent path interpolates through the gap
    gap = latent.values.reshape(-1, 300)[:, 51]
    assert np.isfinite(gap).all() and gap.std() > 0.01


def test_report_shows_latent_path(kalman_fit, tmp_path):
    path = kalman_fit.report(tmp_path / "r.html")
    html = path and open(path).read()
    # posteriors, traces, and the observations and latent path: one figure each
    assert "y_latent" in html and html.count("data:image/png;base64") >= 4


@pytest.mark.parametrize("method", ["ekf", "ukf"])
def test_ekf_ukf_inside_a_model(method, data):
    fit = sp.fit(
        ou_kf,
        TS[:100],
        y=data[:100],
        method="blackjax",
        chains=1,
        warmup=200,
        samples=200,
        seed=0,
        progress=False,
        model_kwargs={"method": method},
        log_likelihood=False,
        latent_paths=False,
    )
    assert np.isfinite(fit.idata.posterior["theta"].values).all()


def test_latent_draws_do_not_grade_the_run(kalman_fit):
    """R-hat/ESS judge the sampled parameters; the FFBS latent draws are derived."""
    from sdeppl.diagnostics.checks import _checked_vars

    assert "y_latent" in kalman_fit.idata.posterior
    assert set(_checked_vars(kalman_fit.idata)) == {"theta", "mu", "sigma"}
    assert "y_latent" not in kalman_fit.diagnostics().to_string()
