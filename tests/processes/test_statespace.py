"""StateSpace: Kalman vs statsmodels, EKF/UKF vs Kalman and vs a grid reference, missing
data, gradients, smoothing, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
import statsmodels.api as sm
from jax.test_util import check_grads
from scipy import stats

import sdeppl as sp

RNG = np.random.default_rng(0)
TS = np.cumsum(np.r_[0.0, RNG.uniform(0.05, 0.3, 59)])  # irregular gaps


def statsmodels_loglik(y, phis, shifts, qs, H, R, m0, P0):
    """Exact Gaussian log-likelihood from statsmodels' state-space Kalman filter."""
    y = np.asarray(y, float).reshape(len(y), -1)
    nobs, k = y.shape
    d = m0.shape[0]
    mod = sm.tsa.statespace.MLEModel(
        y, k_states=d, initialization="known", initial_state=m0, initial_state_cov=P0
    )
    transition = np.zeros((d, d, nobs))
    intercept = np.zeros((d, nobs))
    state_cov = np.zeros((d, d, nobs))
    transition[:, :, :-1] = np.moveaxis(phis, 0, -1)
    intercept[:, :-1] = np.moveaxis(shifts, 0, -1)
    state_cov[:, :, :-1] = np.moveaxis(qs, 0, -1)
    mod["design"] = H
    mod["obs_cov"] = R
    mod["transition"] = transition
    mod["state_intercept"] = intercept
    mod["selection"] = np.eye(d)
    mod["state_cov"] = state_cov
    return mod.loglike([])


def ou_transitions(theta, mu, sigma, ts):
    dt = np.diff(ts)
    a = np.exp(-theta * dt)
    return (
        a[:, None, None],
        (mu * (1 - a))[:, None],
        (sigma**2 * (1 - a * a) / (2 * theta))[:, None, None],
    )


@pytest.mark.parametrize("missing", [False, True])
def test_kalman_ou_equals_statsmodels(missing):
    theta, mu, sigma, noise = 0.7, 1.0, 0.4, 0.1
    model = sp.StateSpace(
        sp.OU(theta, mu, sigma),
        TS,
        x0=dist.Normal(0.5, 0.8),
        obs=sp.LinearGaussian(1.0, noise**2),
    )
    y = np.array(model.sample(jax.random.key(0)))
    if missing:
        y[[3, 4, 20]] = np.nan
    phis, shifts, qs = ou_transitions(theta, mu, sigma, TS)
    ref = statsmodels_loglik(
        y,
        phis,
        shifts,
        qs,
        np.eye(1),
        np.eye(1) * noise**2,
        np.array([0.5]),
        np.eye(1) * 0.64,
    )
    np.testing.assert_allclose(model.log_prob(y), ref, rtol=1e-8)


def oscillator(k=1.3, c=0.4, q=0.5):
    return sp.LinearSDE(A=jnp.array([[0.0, 1.0], [-k, -c]]), L=jnp.array([[0.0], [q]]))


@pytest.mark.parametrize("partial", [False, True])
def test_kalman_oscillator_equals_statsmodels(partial):
    """2-D damped oscillator, both coordinates observed with correlated noise; some
    coordinates missing (partial) or whole time points missing."""
    import scipy.linalg

    sde = oscillator()
    H = np.array([[1.0, 0.0], [0.5, 1.0]])
    R = np.array([[0.04, 0.01], [0.01, 0.09]])
    m0, P0 = np.array([1.0, 0.0]), np.diag([0.3, 0.2])
    model = sp.StateSpace(
        sde, TS, x0=dist.MultivariateNormal(m0, P0), obs=sp.LinearGaussian(H, R)
    )
    y = np.array(model.sample(jax.random.key(1)))
    y[7, 0] = np.nan
    if partial:
        y[12, 1] = np.nan
        y[30] = np.nan
    A = np.array([[0.0, 1.0], [-1.3, -0.4]])
    LLt = np.array([[0.0, 0.0], [0.0, 0.25]])
    phis, qs = [], []
    for dt in np.diff(TS):
        phis.append(scipy.linalg.expm(A * dt))
        s = np.linspace(0, dt, 801)
        qs.append(
            np.trapezoid(
                np.stack(
                    [
                        scipy.linalg.expm(A * u) @ LLt @ scipy.linalg.expm(A * u).T
                        for u in s
                    ]
                ),
                s,
                axis=0,
            )
        )
    ref = statsmodels_loglik(
        y, np.stack(phis), np.zeros((len(phis), 2)), np.stack(qs), H, R, m0, P0
    )
    np.testing.assert_allclose(model.log_prob(y), ref, rtol=1e-8)


