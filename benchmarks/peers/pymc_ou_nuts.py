"""OU-NUTS peer benchmark: PyMC (default NUTS, PyTensor C backend) on the canonical OU problem.

Model (same as sdeppl's OU-NUTS benchmark):
    theta ~ HalfNormal(1), mu ~ Normal(0, 2), sigma ~ HalfNormal(1)
    x_{k+1} | x_k ~ Normal(x_k + theta (mu - x_k) dt, sigma sqrt(dt))   (Euler-Maruyama, dt = 0.1)
observed without noise on the 1000-point path from ``problems.ou_nuts_data``.

Initial value: ``pm.EulerMaruyama`` adds ``logp(init_dist, x[0])`` to the likelihood and
defaults ``init_dist`` to ``Normal(0, 100)`` with a warning.  We pass
``init_dist=pm.DiracDelta.dist(xs[0])``: x0 is known (= 0), its log-density term is exactly 0
and does not depend on any parameter, so the posterior is the Euler transition likelihood
times the priors, matching a "condition on x0" formulation.

Timing: "first" = model build + PyTensor compile + pm.sample in a fresh process, by default
with a fresh, empty PyTensor compiledir (a truly cold C-compile cache; use
--reuse-compiledir to use the user's normal ~/.pytensor cache instead).  "second" = the same
again in the same process (model rebuilt; PyTensor reuses the compiled C modules).

Usage:  python pymc_ou_nuts.py [--seed 0] [--num-warmup 1000] [--num-samples 1000]
Prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

# Single-threaded BLAS/OpenMP for fairness on the 2-core benchmark machine; must be set
# before numpy / pytensor are imported.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-warmup", type=int, default=1000)
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--chains", type=int, default=2)
    p.add_argument(
        "--cores",
        type=int,
        default=1,
        help="chains in parallel processes (PyMC's own default is min(4, CPUs))",
    )
    p.add_argument(
        "--num-points",
        type=int,
        default=1000,
        help="length of the OU path (canonical 1000)",
    )
    p.add_argument(
        "--reuse-compiledir",
        action="store_true",
        help="use the normal PyTensor compiledir instead of a fresh empty one for the cold run",
    )
    return p.parse_args()


ARGS = parse_args()
if not ARGS.reuse_compiledir:
    _tmp_compiledir = tempfile.mkdtemp(prefix="pytensor_cold_")
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    os.environ["PYTENSOR_FLAGS"] = ",".join(
        x for x in (flags, f"base_compiledir={_tmp_compiledir}") if x
    )

import json  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from problems import ou_nuts_data  # noqa: E402

DT = 0.1
PARAMS = ("theta", "mu", "sigma")


def run_once(pm, ts, xs, args):
    """Build the model and sample; return (wall_s, idata)."""
    t0 = time.perf_counter()
    with pm.Model():
        theta = pm.HalfNormal("theta", 1.0)
        mu = pm.Normal("mu", 0.0, 2.0)
        sigma = pm.HalfNormal("sigma", 1.0)

        def sde_fn(x, theta, mu, sigma):
            return theta * (mu - x), sigma

        pm.EulerMaruyama(
            "x",
            dt=DT,
            sde_fn=sde_fn,
            sde_pars=(theta, mu, sigma),
            init_dist=pm.DiracDelta.dist(float(xs[0])),
            observed=xs,
        )
        idata = pm.sample(
            draws=args.num_samples,
            tune=args.num_warmup,
            chains=args.chains,
            cores=args.cores,
            random_seed=args.seed,
            progressbar=False,
        )
    return time.perf_counter() - t0, idata


def main():
    args = ARGS
    import arviz as az
    import pymc as pm
    import pytensor

    ts, xs = ou_nuts_data(num_points=args.num_points)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wall_first, idata1 = run_once(pm, ts, xs, args)
        wall_second, idata2 = run_once(pm, ts, xs, args)

    def summarise(idata):
        ess = az.ess(idata, var_names=list(PARAMS), method="bulk")
        min_ess = float(min(float(ess[v]) for v in PARAMS))
        means = {v: float(idata.posterior[v].mean()) for v in PARAMS}
        div = int(idata.sample_stats["diverging"].sum())
        samp = idata.sample_stats.attrs.get("sampling_time")
        return min_ess, means, div, (float(samp) if samp is not None else None)

    ess1, means1, div1, samp1 = summarise(idata1)
    ess2, means2, div2, samp2 = summarise(idata2)
    dtype = str(idata1.posterior["theta"].dtype)

    result = {
        "peer": "pymc",
        "version": pm.__version__,
        "pytensor_version": pytensor.__version__,
        # "auto" resolves to the C VM linker ("cvm") when a C++ compiler is available.
        "linker": (
            ("cvm" if pytensor.config.cxx else "vm")
            if pytensor.config.linker == "auto"
            else pytensor.config.linker
        ),
        "cxx": bool(pytensor.config.cxx),
        "dtype": dtype,
        "floatX": pytensor.config.floatX,
        "init_dist": "DiracDelta(x0)",
        "cold_compiledir": not args.reuse_compiledir,
        "chains": args.chains,
        "num_warmup": args.num_warmup,
        "num_samples": args.num_samples,
        "num_points": args.num_points,
        "seed": args.seed,
        "wall_first_s": wall_first,
        "wall_second_s": wall_second,
        "sampling_s": samp1,
        "sampling_second_s": samp2,
        "min_ess_bulk": ess1,
        "min_ess_bulk_second": ess2,
        "ess_per_s_first": ess1 / wall_first,
        "ess_per_s_second": ess2 / wall_second,
        "means": means1,
        "means_second": means2,
        "divergences": div1,
        "divergences_second": div2,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
