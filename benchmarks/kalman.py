"""Kalman log-likelihood + gradient at T = 10,000: sdeppl against a hand-written filter and
statsmodels (OSC-KF and its CAR(d) generalisation, ../shared/BENCHMARKS.md).

Problem ``car{d}``: the first coordinate of a CAR(d) linear SDE (``problems.py``: companion
drift, noise on the last coordinate, ``d = 2`` is the OSC-KF damped oscillator) observed
with noise sd ``r`` at T irregular times, x0 ~ N(0, I), float64. Gradient with respect to
the d polynomial coefficients, the diffusion scale ``q`` and the noise sd ``r``.

Contenders (same process, same data):

- ``sdeppl``: ``sp.StateSpace(sp.LinearSDE(A, L), ts, x0, obs=sp.LinearGaussian(H, R))
  .log_prob(y)`` under ``jax.jit(jax.value_and_grad(...))``.
- ``hand``: the filter a JAX user writes by hand: one ``lax.scan`` over the gaps, each
  step the Van Loan matrix exponential (``jax.scipy.linalg.expm``) then a predict and a
  scalar update.
- ``statsmodels``: value only (it has no gradient). Two timings: its Kalman filter alone
  (``MLEModel.loglike``) on time-varying system matrices computed beforehand (the most
  favourable timing for statsmodels, but not a likelihood evaluation at new parameters),
  and a full evaluation at given parameters: the exact discretisation of every gap with
  scipy's batched ``expm``, the matrices set, then the filter.

dynestyx runs in its own venv (``peers/dynestyx_kalman.py``, same problems); its figures
are merged into RESULTS.md by hand.

Steady state: median of ``--repeats`` calls after the first. Compile: ``lower`` +
``compile`` of the jitted value-and-gradient (AOT), reported separately.

Usage: OMP_NUM_THREADS=1 python benchmarks/kalman.py [--dims 1 2 4 8] [--num-points 10000]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from jax.scipy.linalg import expm  # noqa: E402
from problems import (  # noqa: E402
    OSC_TRUE,
    car_coefficients,
    car_matrices,
    linear_kf_data,
)

import sdeppl as sp  # noqa: E402

sp.configure(compilation_cache=False)  # XLA's loop tuning, as the docs advise

HERE = Path(__file__).resolve().parent


def companion(coef):
    d = coef.shape[0]
    top = jnp.eye(d, k=1, dtype=coef.dtype)[:-1]
    return jnp.concatenate([top, -coef[::-1][None, :]], axis=0)


def noise_matrix(q, d):
    return jnp.zeros((d, d), q.dtype).at[-1, -1].set(q)


def sdeppl_loglik(ts, ys):
    def loglik(params):
        coef, q, r = params
        d = coef.shape[0]
        sde = sp.LinearSDE(A=companion(coef), L=noise_matrix(q, d))
        model = sp.StateSpace(
            sde,
            ts,
            x0=dist.MultivariateNormal(jnp.zeros(d), jnp.eye(d)),
            obs=sp.LinearGaussian(H=jnp.eye(d)[0], R=r**2),
        )
        return model.log_prob(ys)

    return loglik


def hand_loglik(ts, ys):
    """A hand-written Kalman filter: expm per gap inside one lax.scan."""
    ts, ys = jnp.asarray(ts), jnp.asarray(ys)

    def loglik(params):
        coef, q, r = params
        d = coef.shape[0]
        A = companion(coef)
        L = noise_matrix(q, d)
        van_loan = jnp.block([[-A, L @ L.T], [jnp.zeros((d, d)), A.T]])

        def update(m, P, y):
            s = P[0, 0] + r**2
            v = y - m[0]
            k = P[:, 0] / s
            ll = -0.5 * (jnp.log(2 * jnp.pi * s) + v * v / s)
            return m + k * v, P - s * jnp.outer(k, k), ll

        def step(carry, inp):
            m, P, total = carry
            dt, y = inp
            f = expm(van_loan * dt)
            phi = f[d:, d:].T
            Q = phi @ f[:d, d:]
            m, P = phi @ m, phi @ P @ phi.T + 0.5 * (Q + Q.T)
            m, P, ll = update(m, P, y)
            return (m, P, total + ll), None

        m, P, ll0 = update(jnp.zeros(d), jnp.eye(d), ys[0])
        (_, _, total), _ = jax.lax.scan(step, (m, P, ll0), (jnp.diff(ts), ys[1:]))
        return total

    return loglik


def statsmodels_model(ts, ys, d):
    """statsmodels MLEModel for CAR(d)-KF; its time-varying matrices are set by
    :func:`statsmodels_set_matrices`."""
    import statsmodels.api as sm

    mod = sm.tsa.statespace.MLEModel(
        ys[:, None],
        k_states=d,
        initialization="known",
        initial_state=np.zeros(d),
        initial_state_cov=np.eye(d),
    )
    mod["design"] = np.eye(d)[:1]
    mod["selection"] = np.eye(d)
    return mod


def statsmodels_set_matrices(mod, ts, coef, q, r):
    """What a statsmodels user must do per parameter value on an irregular grid: the
    exact discretisation of every gap (scipy's batched ``expm`` on the Van Loan blocks),
    then the time-varying system matrices."""
    from scipy.linalg import expm as scipy_expm

    A, L = car_matrices(coef, q)
    d = A.shape[0]
    n = len(ts)
    van_loan = np.block([[-A, L @ L.T], [np.zeros((d, d)), A.T]])
    f = scipy_expm(van_loan[None] * np.diff(ts)[:, None, None])
    phi = np.swapaxes(f[:, d:, d:], 1, 2)
    cov = phi @ f[:, :d, d:]
    transition = np.zeros((d, d, n))
    state_cov = np.zeros((d, d, n))
    transition[:, :, :-1] = np.moveaxis(phi, 0, -1)
    state_cov[:, :, :-1] = np.moveaxis(0.5 * (cov + np.swapaxes(cov, 1, 2)), 0, -1)
    mod["transition"] = transition
    mod["state_cov"] = state_cov
    mod["obs_cov"] = np.eye(1) * r**2


def time_jitted(fn, params, repeats: int) -> dict:
    vg = jax.jit(jax.value_and_grad(fn))
    t0 = time.perf_counter()
    compiled = vg.lower(params).compile()
    compile_s = time.perf_counter() - t0
    value, grad = jax.block_until_ready(compiled(params))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(params))
        times.append(time.perf_counter() - start)
    flat = np.concatenate([np.ravel(g) for g in jax.tree_util.tree_leaves(grad)])
    return {
        "compile_s": round(compile_s, 3),
        "steady_s": statistics.median(times),
        "value": float(value),
        "grad_finite": bool(np.all(np.isfinite(flat))),
        "grad": flat.tolist(),
    }


def run(d: int, num_points: int, repeats: int) -> dict:
    ts, ys = linear_kf_data(d, num_points)
    params = (
        jnp.asarray(car_coefficients(d)),
        jnp.asarray(OSC_TRUE["q"]),
        jnp.asarray(OSC_TRUE["r"]),
    )
    out = {"problem": f"car{d}", "d": d, "T": num_points}
    out["sdeppl"] = time_jitted(sdeppl_loglik(ts, ys), params, repeats)
    out["hand"] = time_jitted(hand_loglik(ts, ys), params, repeats)
    mod = statsmodels_model(ts, ys, d)
    coef = car_coefficients(d)
    statsmodels_set_matrices(mod, ts, coef, OSC_TRUE["q"], OSC_TRUE["r"])
    value = mod.loglike([])
    filter_times, full_times = [], []
    for _ in range(max(3, repeats // 2)):
        start = time.perf_counter()
        mod.loglike([])
        filter_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        statsmodels_set_matrices(mod, ts, coef, OSC_TRUE["q"], OSC_TRUE["r"])
        mod.loglike([])
        full_times.append(time.perf_counter() - start)
    out["statsmodels"] = {
        "steady_s": statistics.median(filter_times),
        "with_discretisation_s": statistics.median(full_times),
        "value": float(value),
    }
    ref = out["statsmodels"]["value"]
    for name in ("sdeppl", "hand"):
        out[name]["abs_diff_vs_statsmodels"] = abs(out[name]["value"] - ref)
    s = out["sdeppl"]["steady_s"]
    out["ratio_statsmodels_over_sdeppl"] = out["statsmodels"]["steady_s"] / s
    out["ratio_statsmodels_full_over_sdeppl"] = (
        out["statsmodels"]["with_discretisation_s"] / s
    )
    out["ratio_hand_over_sdeppl"] = out["hand"]["steady_s"] / s
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 2, 3, 4, 6, 8])
    parser.add_argument("--num-points", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    results = []
    for d in args.dims:
        res = run(d, args.num_points, args.repeats)
        results.append(res)
        print(
            f"car{d} T={args.num_points}: sdeppl v+g {1e3 * res['sdeppl']['steady_s']:.2f} ms"
            f" (compile {res['sdeppl']['compile_s']:.1f} s), hand {1e3 * res['hand']['steady_s']:.2f} ms"
            f" (compile {res['hand']['compile_s']:.1f} s), statsmodels value"
            f" {1e3 * res['statsmodels']['steady_s']:.2f} ms (filter only),"
            f" {1e3 * res['statsmodels']['with_discretisation_s']:.2f} ms (with"
            f" discretisation);"
            f" |diff| {res['sdeppl']['abs_diff_vs_statsmodels']:.2e};"
            f" statsmodels/sdeppl {res['ratio_statsmodels_over_sdeppl']:.1f}x,"
            f" hand/sdeppl {res['ratio_hand_over_sdeppl']:.2f}x",
            flush=True,
        )
    out = HERE / "results" / "kalman.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