@pytest.mark.parametrize("method", ["ekf", "ukf"])
def test_ekf_and_ukf_equal_kalman_on_linear_models(method):
    sde = oscillator()
    obs = sp.LinearGaussian(jnp.array([1.0, 0.0]), 0.05)
    x0 = dist.MultivariateNormal(jnp.array([1.0, 0.0]), 0.1 * jnp.eye(2))
    kalman = sp.StateSpace(sde, TS, x0=x0, obs=obs, method="kalman")
    y = kalman.sample(jax.random.key(2)).at[5].set(jnp.nan)
    other = sp.StateSpace(sde, TS, x0=x0, obs=obs, method=method, substeps=20)
    np.testing.assert_allclose(other.log_prob(y), kalman.log_prob(y), rtol=1e-8)
    np.testing.assert_allclose(other.smooth(y)[0], kalman.smooth(y)[0], atol=1e-6)


def grid_filter_loglik(
    ts, y, drift, sd, obs_sd, h, m0, s0, num=601, lo=-4.0, hi=4.0, dt_fine=0.005
):
    """Point-mass filter on a fine grid: transitions chained from Euler steps of dt_fine."""
    x = np.linspace(lo, hi, num)
    dx = x[1] - x[0]
    p = stats.norm.pdf(x, m0, s0)
    ll = 0.0
    kernels = {}
    for k in range(len(ts)):
        if k > 0:
            gap = ts[k] - ts[k - 1]
            steps = max(1, int(round(gap / dt_fine)))
            h_step = gap / steps
            key = round(h_step, 12)
            if key not in kernels:
                mean = x + drift(x) * h_step
                kernels[key] = (
                    stats.norm.pdf(x[:, None], mean[None, :], sd * np.sqrt(h_step)) * dx
                )
            for _ in range(steps):
                p = kernels[key] @ p
        like = stats.norm.pdf(y[k], h(x), obs_sd)
        evidence = np.sum(like * p) * dx
        ll += np.log(evidence)
        p = like * p / evidence
    return ll


def test_ekf_and_ukf_approach_a_grid_reference_on_a_weakly_nonlinear_model():
    a, sd, obs_sd = 0.3, 0.5, 0.3
    drift_np = lambda x: -x - a * x**3  # noqa: E731
    h_np = lambda x: x + 0.2 * np.sin(x)  # noqa: E731
    sde = sp.SDE(lambda t, x: -x - a * x**3, lambda t, x: sd)
    obs = sp.GaussianObservation(lambda x: x + 0.2 * jnp.sin(x), obs_sd**2)
    ts = TS[:40]
    truth = sde.simulate(jax.random.key(3), ts, x0=0.5, substeps=40)
    y = np.asarray(truth + 0.3 * jax.random.normal(jax.random.key(4), truth.shape))
    ref = grid_filter_loglik(ts, y, drift_np, sd, obs_sd, h_np, 0.5, 0.5)
    errors = {}
    for method in ("ekf", "ukf"):
        model = sp.StateSpace(
            sde, ts, x0=dist.Normal(0.5, 0.5), obs=obs, method=method, substeps=10
        )
        errors[method] = abs(float(model.log_prob(y)) - ref)
    # within 0.1 nats over 40 observations; the unscented filter, exact to higher order
    # in the nonlinearity, is the closer of the two
    assert errors["ekf"] < 0.1 and errors["ukf"] < 0.1, errors
    assert errors["ukf"] < errors["ekf"], errors


