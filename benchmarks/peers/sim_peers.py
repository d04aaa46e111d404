"""SDE-SIM peer benchmark: Euler-Maruyama throughput on the double well.

    dx = (x - x^3) dt + 0.5 dW,  x0 = 0,  T = 10,  1000 steps,  10,000 paths,  final value only.

Implementations (groups selectable with --only):
  numpy    vectorised NumPy loop over steps (Generator/PCG64, float64 and float32)
  jax      plain JAX: jit(lax.scan) over steps, all paths one vector per step; PRNG impls
           threefry2x32 / rbg / unsafe_rbg; normals drawn inside the scan (one key per step,
           keys from one split) or pre-generated outside it (one (steps, paths) draw);
           normal via jax.random.normal (erfinv) or Box-Muller from uniforms
  normals  micro-benchmark: draw steps*paths standard normals (erfinv / Box-Muller / raw
           uniform) per PRNG impl, to separate bit generation from the normal transform
  diffrax  diffeqsolve(Euler, ConstantStepSize, SaveAt(t1=True)) vmapped over paths, with
           VirtualBrownianTree or UnsafeBrownianPath; plus a "batched state" variant (one solve,
           state and Brownian motion of shape (paths,)) for reference
  torchsde sdeint(method='euler', dt fixed, noise_type='diagonal', sde_type='ito'), batch of
           paths, CPU, float32, with its default BrownianInterval, BrownianInterval without
           cache limit, BrownianTree, and plain independent N(0, dt) increments per step
  torch    a plain PyTorch loop, for reference (torchsde overhead = torchsde - torch)

Timing: compile_s = jit lower + compile (JAX/diffrax only; 0 otherwise); warmup_s = first
execution after that; median_s = median over --repeats further runs (block_until_ready for
JAX).  path_steps_per_s = paths * steps / median_s (for "normals" rows: normals per second).
mean / sd are of the final values (bimodal double well: mean ~ 0, sd ~ 1) as a sanity check.

Everything runs single-threaded (OMP/BLAS/XLA/torch threads = 1) for fairness on the 2-core
benchmark machine.  Prints one JSON line (a list of result dicts) at the end.

Usage: python sim_peers.py [--num-paths 10000] [--num-steps 1000] [--repeats 5] [--only jax,numpy]
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from problems import DOUBLE_WELL  # noqa: E402

GROUPS = ("numpy", "jax", "normals", "diffrax", "torchsde", "torch")
JAX_PRNGS = ("threefry2x32", "rbg", "unsafe_rbg")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-paths", type=int, default=DOUBLE_WELL["num_paths"])
    p.add_argument("--num-steps", type=int, default=DOUBLE_WELL["num_steps"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--only", default=",".join(GROUPS), help="comma list of: " + ",".join(GROUPS)
    )
    p.add_argument(
        "--vbt-tol",
        type=float,
        default=None,
        help="VirtualBrownianTree tol (default dt/10)",
    )
    return p.parse_args()


ARGS = parse_args()
N = ARGS.num_paths
STEPS = ARGS.num_steps
T_END = DOUBLE_WELL["t_end"]
SIGMA = DOUBLE_WELL["sigma"]
X0 = DOUBLE_WELL["x0"]
DT = T_END / STEPS
SQDT = math.sqrt(DT)
RESULTS: list[dict] = []


def record(
    impl, dtype, prng, compile_s, warmup_s, times, final, version, unit_count=None
):
    med = statistics.median(times)
    final = np.asarray(final, dtype=np.float64).ravel()
    row = {
        "impl": impl,
        "dtype": dtype,
        "prng": prng,
        "compile_s": round(compile_s, 4),
        "warmup_s": round(warmup_s, 4),
        "median_s": round(med, 5),
        "path_steps_per_s": (unit_count if unit_count is not None else N * STEPS) / med,
        "mean": float(final.mean()),
        "sd": float(final.std()),
        "version": version,
    }
    RESULTS.append(row)
    print(json.dumps(row), file=sys.stderr, flush=True)


def time_runs(fn, block=lambda x: x):
    times, out = [], None
    for _ in range(ARGS.repeats):
        t0 = time.perf_counter()
        out = block(fn())
        times.append(time.perf_counter() - t0)
    return times, out


# --------------------------------------------------------------------------- numpy
def bench_numpy():
    for dtype in (np.float64, np.float32):

        def sim(dtype=dtype):
            rng = np.random.default_rng(ARGS.seed)
            x = np.full(N, X0, dtype=dtype)
            for _ in range(STEPS):
                z = rng.standard_normal(N, dtype=dtype)
                x = x + (x - x**3) * DT + (SIGMA * SQDT) * z
            return x

        t0 = time.perf_counter()
        sim()
        warm = time.perf_counter() - t0
        times, out = time_runs(sim)
        assert out.dtype == dtype
        record(
            "numpy_loop",
            np.dtype(dtype).name,
            "pcg64",
            0.0,
            warm,
            times,
            out,
            np.__version__,
        )


# --------------------------------------------------------------------------- jax
def jax_setup():
    import jax

    jax.config.update(
        "jax_enable_x64", True
    )  # needed for the float64 rows; f32 rows are explicit
    return jax


def jax_compile_and_time(impl, dtype_name, prng, fn, *args):
    import jax

    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    comp = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    warm = time.perf_counter() - t0
    times, out = time_runs(lambda: compiled(*args), jax.block_until_ready)
    record(impl, dtype_name, prng, comp, warm, times, out, jax.__version__)
    return out


def box_muller(key, shape, dtype):
    """Standard normals from uniforms: half the uniforms give radii, half give angles."""
    import jax
    import jax.numpy as jnp

    n = shape[-1]
    half = (n + 1) // 2
    u = jax.random.uniform(key, (2, *shape[:-1], half), dtype)
    r = jnp.sqrt(-2.0 * jnp.log1p(-u[0]))  # 1 - u in (0, 1]
    a = (2.0 * math.pi) * u[1]
    return jnp.concatenate([r * jnp.cos(a), r * jnp.sin(a)], axis=-1)[..., :n]


def bench_jax():
    jax = jax_setup()
    import jax.numpy as jnp
    from jax import lax

    def drift_step(x, z):
        return x + (x - x**3) * DT + (SIGMA * SQDT) * z

    def make_inside(dtype, normal):
        def sim(key):
            keys = jax.random.split(key, STEPS)

            def body(x, k):
                return drift_step(x, normal(k, (N,), dtype)), None

            x, _ = lax.scan(body, jnp.full((N,), X0, dtype), keys)
            return x

        return sim

    def make_pregen(dtype, normal):
        def sim(key):
            zs = normal(key, (STEPS, N), dtype)
            x, _ = lax.scan(
                lambda x, z: (drift_step(x, z), None), jnp.full((N,), X0, dtype), zs
            )
            return x

        return sim

    for dtype in (jnp.float32, jnp.float64):
        dn = jnp.dtype(dtype).name
        for impl in JAX_PRNGS:
            key = jax.random.key(ARGS.seed, impl=impl)
            jax_compile_and_time(
                "jax_scan_inside", dn, impl, make_inside(dtype, jax.random.normal), key
            )
            jax_compile_and_time(
                "jax_scan_pregen", dn, impl, make_pregen(dtype, jax.random.normal), key
            )
            jax_compile_and_time(
                "jax_scan_inside_boxmuller",
                dn,
                impl,
                make_inside(dtype, box_muller),
                key,
            )


def bench_normals():
    jax = jax_setup()
    import jax.numpy as jnp

    count = N * STEPS
    for dtype in (jnp.float32, jnp.float64):
        dn = jnp.dtype(dtype).name
        for impl in JAX_PRNGS:
            key = jax.random.key(ARGS.seed, impl=impl)
            for name, fn in (
                (
                    "jax_normals_erfinv",
                    lambda k, d=dtype: jax.random.normal(k, (STEPS, N), d),
                ),
                (
                    "jax_normals_boxmuller",
                    lambda k, d=dtype: box_muller(k, (STEPS, N), d),
                ),
                (
                    "jax_uniform_only",
                    lambda k, d=dtype: jax.random.uniform(k, (STEPS, N), d),
                ),
            ):
                t0 = time.perf_counter()
                compiled = jax.jit(fn).lower(key).compile()
                comp = time.perf_counter() - t0
                t0 = time.perf_counter()
                jax.block_until_ready(compiled(key))
                warm = time.perf_counter() - t0
                times, out = time_runs(
                    lambda c=compiled, k=key: c(k), jax.block_until_ready
                )
                record(
                    name,
                    dn,
                    impl,
                    comp,
                    warm,
                    times,
                    out,
                    jax.__version__,
                    unit_count=count,
                )


# --------------------------------------------------------------------------- diffrax
def bench_diffrax():
    jax = jax_setup()
    import diffrax
    import jax.numpy as jnp

    dtype = jnp.float32
    f32 = lambda v: jnp.asarray(v, dtype)  # noqa: E731
    t0, t1, dt0 = f32(0.0), f32(T_END), f32(DT)
    tol = f32(ARGS.vbt_tol if ARGS.vbt_tol is not None else DT / 10)

    def drift(t, y, args):
        return y - y**3

    def diffusion(t, y, args):
        return jnp.full_like(y, SIGMA)

    def make_bm(kind, key, shape):
        sds = jax.ShapeDtypeStruct(shape, dtype)
        if kind == "vbt":
            return diffrax.VirtualBrownianTree(t0, t1, tol=tol, shape=sds, key=key)
        return diffrax.UnsafeBrownianPath(shape=sds, key=key)

    def solve(kind, key, shape):
        bm = make_bm(kind, key, shape)
        # Diagonal noise: scalar state -> plain ControlTerm (scalar product); batched state ->
        # elementwise product via a lineax diagonal operator.
        noise = (
            diffrax.ControlTerm(diffusion, bm)
            if shape == ()
            else _diag_term(diffrax, diffusion, bm)
        )
        terms = diffrax.MultiTerm(diffrax.ODETerm(drift), noise)
        sol = diffrax.diffeqsolve(
            terms,
            diffrax.Euler(),
            t0,
            t1,
            dt0=dt0,
            y0=jnp.full(shape, X0, dtype),
            saveat=diffrax.SaveAt(t1=True),
            stepsize_controller=diffrax.ConstantStepSize(),
            adjoint=diffrax.ForwardMode(),
            max_steps=STEPS + 2,
        )
        return sol.ys[-1], sol.stats["num_steps"]

    key = jax.random.key(ARGS.seed)
    for kind in ("unsafe", "vbt"):
        prng_note = "threefry2x32"

        def vmapped(key, kind=kind):
            keys = jax.random.split(key, N)
            ys, nsteps = jax.vmap(lambda k: solve(kind, k, ()))(keys)
            return ys, nsteps

        def batched(key, kind=kind):
            return solve(kind, key, (N,))

        for impl, fn in (
            (f"diffrax_{kind}_vmap", vmapped),
            (f"diffrax_{kind}_batched", batched),
        ):
            t0_ = time.perf_counter()
            compiled = jax.jit(fn).lower(key).compile()
            comp = time.perf_counter() - t0_
            t0_ = time.perf_counter()
            jax.block_until_ready(compiled(key))
            warm = time.perf_counter() - t0_
            times, out = time_runs(
                lambda c=compiled, k=key: c(k), jax.block_until_ready
            )
            ys, nsteps = out
            nsteps = np.unique(np.asarray(nsteps))
            assert ys.dtype == dtype, ys.dtype
            assert nsteps.tolist() == [STEPS], (
                f"diffrax took {nsteps} steps, expected {STEPS}"
            )
            note = prng_note + (f", vbt_tol={float(tol):.2e}" if kind == "vbt" else "")
            record(impl, "float32", note, comp, warm, times, ys, diffrax.__version__)


def _diag_term(diffrax, diffusion, bm):
    """Diagonal-noise diffusion term: elementwise g(t, y) * dW."""
    import lineax as lx

    return diffrax.ControlTerm(
        lambda t, y, a: lx.DiagonalLinearOperator(diffusion(t, y, a)), bm
    )


# --------------------------------------------------------------------------- torchsde / torch
def bench_torchsde():
    import torch
    import torchsde

    torch.set_num_threads(1)
    torch.manual_seed(ARGS.seed)
    dtype = torch.float32

    class DoubleWell(torch.nn.Module):
        noise_type = "diagonal"
        sde_type = "ito"

        def f(self, t, y):
            return y - y**3

        def g(self, t, y):
            return torch.full_like(y, SIGMA)

    class Increments(torchsde.BaseBrownian):
        """Fresh independent N(0, tb - ta) per query.  Exact for fixed-step Euler, which
        queries each consecutive, non-overlapping step interval exactly once."""

        def __init__(self, size, dtype):
            super().__init__()
            self._size, self._dtype = size, dtype

        def __call__(self, ta, tb=None, return_U=False, return_A=False):
            if tb is None or return_U or return_A:
                raise NotImplementedError("increments only")
            return torch.randn(self._size, dtype=self._dtype) * math.sqrt(
                float(tb) - float(ta)
            )

        def __repr__(self):
            return "Increments()"

        dtype = property(lambda self: self._dtype)
        device = property(lambda self: torch.device("cpu"))
        shape = property(lambda self: self._size)
        levy_area_approximation = property(lambda self: "none")

    sde = DoubleWell()
    ts = torch.tensor([0.0, T_END], dtype=dtype)
    y0 = torch.full((N, 1), X0, dtype=dtype)

    def make_bm(kind):
        if kind == "default":
            return None  # sdeint builds BrownianInterval(t0, t1, size, ...)
        if kind == "interval_nocache":
            return torchsde.BrownianInterval(
                0.0, T_END, size=(N, 1), dtype=dtype, cache_size=None
            )
        if kind == "tree":
            return torchsde.BrownianTree(0.0, torch.zeros(N, 1, dtype=dtype), t1=T_END)
        return Increments((N, 1), dtype)

    for kind in ("default", "interval_nocache", "tree", "increments"):

        def run(kind=kind):
            with torch.no_grad():
                ys = torchsde.sdeint(
                    sde, y0, ts, method="euler", dt=DT, bm=make_bm(kind)
                )
            return ys[-1].numpy()

        t0 = time.perf_counter()
        run()
        warm = time.perf_counter() - t0
        times, out = time_runs(run)
        prng = "torch.randn (mt19937)" if kind == "increments" else f"BM:{kind}"
        record(
            f"torchsde_{kind}",
            "float32",
            prng,
            0.0,
            warm,
            times,
            out,
            torchsde.__version__,
        )


def bench_torch():
    import torch

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(ARGS.seed)

    def run():
        with torch.no_grad():
            x = torch.full((N,), X0, dtype=torch.float32)
            for _ in range(STEPS):
                z = torch.randn(N, generator=gen, dtype=torch.float32)
                x = x + (x - x**3) * DT + (SIGMA * SQDT) * z
        return x.numpy()

    t0 = time.perf_counter()
    run()
    warm = time.perf_counter() - t0
    times, out = time_runs(run)
    record(
        "torch_loop",
        "float32",
        "torch.randn (mt19937)",
        0.0,
        warm,
        times,
        out,
        torch.__version__,
    )


def main():
    only = [g.strip() for g in ARGS.only.split(",") if g.strip()]
    bad = set(only) - set(GROUPS)
    if bad:
        raise SystemExit(f"unknown groups {bad}; choose from {GROUPS}")
    for g in GROUPS:
        if g in only:
            globals()[f"bench_{g}"]()
    print(json.dumps(RESULTS))


if __name__ == "__main__":
    main()
