"""sdeppl.fit: backends, InferenceData layout, determinism, saving, diagnostics."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import sdeppl as sp

TRUE = {"theta": 0.5, "mu": 1.0, "sigma": 0.3}
TS = jnp.arange(300) * 0.1
X = sp.Path(sp.OU(**TRUE), TS, x0=0.0, method="exact").sample(jax.random.key(0))


def ou_model(ts, x=None):
    theta = numpyro.sample("theta", dist.HalfNormal(1.0))
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    return numpyro.sample(
        "x", sp.Path(sp.OU(theta, mu, sigma), ts, x0=0.0, method="exact"), obs=x
    )


SMALL = dict(chains=2, warmup=400, samples=400, progress=False)


@pytest.fixture(scope="module")
def blackjax_fit():
    return sp.fit(
        ou_model,
        TS,
        x=X,
        method="blackjax",
        seed=1,
        posterior_predictive=True,
        forecast={"horizon": 2.0, "steps": 5},
        **{**SMALL, "samples": 1000},
    )


@pytest.fixture(scope="module")
def numpyro_fit():
    return sp.fit(ou_model, TS, x=X, method="nuts", seed=1, **SMALL)


def test_blackjax_and_numpyro_nuts_agree(blackjax_fit, numpyro_fit):
    """Posterior means agree within Monte Carlo error (ArviZ MCSE of each run)."""
    import arviz as az

    a, b = blackjax_fit.idata, numpyro_fit.idata
    mcse_a, mcse_b = az.mcse(a), az.mcse(b)
    for name in ("theta", "mu", "sigma"):
        diff = float(a.posterior[name].mean() - b.posterior[name].mean())
        se = float(np.hypot(mcse_a[name], mcse_b[name]))
        assert abs(diff) < 4 * se, (name, diff, se)


def test_inference_data_groups_and_coords(blackjax_fit):
    idata = blackjax_fit.idata
    for group in (
        "posterior",
        "sample_stats",
        "observed_data",
        "log_likelihood",
        "posterior_predictive",
    ):
        assert hasattr(idata, group), group
    stats = idata.sample_stats
    for name in (
        "diverging",
        "tree_depth",
        "energy",
        "step_size",
        "n_steps",
        "acceptance_rate",
        "lp",
    ):
        assert name in stats, name
    assert stats.sizes["chain"] == 2 and stats.sizes["draw"] == 1000
    np.testing.assert_allclose(
        idata.observed_data["x"].coords["time"].values, np.asarray(TS)
    )
    ll = idata.log_likelihood["x"]
    assert ll.shape == (2, 1000, 299)  # one term per transition; x0 is fixed
    np.testing.assert_allclose(ll.coords["x_obs_time"].values, np.asarray(TS[1:]))
    pp = idata.posterior_predictive
    assert pp["x"].dims == ("chain", "draw", "time")
    forecast = pp["x_forecast"]
    assert forecast.dims == ("chain", "draw", "time_forecast")
    np.testing.assert_allclose(
        forecast.coords["time_forecast"].values,
        float(TS[-1]) + np.linspace(0.4, 2.0, 5),
    )
    meta = blackjax_fit.metadata
    assert (
        meta["backend"] == "blackjax"
        and meta["seed"] == 1
        and "jax" in meta["versions"]
    )


def test_forecast_spread_grows_with_horizon(blackjax_fit):
    f = blackjax_fit.idata.posterior_predictive["x_forecast"].values.reshape(-1, 5)
    sd = f.std(axis=0)
    assert np.all(np.diff(sd) > 0)
    # the forecast starts from the last observation and reverts towards mu
    assert abs(f[:, 0].mean() - float(X[-1])) < abs(float(X[-1]) - TRUE["mu"]) + 0.2


def test_loo_works(blackjax_fit):
    import arviz as az

    loo = az.loo(blackjax_fit.idata)
    assert np.isfinite(loo.elpd_loo)


def test_same_seed_same_draws():
    kw = dict(chains=2, warmup=50, samples=30, progress=False, log_likelihood=False)
    a = sp.fit(ou_model, TS, x=X, seed=3, **kw).idata.posterior
    b = sp.fit(ou_model, TS, x=X, seed=3, **kw).idata.posterior
    c = sp.fit(ou_model, TS, x=X, seed=4, **kw).idata.posterior
    np.testing.assert_array_equal(a["theta"].values, b["theta"].values)
    assert not np.array_equal(a["theta"].values, c["theta"].values)


def test_vectorized_chains_follow_the_sequential_ones():
    """``chain_method="vectorized"`` (vmap, the accelerator default) runs the same
    chains as the CPU default (each chain has its own key): equal draws up to
    floating-point rounding, which NUTS's dynamics can amplify a little."""
    kw = dict(chains=2, warmup=60, samples=40, progress=False, log_likelihood=False)
    runs = {
        method: sp.fit(ou_model, TS, x=X, seed=7, chain_method=method, **kw)
        for method in ("sequential", "vectorized")
    }
    a, b = (runs[m].idata.posterior["theta"].values for m in runs)
    np.testing.assert_allclose(a, b, atol=1e-2)
    assert runs["vectorized"].metadata["settings"]["chain_method"] == "vectorized"


