"""Time to a first result on a 2-D state-space model, by filter (issue 12, item 4).

Model: a 2-D OU, full 2x2 drift (diagonal rates negative, off-diagonal free) with an
offset, diagonal diffusion, both coordinates observed with noise sd 0.1 (known):
8 parameters; T = 200 irregular times on [0, 40], 29 values missing. Fitted by
``sp.fit`` (default sampler, 2 chains x 1000 + 1000) through the Kalman, extended and
unscented filters.

Per filter: the jitted log-density value + gradient (median of 200 calls, after
compilation), and the whole fit in a fresh process with an empty compilation cache
(imports excluded), with the run's own split of its wall time (``timing_s``).

Usage: python benchmarks/ou2d_first_fit.py [--methods kalman ekf ukf] [--no-fit]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _timing import run_worker_process, save_results

HERE = Path(__file__).resolve().parent
TRUE = {
    "rates": (0.5, 0.8),
    "coupling": (0.3, -0.2),
    "b": (0.1, -0.2),
    "sigma": (0.3, 0.4),
}
OBS_SD = 0.1


def ou2d_data(num_points: int = 200, num_missing: int = 29, seed: int = 0):
    """Irregular times, the simulated observations (NaN where missing)."""
    import numpy as np

    import sdeppl as sp

    rng = np.random.default_rng(seed)
    ts = np.sort(rng.uniform(0.0, 40.0, num_points))
    A = np.array([[-0.5, 0.3], [-0.2, -0.8]])
    sde = sp.LinearSDE(A, np.diag(TRUE["sigma"]), np.array(TRUE["b"]))
    import jax

    path = sp.Path(sde, ts, x0=np.zeros(2), method="exact").sample(jax.random.key(seed))
    y = np.array(path) + OBS_SD * rng.normal(size=(num_points, 2))
    flat = y.reshape(-1)
    flat[rng.choice(flat.size, num_missing, replace=False)] = np.nan
    return ts, flat.reshape(num_points, 2)


def ou2d_model(ts, y=None, method="kalman"):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    import sdeppl as sp

    rates = numpyro.sample("rates", dist.HalfNormal(1.0).expand([2]).to_event(1))
    coupling = numpyro.sample("coupling", dist.Normal(0.0, 0.5).expand([2]).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0).expand([2]).to_event(1))
    A = jnp.array([[-rates[0], coupling[0]], [coupling[1], -rates[1]]])
    sde = sp.LinearSDE(A, jnp.diag(sigma), b)
    if method != "kalman":  # the filters' own route: a general SDE
        sde = sp.SDE(
            lambda t, x: jnp.einsum("ij,...j->...i", A, x) + b,
            lambda t, x: sigma,
        )
    obs = sp.LinearGaussian(jnp.eye(2), OBS_SD**2)
    x0 = dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2))
    model = sp.StateSpace(sde, ts, x0=x0, obs=obs, method=method)
    numpyro.sample("y", model, obs=y)


def worker(name: str, seed: int) -> dict:
    import time

    import sdeppl as sp

    sp.configure(host_devices="all")  # as the docs advise: chains on every core
    import jax

    jax.config.update("jax_enable_x64", True)
    import arviz  # noqa: F401 - imports are not timed
    import blackjax  # noqa: F401

    ts, y = ou2d_data()
    start = time.perf_counter()
    fit = sp.fit(
        ou2d_model,
        ts,
        y=y,
        chains=2,
        seed=seed,
        progress=False,
        model_kwargs={"method": name},  # the model's own "method" argument
    )
    wall = time.perf_counter() - start
    return {
        "impl": name,
        "wall_s": wall,
        "timing_s": fit.metadata["timing_s"],
        "verdict": fit.verdict,
    }


def gradient_times(methods) -> dict:
    """Median value+gradient time of the log-density, per filter (in this process)."""
    import statistics
    import time

    import jax

    import sdeppl as sp

    sp.configure(compilation_cache=False)  # as the docs advise (before JAX starts)
    jax.config.update("jax_enable_x64", True)
    from sdeppl.infer import ModelAdapter

    ts, y = ou2d_data()
    out = {}
    for method in methods:
        adapter = ModelAdapter(ou2d_model, (ts,), {"y": y, "method": method})
        dim, dtype = adapter.dim_and_dtype()
        vg = jax.jit(jax.value_and_grad(adapter.logdensity))
        z = jax.numpy.zeros(dim, dtype) + 0.1
        t0 = time.perf_counter()
        jax.block_until_ready(vg(z))
        compile_s = time.perf_counter() - t0
        times = []
        for _ in range(200):
            t = time.perf_counter()
            jax.block_until_ready(vg(z))
            times.append(time.perf_counter() - t)
        out[method] = {
            "value_grad_ms": 1e3 * statistics.median(times),
            "first_s": compile_s,
        }
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=["kalman", "ekf", "ukf"])
    parser.add_argument("--no-fit", action="store_true")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.seed)))
        return
    rows = [{"gradients": gradient_times(args.methods)}]
    print(json.dumps(rows[0]), flush=True)
    if not args.no_fit:
        for method in args.methods:
            cache = tempfile.mkdtemp(prefix="sdeppl-cache-")
            rows.append(run_worker_process(__file__, method, args.seed, cache))
            print(json.dumps(rows[-1]), flush=True)
    save_results("ou2d_first_fit", rows)


if __name__ == "__main__":
    main()
