"""OU-KF with NUTS: the latent path integrated out (Kalman) against the latent path sampled
(non-centred HMC), same data, same priors, same sampler (../shared/BENCHMARKS.md).

Data: ``problems.ou_kf_data()`` -- OU theta=0.5, mu=1, sigma=0.3, x0=0 (known), 1000
points, dt=0.1, observed with Gaussian noise sd 0.05 (known). Priors theta ~
HalfNormal(1), mu ~ Normal(0, 2), sigma ~ HalfNormal(1).

- ``kalman``: ``sp.StateSpace(sp.OU(...), ts, x0=0, obs=sp.LinearGaussian(1, 0.05**2))``,
  three parameters for NUTS.
- ``latent``: ``x = sample("x", sp.Path(sp.OU(...), ts, x0=0, method="exact"))`` (its
  999 Brownian increments are the latent variables, non-centred by default) and
  ``y ~ Normal(x, 0.05)``: 1002 parameters for NUTS.

Both through ``sp.fit`` (default BlackJAX NUTS, 2 chains x 1000 warm-up x 1000 draws,
chains on 2 host devices), each in a fresh process with an empty compilation cache; the
latent model also with ``method="mclmc"`` (``latent_mclmc``), whose max R-hat is recorded
because it may not converge. Metric:
min bulk ESS over (theta, mu, sigma) per wall second of ``sp.fit`` (compile included).

Usage: python benchmarks/ou_kf_nuts.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from _timing import run_worker_process

HERE = Path(__file__).resolve().parent


def worker(name: str, seed: int) -> dict:
    import time

    import sdeppl as sp

    sp.configure(host_devices=2)  # as the docs advise, with the cores as devices
    import jax

    jax.config.update("jax_enable_x64", True)
    import arviz as az
    import blackjax  # noqa: F401 - imported by sp.fit on first use; imports are not timed
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from _timing import min_bulk_ess
    from problems import ou_kf_data

    ts, ys = ou_kf_data()
    ts, ys = jnp.asarray(ts), jnp.asarray(ys)

    def priors():
        theta = numpyro.sample("theta", dist.HalfNormal(1.0))
        mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        return sp.OU(theta, mu, sigma)

    def kalman(ts, y=None):
        obs = sp.LinearGaussian(1.0, 0.05**2)
        numpyro.sample("y", sp.StateSpace(priors(), ts, x0=0.0, obs=obs), obs=y)

    def latent(ts, y=None):
        x = numpyro.sample("x", sp.Path(priors(), ts, x0=0.0, method="exact"))
        numpyro.sample("y", dist.Normal(x, 0.05).to_event(1), obs=y)

    model = {"kalman": kalman, "latent": latent, "latent_mclmc": latent}[name]
    start = time.perf_counter()
    fit = sp.fit(
        model,
        ts,
        y=ys,
        chains=2,
        warmup=1000,
        samples=1000,
        seed=seed,
        method="mclmc" if name == "latent_mclmc" else "blackjax",
        progress=False,
        log_likelihood=False,
    )
    wall = time.perf_counter() - start
    post = fit.idata.posterior
    post_names = ("theta", "mu", "sigma")
    return {
        "name": name,
        "seed": seed,
        "wall_s": wall,
        "min_bulk_ess": min_bulk_ess(fit.idata),
        "means": {v: float(post[v].mean()) for v in ("theta", "mu", "sigma")},
        "sds": {v: float(post[v].std()) for v in ("theta", "mu", "sigma")},
        "divergences": int(fit.idata.sample_stats["diverging"].sum()),
        "max_r_hat": float(
            max(az.rhat(fit.idata, var_names=list(post_names))[v] for v in post_names)
        ),
    }


def run_worker(name: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        return run_worker_process(__file__, name, seed, cache)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.seed)))
        return
    names = ("kalman", "latent", "latent_mclmc")
    rows = [run_worker(n, s) for s in range(args.repeats) for n in names]
    summary = {}
    for name in names:
        mine = [r for r in rows if r["name"] == name]
        summary[name] = {
            "ess_per_s": statistics.median(
                r["min_bulk_ess"] / r["wall_s"] for r in mine
            ),
            "wall_s": statistics.median(r["wall_s"] for r in mine),
            "min_bulk_ess": statistics.median(r["min_bulk_ess"] for r in mine),
            "max_r_hat": max(r["max_r_hat"] for r in mine),
        }
        print(name, json.dumps(summary[name]), flush=True)
    ratio = summary["kalman"]["ess_per_s"] / summary["latent"]["ess_per_s"]
    print(f"kalman / latent ESS/s: {ratio:.1f}x")
    out = HERE / "results" / "ou_kf_nuts.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps({"runs": rows, "summary": summary, "ratio": ratio}, indent=1)
    )


if __name__ == "__main__":
    main()
