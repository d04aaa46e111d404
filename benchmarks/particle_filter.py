"""SMC tasks B1 and B2 (SPECS-smc.md section 6): sdeppl's particle filter and PMMH
against the ``particles`` library, both run from this script on the same day.

Problems and data: ``smc_problems.py`` (NumPy only; the peer script
``peers/particles_pf.py``, run in ``/work/venv-particles``, builds bit-identical data
from it; the fingerprints of both sides are stored and compared).

B1 - linear Gaussian (``LG_B1``: rho = 0.9, sigma_x = sigma_y = 1, T = 100, stationary
    X_0), bootstrap filter, systematic resampling when ESS < 0.5 N, N = 1e2 .. 1e6:
    compile time, then the median of repeated runs of the jitted filter (as many runs
    per N as the peer: ``RUNS_B1``), particle-steps/s, mean, variance and RMSE of
    log Z-hat against the exact Kalman value. ``vmap``: one compiled call of the
    N = 100 filter for 1000 values of rho (a grid on [0, 0.99]), against a Python
    loop of 1000 single-filter calls (sdeppl, measured) and particles' loop (measured
    by a small snippet in the peer venv, and estimated as 1000 x its N = 100 median).

B2 - stochastic volatility (``SV_B2``: mu = -1, rho = 0.95, sigma = 0.3, T = 1000):
    - ``sv_pf``: the same filter for N = 1e2 .. 1e5 (runs per N: ``RUNS_SV``), written
      with ``sdeppl.solvers.particle.bootstrap`` (the engine); at N = 1e3 and 1e4 also
      through the user API, ``sp.StateSpace(sp.OU(...), method="particle")``.
    - ``sv_process``: whole-process figures at N = 1e4 (a fresh ``python``: imports,
      ``sp.configure()``, tracing, compilation and one filter; the compilation cache
      empty (cold), then filled (warm)), float64 (``jax_enable_x64``) at N = 1e4 in
      its own process, and particles' whole process (import, numba compilation, one
      filter) for comparison.
    - ``pmmh_cost``: what one PMMH step costs: the model's log-density (the
      ``StateSpace`` filter inside a NumPyro model, N = 500) for one chain and vmapped
      over 4 chains, compiled with ``jax.jit`` (what ``method="pmmh"`` uses since
      2eefa82) and with sdeppl's ``fast_compile_jit`` (what it used before),
      interleaved; against the bare engine, and a few diagnostics.
    - ``pmmh``: ``sp.fit(model, y, method="pmmh")`` in a fresh process each (whole
      process timed from the parent's spawn to the end of the fit), model::

          mu ~ Normal(0, 2), rho ~ Uniform(0, 1), sigma ~ HalfNormal(1)
          theta = -log(rho), sigma_ou = sigma sqrt(2 theta / (1 - rho^2))
          y ~ StateSpace(OU(theta, mu, sigma_ou), ts = 0 .. T-1,
                         x0 = Normal(mu, sigma / sqrt(1 - rho^2)),
                         obs = Observation(lambda x: Normal(0, exp(x / 2))),
                         method="particle", num_particles=500)

      (the OU at unit gaps is the AR(1) X_t = mu + rho (X_{t-1} - mu) + sigma U_t:
      ``check_ar1`` verifies the transition's moments). rho ~ U(0, 1) instead of the
      peer's U(-1, 1): an OU cannot represent rho <= 0; the posterior (rho ~ 0.93,
      sd 0.02) puts no mass near 0, so the two posteriors agree. 4 chains x (1000
      warm-up + 1500 draws) = 10,000 filter runs, as many as the peer's 10,000
      iterations (its first 1000 dropped as burn-in, 9000 kept; ours: 6000 kept).
      Variants: ``timed`` (``latent_paths=False, log_likelihood=False``, one CPU
      device), ``default`` (``sp.fit`` defaults: latent paths and pointwise
      log-likelihood too), ``two_devices`` (``sp.configure(host_devices=2)``: PMMH
      splits its chains across the devices, 2 per core, each half vectorised;
      run it without ``--cores``: pinned to one CPU both devices share it).
      Metric: bulk ESS of (mu, rho, sigma) (ArviZ, 4 chains) per second
      of the fit call (compile included), of the fit minus compilation, and of the
      whole process.

particles is single-threaded (BLAS/numba threads = 1). One sdeppl filter uses up to
both cores of the VM when it may (XLA runs parts of a step in parallel: process CPU
time 1.6-2x the wall time), so ``--cores 1`` pins everything, both libraries, to one
CPU for the like-for-like figures; every row records its CPU time. float32 unless
stated (particles computes in float64). The 2-core VM is shared:
before each block the script waits (up to ``--max-wait`` s) until the other processes
use less than ``--quiet`` of the CPU, and records the load average and that busy
fraction with every block.

Usage:
    python benchmarks/particle_filter.py [--quick] [--out FILE]
        [--only b1,vmap,sv_pf,sv_process,pmmh_cost,pmmh] [--peer run|skip]
        [--peer-json FILE] [--pmmh-variants timed,default,two_devices] [--seed 0]
        [--cores 1]
    python benchmarks/particle_filter.py --merge A.json B.json --out C.json
    python benchmarks/particle_filter.py --worker NAME --seed S [...]   (one run)

Writes the JSON (sdeppl, peer, ratios) to --out (default
``benchmarks/results/particle_filter.json``) and prints a summary.
"""

from __future__ import annotations

import os
import sys

# Single-threaded Eigen (the filters run on one core anyway: process CPU time equals
# wall time with or without it). Not "intra_op_parallelism_threads=1", as some scripts
# write: XLA stops parsing XLA_FLAGS at that bare word and ignores every flag after it
# (sp.configure's loop limit, the host device count).
_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false"
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "").replace(_THREAD_FLAGS, "") + " " + _THREAD_FLAGS
).strip()
os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _timing import run_worker_process  # noqa: E402
from smc_problems import (  # noqa: E402
    LG_B1,
    SV_B2,
    fingerprint,
    lg_data,
    lg_kalman_loglik,
    sv_data,
)

PEER_PYTHON = os.environ.get("PARTICLES_PYTHON", "/work/venv-particles/bin/python")
PEER_SCRIPT = HERE / "peers" / "particles_pf.py"

