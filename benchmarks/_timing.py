"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import jax


class CompileSpans:
    """Total JAX trace + lower + XLA-compile time, from ``jax.monitoring`` events.

    NumPyro re-traces and re-compiles its sampler loop on every ``MCMC.run`` call, so
    "compile excluded" wall time is measured as wall time minus these spans (merged so
    nested spans are not double counted).
    """

    EVENTS = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []
        jax.monitoring.register_event_time_span_listener(self._listen)

    def _listen(self, event, start, end, **kwargs) -> None:
        if event in self.EVENTS:
            self.spans.append((start, end))

    def reset(self) -> None:
        self.spans = []

    def total(self) -> float:
        total, cur_start, cur_end = 0.0, None, None
        for start, end in sorted(self.spans):
            if cur_end is None or start > cur_end:
                if cur_end is not None:
                    total += cur_end - cur_start
                cur_start, cur_end = start, end
            else:
                cur_end = max(cur_end, end)
        if cur_end is not None:
            total += cur_end - cur_start
        return total


def min_bulk_ess(idata, names=("theta", "mu", "sigma")) -> float:
    """Smallest bulk ESS over the named posterior variables (the benchmarks' metric)."""
    import arviz as az

    ess = az.ess(idata, var_names=list(names), method="bulk")
    return float(min(ess[v].item() for v in names))


def run_worker_process(
    script, name: str, seed: int, cache_dir: str, extra_args=()
) -> dict:
    """Run ``script --worker NAME --seed SEED [extra_args]`` in a fresh Python process
    with its own compilation cache (``SDEPPL_COMPILATION_CACHE``), single-threaded BLAS
    and the benchmarks folder on the path; return the JSON object its last line
    prints."""
    env = {
        **os.environ,
        "SDEPPL_COMPILATION_CACHE": cache_dir,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parent),
    }
    out = subprocess.run(
        [sys.executable, str(script), "--worker", name, "--seed", str(seed)]
        + list(extra_args),
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_row(name: str, runs: list[dict], keys, **extra) -> dict:
    """One table row: ``impl``, ``extra``, the median of each of ``keys`` over ``runs``
    (each key separately), and the runs themselves."""
    row = {"impl": name, **extra}
    row.update({k: statistics.median(r[k] for r in runs) for k in keys})
    row["runs"] = runs
    return row


def save_results(name: str, rows: list[dict]) -> None:
    """Write ``rows`` to ``benchmarks/results/NAME.json`` (not committed)."""
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(rows, indent=1))
