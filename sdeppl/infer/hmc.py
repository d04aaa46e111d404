r"""Fused HMC drivers on BlackJAX kernels: NUTS with Stan's window adaptation, and
MCLMC.

Why a driver of our own: on CPU, for the small-to-medium models of this project,
sampling time is dominated by the Python driver and by compilation, not by the model's
gradient. :func:`run_nuts` therefore runs warm-up *and* sampling as **one**
``lax.scan`` in which the NUTS kernel is traced once (BlackJAX's ``window_adaptation``
followed by a sampling loop traces it twice, NumPyro's ``MCMC`` re-traces it on every
run), keeps draws in a preallocated buffer (memory ``num_samples x dim``, not
``(warm-up + samples) x dim``), and reports progress through a host callback every few
percent.

Warm-up follows Stan (Carpenter et al. 2017): a fast initial buffer (15%), slow windows
doubling in size in which a diagonal (or dense) inverse mass matrix is estimated with
Welford's algorithm and regularised towards $10^{-3} I$, a fast final buffer (10%);
the step size is tuned throughout by dual averaging (Hoffman & Gelman 2014) towards
``target_accept`` and restarted at the end of every slow window.

A driver is pure: ``run_nuts(key, logdensity_fn, position, ...)`` returns draws and
per-draw statistics as arrays; chains are mapped by the caller (``sdeppl.fit``).

References
----------
Hoffman, M. D. and Gelman, A. (2014). The No-U-Turn sampler. *JMLR* 15, 1593–1623.
Carpenter, B. et al. (2017). Stan: a probabilistic programming language. *J. Stat.
Softw.* 76(1).
Robnik, J., De Luca, G. B., Silverstein, E. and Seljak, U. (2023). Microcanonical
Hamiltonian Monte Carlo. *JMLR* 24, 1–34.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# BlackJAX is imported inside the drivers: importing it evaluates JAX arrays, which
# starts JAX's backend, and ``import sdeppl`` must leave the backend unstarted so that
# XLA settings (sdeppl/_xla.py, the ``sdeppl`` command's device count) still apply.


class WarmupSchedule(NamedTuple):
    """Per-step flags of Stan's warm-up: ``slow`` (estimate the metric),
    ``window_end``."""

    slow: np.ndarray
    window_end: np.ndarray


def stan_schedule(num_warmup: int) -> WarmupSchedule:
    """Stan's windows: 75/25.../50 for 1000 steps, scaled 15%/75%/10% for short
    warm-ups."""
    slow = np.zeros(num_warmup, bool)
    window_end = np.zeros(num_warmup, bool)
    if num_warmup < 20:
        return WarmupSchedule(slow, window_end)
    init_buffer, term_buffer, first_window = 75, 50, 25
    if init_buffer + first_window + term_buffer > num_warmup:
        init_buffer = int(0.15 * num_warmup)
        term_buffer = int(0.1 * num_warmup)
        first_window = num_warmup - init_buffer - term_buffer
    end_slow = num_warmup - term_buffer
    start, size = init_buffer, first_window
    while start < end_slow:
        stop = start + size
        if stop + 2 * size > end_slow:  # the last window absorbs the remainder
            stop = end_slow
        slow[start:stop] = True
        window_end[stop - 1] = True
        start, size = stop, 2 * size
    return WarmupSchedule(slow, window_end)


class AdaptationState(NamedTuple):
    """Carried warm-up state: dual averaging, metric estimation, and the current
    tuning."""

    step_size_state: object
    metric_state: object
    step_size: jax.Array
    inverse_mass_matrix: jax.Array


class SamplerStats(NamedTuple):
    """Per-draw statistics (ArviZ ``sample_stats`` names)."""

    diverging: jax.Array
    tree_depth: jax.Array
    n_steps: jax.Array
    acceptance_rate: jax.Array
    energy: jax.Array
    lp: jax.Array
    step_size: jax.Array


def _progress_callback(
    label: str, num_warmup: int, total: int, enabled: bool, num_chains: int = 1
):
    """A host callback ``(step, chain_id)`` driving one tqdm bar for the whole run:
    steps of all chains together, the phase in the description (``warm-up`` while any
    chain adapts, then ``sampling``), or ``None`` when progress is off.

    The bar starts at the first report (after compilation) with that report's steps as
    its initial count, so its rate is the sampler's, not the compiler's."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    done: dict = {}
    state: dict = {}
    plural = "s" * (num_chains != 1)

    def update(step, chain):
        chain, step = int(np.asarray(chain).reshape(-1)[0]), int(step)
        done[chain] = step
        count = sum(done.values())
        phase = (
            "warm-up"
            if len(done) < num_chains or min(done.values()) < num_warmup
            else "sampling"
        )
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(
                total=total * num_chains, initial=count, leave=True, unit="step"
            )
        else:
            bar.update(count - bar.n)
        if state.get("phase") != phase:  # drawn at once: every phase shows
            state["phase"] = phase
            bar.set_description(f"{label}, {num_chains} chain{plural}: {phase}")
        if count >= total * num_chains:
            bar.close()

    return update


