r"""Continuous–discrete Gaussian filters and smoothers: Kalman, extended, unscented.

State-space model: a latent SDE $dX_t = f(t, X_t)\,dt + g(t, X_t)\,dW_t$ observed at
times $t_0 < \dots < t_{T-1}$ through $y_k = h(X_{t_k}) + \varepsilon_k$,
$\varepsilon_k \sim N(0, R)$, with $X_{t_0} \sim N(m_0, P_0)$. A Gaussian filter
carries $N(m_k, P_k)$; between observations it *predicts* (moves the moments to the
next time) and at each observation it *updates* (conditions on $y_k$), accumulating
the marginal log-likelihood $\log p(y_{0:T-1}) = \sum_k \log N(y_k;\ \hat y_k, S_k)$.

Prediction:

- exact (linear SDEs): $m' = \Phi m + s$, $P' = \Phi P \Phi^\top + Q$ from the
  matrix-exponential discretisation (:func:`sdeppl.solvers.affine_discretisation`);
- extended: the moment equations $\dot m = f(t, m)$,
  $\dot P = J P + P J^\top + g g^\top(t, m)$, $J = \partial_x f(t, m)$, integrated by
  classical Runge–Kutta (RK4) with ``num_substeps`` equal steps per gap;
- unscented (cubature, $2d$ points $m \pm \sqrt d\,\mathrm{chol}(P)_i$, equal weights):
  $\dot m = \bar f$, $\dot P = C_{fx} + C_{fx}^\top + \overline{g g^\top}$ with
  sigma-point averages (Särkkä 2007), also by RK4.

Alongside, a transition matrix $\Phi$ of the (statistically) linearised dynamics
($\dot\Phi = A\Phi$, $A = J$ or $C_{fx} P^{-1}$) is carried for the smoother.

Update (linear $H$, linearised $H = \partial h(m)$, or sigma points): innovation
covariance $S = H P H^\top + R$, gain $K = P H^\top S^{-1}$; the covariance update uses
the Joseph form $(I - KH) P (I - KH)^\top + K R K^\top$ when an $H$ exists (stable and
symmetric positive semi-definite), and $P - K S K^\top$ (symmetrised) otherwise.

Missing values: ``mask`` marks observed components. A missing component gets a zero row
in $H$ and unit variance independent of the rest in $S$, with a zero residual, which
leaves the update untouched; its constant $-\tfrac12\log 2\pi$ is removed from the
likelihood. Any pattern (a whole time point or some coordinates) is allowed.

All functions work on batched states ``(*batch, d)`` and covariances ``(*batch, d, d)``.

References
----------
Särkkä, S. (2007). On unscented Kalman filtering for state estimation of continuous-time
nonlinear systems. *IEEE Trans. Automatic Control* 52(9), 1631–1641.
Särkkä, S. and Svensson, L. (2023). *Bayesian Filtering and Smoothing*, 2nd ed., CUP.
Bucy, R. S. and Joseph, P. D. (1968). *Filtering for Stochastic Processes with
Applications to Guidance* (the Joseph form).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve

from ._terms import Diffusion
from .local_linear import batched_jacobian, drift_jacobian

_LOG_2PI = math.log(2.0 * math.pi)


def _t(a):
    return jnp.swapaxes(a, -1, -2)


def _mv(a, x):
    return jnp.einsum("...ij,...j->...i", a, x)


def _sym(p):
    return 0.5 * (p + _t(p))


class FilterResult(NamedTuple):
    """Output of :func:`gaussian_filter`; time is the leading axis.

    ``log_likelihood`` ``(*batch,)``; ``log_likelihood_terms`` ``(T, *batch)``;
    ``filtered_mean`` ``(T, *batch, d)``, ``filtered_cov`` ``(T, *batch, d, d)``;
    ``predicted_mean``/``predicted_cov`` the moments before each update (index 0: the
    prior); ``transition`` ``(T - 1, *batch, d, d)`` the linearised transition matrices.
    """

    log_likelihood: jax.Array
    log_likelihood_terms: jax.Array
    filtered_mean: jax.Array
    filtered_cov: jax.Array
    predicted_mean: jax.Array
    predicted_cov: jax.Array
    transition: jax.Array


# --------------------------------------------------------------------------- predict
def linear_predict(phi, shift, q):
    """Exact prediction step of a linear SDE: returns ``predict(t0, t1, m, P, k)``.

    ``phi``, ``shift``, ``q`` have a leading axis over the ``T - 1`` gaps.
    """

    def predict(t0, t1, mean, cov, k):
        p = phi[k]
        return _mv(p, mean) + shift[k], _sym(p @ cov @ _t(p) + q[k]), p

    return predict


def _rk4(rhs, state, t0, t1, num_substeps):
    h = (t1 - t0) / num_substeps

    def step(state, i):
        t = t0 + i * h
        k1 = rhs(t, state)
        k2 = rhs(
            t + h / 2, jax.tree_util.tree_map(lambda s, k: s + h / 2 * k, state, k1)
        )
        k3 = rhs(
            t + h / 2, jax.tree_util.tree_map(lambda s, k: s + h / 2 * k, state, k2)
        )
        k4 = rhs(t + h, jax.tree_util.tree_map(lambda s, k: s + h * k, state, k3))
        new = jax.tree_util.tree_map(
            lambda s, a, b, c, d: s + h / 6 * (a + 2 * b + 2 * c + d),
            state,
            k1,
            k2,
            k3,
            k4,
        )
        return new, None

    state, _ = jax.lax.scan(step, state, jnp.arange(num_substeps))
    return state


def _diffusion_cov(diffusion: Diffusion, t, x):
    g = diffusion(t, x)
    if diffusion.noise == "diagonal":
        g = jnp.broadcast_to(g, x.shape)
    return diffusion.covariance(g)


def extended_predict(drift, diffusion: Diffusion, num_substeps: int):
    """Extended (linearised) moment equations integrated by RK4; see the module
    docstring."""

    def rhs(t, state):
        m, p, phi = state
        jac = drift_jacobian(drift, t, m)
        f = jnp.broadcast_to(drift(t, m), m.shape)
        dp = jac @ p + p @ _t(jac) + _diffusion_cov(diffusion, t, m)
        return f, dp, jac @ phi

    def predict(t0, t1, mean, cov, k):
        eye = jnp.broadcast_to(jnp.eye(mean.shape[-1], dtype=mean.dtype), cov.shape)
        m, p, phi = _rk4(rhs, (mean, cov, eye), t0, t1, num_substeps)
        return m, _sym(p), phi

    return predict


def cholesky(a):
    """Lower Cholesky factor of ``(*batch, d, d)`` symmetric positive definite
    matrices; for ``d <= 4`` written out entry by entry (no LAPACK call, so a filter
    loop that takes one per step still compiles into one function), NaN where the
    matrix is not positive definite, as LAPACK's."""
    d = a.shape[-1]
    if d > 4:
        return jnp.linalg.cholesky(a)
    low = [[None] * d for _ in range(d)]
    for j in range(d):
        low[j][j] = jnp.sqrt(a[..., j, j] - sum(low[j][k] ** 2 for k in range(j)))
        for i in range(j + 1, d):
            partial = sum(low[i][k] * low[j][k] for k in range(j))
            low[i][j] = (a[..., i, j] - partial) / low[j][j]
    zero = jnp.zeros_like(a[..., 0, 0])
    rows = [
        jnp.stack([low[i][j] if j <= i else zero for j in range(d)], -1)
        for i in range(d)
    ]
    return jnp.stack(rows, -2)


