"""sdeppl's XLA CPU setting: merged into XLA_FLAGS without clobbering the user's."""

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
os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=3"
import jax
print(jax.local_device_count())
"""
    out = subprocess.run(
        [sys.executable, "-c", code], env={"PATH": ""}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


def test_a_small_filter_loop_compiles_as_one_function_after_import():
    """In a fresh process, importing sdeppl makes XLA hoist a 3-D Kalman loop (the
    compiled program holds a ``small_call``); with the tuning off it does not."""
    code = """
import jax, jax.numpy as jnp
import sdeppl
jax.config.update("jax_enable_x64", True)
from sdeppl.solvers.kalman import linear_log_likelihood
n, d = 50, 3
args = (jnp.tile(jnp.eye(d), (n - 1, 1, 1)), jnp.zeros((n - 1, d)),
        jnp.tile(jnp.eye(d), (n - 1, 1, 1)), jnp.ones((1, d)), jnp.eye(1),
        jnp.zeros((n, 1)), jnp.ones((n, 1), bool), jnp.zeros(d), jnp.eye(d))
text = jax.jit(linear_log_likelihood).lower(*args).compile().as_text()
print("small_call" in text)
"""

    def hoisted(tuning):
        env = {"SDEPPL_XLA_TUNING": tuning, "PATH": ""}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip() == "True"

    assert hoisted("1")
    assert not hoisted("0")


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
