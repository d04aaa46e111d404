"""What a new user hits (issue 12): failures before the work, verdicts that mean what
they say, readable output."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import sdeppl as sp

SMALL = dict(chains=2, warmup=200, samples=200, progress=False)


def masked_normal(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    ok = ~jnp.isnan(y)
    numpyro.sample("y", dist.Normal(mu, 1.0).mask(ok), obs=jnp.where(ok, y, 0.0))


def test_an_observation_computed_inside_the_model_is_supported():
    """NumPyro's idiom for gaps (obs computed in the model, masked) works: the observed
    values are read before sampling, and the masked point does not enter LOO."""
    y = jnp.array([0.1, jnp.nan, 0.5, -0.3, 0.8])
    fit = sp.fit(masked_normal, y=y, seed=0, **SMALL)
    np.testing.assert_array_equal(
        fit.idata.observed_data["y"].values, [0.1, 0, 0.5, -0.3, 0.8]
    )
    row = fit.diagnostics().set_index("check").loc["Pareto k (LOO)"]
    assert row["status"] == "pass" and "(4 observations)" in row["value"]


def latent_path_noisy(ts, y, ok):
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    x = numpyro.sample(
        "x", sp.Path(sp.OU(1.0, 0.0, sigma), ts, x0=jnp.zeros(2), method="euler")
    )
    numpyro.sample("y", dist.Normal(x, 0.2).mask(ok).to_event(2), obs=y)


def test_observations_of_a_latent_path_keep_their_time_axis():
    """A latent path observed through dist.Normal(x, r).mask(ok).to_event(2): one LOO
    term per time (not one for the whole series), on the path's time coordinate;
    the masked times, and time 0 (the path starts at a fixed 0), drop out."""
    ts = jnp.linspace(0.0, 4.0, 21)
    x = sp.Path(sp.OU(1.0, 0.0, 0.5), ts, x0=jnp.zeros(2)).sample(jax.random.key(0))
    ok = np.ones((21, 2), bool)
    ok[[3, 7]] = False
    y = x + 0.2 * jax.random.normal(jax.random.key(1), x.shape)
    fit = sp.fit(latent_path_noisy, ts, y=y, ok=ok, seed=0, **SMALL)
    ll = fit.idata.log_likelihood["y"]
    assert ll.dims[-1] == "y_obs_time" and ll.shape[-1] == 18
    np.testing.assert_allclose(
        ll["y_obs_time"].values, np.delete(np.asarray(ts), [0, 3, 7])
    )
    assert (
        "(18 observations)"
        in fit.diagnostics().set_index("check").loc["Pareto k (LOO)", "value"]
    )


def test_loo_over_one_observation_is_not_a_check():
    def one_point(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    fit = sp.fit(one_point, y=0.3, seed=0, **SMALL)
    row = fit.diagnostics().set_index("check").loc["Pareto k (LOO)"]
    assert row["status"] == "n/a" and "1 informative observation" in row["value"]


def test_tables_print_whole():
    import pandas as pd

    fit = sp.fit(masked_normal, y=jnp.array([0.1, 0.5, -0.3]), seed=0, **SMALL)
    with pd.option_context("display.width", 40, "display.max_columns", 3):
        printed = repr(fit.diagnostics())
        summary = repr(fit.summary())
    assert "status" in printed and "advice" in printed and "..." not in printed
    assert "r_hat" in summary and "ess_bulk" in summary


def test_output_folder_is_checked_before_fitting(tmp_path, capsys):
    from pathlib import Path

    from sdeppl.cli import main

    root = Path(__file__).resolve().parents[1]
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    code = main(
        [
            "run",
            str(root / "inference" / "ou_map.toml"),
            "--out",
            str(blocker / "run"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "is a file" in err and "Traceback" not in err
    assert blocker.read_text() == "x"


def test_fit_names_a_misspelled_model_option_in_a_recipe(tmp_path):
    from pathlib import Path

    from sdeppl.recipes import RecipeError, run_recipe

    root = Path(__file__).resolve().parents[1]
    recipe = tmp_path / "inference" / "r.toml"
    recipe.parent.mkdir()
    recipe.write_text('[model]\nname = "ou"\noptions = { metod = "exact" }\n')
    with pytest.raises(
        RecipeError, match=r"\['metod'\] are not parameters of ou.model"
    ):
        run_recipe(recipe, tmp_path / "out", root / "models", progress=False)


def ou_with_spare(ts, x=None, sigma_scale=None):
    theta = numpyro.sample("theta", dist.HalfNormal(1.0))
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.sample("spare", dist.Normal(0.0, 1.0))  # nothing in the data informs it
    if sigma_scale is not None:  # a misspecified model: the noise is fixed too small
        sigma = sigma_scale
    numpyro.sample(
        "x", sp.Path(sp.OU(theta, mu, sigma), ts, x0=0.0, method="exact"), obs=x
    )


TS = jnp.arange(150) * 0.1
X = sp.Path(sp.OU(0.5, 1.0, 0.3), TS, x0=0.0, method="exact").sample(jax.random.key(3))


def test_a_parameter_the_data_do_not_inform_is_flagged(tmp_path):
    """Prior draws come with the fit; a posterior as wide as its prior is flagged in
    the diagnostics (warn) and in the report's table, the others pass."""
    fit = sp.fit(ou_with_spare, TS, x=X, seed=0, **SMALL)
    assert "prior" in fit.idata.groups()
    row = fit.diagnostics().set_index("check").loc["data inform the parameters"]
    assert row["status"] == "warn" and "spare" in row["value"]
    assert "sigma" not in row["value"] and "theta" not in row["value"]
    page = open(fit.report(tmp_path / "r.html"), encoding="utf-8").read()
    assert "prior-dominated" in page