def sigma_points(mean, cov):
    r"""Cubature points $m \pm \sqrt d\,L e_i$, shape ``(2d, *batch, d)``, equal
    weights."""
    d = mean.shape[-1]
    chol = cholesky(_sym(cov) + 1e-12 * jnp.eye(d, dtype=cov.dtype))
    cols = jnp.moveaxis(chol, -1, 0) * math.sqrt(d)  # (d, *batch, d)
    return jnp.concatenate([mean + cols, mean - cols], axis=0)


def unscented_predict(drift, diffusion: Diffusion, num_substeps: int):
    """Sigma-point moment equations integrated by RK4; see the module docstring."""

    def rhs(t, state):
        m, p, phi = state
        pts = sigma_points(m, p)
        fs = jax.vmap(lambda x: jnp.broadcast_to(drift(t, x), x.shape))(pts)
        f_mean = fs.mean(axis=0)
        c_fx = jnp.einsum("n...i,n...j->...ij", fs - f_mean, pts - m) / pts.shape[0]
        noise = jax.vmap(lambda x: _diffusion_cov(diffusion, t, x))(pts).mean(axis=0)
        p_inv, _ = spd_inverse(_sym(p) + 1e-12 * jnp.eye(m.shape[-1], dtype=m.dtype))
        return f_mean, c_fx + _t(c_fx) + noise, c_fx @ p_inv @ phi

    def predict(t0, t1, mean, cov, k):
        eye = jnp.broadcast_to(jnp.eye(mean.shape[-1], dtype=mean.dtype), cov.shape)
        m, p, phi = _rk4(rhs, (mean, cov, eye), t0, t1, num_substeps)
        return m, _sym(p), phi

    return predict