def test_good_fit_passes_diagnostics(blackjax_fit):
    table = blackjax_fit.diagnostics()
    assert set(table["status"]) == {"pass"}, table.to_string()
    assert {
        "R-hat",
        "bulk ESS",
        "tail ESS",
        "divergences",
        "E-BFMI",
        "tree-depth saturation",
        "Pareto k (LOO)",
    } <= set(table["check"])


def funnel():
    v = numpyro.sample("v", dist.Normal(0.0, 3.0))
    numpyro.sample("z", dist.Normal(0.0, jnp.exp(v / 2)).expand([9]).to_event(1))


def test_bad_fit_is_flagged_fail(tmp_path):
    """Neal's funnel, centred, with 10 warm-up steps: divergences and R-hat fail, in
    the diagnostics table and in the report's banner and table."""
    bad = sp.fit(funnel, chains=2, warmup=10, samples=300, seed=0, progress=False)
    table = bad.diagnostics()
    assert bad.verdict == "fail"
    failing = set(table.loc[table["status"] == "fail", "check"])
    assert failing & {"divergences", "R-hat", "bulk ESS"}, table.to_string()
    bad.report(tmp_path / "bad.html")
    html = (tmp_path / "bad.html").read_text(encoding="utf-8")
    assert "Overall verdict: <b>fail</b>" in html
    assert html.count(">fail</span>") == len(failing)


def test_save_and_load_round_trip(tmp_path, blackjax_fit):
    path = blackjax_fit.save(tmp_path / "posterior.nc")
    loaded = sp.load(path)
    np.testing.assert_array_equal(
        loaded.idata.posterior["theta"].values,
        blackjax_fit.idata.posterior["theta"].values,
    )
    assert loaded.metadata["backend"] == "blackjax"
    assert [p.name for p in tmp_path.iterdir()] == ["posterior.nc"]


def test_save_is_atomic(tmp_path, blackjax_fit, monkeypatch):
    target = tmp_path / "posterior.nc"
    target.write_text("previous result")

    def crash(self, path, *args, **kwargs):
        with open(path, "w") as f:
            f.write("half-writ")
        raise OSError("disk full")

    monkeypatch.setattr(type(blackjax_fit.idata), "to_netcdf", crash)
    with pytest.raises(OSError, match="disk full"):
        blackjax_fit.save(target)
    assert target.read_text() == "previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["posterior.nc"]


def test_latent_path_model_is_noncentred_with_time_coords():
    def model(ts, y=None):
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        x = numpyro.sample(
            "x", sp.Path(sp.OU(1.0, 0.0, sigma), ts, x0=0.0, method="exact")
        )
        numpyro.sample("y", dist.Normal(x, 0.2), obs=y)

    ts = jnp.arange(20) * 0.2
    y = sp.Path(sp.OU(1.0, 0.0, 0.8), ts, x0=0.0, method="exact").sample(
        jax.random.key(5)
    ) + 0.2 * jax.random.normal(jax.random.key(6), (20,))
    fit = sp.fit(
        model, ts, y=y, chains=1, warmup=200, samples=100, progress=False, seed=0
    )
    post = fit.idata.posterior
    assert "x_noise" in post and post["x"].dims == ("chain", "draw", "time")
    assert "x" not in fit.parameter_names() and "sigma" in fit.parameter_names()


@pytest.mark.slow
def test_mclmc_agrees_with_nuts():
    """MCLMC (no Metropolis step) matches a long NUTS run within MC error once tuned long enough."""
    import arviz as az

    kw = dict(
        seed=2,
        chains=4,
        warmup=2000,
        samples=4000,
        progress=False,
        log_likelihood=False,
    )
    fit = sp.fit(ou_model, TS, x=X, method="mclmc", **kw)
    reference = sp.fit(ou_model, TS, x=X, method="blackjax", **kw)
    mcse_a, mcse_b = az.mcse(fit.idata), az.mcse(reference.idata)
    for name in ("theta", "mu", "sigma"):
        a, b = (
            fit.idata.posterior[name].values.ravel(),
            reference.idata.posterior[name].values.ravel(),
        )
        assert abs(a.mean() - b.mean()) < 4 * float(
            np.hypot(mcse_a[name], mcse_b[name])
        ), name
        # spread by the interquartile range: mu has heavy tails (it is unidentified as
        # theta -> 0), which makes its standard deviation a noisy statistic
        iqr_a, iqr_b = (np.subtract(*np.quantile(v, [0.75, 0.25])) for v in (a, b))
        assert abs(iqr_a / iqr_b - 1) < 0.15, name


