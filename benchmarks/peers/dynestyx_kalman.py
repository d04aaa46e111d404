"""OU-KF / OSC-KF peer: dynestyx Kalman log-likelihood value + gradient timings.

Runs in its own Python 3.12 venv (dynestyx needs Python >= 3.12), e.g.::

    OMP_NUM_THREADS=1 /work/venv-dx/bin/python benchmarks/peers/dynestyx_kalman.py
    OMP_NUM_THREADS=1 /work/venv-dx/bin/python benchmarks/peers/dynestyx_kalman.py \
        --problems ou --routes exact_kf_assoc --repeats 2          # smoke test

Times ``jax.jit(jax.value_and_grad(loglik))`` where ``loglik(params)`` is dynestyx's
NumPyro-free marginal log-likelihood::

    with dsx.Filter(filter_config):
        with dsx.Discretizer(ExactAffineConfig()):      # only for the exact_* routes
            result = dsx.condition("f", dynamics, obs_times=ts, obs_values=ys)
    return result.marginal_loglik

Problems (float64):

* ``ou``   OU-KF: ``problems.ou_kf_data()`` (OU theta=0.5, mu=1, sigma=0.3, x0=0, 1000
  points, dt=0.1, observation noise sd 0.05, known).  Gradient w.r.t. (theta, mu,
  sigma).  x0 = 0 is known; dynestyx's Kalman filters need a non-degenerate Gaussian
  initial state (P0 = 0 gives NaN: the square-root filters take a Cholesky of P0), so
  the model uses x0 ~ N(0, 1e-10) (``--ou-p0``); the numpy reference uses the same P0.
* ``osc1k`` / ``osc10k`` OSC-KF: 2-D damped oscillator dx = A x dt + L dW with
  A = [[0, 1], [-k, -c]], k=1, c=0.2, L = diag(0, q), q=0.5 (2-D Brownian motion; the
  2x1 form L = [[0], [q]] has the same L L^T but crashes the ``ct_kf`` route with a
  dot_general shape error), x0 ~ N(0, I); first coordinate observed with noise sd
  r=0.1 at T = 1,000 / 10,000 irregular times t_0 = 0, gaps ~ Uniform(0.05, 0.15).
  Data generated here with NumPy only (``osc_kf_data``: seed 0; gaps, then x0, then
  per-step exact transitions, then observation noise, all from one
  ``default_rng(0)``), by the exact transition (matrix exponential + Van Loan
  covariance).  Gradient w.r.t. (k, c, q, r).

Routes (``--routes``):

* ``exact_kf_assoc``: ``Discretizer(ExactAffineConfig())`` + ``Filter(KFConfig(
  filter_source="cuthbert"))`` -- exact affine discretisation per interval, then
  cuthbert's square-root Kalman filter with the associative (parallel-in-time) scan
  (the default when filter_source="cuthbert").  Exact.
* ``exact_kf_seq``: same, ``KFConfig(filter_source="cuthbert", associative=False)``
  (sequential scan).  Exact.
* ``ct_kf``: ``Filter(ContinuousTimeKFConfig())`` on the continuous-time model (no
  Discretizer): cd_dynamax continuous-discrete KF, mean/covariance ODEs between
  observations solved by diffrax (defaults: dt0=0.01, max_steps=1000).  Approximate to
  ODE-solver accuracy.

The default ``KFConfig()`` backend (cd_dynamax) cannot be used after ExactAffineConfig:
it raises "The cd_dynamax discrete Kalman filter requires constant (array-valued)
parameters" because the exact discretisation is a time-varying (t_now, t_next)
transition.  No covariance jitter is needed here (ExactAffineConfig default 0).

Tracing is slow and O(T): every Filter builds a Python list of T per-time
``MultivariateNormal`` filtered distributions (``ConditionedResult.dists``)
unconditionally; they are dead code after jit (no steady-state cost), but
``trace_lower_s`` is ~10-17 s at T=1,000 and ~95-105 s at T=10,000 on this machine.
No config switch turns this off in 0.7.1.

Per (problem, route) one JSON line: ``trace_lower_s`` (jit tracing + lowering),
``compile_s`` (XLA compile, AOT ``.lower().compile()``), ``first_call_s`` (first
execution of the compiled function), ``steady_s_median`` (median of ``--repeats`` timed
calls after that), value, gradient, and |value - NumPy reference Kalman filter|.
Timings on a shared 2-core machine are indicative only.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import dynestyx as dsx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from dynestyx.discretizers import ExactAffineConfig  # noqa: E402
from dynestyx.inference.configs.filter import ContinuousTimeKFConfig, KFConfig  # noqa: E402
from problems import (  # noqa: E402
    OSC_TRUE,
    OU_TRUE,
    car_coefficients,
    car_matrices,
    linear_kf_data,
    ou_kf_data,
)

OU_NOISE_SD = 0.05


# ---------------------------------------------------------------- NumPy helpers


def _expm(m: np.ndarray) -> np.ndarray:
    """Matrix exponential (scaling and squaring + Taylor); fine for small matrices."""
    norm = np.linalg.norm(m, 1)
    s = max(0, int(np.ceil(np.log2(norm))) + 1) if norm > 0.5 else 0
    a = m / 2.0**s
    out = np.eye(m.shape[0])
    term = np.eye(m.shape[0])
    for j in range(1, 20):
        term = term @ a / j
        out = out + term
    for _ in range(s):
        out = out @ out
    return out


def _exact_transition(A: np.ndarray, b: np.ndarray, LLt: np.ndarray, h: float):
    """Exact (A_h, b_h, Q_h) of dx = (A x + b) dt + L dW over an interval h."""
    d = A.shape[0]
    aug = np.zeros((d + 1, d + 1))
    aug[:d, :d] = A
    aug[:d, d] = b
    e = _expm(aug * h)
    vl = np.zeros((2 * d, 2 * d))
    vl[:d, :d] = A
    vl[:d, d:] = LLt
    vl[d:, d:] = -A.T
    ev = _expm(vl * h)
    Ah = ev[:d, :d]
    Qh = ev[:d, d:] @ Ah.T
    return e[:d, :d], e[:d, d], 0.5 * (Qh + Qh.T)


def osc_matrices(k: float, c: float, q: float):
    A = np.array([[0.0, 1.0], [-k, -c]])
    L = np.diag([0.0, q])
    return A, L


def osc_kf_data(num_points: int, seed: int = 0):
    """OSC-KF data: 2-D damped oscillator, x[:, 0] observed with noise sd r."""
    p = OSC_TRUE
    A, L = osc_matrices(p["k"], p["c"], p["q"])
    rng = np.random.default_rng(seed)
    gaps = rng.uniform(0.05, 0.15, num_points - 1)
    ts = np.concatenate([[0.0], np.cumsum(gaps)])
    x = rng.standard_normal(2)  # x0 ~ N(0, I)
    xs = np.empty((num_points, 2))
    xs[0] = x
    for i, h in enumerate(gaps):
        Ah, bh, Qh = _exact_transition(A, np.zeros(2), L @ L.T, h)
        x = Ah @ x + bh + np.linalg.cholesky(Qh) @ rng.standard_normal(2)
        xs[i + 1] = x
    ys = xs[:, 0] + p["r"] * rng.standard_normal(num_points)
    return ts, ys


def numpy_kf_loglik(ts, ys, A, b, LLt, H, R, m0, P0) -> float:
    """Reference Kalman filter (exact discretisation, observation at every time)."""
    m, P = np.array(m0, float), np.array(P0, float)
    ll = 0.0
    for i in range(len(ts)):
        if i > 0:
            Ah, bh, Qh = _exact_transition(A, b, LLt, ts[i] - ts[i - 1])
            m = Ah @ m + bh
            P = Ah @ P @ Ah.T + Qh
        S = H @ P @ H.T + R
        v = np.atleast_1d(ys[i]) - H @ m
        Sinv_v = np.linalg.solve(S, v)
        ll += -0.5 * (len(v) * np.log(2 * np.pi) + np.linalg.slogdet(S)[1] + v @ Sinv_v)
        K = P @ H.T @ np.linalg.inv(S)
        m = m + K @ v
        P = P - K @ S @ K.T
    return float(ll)


# ---------------------------------------------------------------- dynestyx models


def ou_dynamics(p, p0: float) -> dsx.DynamicalModel:
    theta, mu, sigma = p["theta"], p["mu"], p["sigma"]
    return dsx.DynamicalModel(
        initial_condition=dist.MultivariateNormal(jnp.zeros(1), p0 * jnp.eye(1)),
        state_evolution=dsx.ContinuousTimeStateEvolution(
            drift=dsx.AffineDrift(A=-theta * jnp.eye(1), b=theta * mu * jnp.ones(1)),
            diffusion=dsx.FullDiffusion(sigma * jnp.eye(1)),
        ),
        observation_model=dsx.LinearGaussianObservation(
            H=jnp.eye(1), R=OU_NOISE_SD**2 * jnp.eye(1)
        ),
    )


def osc_dynamics(p) -> dsx.DynamicalModel:
    k, c, q, r = p["k"], p["c"], p["q"], p["r"]
    zero, one = jnp.zeros_like(k), jnp.ones_like(k)
    A = jnp.stack([jnp.stack([zero, one]), jnp.stack([-k, -c])])
    L = jnp.stack([jnp.stack([zero, zero]), jnp.stack([zero, q])])  # diag(0, q)
    return dsx.DynamicalModel(
        initial_condition=dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)),
        state_evolution=dsx.ContinuousTimeStateEvolution(
            drift=dsx.AffineDrift(A=A),
            diffusion=dsx.FullDiffusion(L),
        ),
        observation_model=dsx.LinearGaussianObservation(
            H=jnp.array([[1.0, 0.0]]), R=(r**2) * jnp.eye(1)
        ),
    )


def car_dynamics(p) -> dsx.DynamicalModel:
    """CAR(d): companion drift from the coefficients, noise q on the last coordinate."""
    coef, q, r = p["coef"], p["q"], p["r"]
    d = coef.shape[0]
    A = jnp.concatenate([jnp.eye(d, k=1)[:-1], -coef[::-1][None, :]], axis=0)
    L = jnp.zeros((d, d)).at[-1, -1].set(q)
    return dsx.DynamicalModel(
        initial_condition=dist.MultivariateNormal(jnp.zeros(d), jnp.eye(d)),
        state_evolution=dsx.ContinuousTimeStateEvolution(
            drift=dsx.AffineDrift(A=A), diffusion=dsx.FullDiffusion(L)
        ),
        observation_model=dsx.LinearGaussianObservation(
            H=jnp.eye(d)[:1], R=(r**2) * jnp.eye(1)
        ),
    )


ROUTES = {
    "exact_kf_assoc": (lambda: KFConfig(filter_source="cuthbert"), True),
    "exact_kf_seq": (
        lambda: KFConfig(filter_source="cuthbert", associative=False),
        True,
    ),
    "ct_kf": (lambda: ContinuousTimeKFConfig(), False),
}


def make_loglik(make_dyn, ts, ys, route: str):
    make_cfg, discretize = ROUTES[route]

    def loglik(p):
        dynamics = make_dyn(p)
        with dsx.Filter(make_cfg()):
            if discretize:
                with dsx.Discretizer(ExactAffineConfig()):
                    res = dsx.condition("f", dynamics, obs_times=ts, obs_values=ys)
            else:
                res = dsx.condition("f", dynamics, obs_times=ts, obs_values=ys)
        return res.marginal_loglik

    return loglik


def time_value_and_grad(loglik, params, repeats: int) -> dict:
    vg = jax.jit(jax.value_and_grad(loglik))
    t0 = time.perf_counter()
    lowered = vg.lower(params)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    out = jax.block_until_ready(compiled(params))
    t3 = time.perf_counter()
    times = []
    for _ in range(repeats):
        s = time.perf_counter()
        jax.block_until_ready(compiled(params))
        times.append(time.perf_counter() - s)
    value, grad = out
    return {
        "trace_lower_s": round(t1 - t0, 3),
        "compile_s": round(t2 - t1, 3),
        "first_call_s": round(t3 - t2, 5),
        "steady_s_median": round(statistics.median(times), 6),
        "steady_s_all": [round(t, 6) for t in times],
        "value": float(value),
        "grad": {k: np.asarray(v).tolist() for k, v in grad.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--problems",
        nargs="+",
        default=["ou", "osc1k", "osc10k"],
        help="ou, osc1k, osc10k, or carD (D = 1..8: the CAR(D) problem of "
        "benchmarks/kalman.py at T = --car-points)",
    )
    parser.add_argument("--car-points", type=int, default=10_000)
    parser.add_argument(
        "--routes", nargs="+", default=list(ROUTES), choices=list(ROUTES)
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--ou-p0",
        type=float,
        default=1e-10,
        help="initial-state variance for OU-KF (x0 = 0 known)",
    )
    args = parser.parse_args()

    for problem in args.problems:
        if problem == "ou":
            ts_np, ys_np = ou_kf_data()
            params = {k: jnp.asarray(v) for k, v in OU_TRUE.items()}
            make_dyn = lambda p: ou_dynamics(p, args.ou_p0)  # noqa: E731
            th, mu, sg = OU_TRUE["theta"], OU_TRUE["mu"], OU_TRUE["sigma"]
            ref = numpy_kf_loglik(
                ts_np,
                ys_np,
                np.array([[-th]]),
                np.array([th * mu]),
                np.array([[sg**2]]),
                np.eye(1),
                np.array([[OU_NOISE_SD**2]]),
                np.zeros(1),
                np.array([[args.ou_p0]]),
            )
            label = "OU-KF"
        elif problem.startswith("car"):
            d = int(problem[3:])
            ts_np, ys_np = linear_kf_data(d, args.car_points)
            params = {
                "coef": jnp.asarray(car_coefficients(d)),
                "q": jnp.asarray(OSC_TRUE["q"]),
                "r": jnp.asarray(OSC_TRUE["r"]),
            }
            make_dyn = car_dynamics
            A, L = car_matrices(car_coefficients(d), OSC_TRUE["q"])
            ref = numpy_kf_loglik(
                ts_np,
                ys_np,
                A,
                np.zeros(d),
                L @ L.T,
                np.eye(d)[:1],
                np.array([[OSC_TRUE["r"] ** 2]]),
                np.zeros(d),
                np.eye(d),
            )
            label = f"CAR({d})-KF"
        else:
            n = 1000 if problem == "osc1k" else 10_000
            ts_np, ys_np = osc_kf_data(n, seed=0)
            params = {k: jnp.asarray(v) for k, v in OSC_TRUE.items()}
            make_dyn = osc_dynamics
            A, L = osc_matrices(OSC_TRUE["k"], OSC_TRUE["c"], OSC_TRUE["q"])
            ref = numpy_kf_loglik(
                ts_np,
                ys_np,
                A,
                np.zeros(2),
                L @ L.T,
                np.array([[1.0, 0.0]]),
                np.array([[OSC_TRUE["r"] ** 2]]),
                np.zeros(2),
                np.eye(2),
            )
            label = "OSC-KF"
        ts = jnp.asarray(ts_np)
        ys = jnp.asarray(ys_np)[:, None]
        for route in args.routes:
            row = {
                "peer": "dynestyx",
                "version": dsx.__version__,
                "jax": jax.__version__,
                "dtype": str(ts.dtype),
                "problem": label,
                "T": int(ts.shape[0]),
                "route": route,
            }
            try:
                res = time_value_and_grad(
                    make_loglik(make_dyn, ts, ys, route), params, args.repeats
                )
                res["loglik_ref_numpy"] = ref
                res["abs_err_vs_ref"] = abs(res["value"] - ref)
                row.update(res)
            except Exception as exc:  # report and go on with the other routes
                row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            row["notes"] = (
                f"jax.jit(jax.value_and_grad(loglik)) at the true parameters; repeats="
                f"{args.repeats}; "
                + (
                    f"OU x0~N(0,{args.ou_p0:g}) (P0=0 gives NaN); "
                    if problem == "ou"
                    else ""
                )
                + "indicative timings on a shared 2-core machine"
            )
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
