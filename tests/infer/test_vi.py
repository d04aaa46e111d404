"""method="svi": the ELBO, the guides and their diagnostics, against closed forms
(a conjugate model's posterior and evidence, the exact ELBO of a fixed Gaussian
guide, the Kalman smoother of a latent OU path)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from scipy import stats

import sdeppl as sp
from sdeppl.infer import ModelAdapter
from sdeppl.infer._guides import gaussian_family
from sdeppl.infer.vi import elbo_draws

Y = np.random.default_rng(0).normal(1.0, 1.0, 20)
N = Y.size
POST_VAR = 1.0 / (1.0 / 4.0 + N)
POST_MEAN = POST_VAR * Y.sum()
LOG_Z = stats.multivariate_normal(
    np.zeros(N), np.eye(N) + 4.0 * np.ones((N, N))
).logpdf(Y)


def conjugate(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


@pytest.fixture(scope="module")
def conjugate_fit():
    with jax.enable_x64():
        return sp.fit(conjugate, Y, method="svi", seed=1, progress=False)


def test_conjugate_posterior_evidence_and_report(conjugate_fit, tmp_path):
    fit = conjugate_fit
    mu = fit.idata.posterior["mu"].values.ravel()
    sd = math.sqrt(POST_VAR)
    assert abs(mu.mean() - POST_MEAN) < 4 * sd / math.sqrt(500)
    assert abs(mu.std() / sd - 1) < 0.06
    info = fit.metadata["backend_info"]
    assert info["stopped"] == "plateau" and info["resampled"]
    # the ELBO is a lower bound, tight for a guide that holds the posterior
    assert info["elbo"] <= LOG_Z + 4 * info["elbo_se"]
    assert info["elbo"] > LOG_Z - 0.01
    value, se = fit.log_evidence
    assert abs(value - LOG_Z) < 0.01
    rows = fit.diagnostics().set_index("check")
    assert rows.loc["optimiser (ELBO)", "status"] == "pass"
    assert rows.loc["Pareto k (VI)", "status"] == "pass"
    page = open(fit.report(tmp_path / "r.html")).read()
    assert (
        "Variational fit" in page and "ELBO trace" in page and "Pareto k (VI)" in page
    )
    # the ELBO of every step, beside the per-draw statistics, survives a round trip
    elbo = fit.idata.sample_stats["elbo"]
    assert elbo.dims == ("chain", "step") and elbo.sizes["step"] == info["steps_run"]
    again = sp.load(fit.save(tmp_path / "fit.nc"))
    np.testing.assert_allclose(again.idata.sample_stats["elbo"].values, elbo.values)


def test_elbo_estimate_is_unbiased_for_a_fixed_guide():
    """The mean of the ELBO estimates at a guide away from the posterior equals the
    closed-form ELBO of that guide, within Monte Carlo error."""
    with jax.enable_x64():
        model = ModelAdapter(conjugate, (Y,))
        family = gaussian_family("normal", 1, jnp.float64)
        m, s = 0.3, 0.5
        phi = {"loc": jnp.array([m]), "log_scale": jnp.log(jnp.array([s]))}
        elbo, *_ = jax.jit(lambda k: elbo_draws(model, family, phi, k, 20000))(
            jax.random.key(3)
        )
        elbo = np.asarray(elbo)
    exact = (
        np.sum(-0.5 * math.log(2 * math.pi) - 0.5 * ((Y - m) ** 2 + s**2))
        - 0.5 * math.log(2 * math.pi * 4.0)
        - (m**2 + s**2) / 8.0
        + 0.5 * math.log(2 * math.pi * math.e * s**2)
    )
    se = elbo.std() / math.sqrt(elbo.size)
    assert abs(elbo.mean() - exact) < 4 * se
    assert exact < LOG_Z


def banana(y):
    x1 = numpyro.sample("x1", dist.Normal(0.0, 1.0))
    x2 = numpyro.sample("x2", dist.Normal(0.0, 3.0))
    numpyro.sample("y", dist.Normal(x2 - x1**2, 0.2), obs=y)


@pytest.mark.slow
def test_flow_guide_beats_mean_field_on_a_banana():
    infos = {}
    for guide in ("normal", "flow"):
        fit = sp.fit(
            banana,
            0.0,
            method="svi",
            guide=guide,
            seed=0,
            progress=False,
            log_likelihood=False,
        )
        infos[guide] = fit.metadata["backend_info"]
    gap = infos["flow"]["elbo"] - infos["normal"]["elbo"]
    se = math.hypot(infos["flow"]["elbo_se"], infos["normal"]["elbo_se"])
    assert gap > 3 * se


THETA, SIGMA, TAU, DT, T = 1.0, 0.5, 0.3, 0.1, 200


def latent_ou(ts, y):
    sde = sp.SDE(drift=lambda t, x: -THETA * x, diffusion=lambda t, x: SIGMA)
    x = numpyro.sample("x", sp.Path(sde, ts, x0=dist.Normal(0.0, 1.0), method="euler"))
    numpyro.sample("y", dist.Normal(x, TAU), obs=y)


def rts_smoother(y):
    """Kalman (RTS) smoother of the Euler chain x_k = a x_{k-1} + N(0, q)."""
    a, q = 1 - THETA * DT, SIGMA**2 * DT
    m, p, mp, pp = (np.zeros(T) for _ in range(4))
    mp[0], pp[0] = 0.0, 1.0
    for k in range(T):
        if k:
            mp[k], pp[k] = a * m[k - 1], a * a * p[k - 1] + q
        gain = pp[k] / (pp[k] + TAU**2)
        m[k], p[k] = mp[k] + gain * (y[k] - mp[k]), (1 - gain) * pp[k]
    ms, ps = m.copy(), p.copy()
    for k in range(T - 2, -1, -1):
        g = p[k] * a / pp[k + 1]
        ms[k] = m[k] + g * (ms[k + 1] - mp[k + 1])
        ps[k] = p[k] + g * g * (ps[k + 1] - pp[k + 1])
    return ms, np.sqrt(ps)


def test_path_guide_reaches_the_kalman_smoother():
    rng = np.random.default_rng(0)
    x = np.zeros(T)
    x[0] = rng.normal()
    for k in range(1, T):
        x[k] = (1 - THETA * DT) * x[k - 1] + SIGMA * math.sqrt(DT) * rng.normal()
    y = x + TAU * rng.normal(size=T)
    ts = np.arange(T) * DT
    with jax.enable_x64():
        fit = sp.fit(
            latent_ou,
            ts,
            y,
            method="svi",
            guide=sp.PathGuide(),
            samples=4000,
            seed=0,
            progress=False,
            log_likelihood=False,
            posterior_predictive=False,
        )
    mean, sd = rts_smoother(y)
    draws = fit.idata.posterior["x"].values[0]
    assert np.max(np.abs(draws.mean(0) - mean)) < 0.05 * np.max(np.abs(mean))
    ratio = draws.std(0) / sd
    assert abs(np.median(ratio) - 1) < 0.03
    assert np.mean(np.abs(ratio - 1) < 0.1) > 0.95
    assert fit.metadata["backend_info"]["pareto_k"] < 0.7


def test_user_optimiser_with_a_schedule():
    schedule = optax.exponential_decay(0.05, 500, 0.5)
    fit = sp.fit(
        conjugate,
        Y,
        method="svi",
        guide="mvn",
        seed=0,
        progress=False,
        steps=1500,
        optimizer=optax.chain(optax.clip_by_global_norm(10.0), optax.adam(schedule)),
        log_likelihood=False,
    )
    mu = fit.idata.posterior["mu"].values.ravel()
    assert abs(mu.mean() - POST_MEAN) < 0.05


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="guide must be one of"):
        sp.fit(conjugate, Y, method="svi", guide="gaussian")
    with pytest.raises(ValueError, match="learning_rate sets the default"):
        sp.fit(conjugate, Y, method="svi", optimizer=optax.adam(0.1), learning_rate=0.1)
    with pytest.raises(ValueError, match="optax GradientTransformation"):
        sp.fit(conjugate, Y, method="svi", optimizer="adam")
    with pytest.raises(ValueError, match="PathGuide: control must be one of"):
        sp.fit(conjugate, Y, method="svi", guide=sp.PathGuide(control="neural"))
    with pytest.raises(ValueError, match="this model has none"):
        sp.fit(conjugate, Y, method="svi", guide="path")


def nowhere(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.factor("impossible", jnp.where(mu > 1e6, 0.0, -jnp.inf))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def test_non_finite_elbo_is_a_failed_diagnostic_not_a_result():
    fit = sp.fit(nowhere, Y, method="svi", progress=False, log_likelihood=False)
    rows = fit.diagnostics().set_index("check")
    assert rows.loc["optimiser (ELBO)", "status"] == "fail"
    assert rows.loc["Pareto k (VI)", "status"] == "fail"
    assert fit.verdict == "fail"
    assert fit.metadata["backend_info"]["stopped"] == "non-finite"
    assert not hasattr(fit, "log_evidence")


def conjugate_plate(n=10, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    with numpyro.plate("n", n):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


@pytest.mark.slow
def test_vsbc_probabilities_are_the_posterior_cdf_at_the_truth():
    """For a guide that holds the exact posterior, each replicate's q(mu < mu*) is
    the posterior CDF at the true mu (closed form), and the symmetry test is the
    two-sample KS test of p against 1 - p."""
    from numpyro.infer import Predictive

    result = sp.vsbc(
        conjugate_plate,
        observed="y",
        num_replicates=6,
        num_draws=2000,
        seed=3,
        progress=False,
        svi_options={"steps": 1500},
    )
    p = result.probabilities["mu"]
    assert p.shape == (6,)
    prior = Predictive(conjugate_plate, num_samples=6)(
        jax.random.split(jax.random.key(3))[0]
    )
    var = 1.0 / (1.0 / 4.0 + 10)
    mean = var * prior["y"].sum(axis=1)
    exact = stats.norm.cdf(prior["mu"], mean, math.sqrt(var))
    assert np.max(np.abs(p - exact)) < 0.06
    assert result.pvalues["mu"] == pytest.approx(stats.ks_2samp(p, 1 - p).pvalue)
    assert result.passed()
    with pytest.raises(ValueError, match="may not set 'resample'"):
        sp.vsbc(conjugate_plate, observed="y", svi_options={"resample": True})


def many_2d_paths(ts, y):
    """Three series of a 2-D state with diagonal noise, one latent point between
    observations, the first coordinate observed."""
    decay = numpyro.sample("decay", dist.HalfNormal(1.0))
    sde = sp.SDE(
        drift=lambda t, x: -decay * x,
        diffusion=lambda t, x: 0.5 * jnp.ones_like(x),
        noise="diagonal",
    )
    x0 = dist.Normal(jnp.zeros(2), 1.0).to_event(1)
    with numpyro.plate("series", 3, dim=-1):
        x = numpyro.sample("x", sp.Path(sde, ts, x0=x0, substeps=1))
        numpyro.sample("y", dist.Normal(x[..., 0], 0.2).to_event(1), obs=y)


def test_path_guide_steers_batched_multivariate_paths_with_substeps():
    """(The "mlp" control runs in docs/variational.md.)"""
    control = "affine"
    ts = jnp.linspace(0.0, 2.0, 11)
    y = np.sin(np.asarray(ts))[None, :] + np.array([[0.0], [0.5], [-0.5]])
    fit = sp.fit(
        many_2d_paths,
        ts,
        y,
        method="svi",
        guide=sp.PathGuide(control=control),
        steps=300,
        samples=200,
        seed=0,
        progress=False,
        log_likelihood=False,
        posterior_predictive=False,
    )
    x = fit.idata.posterior["x"].values
    assert x.shape == (1, 200, 3, 11, 2)
    assert np.isfinite(x).all()
    info = fit.metadata["backend_info"]
    assert np.isfinite(info["elbo"])
    # the guide pulls each series' observed coordinate towards its data
    err = np.abs(x[0, :, :, :, 0].mean(axis=0) - y)
    assert np.mean(err) < 0.3


def test_numpyro_guides_autoguide_class_and_guide_function():
    """A NumPyro autoguide class (built on the model as fit sees it) and a guide
    function with param sites both recover the conjugate posterior; a guide that
    misses a latent site is refused naming it."""
    from numpyro.infer.autoguide import AutoDiagonalNormal

    def my_guide(y):
        loc = numpyro.param("loc", 0.0)
        scale = numpyro.param("scale", 0.5, constraint=dist.constraints.positive)
        numpyro.sample("mu", dist.Normal(loc, scale))

    sd = math.sqrt(POST_VAR)
    for guide in (AutoDiagonalNormal, my_guide):
        fit = sp.fit(
            conjugate,
            Y,
            method="svi",
            guide=guide,
            seed=0,
            progress=False,
            log_likelihood=False,
        )
        mu = fit.idata.posterior["mu"].values.ravel()
        assert abs(mu.mean() - POST_MEAN) < 0.1 * sd
        assert abs(mu.std() / sd - 1) < 0.08
        assert fit.metadata["backend_info"]["pareto_k"] < 0.7

    def partial(y):
        numpyro.sample("other", dist.Normal(numpyro.param("m", 0.0), 1.0))

    with pytest.raises(ValueError, match=r"no sample site for the model's latent"):
        sp.fit(conjugate, Y, method="svi", guide=partial, progress=False)


def test_innovation_mean_for_a_shift_inverts_the_step_scale():
    from sdeppl.solvers import gaussian_transform, noise_for_shift

    v = jnp.array([0.3, -0.2])
    diag = jnp.array([0.5, 0.0])  # the second coordinate has no noise
    mu = noise_for_shift(v, diag, "diag")
    np.testing.assert_allclose(mu, [0.6, 0.0])
    tril = jnp.array([[0.5, 0.0], [0.2, 0.4]])
    mu = noise_for_shift(v, tril, "tril")
    np.testing.assert_allclose(gaussian_transform(jnp.zeros(2), tril, "tril", mu), v)
    factor = jnp.array([[0.0], [0.7]])  # one Brownian motion drives the second
    mu = noise_for_shift(v, factor, "factor")
    np.testing.assert_allclose(mu, [-0.2 / 0.7], rtol=1e-6)
