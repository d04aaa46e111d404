"""SDE-SIM: simulation throughput of sdeppl against plain JAX, NumPy, diffrax and torchsde.

Problem (../shared/BENCHMARKS.md): double well dx = (x - x^3) dt + 0.5 dW, x0 = 0, T = 10,
1000 Euler–Maruyama steps, 10,000 paths, final value only, float32.

sdeppl (``SDE.simulate``) and a plain ``lax.scan`` run in this process; the peers run in
the benchmark venv through ``peers/sim_peers.py`` (set ``BENCH_PYTHON``, default
``/work/venv-bench/bin/python``). Everything is single-threaded (the same XLA/BLAS flags
for every implementation) so the figures compare generators and solvers, not thread pools.

Usage: python benchmarks/sde_sim.py [--repeats 5] [--no-peers]
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import sdeppl as sp  # noqa: E402

sp.configure(compilation_cache=False)  # XLA's loop tuning, as the docs advise

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _timing import save_results  # noqa: E402
from problems import DOUBLE_WELL  # noqa: E402


def timed(fn, repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return first, statistics.median(times), out


def sdeppl_row(scheme, repeats):
    p = DOUBLE_WELL
    sde = sp.SDE(lambda t, x: x - x**3, lambda t, x: p["sigma"], additive=True)
    ts = jnp.array([0.0, p["t_end"]], jnp.float32)
    steps = p["num_steps"] // (
        2 if scheme == "sra1" else 1
    )  # SRA1: same drift evaluations
    run = jax.jit(
        lambda key: sde.simulate(
            key,
            ts,
            x0=jnp.float32(p["x0"]),
            scheme=scheme,
            substeps=steps - 1,
            num_paths=p["num_paths"],
        )[:, -1]
    )
    first, median, out = timed(lambda: run(jax.random.key(0)), repeats)
    return {
        "impl": f"sdeppl_{scheme}",
        "dtype": "float32",
        "prng": "threefry2x32",
        "compile_plus_first_s": first,
        "median_s": median,
        "path_steps_per_s": p["num_paths"] * steps / median,
        "mean": float(out.mean()),
        "sd": float(out.std()),
        "steps": steps,
    }


def plain_scan_row(repeats):
    p = DOUBLE_WELL
    dt = p["t_end"] / p["num_steps"]

    @jax.jit
    def run(key):
        keys = jax.random.split(key, p["num_steps"])

        def step(x, k):
            dw = jax.random.normal(k, x.shape, x.dtype) * jnp.sqrt(jnp.float32(dt))
            return x + (x - x**3) * dt + p["sigma"] * dw, None

        x, _ = jax.lax.scan(step, jnp.zeros(p["num_paths"], jnp.float32), keys)
        return x

    first, median, out = timed(lambda: run(jax.random.key(0)), repeats)
    return {
        "impl": "plain_jax_scan",
        "dtype": "float32",
        "prng": "threefry2x32",
        "compile_plus_first_s": first,
        "median_s": median,
        "path_steps_per_s": p["num_paths"] * p["num_steps"] / median,
        "mean": float(out.mean()),
        "sd": float(out.std()),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args()
    rows = [
        sdeppl_row("euler", args.repeats),
        sdeppl_row("sra1", args.repeats),
        plain_scan_row(args.repeats),
    ]
    if not args.no_peers:
        python = os.environ.get("BENCH_PYTHON", "/work/venv-bench/bin/python")
        out = subprocess.run(
            [
                python,
                str(HERE / "peers" / "sim_peers.py"),
                "--repeats",
                str(args.repeats),
                "--only",
                "numpy,diffrax,torchsde",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rows += json.loads(out.stdout.strip().splitlines()[-1])
    ours = rows[0]["path_steps_per_s"]
    print(
        f"{'impl':34s} {'dtype':8s} {'path-steps/s':>14s} {'sdeppl_euler / impl':>20s}  mean    sd"
    )
    for r in rows:
        print(
            f"{r['impl'] + ' ' + str(r.get('prng', '')):34s} {r['dtype']:8s} {r['path_steps_per_s']:14.3e} "
            f"{ours / r['path_steps_per_s']:20.2f}  {r['mean']:+.3f} {r['sd']:.3f}"
        )
    save_results("sde_sim", rows)


if __name__ == "__main__":
    main()
