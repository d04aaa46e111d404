"""Layer-1 particle filters against known truth (the specs' checks C1 and C3, the
resampling unit tests, smoothing against the Kalman smoother, conditional SMC)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdeppl.solvers import resampling
from sdeppl.solvers.particle import (
    ancestral_paths,
    backward_sample,
    bootstrap,
    conditional_smc,
    fixed_lag_means,
    guided,
    particle_filter,
)

# -- a linear-Gaussian model with its Kalman filter and smoother (C1) -----------------
RHO, SIGMA_X, T = 0.9, 1.0, 100
SIGMA_0 = SIGMA_X / np.sqrt(1 - RHO**2)


def simulate_lg(sigma_y, seed=0, num_steps=T):
    rng = np.random.default_rng(seed)
    x = np.empty(num_steps)
    x[0] = SIGMA_0 * rng.normal()
    for t in range(1, num_steps):
        x[t] = RHO * x[t - 1] + SIGMA_X * rng.normal()
    return x + sigma_y * rng.normal(size=num_steps)


def kalman(y, sigma_y):
    """Log-likelihood, filtered and smoothed means/variances (NumPy, scalar state)."""
    n = len(y)
    mf, pf, mp, pp = (np.empty(n) for _ in range(4))
    m, p, ll = 0.0, SIGMA_0**2, 0.0
    for t in range(n):
        if t:
            m, p = RHO * m, RHO**2 * p + SIGMA_X**2
        mp[t], pp[t] = m, p
        s = p + sigma_y**2
        ll += -0.5 * (np.log(2 * np.pi * s) + (y[t] - m) ** 2 / s)
        k = p / s
        m, p = m + k * (y[t] - m), (1 - k) * p
        mf[t], pf[t] = m, p
    ms, ps = mf.copy(), pf.copy()
    for t in range(n - 2, -1, -1):
        g = pf[t] * RHO / pp[t + 1]
        ms[t] = mf[t] + g * (ms[t + 1] - mp[t + 1])
        ps[t] = pf[t] + g**2 * (ps[t + 1] - pp[t + 1])
    return ll, ms, ps


def lg_bootstrap(y, sigma_y):
    y = jnp.asarray(y)

    def log_transition(t, x_prev, x):
        return -0.5 * ((x - RHO * x_prev) ** 2 / SIGMA_X**2 + np.log(2 * np.pi))

    return bootstrap(
        lambda key, n: SIGMA_0 * jax.random.normal(key, (n,)),
        lambda key, t, x: RHO * x + SIGMA_X * jax.random.normal(key, x.shape),
        lambda t, x: (
            -0.5 * ((y[t] - x) ** 2 / sigma_y**2 + np.log(2 * np.pi * sigma_y**2))
        ),
        len(y),
        log_transition,
    )


def lg_optimal(y, sigma_y):
    """Guided model with the optimal proposal p(x_t | x_{t-1}, y_t)."""
    y = jnp.asarray(y)
    post_var = 1.0 / (1.0 / SIGMA_X**2 + 1.0 / sigma_y**2)
    var0 = 1.0 / (1.0 / SIGMA_0**2 + 1.0 / sigma_y**2)

    def normal_lp(x, m, v):
        return -0.5 * ((x - m) ** 2 / v + jnp.log(2 * jnp.pi * v))

    def prop_mean(t, x_prev):
        return post_var * (RHO * x_prev / SIGMA_X**2 + y[t] / sigma_y**2)

    return guided(
        lambda key, n: (
            var0 * y[0] / sigma_y**2 + np.sqrt(var0) * jax.random.normal(key, (n,))
        ),
        lambda key, t, x: (
            prop_mean(t, x) + np.sqrt(post_var) * jax.random.normal(key, x.shape)
        ),
        lambda x: normal_lp(x, var0 * y[0] / sigma_y**2, var0),
        lambda t, x_prev, x: normal_lp(x, prop_mean(t, x_prev), post_var),
        lambda x: normal_lp(x, 0.0, SIGMA_0**2),
        lambda t, x_prev, x: normal_lp(x, RHO * x_prev, SIGMA_X**2),
        lambda t, x: normal_lp(y[t], x, sigma_y**2),
        len(y),
    )


def evidence_runs(fk, num_particles, num_runs, seed=0, **kw):
    run = jax.jit(
        jax.vmap(
            lambda k: (
                particle_filter(fk, k, num_particles, history=False, **kw).log_evidence
            )
        )
    )
    return np.asarray(run(jax.random.split(jax.random.key(seed), num_runs)))


# -- resampling -----------------------------------------------------------------------
WEIGHTS = np.array([0.1, 0.0, 0.35, 0.05, 0.5])


@pytest.mark.parametrize("name", list(resampling.RESAMPLERS))
def test_resampling_is_unbiased(name):
    log_w = jnp.log(jnp.asarray(WEIGHTS))  # includes an impossible particle
    draw = resampling.RESAMPLERS[name]
    counts = jax.jit(
        jax.vmap(lambda k: resampling.offspring_counts(draw(k, log_w), 5))
    )(jax.random.split(jax.random.key(0), 4000))
    counts = np.asarray(counts)
    se = counts.std(0) / np.sqrt(len(counts)) + 1e-12
    assert np.all(np.abs(counts.mean(0) - 5 * WEIGHTS) < 4.5 * se + 1e-9)
    assert counts[:, 1].max() == 0  # never draws a zero-weight particle
    assert np.all(counts.sum(1) == 5)


def test_systematic_variance_below_multinomial_and_zero_weights_are_uniform():
    log_w = jnp.log(jnp.asarray(WEIGHTS))
    keys = jax.random.split(jax.random.key(1), 4000)

    def variance(draw):
        counts = jax.vmap(lambda k: resampling.offspring_counts(draw(k, log_w), 5))(
            keys
        )
        return np.asarray(counts).var(0)

    assert np.all(
        variance(resampling.systematic) <= variance(resampling.multinomial) + 0.02
    )
    impossible = jnp.full(5, -jnp.inf)
    for draw in resampling.RESAMPLERS.values():
        idx = np.asarray(draw(jax.random.key(2), impossible))
        assert idx.min() >= 0 and idx.max() < 5
    assert float(resampling.ess(impossible)) == pytest.approx(5.0)


def test_stop_gradient_weights_are_uniform_in_value_and_carry_the_gradient():
    log_w = jnp.array([0.3, -1.0, 0.5])
    idx = jnp.array([2, 2, 0])
    out = resampling.stop_gradient_log_weights(log_w, idx)
    np.testing.assert_allclose(out, -np.log(3.0) * np.ones(3))
    grad = jax.grad(lambda lw: jnp.sum(resampling.stop_gradient_log_weights(lw, idx)))(
        log_w
    )
    np.testing.assert_allclose(grad, [1.0, 0.0, 2.0])


# -- C1: unbiased evidence --------------------------------------------------------------
@pytest.fixture(scope="module")
def lg_data():
    y = simulate_lg(1.0)
    return y, kalman(y, 1.0)[0]


def test_evidence_is_unbiased_and_its_variance_shrinks_as_one_over_n(lg_data):
    y, exact = lg_data
    fk = lg_bootstrap(y, 1.0)
    small = evidence_runs(fk, 100, 2000) - exact
    # unbiasedness of Z-hat: E[exp(error)] = 1
    ratio = np.exp(small)
    assert abs(ratio.mean() - 1.0) < 4 * ratio.std() / np.sqrt(len(ratio))
    large = evidence_runs(fk, 400, 500, seed=1) - exact
    assert 2.5 < small.var() / large.var() < 6.5  # 1/N: a factor 4
    assert abs(large.mean()) < 0.2


def test_every_resampling_scheme_gives_the_same_evidence(lg_data):
    y, exact = lg_data
    fk = lg_bootstrap(y, 1.0)
    for name in ("multinomial", "residual"):  # systematic: above; stratified ~ it
        ratio = np.exp(evidence_runs(fk, 100, 1000, resampling=name) - exact)
        assert abs(ratio.mean() - 1.0) < 4 * ratio.std() / np.sqrt(len(ratio)), name


def test_optimal_proposal_beats_bootstrap_when_observations_are_informative():
    y = simulate_lg(0.2, seed=3)
    exact = kalman(y, 0.2)[0]
    boot = evidence_runs(lg_bootstrap(y, 0.2), 100, 200) - exact
    opt = evidence_runs(lg_optimal(y, 0.2), 100, 200) - exact
    assert opt.var() < 0.05 * boot.var()
    assert abs(np.mean(np.exp(opt)) - 1.0) < 4 * np.std(np.exp(opt)) / np.sqrt(200)


def test_auxiliary_filter_with_exact_lookahead():
    """Look-ahead eta_t(x) = p(y_{t+1} | x_t) in the resampling weights: with
    bootstrap moves it is unbiased and less noisy; with the optimal proposal too (the
    fully adapted filter) every weight is equal and the noise is far lower still."""
    y = simulate_lg(0.5, seed=3)
    exact = kalman(y, 0.5)[0]
    y_next = jnp.asarray(np.append(y[1:], 0.0))

    def log_lookahead(t, x):
        var = SIGMA_X**2 + 0.5**2
        return -0.5 * ((y_next[t] - RHO * x) ** 2 / var + np.log(2 * np.pi * var))

    boot = lg_bootstrap(y, 0.5)
    plain = evidence_runs(boot, 100, 400) - exact
    aux = evidence_runs(boot._replace(log_lookahead=log_lookahead), 100, 400) - exact
    assert aux.var() < 0.8 * plain.var()
    assert abs(np.mean(np.exp(aux)) - 1.0) < 4 * np.std(np.exp(aux)) / np.sqrt(400)
    adapted = lg_optimal(y, 0.5)._replace(log_lookahead=log_lookahead)
    full = evidence_runs(adapted, 100, 400) - exact
    assert full.var() < 0.1 * plain.var()
    assert abs(np.mean(np.exp(full)) - 1.0) < 4 * np.std(np.exp(full)) / np.sqrt(400)


def test_impossible_observation_gives_minus_infinity_not_nan(lg_data):
    y, _ = lg_data
    fk = lg_bootstrap(y, 1.0)
    impossible = fk._replace(
        log_potential=lambda t, xp, x: (
            jnp.where(t == 7, -jnp.inf, 0.0) * jnp.ones_like(x)
        )
    )
    result = particle_filter(impossible, jax.random.key(0), 50)
    assert float(result.log_evidence) == -np.inf
    assert not np.any(np.isnan(np.asarray(result.log_weights)))


def test_ess_triggered_resampling(lg_data):
    y, _ = lg_data
    fk = lg_bootstrap(y, 1.0)
    run = jax.jit(
        jax.vmap(lambda c: particle_filter(fk, jax.random.key(0), 64, ess_threshold=c))
    )
    results = run(jnp.array([0.0, 1.0, 0.5]))  # never, always, the default
    never, always, default = (
        jax.tree_util.tree_map(lambda a, i=i: a[i], results) for i in range(3)
    )
    assert not np.any(np.asarray(never.resampled))
    assert np.all(np.asarray(always.resampled)[1:])
    flags = np.asarray(default.resampled)
    assert 0 < flags.sum() < T - 1
    # resampling happens exactly where the previous step's ESS fell below N/2
    np.testing.assert_array_equal(flags[1:], np.asarray(default.ess)[:-1] < 32)


# -- C3: the stop-gradient score --------------------------------------------------------
def test_stop_gradient_score_matches_kalman_gradient_and_naive_does_not():
    num_steps, q, r = 50, 0.4, 0.8
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.normal(0, np.sqrt(q), num_steps))
    y = jnp.asarray(x + rng.normal(0, np.sqrt(r), num_steps))

    def kalman_ll(p):
        def step(c, yt):
            m, v, ll = c
            s = v + p[1]
            ll = ll - 0.5 * (jnp.log(2 * jnp.pi * s) + (yt - m) ** 2 / s)
            k = v / s
            return (m + k * (yt - m), (1 - k) * v + p[0], ll), None

        return jax.lax.scan(step, (0.0, 1.0, 0.0), y)[0][2]

    def pf_ll(p, key, stop_gradient):
        fk = bootstrap(
            lambda k, n: jax.random.normal(k, (n,)),
            lambda k, t, x: x + jnp.sqrt(p[0]) * jax.random.normal(k, x.shape),
            lambda t, x: -0.5 * (jnp.log(2 * jnp.pi * p[1]) + (y[t] - x) ** 2 / p[1]),
            num_steps,
        )
        result = particle_filter(
            fk, key, 300, stop_gradient=stop_gradient, history=False
        )
        return result.log_evidence

    params = jnp.array([q, r])
    exact = np.asarray(jax.grad(kalman_ll)(params))
    keys = jax.random.split(jax.random.key(0), 200)
    for stop_gradient in (True, False):
        grads = jax.jit(
            jax.vmap(jax.grad(pf_ll), in_axes=(None, 0, None)), static_argnums=2
        )(params, keys, stop_gradient)
        grads = np.asarray(grads)
        z = (grads.mean(0) - exact) / (grads.std(0) / np.sqrt(len(grads)))
        if stop_gradient:
            assert np.all(np.abs(z) < 4), z
        else:
            assert np.any(np.abs(z) > 10), z  # the bias this option removes


# -- smoothing and conditional SMC -------------------------------------------------------
@pytest.fixture(scope="module")
def short_lg():
    y = simulate_lg(0.7, seed=4, num_steps=30)
    _, means, variances = kalman(y, 0.7)
    return y, means, variances


def test_backward_sampling_and_genealogy_match_the_kalman_smoother(short_lg):
    y, means, variances = short_lg
    fk = lg_bootstrap(y, 0.7)
    result = jax.jit(lambda k: particle_filter(fk, k, 1000))(jax.random.key(0))
    paths = np.asarray(backward_sample(jax.random.key(1), fk, result, 400))
    assert paths.shape == (400, 30)
    assert np.all(np.abs(paths.mean(0) - means) < 4.5 * np.sqrt(variances / 400) + 0.05)
    assert np.all(np.abs(paths.var(0) / variances - 1) < 0.45)
    genealogy = np.asarray(ancestral_paths(jax.random.key(2), result, 5))
    assert genealogy.shape == (5, 30)
    lagged = np.asarray(fixed_lag_means(result, 5))
    assert np.max(np.abs(lagged - means)) < 0.25


def test_conditional_smc_leaves_the_smoothing_law_invariant(short_lg):
    """Particle Gibbs on the path alone with N = 5 (far from any asymptotics): its
    marginals must still be the Kalman smoother's."""
    y, means, variances = short_lg
    fk = lg_bootstrap(y, 0.7)

    @jax.jit
    def chain(key, start):
        def step(path, key):
            path = conditional_smc(fk, key, 5, path).path
            return path, path

        return jax.lax.scan(step, start, jax.random.split(key, 3000))[1]

    paths = np.asarray(chain(jax.random.key(0), jnp.zeros(30)))[500:]
    se = np.sqrt(variances / 2500 * 10)  # ~10 steps of autocorrelation
    assert np.all(np.abs(paths.mean(0) - means) < 4 * se + 0.03)
    assert np.all(np.abs(paths.var(0) / variances - 1) < 0.25)
    ancestral = conditional_smc(fk, jax.random.key(3), 5, jnp.zeros(30), backward=False)
    assert ancestral.path.shape == (30,)


def test_backward_sampling_needs_the_transition_density(short_lg):
    y, _, _ = short_lg
    fk = lg_bootstrap(y, 0.7)._replace(log_transition=None)
    result = particle_filter(fk, jax.random.key(0), 10)
    with pytest.raises(ValueError, match="log_transition"):
        backward_sample(jax.random.key(1), fk, result)
    with pytest.raises(ValueError, match="backward=False"):
        conditional_smc(fk, jax.random.key(1), 10, jnp.zeros(30))
    with pytest.raises(ValueError, match="resampling"):
        particle_filter(fk, jax.random.key(0), 10, resampling="sorted")