@pytest.mark.parametrize("method", ["kalman", "ekf", "ukf"])
def test_missing_values_with_every_method(method):
    """A missing time point equals dropping it; a missing coordinate equals observing the rest."""
    sde = oscillator()
    H = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    model = sp.StateSpace(
        sde,
        TS,
        x0=dist.MultivariateNormal(jnp.zeros(2), 0.2 * jnp.eye(2)),
        obs=sp.LinearGaussian(H, 0.04 * jnp.eye(2)),
        method=method,
        substeps=20,
    )
    y = model.sample(jax.random.key(5))
    keep = np.array([i for i in range(len(TS)) if i != 10])
    dropped = sp.StateSpace(
        sde,
        TS[keep],
        x0=dist.MultivariateNormal(jnp.zeros(2), 0.2 * jnp.eye(2)),
        obs=sp.LinearGaussian(H, 0.04 * jnp.eye(2)),
        method=method,
        substeps=20,
    )
    np.testing.assert_allclose(
        model.log_prob(y.at[10].set(jnp.nan)), dropped.log_prob(y[keep]), rtol=1e-6
    )
    # second coordinate missing everywhere = observing the first one only
    first_only = sp.StateSpace(
        sde,
        TS,
        x0=dist.MultivariateNormal(jnp.zeros(2), 0.2 * jnp.eye(2)),
        obs=sp.LinearGaussian(H[:1], 0.04 * jnp.eye(1)),
        method=method,
        substeps=20,
    )
    np.testing.assert_allclose(
        model.log_prob(y.at[:, 1].set(jnp.nan)),
        first_only.log_prob(y[:, :1]),
        rtol=1e-8,
    )


def test_gradients_are_correct():
    def loglik(params, y):
        sde = sp.LinearSDE(
            A=jnp.array([[0.0, 1.0], [-params[0], -params[1]]]),
            L=jnp.array([[0.0], [params[2]]]),
        )
        model = sp.StateSpace(
            sde,
            TS[:20],
            x0=dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)),
            obs=sp.LinearGaussian(jnp.array([1.0, 0.0]), params[3] ** 2),
        )
        return model.log_prob(y)

    params = jnp.array([1.3, 0.4, 0.5, 0.2])
    y = sp.StateSpace(
        oscillator(),
        TS[:20],
        x0=dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)),
        obs=sp.LinearGaussian(jnp.array([1.0, 0.0]), 0.04),
    ).sample(jax.random.key(6))
    check_grads(
        lambda p: loglik(p, y), (params,), order=1, modes=["rev"], atol=1e-5, rtol=1e-5
    )


def test_smoother_and_latent_draws():
    """RTS means equal the average of backward-sampled paths; the smoother beats the filter."""
    sde = sp.OU(0.5, 0.0, 0.6)
    model = sp.StateSpace(
        sde, TS, x0=dist.Normal(0.0, 1.0), obs=sp.LinearGaussian(1.0, 0.3**2)
    )
    x = sp.Path(sde, TS, x0=dist.Normal(0.0, 1.0), method="exact").sample(
        jax.random.key(7)
    )
    y = x + 0.3 * jax.random.normal(jax.random.key(8), x.shape)
    means, covs = model.smooth(y)
    assert means.shape == (60,) and covs.shape == (60,)  # shapes follow the state
    draws = jax.vmap(lambda k: model.sample_latent(k, y))(
        jax.random.split(jax.random.key(9), 4000)
    )
    assert draws.shape == (4000, 60)
    np.testing.assert_allclose(
        draws.mean(0),
        means,
        atol=4 * float(jnp.sqrt(covs.max())) / np.sqrt(4000) * 1.5,
    )
    np.testing.assert_allclose(draws.var(0), covs, rtol=0.15)
    filtered, _ = model.filter(y)
    assert float(jnp.mean((means - x) ** 2)) < float(jnp.mean((filtered - x) ** 2))


