"""The generic table: every process primitive in tests/cases.py passes these checks."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro.infer import Predictive
from scipy import stats

import sdeppl as sp

from .cases import CASES

SAMPLE_SHAPES = [(), (2,), (2, 3)]
ids = [c.id for c in CASES]


def _params(case):
    return {k: jnp.asarray(v, dtype=jnp.float64) for k, v in case.params.items()}


def _observed(case, d, x):
    """``x`` with the case's missing time points set to NaN (a concrete NumPy array,
    as observed data are)."""
    x = np.array(x, dtype=float)  # NaN marks missing: counts become floats
    if case.missing:
        time_axis = x.ndim - len(d.event_shape)
        index = [slice(None)] * x.ndim
        index[time_axis] = list(case.missing)
        x[tuple(index)] = np.nan
    return x


@pytest.mark.parametrize("case", CASES, ids=ids)
@pytest.mark.parametrize("sample_shape", SAMPLE_SHAPES)
def test_shapes(case, sample_shape):
    d = case.make(_params(case))
    x = d.sample(jax.random.key(0), sample_shape)
    assert x.shape == sample_shape + d.batch_shape + d.event_shape
    lp = d.log_prob(_observed(case, d, x))
    assert lp.shape == sample_shape + d.batch_shape
    assert np.all(np.isfinite(lp))


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.closed_form], ids=lambda c: c.id
)
def test_final_marginal_matches_closed_form(case):
    """KS test of the final value's marginal against an independent closed form."""
    d = case.make(_params(case))
    x = np.asarray(d.sample(jax.random.key(1), (4000,)))
    final = x[:, -1] if x.ndim == 2 else x[:, -1, 0]
    mean, var = case.closed_form(case.params)
    assert stats.kstest(final, "norm", args=(mean, np.sqrt(var))).pvalue > 1e-3


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.log_prob_reference], ids=lambda c: c.id
)
def test_log_prob_matches_reference(case):
    d = case.make(_params(case))
    x = _observed(case, d, d.sample(jax.random.key(2)))
    ref = case.log_prob_reference(case.params, x)
    np.testing.assert_allclose(d.log_prob(x), ref, rtol=case.tol, atol=case.tol)


@pytest.mark.parametrize(
    "case", [c for c in CASES if "grad" in c.caps], ids=lambda c: c.id
)
def test_gradients_match_finite_differences(case):
    params = _params(case)
    d = case.make(params)
    x = _observed(case, d, d.sample(jax.random.key(3), (2,)))

    def f(p):
        return jnp.sum(case.make(p).log_prob(x))

    grads = jax.grad(f)(params)
    for name, value in params.items():
        g = float(grads[name])
        assert np.isfinite(g), name
        eps = 1e-6
        up = f({**params, name: value + eps})
        down = f({**params, name: value - eps})
        fd = float(up - down) / (2 * eps)
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize(
    "case", [c for c in CASES if "jit" in c.caps], ids=lambda c: c.id
)
def test_jit_matches_eager_and_traces_once(case):
    params = _params(case)
    d = case.make(params)
    x = d.sample(jax.random.key(4), (2,))
    traces = []

    @jax.jit
    def log_prob(p, x):
        traces.append(1)
        return case.make(p).log_prob(x)

    @jax.jit
    def sample(p, key):
        return case.make(p).sample(key, (2,))

    if not case.missing:  # missing points are found on concrete data, outside jit
        np.testing.assert_allclose(log_prob(params, x), d.log_prob(x), rtol=1e-12)
    np.testing.assert_allclose(sample(params, jax.random.key(4)), x, rtol=1e-12)
    shifted = {k: v * 1.01 for k, v in params.items()}
    log_prob(shifted, x)
    assert len(traces) == 1


