"""The table every process primitive must pass (STYLE.md §8).

A :class:`Case` builds a distribution from a dict of float parameters. ``closed_form``
returns ``(mean, var)`` of the path's final value, computed independently of sdeppl
(NumPy/SciPy), for the goodness-of-fit check; ``log_prob_reference`` (optional) computes
the log-density of a path independently. ``caps`` are capability flags; generic tests skip
by flag, never by class name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

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


ALL = frozenset({"reparam", "jit", "vmap", "grad"})

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
]
