r"""``method="pmmh"``: particle marginal Metropolis–Hastings (Andrieu, Doucet and
Holenstein, 2010).

A random-walk Metropolis chain on the model's unconstrained parameters whose target
density contains a particle filter's unbiased likelihood estimate
$\hat p(y \mid \theta)$ (a :class:`~sdeppl.StateSpace` with ``method="particle"``).
Each proposal runs the model under a fresh key; the current state's estimate is kept,
never recomputed (recomputing it would target the wrong law). The chain then targets
the exact posterior $p(\theta \mid y)$ for any number of particles; fewer particles
only make it mix more slowly (a log-likelihood variance near 1 is the usual
compromise: Doucet et al., 2015).

The key of every accepted estimate is kept with the draw
(:attr:`~sdeppl.infer.BackendResult.model_keys`): the shared post-processing re-runs
that very particle system to draw the latent path, so the path draws, too, target the
exact joint posterior $p(\theta, x \mid y)$, and to forecast from it.

Proposals (warm-up only, then frozen): $\theta' = \theta + \lambda L \varepsilon$,
$L L^\top$ the covariance of the chains' warm-up draws so far (pooled across chains,
from the second quarter of the warm-up on; Haario, Saksman and Tamminen, 2001) and
$\log \lambda$ moved by a Robbins–Monro step towards the target acceptance rate
(Andrieu and Thoms, 2008). Chains run vectorised in one compiled program.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from .._xla import fast_compile_jit
from ._backend import (
    BackendResult,
    float_option,
    int_option,
    register_backend,
    stream_key,
)
from ._model import as_numpy
from .hmc import _progress_callback


class PMMHState(NamedTuple):
    """One chain's state: position, log-density estimate kept with it, and the raw
    key that produced that estimate."""

    position: jax.Array  # (dim,)
    log_density: jax.Array  # ()
    model_key: jax.Array  # (2,) uint32


class Adaptation(NamedTuple):
    """Pooled proposal adaptation: step scale and the warm-up draws' moments."""

    log_scale: jax.Array  # ()
    count: jax.Array  # () draws pooled so far
    mean: jax.Array  # (dim,)
    scatter: jax.Array  # (dim, dim) sum of outer products of deviations
    chol: jax.Array  # (dim, dim) proposal factor in use


def _raw(key):
    return (
        jax.random.key_data(key)
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
        else key
    )


def _finite(log_density):
    return jnp.where(jnp.isnan(log_density), -jnp.inf, log_density)


#: positions evaluated together by :func:`evaluator` (initialisation and the
#: variance check share this one compiled program)
BATCH = 16


def evaluator(log_density):
    """``(positions (16, dim), raw keys (16, 2)) -> (16,)`` log-density estimates, one
    compiled program."""
    return fast_compile_jit(jax.vmap(lambda z, k: _finite(log_density(z, k))))


def initial_states(key, evaluate, num_chains: int, dim: int, dtype, rounds=20):
    """Uniform draws in ``[-2, 2]^dim`` (unconstrained) with a finite estimate, one
    per chain, found in batches of :data:`BATCH` (after ``rounds`` batches the
    remaining chains start where they are: at ``-inf`` they accept any finite
    proposal)."""
    found = []
    for _ in range(rounds):
        key, key_z, key_model = jax.random.split(key, 3)
        z = jax.random.uniform(key_z, (BATCH, dim), dtype, -2.0, 2.0)
        raw = jax.vmap(_raw)(jax.random.split(key_model, BATCH))
        log_density = np.asarray(evaluate(z, raw))
        found += [
            PMMHState(z[i], log_density[i], raw[i])
            for i in np.flatnonzero(np.isfinite(log_density))
        ]
        if len(found) >= num_chains:
            break
    while len(found) < num_chains:
        found.append(PMMHState(z[0], jnp.asarray(-np.inf, dtype), raw[0]))
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *found[:num_chains])