def run_nuts(
    key,
    logdensity_fn: Callable,
    position,
    *,
    num_warmup: int,
    num_samples: int,
    thinning: int = 1,
    target_accept: float = 0.8,
    max_tree_depth: int = 10,
    dense_mass: bool = False,
    initial_step_size: float = 1.0,
    progress: Callable | None = None,
    chain_id=0,
):
    """NUTS with Stan's window adaptation, warm-up and sampling in one scan.

    Parameters
    ----------
    key: PRNG key.
    logdensity_fn: log-density of a flat unconstrained position ``(dim,)``.
    position: initial flat position ``(dim,)``.
    num_warmup, num_samples, thinning: iterations; ``num_samples // thinning`` draws
        kept.
    target_accept: dual-averaging target for the mean acceptance statistic.
    max_tree_depth: maximum number of trajectory doublings.
    dense_mass: estimate a dense inverse mass matrix instead of a diagonal one.
    progress: a host callback ``(step, chain_id)`` (see :func:`_progress_callback`).
    chain_id: passed to ``progress``.

    Returns
    -------
    ``(draws, stats, tuning)``: draws ``(num_kept, dim)``, :class:`SamplerStats` of
    ``(num_kept,)`` arrays, and ``{"step_size", "inverse_mass_matrix",
    "warmup_divergences"}``.
    """
    import blackjax
    from blackjax.adaptation.mass_matrix import mass_matrix_adaptation
    from blackjax.adaptation.step_size import dual_averaging_adaptation

    dim = position.shape[0]
    num_kept = num_samples // thinning
    schedule = stan_schedule(num_warmup)
    total = num_warmup + num_samples
    slow = jnp.asarray(np.concatenate([schedule.slow, np.zeros(num_samples, bool)]))
    window_end = jnp.asarray(
        np.concatenate([schedule.window_end, np.zeros(num_samples, bool)])
    )
    kernel = blackjax.mcmc.nuts.build_kernel()
    da_init, da_update, da_final = dual_averaging_adaptation(target_accept)
    mm_init, mm_update, mm_final = mass_matrix_adaptation(
        is_diagonal_matrix=not dense_mass
    )
    every = max(total // 50, 1)

    mm_state = mm_init(dim)
    adapt = AdaptationState(
        da_init(jnp.asarray(initial_step_size, position.dtype)),
        mm_state,
        jnp.asarray(initial_step_size, position.dtype),
        mm_state.inverse_mass_matrix,
    )
    state = blackjax.mcmc.hmc.init(position, logdensity_fn)
    draws = jnp.zeros((num_kept, dim), position.dtype)
    stats = SamplerStats(
        diverging=jnp.zeros(num_kept, bool),
        tree_depth=jnp.zeros(num_kept, jnp.int32),
        n_steps=jnp.zeros(num_kept, jnp.int32),
        acceptance_rate=jnp.zeros(num_kept, position.dtype),
        energy=jnp.zeros(num_kept, position.dtype),
        lp=jnp.zeros(num_kept, position.dtype),
        step_size=jnp.zeros(num_kept, position.dtype),
    )

    def body(carry, args):
        state, adapt, draws, stats, warmup_divergences = carry
        i, key_i, is_slow, is_window_end = args
        new_state, info = kernel(
            key_i,
            state,
            logdensity_fn,
            adapt.step_size,
            adapt.inverse_mass_matrix,
            max_tree_depth,
        )
        in_warmup = i < num_warmup
        acceptance = jnp.where(
            jnp.isfinite(info.acceptance_rate), info.acceptance_rate, 0.0
        )

        # --- warm-up: dual averaging always, Welford in slow windows, restart at window
        # ends
        da_state = da_update(adapt.step_size_state, acceptance)
        mm_state = jax.lax.cond(
            is_slow,
            lambda m: mm_update(m, new_state.position),
            lambda m: m,
            adapt.metric_state,
        )
        mm_state = jax.lax.cond(is_window_end, mm_final, lambda m: m, mm_state)
        inverse_mass = jnp.where(
            is_window_end, mm_state.inverse_mass_matrix, adapt.inverse_mass_matrix
        )
        step_size = jnp.exp(da_state.log_step_size)
        da_state = jax.lax.cond(
            is_window_end, lambda _: da_init(step_size), lambda d: d, da_state
        )
        last_warmup = i == num_warmup - 1
        step_size = jnp.where(last_warmup, da_final(da_state), step_size)
        warm = AdaptationState(da_state, mm_state, step_size, inverse_mass)
        adapt = jax.tree_util.tree_map(
            lambda w, a: jnp.where(in_warmup, w, a), warm, adapt
        )

        # --- sampling: keep every `thinning`-th draw in the preallocated buffer
        j = (i - num_warmup) // thinning
        keep = (~in_warmup) & ((i - num_warmup) % thinning == 0)
        slot = jnp.clip(j, 0, num_kept - 1)
        draws = draws.at[slot].set(jnp.where(keep, new_state.position, draws[slot]))
        depth = info.num_trajectory_expansions.astype(jnp.int32)
        row = SamplerStats(
            diverging=info.is_divergent,
            tree_depth=depth,
            n_steps=info.num_integration_steps.astype(jnp.int32),
            acceptance_rate=acceptance,
            energy=info.energy,
            lp=new_state.logdensity,
            step_size=adapt.step_size,
        )
        stats = jax.tree_util.tree_map(
            lambda s, r: s.at[slot].set(jnp.where(keep, r, s[slot])), stats, row
        )
        warmup_divergences = warmup_divergences + (in_warmup & info.is_divergent)
        if progress is not None:
            jax.lax.cond(
                ((i + 1) % every == 0) | (i + 1 == total),
                lambda: jax.debug.callback(progress, i + 1, chain_id),
                lambda: None,
            )
        return (new_state, adapt, draws, stats, warmup_divergences), None

    keys = jax.random.split(key, total)
    carry = (state, adapt, draws, stats, jnp.zeros((), jnp.int32))
    (state, adapt, draws, stats, warmup_divergences), _ = jax.lax.scan(
        body, carry, (jnp.arange(total), keys, slow, window_end)
    )
    tuning = {
        "step_size": adapt.step_size,
        "inverse_mass_matrix": adapt.inverse_mass_matrix,
        "warmup_divergences": warmup_divergences,
    }
    return draws, stats, tuning


class MCLMCStats(NamedTuple):
    """Per-draw statistics of MCLMC."""

    diverging: jax.Array
    energy_change: jax.Array
    lp: jax.Array
    step_size: jax.Array


def run_mclmc(
    key,
    logdensity_fn: Callable,
    position,
    *,
    num_warmup: int,
    num_samples: int,
    thinning: int = 1,
    desired_energy_var: float = 5e-4,
    progress: Callable | None = None,
    chain_id=0,
):
    r"""Microcanonical Langevin Monte Carlo (BlackJAX) with its automatic tuning.

    The momentum decoherence length $L$, the step size and a diagonal preconditioner are
    tuned by ``blackjax.mclmc_find_L_and_step_size`` over ``num_warmup`` steps (40% step
    size, 30% preconditioner, 30% $L$ from the autocorrelation); then ``num_samples``
    steps of the isokinetic McLachlan integrator with partial momentum refreshment.
    MCLMC has no Metropolis step: its stationary law differs from the target by an
    amount controlled by the energy-error variance per dimension
    (``desired_energy_var``); it needs one gradient per step and no tree building, which
    pays off on long latent paths.

    Returns ``(draws, stats, tuning)`` like :func:`run_nuts`, with :class:`MCLMCStats`.
    """
    import blackjax

    dim = position.shape[0]
    num_kept = num_samples // thinning
    key_init, key_tune, key_run = jax.random.split(key, 3)
    state = blackjax.mcmc.mclmc.init(position, logdensity_fn, key_init)
    kernel = blackjax.mcmc.mclmc.build_kernel(desired_energy_var=desired_energy_var)
    if num_warmup > 0:
        state, params, _ = blackjax.mclmc_find_L_and_step_size(
            mclmc_kernel=kernel,
            num_steps=num_warmup,
            state=state,
            rng_key=key_tune,
            logdensity_fn=logdensity_fn,
            frac_tune1=0.4,
            frac_tune2=0.3,
            frac_tune3=0.3,
            desired_energy_var=desired_energy_var,
        )
    else:
        params = blackjax.adaptation.mclmc_adaptation.MCLMCAdaptationState(
            jnp.sqrt(dim), jnp.sqrt(dim) * 0.25, jnp.ones(dim, position.dtype)
        )
    every = max(num_samples // 50, 1)

    def body(state, args):
        i, key_i = args
        state, info = kernel(
            key_i,
            state,
            logdensity_fn,
            params.inverse_mass_matrix,
            params.L,
            params.step_size,
        )
        if progress is not None:
            jax.lax.cond(
                ((i + 1) % every == 0) | (i + 1 == num_samples),
                lambda: jax.debug.callback(progress, num_warmup + i + 1, chain_id),
                lambda: None,
            )
        row = MCLMCStats(
            ~info.nonans, info.energy_change, info.logdensity, params.step_size
        )
        return state, (state.position, row)

    _, (positions, stats) = jax.lax.scan(
        body, state, (jnp.arange(num_samples), jax.random.split(key_run, num_samples))
    )
    keep = slice(thinning - 1, num_kept * thinning, thinning)
    tuning = {
        "step_size": params.step_size,
        "L": params.L,
        "inverse_mass_matrix": params.inverse_mass_matrix,
    }
    return positions[keep], jax.tree_util.tree_map(lambda a: a[keep], stats), tuning
