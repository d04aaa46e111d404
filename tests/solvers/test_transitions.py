"""Layer-1 transition densities against SciPy and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from scipy import stats

from sdeppl.solvers import (
    Diffusion,
    affine_discretisation,
    euler_moments,
    gaussian_log_prob,
    ou_moments,
)


def test_euler_general_noise_is_full_covariance_gaussian():
    G = jnp.array([[0.3, 0.1], [0.0, 0.2]])
    diffusion = Diffusion(lambda t, x: G, "general")
    x0, x1, dt = jnp.array([0.1, -0.2]), jnp.array([0.15, -0.1]), 0.3
    mean, scale = euler_moments(lambda t, x: -x, diffusion, 0.0, dt, x0)
    lp = gaussian_log_prob(x1, mean, scale, "factor")
    ref = stats.multivariate_normal(
        np.asarray(x0 - x0 * dt), np.asarray(G @ G.T * dt)
    ).logpdf(np.asarray(x1))
    np.testing.assert_allclose(lp, ref, rtol=1e-12)


def test_ou_closed_form_limits():
    mean, sd = ou_moments(jnp.array(0.0), 1.0, 0.5, 0.2, jnp.array([2.0]))
    np.testing.assert_allclose(mean, [2.0])
    np.testing.assert_allclose(sd, [0.5 * np.sqrt(0.2)])
    _, sd_small = ou_moments(jnp.array(1e-9), 1.0, 0.5, 0.2, jnp.array([2.0]))
    np.testing.assert_allclose(sd_small, [0.5 * np.sqrt(0.2)], rtol=1e-8)


def test_affine_discretisation_matches_scipy_quadrature():
    A = np.array([[0.0, 1.0], [-2.0, -0.3]])
    L = np.array([[0.1, 0.0], [0.4, 0.2]])
    b = np.array([0.2, -0.1])
    dt = 0.37
    tr = affine_discretisation(jnp.asarray(A), jnp.asarray(b), jnp.asarray(L @ L.T), dt)
    phi = scipy.linalg.expm(A * dt)
    s = np.linspace(0.0, dt, 2001)
    shift = np.trapezoid(
        np.stack([scipy.linalg.expm(A * (dt - u)) @ b for u in s]), s, axis=0
    )
    q = np.trapezoid(
        np.stack(
            [scipy.linalg.expm(A * u) @ L @ L.T @ scipy.linalg.expm(A * u).T for u in s]
        ),
        s,
        axis=0,
    )
    np.testing.assert_allclose(tr.phi, phi, rtol=1e-12)
    np.testing.assert_allclose(tr.shift, shift, rtol=1e-6)
    np.testing.assert_allclose(tr.cov, q, rtol=1e-6, atol=1e-12)


def test_linear_exact_with_singular_drift_matrix():
    """Brownian motion with drift (A = 0): mean x0 + b h, covariance L L^T h."""
    tr = affine_discretisation(
        jnp.zeros((2, 2)), jnp.array([1.0, -1.0]), jnp.eye(2) * 0.25, 2.0
    )
    np.testing.assert_allclose(tr.shift, [2.0, -2.0], atol=1e-12)
    np.testing.assert_allclose(tr.cov, 0.5 * np.eye(2), atol=1e-12)


def test_expm_matches_scipy_over_a_range_of_norms():
    """Batched Taylor + squaring exponential against scipy: tiny, moderate, large and
    stiff generators, non-normal ones included, in one batch."""
    from sdeppl.solvers.linear import expm

    rng = np.random.default_rng(3)
    mats = [
        rng.standard_normal((5, 5)) * scale for scale in (1e-8, 0.1, 1.0, 7.0, 60.0)
    ]
    mats.append(np.array([[-300.0, 500.0, 0.0], [0.0, -0.01, 1.0], [0.0, 0.0, -3.0]]))
    mats.append(np.zeros((3, 3)))
    for m in mats:
        np.testing.assert_allclose(
            expm(jnp.asarray(m)), scipy.linalg.expm(m), rtol=1e-11, atol=1e-13
        )
    batch = np.stack([rng.standard_normal((4, 4)) * s for s in (0.01, 2.0, 30.0)])
    ref = np.stack([scipy.linalg.expm(m) for m in batch])
    np.testing.assert_allclose(expm(jnp.asarray(batch)), ref, rtol=1e-11, atol=1e-13)
    assert np.isnan(expm(jnp.eye(2) * 5e3)).all()  # beyond 2^10: NaN, not garbage


def test_discretisation_does_not_depend_on_the_scale_of_the_noise():
    """A large diffusion rate or offset must not cost accuracy or give NaN (the Van
    Loan generator is balanced before the exponential)."""
    A = np.array([[-0.5]])
    for var in (1e-6, 1.0, 1e4, 1e8):
        tr = affine_discretisation(
            jnp.asarray(A), jnp.array([var]), jnp.array([[var]]), 1.0
        )
        np.testing.assert_allclose(tr.cov[0, 0], var * (1 - np.exp(-1.0)), rtol=1e-12)
        np.testing.assert_allclose(
            tr.shift[0], var * 2 * (1 - np.exp(-0.5)), rtol=1e-12
        )


def test_expm_gradient_matches_jax_scipy():
    from jax.scipy.linalg import expm as jexpm

    from sdeppl.solvers.linear import expm

    m = jnp.asarray(np.random.default_rng(4).standard_normal((4, 4)) * 3.0)
    w = jnp.asarray(np.random.default_rng(5).standard_normal((4, 4)))
    ours = jax.grad(lambda a: jnp.sum(w * expm(a)))(m)
    ref = jax.grad(lambda a: jnp.sum(w * jexpm(a)))(m)
    np.testing.assert_allclose(ours, ref, rtol=1e-9)


def test_affine_discretisation_vectorised_over_gaps():
    A = np.array([[0.0, 1.0], [-2.0, -0.3]])
    LLt = np.diag([0.0, 0.25])
    b = np.array([0.3, 0.0])
    dts = np.array([0.01, 0.3, 2.0, 25.0])
    tr = affine_discretisation(
        jnp.asarray(A), jnp.asarray(b), jnp.asarray(LLt), jnp.asarray(dts)
    )
    for i, dt in enumerate(dts):
        one = affine_discretisation(
            jnp.asarray(A), jnp.asarray(b), jnp.asarray(LLt), dt
        )
        np.testing.assert_allclose(
            tr.phi[i], scipy.linalg.expm(A * dt), rtol=1e-10, atol=1e-14
        )
        np.testing.assert_allclose(tr.cov[i], one.cov, rtol=1e-12, atol=1e-15)


def test_entrywise_and_batched_exponentials_agree(monkeypatch):
    """Small Van Loan generators are exponentiated entry by entry, larger ones as
    batched matrices: same transitions and gradients, with and without offsets, for
    gaps that need no squaring and gaps that need several."""
    import sdeppl.solvers.linear as linear

    dts = jnp.array([0.01, 0.3, 2.0, 25.0])
    cases = {
        "oscillator, no offset": (
            jnp.array([[0.0, 1.0], [-2.0, -0.3]]),
            None,
            jnp.diag(jnp.array([0.0, 0.25])),
            None,
        ),
        "oscillator with offset": (
            jnp.array([[0.0, 1.0], [-2.0, -0.3]]),
            jnp.array([0.3, -0.1]),
            jnp.array([[0.04, 0.01], [0.01, 0.25]]),
            None,
        ),
        "scalar with offset and slope": (
            jnp.array([[-0.7]]),
            jnp.array([0.2]),
            jnp.array([[0.09]]),
            jnp.array([-0.05]),
        ),
    }

    def loss(a, b, cov, c):
        tr = affine_discretisation(a, b, cov, dts, c=c)
        return sum(jnp.sum(jnp.sin(x)) for x in tr), tr

    for name, (a, b, cov, c) in cases.items():
        assert 2 * a.shape[0] + (b is not None) + (c is not None) <= (
            linear._UNROLLED_MAX_SIZE
        ), name
        grad = jax.grad(loss, argnums=(0, 2), has_aux=True)
        (ga, gq), tr = grad(a, b, cov, c)
        with monkeypatch.context() as m:
            m.setattr(linear, "_UNROLLED_MAX_SIZE", 0)
            (ga_ref, gq_ref), ref = grad(a, b, cov, c)
        for x, y in zip(tr, ref, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-11, atol=1e-14, err_msg=name)
        np.testing.assert_allclose(ga, ga_ref, rtol=1e-9, err_msg=name)
        np.testing.assert_allclose(gq, gq_ref, rtol=1e-9, atol=1e-14, err_msg=name)