def mh_step(key, states: PMMHState, chol, scale, log_density):
    """One PMMH step for every chain: propose, run the filter with a fresh key,
    accept with probability $\\min(1, \\hat\\pi(\\theta') / \\hat\\pi(\\theta))$.
    Returns the new states and each chain's acceptance probability."""
    num_chains, dim = states.position.shape
    key_move, key_model, key_accept = jax.random.split(key, 3)
    noise = jax.random.normal(key_move, (num_chains, dim), states.position.dtype)
    proposal = states.position + scale * noise @ chol.T
    model_keys = jax.vmap(_raw)(jax.random.split(key_model, num_chains))
    log_density_new = _finite(jax.vmap(log_density)(proposal, model_keys))
    log_ratio = log_density_new - states.log_density
    accept_prob = jnp.where(
        jnp.isnan(log_ratio), 0.0, jnp.exp(jnp.minimum(log_ratio, 0.0))
    )
    accept = jax.random.uniform(key_accept, (num_chains,)) < accept_prob
    new = PMMHState(
        jnp.where(accept[:, None], proposal, states.position),
        jnp.where(accept, log_density_new, states.log_density),
        jnp.where(accept[:, None], model_keys, states.model_key),
    )
    return new, accept_prob


def adapt(adaptation: Adaptation, i, positions, accept_prob, target, num_warmup):
    """Robbins–Monro scale step towards ``target`` acceptance; pool the draws from
    the second quarter of the warm-up on, and use their covariance from then on."""
    dim = positions.shape[-1]
    step = (i + 1.0) ** -0.6
    log_scale = adaptation.log_scale + step * (jnp.mean(accept_prob) - target)
    log_scale = jnp.clip(log_scale, jnp.log(1e-3), jnp.log(10.0))
    pool = i >= num_warmup // 4

    def pooled(a):  # Chan et al.'s update of pooled moments by a batch of draws
        batch = positions.shape[0]
        batch_mean = jnp.mean(positions, axis=0)
        centred = positions - batch_mean
        count = a.count + batch
        delta = batch_mean - a.mean
        mean = a.mean + delta * batch / count
        scatter = (
            a.scatter
            + centred.T @ centred
            + jnp.outer(delta, delta) * a.count * batch / count
        )
        return count, mean, scatter

    count, mean, scatter = jax.lax.cond(
        pool,
        pooled,
        lambda a: (a.count, a.mean, a.scatter),
        adaptation,
    )
    enough = count > 2 * dim + 2
    cov = scatter / jnp.maximum(count - 1, 1) + 1e-8 * jnp.eye(dim)
    chol = jnp.where(enough, jnp.linalg.cholesky(cov), adaptation.chol)
    chol = jnp.where(jnp.all(jnp.isfinite(chol)), chol, adaptation.chol)
    return Adaptation(log_scale, count, mean, scatter, chol)


class PMMHStats(NamedTuple):
    acceptance_rate: jax.Array  # the step's acceptance probability
    lp: jax.Array  # the log-density estimate kept with the draw


def run_pmmh(
    key,
    log_density,
    states: PMMHState,
    *,
    num_warmup: int,
    num_samples: int,
    thinning: int,
    target_accept: float,
    initial_scale: float = 0.1,
    progress=None,
):
    """Run vectorised PMMH chains from ``states``: warm-up and sampling in one scan
    (one copy of the particle filter in the compiled program; the proposal is frozen
    after the warm-up). Returns draws ``(chain, draw, dim)``, the raw model keys
    ``(chain, draw, 2)``, statistics ``(chain, draw)`` and the adapted proposal."""
    num_chains, dim = states.position.shape
    dtype = states.position.dtype
    adaptation = Adaptation(
        jnp.log(jnp.asarray(2.38 / np.sqrt(dim), dtype)),
        jnp.zeros((), dtype),
        jnp.zeros(dim, dtype),
        jnp.zeros((dim, dim), dtype),
        initial_scale * jnp.eye(dim, dtype=dtype),
    )
    total = num_warmup + num_samples * thinning

    def step(carry, inputs):
        states, adaptation = carry
        i, key = inputs
        states, accept_prob = mh_step(
            key, states, adaptation.chol, jnp.exp(adaptation.log_scale), log_density
        )
        adapted = adapt(
            adaptation, i, states.position, accept_prob, target_accept, num_warmup
        )
        adaptation = jax.tree_util.tree_map(
            lambda new, old: jnp.where(i < num_warmup, new, old), adapted, adaptation
        )
        if progress is not None:
            jax.lax.cond(
                (i + 1) % 20 == 0,
                lambda: jax.debug.callback(progress, i + 1, 0),
                lambda: None,
            )
        stats = PMMHStats(accept_prob, states.log_density)
        return (states, adaptation), (states.position, states.model_key, stats)

    (_, adaptation), (draws, model_keys, stats) = jax.lax.scan(
        step,
        (states, adaptation),
        (jnp.arange(total), jax.random.split(key, total)),
    )

    def kept(a):  # (total, chain, ...) -> (chain, draw, ...)
        return jnp.swapaxes(a[num_warmup + thinning - 1 :: thinning], 0, 1)

    stats = jax.tree_util.tree_map(kept, stats)
    tuning = {
        "step_scale": jnp.exp(adaptation.log_scale),
        "proposal_cholesky": adaptation.chol,
    }
    return kept(draws), kept(model_keys), stats, tuning