def test_batch_and_sample_shapes():
    theta = jnp.array([0.3, 1.0, 2.0])
    model = sp.StateSpace(
        sp.OU(theta, 0.0, 0.5), TS[:10], x0=0.0, obs=sp.LinearGaussian(1.0, 0.1)
    )
    assert model.batch_shape == (3,) and model.event_shape == (10,)
    y = model.sample(jax.random.key(10), (2,))
    assert y.shape == (2, 3, 10) and model.log_prob(y).shape == (2, 3)
    one = sp.StateSpace(
        sp.OU(theta[1], 0.0, 0.5), TS[:10], x0=0.0, obs=sp.LinearGaussian(1.0, 0.1)
    )
    np.testing.assert_allclose(
        model.log_prob(y)[:, 1], one.log_prob(y[:, 1]), rtol=1e-12
    )


def test_bad_input():
    sde = oscillator()
    x0 = dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2))
    with pytest.raises(
        ValueError, match=r"observation matrix H must have shape \(k, 2\)"
    ):
        sp.StateSpace(sde, TS, x0=x0, obs=sp.LinearGaussian(jnp.ones((1, 3)), 0.1))
    with pytest.raises(ValueError, match="symmetric positive definite"):
        sp.StateSpace(
            sde,
            TS,
            x0=x0,
            obs=sp.LinearGaussian(jnp.eye(2), jnp.array([[1.0, 2.0], [2.0, 1.0]])),
        )
    with pytest.raises(ValueError, match="strictly increasing"):
        sp.StateSpace(sde, TS[::-1], x0=x0, obs=sp.LinearGaussian(jnp.eye(2), 0.1))
    with pytest.raises(ValueError, match="method='kalman' needs a linear SDE"):
        sp.StateSpace(
            sp.SDE(lambda t, x: -(x**3), lambda t, x: 0.5),
            TS,
            x0=0.0,
            obs=sp.LinearGaussian(1.0, 0.1),
        )
    with pytest.raises(
        ValueError, match="needs Gaussian observations.*particle filter"
    ):
        sp.StateSpace(sde, TS, x0=x0, obs=lambda x: dist.Poisson(jnp.exp(x[0])))
    with pytest.raises(TypeError, match="obs must be an observation model"):
        sp.StateSpace(sde, TS, x0=x0, obs=0.1)
    with pytest.raises(TypeError, match="x0 must be Gaussian"):
        sp.StateSpace(
            sde,
            TS,
            x0=dist.Uniform(jnp.zeros(2), 1.0).to_event(1),
            obs=sp.LinearGaussian(jnp.eye(2), 0.1),
        ).log_prob(jnp.zeros((60, 2)))


def test_eager_calls_run_as_one_compiled_program_and_reuse_it():
    """Outside jit, log_prob and the filter run as compiled programs (not op by op),
    cached by the model's structure: new parameter values reuse the program."""
    from sdeppl.processes import _eager

    ts = np.sort(np.random.default_rng(0).uniform(0.0, 20.0, 100))

    def build(a):
        A = jnp.array([[-0.5, 0.3], [-0.2, -0.8]]) * a
        sde = sp.LinearSDE(A, jnp.diag(jnp.array([0.3, 0.4])), jnp.array([0.1, -0.2]))
        x0 = dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2))
        return sp.StateSpace(sde, ts, x0=x0, obs=sp.LinearGaussian(jnp.eye(2), 0.01))

    y = np.array(build(1.0).sample(jax.random.key(0)))
    y[10, 1] = np.nan
    eager = build(1.0).log_prob(y)
    traced = jax.jit(lambda a: build(a).log_prob(jnp.asarray(y)))(1.0)
    np.testing.assert_allclose(eager, traced, rtol=1e-12)
    before = _eager._program.cache_info()
    assert np.isfinite(build(1.05).log_prob(y))
    after = _eager._program.cache_info()
    assert after.hits == before.hits + 1 and after.misses == before.misses
    means, covs = build(1.0).filter(y)
    assert means.shape == (100, 2) and covs.shape == (100, 2, 2)