# --------------------------------------------------------------------------- observe
def linear_observe(h_matrix):
    """``observe(m, P) -> (y_hat, H P H^T, P H^T, H)`` for a linear observation
    ``H``."""

    def observe(mean, cov):
        return (
            _mv(h_matrix, mean),
            h_matrix @ cov @ _t(h_matrix),
            cov @ _t(h_matrix),
            h_matrix,
        )

    return observe


def extended_observe(h: Callable):
    """Linearised observation of ``h(x) -> (*batch, k)`` at the predicted mean."""

    def observe(mean, cov):
        y_hat = h(mean)
        h_matrix = batched_jacobian(h, mean)
        return y_hat, h_matrix @ cov @ _t(h_matrix), cov @ _t(h_matrix), h_matrix

    return observe


def unscented_observe(h: Callable):
    """Sigma-point observation of ``h(x) -> (*batch, k)``."""

    def observe(mean, cov):
        pts = sigma_points(mean, cov)
        ys = jax.vmap(h)(pts)
        y_hat = ys.mean(axis=0)
        s0 = jnp.einsum("n...i,n...j->...ij", ys - y_hat, ys - y_hat) / pts.shape[0]
        cross = jnp.einsum("n...i,n...j->...ij", pts - mean, ys - y_hat) / pts.shape[0]
        return y_hat, s0, cross, None

    return observe


# --------------------------------------------------------------------------- update
def spd_inverse(s):
    r"""$S^{-1}$ and $\tfrac12 \log\det S$ of a symmetric positive definite
    ``(*batch, k, k)`` matrix.

    For $k \le 3$ by closed forms (the adjugate over the determinant): filters of one
    to three observed values then run without LAPACK calls, which cost more than the
    rest of a small filter step (and stop XLA from compiling the loop into one
    function). A matrix that is not positive definite gives a NaN log-determinant
    (every leading minor is checked), which the filters turn into ``-inf``.
    """
    k = s.shape[-1]
    if k == 1:
        return 1.0 / s, 0.5 * jnp.log(s[..., 0, 0])
    if k == 2:
        a, b, c = s[..., 0, 0], s[..., 0, 1], s[..., 1, 1]
        det = a * c - b * b
        inverse = jnp.stack([jnp.stack([c, -b], -1), jnp.stack([-b, a], -1)], -2)
        ok = (a > 0) & (det > 0)
        return inverse / det[..., None, None], jnp.where(
            ok, 0.5 * jnp.log(det), jnp.nan
        )
    if k == 3:
        e = [[s[..., i, j] for j in range(3)] for i in range(3)]
        cof = [
            [
                e[(j + 1) % 3][(i + 1) % 3] * e[(j + 2) % 3][(i + 2) % 3]
                - e[(j + 1) % 3][(i + 2) % 3] * e[(j + 2) % 3][(i + 1) % 3]
                for j in range(3)
            ]
            for i in range(3)
        ]  # adjugate (transposed cofactors)
        det = e[0][0] * cof[0][0] + e[0][1] * cof[1][0] + e[0][2] * cof[2][0]
        minor2 = e[0][0] * e[1][1] - e[0][1] * e[1][0]
        ok = (e[0][0] > 0) & (minor2 > 0) & (det > 0)
        inverse = jnp.stack([jnp.stack(row, -1) for row in cof], -2)
        return inverse / det[..., None, None], jnp.where(
            ok, 0.5 * jnp.log(det), jnp.nan
        )
    chol = jnp.linalg.cholesky(s)
    inverse = cho_solve(
        (chol, True), jnp.broadcast_to(jnp.eye(k, dtype=s.dtype), s.shape)
    )
    return inverse, jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)