def test_progress_bars(capsys):
    """One bar for the run: all chains' steps, the phase, a rate in steps/s."""
    sp.fit(
        ou_model,
        TS,
        x=X,
        chains=2,
        warmup=20,
        samples=20,
        progress=True,
        log_likelihood=False,
    )
    err = capsys.readouterr().err
    assert "NUTS, 2 chains: warm-up" in err and "NUTS, 2 chains: sampling" in err
    assert "80/80" in err and "step/s" in err and "chain 1" not in err


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown method 'hmc'; expected one of"):
        sp.fit(ou_model, TS, x=X, method="hmc")
    with pytest.raises(ValueError, match="chains must be an int >= 1; got 0"):
        sp.fit(ou_model, TS, x=X, chains=0)
    with pytest.raises(ValueError, match="target_accept must be in"):
        sp.fit(ou_model, TS, x=X, target_accept=1.5)
    with pytest.raises(ValueError, match="forecast must be a dict"):
        sp.fit(ou_model, TS, x=X, forecast=3.0)

    def discrete():
        numpyro.sample("k", dist.Bernoulli(0.5))

    with pytest.raises(ValueError, match=r"latent site\(s\) \['k'\] are discrete"):
        sp.fit(discrete)


def test_chains_split_across_devices_are_reproducible_and_independent(tmp_path):
    """Chain c draws from its own key: on one device, chain 0 of two chains equals a
    single-chain run. On two host devices the chains run in parallel, the same seed
    gives the same draws, and they match the one-device draws up to floating-point
    rounding (a different program; NUTS's chaotic dynamics can amplify rounding, so
    the check is on the posterior mean, not draw by draw)."""
    script = textwrap.dedent(
        f"""
        import os, sys
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=" + sys.argv[1]
        import jax
        jax.config.update("jax_enable_x64", True)
        import numpy as np
        sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r})
        from infer.test_fit import ou_model, TS, X
        import sdeppl as sp
        def draws():
            fit = sp.fit(ou_model, TS, x=X, chains=int(sys.argv[2]), warmup=60,
                         samples=40, progress=False, log_likelihood=False, seed=7)
            return fit.idata.posterior["theta"].values
        first = draws()
        assert jax.local_device_count() == int(sys.argv[1])
        np.testing.assert_array_equal(first, draws())
        np.save(sys.argv[3], first)
        """
    )
    (tmp_path / "run.py").write_text(script)
    for devices, chains in (("1", "1"), ("1", "2"), ("2", "2")):
        out = tmp_path / f"d{devices}c{chains}.npy"
        subprocess.run(
            [sys.executable, str(tmp_path / "run.py"), devices, chains, str(out)],
            check=True,
        )
    one_chain, two_chains, two_devices = (
        np.load(tmp_path / f"{name}.npy") for name in ("d1c1", "d1c2", "d2c2")
    )
    np.testing.assert_array_equal(one_chain[0], two_chains[0])
    assert not np.array_equal(two_chains[0], two_chains[1])
    np.testing.assert_allclose(two_devices.mean(), two_chains.mean(), atol=0.02)


def test_missing_data_and_bad_times_inside_fit():
    """Checks on concrete data still run when the model is traced (as under fit/MCMC)."""
    x = np.asarray(X).copy()
    x[[40, 41, 120]] = np.nan
    fit = sp.fit(
        ou_model, np.asarray(TS), x=x, chains=1, warmup=150, samples=150, progress=False
    )
    post = fit.idata.posterior
    assert np.isfinite(post["theta"].values).all()
    assert (
        fit.idata.log_likelihood["x"].shape[-1] == 299 - 3
    )  # missing points have no term
    with pytest.raises(ValueError, match="strictly increasing"):
        sp.fit(
            ou_model,
            np.asarray(TS)[::-1],
            x=x,
            chains=1,
            warmup=5,
            samples=5,
            progress=False,
        )


def test_centred_augmentation_of_an_observed_path_fits():
    """The centred latent points of an augmented path have an improper prior (their
    density is the path's): the model's structure is read without sampling them, and
    they keep their own (fine-grid) dims in the InferenceData."""
    ts = np.arange(20) * 0.5
    x = sp.Path(sp.OU(0.5, 1.0, 0.3), ts, x0=0.0, method="exact").sample(
        jax.random.key(0)
    )

    def model(x=None):
        theta = numpyro.sample("theta", dist.HalfNormal(1.0))
        sde = sp.SDE(lambda t, x: theta * (1.0 - x), lambda t, x: 0.3)
        path = sp.Path(
            sde, ts, x0=0.0, method="euler", substeps=2, parametrization="centered"
        )
        numpyro.sample("x", path, obs=x)

    fit = sp.fit(
        model, np.asarray(x), chains=1, warmup=200, samples=200, progress=False
    )
    assert fit.idata.posterior["x_latent"].shape == (1, 200, 38, 1)
    assert 0.1 < float(fit.idata.posterior["theta"].mean()) < 1.5