@pytest.mark.parametrize(
    "case", [c for c in CASES if "vmap" in c.caps], ids=lambda c: c.id
)
def test_vmap_over_parameters(case):
    params = _params(case)
    d = case.make(params)
    x = _observed(case, d, d.sample(jax.random.key(5)))
    name = next(iter(params))
    values = params[name] * jnp.array([0.9, 1.0, 1.1])
    vmapped = jax.vmap(lambda v: case.make({**params, name: v}).log_prob(x))(values)
    loop = jnp.stack([case.make({**params, name: v}).log_prob(x) for v in values])
    np.testing.assert_allclose(vmapped, loop, rtol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_pytree_round_trip(case):
    d = case.make(_params(case))
    leaves, tree = jax.tree_util.tree_flatten(d)
    d2 = jax.tree_util.tree_unflatten(tree, leaves)
    x = _observed(case, d, d.sample(jax.random.key(6)))
    np.testing.assert_allclose(d2.log_prob(x), d.log_prob(x), rtol=1e-12)
    assert d2.batch_shape == d.batch_shape and d2.event_shape == d.event_shape


@pytest.mark.parametrize("case", [c for c in CASES if c.invalid], ids=lambda c: c.id)
def test_invalid_parameters_raise_with_validate_args(case):
    with numpyro.validation_enabled():
        with pytest.raises(ValueError, match="parameter"):
            case.make(
                _params(case)._replace()
                if False
                else {k: jnp.asarray(v) for k, v in case.invalid.items()}
            )


@pytest.mark.parametrize(
    "case", [c for c in CASES if "reparam" in c.caps], ids=lambda c: c.id
)
def test_inside_a_model_predictive_and_obs(case):
    params = _params(case)
    x_obs = case.make(params).sample(jax.random.key(7))

    def model(x=None):
        return numpyro.sample("x", case.make(params), obs=x)

    draws = Predictive(model, num_samples=3)(jax.random.key(8))
    assert draws["x"].shape == (3,) + x_obs.shape
    noncentred = Predictive(sp.reparam_paths(model), num_samples=3)(jax.random.key(8))
    assert noncentred["x"].shape == (3,) + x_obs.shape
    assert "x_noise" in noncentred
    # obs= gives the path likelihood; reparam leaves observed paths without substeps alone
    lp, _ = numpyro.infer.util.log_density(model, (x_obs,), {}, {})
    lp_r, _ = numpyro.infer.util.log_density(sp.reparam_paths(model), (x_obs,), {}, {})
    expected = jnp.sum(case.make(params).log_prob(x_obs))
    np.testing.assert_allclose(lp, expected, rtol=1e-12)
    np.testing.assert_allclose(lp_r, expected, rtol=1e-12)


@pytest.mark.parametrize(
    "case", [c for c in CASES if "reparam" in c.caps], ids=lambda c: c.id
)
def test_noncentred_transform_has_the_same_law(case):
    """Draws through the non-centred parametrisation (innovations -> path, as HMC sees
    the path) and direct draws agree in law: E[log p] matches."""
    d = case.make(_params(case))

    def model():
        return numpyro.sample("x", d)

    direct = d.sample(jax.random.key(9), (1000,))
    via_noise = Predictive(sp.reparam_paths(model), num_samples=1000)(
        jax.random.key(10)
    )["x"]
    lp_direct = np.asarray(d.log_prob(direct))
    lp_noise = np.asarray(d.log_prob(via_noise))
    diff = lp_direct.mean() - lp_noise.mean()
    se = np.sqrt(lp_direct.var() / lp_direct.size + lp_noise.var() / lp_noise.size)
    assert abs(diff) < 5 * se


@pytest.mark.parametrize(
    "case", [c for c in CASES if "series" in c.caps], ids=lambda c: c.id
)
def test_time_series_protocol(case):
    """What sdeppl.fit and the report use, through the protocol only: per-time terms
    that sum to log_prob (missing points included), a mask of informative terms,
    one-step predictive draws, forecasts and, where declared, hidden-path draws."""
    d = case.make(_params(case))
    assert isinstance(d, sp.TimeSeries)
    x = _observed(case, d, d.sample(jax.random.key(11), (2,)))
    T = len(d.ts)
    terms = d.pointwise_log_prob(x)
    assert terms.shape == (2,) + d.batch_shape + (T,)
    np.testing.assert_allclose(terms.sum(-1), d.log_prob(x), rtol=1e-9, atol=1e-9)
    mask = d.informative_mask(x)
    assert mask.shape == (T,) and mask.dtype == bool
    assert not np.any(mask[list(case.missing)])
    value_tail = () if d.value_dim is None else x.shape[-1:]
    one_step = d.one_step_sample(jax.random.key(12), x)
    assert one_step.shape == x.shape
    future = np.asarray(d.ts[-1]) + np.array([0.5, 1.0, 2.0])
    ahead = d.forecast(jax.random.key(13), x, future)
    assert ahead.shape == (2,) + d.batch_shape + (3,) + value_tail
    assert np.all(np.isfinite(ahead))
    if d.has_latent:
        latent = d.sample_latent(jax.random.key(14), x)
        lead = (2,) + d.batch_shape
        assert latent.shape[: len(lead)] == lead and latent.shape[len(lead)] == T
        assert np.all(np.isfinite(latent))