class _PMMH:
    """Particle marginal Metropolis–Hastings as a backend."""

    name = "pmmh"
    summary = (
        "particle marginal Metropolis-Hastings: exact posterior from particle-filter "
        "likelihoods (StateSpace method='particle'); latent paths and forecasts"
    )
    options = {
        "chains": int_option(4, 1, "number of chains (vectorised)"),
        "warmup": int_option(1000, 0, "adaptation steps per chain (discarded)"),
        "samples": int_option(2000, 1, "kept draws per chain"),
        "thinning": int_option(1, 1, "steps between kept draws"),
        "target_accept": float_option(
            0.2, 0.0, 1.0, "acceptance rate the proposal scale is tuned to"
        ),
    }
    needs_gradients = False
    discrete_latent = False
    jittable = False  # starting points are searched on the host
    estimated_density = True

    def check(self, options):
        pass

    def draws(self, model, key, options):
        raise ValueError(
            "method='pmmh' searches its starting points on the host and cannot be "
            "traced inside jit; simulation-based calibration runs it once per "
            "replicate."
        )

    def run(self, model, key, options, progress):
        dim, dtype = model.dim_and_dtype()
        total = options["warmup"] + options["samples"] * options["thinning"]
        callback = _progress_callback("PMMH", options["warmup"], total, progress, 1)
        if progress:
            print("sdeppl: compiling the PMMH sampler...", file=sys.stderr, flush=True)
        key = stream_key(key, "sampler")
        key_init, key_run, key_check = jax.random.split(key, 3)
        evaluate = evaluator(model.seeded_logdensity)
        states = initial_states(key_init, evaluate, options["chains"], dim, dtype)

        def run(key, states):
            draws, model_keys, stats, tuning = run_pmmh(
                key,
                model.seeded_logdensity,
                states,
                num_warmup=options["warmup"],
                num_samples=options["samples"],
                thinning=options["thinning"],
                target_accept=options["target_accept"],
                progress=callback,
            )
            constrained = jax.vmap(jax.vmap(model.constrain))(draws)
            tuning = jax.tree_util.tree_map(lambda a: a[None], tuning)  # per device
            return constrained, model_keys, stats, tuning, draws

        run = on_devices(run, options["chains"])
        # XLA's default emitters: the filter inside runs 1.5x faster than with
        # fast_compile_jit (32 -> 22 ms per SV filter at N = 500, T = 1000), which a
        # chain of thousands of filters pays back many times over
        constrained, model_keys, stats, tuning, draws = jax.jit(run)(key_run, states)
        stats = as_numpy(stats._asdict())
        checks, info = _diagnostics(model, key_check, evaluate, draws, stats)
        return BackendResult(
            as_numpy(constrained),
            stats,
            as_numpy(tuning),
            checks,
            info,
            model_keys=np.asarray(model_keys),
        )


def on_devices(fn, num_chains: int):
    """``fn(key, batched)``, whose arguments and outputs have the chain axis first,
    with the chains split across the local devices when there are several (each
    device runs its share vectorised, with the key folded by the device's index;
    :func:`sdeppl.configure` makes one device per CPU core). Outputs that are not
    per chain must come back with a leading axis of one per device."""
    devices = jax.local_devices()
    num_devices = max(d for d in range(1, len(devices) + 1) if num_chains % d == 0)
    if num_devices == 1:
        return fn

    def local(key, batched):
        return fn(jax.random.fold_in(key, jax.lax.axis_index("chain")), batched)

    mesh = Mesh(np.asarray(devices[:num_devices]), ("chain",))
    return jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(P(), P("chain")),
        out_specs=P("chain"),
        check_vma=False,
    )


def _diagnostics(model, key, evaluate, draws, stats):
    """Acceptance, the likelihood estimate's variance over :data:`BATCH` independent
    runs at the posterior median, and each filter's ESS per time step there: rows
    for the diagnostics table and the run's facts."""
    acceptance = float(np.mean(stats["acceptance_rate"]))
    median = jnp.median(jnp.reshape(draws, (-1, draws.shape[-1])), axis=0)
    key_runs, key_filter = jax.random.split(key)
    keys = jax.vmap(_raw)(jax.random.split(key_runs, BATCH))
    runs = evaluate(jnp.broadcast_to(median, (BATCH,) + median.shape), keys)
    variance = float(np.var(np.asarray(runs)))
    rows, filters = filter_summary(model, median, key_filter)
    rows = (
        acceptance_row(acceptance),
        variance_row(variance, particle_counts(model)),
        *rows,
    )
    info = {
        "acceptance_rate": acceptance,
        "log_likelihood_variance": variance,
        "particle_filter": filters,
    }
    return rows, info


