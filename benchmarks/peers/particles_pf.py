"""SMC peer benchmark: the `particles` library (N. Chopin), SPECS-smc.md section 6, B1 and B2.

Runs in its own venv (never a dependency of sdeppl)::

    python3 -m venv /work/venv-particles && /work/venv-particles/bin/pip install particles
    /work/venv-particles/bin/python benchmarks/peers/particles_pf.py [--quick] [--out FILE]

Data come from ``benchmarks/smc_problems.py`` (NumPy only; the sdeppl side imports the
same module and gets bit-identical arrays; fingerprints are in the output).  Time index
as in ``particles``: observations y_0 .. y_{T-1}, and y_0 is observed given X_0.

B1 - linear Gaussian, bootstrap PF scaling
    ``particles.kalman.LinearGauss(rho=0.9, sigmaX=1, sigmaY=1, sigma0=None)``:
        X_0 ~ N(0, sigmaX^2 / (1 - rho^2))   (stationary; sigma0=None does this)
        X_t | X_{t-1} ~ N(rho X_{t-1}, sigmaX^2),   Y_t | X_t ~ N(X_t, sigmaY^2)
    T = 100, data ``smc_problems.lg_data()``.  Reference: the exact Kalman log-likelihood
    (``particles.kalman.Kalman``, cross-checked against ``smc_problems.lg_kalman_loglik``).
    N = 1e2 .. 1e6 (see RUNS_* below for the number of runs per N).

B2 - stochastic volatility
    ``particles.state_space_models.StochVol(mu=-1, rho=0.95, sigma=0.3)``, exactly (source
    of particles 0.4):
        X_0 ~ N(mu, sigma^2 / (1 - rho^2))
        X_t | X_{t-1} ~ N(mu + rho (X_{t-1} - mu), sigma^2)
        Y_t | X_t ~ N(0, exp(X_t))        (scale exp(X_t / 2))
    T = 1000, data ``smc_problems.sv_data()``.  Bootstrap PF for a sweep of N (the
    headline is N = 1e4; 1e3 is the BENCHMARKS.md SV-PF second size).

Every filter: ``particles.SMC(fk=state_space_models.Bootstrap(ssm=..., data=y), N=N,
resampling="systematic", ESSrmin=0.5, collect="off")`` and ``.run()``; the log-likelihood
estimate is ``pf.logLt``.  Resampling is adaptive (when ESS < 0.5 N; never at t = 0),
as particles does by default.  ``collect="off"`` (as PMMH uses) turns off the per-step
summaries.  The timed call is construction + run.  Before timing, one warm-up filter
compiles particles' numba resampling kernel (``first_filter_s`` in the output, with the
import time).  Runs of one (problem, N) block run back to back after
``np.random.seed([seed, problem, N])`` (particles draws from NumPy's global RNG).

PMMH (B2) - ``particles.mcmc.PMMH(ssm_cls=StochVol, prior=PRIOR, data=y, Nx=500,
niter=ITERS, theta0=(-1, 0.95, 0.3), adaptive=True, scale=1, rw_cov=RW_COV)``,
bootstrap filter with the options above (N = 500 per likelihood estimate).  Priors
(independent; ``particles.distributions`` names, with NumPyro equivalents):

    mu    ~ Normal(loc=0, scale=2)                         numpyro Normal(0, 2)
    rho   ~ Uniform(a=-1, b=1)                             numpyro Uniform(-1, 1)
    sigma ~ TruncNormal(mu=0, sigma=1, a=0, b=inf)         numpyro HalfNormal(1)

Proposal: Gaussian random walk on (mu, rho, sigma) in that order, untransformed (a
proposal outside the support has prior density 0 and is rejected without running the
filter).  ``adaptive=True`` is particles' default: the covariance is
(2.38^2 / 3) Sigma_n, with Sigma_n a running covariance of the chain with step size
(n + 1)^-0.6, started at Sigma_0 = RW_COV = diag(0.1^2, 0.02^2, 0.05^2).  The chain
starts at the true values.  Burn-in: the first 10 % of iterations are dropped before
computing ESS, means and sds (the acceptance rate is over all iterations).  ESS is the
rank-normalised split bulk ESS of ArviZ (``arviz.ess(method="bulk")`` for one chain),
re-implemented here in NumPy/SciPy (``bulk_ess``; it agrees with ArviZ 0.23.4 to
rounding).  ESS/s = ESS of the kept draws / wall time of the whole run (burn-in
included).  ``--save-chain FILE.npz`` stores the chain for re-checking.

Usage: python particles_pf.py [--quick] [--out FILE] [--only b1,sv_pf,pmmh]
       [--pmmh-iters N] [--seed 0] [--machine-note TEXT] [--save-chain FILE]
Prints one JSON line at the end (and writes it, indented, to --out if given), and the
total time to stderr.  Everything runs single-threaded (BLAS/OpenMP/numba threads = 1).
"""

