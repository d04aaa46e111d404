"""The linear Kalman log-likelihood's hand-written adjoint against automatic
differentiation of the generic filter."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdeppl.solvers import kalman


def _problem(num, d, k, seed):
    rng = np.random.default_rng(seed)
    phi = np.eye(d) * 0.9 + 0.1 * rng.standard_normal((num - 1, d, d))
    a = rng.standard_normal((num - 1, d, d))
    q = 0.1 * a @ np.swapaxes(a, 1, 2) + 0.01 * np.eye(d)
    b = rng.standard_normal((k, k))
    c = rng.standard_normal((d, d))
    mask = rng.random((num, k)) > 0.3
    mask[3] = False  # a whole time point missing
    ys = np.where(mask, rng.standard_normal((num, k)), 0.0)
    return tuple(
        jnp.asarray(x)
        for x in (
            phi,
            0.1 * rng.standard_normal((num - 1, d)),
            q,
            rng.standard_normal((k, d)),
            0.2 * b @ b.T + 0.1 * np.eye(k),
            ys,
            mask,
            rng.standard_normal(d),
            c @ c.T + np.eye(d),
        )
    )


def _generic(phi, shift, q, h, r, ys, mask, m0, p0):
    """The same likelihood by the generic filter (automatic differentiation)."""
    sym = lambda x: 0.5 * (x + jnp.swapaxes(x, -1, -2))  # noqa: E731
    result = kalman.gaussian_filter(
        jnp.arange(ys.shape[0], dtype=ys.dtype),
        ys,
        mask,
        m0,
        sym(p0),
        kalman.linear_predict(phi, shift, sym(q)),
        kalman.linear_observe(h),
        sym(r),
    )
    return result.log_likelihood


DIFFERENTIABLE = (0, 1, 2, 3, 4, 5, 7, 8)  # all but the mask


@pytest.mark.parametrize("d,k", [(1, 1), (2, 1), (3, 2), (2, 3)])
def test_adjoint_equals_automatic_differentiation(d, k):
    args = _problem(12, d, k, seed=d + 10 * k)
    value = kalman.linear_log_likelihood(*args)
    np.testing.assert_allclose(value, _generic(*args), rtol=1e-13)
    ours = jax.grad(kalman.linear_log_likelihood, argnums=DIFFERENTIABLE)(*args)
    ref = jax.grad(_generic, argnums=DIFFERENTIABLE)(*args)
    for name, a, b in zip("phi shift q h r ys m0 p0".split(), ours, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=name)


def test_second_derivatives_by_nested_reverse_mode():
    args = _problem(15, 2, 1, seed=7)

    def of_m0(fn):
        return lambda m0: fn(*args[:7], m0, args[8])

    ours = jax.jacrev(jax.grad(of_m0(kalman.linear_log_likelihood)))(args[7])
    ref = jax.hessian(of_m0(_generic))(args[7])
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)


def test_innovation_covariance_not_positive_definite_gives_minus_inf():
    args = list(_problem(10, 2, 1, seed=3))
    args[4] = -10.0 * jnp.ones((1, 1))  # negative observation variance
    assert kalman.linear_log_likelihood(*args) == -jnp.inf


def test_small_spd_inverse_in_closed_form():
    """k <= 3 by adjugates (no LAPACK in the filter loop), k = 4 by Cholesky: equal to
    NumPy's inverse and log-determinant; a matrix that is not positive definite gives
    a NaN log-determinant, which the filters turn into -inf."""
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    for k in (1, 2, 3, 4):
        root = rng.normal(size=(5, k, k))
        s = root @ np.swapaxes(root, -1, -2) + 0.3 * np.eye(k)
        inverse, half_log_det = kalman.spd_inverse(jnp.asarray(s))
        np.testing.assert_allclose(inverse, np.linalg.inv(s), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(
            2 * half_log_det, np.linalg.slogdet(s)[1], rtol=1e-12
        )
    for bad in (np.diag([1.0, -1.0]), np.diag([1.0, 1.0, -0.5]), -np.eye(3)):
        assert np.isnan(kalman.spd_inverse(jnp.asarray(bad))[1])


def test_small_cholesky_written_out():
    """d <= 4 entry by entry (no LAPACK in the unscented filter's loop), d = 5 by
    LAPACK: equal to NumPy; NaN where the matrix is not positive definite."""
    import jax.numpy as jnp

    rng = np.random.default_rng(1)
    for d in (1, 2, 3, 4, 5):
        root = rng.normal(size=(3, d, d))
        a = root @ np.swapaxes(root, -1, -2) + 0.2 * np.eye(d)
        np.testing.assert_allclose(
            kalman.cholesky(jnp.asarray(a)), np.linalg.cholesky(a), rtol=1e-12
        )
    assert np.isnan(kalman.cholesky(jnp.asarray(np.diag([1.0, -1.0])))).any()
