"""Path-space VI on a latent OU path: ``sp.fit(method="svi", guide="path")`` against
the Kalman smoother (the exact answer), NumPyro NUTS and NumPyro SVI with ``AutoNormal``
on the same model.

Problem: OU-KF (../shared/BENCHMARKS.md): OU θ=0.5, μ=1, σ=0.3 at T = 1000 times
dt = 0.1, observed with noise sd 0.05; the parameters are known (fixed at the truth) so
the smoother is exact: the latent path's posterior under the model's own Euler
transitions is the RTS smoother of the Euler chain ``x_k = x_{k-1} + θ(μ - x_{k-1}) dt
+ σ √dt ε``, computed in NumPy. Reported per contender: wall time of the fit in a fresh
process after ``sp.configure()`` (imports not timed, compilation and post-processing
included; ``cold``: empty compilation cache, ``warm``: filled by an earlier run), the
largest error of the posterior mean in smoother standard deviations, and the range of
the posterior sd ÷ the smoother's sd over the 1000 times.

- ``svi_path``: ``sp.fit(model, method="svi", guide="path")`` with its defaults;
- ``numpyro_nuts``: NumPyro ``MCMC(NUTS)`` on the same model (``sp.reparam_paths``:
  non-centred path), 2 chains x 500 warm-up x 500 draws (sequential);
- ``numpyro_autonormal``: NumPyro ``SVI(AutoNormal)``, ``optax.adam(0.05)``, 3000
  steps, 4-sample ELBO (what a NumPyro user would write), 2000 draws.

Usage: python benchmarks/svi_path.py [--repeats 3] [--num-points 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from _timing import median_row, run_worker_process, save_results

HERE = Path(__file__).resolve().parent
THETA, MU, SIGMA, NOISE, DT = 0.5, 1.0, 0.3, 0.05, 0.1
CONTENDERS = ("svi_path", "numpyro_nuts", "numpyro_autonormal")


def smoother(y: np.ndarray):
    """RTS smoother of the Euler chain with x_0 ~ N(0, 1): ``(means, sds)``."""
    n = y.size
    a, b, q = 1.0 - THETA * DT, THETA * MU * DT, SIGMA**2 * DT
    m, p, mp, pp = (np.zeros(n) for _ in range(4))
    mp[0], pp[0] = 0.0, 1.0
    for k in range(n):
        if k:
            mp[k], pp[k] = a * m[k - 1] + b, a * a * p[k - 1] + q
        gain = pp[k] / (pp[k] + NOISE**2)
        m[k], p[k] = mp[k] + gain * (y[k] - mp[k]), (1 - gain) * pp[k]
    ms, ps = m.copy(), p.copy()
    for k in range(n - 2, -1, -1):
        g = p[k] * a / pp[k + 1]
        ms[k] = m[k] + g * (ms[k + 1] - mp[k + 1])
        ps[k] = p[k] + g * g * (ps[k + 1] - pp[k + 1])
    return ms, np.sqrt(ps)


def model_factory():
    import numpyro
    import numpyro.distributions as dist

    import sdeppl as sp

    def latent_ou(ts, y):
        sde = sp.SDE(drift=lambda t, x: THETA * (MU - x), diffusion=lambda t, x: SIGMA)
        x = numpyro.sample(
            "x", sp.Path(sde, ts, x0=dist.Normal(0.0, 1.0), method="euler")
        )
        numpyro.sample("y", dist.Normal(x, NOISE), obs=y)

    return latent_ou


def worker(name: str, seed: int, num_points: int) -> dict:
    import time

    import sdeppl as sp

    sp.configure()
    import jax

    jax.config.update("jax_enable_x64", True)
    import arviz  # noqa: F401 - imported on first use; imports are not timed
    import optax
    from numpyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO
    from numpyro.infer.autoguide import AutoNormal

    sys.path.insert(0, str(HERE))
    from problems import ou_kf_data

    ts, y = ou_kf_data(num_points, DT, NOISE)
    model = model_factory()
    key = jax.random.key(seed)
    start = time.perf_counter()
    if name == "svi_path":
        fit = sp.fit(
            model, ts, y, method="svi", guide="path", seed=seed, progress=False
        )
        draws = fit.idata.posterior["x"].values.reshape(-1, num_points)
        extra = {k: fit.metadata["backend_info"][k] for k in ("steps_run", "pareto_k")}
    elif name == "numpyro_nuts":
        mcmc = MCMC(
            NUTS(sp.reparam_paths(model)),
            num_warmup=500,
            num_samples=500,
            num_chains=2,
            chain_method="sequential",
            progress_bar=False,
        )
        mcmc.run(key, ts, y)
        draws = np.asarray(mcmc.get_samples()["x"])
        extra = {}
    else:
        reparam = sp.reparam_paths(model)
        guide = AutoNormal(reparam)
        svi = SVI(reparam, guide, optax.adam(0.05), Trace_ELBO(num_particles=4))
        result = svi.run(key, 3000, ts, y, progress_bar=False)
        post = Predictive(reparam, guide=guide, params=result.params, num_samples=2000)
        draws = np.asarray(post(jax.random.key(seed + 1), ts, y)["x"])
        extra = {}
    wall = time.perf_counter() - start
    means, sds = smoother(np.asarray(y))
    return {
        "impl": name,
        "wall_s": wall,
        "mean_error_sd": float(np.max(np.abs(draws.mean(0) - means) / sds)),
        "sd_ratio_min": float(np.min(draws.std(0) / sds)),
        "sd_ratio_max": float(np.max(draws.std(0) / sds)),
        **extra,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-points", type=int, default=1000)
    parser.add_argument("--only", choices=CONTENDERS, help="run one contender")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.seed, args.num_points)))
        return
    extra = ("--num-points", str(args.num_points))
    keys = ("wall_s", "mean_error_sd", "sd_ratio_min", "sd_ratio_max")
    rows = []
    for state in ("cold", "warm"):
        for name in [args.only] if args.only else CONTENDERS:
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
            rows.append(median_row(name, runs, keys, cache=state))
            print(json.dumps(rows[-1]["runs"]), flush=True)
    print(f"\nT = {args.num_points} (medians over {args.repeats} seeds)")
    print(
        f"{'impl':20s} {'cache':6s} {'wall s':>7s} {'max|dm|/sd':>10s} {'sd ratio':>13s}"
    )
    for r in rows:
        print(
            f"{r['impl']:20s} {r['cache']:6s} {r['wall_s']:7.1f} "
            f"{r['mean_error_sd']:10.3f} {r['sd_ratio_min']:6.3f}-{r['sd_ratio_max']:.3f}"
        )
    save_results(f"svi_path_T{args.num_points}", rows)


if __name__ == "__main__":
    main()
