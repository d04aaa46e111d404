"""Path behaviour: missing data, fixed x0, plates, latent paths and data augmentation."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import Predictive
from numpyro.infer.util import log_density

import sdeppl as sp

TS = jnp.array([0.0, 0.1, 0.3, 0.4, 0.6, 1.0, 1.2])
OU = sp.OU(0.8, 1.0, 0.5)


@pytest.mark.parametrize("method", ["exact", "euler", "local_linear"])
def test_missing_points_are_skipped_by_a_transition_over_the_gap(method):
    path = sp.Path(OU, TS, x0=dist.Normal(0.0, 1.0), method=method)
    x = path.sample(jax.random.key(0))
    missing = x.at[jnp.array([2, 3])].set(jnp.nan)
    keep = np.array([0, 1, 4, 5, 6])
    reduced = sp.Path(OU, TS[keep], x0=dist.Normal(0.0, 1.0), method=method)
    np.testing.assert_allclose(
        path.log_prob(missing), reduced.log_prob(x[keep]), rtol=1e-12
    )


def test_missing_values_in_a_batch_and_vector_states():
    sde = sp.SDE(lambda t, x: -x, lambda t, x: 0.4 * jnp.ones_like(x))
    path = sp.Path(sde, TS, x0=jnp.zeros(2))
    x = path.sample(jax.random.key(1), (3,))
    missing = x.at[:, 4, :].set(jnp.nan)
    lp = path.log_prob(missing)
    assert lp.shape == (3,) and np.all(np.isfinite(lp))
    with pytest.raises(ValueError, match="some coordinates but not all"):
        path.log_prob(x.at[0, 4, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="same times in every series"):
        path.log_prob(x.at[0, 4, :].set(jnp.nan))
    with pytest.raises(ValueError, match="first time point is missing"):
        path.log_prob(x.at[:, 0, :].set(jnp.nan))


def test_traced_nan_gives_minus_inf_not_nan():
    path = sp.Path(OU, TS, x0=0.0)
    x = path.sample(jax.random.key(2)).at[3].set(jnp.nan)
    assert jax.jit(path.log_prob)(x) == -jnp.inf


def test_fixed_x0_conditions_on_the_first_value():
    path = sp.Path(OU, TS, x0=0.3, method="exact")
    x = path.sample(jax.random.key(3), (4,))
    np.testing.assert_allclose(x[:, 0], 0.3)
    with_prior = sp.Path(OU, TS, x0=dist.Normal(0.3, 2.0), method="exact")
    np.testing.assert_allclose(
        path.log_prob(x),
        with_prior.log_prob(x) - dist.Normal(0.3, 2.0).log_prob(x[:, 0]),
        rtol=1e-12,
    )


def test_plate_broadcasts_and_reparam_expands():
    data = sp.Path(OU, TS, x0=0.0).sample(jax.random.key(4), (3,))

    def model(x=None):
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        with numpyro.plate("series", 3):
            return numpyro.sample(
                "x", sp.Path(sp.OU(0.8, 1.0, sigma), TS, x0=0.0), obs=x
            )

    lp, _ = log_density(model, (data,), {}, {"sigma": 0.5})
    expected = dist.HalfNormal(1.0).log_prob(0.5) + jnp.sum(
        sp.Path(OU, TS, x0=0.0).log_prob(data)
    )
    np.testing.assert_allclose(lp, expected, rtol=1e-12)
    draws = Predictive(sp.reparam_paths(model), num_samples=2)(jax.random.key(5))
    assert draws["x"].shape == (2, 3, TS.shape[0]) and draws["x_noise"].shape == (
        2,
        3,
        TS.shape[0] - 1,
        1,
    )


def test_noncentred_latent_path_density_is_standard_normal_innovations():
    def model():
        return numpyro.sample(
            "x", sp.Path(OU, TS, x0=dist.Normal(0.0, 1.0), substeps=2)
        )

    tr = numpyro.handlers.trace(
        numpyro.handlers.seed(sp.reparam_paths(model), 0)
    ).get_trace()
    assert tr["x"]["type"] == "deterministic" and tr["x"]["value"].shape == TS.shape
    assert tr["x_noise"]["value"].shape == (3 * (TS.shape[0] - 1), 1)
    # path at the observation times is the fine path subsampled
    path = sp.Path(OU, TS, x0=dist.Normal(0.0, 1.0), substeps=2)
    fine = sp.Path(OU, path.fine_ts, x0=dist.Normal(0.0, 1.0)).transform_noise(
        tr["x_x0"]["value"], tr["x_noise"]["value"]
    )
    np.testing.assert_allclose(tr["x"]["value"], fine[::3], rtol=1e-12)


def test_centred_latent_path_with_substeps_samples_the_fine_path():
    def model():
        return numpyro.sample(
            "x", sp.Path(OU, TS, x0=0.0, substeps=1, parametrization="centered")
        )

    tr = numpyro.handlers.trace(
        numpyro.handlers.seed(sp.reparam_paths(model), 1)
    ).get_trace()
    assert tr["x_fine"]["value"].shape == (2 * (TS.shape[0] - 1) + 1,)
    np.testing.assert_allclose(tr["x"]["value"], tr["x_fine"]["value"][::2])


def test_augmentation_is_exact_for_brownian_motion():
    """For dX = sigma dW the modified diffusion bridge is the exact bridge: log p - log q
    equals the exact likelihood of the observations for every latent draw."""
    bm = sp.SDE(lambda t, x: 0.0 * x, lambda t, x: 0.7)
    coarse = sp.Path(bm, TS, x0=0.0, method="euler")
    y = coarse.sample(jax.random.key(6))
    path = sp.Path(bm, TS, x0=0.0, method="euler", substeps=4)
    plan = path.augmentation_plan(y)
    for seed in range(3):
        z = jax.random.normal(jax.random.key(seed), (plan["num_latent"], 1))
        np.testing.assert_allclose(
            path.augmented_log_prob(y, z, plan, centered=False),
            coarse.log_prob(y),
            rtol=1e-10,
        )


def test_augmentation_importance_weights_recover_the_exact_likelihood():
    """E_q[exp(log p - log q)] is the fine-grid Euler likelihood, close to the exact OU one."""
    ou = sp.OU(1.0, 0.5, 0.6)
    ts = jnp.array([0.0, 0.5, 1.0, 2.0])
    y = sp.Path(ou, ts, x0=0.0, method="exact").sample(jax.random.key(7))
    path = sp.Path(ou, ts, x0=0.0, method="euler", substeps=31)
    plan = path.augmentation_plan(y)
    z = jax.random.normal(jax.random.key(8), (4000, plan["num_latent"], 1))
    logw = jax.vmap(lambda zi: path.augmented_log_prob(y, zi, plan, centered=False))(z)
    estimate = jax.scipy.special.logsumexp(logw) - np.log(z.shape[0])
    exact = sp.Path(ou, ts, x0=0.0, method="exact").log_prob(y)
    coarse_euler = sp.Path(ou, ts, x0=0.0, method="euler").log_prob(y)
    assert abs(estimate - exact) < 0.05
    assert abs(estimate - exact) < abs(coarse_euler - exact) / 3


def test_augmentation_with_missing_points_and_a_trailing_gap():
    ou = sp.OU(1.0, 0.5, 0.6)
    y = sp.Path(ou, TS, x0=0.0, method="exact").sample(jax.random.key(9))
    y = y.at[jnp.array([2, 6])].set(jnp.nan)
    path = sp.Path(ou, TS, x0=0.0, method="euler", substeps=3)
    plan = path.augmentation_plan(y)
    assert plan["num_latent"] == 3 * 6 + 2
    z = jax.random.normal(jax.random.key(10), (2000, plan["num_latent"], 1))
    logw = jax.vmap(lambda zi: path.augmented_log_prob(y, zi, plan, centered=False))(z)
    estimate = jax.scipy.special.logsumexp(logw) - np.log(z.shape[0])
    exact = sp.Path(ou, TS, x0=0.0, method="exact").log_prob(y)
    assert abs(estimate - exact) < 0.1


def test_centred_augmentation_is_the_fine_path_density():
    ou = sp.OU(1.0, 0.5, 0.6)
    y = sp.Path(ou, TS, x0=0.0, method="exact").sample(jax.random.key(11))
    path = sp.Path(
        ou, TS, x0=0.0, method="euler", substeps=2, parametrization="centered"
    )
    plan = path.augmentation_plan(y)
    z = jax.random.normal(jax.random.key(12), (plan["num_latent"], 1))
    fine = (
        jnp.zeros(path.fine_ts.shape)
        .at[::3]
        .set(y)
        .at[jnp.asarray(np.flatnonzero(~plan["observed"]))]
        .set(z[:, 0])
    )
    expected = sp.Path(ou, path.fine_ts, x0=0.0, method="euler").log_prob(fine)
    np.testing.assert_allclose(
        path.augmented_log_prob(y, z, plan, centered=True), expected, rtol=1e-12
    )


def test_observed_path_with_substeps_inside_a_model():
    ou = sp.OU(1.0, 0.5, 0.6)
    y = sp.Path(ou, TS, x0=0.0, method="exact").sample(jax.random.key(13))

    def model(y):
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        numpyro.sample(
            "y", sp.Path(sp.OU(1.0, 0.5, sigma), TS, x0=0.0, substeps=2), obs=y
        )

    with pytest.raises(ValueError, match="no closed-form log_prob"):
        log_density(model, (y,), {}, {"sigma": 0.6})
    tr = numpyro.handlers.trace(
        numpyro.handlers.seed(sp.reparam_paths(model), 0)
    ).get_trace(y)
    assert tr["y_bridge"]["value"].shape == (2 * (TS.shape[0] - 1), 1)
    assert tr["y"]["is_observed"] and np.isfinite(tr["y"]["fn"].log_prob(y))