def gaussian_update(mean, cov, y, mask, observe, obs_cov):
    """Condition ``N(mean, cov)`` on ``y`` (``mask``: observed components).

    Returns ``(mean, cov, log_likelihood_term)``; shapes ``(*batch, d)``,
    ``(*batch, d, d)``, ``(*batch,)``.
    """
    y_hat, s0, cross, h_matrix = observe(mean, cov)
    maskf = mask.astype(mean.dtype)
    outer = maskf[..., :, None] * maskf[..., None, :]
    k = y.shape[-1]
    eye_k = jnp.eye(k, dtype=mean.dtype)
    r_eff = obs_cov * outer + eye_k * (1.0 - maskf)[..., None, :]
    s = _sym(s0 * outer + r_eff)
    cross = cross * maskf[..., None, :]
    resid = jnp.where(mask, y - y_hat, 0.0)
    s_inv, log_det = spd_inverse(s)
    gain = cross @ s_inv  # (*batch, d, k)
    num_missing = jnp.sum(1.0 - maskf, axis=-1)
    loglik = (
        -0.5 * jnp.sum(resid * _mv(s_inv, resid), axis=-1)
        - log_det
        - 0.5 * (k - num_missing) * _LOG_2PI
    )
    new_mean = mean + _mv(gain, resid)
    if h_matrix is not None:
        a = jnp.eye(mean.shape[-1], dtype=mean.dtype) - gain @ (
            h_matrix * maskf[..., :, None]
        )
        new_cov = a @ cov @ _t(a) + gain @ r_eff @ _t(gain)
    else:
        new_cov = cov - gain @ s @ _t(gain)
    return new_mean, _sym(new_cov), jnp.where(jnp.isfinite(log_det), loglik, -jnp.inf)


# --------------------------------------------------------------------------- filter
def gaussian_filter(ts, ys, mask, m0, p0, predict, observe, obs_cov) -> FilterResult:
    """Run a Gaussian filter over observations at ``ts``.

    Shapes
    ------
    ts: ``(T,)``; ys, mask: ``(T, *batch, k)`` (NaN-free ``ys``; ``mask`` True where
    observed); m0: ``(*batch, d)``; p0: ``(*batch, d, d)``; obs_cov ``(*batch, k, k)``.
    ``predict(t0, t1, m, P, k) -> (m, P, Phi)`` and ``observe(m, P)`` as built by the
    ``*_predict`` / ``*_observe`` functions of this module.
    """
    m, p, ll0 = gaussian_update(m0, p0, ys[0], mask[0], observe, obs_cov)

    def step(carry, args):
        m, p = carry
        k, t0, t1, y, msk = args
        m_pred, p_pred, phi = predict(t0, t1, m, p, k)
        m_new, p_new, ll = gaussian_update(m_pred, p_pred, y, msk, observe, obs_cov)
        return (m_new, p_new), (m_new, p_new, m_pred, p_pred, phi, ll)

    num = ts.shape[0] - 1
    # rematerialising the small step in the backward pass is cheaper than storing its
    # intermediates for every time point (about 2x faster value-and-gradient)
    _, (ms, ps, mps, pps, phis, lls) = jax.lax.scan(
        jax.checkpoint(step),
        (m, p),
        (jnp.arange(num), ts[:-1], ts[1:], ys[1:], mask[1:]),
    )
    cat = lambda first, rest: jnp.concatenate([first[None], rest], axis=0)  # noqa: E731
    terms = cat(ll0, lls)
    return FilterResult(
        terms.sum(axis=0),
        terms,
        cat(m, ms),
        cat(p, ps),
        cat(m0, mps),
        cat(p0, pps),
        phis,
    )


