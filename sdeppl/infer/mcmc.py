"""The MCMC backends of ``sdeppl.fit``: ``"blackjax"`` (the default: sdeppl's fused
NUTS driver on BlackJAX kernels), ``"nuts"`` (NumPyro's NUTS, which also enumerates
discrete latent sites) and ``"mclmc"`` (BlackJAX's microcanonical Langevin sampler).

The drivers are in :mod:`sdeppl.infer.hmc`; this module wraps them as registered
:class:`~sdeppl.infer.Backend` objects and maps chains over devices.
"""

from __future__ import annotations

import sys

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from .._xla import fast_compile_jit
from ._backend import (
    BackendResult,
    bool_option,
    choice_option,
    float_option,
    int_option,
    register_backend,
    stream_key,
)
from ._model import as_numpy
from .hmc import SamplerStats, _progress_callback, run_mclmc, run_nuts

CHAIN_METHODS = ("auto", "sequential", "vectorized")

_CHAIN_OPTIONS = {
    "chains": int_option(4, 1, "number of chains"),
    "warmup": int_option(1000, 0, "adaptation steps per chain (discarded)"),
    "samples": int_option(1000, 1, "sampling steps per chain"),
    "thinning": int_option(1, 1, "keep every thinning-th sampling step"),
}
_NUTS_OPTIONS = {
    "target_accept": float_option(0.8, 0.0, 1.0, "step-size adaptation target"),
    "max_tree_depth": int_option(10, 1, "maximum number of trajectory doublings"),
    "dense_mass": bool_option(False, "adapt a dense mass matrix"),
}
_DEVICE_OPTIONS = {
    "chain_method": choice_option(
        "auto",
        CHAIN_METHODS,
        "chains within a device: sequential (CPU default) or vectorized (accelerator "
        "default)",
    ),
}


def _check_thinning(options: dict) -> None:
    if options["samples"] < options["thinning"]:
        raise ValueError(
            f"samples ({options['samples']}) must be >= thinning "
            f"({options['thinning']})."
        )


def map_chains(one_chain, key, num_chains: int, chain_method: str):
    """Run ``one_chain(key, chain_id)`` for every chain, compiled as one program.

    Chains are split across local devices (``shard_map``) when there are several, and
    within a device run sequentially (``lax.map``: no lock-step waste when trajectories
    differ, the CPU default) or vectorised (``vmap``: the accelerator default).
    """
    if chain_method == "auto":
        chain_method = "sequential" if jax.default_backend() == "cpu" else "vectorized"
    devices = jax.local_devices()
    num_devices = max(d for d in range(1, len(devices) + 1) if num_chains % d == 0)

    def local(key, ids):
        def run(chain_id):
            return one_chain(key, chain_id)

        if chain_method == "vectorized":
            return jax.vmap(run)(ids)
        return jax.lax.map(run, ids)

    if num_devices > 1:
        mesh = Mesh(np.asarray(devices[:num_devices]), ("chain",))
        local = jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(P(), P("chain")),
            out_specs=P("chain"),
            check_vma=False,
        )
    return fast_compile_jit(local)(key, np.arange(num_chains, dtype=np.int32))


