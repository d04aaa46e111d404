r"""Particle filters on Feynman–Kac models: pure JAX, static particle count.

A Feynman–Kac model over steps $t = 0, \dots, T-1$ is three pure functions
(:class:`FeynmanKac`): draws $x_0 \sim M_0$, moves $x_t \sim M_t(x_{t-1}, \cdot)$ and
log-potentials $\log G_t(x_{t-1}, x_t)$. It defines the normalised laws
$\mathbb{Q}_t(dx_{0:t}) \propto M_0(dx_0) G_0(x_0) \prod_{s=1}^{t} M_s(x_{s-1}, dx_s)
G_s(x_{s-1}, x_s)$ and the normalising constants $Z_t$. For a state-space model with
transition $f$ and observation density $g$, the *bootstrap* model takes $M = f$ and
$G_t = g(y_t \mid x_t)$, so $Z_{T-1} = p(y_{0:T-1})$; a *guided* model moves by a
proposal $q$ and weights by $f g / q$ (:func:`guided`).

:func:`particle_filter` runs $N$ particles through the model with ``lax.scan``:

1. at $t \ge 1$, if the effective sample size of the auxiliary weights
   $W_{t-1}^i \eta_{t-1}(x_{t-1}^i)$ falls below ``ess_threshold`` $\cdot N$, draw
   ancestors $a_t^i$ from them (``resampling``) and reset the weights;
2. move $x_t^i \sim M_t(x_{t-1}^{a_t^i}, \cdot)$;
3. reweight: $w_t^i = \bar W^{i} G_t(x_{t-1}^{a_t^i}, x_t^i) /
   \eta_{t-1}(x_{t-1}^{a_t^i})$, where $\bar W$ is uniform after resampling and the
   normalised auxiliary weight otherwise;
4. the log-evidence grows by
   $\log \sum_i W_{t-1}^i \eta_{t-1}(x_{t-1}^i) + \log \sum_i w_t^i$.

$\eta \equiv 1$ is the ordinary (bootstrap or guided) filter; a look-ahead
$\eta_{t-1}(x) \approx p(y_t \mid x)$ gives the auxiliary particle filter (Pitt and
Shephard, 1999). The evidence estimate $\hat Z$ is unbiased for every $N$ and every
resampling scheme (Del Moral, 2004). Impossible steps (every weight zero) give
$\log \hat Z = -\infty$, never NaN.

``stop_gradient=True`` resamples with :func:`~.resampling.stop_gradient_log_weights`:
the values are unchanged and $\nabla \log \hat Z$ becomes a consistent estimate of the
score $\nabla \log Z$ (Ścibior and Wood, 2021); without it, the gradient ignores how
resampling depends on the parameters and is biased.

Smoothing from the stored history: :func:`ancestral_paths` (the genealogy),
:func:`backward_sample` (FFBS, needs the transition density),
:func:`fixed_lag_means`; and :func:`conditional_smc`, the Markov kernel of particle
Gibbs (Andrieu, Doucet and Holenstein, 2010).

Shapes: particles are pytrees whose leaves have leading axis $N$; the history adds a
leading time axis ``(T, N, ...)``; weights are ``(N,)`` and ``(T, N)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .resampling import (
    ess,
    get_resampler,
    multinomial,
    normalise,
    stop_gradient_log_weights,
)


class FeynmanKac(NamedTuple):
    r"""A Feynman–Kac model as pure functions (step index ``t`` is an int, traced).

    Attributes
    ----------
    initial: ``(key, num) -> x0``, ``num`` draws from $M_0$ (leaves ``(num, ...)``).
    move: ``(key, t, x_prev) -> x``, one draw from $M_t(x_{t-1}^i, \cdot)$ per
        particle, $t \ge 1$.
    log_potential: ``(t, x_prev, x) -> (num,)``, $\log G_t$; at $t = 0$ ``x_prev`` is
        ``x``.
    num_steps: $T$.
    log_transition: ``(t, x_prev, x) -> (num,)``, the log density of the *latent*
        Markov kernel $f_t(x \mid x_{t-1})$ (not the proposal), broadcasting over the
        particle axis; needed by :func:`backward_sample`. None if unavailable.
    log_lookahead: ``(t, x) -> (num,)``, $\log \eta_t(x)$ for the auxiliary filter
        (used when resampling before step $t + 1$), or None ($\eta \equiv 1$).
    """

    initial: Callable
    move: Callable
    log_potential: Callable
    num_steps: int
    log_transition: Callable | None = None
    log_lookahead: Callable | None = None


class ParticleFilterResult(NamedTuple):
    """What :func:`particle_filter` returns (``history=False`` keeps only the last
    step's particles, weights and ancestors, without the time axis).

    Attributes
    ----------
    log_evidence: $\\log \\hat Z_{T-1}$, shape ``()``.
    log_evidence_increments: ``(T,)``, $\\log \\hat Z_t - \\log \\hat Z_{t-1}$ (the
        per-time terms $\\log \\hat p(y_t \\mid y_{0:t-1})$ of a bootstrap model).
    ess: ``(T,)`` effective sample size of the weights after reweighting at $t$.
    resampled: ``(T,)`` whether resampling happened before step $t$.
    particles: ``(T, N, ...)`` (pytree).
    log_weights: ``(T, N)`` normalised log weights.
    ancestors: ``(T, N)`` int: particle $i$ at $t$ descends from ``ancestors[t, i]``
        at $t - 1$ (``ancestors[0]`` is the identity).
    """

    log_evidence: jax.Array
    log_evidence_increments: jax.Array
    ess: jax.Array
    resampled: jax.Array
    particles: object
    log_weights: jax.Array
    ancestors: jax.Array


def take(tree, indices):
    """Rows ``indices`` of every leaf of a particle pytree."""
    return jax.tree_util.tree_map(lambda a: a[indices], tree)


def _num_particles(tree) -> int:
    return jax.tree_util.tree_leaves(tree)[0].shape[0]


def _safe(log_values):
    """NaN log-potentials (a density evaluated outside its support) count as
    impossible (``-inf``)."""
    return jnp.where(jnp.isnan(log_values), -jnp.inf, log_values)


def _lookahead(fk: FeynmanKac, t, x):
    if fk.log_lookahead is None:
        return jnp.zeros(_num_particles(x))
    return _safe(fk.log_lookahead(t, x))


def particle_filter(
    fk: FeynmanKac,
    key,
    num_particles: int,
    *,
    resampling: str = "systematic",
    ess_threshold: float = 0.5,
    stop_gradient: bool = False,
    history: bool = True,
) -> ParticleFilterResult:
    r"""Run a particle filter on ``fk`` (the module docstring has the algorithm).

    Parameters
    ----------
    fk: the :class:`FeynmanKac` model.
    key: PRNG key; the only source of randomness (same key, same estimate).
    num_particles: $N$ (static).
    resampling: ``"systematic"``, ``"stratified"``, ``"multinomial"`` or
        ``"residual"`` (:mod:`.resampling`).
    ess_threshold: resample when $\mathrm{ESS} < $ ``ess_threshold`` $\cdot N$;
        1.0 resamples at every step, 0.0 never.
    stop_gradient: resample with the stop-gradient weights (unbiased score
        estimates; the values are unchanged).
    history: keep the particles, weights and ancestors of every step (for
        smoothing); ``False`` keeps only the last step's (memory ``O(N)``).
    """
    resample = get_resampler(resampling, "particle_filter")
    key_init, key_steps = jax.random.split(key)
    x0 = fk.initial(key_init, num_particles)
    log_w0, total0 = normalise(_safe(fk.log_potential(0, x0, x0)))
    increment0 = total0 - jnp.log(num_particles)  # the weights start uniform
    identity = jnp.arange(num_particles, dtype=jnp.int32)

    def step(carry, inputs):
        x_prev, log_w_prev = carry
        t, key_t = inputs
        key_resample, key_move = jax.random.split(key_t)
        log_eta = _lookahead(fk, t - 1, x_prev)
        log_aux, log_aux_total = normalise(log_w_prev + log_eta)
        do_resample = ess(log_aux) < ess_threshold * num_particles

        def resampled(_):
            indices = resample(key_resample, log_aux, num_particles)
            if stop_gradient:
                return indices, stop_gradient_log_weights(log_aux, indices)
            return indices, jnp.full_like(log_aux, -jnp.log(num_particles))

        def kept(_):
            return identity, log_aux

        ancestors, log_w_pre = jax.lax.cond(do_resample, resampled, kept, None)
        parents = take(x_prev, ancestors)
        x = fk.move(key_move, t, parents)
        log_w = log_w_pre + _safe(fk.log_potential(t, parents, x)) - log_eta[ancestors]
        log_w, total = normalise(log_w)
        increment = log_aux_total + total
        out = (x, log_w, ancestors) if history else None
        return (x, log_w), (increment, ess(log_w), do_resample, out)

    steps = jnp.arange(1, fk.num_steps)
    keys = jax.random.split(key_steps, fk.num_steps - 1)
    (x_last, log_w_last), (increments, esses, flags, out) = jax.lax.scan(
        step, (x0, log_w0), (steps, keys)
    )
    increments = jnp.concatenate([increment0[None], increments])
    esses = jnp.concatenate([ess(log_w0)[None], esses])
    flags = jnp.concatenate([jnp.zeros((1,), bool), flags])
    if history:
        xs, log_ws, ancestors = out
        particles = jax.tree_util.tree_map(
            lambda a, b: jnp.concatenate([a[None], b]), x0, xs
        )
        log_weights = jnp.concatenate([log_w0[None], log_ws])
        ancestors = jnp.concatenate([identity[None], ancestors])
    else:
        particles, log_weights = x_last, log_w_last
        ancestors = identity
    return ParticleFilterResult(
        jnp.sum(increments),
        increments,
        esses,
        flags,
        particles,
        log_weights,
        ancestors,
    )


# -- models ---------------------------------------------------------------------------
def bootstrap(
    initial: Callable,
    transition: Callable,
    log_observation: Callable,
    num_steps: int,
    log_transition: Callable | None = None,
) -> FeynmanKac:
    r"""The bootstrap model of a state-space model: move by the latent transition,
    weight by the observation density, $G_t = g_t(y_t \mid x_t)$.

    ``initial(key, num)``, ``transition(key, t, x_prev)`` sample the latent process;
    ``log_observation(t, x) -> (num,)`` is $\log g_t(y_t \mid x)$;
    ``log_transition(t, x_prev, x)`` its density, if known (for backward sampling).
    """
    return FeynmanKac(
        initial,
        transition,
        lambda t, x_prev, x: log_observation(t, x),
        num_steps,
        log_transition,
    )


def guided(
    proposal_initial: Callable,
    proposal: Callable,
    log_proposal_initial: Callable,
    log_proposal: Callable,
    log_initial: Callable,
    log_transition: Callable,
    log_observation: Callable,
    num_steps: int,
) -> FeynmanKac:
    r"""The guided model: move by a proposal $q_t(x_t \mid x_{t-1})$ (which may look
    at $y_t$), weight by $G_t = f_t(x_t \mid x_{t-1})\, g_t(y_t \mid x_t) /
    q_t(x_t \mid x_{t-1})$ (and $G_0 = \mu(x_0) g_0(y_0 \mid x_0) / q_0(x_0)$).

    The samplers are ``proposal_initial(key, num)``, ``proposal(key, t, x_prev)``;
    the log densities ``log_proposal_initial(x)``, ``log_proposal(t, x_prev, x)``,
    ``log_initial(x)`` ($\mu$), ``log_transition(t, x_prev, x)`` ($f_t$) and
    ``log_observation(t, x)`` ($g_t$), each returning ``(num,)``. With
    $q_t = p(x_t \mid x_{t-1}, y_t)$ (the optimal proposal) the weights depend on the
    parent only, and the evidence's variance is far below the bootstrap filter's when
    observations are informative.
    """

    def log_potential(t, x_prev, x):
        first = log_initial(x) - log_proposal_initial(x)
        later = log_transition(t, x_prev, x) - log_proposal(t, x_prev, x)
        return jnp.where(t == 0, first, later) + log_observation(t, x)

    return FeynmanKac(
        proposal_initial, proposal, log_potential, num_steps, log_transition
    )


# -- smoothing ------------------------------------------------------------------------
def _final_draws(key, result: ParticleFilterResult, num_paths: int):
    return multinomial(key, result.log_weights[-1], num_paths)


def ancestral_paths(key, result: ParticleFilterResult, num_paths: int = 1):
    r"""``num_paths`` trajectories drawn from the filter's genealogy: a final
    particle by its weight, then its ancestors back to $t = 0$. Leaves
    ``(num_paths, T, ...)``. With the filter that produced the current estimate,
    this is the path a PMMH chain carries."""
    final = _final_draws(key, result, num_paths)

    def back(index, t):
        return result.ancestors[t][index], index

    _, indices = jax.lax.scan(
        back, final, jnp.arange(result.log_weights.shape[0] - 1, -1, -1)
    )
    indices = indices[::-1]  # (T, num_paths): the particle at each t

    return jax.tree_util.tree_map(
        lambda a: jnp.swapaxes(jax.vmap(lambda a_t, i: a_t[i])(a, indices), 0, 1),
        result.particles,
    )


def backward_sample(key, fk: FeynmanKac, result: ParticleFilterResult, num_paths=1):
    r"""Forward filtering, backward sampling: trajectories from the filter's
    approximation of the smoothing law, drawn backwards with
    $P(b_t = i) \propto W_t^i f_{t+1}(x_{t+1}^{b_{t+1}} \mid x_t^i)$. Costs
    $O(T N)$ per path; needs ``fk.log_transition``. Leaves ``(num_paths, T, ...)``.
    """
    if fk.log_transition is None:
        raise ValueError(
            "backward_sample: the Feynman-Kac model has no log_transition (the "
            "latent transition's density); use ancestral_paths instead."
        )
    num_steps = result.log_weights.shape[0]
    key_final, key_back = jax.random.split(key)
    final = _final_draws(key_final, result, num_paths)

    def one_path(key, last):
        def back(index_next, inputs):
            t, key_t = inputs
            x_t = take(result.particles, t)
            x_next = take(take(result.particles, t + 1), index_next[None])
            log_w = result.log_weights[t] + _safe(fk.log_transition(t + 1, x_t, x_next))
            index = multinomial(key_t, log_w, 1)[0]
            return index, index

        keys = jax.random.split(key, num_steps - 1)
        _, indices = jax.lax.scan(back, last, (jnp.arange(num_steps - 2, -1, -1), keys))
        indices = jnp.concatenate([indices[::-1], last[None]])
        return jax.tree_util.tree_map(
            lambda a: jax.vmap(lambda a_t, i: a_t[i])(a, indices), result.particles
        )

    return jax.vmap(one_path)(jax.random.split(key_back, num_paths), final)


def fixed_lag_means(result: ParticleFilterResult, lag: int, fn: Callable = None):
    r"""Fixed-lag smoothing: $E[\varphi(x_s) \mid y_{0:\min(s + L, T-1)}]$ for every
    $s$, from the genealogy of the particles at time $\min(s + L, T - 1)$.

    ``fn`` maps the particles at one time (leaves ``(N, ...)``) to ``(N, ...)``
    values (default: the particles themselves, an array). Returns ``(T, ...)``. The
    lag trades the degeneracy of long genealogies against the information from
    later observations.
    """
    fn = (lambda x: x) if fn is None else fn
    num_steps, num_particles = result.log_weights.shape

    def at(s):
        t = jnp.minimum(s + lag, num_steps - 1)
        index = jnp.arange(num_particles)

        def back(j, index):
            k = t - j
            return jnp.where(k > s, result.ancestors[k][index], index)

        index = jax.lax.fori_loop(0, lag, back, index)
        values = fn(take(take(result.particles, s), index))
        weights = jnp.exp(result.log_weights[t])
        return jnp.tensordot(weights, values, axes=1)

    return jax.vmap(at)(jnp.arange(num_steps))


# -- conditional SMC ------------------------------------------------------------------
class ConditionalSMCResult(NamedTuple):
    """One step of :func:`conditional_smc`: the new trajectory (leaves ``(T, ...)``),
    the conditional filter's log-evidence and its ESS per step ``(T,)``."""

    path: object
    log_evidence: jax.Array
    ess: jax.Array


def _set_first(tree, value):
    return jax.tree_util.tree_map(lambda a, v: a.at[0].set(v), tree, value)


def conditional_smc(
    fk: FeynmanKac, key, num_particles: int, reference, *, backward: bool = True
) -> ConditionalSMCResult:
    r"""The conditional SMC kernel: a particle filter in which particle 0 is the
    ``reference`` trajectory (leaves ``(T, ...)``), followed by one new trajectory
    drawn by backward sampling (``backward=True``, needs ``fk.log_transition``) or
    from the genealogy.

    The kernel leaves $\mathbb{Q}_{T-1}$ (the smoothing law) invariant for every
    $N \ge 2$, which is what makes particle Gibbs exact. Resampling is multinomial at
    every step (the other particles' ancestors are i.i.d., so fixing particle 0's
    ancestor keeps the conditional law right).
    """
    if backward and fk.log_transition is None:
        raise ValueError(
            "conditional_smc: backward=True needs the Feynman-Kac model's "
            "log_transition; pass backward=False for ancestral sampling."
        )
    key_init, key_steps, key_draw = jax.random.split(key, 3)
    x0 = _set_first(fk.initial(key_init, num_particles), take(reference, 0))
    log_w0, total0 = normalise(_safe(fk.log_potential(0, x0, x0)))
    increment0 = total0 - jnp.log(num_particles)

    def step(carry, inputs):
        x_prev, log_w_prev = carry
        t, key_t = inputs
        key_resample, key_move = jax.random.split(key_t)
        ancestors = multinomial(key_resample, log_w_prev, num_particles).at[0].set(0)
        parents = take(x_prev, ancestors)
        x = _set_first(fk.move(key_move, t, parents), take(reference, t))
        log_w, total = normalise(_safe(fk.log_potential(t, parents, x)))
        return (x, log_w), (x, log_w, ancestors, total - jnp.log(num_particles))

    steps = jnp.arange(1, fk.num_steps)
    keys = jax.random.split(key_steps, fk.num_steps - 1)
    _, (xs, log_ws, ancestors, totals) = jax.lax.scan(step, (x0, log_w0), (steps, keys))
    identity = jnp.arange(num_particles, dtype=jnp.int32)
    log_weights = jnp.concatenate([log_w0[None], log_ws])
    result = ParticleFilterResult(
        increment0 + jnp.sum(totals),
        jnp.concatenate([increment0[None], totals]),
        ess(log_weights),
        jnp.ones(fk.num_steps, bool).at[0].set(False),
        jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), x0, xs),
        log_weights,
        jnp.concatenate([identity[None], ancestors]),
    )
    if backward:
        paths = backward_sample(key_draw, fk, result)
    else:
        paths = ancestral_paths(key_draw, result)
    path = jax.tree_util.tree_map(lambda a: a[0], paths)
    return ConditionalSMCResult(path, result.log_evidence, result.ess)