# ------------------------------------------------------ linear log-likelihood (adjoint)
class _Update(NamedTuple):
    """Intermediates of one linear update (see :func:`_linear_update_parts`)."""

    h_e: jax.Array  # (k, d) H with missing rows zeroed
    r_e: jax.Array  # (k, k) masked R, unit variance for missing components
    resid: jax.Array  # (k,) v
    cross: jax.Array  # (d, k) U = P^- H_e^T
    s_inv: jax.Array  # (k, k)
    alpha: jax.Array  # (k,) S^{-1} v
    gain: jax.Array  # (d, k) U S^{-1}
    log_det: jax.Array  # () half the log-determinant of S


def _linear_update_parts(m_pred, p_pred, y, w, h, r) -> _Update:
    """One linear-Gaussian update's intermediates; ``w`` ``(k,)`` is 1.0 where
    observed, 0.0 where missing (``y`` holds 0 there)."""
    h_e = w[:, None] * h
    r_e = (w[:, None] * w[None, :]) * r + jnp.diag(1.0 - w)
    resid = w * (y - h @ m_pred)
    cross = p_pred @ h_e.T
    s = h_e @ cross + r_e
    s_inv, log_det = spd_inverse(s)  # closed forms up to k = 3: no LAPACK in the loop
    alpha = s_inv @ resid
    return _Update(h_e, r_e, resid, cross, s_inv, alpha, cross @ s_inv, log_det)


def _linear_update(m_pred, p_pred, y, w, h, r):
    """Filtered ``(m, P)`` (Joseph form) and the log-likelihood term."""
    u = _linear_update_parts(m_pred, p_pred, y, w, h, r)
    mean = m_pred + u.cross @ u.alpha
    a = jnp.eye(m_pred.shape[-1], dtype=m_pred.dtype) - u.gain @ u.h_e
    cov = _sym(a @ p_pred @ a.T + u.gain @ u.r_e @ u.gain.T)
    loglik = -0.5 * u.resid @ u.alpha - u.log_det - 0.5 * jnp.sum(w) * _LOG_2PI
    return mean, cov, jnp.where(jnp.isfinite(u.log_det), loglik, -jnp.inf)


def _linear_update_adjoint(m_pred, p_pred, y, w, h, r, m_bar, p_bar, g):
    r"""Reverse-mode step of :func:`_linear_update`: from the adjoints $\bar m$,
    $\bar P$ of the filtered moments and $g$ of the log-likelihood term to those of
    $m^-$, $P^-$, $H$, $R$, $y$. With $U = P^- H^\top$, $\alpha = S^{-1}v$,
    $K = US^{-1}$, $\beta = S^{-1}U^\top\bar m$:

    $\bar v = \beta - g\alpha$,
    $\bar S = \mathrm{sym}(-\beta\alpha^\top + K^\top\bar P K
    + \tfrac g2(\alpha\alpha^\top - S^{-1}))$,
    $\bar U = \bar m\alpha^\top - 2\bar P K + H^\top\bar S$,
    $\bar H = \bar S U^\top + \bar U^\top P^- - \bar v m^{-\top}$,
    $\bar m^- = \bar m - H^\top\bar v$,
    $\bar P^- = \mathrm{sym}(\bar P + \bar U H)$ (masked $H$ throughout).
    """
    u = _linear_update_parts(m_pred, p_pred, y, w, h, r)
    beta = u.s_inv @ (u.cross.T @ m_bar)
    v_bar = beta - g * u.alpha
    s_bar = _sym(
        -jnp.outer(beta, u.alpha)
        + u.gain.T @ p_bar @ u.gain
        + 0.5 * g * (jnp.outer(u.alpha, u.alpha) - u.s_inv)
    )
    u_bar = jnp.outer(m_bar, u.alpha) - 2.0 * p_bar @ u.gain + u.h_e.T @ s_bar
    h_e_bar = s_bar @ u.cross.T + u_bar.T @ p_pred - jnp.outer(v_bar, m_pred)
    return (
        m_bar - u.h_e.T @ v_bar,
        _sym(p_bar + u_bar @ u.h_e),
        w[:, None] * h_e_bar,
        (w[:, None] * w[None, :]) * s_bar,
        w * v_bar,
    )