class _BlackJAXSampler:
    """A fused BlackJAX driver (:mod:`sdeppl.infer.hmc`) as a backend."""

    needs_gradients = True
    discrete_latent = False
    jittable = True

    def __init__(self, name, summary, label, runner, options):
        self.name, self.summary, self.label, self._runner = name, summary, label, runner
        self.options = options

    def check(self, options):
        _check_thinning(options)

    def _runner_options(self, options, progress=None):
        out = {
            "num_warmup": options["warmup"],
            "num_samples": options["samples"],
            "thinning": options["thinning"],
            "progress": progress,
        }
        out.update({k: options[k] for k in _NUTS_OPTIONS if k in options})
        return out

    def draws(self, model, key, options):
        """One chain from a random start, constrained draws ``(draw, ...)``."""
        key_init, key_run = jax.random.split(key)
        position = model.initial_position(key_init)
        draws, _, _ = self._runner(
            key_run, model.logdensity, position, **self._runner_options(options)
        )
        return jax.vmap(model.constrain)(draws)

    def run(self, model, key, options, progress):
        total = options["warmup"] + options["samples"]
        callback = _progress_callback(
            self.label, options["warmup"], total, progress, options["chains"]
        )
        runner_options = self._runner_options(options, callback)

        def one_chain(key, chain_id):
            chain_key = jax.random.fold_in(stream_key(key, "sampler"), chain_id)
            key_init, key_run = jax.random.split(chain_key)
            position = model.initial_position(key_init)
            draws, stats, tuning = self._runner(
                key_run, model.logdensity, position, chain_id=chain_id, **runner_options
            )
            return jax.vmap(model.constrain)(draws), stats, tuning

        if progress:
            print(
                f"sdeppl: compiling the {self.label} sampler (cached for later runs "
                "when sp.configure() is on)...",
                file=sys.stderr,
                flush=True,
            )
        constrained, stats, tuning = map_chains(
            one_chain, key, options["chains"], options["chain_method"]
        )
        return BackendResult(
            as_numpy(constrained), as_numpy(stats._asdict()), as_numpy(tuning)
        )


class _NumPyroNUTS:
    """NumPyro's NUTS (``numpyro.infer.MCMC``); enumerates discrete latent sites."""

    name = "nuts"
    summary = "NumPyro NUTS; enumerates discrete latent sites (needs funsor)"
    options = {**_CHAIN_OPTIONS, **_NUTS_OPTIONS}
    needs_gradients = True
    discrete_latent = True
    jittable = False

    def check(self, options):
        _check_thinning(options)

    def draws(self, model, key, options):
        raise ValueError(
            "method='nuts' runs NumPyro's MCMC driver, which cannot be traced inside "
            "jit; use method='blackjax' for simulation-based calibration."
        )

    def run(self, model, key, options, progress):
        from numpyro.infer import MCMC, NUTS

        kernel = NUTS(
            model.model,
            target_accept_prob=options["target_accept"],
            max_tree_depth=options["max_tree_depth"],
            dense_mass=options["dense_mass"],
        )
        chain_method = (
            "parallel"
            if jax.local_device_count() >= options["chains"]
            else "sequential"
        )
        mcmc = MCMC(
            kernel,
            num_warmup=options["warmup"],
            num_samples=options["samples"],
            num_chains=options["chains"],
            thinning=options["thinning"],
            chain_method=chain_method,
            progress_bar=progress,
        )
        mcmc.run(
            stream_key(key, "sampler"),
            *model.args,
            extra_fields=(
                "diverging",
                "num_steps",
                "accept_prob",
                "energy",
                "potential_energy",
                "adapt_state.step_size",
            ),
            **model.kwargs,
        )
        draws = as_numpy(mcmc.get_samples(group_by_chain=True))
        extra = as_numpy(mcmc.get_extra_fields(group_by_chain=True))
        stats = SamplerStats(
            diverging=extra["diverging"],
            tree_depth=np.floor(np.log2(extra["num_steps"] + 1)).astype(np.int32),
            n_steps=extra["num_steps"],
            acceptance_rate=extra["accept_prob"],
            energy=extra["energy"],
            lp=-extra["potential_energy"],
            step_size=extra["adapt_state.step_size"],
        )
        return BackendResult(draws, as_numpy(stats._asdict()))


register_backend(
    _BlackJAXSampler(
        "blackjax",
        "NUTS with Stan's window adaptation, warm-up and sampling fused (default)",
        "NUTS",
        run_nuts,
        {**_CHAIN_OPTIONS, **_NUTS_OPTIONS, **_DEVICE_OPTIONS},
    )
)
register_backend(_NumPyroNUTS())
register_backend(
    _BlackJAXSampler(
        "mclmc",
        "microcanonical Langevin Monte Carlo (BlackJAX), automatic tuning",
        "MCLMC",
        run_mclmc,
        {**_CHAIN_OPTIONS, **_DEVICE_OPTIONS},
    )
)
