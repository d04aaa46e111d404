"""What the plugin costs a user: the OU-NUTS model as ``sp.Path`` against the same
model hand-written in NumPyro, whole script (issue 12, item 4).

Each run is ``python path_overhead.py --worker NAME --seed S`` in a fresh process, timed
from outside: interpreter start, imports, model building, tracing, compilation,
NumPyro NUTS (2 chains, sequential, 1000 + 1000), everything a user waits for. The
same sampler runs both models; only the model code differs:

  sdeppl_path_euler    sp.Path(sp.SDE(closures), method="euler")
  handwritten_numpyro  vectorised Euler increments with dist.Normal

Neither calls ``sp.configure()``: both run as plain NumPyro scripts, so the
difference is sdeppl's import and its model code.

Metric: min bulk ESS over (theta, mu, sigma) per whole-script second; median of
``--repeats`` seeds, the two contenders interleaved.

Usage: python benchmarks/path_overhead.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONTENDERS = ("sdeppl_path_euler", "handwritten_numpyro")


def worker(name: str, seed: int) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    sys.path.insert(0, str(HERE))
    from _timing import min_bulk_ess
    from problems import ou_nuts_data

    ts, xs = ou_nuts_data()
    ts, xs = jnp.asarray(ts), jnp.asarray(xs)

    if name == "sdeppl_path_euler":
        import sdeppl as sp

        def model(ts, x=None):
            theta = numpyro.sample("theta", dist.HalfNormal(1.0))
            mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
            sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
            sde = sp.SDE(lambda t, x: theta * (mu - x), lambda t, x: sigma)
            numpyro.sample("x", sp.Path(sde, ts, x0=0.0, method="euler"), obs=x)

    else:

        def model(ts, x=None):
            theta = numpyro.sample("theta", dist.HalfNormal(1.0))
            mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
            sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
            dt = ts[1:] - ts[:-1]
            mean = x[:-1] + theta * (mu - x[:-1]) * dt
            numpyro.sample("x", dist.Normal(mean, sigma * jnp.sqrt(dt)), obs=x[1:])

    mcmc = MCMC(
        NUTS(model),
        num_warmup=1000,
        num_samples=1000,
        num_chains=2,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(seed), ts, x=xs)
    import arviz as az

    return {"min_ess_bulk": min_bulk_ess(az.from_numpyro(mcmc))}


def run(name: str, seed: int) -> dict:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--worker", name, "--seed", str(seed)],
        capture_output=True,
        text=True,
        check=True,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    wall = time.perf_counter() - start
    row = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "impl": name,
        "wall_s": wall,
        **row,
        "ess_per_s": row["min_ess_bulk"] / wall,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.seed)))
        return
    runs = {name: [] for name in CONTENDERS}
    for seed in range(args.repeats):
        for name in CONTENDERS:
            runs[name].append(run(name, seed))
            print(json.dumps(runs[name][-1]), flush=True)
    medians = {
        name: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "ess_per_s")}
        for name, rs in runs.items()
    }
    for name, m in medians.items():
        print(f"{name:22s} wall {m['wall_s']:.2f} s  ESS/s {m['ess_per_s']:.0f}")
    ratio = (
        medians["sdeppl_path_euler"]["ess_per_s"]
        / medians["handwritten_numpyro"]["ess_per_s"]
    )
    print(f"sp.Path / hand-written NumPyro, ESS per whole-script second: {ratio:.2f}")


if __name__ == "__main__":
    main()