def _linear_filter_forward(phi, shift, q, h, r, ys, w, m0, p0):
    """Log-likelihood and the filtered moments ``(T, d)``, ``(T, d, d)``."""
    m, p, ll0 = _linear_update(m0, p0, ys[0], w[0], h, r)

    def step(carry, args):
        m, p, total = carry
        f, s, qk, y, wk = args
        m, p, ll = _linear_update(f @ m + s, f @ p @ f.T + qk, y, wk, h, r)
        return (m, p, total + ll), (m, p)

    (_, _, total), (ms, ps) = jax.lax.scan(
        step, (m, p, ll0), (phi, shift, q, ys[1:], w[1:])
    )
    return total, jnp.concatenate([m[None], ms]), jnp.concatenate([p[None], ps])


@jax.custom_vjp
def _linear_log_likelihood(phi, shift, q, h, r, ys, w, m0, p0):
    return _linear_filter_forward(phi, shift, q, h, r, ys, w, m0, p0)[0]


def _linear_ll_fwd(phi, shift, q, h, r, ys, w, m0, p0):
    total, ms, ps = _linear_filter_forward(phi, shift, q, h, r, ys, w, m0, p0)
    return total, (phi, shift, q, h, r, ys, w, m0, p0, ms, ps)


def _linear_ll_bwd(res, g):
    phi, shift, q, h, r, ys, w, m0, p0, ms, ps = res

    def step(carry, args):
        m_bar, p_bar, h_bar, r_bar = carry
        f, s, qk, y, wk, m_prev, p_prev = args
        m_pred = f @ m_prev + s
        p_pred = f @ p_prev @ f.T + qk
        mp_bar, pp_bar, hk_bar, rk_bar, y_bar = _linear_update_adjoint(
            m_pred, p_pred, y, wk, h, r, m_bar, p_bar, g
        )
        f_bar = jnp.outer(mp_bar, m_prev) + 2.0 * pp_bar @ f @ p_prev
        carry = (f.T @ mp_bar, f.T @ pp_bar @ f, h_bar + hk_bar, r_bar + rk_bar)
        return carry, (f_bar, mp_bar, pp_bar, y_bar)

    zeros = jnp.zeros_like
    init = (zeros(m0), zeros(p0), zeros(h), zeros(r))
    (m_bar, p_bar, h_bar, r_bar), (f_bar, s_bar, q_bar, y_bars) = jax.lax.scan(
        step, init, (phi, shift, q, ys[1:], w[1:], ms[:-1], ps[:-1]), reverse=True
    )
    m0_bar, p0_bar, h0_bar, r0_bar, y0_bar = _linear_update_adjoint(
        m0, p0, ys[0], w[0], h, r, m_bar, p_bar, g
    )
    return (
        f_bar,
        s_bar,
        q_bar,
        h_bar + h0_bar,
        _sym(r_bar + r0_bar),
        jnp.concatenate([y0_bar[None], y_bars]),
        zeros(w),
        m0_bar,
        p0_bar,
    )


_linear_log_likelihood.defvjp(_linear_ll_fwd, _linear_ll_bwd)


