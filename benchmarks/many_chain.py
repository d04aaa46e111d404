"""Many-chain HMC on the OU benchmark: BlackJAX's ChEES-HMC against sdeppl's default NUTS.

The question the docs answer with this script: should ``sp.fit`` offer a many-chain
adaptive sampler (ChEES, Hoffman, Radul & Sountsov 2021) as its default on CPU? ChEES
tunes one step size and one (jittered) trajectory length from the ensemble of chains,
so all chains take the same number of leapfrog steps and run in lock-step under
``vmap`` with no waste; NUTS chains build trees of different sizes and are run
sequentially on CPU.

Problem: OU-NUTS (../shared/BENCHMARKS.md), T = 1000, Euler likelihood, float64, on one
CPU device, each run in a fresh process with an empty compilation cache; wall time of
the whole inference (tracing, compilation, warm-up, sampling), imports excluded.

Contenders:
  nuts_default      sp.fit default: 2 chains x 1000 warm-up x 1000 draws
  chees_K           K chains vmapped, ChEES warm-up (diagonal mass matrix estimated from
                    the ensemble, Adam lr 0.025) of --chees-warmup steps, then
                    ceil(2000 / K) draws per chain (the same 2000 kept draws as NUTS),
                    jittered dynamic HMC with the tuned parameters

Metric: min bulk ESS over (theta, mu, sigma), and ESS per wall second; medians over
--repeats seeds. Also reported: the largest R-hat over (theta, mu, sigma).

Usage: python benchmarks/many_chain.py [--repeats 3] [--chains 4 16 64]
       python benchmarks/many_chain.py --worker NAME --seed S   (one run, prints JSON)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

from _timing import median_row, run_worker_process, save_results
from sampler import ou_euler_model

HERE = Path(__file__).resolve().parent
NUM_KEPT = 2000


def _chees(model, ts, xs, num_chains, num_warmup, seed):
    """ChEES warm-up + jittered dynamic HMC on ``num_chains`` vmapped chains; returns
    constrained draws ``{name: (chain, draw)}``."""
    import blackjax
    import jax
    import numpy as np
    import optax

    from sdeppl.infer._model import ModelAdapter

    adapter = ModelAdapter(model, (ts,), {"x": xs})
    num_samples = math.ceil(NUM_KEPT / num_chains)

    def run(key):
        key_init, key_warm, key_run = jax.random.split(key, 3)
        positions = jax.vmap(adapter.initial_position)(
            jax.random.split(key_init, num_chains)
        )
        warmup = blackjax.chees_adaptation(
            adapter.logdensity, num_chains, mass_matrix_estimation="diagonal"
        )
        (states, params), _ = warmup.run(
            key_warm, positions, 0.1, optax.adam(0.025), num_warmup
        )
        step = blackjax.dynamic_hmc(adapter.logdensity, **params).step

        def body(states, key):
            states, info = jax.vmap(step)(jax.random.split(key, num_chains), states)
            return states, states.position

        _, draws = jax.lax.scan(body, states, jax.random.split(key_run, num_samples))
        return jax.vmap(jax.vmap(adapter.constrain))(draws.swapaxes(0, 1))

    draws = jax.jit(run)(jax.random.key(seed))
    return {k: np.asarray(v) for k, v in draws.items()}


def worker(name: str, seed: int, chees_warmup: int) -> dict:
    import time

    import sdeppl as sp

    sp.configure()  # as the docs advise: loop tuning and the compilation cache
    import jax

    jax.config.update("jax_enable_x64", True)
    import arviz as az
    import blackjax  # noqa: F401 - imports are not timed

    sys.path.insert(0, str(HERE))
    from _timing import min_bulk_ess
    from problems import ou_nuts_data

    ts, xs = ou_nuts_data()
    model = ou_euler_model()
    start = time.perf_counter()
    if name == "nuts_default":
        fit = sp.fit(
            model, ts, x=xs, chains=2, seed=seed, progress=False, log_likelihood=False
        )
        idata = fit.idata
    else:
        num_chains = int(name.split("_")[1])
        draws = _chees(model, ts, xs, num_chains, chees_warmup, seed)
        idata = az.from_dict(posterior=draws)
    wall = time.perf_counter() - start
    names = ["theta", "mu", "sigma"]
    ess = min_bulk_ess(idata)
    rhat = float(max(az.rhat(idata, var_names=names)[v].item() for v in names))
    return {
        "impl": name,
        "wall_s": wall,
        "min_ess_bulk": ess,
        "ess_per_s": ess / wall,
        "max_rhat": rhat,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chains", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--chees-warmup", type=int, default=1000)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.seed, args.chees_warmup)))
        return
    names = ["nuts_default"] + [f"chees_{k}" for k in args.chains]
    rows = []
    for name in names:
        runs = [
            run_worker_process(
                __file__,
                name,
                seed,
                tempfile.mkdtemp(prefix="sdeppl-cache-"),
                extra_args=["--chees-warmup", str(args.chees_warmup)],
            )
            for seed in range(args.repeats)
        ]
        keys = ("wall_s", "min_ess_bulk", "ess_per_s", "max_rhat")
        rows.append(median_row(name, runs, keys))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'impl':14s} {'wall s':>7s} {'min ESS':>8s} {'ESS/s':>7s} {'R-hat':>6s}")
    for r in rows:
        print(
            f"{r['impl']:14s} {r['wall_s']:7.2f} {r['min_ess_bulk']:8.0f} "
            f"{r['ess_per_s']:7.0f} {r['max_rhat']:6.3f}"
        )
    save_results("many_chain", rows)


if __name__ == "__main__":
    main()