from __future__ import annotations

import os

# Single-threaded BLAS/OpenMP/numba for fairness on the 2-core benchmark machine; must be
# set before numpy / numba are imported.
for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import OrderedDict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from smc_problems import (  # noqa: E402
    LG_B1,
    SV_B2,
    fingerprint,
    lg_data,
    lg_kalman_loglik,
    sv_data,
)

# (N, runs) per mode.  Timing runs at the largest N are few: see the "runs" field.
RUNS_B1 = {
    "full": {10**2: 100, 10**3: 100, 10**4: 50, 10**5: 20, 10**6: 10},
    "quick": {10**2: 10, 10**3: 10, 10**4: 10, 10**5: 3, 10**6: 1},
}
RUNS_SV = {
    "full": {10**2: 100, 10**3: 100, 10**4: 50, 10**5: 10},
    "quick": {10**3: 10, 10**4: 10},
}
PMMH_ITERS = {"full": 10_000, "quick": 500}
PMMH_NX = 500
PMMH_BURNIN_FRAC = 0.1
RW_COV = np.diag([0.1**2, 0.02**2, 0.05**2])  # order: mu, rho, sigma
PRIOR_TEXT = {
    "mu": "Normal(loc=0, scale=2)",
    "rho": "Uniform(-1, 1)",
    "sigma": "HalfNormal(scale=1) = TruncNormal(mu=0, sigma=1, a=0, b=inf)",
}
PROBLEM_ID = {"b1": 1, "sv_pf": 2, "pmmh": 3}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="fewer runs and PMMH iterations"
    )
    p.add_argument("--out", help="also write the JSON (indented) to this file")
    p.add_argument("--only", default="b1,sv_pf,pmmh", help="comma-separated parts")
    p.add_argument("--pmmh-iters", type=int, help="override the PMMH iteration count")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--machine-note",
        default="",
        help="free text stored in the output, e.g. 'shared: other jobs running'",
    )
    p.add_argument("--save-chain", help="save the PMMH chain to this .npz file")
    return p.parse_args()


# --------------------------------------------------------------------------- ESS
def _autocov(x: np.ndarray) -> np.ndarray:
    """Autocovariance of each row of ``x`` at every lag (FFT; as ArviZ's ``autocov``)."""
    from scipy.fft import next_fast_len

    n = x.shape[1]
    m = next_fast_len(2 * n)
    x = x - x.mean(axis=1, keepdims=True)
    f = np.fft.rfft(x, n=m, axis=1)
    f *= np.conjugate(f)
    return np.fft.irfft(f, n=m, axis=1)[:, :n] / n


def _ess_geyer(x: np.ndarray) -> float:
    """ESS of a (chains, draws) array, Geyer's initial monotone sequence (ArviZ ``_ess``)."""
    n_chain, n_draw = x.shape
    if np.ptp(x) < np.finfo(float).resolution:
        return float(x.size)
    acov = _autocov(x)
    mean_var = np.mean(acov[:, 0]) * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    if n_chain > 1:
        var_plus += np.var(x.mean(axis=1), ddof=1)
    rho = np.zeros(n_draw)
    rho_even = 1.0
    rho[0] = rho_even
    rho_odd = 1.0 - (mean_var - np.mean(acov[:, 1])) / var_plus
    rho[1] = rho_odd
    t = 1
    while t < (n_draw - 3) and (rho_even + rho_odd) > 0.0:
        rho_even = 1.0 - (mean_var - np.mean(acov[:, t + 1])) / var_plus
        rho_odd = 1.0 - (mean_var - np.mean(acov[:, t + 2])) / var_plus
        if (rho_even + rho_odd) >= 0:
            rho[t + 1] = rho_even
            rho[t + 2] = rho_odd
        t += 2
    max_t = t - 2
    if rho_even > 0:
        rho[max_t + 1] = rho_even
    t = 1
    while t <= max_t - 2:
        if (rho[t + 1] + rho[t + 2]) > (rho[t - 1] + rho[t]):
            rho[t + 1] = (rho[t - 1] + rho[t]) / 2.0
            rho[t + 2] = rho[t + 1]
        t += 2
    ess = n_chain * n_draw
    tau = -1.0 + 2.0 * np.sum(rho[: max_t + 1]) + np.sum(rho[max_t + 1 : max_t + 2])
    tau = max(tau, 1 / np.log10(ess))
    return float(ess / tau)


