"""sdeppl's XLA CPU setting: merged into XLA_FLAGS without clobbering the user's, and
applied only by an explicit ``sp.configure()`` (importing sdeppl changes nothing)."""

import subprocess
import sys

import numpy as np

from sdeppl._xla import SMALL_LOOP_OPTION, add_backend_option, tune_cpu_loops


def test_option_is_added_or_merged_into_existing_extra_options():
    assert add_backend_option("", "k", 1) == "--xla_backend_extra_options=k=1"
    assert (
        add_backend_option("--a=1 --xla_backend_extra_options=x=2 --b", "k", 1)
        == "--a=1 --xla_backend_extra_options=x=2,k=1 --b"
    )


def test_user_settings_win_and_tuning_can_be_turned_off():
    env = {"XLA_FLAGS": f"--xla_backend_extra_options={SMALL_LOOP_OPTION}=7"}
    tune_cpu_loops(env)
    assert env["XLA_FLAGS"].count(SMALL_LOOP_OPTION) == 1
    env = {"SDEPPL_XLA_TUNING": "0"}
    tune_cpu_loops(env)
    assert "XLA_FLAGS" not in env
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    tune_cpu_loops(env)
    assert env["XLA_FLAGS"].startswith("--xla_force_host_platform_device_count=2 ")
    assert SMALL_LOOP_OPTION in env["XLA_FLAGS"]


def test_importing_sdeppl_leaves_the_jax_backend_unstarted():
    """XLA settings made after ``import sdeppl`` still take effect (the ``sdeppl``
    command relies on it to expose every core): importing the package, its command
    and its samplers evaluates no JAX array (BlackJAX, which does, is imported when a
    sampler first runs)."""
    code = """
import os
import sdeppl, sdeppl.cli, sdeppl.infer.hmc, sdeppl.recipes, sdeppl.report
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=3"
import jax
print(jax.local_device_count())
"""
    out = subprocess.run(
        [sys.executable, "-c", code], env={"PATH": ""}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


def test_importing_sdeppl_changes_no_environment_or_configuration():
    """``import sdeppl`` (and its submodules) leaves ``os.environ``, JAX's configuration
    and matplotlib's backend as they were."""
    code = """
import os, json, sys
import jax  # JAX itself sets a few variables when imported
before_env = dict(os.environ)
before_config = {k: str(v) for k, v in jax.config.values.items()}
import sdeppl, sdeppl.cli, sdeppl.recipes, sdeppl.report, sdeppl.infer
after_config = {k: str(v) for k, v in jax.config.values.items()}
print(json.dumps({
    "env_changed": sorted(k for k in set(before_env) | set(os.environ)
                          if before_env.get(k) != os.environ.get(k)),
    "config_changed": sorted(k for k in after_config
                             if before_config.get(k) != after_config[k]),
    "matplotlib_imported": "matplotlib" in sys.modules,
}))
"""
    import json

    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": "", "XLA_FLAGS": "--xla_cpu_enable_fast_math=false"},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report == {
        "env_changed": [],
        "config_changed": [],
        "matplotlib_imported": False,
    }


def test_configure_warns_when_jax_has_started():
    code = """
import warnings
import jax, jax.numpy as jnp
jnp.zeros(1).block_until_ready()  # the backend starts
import sdeppl as sp
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    settings = sp.configure(compilation_cache=False)
print(settings["applied_before_start"], any("already started" in str(w.message) for w in caught))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], env={"PATH": ""}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]


def test_a_small_filter_loop_compiles_as_one_function_after_configure():
    """In a fresh process, ``sp.configure()`` makes XLA hoist a 3-D Kalman loop (the
    compiled program holds a ``small_call``); importing alone, or configuring with the
    tuning off, does not."""
    code = """
import os, sys
import jax, jax.numpy as jnp
import sdeppl
if sys.argv[1] == "1":
    sdeppl.configure(compilation_cache=False)
jax.config.update("jax_enable_x64", True)
from sdeppl.solvers.kalman import linear_log_likelihood
n, d = 50, 3
args = (jnp.tile(jnp.eye(d), (n - 1, 1, 1)), jnp.zeros((n - 1, d)),
        jnp.tile(jnp.eye(d), (n - 1, 1, 1)), jnp.ones((1, d)), jnp.eye(1),
        jnp.zeros((n, 1)), jnp.ones((n, 1), bool), jnp.zeros(d), jnp.eye(d))
text = jax.jit(linear_log_likelihood).lower(*args).compile().as_text()
print("small_call" in text)
"""

    def hoisted(configure, tuning="1"):
        env = {"SDEPPL_XLA_TUNING": tuning, "PATH": ""}
        out = subprocess.run(
            [sys.executable, "-c", code, configure],
            env=env,
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip() == "True"

    assert hoisted("1")
    assert not hoisted("0")
    assert not hoisted("1", tuning="0")


def test_fast_compile_jit_gives_the_same_draws_and_falls_back(monkeypatch):
    """The samplers' compile options change how XLA emits code, not what it computes:
    a short NUTS run gives the same draws; an option this XLA does not know is
    dropped instead of failing."""
    import jax
    import jax.numpy as jnp

    from sdeppl import _xla
    from sdeppl.infer.hmc import run_nuts

    def logdensity(z):
        return -0.5 * jnp.sum((z - jnp.arange(3.0)) ** 2 / jnp.array([0.1, 1.0, 4.0]))

    def run(key):
        return run_nuts(key, logdensity, jnp.zeros(3), num_warmup=30, num_samples=20)

    key = jax.random.key(3)
    plain = jax.jit(run)(key)
    if _xla.fast_compile_options():  # this XLA knows the options
        fast = _xla.fast_compile_jit(run)(key)
        np.testing.assert_allclose(fast[0], plain[0], rtol=1e-12)

    _xla.fast_compile_options.cache_clear()
    monkeypatch.setattr(_xla, "FAST_COMPILE_OPTIONS", {"xla_no_such_option": True})
    try:
        assert _xla.fast_compile_options() == {}
        np.testing.assert_allclose(_xla.fast_compile_jit(run)(key)[0], plain[0])
    finally:
        _xla.fast_compile_options.cache_clear()