def test_one_step_coverage_is_computed_and_judged():
    good = sp.fit(ou_with_spare, TS, x=X, seed=0, posterior_predictive=True, **SMALL)
    row = good.diagnostics().set_index("check").loc["one-step coverage (x)"]
    assert row["status"] == "pass" and "of 149 in the 90% intervals" in row["value"]
    bad = sp.fit(
        ou_with_spare,
        TS,
        x=X,
        sigma_scale=0.1,
        seed=0,
        posterior_predictive=True,
        **SMALL,
    )
    row = bad.diagnostics().set_index("check").loc["one-step coverage (x)"]
    assert row["status"] == "warn" and "underestimates the noise" in row["advice"]


def test_data_of_the_wrong_length_or_layout_are_rejected_clearly():
    ts = jnp.arange(100.0)
    path = sp.Path(sp.OU(0.5, 1.0, 0.3), ts, x0=0.0)
    for wrong in (jnp.zeros(90), jnp.zeros(110)):
        with pytest.raises(
            ValueError, match=r"shape \(\.\.\., T=100\).*ts has 100 times"
        ):
            path.log_prob(wrong)
    model = sp.StateSpace(
        sp.OU(0.5, 1.0, 0.3),
        ts,
        x0=dist.Normal(0.0, 1.0),
        obs=sp.LinearGaussian(1.0, 0.1),
    )
    with pytest.raises(ValueError, match=r"StateSpace: the value must have shape"):
        model.log_prob(jnp.zeros(90))

    def ou(ts, x=None):
        theta = numpyro.sample("theta", dist.HalfNormal(1.0))
        numpyro.sample("x", sp.Path(sp.OU(theta, 1.0, 0.3), ts, x0=0.0), obs=x)

    with pytest.raises(ValueError, match=r"fit: observed site 'x' \(Path\): the value"):
        sp.fit(ou, ts, x=jnp.zeros(90), progress=False)


def test_many_series_written_as_one_big_state_get_a_hint():
    ts = jnp.arange(50.0)
    big = sp.Path(sp.OU(jnp.full(200, 0.5), 1.0, 0.3), ts, x0=jnp.zeros(200))
    with pytest.raises(ValueError, match="200 independent series.*docs/many-series.md"):
        big.log_prob(jnp.zeros((200, 50)))


def test_a_drift_of_the_wrong_shape_is_rejected_where_the_path_is_built():
    ts = jnp.arange(5.0)
    scalar_for_vector = sp.SDE(lambda t, x: -jnp.sum(x, -1), lambda t, x: 0.3)
    with pytest.raises(
        ValueError, match=r"drift returned shape \(\) for a state of shape \(2,\)"
    ):
        sp.Path(scalar_for_vector, ts, x0=jnp.zeros(2))
    three_for_two = sp.SDE(lambda t, x: jnp.zeros(3), lambda t, x: 0.3)
    with pytest.raises(ValueError, match=r"drift returned shape \(3,\)"):
        sp.Path(three_for_two, ts, x0=jnp.zeros(2))


def test_saving_to_a_bad_path_says_why_in_one_line(tmp_path):
    fit = sp.fit(masked_normal, y=jnp.array([0.1, 0.5, -0.3]), seed=0, **SMALL)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="cannot write .*file/run/posterior.nc"):
        fit.save(blocker / "run" / "posterior.nc")
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        fit.save(tmp_path)
    assert blocker.read_text() == "x" and list(tmp_path.iterdir()) == [blocker]
