"""Path likelihoods: Euler vs NumPyro, exact vs SciPy, local linearisation vs exact."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from scipy import stats

import sdeppl as sp

TS = jnp.array([0.0, 0.05, 0.2, 0.35, 0.4, 0.9, 1.0])


def test_euler_log_prob_equals_numpyro_euler_maruyama_scalar():
    theta, mu, sigma = 0.7, 1.2, 0.3
    sde = sp.SDE(
        lambda t, x: theta * (mu - x) + jnp.sin(t),
        lambda t, x: sigma * (1.0 + 0.1 * x**2),
    )
    path = sp.Path(sde, TS, x0=dist.Normal(0.0, 1.0), method="euler")
    x = path.sample(jax.random.key(0), (4,))
    ref = dist.EulerMaruyama(
        TS,
        lambda y, t: (theta * (mu - y) + jnp.sin(t), sigma * (1.0 + 0.1 * y**2)),
        dist.Normal(0.0, 1.0),
    )
    np.testing.assert_allclose(path.log_prob(x), ref.log_prob(x), rtol=0, atol=1e-10)


def test_euler_log_prob_equals_numpyro_euler_maruyama_vector_diagonal():
    a = jnp.array([0.5, 1.5])
    sde = sp.SDE(
        lambda t, x: -a * x + jnp.roll(x, 1), lambda t, x: 0.2 + 0.1 * jnp.abs(x)
    )
    x0 = dist.Normal(jnp.zeros(2), 1.0).to_event(1)
    path = sp.Path(sde, TS, x0=x0)
    x = path.sample(jax.random.key(1), (3,))
    ref = dist.EulerMaruyama(
        TS, lambda y, t: (-a * y + jnp.roll(y, 1), 0.2 + 0.1 * jnp.abs(y)), x0
    )
    np.testing.assert_allclose(path.log_prob(x), ref.log_prob(x), rtol=0, atol=1e-10)


def test_exact_ou_equals_scipy_on_irregular_grid_with_batch():
    theta = jnp.array([0.3, 1.0, 4.0])
    mu, sigma = 0.5, 0.7
    path = sp.Path(sp.OU(theta, mu, sigma), TS, x0=1.0, method="exact")
    x = np.asarray(path.sample(jax.random.key(2)))
    ref = np.zeros(3)
    for i, th in enumerate(np.asarray(theta)):
        for k, dt in enumerate(np.diff(np.asarray(TS))):
            a = np.exp(-th * dt)
            ref[i] += stats.norm.logpdf(
                x[i, k + 1],
                mu + (x[i, k] - mu) * a,
                sigma * np.sqrt((1 - a * a) / (2 * th)),
            )
    np.testing.assert_allclose(path.log_prob(x), ref, rtol=1e-12)


@pytest.mark.parametrize("noise", ["general", "diagonal"])
def test_local_linear_equals_exact_on_linear_sdes(noise):
    A = jnp.array([[-0.5, 1.0, 0.0], [-1.0, -0.2, 0.3], [0.0, 0.1, -1.0]])
    b = jnp.array([0.1, 0.0, -0.2])
    L = (
        jnp.array([[0.3, 0.0], [0.1, 0.5], [0.0, 0.2]])
        if noise == "general"
        else jnp.diag(jnp.array([0.3, 0.5, 0.2]))
    )
    lin = sp.LinearSDE(A, L, b)
    x0 = dist.Normal(jnp.zeros(3), 1.0).to_event(1)
    exact = sp.Path(lin, TS, x0=x0, method="exact")
    x = exact.sample(jax.random.key(3), (5,))
    ll_linear = sp.Path(lin, TS, x0=x0, method="local_linear")
    if noise == "general":
        closure = sp.SDE(lambda t, x: A @ x + b, lambda t, x: L, noise="general")
    else:
        closure = sp.SDE(lambda t, x: A @ x + b, lambda t, x: jnp.diagonal(L))
    ll_closure = sp.Path(closure, TS, x0=x0, method="local_linear")
    np.testing.assert_allclose(ll_linear.log_prob(x), exact.log_prob(x), rtol=1e-10)
    np.testing.assert_allclose(ll_closure.log_prob(x), exact.log_prob(x), rtol=1e-10)


def test_local_linear_beats_euler_on_a_coarse_nonlinear_grid():
    """On a coarse grid the Shoji–Ozaki transition is closer to the true law than Euler's.

    Reference: the law of X_{t+h} | X_t for the double well estimated by a fine SRA1
    simulation; compare the expected log-density of the fine draws (cross-entropy).
    """
    sde = sp.SDE(lambda t, x: x - x**3, lambda t, x: 0.5, additive=True)
    h, x_start = 0.5, 1.5  # far from the wells: the drift is strongly nonlinear
    fine = sde.simulate(
        jax.random.key(4),
        jnp.array([0.0, h]),
        x0=x_start,
        scheme="sra1",
        substeps=99,
        num_paths=20000,
    )
    x1 = fine[:, 1]
    scores = {}
    for method in ("euler", "local_linear"):
        path = sp.Path(sde, jnp.array([0.0, h]), x0=x_start, method=method)
        scores[method] = float(
            jnp.mean(path.log_prob(jnp.stack([jnp.full_like(x1, x_start), x1], -1)))
        )
    assert scores["local_linear"] > scores["euler"] + 0.5


def test_euler_converges_to_exact_at_rate_one():
    """KL(exact path law || Euler path law) over a fixed horizon shrinks like h^1."""
    theta, mu, sigma, horizon = 1.0, 0.5, 0.4, 2.0
    kls = []
    steps = [0.2, 0.1, 0.05, 0.025]
    for h in steps:
        ts = jnp.arange(0.0, horizon + 1e-9, h)
        exact = sp.Path(sp.OU(theta, mu, sigma), ts, x0=0.0, method="exact")
        euler = sp.Path(sp.OU(theta, mu, sigma), ts, x0=0.0, method="euler")
        x = exact.sample(jax.random.key(5), (20000,))
        kls.append(float(jnp.mean(exact.log_prob(x) - euler.log_prob(x))))
    slope = np.polyfit(np.log(steps), np.log(kls), 1)[0]
    assert 0.85 < slope < 1.15, (kls, slope)


@pytest.mark.parametrize("theta", [0.7, 1e-7])
def test_scalar_local_linear_closed_form_equals_exact_ou(theta):
    """Scalar states use a closed form (no matrix exponential); it is exact for OU,
    including theta -> 0 (Brownian motion), where its series branch is used."""
    ou = sp.OU(theta, 0.4, 0.3)
    closure = sp.SDE(lambda t, x: theta * (0.4 - x), lambda t, x: 0.3)
    exact = sp.Path(ou, TS, x0=dist.Normal(0.0, 1.0), method="exact")
    x = exact.sample(jax.random.key(7), (4,))
    np.testing.assert_allclose(
        sp.Path(closure, TS, x0=dist.Normal(0.0, 1.0), method="local_linear").log_prob(
            x
        ),
        exact.log_prob(x),
        rtol=1e-9,
    )


def test_scalar_local_linear_with_time_dependent_drift_matches_matrix_route():
    """The scalar closed form equals the general (matrix-exponential) route on a 1-D state."""
    from sdeppl.solvers import Diffusion, local_linear_moments
    from sdeppl.solvers.linear import affine_discretisation, affine_moments

    drift = lambda t, x: jnp.sin(2.0 * t) - x**3 + 0.5 * x  # noqa: E731
    diffusion = Diffusion(lambda t, x: 0.4 + 0.1 * x**2, "diagonal")
    x0, t0, t1 = jnp.array([0.3]), 0.2, 0.7
    mean, scale = local_linear_moments(drift, diffusion, t0, t1, x0)
    f0 = drift(t0, x0)
    jac = jnp.array([[0.5 - 3 * x0[0] ** 2]])
    g = 0.4 + 0.1 * x0[0] ** 2
    c = 2.0 * jnp.cos(2.0 * t0) + 0.5 * g**2 * (-6 * x0[0])
    tr = affine_discretisation(
        jac, f0 - jac[0] * x0, jnp.array([[g**2]]), t1 - t0, c=jnp.array([c])
    )
    ref_mean, ref_scale = affine_moments(tr, x0)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-10)
    np.testing.assert_allclose(scale, ref_scale, rtol=1e-10)
