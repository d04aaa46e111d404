"""XLA settings: a loop limit :func:`sdeppl.configure` applies (before JAX starts its
backend), and compiler options for the large programs sdeppl compiles itself.

XLA's CPU runtime executes a ``while`` loop op by op, paying roughly 0.1 µs per
operation per iteration, unless the loop is *small*: then it compiles the whole loop
into one function ("small while-loop hoisting"). A loop counts as small if one iteration
touches fewer bytes than a limit, 1 KiB by default, which a Kalman step of a 2-D state
already exceeds. Filters, simulators and samplers are long loops of small steps, so
sdeppl raises the limit (:data:`SMALL_LOOP_BYTES`); the results are identical.

The setting goes into ``XLA_FLAGS`` and only takes effect if the JAX backend has not
started yet (call ``sp.configure()`` before running JAX computations). A limit the user
set is kept; ``SDEPPL_XLA_TUNING=0`` turns the tuning off. (XLA does not accept it as a
per-program compiler option, which would have spared the global setting.)

For the programs sdeppl builds itself (the fused samplers of :func:`sdeppl.fit`, the
per-draw computations after sampling), compilation costs more than running on CPU:
warm-up and sampling of a small model run in a quarter of a second, after seconds of
compilation. :func:`fast_compile_jit` compiles them with XLA's classic elemental
emitters instead of its MLIR fusion emitters (:data:`FAST_COMPILE_OPTIONS`), which
cuts XLA compile time by about 30% with identical draws and run time (measured on the
OU NUTS and OU-KF benchmarks, see ``benchmarks/RESULTS.md``). The options are passed
per program, not through ``XLA_FLAGS``: an XLA that no longer knows them is detected
once and then compiles with its defaults instead of failing.
"""

from __future__ import annotations

import functools
import os
import re

import jax

SMALL_LOOP_OPTION = "xla_cpu_small_while_loop_byte_threshold"
SMALL_LOOP_BYTES = 1 << 14  # per iteration: Kalman steps up to d = 4 (both passes) fit;
# loops over large arrays stay op by op (hoisting SDE-SIM's 10^4-path steps, at 64 KiB
# and above, made simulation up to 1.6x slower)
_EXTRA = "--xla_backend_extra_options="
FAST_COMPILE_OPTIONS = {"xla_cpu_use_fusion_emitters": False}


def add_xla_flag(flags: str, flag: str) -> str:
    """``flags`` (an ``XLA_FLAGS`` string) with ``flag`` appended."""
    return f"{flags} {flag}".strip()


def add_backend_option(flags: str, option: str, value) -> str:
    """``flags`` with ``option=value`` added to ``--xla_backend_extra_options`` (merged
    into an existing list: XLA keeps only the last occurrence of a flag)."""
    match = re.search(re.escape(_EXTRA) + r"(\S*)", flags)
    if match is None:
        return add_xla_flag(flags, f"{_EXTRA}{option}={value}")
    merged = (
        f"{match.group(1)},{option}={value}" if match.group(1) else f"{option}={value}"
    )
    return flags[: match.start(1)] + merged + flags[match.end(1) :]


def tune_cpu_loops(environ=os.environ) -> None:
    """Raise XLA's small-loop limit in ``environ["XLA_FLAGS"]`` (see the module
    docstring); no change if the user set it or ``SDEPPL_XLA_TUNING=0``."""
    if environ.get("SDEPPL_XLA_TUNING", "1") == "0":
        return
    flags = environ.get("XLA_FLAGS", "")
    if SMALL_LOOP_OPTION not in flags:
        environ["XLA_FLAGS"] = add_backend_option(
            flags, SMALL_LOOP_OPTION, SMALL_LOOP_BYTES
        )


@functools.cache
def fast_compile_options() -> dict:
    """:data:`FAST_COMPILE_OPTIONS` on CPU if this XLA accepts them, else ``{}``
    (checked once per process by compiling a one-op program)."""
    if jax.default_backend() != "cpu":
        return {}
    try:
        jax.jit(lambda x: x + 1, compiler_options=FAST_COMPILE_OPTIONS).lower(
            1.0
        ).compile()
    except jax.errors.JaxRuntimeError:
        return {}
    return dict(FAST_COMPILE_OPTIONS)


def fast_compile_jit(fn, **jit_kwargs):
    """``jax.jit(fn)`` compiled with :func:`fast_compile_options` (see the module
    docstring): for large programs that run briefly."""
    return jax.jit(fn, compiler_options=fast_compile_options() or None, **jit_kwargs)
