"""Sampler speed on the OU benchmark: sdeppl's default sampler against PyMC and NumPyro.

Problem: OU-NUTS (../shared/BENCHMARKS.md), T = 1000, Euler–Maruyama likelihood (the same
maths as PyMC's ``EulerMaruyama``), 2 chains x 1000 warm-up x 1000 draws, float64.

Every contender runs in a fresh Python process, and wall time is measured around the
fitting call only (imports excluded; model building, tracing, compilation, sampling and
the conversion to ArviZ included), so that "compile included" means what a user waits for
when running a script:

- ``cold``: empty compilation caches (sdeppl: a new ``SDEPPL_COMPILATION_CACHE``; PyMC: a
  new PyTensor compiledir);
- ``warm``: caches filled by an earlier run (the everyday case for a repeated analysis).

Contenders:
  sdeppl_default   sp.fit(method="blackjax") as a script gets it: one CPU device, chains
                   sequential
  sdeppl_2devices  the same with chains on 2 host devices (sp.configure(host_devices=2)),
                   as the ``sdeppl`` command runs them
  sdeppl_numpyro   sp.fit(method="nuts"): NumPyro's MCMC(NUTS), the reference
  sdeppl_mclmc     sp.fit(method="mclmc")
  pymc_cores1/2    pm.sample, PyTensor C backend, chains sequential / in 2 processes
                   (peers/pymc_ou_nuts.py in the benchmark venv, BENCH_PYTHON)

Metric: min bulk ESS over (theta, mu, sigma) / wall seconds; median over --repeats runs.

Usage: python benchmarks/sampler.py [--repeats 5] [--no-pymc]
       python benchmarks/sampler.py --worker NAME --seed S   (one run, prints JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _timing import median_row, run_worker_process, save_results

HERE = Path(__file__).resolve().parent
CONTENDERS = {
    "sdeppl_default": {"method": "blackjax", "devices": 1},
    "sdeppl_2devices": {"method": "blackjax", "devices": 2},
    "sdeppl_numpyro": {"method": "nuts", "devices": 1},
    "sdeppl_mclmc": {"method": "mclmc", "devices": 2},
}


def ou_euler_model():
    """The OU-NUTS model with the Euler likelihood, written with ``sp.Path`` (imports
    inside: callers choose the device count before JAX starts)."""
    import numpyro
    import numpyro.distributions as dist

    import sdeppl as sp

    def model(ts, x=None):
        theta = numpyro.sample("theta", dist.HalfNormal(1.0))
        mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        sde = sp.SDE(drift=lambda t, x: theta * (mu - x), diffusion=lambda t, x: sigma)
        numpyro.sample("x", sp.Path(sde, ts, x0=0.0, method="euler"), obs=x)

    return model


def worker(name: str, seed: int) -> dict:
    import time

    import sdeppl as sp

    # what the docs tell a script user: loop tuning, the persistent cache (here in
    # $SDEPPL_COMPILATION_CACHE), and the chosen number of CPU devices
    sp.configure(host_devices=CONTENDERS[name]["devices"])
    import jax

    jax.config.update("jax_enable_x64", True)
    import arviz  # noqa: F401 - imported by sp.fit on first use; imports are not timed
    import blackjax  # noqa: F401

    sys.path.insert(0, str(HERE))
    from _timing import min_bulk_ess
    from problems import ou_nuts_data

    ts, xs = ou_nuts_data()
    model = ou_euler_model()

    start = time.perf_counter()
    fit = sp.fit(
        model,
        ts,
        x=xs,
        method=CONTENDERS[name]["method"],
        chains=2,
        warmup=1000,
        samples=1000,
        seed=seed,
        progress=False,
        log_likelihood=False,
    )
    wall = time.perf_counter() - start
    min_ess = min_bulk_ess(fit.idata)
    return {
        "impl": name,
        "wall_s": wall,
        "min_ess_bulk": min_ess,
        "ess_per_s": min_ess / wall,
        "means": {
            k: float(fit.idata.posterior[k].mean()) for k in ("theta", "mu", "sigma")
        },
        "devices": jax.local_device_count(),
    }


def run_worker(name, seed, cache_dir):
    return run_worker_process(__file__, name, seed, cache_dir)


def run_pymc(seed, cold, cores):
    python = os.environ.get("BENCH_PYTHON", "/work/venv-bench/bin/python")
    args = [
        python,
        str(HERE / "peers" / "pymc_ou_nuts.py"),
        "--seed",
        str(seed),
        "--cores",
        str(cores),
    ]
    if not cold:
        args.append("--reuse-compiledir")
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "impl": f"pymc_cores{cores}",
        "wall_s": r["wall_first_s"],
        "min_ess_bulk": r["min_ess_bulk"],
        "ess_per_s": r["ess_per_s_first"],
        "means": r["means"],
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-pymc", action="store_true")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.seed)))
        return
    rows = []
    for state in ("cold", "warm"):
        for name in CONTENDERS:
            runs = []
            warm_dir = tempfile.mkdtemp(prefix="sdeppl-cache-")
            if state == "warm":
                run_worker(name, 99, warm_dir)  # fills the cache
            for seed in range(args.repeats):
                cache = (
                    tempfile.mkdtemp(prefix="sdeppl-cache-")
                    if state == "cold"
                    else warm_dir
                )
                runs.append(run_worker(name, seed, cache))
            rows.append(_median(runs, state))
            print(json.dumps(rows[-1]), flush=True)
        if not args.no_pymc:
            for cores in (1, 2):
                if state == "warm":
                    run_pymc(99, cold=False, cores=cores)  # fills ~/.pytensor
                runs = [
                    run_pymc(seed, cold=state == "cold", cores=cores)
                    for seed in range(args.repeats)
                ]
                rows.append(_median(runs, state))
                print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'impl':16s} {'cache':6s} {'wall s':>7s} {'min ESS':>8s} {'ESS/s':>7s}")
    for r in rows:
        print(
            f"{r['impl']:16s} {r['cache']:6s} {r['wall_s']:7.2f} {r['min_ess_bulk']:8.0f} {r['ess_per_s']:7.0f}"
        )
    save_results("sampler", rows)


def _median(runs, state):
    keys = ("wall_s", "min_ess_bulk", "ess_per_s")
    return median_row(runs[0]["impl"], runs, keys, cache=state)


if __name__ == "__main__":
    main()