def particle_sites(model, z, key) -> dict:
    """``{name: (distribution, observed value)}`` of the model's particle-filter
    sites at the unconstrained position ``z`` (the model traced under ``seed(key)``)."""
    seeded = numpyro.handlers.seed(model.model, key)
    tr = numpyro.handlers.trace(
        numpyro.handlers.substitute(seeded, data=model.constrain(z))
    ).get_trace(*model.args, **model.kwargs)
    return {name: (tr[name]["fn"], tr[name]["value"]) for name in model.estimated}


def filter_summary(model, z, key):
    """Each particle site's filter at ``z``: the smallest ESS per time step over its
    series (as a fraction of the particles) and the resampling count, as diagnostics
    rows and as facts for the report's figure."""
    rows, facts = [], {}
    for name, (fn, value) in particle_sites(model, z, key).items():
        result = fn.filter(value, key)
        num_steps = len(fn.ts)
        fraction = np.asarray(result.ess).reshape(-1, num_steps).min(0)
        fraction = fraction / fn.num_particles
        resampled = int(np.asarray(result.resampled).sum())
        worst = int(np.argmin(fraction))
        facts[name] = {
            "time": np.asarray(fn.ts).round(6).tolist(),
            "ess_fraction": fraction.round(4).tolist(),
            "resampled": np.asarray(result.resampled)
            .reshape(-1, num_steps)
            .any(0)
            .tolist(),
            "num_particles": fn.num_particles,
        }
        value = (
            f"min {fraction[worst]:.2f} N at t = {float(fn.ts[worst]):.4g}; "
            f"{resampled} resamplings in {num_steps} steps"
        )
        if fraction[worst] < 0.02:
            status, advice = (
                "warn",
                (
                    "the weights collapse at an observation the particles cannot "
                    "explain (an outlier, or a model that misses it): more particles, "
                    "or check the model there"
                ),
            )
        else:
            status, advice = "pass", "the particles follow the data"
        rows.append((f"particle ESS per step ({name})", value, status, advice))
    return rows, facts


def acceptance_row(acceptance: float, label: str = "PMMH acceptance rate"):
    """Diagnostics row for a Metropolis acceptance rate."""
    if acceptance < 0.05:
        status, advice = (
            "fail",
            (
                "the chains barely move: the likelihood estimate is too noisy (more "
                "particles) or the proposal too wide"
            ),
        )
    elif acceptance < 0.1 or acceptance > 0.5:
        status, advice = "warn", "outside 0.1-0.5: check the mixing (ESS, traces)"
    else:
        status, advice = "pass", ""
    return (label, f"{acceptance:.2f}", status, advice)


def variance_row(variance: float, counts: dict):
    """Diagnostics row for the log-likelihood estimate's variance, with the number
    of particles that would bring it to about 1 (it scales as 1/N)."""
    value = f"{variance:.2f} at the posterior median"
    recommended = {n: int(np.ceil(c * max(variance, 1e-3))) for n, c in counts.items()}
    hint = ", ".join(f"{n}: num_particles ~ {r}" for n, r in recommended.items())
    if not np.isfinite(variance) or variance > 10.0:
        status, advice = "fail", f"too noisy for PMMH to mix; use {hint}"
    elif variance > 2.0:
        status, advice = "warn", f"mixing suffers above ~2; for about 1 use {hint}"
    else:
        status, advice = "pass", f"about 1 is enough ({hint})"
    return ("log-likelihood estimate variance", value, status, advice)


def particle_counts(model) -> dict:
    """``{site: num_particles}`` of the model's particle-filter sites (one eager
    trace of the model's structure; nothing is filtered)."""
    found = {}

    def run():
        tr = numpyro.handlers.trace(numpyro.handlers.seed(model.model, 0)).get_trace(
            *model.args, **model.kwargs
        )
        for name in model.estimated:
            found[name] = int(getattr(tr[name]["fn"], "num_particles", 0))
        return 0

    jax.eval_shape(run)
    return found


register_backend(_PMMH())