RUNS_B1 = {
    "full": {10**2: 100, 10**3: 100, 10**4: 50, 10**5: 20, 10**6: 10},
    "quick": {10**2: 10, 10**3: 10, 10**4: 10, 10**5: 3, 10**6: 2},
}
RUNS_SV = {
    "full": {10**2: 100, 10**3: 100, 10**4: 50, 10**5: 10},
    "quick": {10**3: 10, 10**4: 10},
}
STATESPACE_SV_N = (10**3, 10**4)
VMAP_N, VMAP_GRID = 100, (0.0, 0.99, 1000)
PMMH_N = 500
PMMH = {
    "full": {"chains": 4, "warmup": 1000, "samples": 1500},
    "quick": {"chains": 4, "warmup": 200, "samples": 300},
}
NAMES = ("mu", "rho", "sigma")


# ------------------------------------------------------------------ machine, load
def cpu_busy(seconds: float = 2.0) -> float:
    """Fraction of all CPUs busy over ``seconds`` (from /proc/stat), measured while
    this process sleeps: what the other jobs on the machine use."""

    def snap():
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        values = [int(v) for v in fields]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values), idle

    total0, idle0 = snap()
    time.sleep(seconds)
    total1, idle1 = snap()
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_for_quiet(args, label: str) -> dict:
    """Wait until the other processes use less than ``args.quiet`` of the CPUs (or
    ``args.max_wait`` seconds passed); return what was seen."""
    start = time.perf_counter()
    busy = cpu_busy()
    while busy > args.quiet and time.perf_counter() - start < args.max_wait:
        print(
            f"  [{label}] machine busy ({busy:.0%} of CPUs, load "
            f"{os.getloadavg()[0]:.2f}); waiting",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(20)
        busy = cpu_busy()
    return {
        "loadavg": list(os.getloadavg()),
        "others_cpu_busy": round(busy, 3),
        "waited_s": round(time.perf_counter() - start, 1),
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or ""


def _git_state() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "sdeppl"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return rev + (" + uncommitted changes in sdeppl/" if dirty else "")
    except OSError:
        return ""


# ------------------------------------------------------------------ models (JAX)
def lg_feynman_kac(y, rho, sigma_x, sigma_y):
    """B1 as a bootstrap Feynman-Kac model on ``(N,)`` particles."""
    import jax
    import jax.numpy as jnp

    from sdeppl.solvers.particle import bootstrap

    dtype = y.dtype
    sd0 = sigma_x / jnp.sqrt(1.0 - rho**2)
    log_norm = -jnp.log(sigma_y) - 0.5 * jnp.log(2.0 * jnp.pi)

    def initial(key, num):
        return sd0 * jax.random.normal(key, (num,), dtype)

    def move(key, t, x):
        return rho * x + sigma_x * jax.random.normal(key, x.shape, dtype)

    def log_observation(t, x):
        return log_norm - 0.5 * ((y[t] - x) / sigma_y) ** 2

    return bootstrap(initial, move, log_observation, y.shape[0])


def sv_feynman_kac(y, mu, rho, sigma):
    """B2 as a bootstrap Feynman-Kac model on ``(N,)`` particles."""
    import jax
    import jax.numpy as jnp

    from sdeppl.solvers.particle import bootstrap

    dtype = y.dtype
    sd0 = sigma / jnp.sqrt(1.0 - rho**2)

    def initial(key, num):
        return mu + sd0 * jax.random.normal(key, (num,), dtype)

    def move(key, t, x):
        return mu + rho * (x - mu) + sigma * jax.random.normal(key, x.shape, dtype)

    def log_observation(t, x):  # log N(y_t; 0, exp(x))
        return -0.5 * (jnp.log(2.0 * jnp.pi) + x + y[t] ** 2 * jnp.exp(-x))

    return bootstrap(initial, move, log_observation, y.shape[0])


def ou_of_ar1(mu, rho, sigma):
    """The OU whose unit-gap transition is the AR(1) ``mu + rho (x - mu) + sigma U``:
    ``(theta, mu, sigma_ou)``."""
    import jax.numpy as jnp

    theta = -jnp.log(rho)
    return theta, mu, sigma * jnp.sqrt(2.0 * theta / (1.0 - rho**2))


def sv_statespace(num_steps, mu, rho, sigma, num_particles, key=None, dtype=None):
    """The SV model through the user API (``sp.StateSpace(..., method="particle")``)."""
    import jax.numpy as jnp
    import numpyro.distributions as dist

    import sdeppl as sp

    theta, mu_ou, sigma_ou = ou_of_ar1(mu, rho, sigma)
    return sp.StateSpace(
        sp.OU(theta, mu_ou, sigma_ou),
        # NumPy times: with jnp.arange (traced inside the model) sp.fit finds no
        # concrete times and silently skips the latent paths (see the results)
        ts=np.arange(num_steps, dtype=np.dtype(dtype or np.float32)),
        x0=dist.Normal(mu, sigma / jnp.sqrt(1.0 - rho**2)),
        obs=sp.Observation(lambda x: dist.Normal(0.0, jnp.exp(x / 2.0))),
        method="particle",
        num_particles=num_particles,
        key=key,
    )


def sv_model(y, num_particles=PMMH_N):
    """The PMMH model (see the module docstring)."""
    import numpyro
    import numpyro.distributions as dist

    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    rho = numpyro.sample("rho", dist.Uniform(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.sample("y", sv_statespace(y.shape[0], mu, rho, sigma, num_particles), obs=y)


def check_ar1(dtype_name="float32") -> dict:
    """The OU's exact unit-gap transition has the AR(1) mean and sd, at the true
    values and at a few others."""
    import jax.numpy as jnp

    import sdeppl as sp

    worst = 0.0
    for mu, rho, sigma in ((-1.0, 0.95, 0.3), (0.5, 0.5, 1.0), (-2.0, 0.999, 0.1)):
        theta, mu_ou, sigma_ou = ou_of_ar1(mu, rho, sigma)
        tr = sp.OU(theta, mu_ou, sigma_ou).transition("exact", ())
        x0 = jnp.asarray([[-3.0], [0.0], [2.0]], dtype_name)
        mean, sd = tr.moments(jnp.asarray(0.0), jnp.asarray(1.0), x0, None)
        want_mean = mu + rho * (np.asarray(x0) - mu)
        worst = max(
            worst,
            float(np.max(np.abs(np.asarray(mean) - want_mean))),
            float(np.max(np.abs(np.asarray(sd) - sigma))),
        )
    return {"max_abs_error_mean_sd": worst, "ok": worst < 1e-5}


# ------------------------------------------------------------------ timing helpers
def compile_fn(fn, *example):
    """``jax.jit(fn)`` lowered and compiled; returns (compiled, trace+lower s,
    XLA compile s)."""
    import jax

    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(*example)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    return compiled, t1 - t0, time.perf_counter() - t1


def timed_runs(compiled, keys, extra=(), cpu=None):
    """Run ``compiled(key, *extra)`` once per key; (wall seconds, outputs as floats).
    ``cpu``, a list, receives each run's process CPU seconds (less than the wall
    time when other jobs took the core)."""
    import jax

    times, values = [], []
    for key in keys:
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(key, *extra))
        times.append(time.perf_counter() - t0)
        if cpu is not None:
            cpu.append(time.process_time() - c0)
        values.append(float(out))
    return times, values


def child_cpu() -> float:
    """CPU seconds of the finished child processes so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def pf_row(label, N, T, times, lls, compile_s, exact=None, **extra) -> dict:
    lls_a = np.asarray(lls, dtype=float)
    med = statistics.median(times)
    var = float(np.var(lls_a, ddof=1)) if len(lls) > 1 else None
    row = {
        "impl": label,
        "N": N,
        "T": T,
        "runs": len(times),
        "compile_s": compile_s,
        "median_s": med,
        "min_s": min(times),
        "particle_steps_per_s": N * T / med,
        "loglik_mean": float(lls_a.mean()),
        "loglik_var": var,
        "loglik_sd": None if var is None else var**0.5,
        "var_x_time": None if var is None else var * med,
        **extra,
    }
    if exact is not None:
        err = lls_a - exact
        row["loglik_bias"] = float(err.mean())
        row["loglik_rmse"] = float(np.sqrt(np.mean(err**2)))
    row["times_s"] = [round(t, 6) for t in times]
    row["logliks"] = [float(v) for v in lls]
    return row


def filter_block(label, make_fn, T, runs_per_n, seed, exact=None, args=None):
    """Compile and time ``make_fn(N)`` (a function key -> log Z-hat) for every N."""
    import jax

    rows = []
    for N, runs in runs_per_n.items():
        load = wait_for_quiet(args, f"{label} N={N}") if args else {}
        compiled, trace_s, xla_s = compile_fn(make_fn(N), jax.random.key(0))
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(jax.random.key(0)))
        first_s = time.perf_counter() - t0
        keys = jax.random.split(jax.random.key(seed * 1000 + 7), runs)
        cpus = []
        times, lls = timed_runs(compiled, keys, cpu=cpus)
        row = pf_row(
            label,
            N,
            T,
            times,
            lls,
            trace_s + xla_s,
            exact,
            trace_lower_s=trace_s,
            xla_compile_s=xla_s,
            first_call_s=first_s,
            median_cpu_s=statistics.median(cpus),
            cpu_over_wall=sum(cpus) / sum(times),
            load=load,
        )
        rows.append(row)
        print(
            f"  {label} N={N:>8} runs={runs:>3} compile {row['compile_s']:.2f} s "
            f"median {row['median_s']:.4g} s loglik {row['loglik_mean']:.3f} "
            f"sd {row['loglik_sd'] or 0:.3g}",
            file=sys.stderr,
            flush=True,
        )
    return rows


# ------------------------------------------------------------------ B1
def run_b1(args, mode) -> dict:
    import jax.numpy as jnp

    from sdeppl.solvers.particle import particle_filter

    y_np = lg_data()
    y = jnp.asarray(y_np, jnp.float32)
    p = LG_B1
    exact = lg_kalman_loglik(y_np, p["rho"], p["sigma_x"], p["sigma_y"])

    def make(N):
        def fn(key):
            fk = lg_feynman_kac(y, p["rho"], p["sigma_x"], p["sigma_y"])
            return particle_filter(fk, key, N, history=False).log_evidence

        return fn

    rows = filter_block(
        "sdeppl bootstrap (engine)",
        make,
        len(y_np),
        RUNS_B1[mode],
        args.seed,
        exact,
        args,
    )
    return {"kalman_loglik": exact, "dtype": "float32", "rows": rows}


def run_vmap(args, mode) -> dict:
    """1000 values of rho at N = 100: one vmapped call against a loop of calls."""
    import jax
    import jax.numpy as jnp

    from sdeppl.solvers.particle import particle_filter

    load = wait_for_quiet(args, "vmap")
    y_np = lg_data()
    y = jnp.asarray(y_np, jnp.float32)
    p = LG_B1
    lo, hi, count = VMAP_GRID
    rhos = jnp.linspace(lo, hi, count, dtype=jnp.float32)
    keys = jax.random.split(jax.random.key(args.seed + 11), count)

    def one(key, rho):
        fk = lg_feynman_kac(y, rho, p["sigma_x"], p["sigma_y"])
        return particle_filter(fk, key, VMAP_N, history=False).log_evidence

    many = jax.vmap(one, in_axes=(0, 0))
    compiled, trace_s, xla_s = compile_fn(many, keys, rhos)
    jax.block_until_ready(compiled(keys, rhos))
    repeats = 10 if mode == "full" else 3
    times = []
    for i in range(repeats):
        ks = jax.random.split(jax.random.key(args.seed + 100 + i), count)
        t0 = time.perf_counter()
        lls = jax.block_until_ready(compiled(ks, rhos))
        times.append(time.perf_counter() - t0)
    vmap_s = statistics.median(times)
    exact = np.array(
        [
            lg_kalman_loglik(y_np, float(r), p["sigma_x"], p["sigma_y"])
            for r in np.asarray(rhos, dtype=float)
        ]
    )
    err = np.asarray(lls, dtype=float) - exact

    # the same 1000 likelihoods as a Python loop of single jitted calls
    single, s_trace, s_xla = compile_fn(one, keys[0], rhos[0])
    jax.block_until_ready(single(keys[0], rhos[0]))
    loops = []
    for _ in range(3 if mode == "full" else 1):
        t0 = time.perf_counter()
        for i in range(count):
            out = single(keys[i], rhos[i])
        jax.block_until_ready(out)
        loops.append(time.perf_counter() - t0)
    loop_s = statistics.median(loops)
    print(
        f"  vmap {count} x N={VMAP_N}: {vmap_s:.4f} s ({vmap_s / count * 1e6:.1f} us "
        f"per likelihood); loop {loop_s:.3f} s",
        file=sys.stderr,
        flush=True,
    )
    return {
        "N": VMAP_N,
        "T": len(y_np),
        "grid": f"rho = linspace({lo}, {hi}, {count}), sigma_x = sigma_y = 1",
        "compile_s": trace_s + xla_s,
        "vmap_call_median_s": vmap_s,
        "vmap_call_times_s": times,
        "vmap_per_likelihood_s": vmap_s / count,
        "loop_total_median_s": loop_s,
        "loop_per_likelihood_s": loop_s / count,
        "loop_compile_s": s_trace + s_xla,
        "loglik_rmse_vs_kalman_over_grid": float(np.sqrt(np.mean(err**2))),
        "loglik_bias_vs_kalman_over_grid": float(np.mean(err)),
        "load": load,
    }


# ------------------------------------------------------------------ B2 filter
def run_sv_pf(args, mode) -> dict:
    import jax.numpy as jnp

    from sdeppl.solvers.particle import particle_filter

    y_np = sv_data()
    y = jnp.asarray(y_np, jnp.float32)
    p = SV_B2

    def make_engine(N):
        def fn(key):
            fk = sv_feynman_kac(y, p["mu"], p["rho"], p["sigma"])
            return particle_filter(fk, key, N, history=False).log_evidence

        return fn

    def make_api(N):
        def fn(key):
            model = sv_statespace(len(y_np), p["mu"], p["rho"], p["sigma"], N)
            return model.filter_log_prob(y, key)

        return fn

    rows = filter_block(
        "sdeppl bootstrap (engine)",
        make_engine,
        len(y_np),
        RUNS_SV[mode],
        args.seed,
        args=args,
    )
    api_runs = {n: r for n, r in RUNS_SV[mode].items() if n in STATESPACE_SV_N}
    rows += filter_block(
        "sdeppl sp.StateSpace(OU, method='particle')",
        make_api,
        len(y_np),
        api_runs,
        args.seed,
        args=args,
    )
    return {"dtype": "float32", "ar1_check": check_ar1(), "rows": rows}


def worker_sv_filter(args) -> dict:
    """Fresh process: imports, configure, tracing, compilation and one filter at
    N = args.n (whole process, measured to the end of the first result); then
    ``args.runs`` more runs for the in-process figures."""
    t_main = time.time()
    t0 = time.perf_counter()
    import jax

    import sdeppl as sp

    sp.configure()  # loop tuning and the persistent cache ($SDEPPL_COMPILATION_CACHE)
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from sdeppl.solvers.particle import particle_filter

    import_s = time.perf_counter() - t0
    dtype = jnp.float64 if args.x64 else jnp.float32
    y = jnp.asarray(sv_data(), dtype)
    p = SV_B2
    N = args.n

    def fn(key):
        if args.api == "statespace":
            model = sv_statespace(
                y.shape[0], p["mu"], p["rho"], p["sigma"], N, dtype=dtype
            )
            return model.filter_log_prob(y, key)
        fk = sv_feynman_kac(y, p["mu"], p["rho"], p["sigma"])
        return particle_filter(fk, key, N, history=False).log_evidence

    t0 = time.perf_counter()
    compiled, trace_s, xla_s = compile_fn(fn, jax.random.key(0))
    first = float(compiled(jax.random.key(args.seed)))
    first_s = time.perf_counter() - t0
    t_first = time.time()
    cpu_first = time.process_time()
    keys = jax.random.split(jax.random.key(args.seed * 1000 + 7), args.runs)
    cpus = []
    times, lls = timed_runs(compiled, keys, cpu=cpus)
    return {
        "process_cpu_to_first_result_s": cpu_first,
        "median_cpu_s": statistics.median(cpus),
        "t_main_epoch": t_main,
        "t_first_result_epoch": t_first,
        "import_configure_s": import_s,
        "trace_lower_s": trace_s,
        "xla_compile_s": xla_s,
        "compile_and_first_run_s": first_s,
        "first_loglik": first,
        "N": N,
        "dtype": str(np.dtype(dtype)),
        "api": args.api,
        "runs": args.runs,
        "median_s": statistics.median(times),
        "times_s": times,
        "logliks": lls,
        "loglik_mean": float(np.mean(lls)),
        "loglik_var": float(np.var(lls, ddof=1)),
    }


PEER_ONE_FILTER = r"""
import json, os, sys, time
t0 = time.perf_counter()
import numpy as np
import particles
from particles import state_space_models as ssms
import_s = time.perf_counter() - t0
sys.path.insert(0, sys.argv[1])
from smc_problems import SV_B2, sv_data
y = sv_data()
np.random.seed(int(sys.argv[3]))
model = ssms.StochVol(mu=SV_B2["mu"], rho=SV_B2["rho"], sigma=SV_B2["sigma"])
t1 = time.perf_counter()
pf = particles.SMC(fk=ssms.Bootstrap(ssm=model, data=y), N=int(sys.argv[2]),
                   resampling="systematic", ESSrmin=0.5, collect="off")
pf.run()
print(json.dumps({"t_first_result_epoch": time.time(), "import_s": import_s,
                  "first_filter_s": time.perf_counter() - t1,
                  "first_loglik": float(pf.logLt)}))
"""

PEER_VMAP_LOOP = r"""
import json, sys, time
import numpy as np
import particles
from particles import kalman, state_space_models as ssms
sys.path.insert(0, sys.argv[1])
from smc_problems import LG_B1, lg_data
y = lg_data()
lo, hi = float(sys.argv[2]), float(sys.argv[3])
count, N = int(sys.argv[4]), int(sys.argv[5])
def one(rho):
    m = kalman.LinearGauss(rho=rho, sigmaX=LG_B1["sigma_x"], sigmaY=LG_B1["sigma_y"],
                           sigma0=None)
    pf = particles.SMC(fk=ssms.Bootstrap(ssm=m, data=y), N=N, resampling="systematic",
                       ESSrmin=0.5, collect="off")
    pf.run()
    return pf.logLt
np.random.seed(0)
one(0.5)  # numba compilation of the resampler
t0 = time.perf_counter()
lls = [one(float(r)) for r in np.linspace(lo, hi, count)]
print(json.dumps({"loop_total_s": time.perf_counter() - t0, "count": count, "N": N}))
"""


def _peer_env():
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NUMBA_NUM_THREADS": "1",
    }


def run_peer_snippet(code, *argv) -> dict:
    out = subprocess.run(
        [PEER_PYTHON, "-c", code, *map(str, argv)],
        capture_output=True,
        text=True,
        check=True,
        env=_peer_env(),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_sv_process(args, mode, peer_enabled) -> dict:
    """Whole-process figures at N = 1e4 (see the module docstring)."""
    out = {"N": 10**4}
    runs = 10 if mode == "full" else 3
    with tempfile.TemporaryDirectory(prefix="sdeppl_pf_cache_") as cache:
        for label, extra in (
            ("cold", ()),
            ("warm", ()),
            ("statespace_cold", ("--api", "statespace")),
        ):
            cache_dir = os.path.join(cache, "ss" if "statespace" in label else "main")
            load = wait_for_quiet(args, f"sv_process {label}")
            t_spawn, cpu0 = time.time(), child_cpu()
            res = run_worker_process(
                __file__,
                "sv_filter",
                args.seed,
                cache_dir,
                ("--n", "10000", "--runs", str(runs), *extra),
            )
            res["process_cpu_s"] = child_cpu() - cpu0
            res["whole_process_s"] = res["t_first_result_epoch"] - t_spawn
            res["interpreter_and_imports_s"] = (
                res["t_main_epoch"] - t_spawn + res["import_configure_s"]
            )
            res["load"] = load
            out[label] = res
            print(
                f"  sv_process {label}: whole process {res['whole_process_s']:.2f} s, "
                f"in-process median {res['median_s']:.4f} s",
                file=sys.stderr,
                flush=True,
            )
        load = wait_for_quiet(args, "sv_process float64")
        res = run_worker_process(
            __file__,
            "sv_filter",
            args.seed,
            os.path.join(cache, "x64"),
            ("--n", "10000", "--runs", str(20 if mode == "full" else 3), "--x64"),
        )
        res["load"] = load
        out["float64"] = res
        print(
            f"  sv_process float64: in-process median {res['median_s']:.4f} s, var "
            f"{res['loglik_var']:.4f}",
            file=sys.stderr,
            flush=True,
        )
    if peer_enabled:
        peer = []
        for i in range(3 if mode == "full" else 1):
            load = wait_for_quiet(args, "particles whole process")
            t_spawn, cpu0 = time.time(), child_cpu()
            res = run_peer_snippet(PEER_ONE_FILTER, HERE, 10**4, args.seed + i)
            res["process_cpu_s"] = child_cpu() - cpu0
            res["whole_process_s"] = res["t_first_result_epoch"] - t_spawn
            res["load"] = load
            peer.append(res)
        out["particles_whole_process"] = {
            "runs": peer,
            "median_whole_process_s": statistics.median(
                r["whole_process_s"] for r in peer
            ),
        }
        print(
            f"  particles whole process: "
            f"{out['particles_whole_process']['median_whole_process_s']:.2f} s",
            file=sys.stderr,
            flush=True,
        )
    return out


# ------------------------------------------------------------------ PMMH cost
def run_pmmh_cost(args, mode) -> dict:
    """Per-filter cost at N = 500 along the PMMH route, interleaved rounds."""
    import jax
    import jax.numpy as jnp

    from sdeppl._xla import fast_compile_jit
    from sdeppl.infer._model import ModelAdapter
    from sdeppl.solvers.particle import particle_filter

    load = wait_for_quiet(args, "pmmh_cost")
    y_np = sv_data()
    y = jnp.asarray(y_np, jnp.float32)
    p = SV_B2
    adapter = ModelAdapter(sv_model, (y_np.astype(np.float32),), {})
    # unconstrained (mu, logit rho, log sigma) at the true values, in the adapter's
    # (alphabetical) order
    truth = {"mu": p["mu"], "rho": p["rho"], "sigma": p["sigma"]}
    from jax.flatten_util import ravel_pytree

    z, _ = ravel_pytree(
        {
            "mu": jnp.asarray(truth["mu"], jnp.float32),
            "rho": jnp.log(truth["rho"] / (1 - truth["rho"])).astype(jnp.float32),
            "sigma": jnp.log(jnp.asarray(truth["sigma"], jnp.float32)),
        }
    )
    constrained = adapter.constrain(z)
    assert all(abs(float(constrained[k]) - truth[k]) < 1e-5 for k in NAMES), constrained
    chains = PMMH[mode]["chains"]
    zs = jnp.tile(z, (chains, 1))

    def raw(k):
        return jax.random.key_data(k)

    def engine(key):
        fk = sv_feynman_kac(y, p["mu"], p["rho"], p["sigma"])
        return particle_filter(fk, key, PMMH_N, history=False).log_evidence

    def statespace(key):
        model = sv_statespace(len(y_np), p["mu"], p["rho"], p["sigma"], PMMH_N)
        return model.filter_log_prob(y, key)

    def statespace_no_vmap(key):  # internal: one series, no vmap around the filter
        model = sv_statespace(len(y_np), p["mu"], p["rho"], p["sigma"], PMMH_N)
        return model._run(key, y[:, None], history=False).log_evidence

    variants = {
        "engine, 1 filter (jit)": (jax.jit(engine), lambda k: (k,), 1),
        "StateSpace.filter_log_prob, 1 filter (jit)": (
            jax.jit(statespace),
            lambda k: (k,),
            1,
        ),
        "model log-density, 1 chain (jit)": (
            jax.jit(adapter.seeded_logdensity),
            lambda k: (z, raw(k)),
            1,
        ),
        "model log-density, 1 chain (fast_compile_jit)": (
            fast_compile_jit(adapter.seeded_logdensity),
            lambda k: (z, raw(k)),
            1,
        ),
        f"model log-density, vmap over {chains} chains (jit)": (
            jax.jit(jax.vmap(adapter.seeded_logdensity)),
            lambda k: (zs, jax.vmap(raw)(jax.random.split(k, chains))),
            chains,
        ),
        f"model log-density, vmap over {chains} chains (fast_compile_jit, as "
        "PMMH before 2eefa82)": (
            fast_compile_jit(jax.vmap(adapter.seeded_logdensity)),
            lambda k: (zs, jax.vmap(raw)(jax.random.split(k, chains))),
            chains,
        ),
        f"engine, vmap over {chains} keys (jit)": (
            jax.jit(jax.vmap(engine)),
            lambda k: (jax.random.split(k, chains),),
            chains,
        ),
        # diagnostics: where the route's time goes
        "engine, vmap over 1 key (jit)": (
            jax.jit(lambda k: jax.vmap(engine)(k[None])[0]),
            lambda k: (k,),
            1,
        ),
        "StateSpace._run without the per-series vmap (jit)": (
            jax.jit(statespace_no_vmap),
            lambda k: (k,),
            1,
        ),
        f"engine, lax.map over {chains} keys (jit)": (
            jax.jit(lambda ks: jax.lax.map(engine, ks)),
            lambda k: (jax.random.split(k, chains),),
            chains,
        ),
        f"model log-density, lax.map over {chains} chains (jit)": (
            jax.jit(
                lambda zz, kk: jax.lax.map(
                    lambda a: adapter.seeded_logdensity(*a), (zz, kk)
                )
            ),
            lambda k: (zs, jax.vmap(raw)(jax.random.split(k, chains))),
            chains,
        ),
    }
    compiled, results = {}, {}
    for name, (fn, make_args, per) in variants.items():
        a = make_args(jax.random.key(0))
        t0 = time.perf_counter()
        c = fn.lower(*a).compile()
        results[name] = {
            "compile_s": time.perf_counter() - t0,
            "filters_per_call": per,
            "times": [],
            "cpu": [],
        }
        jax.block_until_ready(c(*a))
        compiled[name] = (c, make_args)
    rounds = 20 if mode == "full" else 5
    for r in range(rounds):
        for name, (c, make_args) in compiled.items():
            a = make_args(jax.random.key(1000 + r))
            c0 = time.process_time()
            t0 = time.perf_counter()
            jax.block_until_ready(c(*a))
            results[name]["times"].append(time.perf_counter() - t0)
            results[name]["cpu"].append(time.process_time() - c0)
    for name, res in results.items():
        res["median_call_s"] = statistics.median(res["times"])
        res["per_filter_s"] = res["median_call_s"] / res["filters_per_call"]
        res["per_filter_cpu_s"] = (
            statistics.median(res["cpu"]) / res["filters_per_call"]
        )
        print(
            f"  pmmh_cost {name}: {res['per_filter_s'] * 1e3:.2f} ms per filter",
            file=sys.stderr,
            flush=True,
        )
    return {
        "N": PMMH_N,
        "T": len(y_np),
        "rounds": rounds,
        "rows": results,
        "load": load,
    }


# ------------------------------------------------------------------ PMMH
def worker_pmmh(args) -> dict:
    t_main = time.time()
    t0 = time.perf_counter()
    import sdeppl as sp

    settings = sp.configure(host_devices=2 if args.variant == "two_devices" else None)
    import jax
    from _timing import CompileSpans

    import_s = time.perf_counter() - t0
    spans = CompileSpans()
    y = sv_data().astype(np.float32)
    opts = PMMH["quick" if args.quick else "full"]
    full = args.variant == "default"
    c0 = time.process_time()
    t0 = time.perf_counter()
    fit = sp.fit(
        sv_model,
        y,
        method="pmmh",
        seed=args.seed,
        progress=False,
        **opts,
        **({} if full else {"latent_paths": False, "log_likelihood": False}),
    )
    fit_s = time.perf_counter() - t0
    fit_cpu_s = time.process_time() - c0
    t_end = time.time()
    compile_s = spans.total()

    import arviz as az

    idata = fit.idata
    ess = az.ess(idata, var_names=list(NAMES), method="bulk")
    rhat = az.rhat(idata, var_names=list(NAMES))
    post = idata.posterior
    meta = json.loads(post.attrs["sdeppl"])
    ess_d = {k: float(ess[k]) for k in NAMES}
    per_chain_filters = opts["warmup"] + opts["samples"]
    return {
        "variant": args.variant,
        "settings": {**opts, "num_particles": PMMH_N},
        "filter_runs": opts["chains"] * per_chain_filters,
        "kept_draws": opts["chains"] * opts["samples"],
        "devices": [str(d) for d in jax.local_devices()],
        "xla_flags": settings["xla_flags"],
        "t_main_epoch": t_main,
        "t_end_epoch": t_end,
        "import_configure_s": import_s,
        "fit_s": fit_s,
        "fit_cpu_s": fit_cpu_s,
        "compile_s": compile_s,
        "fit_timing_s": meta["timing_s"],
        "ess_bulk": ess_d,
        "rhat": {k: float(rhat[k]) for k in NAMES},
        "post_mean": {k: float(post[k].mean()) for k in NAMES},
        "post_sd": {k: float(post[k].std()) for k in NAMES},
        "acceptance_rate": meta["backend_info"].get("acceptance_rate"),
        "loglik_variance_at_median": meta["backend_info"].get(
            "log_likelihood_variance"
        ),
        "tuning": meta.get("tuning"),
        "min_ess_per_fit_s": min(ess_d.values()) / fit_s,
        "min_ess_per_fit_minus_compile_s": min(ess_d.values()) / (fit_s - compile_s),
        "per_filter_s": (meta["timing_s"]["run"] - compile_s)
        / (opts["chains"] * per_chain_filters),
    }


def run_pmmh(args, mode) -> dict:
    out = {}
    for variant in args.pmmh_variants.split(","):
        load = wait_for_quiet(args, f"pmmh {variant}")
        with tempfile.TemporaryDirectory(prefix="sdeppl_pmmh_cache_") as cache:
            t_spawn, cpu0 = time.time(), child_cpu()
            extra = ["--variant", variant] + (["--quick"] if mode == "quick" else [])
            res = run_worker_process(__file__, "pmmh", args.seed, cache, extra)
            res["whole_process_cpu_s"] = child_cpu() - cpu0
        res["whole_process_s"] = res["t_end_epoch"] - t_spawn
        res["min_ess_per_whole_process_s"] = (
            min(res["ess_bulk"].values()) / res["whole_process_s"]
        )
        res["min_ess_per_fit_cpu_s"] = min(res["ess_bulk"].values()) / res["fit_cpu_s"]
        res["load"] = {"before": load, "after": list(os.getloadavg())}
        out[variant] = res
        print(
            f"  pmmh {variant}: fit {res['fit_s']:.1f} s (compile "
            f"{res['compile_s']:.1f}), whole {res['whole_process_s']:.1f} s, ESS "
            f"{ {k: round(v) for k, v in res['ess_bulk'].items()} }, R-hat "
            f"{ {k: round(v, 3) for k, v in res['rhat'].items()} }",
            file=sys.stderr,
            flush=True,
        )
    return out


# ------------------------------------------------------------------ peer, ratios
def run_peer(args, mode, parts) -> dict | None:
    if args.peer_json:
        return json.loads(Path(args.peer_json).read_text())
    if args.peer == "skip":
        return None
    peer_parts = [
        p
        for p in ("b1", "sv_pf", "pmmh")
        if p in parts or (p == "b1" and "vmap" in parts)
    ]
    if not peer_parts:
        return None
    load = wait_for_quiet(args, "particles")
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out_path = f.name
    cmd = [
        PEER_PYTHON,
        str(PEER_SCRIPT),
        "--only",
        ",".join(peer_parts),
        "--out",
        out_path,
        "--seed",
        str(args.seed),
        "--machine-note",
        f"run by benchmarks/particle_filter.py; others' CPU use before: "
        f"{load['others_cpu_busy']:.0%}",
    ]
    if mode == "quick":
        cmd.append("--quick")
    print(f"particles: {' '.join(cmd)}", file=sys.stderr, flush=True)
    cpu0 = child_cpu()
    subprocess.run(cmd, check=True, env=_peer_env(), stdout=subprocess.DEVNULL)
    result = json.loads(Path(out_path).read_text())
    result["load_before"] = load
    result["process_cpu_s"] = child_cpu() - cpu0
    result["cpu_over_wall"] = result["process_cpu_s"] / result["total_s"]
    os.unlink(out_path)
    return result


def _rows_by_n(rows, impl=None):
    return {r["N"]: r for r in rows if impl is None or r["impl"] == impl}


def compute_ratios(sd: dict, peer: dict | None) -> dict:
    """particles / sdeppl: > 1 means sdeppl is faster (or has more ESS/s)."""
    if not peer:
        return {}
    out = {"particles_filter_run_cpu_over_wall": peer.get("cpu_over_wall")}
    engine = "sdeppl bootstrap (engine)"
    api = "sdeppl sp.StateSpace(OU, method='particle')"
    for part in ("b1", "sv_pf"):
        if part not in sd or part not in peer:
            continue
        theirs = _rows_by_n(peer[part]["rows"])
        api_rows = _rows_by_n(sd[part]["rows"], api)
        eng_rows = _rows_by_n(sd[part]["rows"], engine)
        rows = []
        for N in sorted(set(eng_rows) & set(theirs)):
            a, b = eng_rows[N], theirs[N]
            row = {
                "N": N,
                "time_ratio_particles_over_sdeppl": b["median_s"] / a["median_s"],
                "var_sdeppl": a["loglik_var"],
                "var_particles": b["loglik_var"],
                "var_ratio_sdeppl_over_particles": (
                    a["loglik_var"] / b["loglik_var"]
                    if a["loglik_var"] and b["loglik_var"]
                    else None
                ),
                "var_x_time_ratio_particles_over_sdeppl": (
                    b["var_x_time"] / a["var_x_time"]
                    if a.get("var_x_time") and b.get("var_x_time")
                    else None
                ),
            }
            if N in api_rows:
                row["time_ratio_particles_over_statespace"] = (
                    b["median_s"] / api_rows[N]["median_s"]
                )
            rows.append(row)
        out[part] = rows
    if "vmap" in sd and "b1" in peer:
        v = sd["vmap"]
        p100 = _rows_by_n(peer["b1"]["rows"]).get(VMAP_N)
        if p100:
            est = p100["median_s"]
            out["vmap"] = {
                "particles_per_likelihood_estimated_s": est,
                "particles_over_sdeppl_vmap_estimated": est
                / v["vmap_per_likelihood_s"],
            }
            if "particles_loop" in sd:
                loop = (
                    sd["particles_loop"]["loop_total_s"] / sd["particles_loop"]["count"]
                )
                out["vmap"]["particles_per_likelihood_measured_s"] = loop
                out["vmap"]["particles_over_sdeppl_vmap_measured"] = (
                    loop / v["vmap_per_likelihood_s"]
                )
            out["vmap"]["sdeppl_loop_over_sdeppl_vmap"] = (
                v["loop_per_likelihood_s"] / v["vmap_per_likelihood_s"]
            )
    if "sv_process" in sd and "particles_whole_process" in sd["sv_process"]:
        pw = sd["sv_process"]["particles_whole_process"]["median_whole_process_s"]
        out["sv_whole_process"] = {
            k: pw / sd["sv_process"][k]["whole_process_s"]
            for k in ("cold", "warm", "statespace_cold")
            if k in sd["sv_process"]
        }
    if "pmmh" in sd and "pmmh" in peer:
        pm = peer["pmmh"]
        peer_min = min(pm["ess_bulk"].values())
        proc = pm.get("process") or peer
        peer_whole = (
            pm["wall_s"]
            + (proc.get("import_s") or 0)
            + (proc.get("first_filter_s") or 0)
        )
        peer_rate = peer_min / pm["wall_s"]
        peer_rate_whole = peer_min / peer_whole
        peer_cpu = proc.get("process_cpu_s")
        out["pmmh"] = {
            "particles_min_ess_per_cpu_s": peer_min / peer_cpu if peer_cpu else None,
            "particles_min_ess_per_s": peer_rate,
            "particles_min_ess_per_whole_process_s_estimated": peer_rate_whole,
            "particles_per_filter_s": pm["wall_s"] / pm["niter"],
        }
        for variant, res in sd["pmmh"].items():
            out["pmmh"][variant] = {
                "min_ess_per_fit_s_over_particles": res["min_ess_per_fit_s"]
                / peer_rate,
                "min_ess_per_fit_minus_compile_s_over_particles": res[
                    "min_ess_per_fit_minus_compile_s"
                ]
                / peer_rate,
                "min_ess_per_whole_process_s_over_particles_whole": res[
                    "min_ess_per_whole_process_s"
                ]
                / peer_rate_whole,
                "per_filter_speedup": (pm["wall_s"] / pm["niter"])
                / res["per_filter_s"],
                "min_ess_per_fit_cpu_s_over_particles_cpu": (
                    res["min_ess_per_fit_cpu_s"] / (peer_min / peer_cpu)
                    if peer_cpu and "min_ess_per_fit_cpu_s" in res
                    else None
                ),
                "per_parameter_ess_per_s_over_particles": {
                    k: (res["ess_bulk"][k] / res["fit_s"]) / pm["ess_per_s"][k]
                    for k in NAMES
                },
            }
    return out


# ------------------------------------------------------------------ main
def merge(files, out) -> None:
    """Combine results of separate runs (e.g. the filters, then PMMH): later files
    add or replace parts; ratios are recomputed."""
    runs = [json.loads(Path(f).read_text()) for f in files]
    combined = runs[0]
    combined["merged_from"] = []
    for f, r in zip(files, runs, strict=True):
        combined["merged_from"].append(
            {
                "file": str(f),
                "parts": sorted(r["sdeppl"]),
                "cores": r.get("cores"),
                **{
                    k: r.get(k)
                    for k in ("date", "sdeppl_git", "loadavg_start", "loadavg_end")
                },
                "total_s": r.get("total_s"),
            }
        )
        if r is combined:
            continue
        for part, value in r["sdeppl"].items():
            # a later run of a part replaces it; both PMMH runs are kept (the
            # variants of the latest one first), with the run's pinning noted
            if part == "pmmh" and "pmmh" in combined["sdeppl"]:
                earlier = combined["sdeppl"].setdefault("pmmh_earlier_runs", [])
                earlier.append(combined["sdeppl"]["pmmh"])
            if part == "pmmh":
                for res in value.values():
                    res["cores"] = r.get("cores")
            combined["sdeppl"][part] = value
        if r.get("particles"):
            if not combined.get("particles"):
                combined["particles"] = r["particles"]
            else:
                for k in ("b1", "sv_pf", "pmmh"):
                    if k in r["particles"]:
                        combined["particles"][k] = r["particles"][k]
    if combined.get("particles"):
        combined["same_data"] = combined["particles"].get("data") == combined["data"]
    combined["ratios"] = compute_ratios(combined["sdeppl"], combined["particles"])
    Path(out).write_text(json.dumps(combined, indent=1))
    print(json.dumps(combined["ratios"], indent=1))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(HERE / "results" / "particle_filter.json"))
    p.add_argument("--only", default="b1,vmap,sv_pf,sv_process,pmmh_cost,pmmh")
    p.add_argument("--peer", choices=("run", "skip"), default="run")
    p.add_argument("--peer-json", help="use this peer result instead of running it")
    p.add_argument("--pmmh-variants", default="timed,default,two_devices")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--cores",
        type=int,
        default=0,
        help="pin everything (sdeppl, its workers, the peer) to this many CPUs "
        "(1: the same single core as particles uses; 0: no pinning, XLA may use "
        "all cores)",
    )
    p.add_argument(
        "--merge", nargs="+", help="combine these result files into --out and exit"
    )
    p.add_argument(
        "--quiet",
        type=float,
        default=0.55,
        help="others' CPU share to wait below before a block",
    )
    p.add_argument("--max-wait", type=float, default=180.0)
    # worker mode
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=10**4, help=argparse.SUPPRESS)
    p.add_argument("--runs", type=int, default=10, help=argparse.SUPPRESS)
    p.add_argument("--x64", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--api", default="engine", help=argparse.SUPPRESS)
    p.add_argument("--variant", default="timed", help=argparse.SUPPRESS)
    return p.parse_args()


def pin_cores(cores: int) -> None:
    """Run this process (and its children: workers, the peer) on the first ``cores``
    CPUs; XLA sizes its thread pool by this mask. 0: no pinning."""
    if cores:
        os.sched_setaffinity(0, set(range(cores)))


def main():
    args = parse_args()
    pin_cores(args.cores)  # before JAX starts its backend
    if args.worker:
        fn = {"sv_filter": worker_sv_filter, "pmmh": worker_pmmh}[args.worker]
        print(json.dumps(fn(args)))
        return
    if args.merge:
        merge(args.merge, args.out)
        return
    t_start = time.perf_counter()
    mode = "quick" if args.quick else "full"
    parts = set(args.only.split(","))

    import sdeppl as sp

    # the loop tuning as the docs advise; no persistent cache in this process, so
    # that compile times are compile times (the workers use their own caches)
    settings = sp.configure(compilation_cache=False)
    import jax

    versions = {
        pkg: importlib.metadata.version(pkg)
        for pkg in ("jax", "jaxlib", "numpyro", "arviz", "numpy")
    }
    result = {
        "benchmark": "SPECS-smc.md section 6, B1 and B2: sdeppl vs particles",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {_cpu_model()}".strip(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions,
        "sdeppl_git": _git_state(),
        "xla_flags": settings["xla_flags"],
        "backend": jax.default_backend(),
        "mode": mode,
        "seed": args.seed,
        "cores": args.cores or None,
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "loadavg_start": list(os.getloadavg()),
        "data": {"lg_b1": fingerprint(lg_data()), "sv_b2": fingerprint(sv_data())},
    }
    # the peer's filters now, its PMMH just before ours (closer in time, same load)
    peer = run_peer(args, mode, parts - {"pmmh"})
    sd = {}
    if "b1" in parts:
        print("B1 linear Gaussian", file=sys.stderr)
        sd["b1"] = run_b1(args, mode)
    if "vmap" in parts:
        print("B1 vmap over rho", file=sys.stderr)
        sd["vmap"] = run_vmap(args, mode)
        if args.peer == "run" and not args.peer_json:
            lo, hi, count = VMAP_GRID
            wait_for_quiet(args, "particles loop")
            sd["particles_loop"] = run_peer_snippet(
                PEER_VMAP_LOOP, HERE, lo, hi, count, VMAP_N
            )
    if "sv_pf" in parts:
        print("B2 stochastic volatility, filter", file=sys.stderr)
        sd["sv_pf"] = run_sv_pf(args, mode)
    if "sv_process" in parts:
        print("B2 whole-process filter", file=sys.stderr)
        sd["sv_process"] = run_sv_process(
            args, mode, args.peer == "run" and not args.peer_json
        )
    if "pmmh_cost" in parts:
        print("B2 PMMH step cost", file=sys.stderr)
        sd["pmmh_cost"] = run_pmmh_cost(args, mode)
    if "pmmh" in parts:
        if not args.peer_json:
            peer_pmmh = run_peer(args, mode, {"pmmh"})
            if peer_pmmh:
                process = {
                    k: peer_pmmh.get(k)
                    for k in (
                        "import_s",
                        "first_filter_s",
                        "loadavg_start",
                        "loadavg_end",
                        "load_before",
                        "total_s",
                        "process_cpu_s",
                        "cpu_over_wall",
                    )
                }
                peer = peer or {k: v for k, v in peer_pmmh.items() if k != "pmmh"}
                peer["pmmh"] = {**peer_pmmh["pmmh"], "process": process}
        print("B2 PMMH", file=sys.stderr)
        sd["pmmh"] = run_pmmh(args, mode)
    result["sdeppl"] = sd
    result["particles"] = peer
    if peer:
        result["same_data"] = peer.get("data") == result["data"]
    result["ratios"] = compute_ratios(sd, peer)
    result["loadavg_end"] = list(os.getloadavg())
    result["total_s"] = time.perf_counter() - t_start
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["ratios"], indent=1))
    print(f"wrote {out} ({result['total_s']:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
