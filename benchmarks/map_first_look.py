"""The first look: ``sp.fit(method="map")`` against the default NUTS fit, OU benchmark.

Problem: OU-NUTS (../shared/BENCHMARKS.md), T = 1000, Euler–Maruyama likelihood, the
model of ``benchmarks/sampler.py``; NUTS: 2 chains x 1000 warm-up x 1000 draws; MAP: its
defaults (4 starts, 2000 Laplace draws). Everything ``sp.fit`` does by default is timed
(pointwise log-likelihood included), in a fresh process per run after
``sp.configure()`` as the docs advise (imports, ArviZ's and BlackJAX's included, are not
timed, as in ``sampler.py``):

- ``cold``: a new, empty compilation cache;
- ``warm``: the cache filled by an earlier run of the same contender.

Also printed: each parameter's Laplace mean against the NUTS mean, in NUTS posterior
standard deviations, and the MAP backend's own checks.

Usage: python benchmarks/map_first_look.py [--repeats 3] [--num-points 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _timing import median_row, run_worker_process, save_results

HERE = Path(__file__).resolve().parent
CONTENDERS = {
    "nuts_default": {
        "method": "blackjax",
        "chains": 2,
        "warmup": 1000,
        "samples": 1000,
    },
    "map": {"method": "map"},
}
NAMES = ("theta", "mu", "sigma")


def worker(name: str, seed: int, num_points: int) -> dict:
    import time

    import sdeppl as sp

    sp.configure()
    import jax

    jax.config.update("jax_enable_x64", True)
    import arviz  # noqa: F401 - imported by sp.fit on first use; imports are not timed
    import blackjax  # noqa: F401

    sys.path.insert(0, str(HERE))
    from problems import ou_nuts_data
    from sampler import ou_euler_model

    ts, xs = ou_nuts_data(num_points)
    options = dict(CONTENDERS[name])
    start = time.perf_counter()
    fit = sp.fit(ou_euler_model(), ts, x=xs, seed=seed, progress=False, **options)
    wall = time.perf_counter() - start
    post = fit.idata.posterior
    return {
        "impl": name,
        "wall_s": wall,
        "means": {k: float(post[k].mean()) for k in NAMES},
        "sds": {k: float(post[k].std()) for k in NAMES},
        "timing_s": fit.metadata["timing_s"],
        "checks": fit.diagnostics()[["check", "value", "status"]].values.tolist(),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-points", type=int, default=1000)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.seed, args.num_points)))
        return
    extra = ("--num-points", str(args.num_points))
    rows = []
    for state in ("cold", "warm"):
        for name in CONTENDERS:
            warm_dir = tempfile.mkdtemp(prefix="sdeppl-cache-")
            if state == "warm":
                run_worker_process(__file__, name, 99, warm_dir, extra)
            runs = [
                run_worker_process(
                    __file__,
                    name,
                    seed,
                    tempfile.mkdtemp(prefix="sdeppl-cache-")
                    if state == "cold"
                    else warm_dir,
                    extra,
                )
                for seed in range(args.repeats)
            ]
            rows.append(median_row(name, runs, ("wall_s",), cache=state))
            print(json.dumps(rows[-1]["runs"][0]), flush=True)
    print(f"\nT = {args.num_points}")
    print(f"{'impl':14s} {'cache':6s} {'wall s':>7s}")
    for r in rows:
        print(f"{r['impl']:14s} {r['cache']:6s} {r['wall_s']:7.2f}")
    for state in ("cold", "warm"):
        by = {r["impl"]: r for r in rows if r["cache"] == state}
        ratio = by["nuts_default"]["wall_s"] / by["map"]["wall_s"]
        print(f"{state}: NUTS / MAP wall time = {ratio:.1f}x")
    nuts, laplace = rows[0]["runs"][0], rows[1]["runs"][0]
    for k in NAMES:
        gap = (laplace["means"][k] - nuts["means"][k]) / nuts["sds"][k]
        print(
            f"{k}: Laplace mean {laplace['means'][k]:.4f}, NUTS {nuts['means'][k]:.4f} "
            f"({gap:+.2f} NUTS sd); sd {laplace['sds'][k]:.4f} vs {nuts['sds'][k]:.4f}"
        )
    print("MAP checks:", laplace["checks"])
    save_results(f"map_first_look_T{args.num_points}", rows)


if __name__ == "__main__":
    main()