def bulk_ess(draws: np.ndarray) -> float:
    """Bulk ESS of one chain: split in two halves, rank-normalise, Geyer ESS (ArviZ)."""
    from scipy import stats

    x = np.atleast_2d(np.asarray(draws, dtype=float))
    half = x.shape[1] // 2
    x = np.vstack([x[:, :half], x[:, -half:]])
    rank = stats.rankdata(x, method="average").reshape(x.shape)
    z = stats.norm.ppf((rank - 3 / 8) / (x.size - 2 * 3 / 8 + 1))
    return _ess_geyer(z)


# --------------------------------------------------------------------------- filters
def run_filter(particles, ssms, model, y, N):
    """One bootstrap filter (construction + run); returns (seconds, log-lik estimate)."""
    t0 = time.perf_counter()
    pf = particles.SMC(
        fk=ssms.Bootstrap(ssm=model, data=y),
        N=N,
        resampling="systematic",
        ESSrmin=0.5,
        collect="off",
    )
    pf.run()
    return time.perf_counter() - t0, float(pf.logLt)


def pf_block(particles, ssms, model, y, runs_per_n, seed, problem, exact=None):
    """Time ``runs`` filters at each N; one result row per N."""
    T = len(y)
    rows = []
    for N, runs in runs_per_n.items():
        np.random.seed([seed, PROBLEM_ID[problem], N])
        times, lls = [], []
        for _ in range(runs):
            s, ll = run_filter(particles, ssms, model, y, N)
            times.append(s)
            lls.append(ll)
        lls_a = np.array(lls)
        med = statistics.median(times)
        var = float(np.var(lls_a, ddof=1)) if runs > 1 else None
        row = {
            "N": N,
            "T": T,
            "runs": runs,
            "median_s": med,
            "min_s": min(times),
            "mean_s": statistics.fmean(times),
            "particle_steps_per_s": N * T / med,
            "loglik_mean": float(lls_a.mean()),
            "loglik_var": var,
            "loglik_sd": None if var is None else var**0.5,
            "var_x_time": None if var is None else var * med,
        }
        if exact is not None:
            err = lls_a - exact
            row["loglik_bias"] = float(err.mean())
            row["loglik_rmse"] = float(np.sqrt(np.mean(err**2)))
        row["times_s"] = [round(t, 6) for t in times]
        row["logliks"] = lls
        rows.append(row)
        print(
            f"  {problem} N={N:>8} runs={runs:>3} median {med:.4g} s "
            f"loglik {lls_a.mean():.3f} sd {row['loglik_sd'] or 0:.3g}",
            file=sys.stderr,
            flush=True,
        )
    return rows


# --------------------------------------------------------------------------- PMMH
def run_pmmh(particles, ssms, y, iters, seed, save_chain=None):
    from particles import distributions as dists
    from particles import mcmc

    prior = dists.StructDist(
        OrderedDict(
            [
                ("mu", dists.Normal(loc=0.0, scale=2.0)),
                ("rho", dists.Uniform(a=-1.0, b=1.0)),
                ("sigma", dists.TruncNormal(mu=0.0, sigma=1.0, a=0.0, b=np.inf)),
            ]
        )
    )
    theta0 = np.zeros(1, dtype=prior.dtype)
    for k in ("mu", "rho", "sigma"):
        theta0[k] = SV_B2[k]
    np.random.seed([seed, PROBLEM_ID["pmmh"]])
    alg = mcmc.PMMH(
        ssm_cls=ssms.StochVol,
        prior=prior,
        data=y,
        Nx=PMMH_NX,
        niter=iters,
        theta0=theta0,
        adaptive=True,
        scale=1.0,
        rw_cov=RW_COV,
        smc_options={"resampling": "systematic", "ESSrmin": 0.5},
    )
    t0 = time.perf_counter()
    alg.run()
    wall = time.perf_counter() - t0
    burn = int(PMMH_BURNIN_FRAC * iters)
    chain = {k: np.array(alg.chain.theta[k][burn:]) for k in ("mu", "rho", "sigma")}
    if save_chain:
        np.savez(save_chain, **{k: np.array(alg.chain.theta[k]) for k in chain})
    ess = {k: bulk_ess(v) for k, v in chain.items()}
    out = {
        "Nx": PMMH_NX,
        "niter": iters,
        "burnin": burn,
        "kept": iters - burn,
        "wall_s": wall,
        "iters_per_s": iters / wall,
        "acc_rate": float(alg.acc_rate),
        "ess_bulk": ess,
        "ess_per_s": {k: e / wall for k, e in ess.items()},
        "min_ess_per_s": min(ess.values()) / wall,
        "post_mean": {k: float(v.mean()) for k, v in chain.items()},
        "post_sd": {k: float(v.std(ddof=1)) for k, v in chain.items()},
        "ess_method": "ArviZ-equivalent rank-normalised split bulk ESS (numpy/scipy)",
        "priors": PRIOR_TEXT,
        "theta0": {k: SV_B2[k] for k in ("mu", "rho", "sigma")},
        "proposal": "adaptive Gaussian RW (particles default, scale 2.38/sqrt(3)), "
        "Sigma_0 = diag(0.1^2, 0.02^2, 0.05^2)",
        "smc_options": "Bootstrap, systematic, ESSrmin=0.5, collect=off",
    }
    if iters != 10_000:
        out["wall_s_10k_extrapolated"] = wall * 10_000 / iters
    print(
        f"  pmmh {iters} iters {wall:.1f} s acc {alg.acc_rate:.3f} "
        f"ESS {ess} min ESS/s {out['min_ess_per_s']:.3g}",
        file=sys.stderr,
        flush=True,
    )
    return out


