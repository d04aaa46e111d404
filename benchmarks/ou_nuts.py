"""OU-NUTS: NumPyro NUTS on the OU benchmark, the model written four ways, ESS per second.

Problem (../shared/BENCHMARKS.md): OU theta=0.5, mu=1, sigma=0.3, x0=0, 1000 exact points
dt=0.1, observed without noise; priors theta~HalfNormal(1), mu~N(0,2), sigma~HalfNormal(1);
NumPyro NUTS, 2 chains (sequential) x 1000 warm-up x 1000 draws, float64.

Variants (same sampler, only the model code differs):
  sdeppl_path_euler   sp.Path(sp.SDE(closures), method="euler")   -- same maths as the next two
  handwritten_numpyro vectorised Euler increments with dist.Normal
  numpyro_em          numpyro.distributions.EulerMaruyama
  sdeppl_path_exact   sp.Path(sp.OU(...), method="exact")          -- the exact likelihood
  dynestyx            its exact-affine latent-path route, in its own Python 3.12 venv
                      (``DYNESTYX_PYTHON``, default /work/venv-dx/bin/python; --no-dynestyx)

Metric: min bulk ESS over (theta, mu, sigma) per wall second, compile included and excluded
(compile = JAX trace+lower+compile spans; NumPyro recompiles on every run). Median of
``--repeats`` runs with different seeds.

Usage: python benchmarks/ou_nuts.py [--repeats 3] [--no-dynestyx]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import arviz as az  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402

import sdeppl as sp  # noqa: E402

sp.configure(compilation_cache=False)  # XLA's loop tuning, as the docs advise

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _timing import CompileSpans, median_row, save_results  # noqa: E402
from problems import ou_nuts_data  # noqa: E402

DT = 0.1


def _priors():
    theta = numpyro.sample("theta", dist.HalfNormal(1.0))
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    return theta, mu, sigma


def sdeppl_path_euler(ts, x):
    theta, mu, sigma = _priors()
    sde = sp.SDE(drift=lambda t, x: theta * (mu - x), diffusion=lambda t, x: sigma)
    numpyro.sample("x", sp.Path(sde, ts, x0=0.0, method="euler"), obs=x)


def sdeppl_path_exact(ts, x):
    theta, mu, sigma = _priors()
    numpyro.sample(
        "x", sp.Path(sp.OU(theta, mu, sigma), ts, x0=0.0, method="exact"), obs=x
    )


def handwritten_numpyro(ts, x):
    theta, mu, sigma = _priors()
    dt = ts[1:] - ts[:-1]
    loc = x[:-1] + theta * (mu - x[:-1]) * dt
    numpyro.sample("x", dist.Normal(loc, sigma * jnp.sqrt(dt)), obs=x[1:])


def numpyro_em(ts, x):
    theta, mu, sigma = _priors()
    em = dist.EulerMaruyama(ts, lambda y, t: (theta * (mu - y), sigma), dist.Delta(0.0))
    numpyro.sample("x", em, obs=x)


VARIANTS = {
    "sdeppl_path_euler": sdeppl_path_euler,
    "handwritten_numpyro": handwritten_numpyro,
    "numpyro_em": numpyro_em,
    "sdeppl_path_exact": sdeppl_path_exact,
}


def run_variant(model, ts, x, seed, spans, num_warmup, num_samples):
    mcmc = MCMC(
        NUTS(model),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=2,
        chain_method="sequential",
        progress_bar=False,
    )
    spans.reset()
    start = time.perf_counter()
    mcmc.run(jax.random.key(seed), ts, x)
    jax.block_until_ready(mcmc.get_samples())
    wall = time.perf_counter() - start
    compile_s = spans.total()
    idata = az.from_numpyro(mcmc)
    ess = az.ess(idata, var_names=["theta", "mu", "sigma"], method="bulk")
    min_ess = float(min(ess[v].values for v in ("theta", "mu", "sigma")))
    post = mcmc.get_samples()
    return {
        "wall_s": wall,
        "compile_s": compile_s,
        "min_ess_bulk": min_ess,
        "ess_per_s": min_ess / wall,
        "ess_per_s_excl_compile": min_ess / (wall - compile_s),
        "means": {k: float(v.mean()) for k, v in post.items()},
    }


ROW_KEYS = (
    "wall_s",
    "compile_s",
    "min_ess_bulk",
    "ess_per_s",
    "ess_per_s_excl_compile",
)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-warmup", type=int, default=1000)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--no-dynestyx", action="store_true")
    args = parser.parse_args()
    ts_np, x_np = ou_nuts_data()
    ts, x = jnp.asarray(ts_np), jnp.asarray(x_np)
    spans = CompileSpans()
    rows = []
    for name, model in VARIANTS.items():
        runs = [
            run_variant(model, ts, x, seed, spans, args.num_warmup, args.num_samples)
            for seed in range(args.repeats)
        ]
        rows.append(median_row(name, runs, ROW_KEYS, means=runs[0]["means"]))
        print(json.dumps(rows[-1]), flush=True)
    if not args.no_dynestyx:
        python = os.environ.get("DYNESTYX_PYTHON", "/work/venv-dx/bin/python")
        out = subprocess.run(
            [
                python,
                str(HERE / "peers" / "dynestyx_ou_nuts.py"),
                "--num-warmup",
                str(args.num_warmup),
                "--num-samples",
                str(args.num_samples),
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        dx = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(
            {
                "impl": "dynestyx",
                "wall_s": dx["wall_first_s"],
                "compile_s": dx["compile_first_s"],
                "min_ess_bulk": dx["min_ess_bulk"],
                "ess_per_s": dx["ess_per_s_first"],
                "ess_per_s_excl_compile": dx["min_ess_bulk"]
                / (dx["wall_first_s"] - dx["compile_first_s"]),
                "means": dx["means"],
            }
        )
    base = rows[0]
    print(
        f"\n{'impl':22s} {'wall s':>8s} {'compile s':>9s} {'min ESS':>8s} {'ESS/s':>8s} {'ESS/s ex.':>9s} "
        f"{'path_euler / impl (incl, excl)':>32s}"
    )
    for r in rows:
        print(
            f"{r['impl']:22s} {r['wall_s']:8.2f} {r['compile_s']:9.2f} {r['min_ess_bulk']:8.0f} {r['ess_per_s']:8.1f} "
            f"{r['ess_per_s_excl_compile']:9.1f} {base['ess_per_s'] / r['ess_per_s']:15.2f} "
            f"{base['ess_per_s_excl_compile'] / r['ess_per_s_excl_compile']:15.2f}"
        )
    save_results("ou_nuts", rows)


if __name__ == "__main__":
    main()