def linear_log_likelihood(phi, shift, q, h, r, ys, mask, m0, p0):
    r"""Marginal log-likelihood of a linear-Gaussian state-space model, with a
    hand-derived reverse-mode adjoint.

    Model: $x_0 \sim N(m_0, P_0)$, $x_k = \Phi_k x_{k-1} + s_k + N(0, Q_k)$,
    $y_k = H x_k + N(0, R)$; the value equals :func:`gaussian_filter` with
    :func:`linear_predict` and :func:`linear_observe` (Joseph-form updates). The
    gradient runs one backward recursion over the stored filtered moments (the
    adjoint of each predict and update step, :func:`_linear_update_adjoint`) instead
    of differentiating the scan: several times faster than automatic reverse mode.
    ``Q``, ``R`` and ``P_0`` enter through their symmetric parts. Forward-mode
    differentiation (``jax.jvp``, ``jax.jacfwd``) is not defined; nest reverse mode
    (``jax.jacrev(jax.grad(f))``) for second derivatives.

    Shapes (no batch dims; ``vmap`` for batches): phi ``(T-1, d, d)``, shift
    ``(T-1, d)``, q ``(T-1, d, d)``, h ``(k, d)``, r ``(k, k)``, ys and mask
    ``(T, k)`` (``ys`` NaN-free, ``mask`` True where observed), m0 ``(d,)``, p0
    ``(d, d)``. Returns a scalar; ``-inf`` where an innovation covariance is not
    positive definite.
    """
    return _linear_log_likelihood(
        phi, shift, _sym(q), h, _sym(r), ys, mask.astype(ys.dtype), m0, _sym(p0)
    )


def rts_smoother(result: FilterResult):
    r"""Rauch–Tung–Striebel smoother:
    ``(means (T, *batch, d), covs (T, *batch, d, d))``.

    Uses the filter's transition matrices $\Phi_k$ (exact for linear SDEs, linearised
    otherwise): $G_k = P_k \Phi_k^\top (P^-_{k+1})^{-1}$.
    """

    def step(carry, args):
        ms_next, ps_next = carry
        m, p, m_pred, p_pred, phi = args
        gain = _t(jnp.linalg.solve(p_pred, phi @ p))
        ms = m + _mv(gain, ms_next - m_pred)
        ps = _sym(p + gain @ (ps_next - p_pred) @ _t(gain))
        return (ms, ps), (ms, ps)

    last = (result.filtered_mean[-1], result.filtered_cov[-1])
    args = (
        result.filtered_mean[:-1],
        result.filtered_cov[:-1],
        result.predicted_mean[1:],
        result.predicted_cov[1:],
        result.transition,
    )
    _, (ms, ps) = jax.lax.scan(step, last, args, reverse=True)
    return jnp.concatenate([ms, last[0][None]]), jnp.concatenate([ps, last[1][None]])


def backward_sample(key, result: FilterResult):
    """One joint draw of the latent states given all observations (forward filtering,
    backward sampling), shape ``(T, *batch, d)``."""
    num = result.filtered_mean.shape[0]
    keys = jax.random.split(key, num)

    def draw(key, mean, cov):
        chol = jnp.linalg.cholesky(
            _sym(cov) + 1e-12 * jnp.eye(mean.shape[-1], dtype=mean.dtype)
        )
        return mean + _mv(chol, jax.random.normal(key, mean.shape, mean.dtype))

    x_last = draw(keys[-1], result.filtered_mean[-1], result.filtered_cov[-1])

    def step(x_next, args):
        key, m, p, m_pred, p_pred, phi = args
        gain = _t(jnp.linalg.solve(p_pred, phi @ p))
        mean = m + _mv(gain, x_next - m_pred)
        cov = p - gain @ p_pred @ _t(gain)
        x = draw(key, mean, cov)
        return x, x

    args = (
        keys[:-1],
        result.filtered_mean[:-1],
        result.filtered_cov[:-1],
        result.predicted_mean[1:],
        result.predicted_cov[1:],
        result.transition,
    )
    _, xs = jax.lax.scan(step, x_last, args, reverse=True)
    return jnp.concatenate([xs, x_last[None]])
