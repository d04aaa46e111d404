"""Bad input gets a clear error naming the argument, what was expected and what came."""

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import pytest

import sdeppl as sp

TS = jnp.linspace(0.0, 1.0, 6)
SDE = sp.SDE(lambda t, x: -x, lambda t, x: 0.3)


def test_unsorted_and_repeated_times():
    with pytest.raises(
        ValueError,
        match=r"ts must be strictly increasing; got ts\[1\]=0.5 >= ts\[2\]=0.4",
    ):
        sp.Path(SDE, jnp.array([0.0, 0.5, 0.4, 1.0]), x0=0.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        sp.Path(SDE, jnp.array([0.0, 0.5, 0.5, 1.0]), x0=0.0)
    with pytest.raises(
        ValueError, match=r"ts must be a 1-D time grid .* got shape \(3, 2\)"
    ):
        sp.Path(SDE, jnp.zeros((3, 2)), x0=0.0)
    with pytest.raises(ValueError, match="ts must be finite"):
        sp.Path(SDE, jnp.array([0.0, jnp.nan, 1.0]), x0=0.0)


def test_drift_returning_the_wrong_shape():
    bad = sp.SDE(lambda t, x: jnp.zeros(3), lambda t, x: 0.3)
    with pytest.raises(
        ValueError, match=r"drift returned shape \(3,\) for a state of shape \(2,\)"
    ):
        sp.Path(bad, TS, x0=jnp.zeros(2))
    crashing = sp.SDE(lambda t, x: x @ jnp.ones((5, 5)), lambda t, x: 0.3)
    with pytest.raises(
        ValueError, match=r"calling drift\(t, x\) with x of shape \(2,\) failed"
    ):
        sp.Path(crashing, TS, x0=jnp.zeros(2))


def test_diffusion_of_the_wrong_shape():
    with pytest.raises(ValueError, match="general-noise diffusion must return"):
        sp.Path(
            sp.SDE(lambda t, x: -x, lambda t, x: jnp.ones(2), noise="general"),
            TS,
            x0=jnp.zeros(2),
        )
    with pytest.raises(ValueError, match="diagonal diffusion must return"):
        sp.Path(sp.SDE(lambda t, x: -x, lambda t, x: jnp.ones(3)), TS, x0=jnp.zeros(2))


def test_negative_diffusion_scale():
    neg = sp.SDE(lambda t, x: -x, lambda t, x: -0.3)
    with pytest.raises(ValueError, match="negative scale"):
        sp.Path(neg, TS, x0=0.0)
    sign_flip = sp.SDE(
        lambda t, x: -x, lambda t, x: 0.3 - x
    )  # negative only for x > 0.3
    path = sp.Path(sign_flip, TS, x0=dist.Normal(0.0, 1.0))
    with pytest.raises(ValueError, match="negative scale"):
        path.log_prob(jnp.full(6, 1.0))
    with (
        numpyro.validation_enabled(),
        pytest.raises(ValueError, match="sigma must satisfy"),
    ):
        sp.Path(sp.OU(1.0, 0.0, -0.3), TS, x0=0.0)


def test_unknown_and_inapplicable_methods():
    with pytest.raises(
        ValueError,
        match=r"unknown method 'rk4'; expected one of \('euler', 'local_linear', 'exact'\)",
    ):
        sp.Path(SDE, TS, x0=0.0, method="rk4")
    with pytest.raises(
        ValueError,
        match=r"method='exact' is not available for SDE; expected one of \('euler', 'local_linear'\)",
    ):
        sp.Path(SDE, TS, x0=0.0, method="exact")
    with pytest.raises(ValueError, match="substeps are not needed with method='exact'"):
        sp.Path(sp.OU(1.0, 0.0, 0.3), TS, x0=0.0, method="exact", substeps=3)


def test_other_arguments():
    with pytest.raises(TypeError, match="sde must be an sdeppl SDE"):
        sp.Path(lambda t, x: x, TS, x0=0.0)
    with pytest.raises(TypeError, match="drift must be a callable"):
        sp.SDE(1.0, lambda t, x: 0.3)
    with pytest.raises(ValueError, match="noise must be 'diagonal' or 'general'"):
        sp.SDE(lambda t, x: x, lambda t, x: 0.3, noise="scalar")
    with pytest.raises(
        ValueError, match=r"fixed x0 must have shape \(\) or \(d,\); got \(2, 2\)"
    ):
        sp.Path(SDE, TS, x0=jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match="substeps must be an int >= 0"):
        sp.Path(SDE, TS, x0=0.0, substeps=-2)
    with pytest.raises(ValueError, match="parametrization must be one of"):
        sp.Path(SDE, TS, x0=0.0, parametrization="whitened")
    with pytest.raises(ValueError, match="LinearSDE: L must have shape"):
        sp.LinearSDE(jnp.eye(2), jnp.ones((3, 1)))
    with pytest.raises(ValueError, match="infinite values"):
        sp.Path(SDE, TS, x0=0.0).log_prob(jnp.full(6, jnp.inf))
    with pytest.raises(ValueError, match="LinearSDE: the state must be a vector"):
        sp.Path(sp.LinearSDE(jnp.zeros((1, 1)), jnp.ones((1, 1))), TS, x0=0.0)
