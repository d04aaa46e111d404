"""The table every process primitive must pass (STYLE.md §8).

A :class:`Case` builds a distribution from a dict of float parameters. ``closed_form``
returns ``(mean, var)`` of the value's final time point (first coordinate), computed
independently of sdeppl (NumPy/SciPy), for the goodness-of-fit check;
``log_prob_reference`` (optional) computes the log-density of a value independently.
``missing`` lists time indices set to NaN (missing) wherever a density is evaluated.
``caps`` are capability flags that vary across rows; generic tests skip by flag, never by
class name:

- ``reparam``: a path that :func:`sdeppl.reparam_paths` exposes by its innovations;
- ``grad``: differentiable in every parameter (``jax.grad``, reverse mode);
- ``jit``, ``vmap``: traced and vectorised over parameter values;
- ``series``: implements the time-series protocol (:class:`sdeppl.TimeSeries`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import scipy.linalg
from scipy import stats

import sdeppl as sp

TS = np.array([0.0, 0.1, 0.25, 0.3, 0.5, 0.8, 1.0, 1.4])  # irregular on purpose


class Case(NamedTuple):
    id: str
    make: Callable[[dict], object]
    params: dict
    invalid: dict | None  # parameters outside the support (validate_args must raise)
    closed_form: Callable[[dict], tuple] | None
    log_prob_reference: Callable[[dict, np.ndarray], float] | None
    tol: float
    caps: frozenset
    missing: tuple = ()  # time indices observed as NaN


def _ou_exact(p):
    return sp.Path(
        sp.OU(p["theta"], p["mu"], p["sigma"]),
        TS,
        x0=dist.Normal(p["m0"], 0.5),
        method="exact",
    )


def _ou_final_moments(p):
    mean, var = p["m0"], 0.25
    for dt in np.diff(TS):
        a = np.exp(-p["theta"] * dt)
        mean = p["mu"] + (mean - p["mu"]) * a
        var = a * a * var + p["sigma"] ** 2 * (1 - a * a) / (2 * p["theta"])
    return mean, var


def _ou_exact_log_prob(p, x):
    lp = stats.norm.logpdf(x[0], p["m0"], 0.5)
    for k, dt in enumerate(np.diff(TS)):
        a = np.exp(-p["theta"] * dt)
        sd = np.sqrt(p["sigma"] ** 2 * (1 - a * a) / (2 * p["theta"]))
        lp += stats.norm.logpdf(x[k + 1], p["mu"] + (x[k] - p["mu"]) * a, sd)
    return lp


def _sde_euler(p):
    sde = sp.SDE(lambda t, x: p["theta"] * (p["mu"] - x), lambda t, x: p["sigma"])
    return sp.Path(sde, TS, x0=dist.Normal(p["m0"], 0.5), method="euler")


def _euler_final_moments(p):
    mean, var = p["m0"], 0.25
    for dt in np.diff(TS):
        a = 1 - p["theta"] * dt
        mean = a * mean + p["theta"] * p["mu"] * dt
        var = a * a * var + p["sigma"] ** 2 * dt
    return mean, var


def _euler_log_prob(p, x):
    lp = stats.norm.logpdf(x[0], p["m0"], 0.5)
    for k, dt in enumerate(np.diff(TS)):
        lp += stats.norm.logpdf(
            x[k + 1],
            x[k] + p["theta"] * (p["mu"] - x[k]) * dt,
            p["sigma"] * np.sqrt(dt),
        )
    return lp


def _osc_matrices(p):
    A = np.array([[0.0, 1.0], [-(p["omega"] ** 2), -p["damping"]]])
    L = np.array([[0.0], [p["sigma"]]])
    return A, L


def _osc_exact(p):
    A = jnp.array([[0.0, 1.0], [-(p["omega"] ** 2), -p["damping"]]])
    L = jnp.array([[0.0], [p["sigma"]]])
    x0 = dist.Normal(jnp.array([1.0, 0.0]), jnp.sqrt(0.2)).to_event(1)  # cov 0.2 I
    return sp.Path(sp.LinearSDE(A, L), TS, x0=x0, method="exact")


def _osc_final_moments(p):
    A, L = _osc_matrices(p)
    mean, cov = np.array([1.0, 0.0]), 0.2 * np.eye(2)
    for dt in np.diff(TS):
        phi = scipy.linalg.expm(A * dt)
        # Q by numerical quadrature of e^{As} L L^T e^{A^T s} (independent of Van Loan)
        s = np.linspace(0.0, dt, 401)
        vals = np.stack(
            [scipy.linalg.expm(A * u) @ L @ L.T @ scipy.linalg.expm(A * u).T for u in s]
        )
        q = np.trapezoid(vals, s, axis=0)
        mean, cov = phi @ mean, phi @ cov @ phi.T + q
    return mean[0], cov[0, 0]


def _double_well_ll(p):
    sde = sp.SDE(
        lambda t, x: p["a"] * (x - x**3), lambda t, x: p["sigma"] * jnp.ones_like(x)
    )
    return sp.Path(
        sde, TS, x0=dist.Normal(jnp.zeros(2), 0.3).to_event(1), method="local_linear"
    )


def _ou_batched(p):
    theta = p["theta"] * jnp.array([0.5, 1.0, 2.0])
    sde = sp.SDE(lambda t, x: theta * (p["mu"] - x), lambda t, x: p["sigma"])
    return sp.Path(sde, TS, x0=0.0, method="euler")


def _general_noise_euler(p):
    G = jnp.array([[1.0, 0.0, 0.5], [0.3, 1.0, 0.0]]) * p["sigma"]
    sde = sp.SDE(lambda t, x: -p["theta"] * x, lambda t, x: G, noise="general")
    return sp.Path(sde, TS, x0=jnp.array([0.5, -0.5]), method="euler")


def _kalman_reference(phis, shifts, qs, H, R, m0, P0, ys):
    """Log-likelihood of ``ys (T, k)`` (NaN rows skipped) under a linear-Gaussian
    state-space model, by a textbook Kalman filter in NumPy."""
    m, P, ll = np.array(m0, float), np.array(P0, float), 0.0
    for k, y in enumerate(ys):
        if k > 0:
            m = phis[k - 1] @ m + shifts[k - 1]
            P = phis[k - 1] @ P @ phis[k - 1].T + qs[k - 1]
        if np.all(np.isnan(y)):
            continue
        S = H @ P @ H.T + R
        ll += stats.multivariate_normal.logpdf(y, H @ m, S)
        gain = P @ H.T @ np.linalg.inv(S)
        m = m + gain @ (y - H @ m)
        P = P - gain @ S @ gain.T
    return ll


OBS_SD = 0.3


def _ou_kalman(method):
    def make(p):
        if method == "kalman":
            sde = sp.OU(p["theta"], p["mu"], p["sigma"])
        else:  # the same OU written as a general SDE: the filters' own route
            sde = sp.SDE(
                lambda t, x: p["theta"] * (p["mu"] - x), lambda t, x: p["sigma"]
            )
        obs = (
            sp.LinearGaussian(1.0, OBS_SD**2)
            if method == "kalman"
            else sp.GaussianObservation(lambda x: x, OBS_SD**2)
        )
        return sp.StateSpace(
            sde, TS, x0=dist.Normal(p["m0"], 0.5), obs=obs, method=method
        )

    return make


def _ou_counts_particle(p):
    """Poisson counts of an OU log-intensity, likelihood by a particle filter (its
    estimate fixed by the key: jit, vmap and the pytree round trip reproduce it)."""
    return sp.StateSpace(
        sp.OU(p["theta"], p["mu"], p["sigma"]),
        TS,
        x0=dist.Normal(p["m0"], 0.5),
        obs=lambda x: dist.Poisson(jnp.exp(x)),
        method="particle",
        num_particles=64,
        key=jax.random.key(0),
    )


def _ou_obs_final_moments(p):
    mean, var = _ou_final_moments(p)
    return mean, var + OBS_SD**2


def _ou_kalman_log_prob(p, y):
    a = np.exp(-p["theta"] * np.diff(TS))
    q = p["sigma"] ** 2 * (1 - a * a) / (2 * p["theta"])
    return _kalman_reference(
        a[:, None, None],
        (p["mu"] * (1 - a))[:, None],
        q[:, None, None],
        np.eye(1),
        np.eye(1) * OBS_SD**2,
        [p["m0"]],
        [[0.25]],
        np.asarray(y)[:, None],
    )


def _osc_kalman(p):
    A = jnp.array([[0.0, 1.0], [-(p["omega"] ** 2), -p["damping"]]])
    L = jnp.array([[0.0], [p["sigma"]]])
    x0 = dist.MultivariateNormal(jnp.array([1.0, 0.0]), 0.2 * jnp.eye(2))
    H = jnp.array([[1.0, 0.0]])
    return sp.StateSpace(
        sp.LinearSDE(A, L), TS, x0=x0, obs=sp.LinearGaussian(H, OBS_SD**2)
    )


def _osc_kalman_log_prob(p, y):
    A, L = _osc_matrices(p)
    phis, qs = [], []
    for dt in np.diff(TS):
        s = np.linspace(0.0, dt, 401)
        vals = np.stack(
            [scipy.linalg.expm(A * u) @ L @ L.T @ scipy.linalg.expm(A * u).T for u in s]
        )
        phis.append(scipy.linalg.expm(A * dt))
        qs.append(np.trapezoid(vals, s, axis=0))
    return _kalman_reference(
        phis,
        np.zeros((len(phis), 2)),
        qs,
        np.array([[1.0, 0.0]]),
        np.eye(1) * OBS_SD**2,
        [1.0, 0.0],
        0.2 * np.eye(2),
        np.asarray(y),
    )


def _osc_obs_final_moments(p):
    mean, var = _osc_final_moments(p)
    return mean, var + OBS_SD**2


def _double_well_ukf(p):
    sde = sp.SDE(lambda t, x: p["a"] * (x - x**3), lambda t, x: p["sigma"])
    obs = sp.GaussianObservation(lambda x: jnp.stack([x, x**2], -1), OBS_SD**2)
    return sp.StateSpace(sde, TS, x0=dist.Normal(0.0, 0.3), obs=obs, method="ukf")


def _cir_exact(p):
    return sp.Path(
        sp.CIR(p["kappa"], p["theta"], p["sigma"]), TS, x0=2.0, method="exact"
    )


def scipy_cir_log_transition(kappa, theta, sigma, h, x0, x1):
    """The exact CIR transition density by SciPy: 2 c X_h is non-central chi-square
    with 4 kappa theta / sigma^2 degrees of freedom and non-centrality
    2 c x0 exp(-kappa h), c = 2 kappa / (sigma^2 (1 - exp(-kappa h)))."""
    c = 2 * kappa / (sigma**2 * -np.expm1(-kappa * h))
    q = 2 * kappa * theta / sigma**2 - 1
    return np.log(2 * c) + stats.ncx2.logpdf(
        2 * c * x1, 2 * q + 2, 2 * c * x0 * np.exp(-kappa * h)
    )


def _cir_exact_log_prob(p, x):
    return np.sum(
        scipy_cir_log_transition(
            p["kappa"], p["theta"], p["sigma"], np.diff(TS), x[:-1], x[1:]
        )
    )


ALL = frozenset({"reparam", "jit", "vmap", "grad", "series"})
FILTERED = ALL - {"reparam"}  # state-space models: the path is integrated out

CASES = [
    Case(
        "ou-exact",
        _ou_exact,
        {"theta": 0.7, "mu": 1.0, "sigma": 0.4, "m0": 0.2},
        {"theta": -0.7, "mu": 1.0, "sigma": 0.4, "m0": 0.2},
        _ou_final_moments,
        _ou_exact_log_prob,
        1e-10,
        ALL,
    ),
    Case(
        "ou-exact-missing",
        _ou_exact,
        {"theta": 0.7, "mu": 1.0, "sigma": 0.4, "m0": 0.2},
        None,
        None,
        None,
        0.0,
        ALL - {"reparam"},  # an observed path with gaps is not a latent path
        missing=(3, 5),
    ),
    Case(
        "sde-euler",
        _sde_euler,
        {"theta": 0.7, "mu": 1.0, "sigma": 0.4, "m0": 0.2},
        None,
        _euler_final_moments,
        _euler_log_prob,
        1e-10,
        ALL,
    ),
    Case(
        "oscillator-exact",
        _osc_exact,
        {"omega": 1.3, "damping": 0.4, "sigma": 0.5},
        None,
        _osc_final_moments,
        None,
        1e-6,
        ALL,
    ),
    Case(
        "double-well-local-linear",
        _double_well_ll,
        {"a": 1.0, "sigma": 0.5},
        None,
        None,
        None,
        0.0,
        ALL,
    ),
    Case(
        "ou-batched-fixed-x0",
        _ou_batched,
        {"theta": 0.8, "mu": 1.0, "sigma": 0.4},
        None,
        None,
        None,
        0.0,
        ALL,
    ),
    Case(
        "general-noise-euler",
        _general_noise_euler,
        {"theta": 0.8, "sigma": 0.4},
        None,
        None,
        None,
        0.0,
        ALL,
    ),
    Case(
        "ou-kalman-missing",
        _ou_kalman("kalman"),
        {"theta": 0.7, "mu": 1.0, "sigma": 0.4, "m0": 0.2},
        {"theta": -0.7, "mu": 1.0, "sigma": 0.4, "m0": 0.2},
        _ou_obs_final_moments,
        _ou_kalman_log_prob,
        1e-10,
        FILTERED,
        missing=(2, 6),
    ),
    Case(
        "ou-ekf",
        _ou_kalman("ekf"),
        {"theta": 0.7, "mu": 1.0, "sigma": 0.4, "m0": 0.2},
        None,
        _ou_obs_final_moments,
        _ou_kalman_log_prob,
        1e-5,  # the moment equations are integrated by RK4
        FILTERED,
    ),
    Case(
        "ou-ukf-missing",
        _ou_kalman("ukf"),
        {"theta": 0.7, "mu": 1.0, "sigma": 0.4, "m0": 0.2},
        None,
        None,
        _ou_kalman_log_prob,
        1e-5,
        FILTERED,
        missing=(4,),
    ),
    Case(
        "oscillator-kalman-missing",
        _osc_kalman,
        {"omega": 1.3, "damping": 0.4, "sigma": 0.5},
        None,
        _osc_obs_final_moments,
        _osc_kalman_log_prob,
        1e-6,
        FILTERED,
        missing=(1, 5),
    ),
    Case(
        "double-well-ukf-missing",
        _double_well_ukf,
        {"a": 1.0, "sigma": 0.5},
        None,
        None,
        None,
        0.0,
        FILTERED,
        missing=(2,),
    ),
    Case(
        "ou-counts-particle-missing",
        _ou_counts_particle,
        {"theta": 1.2, "mu": 1.0, "sigma": 0.5, "m0": 1.0},
        None,
        None,
        None,
        0.0,
        frozenset({"jit", "vmap", "series"}),  # an estimate: no FD gradients
        missing=(3,),
    ),
    Case(
        "cir-exact",
        _cir_exact,
        {"kappa": 0.8, "theta": 2.5, "sigma": 0.6},
        {"kappa": -0.8, "theta": 2.5, "sigma": 0.6},
        None,
        _cir_exact_log_prob,
        1e-10,
        ALL - {"reparam"},  # exact CIR draws are not a smooth map of normals
    ),
]
