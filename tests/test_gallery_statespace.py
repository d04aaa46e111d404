"""The state-space gallery (models/nile.py, oscillator.py, double_well_noisy.py) and its
recipes: data, a finite log-density at the truth (or the MLE), agreement of the Nile
model with statsmodels, and recipes that validate and load. No sampling here; the
recipes' smoke runs are in tests/report/test_cli.py."""

import inspect
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro.infer.util import log_density

from sdeppl.recipes import load_data, load_model_module, read_recipe

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
# gallery model -> (recipe, observed keyword, number of points, number of NaN)
GALLERY = {
    "nile": ("nile_local_level", "flow", 100, 0),
    "oscillator": ("oscillator_kalman", "y", 200, 26),
    "double_well_noisy": ("double_well_ukf", "y", 150, 0),
}


_LOADED = {}


def _module(name):
    return load_model_module(name, MODELS)


def _loaded(name):
    """The gallery module and its data, loaded once per test session."""
    if name not in _LOADED:
        module = _module(name)
        _LOADED[name] = module, module.data()
    return _LOADED[name]


def _log_density(model, kwargs, params):
    """NumPyro's joint log-density at ``params``, compiled once (the data stay concrete,
    as the models' missing-value checks need)."""
    return jax.jit(lambda p: log_density(model, (), kwargs, p)[0])(params)


def _reference_params(module):
    """TRUE_PARAMS for simulated data, the MLE for real data."""
    params = getattr(module, "TRUE_PARAMS", None) or module.MLE
    return {k: jnp.asarray(v) for k, v in params.items()}


@pytest.mark.parametrize("name", GALLERY)
def test_data_shapes(name):
    module, data = _loaded(name)
    _, observed, num_points, num_missing = GALLERY[name]
    assert set(data) == {"ts", observed}
    ts, y = np.asarray(data["ts"]), np.asarray(data[observed])
    assert ts.shape == (num_points,) and y.shape == (num_points,)
    assert np.all(np.diff(ts) > 0)
    assert np.isnan(y).sum() == num_missing
    assert np.isfinite(y[~np.isnan(y)]).all()
    assert module.DESCRIPTION and module.__doc__


@pytest.mark.parametrize("name", GALLERY)
def test_log_density_finite_at_reference(name):
    module, data = _loaded(name)
    _, observed, _, _ = GALLERY[name]
    params = _reference_params(module)
    assert np.isfinite(_log_density(module.model, data, params))
    trace = numpyro.handlers.trace(
        numpyro.handlers.substitute(module.model, data=params)
    ).get_trace(**data)
    assert trace[observed]["fn"].event_shape == data[observed].shape


def test_double_well_filters_both_finite():
    module, data = _loaded("double_well_noisy")
    params = _reference_params(module)
    values = {
        method: float(_log_density(module.model, {**data, "method": method}, params))
        for method in ("ukf", "ekf")
    }
    assert all(np.isfinite(v) for v in values.values())
    # two approximations of the same likelihood: close, not equal (docstring: 1 nat)
    assert 0.1 < abs(values["ukf"] - values["ekf"]) < 5.0, values


def test_oscillator_data_come_from_its_model():
    module, data = _loaded("oscillator")
    y = np.asarray(data["y"])
    assert np.isnan(y[module.MISSING]).all()
    gaps = np.diff(np.asarray(data["ts"]))
    assert gaps.min() >= 0.05 and gaps.max() <= 0.45 and gaps.std() > 0.05
    # same seed, same data
    np.testing.assert_array_equal(np.asarray(module.data()["y"]), y)


def test_nile_matches_statsmodels_at_the_mle():
    """sdeppl's Kalman likelihood with a nearly diffuse start, less the first term,
    equals statsmodels' local-level log-likelihood (approximate diffuse start, first
    observation burnt in), and its gradient vanishes at the MLE."""
    sm = pytest.importorskip("statsmodels.api")
    module, data = _loaded("nile")
    mle = module.MLE

    def log_lik(log_scales):
        scales = jnp.exp(log_scales)
        states = module.local_level(
            scales[0], scales[1], data["ts"], level0=(1000.0, 1e4)
        )
        return states.pointwise_log_prob(data["flow"])[1:].sum()

    at_mle = jnp.log(jnp.array([mle["sigma_level"], mle["sigma_obs"]]))
    reference = sm.tsa.UnobservedComponents(
        np.asarray(data["flow"]), "local level"
    ).loglike([mle["sigma_obs"] ** 2, mle["sigma_level"] ** 2])
    value, grad = jax.jit(jax.value_and_grad(log_lik))(at_mle)
    assert abs(float(value) - reference) < 0.05
    grad = np.asarray(grad)
    assert np.abs(grad).max() < 0.01, grad  # curvature there is ~ -10 and -150


@pytest.mark.parametrize("name", GALLERY)
def test_recipe_validates_and_loads(name):
    recipe_name, observed, num_points, _ = GALLERY[name]
    recipe = read_recipe(ROOT / "inference" / f"{recipe_name}.toml")
    assert recipe["model"]["name"] == name
    assert recipe["title"]
    assert recipe["inference"]["backend"] in ("blackjax", "nuts", "mclmc")
    forecast = recipe["output"]["forecast"]
    assert forecast["horizon"] > 0 and forecast["steps"] >= 1
    module = _module(name)
    options = recipe["model"]["options"]
    assert set(options) <= set(inspect.signature(module.model).parameters)
    kwargs = {**load_data(recipe, module), **options}
    assert np.shape(kwargs[observed]) == (num_points,)
    assert np.isfinite(_log_density(module.model, kwargs, _reference_params(module)))