# --------------------------------------------------------------------------- main
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or ""


def main():
    args = parse_args()
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    mode = "quick" if args.quick else "full"
    parts = set(args.only.split(","))

    t0 = time.perf_counter()
    import particles
    from particles import kalman
    from particles import state_space_models as ssms

    import_s = time.perf_counter() - t0

    y_lg, y_sv = lg_data(), sv_data()
    lg = kalman.LinearGauss(
        rho=LG_B1["rho"], sigmaX=LG_B1["sigma_x"], sigmaY=LG_B1["sigma_y"], sigma0=None
    )
    sv = ssms.StochVol(mu=SV_B2["mu"], rho=SV_B2["rho"], sigma=SV_B2["sigma"])

    kf = kalman.Kalman(ssm=lg, data=y_lg)
    kf.filter()
    exact = float(np.sum(kf.logpyt))
    exact_np = lg_kalman_loglik(y_lg, LG_B1["rho"], LG_B1["sigma_x"], LG_B1["sigma_y"])
    assert abs(exact - exact_np) < 1e-8, (exact, exact_np)

    # Warm-up: the first filter compiles particles' numba resampling kernel.
    np.random.seed([args.seed, 0])
    first_s, _ = run_filter(particles, ssms, lg, y_lg, 100)
    run_filter(particles, ssms, sv, y_sv, 100)

    import numba
    import scipy

    result = {
        "peer": "particles",
        # particles 0.4 on PyPI still says __version__ = "0.3alpha"
        "version": importlib.metadata.version("particles"),
        "version_attr": particles.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {_cpu_model()}".strip(),
        "cpu_count": os.cpu_count(),
        "machine_note": args.machine_note,
        "loadavg_start": load_start,
        "mode": mode,
        "seed": args.seed,
        "dtype": "float64",
        "threads": 1,
        "import_s": import_s,
        "first_filter_s": first_s,
        "filter": "particles.SMC(Bootstrap, resampling='systematic', ESSrmin=0.5, "
        "collect='off'); time = construction + run, after a warm-up filter",
        "data": {"lg_b1": fingerprint(y_lg), "sv_b2": fingerprint(y_sv)},
    }
    if "b1" in parts:
        print("B1 linear Gaussian", file=sys.stderr)
        result["b1"] = {
            "model": "particles.kalman.LinearGauss(rho=0.9, sigmaX=1, sigmaY=1, "
            "sigma0=None -> stationary)",
            "params": LG_B1,
            "kalman_loglik": exact,
            "rows": pf_block(
                particles, ssms, lg, y_lg, RUNS_B1[mode], args.seed, "b1", exact
            ),
        }
    if "sv_pf" in parts:
        print("B2 stochastic volatility, bootstrap filter", file=sys.stderr)
        result["sv_pf"] = {
            "model": "particles.state_space_models.StochVol(mu=-1, rho=0.95, sigma=0.3)",
            "params": SV_B2,
            "rows": pf_block(
                particles, ssms, sv, y_sv, RUNS_SV[mode], args.seed, "sv_pf"
            ),
        }
    if "pmmh" in parts:
        print("B2 stochastic volatility, PMMH", file=sys.stderr)
        iters = args.pmmh_iters or PMMH_ITERS[mode]
        result["pmmh"] = run_pmmh(
            particles, ssms, y_sv, iters, args.seed, save_chain=args.save_chain
        )

    result["loadavg_end"] = os.getloadavg()
    result["total_s"] = time.perf_counter() - t_start
    print(f"total {result['total_s']:.1f} s", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
