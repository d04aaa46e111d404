"""``sdeppl.configure``: the speed settings, switched on explicitly.

Importing sdeppl changes nothing outside it: not ``os.environ``, not JAX's
configuration, not matplotlib's backend. What makes sdeppl fast on a CPU is opt-in, in
one call at the top of a script (the ``sdeppl`` command makes it for you):

- XLA's small-loop limit (:mod:`sdeppl._xla`): filters, simulators and samplers are
  long loops of small steps, which XLA's CPU runtime runs op by op unless one
  iteration touches less than 1 KiB; sdeppl raises the limit to 16 KiB. Results are
  identical. It goes into ``XLA_FLAGS``, so it only applies if JAX has not started its
  backend yet (call ``configure`` before any JAX computation).
- JAX's persistent compilation cache: a second run of the same model skips XLA
  compilation.
- ``host_devices``: expose CPU cores as JAX devices, so that chains run in parallel
  (also needs the backend unstarted).
"""

from __future__ import annotations

import os
import warnings

import jax

from ._xla import add_xla_flag, tune_cpu_loops

_CACHE_ENV = "SDEPPL_COMPILATION_CACHE"
_DEVICE_FLAG = "xla_force_host_platform_device_count"


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # an older or newer JAX: assume started
        return True


def default_cache_dir() -> str | None:
    """``$SDEPPL_COMPILATION_CACHE`` or ``~/.cache/sdeppl/jax`` (None if the variable
    says ``off``)."""
    path = os.environ.get(_CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
        "sdeppl",
        "jax",
    )
    return None if path.lower() in ("off", "0", "none", "") else path


def configure(
    *,
    xla_tuning: bool = True,
    compilation_cache: bool | str = True,
    host_devices: int | str | None = None,
) -> dict:
    """Turn on sdeppl's speed settings (see the module docstring); returns what was
    applied.

    Parameters
    ----------
    xla_tuning
        Raise XLA's small-loop limit in ``XLA_FLAGS`` (unless the user set it, or
        ``SDEPPL_XLA_TUNING=0``).
    compilation_cache
        ``True``: JAX's persistent cache in ``$SDEPPL_COMPILATION_CACHE`` or
        ``~/.cache/sdeppl/jax``; a path: there; ``False``: leave JAX's setting. A
        cache directory the user already configured in JAX is kept.
    host_devices
        ``"all"`` (one per usable core) or a count: CPU devices JAX exposes, unless
        ``XLA_FLAGS`` already sets a count.

    Returns
    -------
    ``{"xla_flags": str, "compilation_cache": path or None, "applied_before_start":
    bool}``; a warning says when XLA settings came too late to apply.

    Examples
    --------
    >>> import sdeppl as sp
    >>> settings = sp.configure(compilation_cache=False)  # doctest: +SKIP
    """
    flags_before = os.environ.get("XLA_FLAGS", "")
    if xla_tuning:
        tune_cpu_loops(os.environ)
    if host_devices is not None:
        count = host_devices
        if host_devices == "all":
            count = (
                len(os.sched_getaffinity(0))
                if hasattr(os, "sched_getaffinity")
                else os.cpu_count() or 1
            )
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(
                f"configure: host_devices must be 'all' or an int >= 1; got "
                f"{host_devices!r}."
            )
        flags = os.environ.get("XLA_FLAGS", "")
        if _DEVICE_FLAG not in flags:
            os.environ["XLA_FLAGS"] = add_xla_flag(flags, f"--{_DEVICE_FLAG}={count}")
    started = _backend_started()
    if started and os.environ.get("XLA_FLAGS", "") != flags_before:
        warnings.warn(
            "sdeppl.configure: JAX has already started its backend, so the XLA "
            "settings apply from the next process on. Call sp.configure() before any "
            "JAX computation.",
            stacklevel=2,
        )
    cache = jax.config.jax_compilation_cache_dir or None
    if compilation_cache and not cache:
        path = default_cache_dir() if compilation_cache is True else compilation_cache
        if path:
            os.makedirs(path, exist_ok=True)
            jax.config.update("jax_compilation_cache_dir", path)
            # every program: the small ones (an optimiser's step, post-processing,
            # eager operations) add up to most of a warm run otherwise
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
            cache = path
    return {
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "compilation_cache": cache,
        "applied_before_start": not started,
    }
