r"""``method="smc"``: adaptive tempered SMC over the model's parameters, with the
log-evidence and its Monte Carlo error.

On the unconstrained space $z$ (NumPyro's bijections, as for every backend), the
posterior is split into a prior part $\pi_0(z)$ -- the latent sites' densities with the
Jacobians of the transforms -- and the likelihood $L(z)$ -- every observed site (and
``numpyro.factor``, which cannot be sampled ancestrally, so counts as likelihood).
Tempered SMC (Del Moral, Doucet and Jasra, 2006) moves $N$ particles through

$$\pi_\beta(z) \propto \pi_0(z)\,\mathbb 1\{L(z) > 0\}\, L(z)^\beta, \qquad
0 = \beta_0 < \beta_1 < \dots < \beta_K = 1.$$

The indicator changes nothing for $\beta > 0$; at $\beta = 0$ it restricts the prior to
where the likelihood is positive, so that $L^0$ is never $0 \cdot (-\infty)$ in logs.

**Stage 0 (feasibility).** $N$ prior draws $z_i$ (the model run forwards, the latent
values mapped to the unconstrained space), weighted by $W_i \propto
\mathbb 1\{L(z_i) > 0\}$; the evidence starts at the share of feasible draws
$\hat p = \frac1N \sum_i \mathbb 1\{L(z_i) > 0\}$, unbiased for $p = P_{\pi_0}(L > 0)$:
$Z = \int \pi_0 L = p\, E_{\pi_0}[L \mid L > 0]$ exactly. When the likelihood is
positive on the whole prior (the usual case), $\hat p = 1$ and nothing changes.

**Stage** $k = 1, 2, \dots$, from particles $z_i$ with weights $W_i$ (normalised)
that target $\pi_{\beta_{k-1}}$:

1. **Choose** $\delta_k = \beta_k - \beta_{k-1}$ by bisection (BlackJAX's
   ``dichotomy``) so that the *conditional* effective sample size of the incremental
   weights $G_i = L(z_i)^{\delta}$ under the current weights (Zhou, Johansen and Aston,
   2016), $N\,(\sum_i W_i G_i)^2 / \sum_i W_i G_i^2$, equals ``target_ess`` $\times N$,
   or $\beta_k = 1$ when that keeps more. It reads the log-likelihoods kept from the
   previous stage (no model run).
2. **Resample** $N$ indices by $W$ (systematic) and **move** each particle by
   ``mcmc_steps`` steps of an MCMC kernel that leaves $\pi_{\beta_{k-1}}$ invariant
   (a proposal where $L = 0$ is rejected).
3. **Reweight** the moved particles $z'_i$ by $w_i = L(z'_i)^{\delta_k}$; the stage's
   evidence factor is $\frac1N \sum_i w_i$.

Steps 1 and 3 weigh the same step $\delta_k$ against two samples of
$\pi_{\beta_{k-1}}$: step 1 the weighted particles, step 3 the resampled and moved
ones. So the effective sample size of the weights that step 3 *realises* (the check
"SMC effective sample size") is ``target_ess`` $\times N$ up to Monte Carlo error.
(BlackJAX's ``adaptive_tempered_smc``, on which this backend was first built, solves the
plain ESS $(\sum_i G_i)^2 / \sum_i G_i^2$ on the particles *before* resampling, ignoring
their weights: a sample of $\pi_{\beta_{k-2}}$, one stage behind. On the regression of
the tests its realised ESS was about $0.7 N$ at every stage for a target of $0.5 N$.
The default ``target_ess`` is therefore 0.7: the schedule, cost and accuracy of the
former default.)

The estimate is $\hat Z = \hat p \prod_{k=1}^{K} \frac1N \sum_i w_i^{(k)}$, of
$Z = \int \pi_0(z) L(z)\,dz = p(y)$. A last stage at $\beta = 1$ resamples and moves
once more (step 1 gives $\delta = 0$, step 3 equal weights), so the draws are equally
weighted and diversified.

**Tempering stalled.** A run stops, and reports that it did not reach $\beta = 1$, when
stage 0 finds no feasible draw ($\hat p = 0$), when the bisection gives no positive
step ($\delta_k = 0$ or NaN), or when a weight or the evidence is not finite (a
likelihood of $+\infty$). Its draws and evidence are then not the posterior's.

**Inner kernel.** ``kernel="rwmh"`` (default; no gradients): a Gaussian random walk
with the covariance of the current weighted particles, $z' = z + \lambda\,C\,
\varepsilon$, $C C^\top$ the particles' covariance (its diagonal when there are fewer
than ten particles per dimension), $\lambda$ starting at $2.38/\sqrt{\dim}$ (Roberts,
Gelman and Gilks, 1997). ``kernel="hmc"``: Hamiltonian Monte Carlo with
``integration_steps`` leapfrog steps and the particles' covariance as inverse mass
matrix. Between stages, $\log\lambda$ (the walk's scale, or the leapfrog step size)
moves by $g(\bar a - a^\ast)$: $\bar a$ is the stage's mean acceptance rate,
$a^\ast = 0.234$ (random walk) or $0.65$ (HMC), and the gain $g = 2$ (random walk) or
$1$ (HMC, whose acceptance drops sharply past its stable step size).

**Waste-free** (``waste_free=True``; Dau and Chopin, 2022): step 2 resamples only
$M = N / P$ particles, $P$ = ``mcmc_steps``, and keeps every state of their $P$-step
chains, so a stage costs about $N$ MCMC steps instead of $N P$.

**Monte Carlo error.** ``runs`` independent runs (each run's draws are a ``chain`` of
the ``InferenceData``) give $\log \hat Z_1, \dots, \log \hat Z_R$. The estimate pools
them on the evidence scale, $\log \hat Z = \log \frac1R \sum_r \hat Z_r$ (each
$\hat Z_r$ is unbiased for a fixed schedule; pooling keeps that), and its standard error
is $s / \sqrt R$, $s$ the runs' standard deviation of $\log \hat Z_r$ (the delta
method). With one run no standard error is given (NaN).

**Posterior draws are not independent.** The $N$ draws of a run descend from common
ancestors through the resampling steps (and with few feasible prior draws, from only
those), so they carry less information than $N$ independent draws, and ordering them
as a chain would hide it (their order is random: no autocorrelation to see). The
backend therefore estimates the effective sample size from the spread of the runs:
for each latent site, with $m_{rc}$ the mean of component $c$ over run $r$'s draws,
$\bar s^2_c$ the within-run variance and $v_c$ the variance of $m_{rc}$ across runs,
$\text{ESS} = R / \operatorname{mean}_c (v_c / \bar s^2_c)$ (independent draws give
$v_c \approx \bar s^2_c / N$ and $\text{ESS} \approx RN$), capped at $RN$; the row
reports the smallest over the sites (with 4 runs, a rough figure: $v_c$ has 3 degrees
of freedom). The draws are still marked ``independent_draws`` for the generic checks,
which only means that they are not a Markov chain: autocorrelation-based R-hat and ESS
do not apply to them, and this row replaces them.

**Diagnostics**, beside the generic checks: whether every run reached $\beta = 1$
(within ``max_stages``, without stalling); the spread of $\log \hat Z_r$ across runs
(above 1 nat the evidence is not trustworthy: raise ``particles``); the smallest
realised ESS of the weights over the stages against ``target_ess``, and the feasible
share $\hat p$ of stage 0; the posterior ESS from the runs' spread; the smallest mean
acceptance rate of the inner kernel over the stages (particles that do not move leave
the population degenerate).

References
----------
Del Moral, P., Doucet, A. and Jasra, A. (2006). Sequential Monte Carlo samplers.
*JRSS B* 68(3), 411–436.
Jasra, A., Stephens, D. A., Doucet, A. and Tsagaris, T. (2011). Inference for Lévy
driven stochastic volatility models via adaptive sequential Monte Carlo. *Scand. J.
Stat.* 38(1), 1–22.
Zhou, Y., Johansen, A. M. and Aston, J. A. D. (2016). Toward automatic model
comparison: an adaptive sequential Monte Carlo approach. *J. Comput. Graph. Stat.*
25(3), 701–726.
Dau, H.-D. and Chopin, N. (2022). Waste-free sequential Monte Carlo. *JRSS B* 84(1),
114–148.
Chopin, N. and Papaspiliopoulos, O. (2020). *An Introduction to Sequential Monte
Carlo*, ch. 17. Springer.
Roberts, G. O., Gelman, A. and Gilks, W. R. (1997). Weak convergence and optimal
scaling of random walk Metropolis algorithms. *Ann. Appl. Probab.* 7(1), 110–120.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from jax.flatten_util import ravel_pytree
from numpyro.distributions.transforms import biject_to

from ..diagnostics.checks import grade
from ..solvers.resampling import ess, normalise, systematic
from ._backend import (
    BackendResult,
    bool_option,
    choice_option,
    float_option,
    int_option,
    optional_int_option,
    register_backend,
    stream_key,
)
from ._model import ModelAdapter, as_numpy

KERNELS = ("rwmh", "hmc")
#: target acceptance rate of each inner kernel (the scale adaptation's fixed point)
TARGET_ACCEPTANCE = {"rwmh": 0.234, "hmc": 0.65}
#: gain of the scale adaptation: HMC's acceptance falls off a cliff past the
#: stable step size, so it moves more cautiously
ADAPT_RATE = {"rwmh": 2.0, "hmc": 1.0}
_LOG_SCALE_BOUNDS = (-30.0, 5.0)
_BETA_SNAP = 1e-9  # a tempering parameter this close to 1 is 1
_PRIOR_TRIES = 100
#: fewer feasible prior draws (stage 0) than this rebuild the posterior from few
#: ancestors: warn (their effect shows in the evidence's spread and the posterior ESS)
_FEASIBLE_PASS = 50


# -- the model as prior x likelihood --------------------------------------------------


def _site_log_prob(site):
    log_prob = jnp.sum(site["fn"].log_prob(site["value"]))
    scale = site["scale"]
    return log_prob if scale is None else scale * log_prob


def _not_nan(value):
    return jnp.where(jnp.isnan(value), -jnp.inf, value)


def log_prior_and_likelihood(model: ModelAdapter, z):
    r"""``(log prior, log likelihood)`` of ``model`` at a flat unconstrained position
    ``z (dim,)``: one run of the model with every latent site set to its constrained
    value $x = T(u)$; the prior is $\sum \log p(x) + \log |\det J_T(u)|$ over the
    latent sites, the likelihood the sum over observed sites (``numpyro.factor``
    included). NaN becomes $-\infty$ (no weight, never accepted)."""
    unconstrained = model.unravel(z)

    def constrained_value(site):
        if site["type"] == "sample" and site["name"] in unconstrained:
            return biject_to(site["fn"].support)(unconstrained[site["name"]])
        return None

    tr = numpyro.handlers.trace(
        numpyro.handlers.substitute(model.model, substitute_fn=constrained_value)
    ).get_trace(*model.args, **model.kwargs)
    log_prior = log_likelihood = jnp.zeros((), model.dim_and_dtype()[1])
    for name, site in tr.items():
        if site["type"] != "sample":
            continue
        if name in unconstrained:
            u, x = unconstrained[name], site["value"]
            log_det = jnp.sum(biject_to(site["fn"].support).log_abs_det_jacobian(u, x))
            if site["scale"] is not None:
                log_det = site["scale"] * log_det
            log_prior = log_prior + _site_log_prob(site) + log_det
        elif site["is_observed"]:
            log_likelihood = log_likelihood + _site_log_prob(site)
    return _not_nan(log_prior), _not_nan(log_likelihood)


def split_logdensity(model: ModelAdapter) -> Callable:
    """``z (dim,) -> (log prior, log likelihood)`` (see
    :func:`log_prior_and_likelihood`): both parts from one run of the model, in one
    ``jax.jit``-wrapped function, so that its every use in a sampler is traced once
    (XLA inlines it: the compiled program is unchanged)."""
    return jax.jit(lambda z: log_prior_and_likelihood(model, z))


def check_proper_prior(model: Callable, args=(), kwargs=None) -> None:
    """Raise a ``ValueError`` naming the first latent site of the NumPyro ``model``
    whose distribution cannot be sampled (an improper prior such as
    ``ImproperUniform``): tempered SMC starts from prior draws.

    The model is traced abstractly (``jax.eval_shape``: nothing is computed) with the
    latent sites' values filled in, so that no distribution is sampled by the trace.
    A trace that fails for another reason is left to the sampler to report.
    """
    found = []

    def fill(site):
        if site["type"] != "sample" or site["is_observed"]:
            return None
        fn = site["fn"]
        try:
            fn.sample(jax.random.key(0))
        except NotImplementedError:
            found.append((site["name"], type(fn).__name__))
        try:
            to_support = biject_to(fn.support)
        except NotImplementedError:  # no bijection (a discrete site): sample it
            return None
        return to_support(jnp.zeros(to_support.inverse_shape(fn.shape())))

    def run():
        numpyro.handlers.trace(
            numpyro.handlers.substitute(model, substitute_fn=fill)
        ).get_trace(*args, **(kwargs or {}))
        return 0

    try:
        jax.eval_shape(run)
    except Exception:
        if not found:
            return
    if found:
        name, kind = found[0]
        raise ValueError(
            f"fit: method='smc' (tempered SMC) starts from draws of the prior, so it "
            f"needs a proper prior to start from; latent site {name!r} has an "
            f"improper {kind} prior, which cannot be sampled. Give {name!r} a proper "
            "prior (a wide Normal, say); for the points that augment an observed "
            "sp.Path with substeps (the site '<name>_latent'), use "
            "parametrization='noncentered' (the default): its standard normal "
            "innovations are a proper prior."
        )


def prior_particles(
    model: ModelAdapter, key, num_particles: int, logdensity_fn: Callable | None = None
):
    """``num_particles`` draws from the prior, mapped to the flat unconstrained space,
    ``(num_particles, dim)``.

    Each particle runs the model forwards (observed sites keep their data) and takes
    the latent sites' values through the inverse bijections. A draw that lands where
    the unconstrained value or the prior density is not finite (a Beta draw of exactly
    0, say) is drawn again, up to 100 times. ``logdensity_fn``: the model's
    :func:`split_logdensity` when the caller has it (one trace for both).
    """
    dtype = model.dim_and_dtype()[1]
    if logdensity_fn is None:
        logdensity_fn = split_logdensity(model)

    def draw(key):
        tr = numpyro.handlers.trace(numpyro.handlers.seed(model.model, key)).get_trace(
            *model.args, **model.kwargs
        )
        unconstrained = {
            n: biject_to(tr[n]["fn"].support).inv(tr[n]["value"])
            for n in model.latent_names
        }
        return ravel_pytree(unconstrained)[0].astype(dtype)

    def ok(z):
        return jnp.all(jnp.isfinite(z)) & jnp.isfinite(logdensity_fn(z)[0])

    def one(key):
        def cond(carry):
            i, _, z = carry
            return (i < _PRIOR_TRIES) & ~ok(z)

        def body(carry):
            i, key, _ = carry
            key, sub = jax.random.split(key)
            return i + 1, key, draw(sub)

        key, sub = jax.random.split(key)
        return jax.lax.while_loop(cond, body, (0, key, draw(sub)))[2]

    return jax.vmap(one)(jax.random.split(key, num_particles))


# -- the sampler ------------------------------------------------------------------


class TemperedState(NamedTuple):
    """One run's state between stages."""

    particles: jax.Array  # (N, dim) flat unconstrained positions
    log_weights: jax.Array  # (N,) normalised log weights (-inf: no weight)
    loglikelihood: jax.Array  # (N,) log L at the particles (-inf: infeasible)
    tempering_param: jax.Array  # () beta
    log_evidence: jax.Array  # () the log-evidence gathered so far
    log_scale: jax.Array  # () log of the walk's scale or of HMC's step size


class TemperedInfo(NamedTuple):
    """One stage's diagnostics (not fed back)."""

    tempering_param: jax.Array  # () beta after the stage
    log_evidence_increment: jax.Array  # () log of the mean incremental weight
    ess: jax.Array  # () realised ESS of the new weights, a share of N
    acceptance_rate: jax.Array  # () mean acceptance rate of the stage's moves
    scale: jax.Array  # () the walk's scale or the step size used
    stalled: jax.Array  # () bool: no positive step, or weights not finite (stop)


def initial_log_scale(kernel: str, dim: int) -> float:
    """The inner kernel's first log scale: $2.38/\\sqrt{\\dim}$ for the random walk,
    $\\dim^{-1/4}$ for HMC's step size."""
    if kernel == "rwmh":
        return math.log(2.38 / math.sqrt(dim))
    return -0.25 * math.log(dim)


def _finite_part(loglikelihood):
    """The log-likelihood where finite, 0 elsewhere: what multiplies a tempering step
    (an infeasible particle enters through the indicator only, never as
    $0 \\cdot (-\\infty)$)."""
    return jnp.where(jnp.isfinite(loglikelihood), loglikelihood, 0.0)


def init(particles, logdensity_fn: Callable, kernel: str = "rwmh") -> TemperedState:
    """State after stage 0 from prior ``particles (N, dim)``: at $\\beta = 0$, weighted
    by $\\mathbb 1\\{L > 0\\}$, with the log-evidence $\\log \\hat p$ (the log of the
    share of feasible particles; $-\\infty$ when there is none).

    ``logdensity_fn(z) -> (log prior, log likelihood)`` (:func:`split_logdensity`).
    """
    particles = jnp.asarray(particles)
    num_particles, dim = particles.shape
    dtype = particles.dtype
    _, loglikelihood = jax.vmap(logdensity_fn)(particles)
    feasible = loglikelihood > -jnp.inf
    log_weights, log_total = normalise(jnp.where(feasible, 0.0, -jnp.inf).astype(dtype))
    return TemperedState(
        particles,
        log_weights,
        loglikelihood.astype(dtype),
        jnp.zeros((), dtype),
        (log_total - math.log(num_particles)).astype(dtype),
        jnp.asarray(initial_log_scale(kernel, dim), dtype),
    )


def log_conditional_ess(log_weights, log_increments):
    r"""Log of the conditional effective sample size, as a share of $N$, of
    incremental weights $G_i$ under normalised weights $W_i$ (Zhou, Johansen and
    Aston, 2016): $(\sum_i W_i G_i)^2 / \sum_i W_i G_i^2$, from ``(N,)`` logs. With
    equal weights it is the ordinary ESS of $G$ over $N$.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> log_w = jnp.log(jnp.array([0.5, 0.5, 0.0]))
    >>> round(float(jnp.exp(log_conditional_ess(log_w, jnp.log(jnp.array(
    ...     [1.0, 3.0, 100.0]))))), 4)
    0.8
    """
    lse = jax.scipy.special.logsumexp
    return 2.0 * lse(log_weights + log_increments) - lse(
        log_weights + 2.0 * log_increments
    )


def next_tempering_param(state: TemperedState, target_ess: float):
    """$\\beta_k$ for the next stage: the bisection of step 1 (see the module
    docstring) on the conditional ESS of $L^\\delta$ under the current weights, or 1
    when that keeps more than ``target_ess``. NaN or $\\beta_{k-1}$ itself when no
    positive step exists (the caller stops: tempering stalled)."""
    from blackjax.smc.solver import dichotomy

    beta = state.tempering_param
    loglikelihood = _finite_part(state.loglikelihood)
    log_target = jnp.log(jnp.asarray(target_ess, beta.dtype))

    def excess(delta):
        return (
            log_conditional_ess(state.log_weights, delta * loglikelihood) - log_target
        )

    delta = dichotomy(excess, jnp.zeros_like(beta), 1.0 - beta)
    delta = jnp.clip(delta, 0.0, 1.0 - beta)  # NaN stays NaN
    new = beta + delta
    return jnp.where(new >= 1.0 - _BETA_SNAP, jnp.ones_like(new), new)


def weighted_moments(particles, weights):
    """Mean ``(dim,)`` and covariance ``(dim, dim)`` of weighted particles
    ``(N, dim)``, ``weights (N,)`` summing to 1 (zero-weight particles, which may sit
    at infinity, do not count)."""
    w = weights[:, None]
    safe = jnp.where(w > 0, particles, 0.0)
    mean = jnp.sum(w * safe, axis=0)
    centred = jnp.where(w > 0, particles - mean, 0.0)
    return mean, (w * centred).T @ centred


def proposal_factor(cov, dense: bool):
    """A factor $C$ with $C C^\\top$ = ``cov`` (plus a little jitter), or the square
    root of its diagonal when not ``dense`` or when the Cholesky factor fails."""
    dim = cov.shape[0]
    var = jnp.maximum(jnp.diag(cov), 0.0)
    jitter = 1e-10 * (1.0 + jnp.mean(var))
    diag = jnp.diag(jnp.sqrt(var + jitter))
    if not dense:
        return diag
    chol = jnp.linalg.cholesky(cov + jitter * jnp.eye(dim, dtype=cov.dtype))
    return jnp.where(jnp.all(jnp.isfinite(chol)), chol, diag)


def _inner_kernel(kernel: str, integration_steps: int):
    """``(init_fn, step_fn)`` of the inner MCMC kernel, ``step_fn(key, state,
    logdensity_fn, log_scale, factor)``: BlackJAX's random walk (with the proposal
    $\\lambda C \\varepsilon$) or HMC (inverse mass matrix $C C^\\top$)."""
    import blackjax

    if kernel == "rwmh":
        walk = blackjax.mcmc.random_walk.build_additive_step()

        def step(key, state, logdensity_fn, log_scale, factor):
            def random_step(key, position):
                eps = jax.random.normal(key, position.shape, position.dtype)
                return jnp.exp(log_scale) * (factor @ eps)

            return walk(key, state, logdensity_fn, random_step)

        return blackjax.mcmc.random_walk.init, step

    hmc = blackjax.mcmc.hmc.build_kernel()

    def step(key, state, logdensity_fn, log_scale, factor):
        return hmc(
            key,
            state,
            logdensity_fn,
            jnp.exp(log_scale),
            factor @ factor.T,
            integration_steps,
        )

    return blackjax.mcmc.hmc.init, step


def tempered_logdensity(logdensity_fn: Callable, beta) -> Callable:
    r"""$\log \pi_\beta(z) = \log \pi_0(z) + \beta \log L(z)$ where $L(z) > 0$,
    $-\infty$ elsewhere (at $\beta = 0$: the prior restricted to the feasible set), from
    one run of the model (``logdensity_fn(z) -> (log prior, log likelihood)``)."""

    def logdensity(z):
        log_prior, loglikelihood = logdensity_fn(z)
        tempered = log_prior + beta * _finite_part(loglikelihood)
        return jnp.where(loglikelihood > -jnp.inf, tempered, -jnp.inf)

    return logdensity


def build_kernel(
    logdensity_fn: Callable,
    num_particles: int,
    dim: int,
    *,
    kernel: str = "rwmh",
    mcmc_steps: int = 10,
    target_ess: float = 0.7,
    waste_free: bool = False,
    integration_steps: int = 10,
):
    """One stage of adaptive tempered SMC (steps 1-3 of the module docstring) as a pure
    ``stage(key, state) -> (TemperedState, TemperedInfo)``.

    ``logdensity_fn(z) -> (log prior, log likelihood)`` (:func:`split_logdensity`).
    The static options fix the inner kernel, its steps per stage, the ESS target and
    the update (BlackJAX's move-and-keep-last, or waste-free with chains of
    ``mcmc_steps`` states: ``num_particles`` must then be a multiple of it). A stage
    that stalls (no positive step, or weights or evidence not finite) returns the
    state it was given, with ``info.stalled`` set.
    """
    from functools import partial

    from blackjax.smc.base import update_and_take_last
    from blackjax.smc.waste_free import waste_free_smc

    mcmc_init, mcmc_step = _inner_kernel(kernel, integration_steps)
    if waste_free:
        strategy, steps = waste_free_smc(num_particles, mcmc_steps), None
    else:
        strategy, steps = update_and_take_last, mcmc_steps
    dense = dim * 10 <= num_particles
    target, rate = TARGET_ACCEPTANCE[kernel], ADAPT_RATE[kernel]
    log_num = math.log(num_particles)

    def stage(key, state: TemperedState):
        key_resample, key_move = jax.random.split(key)
        beta = state.tempering_param
        new_beta = next_tempering_param(state, target_ess)
        rejuvenation = beta >= 1.0
        no_step = ~rejuvenation & ~(new_beta > beta)  # NaN or 0: no positive step
        delta = jnp.where(no_step, 0.0, new_beta - beta)

        # step 2: resample by the current weights, move under pi_beta
        weights = jnp.exp(state.log_weights)
        _, cov = weighted_moments(state.particles, weights)
        step = partial(
            mcmc_step,
            log_scale=state.log_scale,
            factor=proposal_factor(cov, dense),
        )
        update, num_resampled = strategy(
            mcmc_init,
            tempered_logdensity(logdensity_fn, beta),
            step,
            n_particles=num_particles,
            num_mcmc_steps=steps,
        )
        ancestors = systematic(key_resample, state.log_weights, num_resampled)
        particles, update_info = update(
            jax.random.split(key_move, num_resampled), state.particles[ancestors], {}
        )
        acceptance = jnp.mean(update_info.acceptance_rate)

        # step 3: reweight the moved particles by L^delta
        _, loglikelihood = jax.vmap(logdensity_fn)(particles)
        log_increments = jnp.where(
            loglikelihood > -jnp.inf, delta * _finite_part(loglikelihood), -jnp.inf
        )
        log_weights, log_total = normalise(log_increments)
        increment = log_total - log_num
        log_evidence = state.log_evidence + increment
        stalled = (
            no_step
            | ~jnp.isfinite(log_evidence)
            | jnp.any(loglikelihood == jnp.inf)
            | jnp.any((state.log_weights > -jnp.inf) & (state.loglikelihood == jnp.inf))
        )
        log_scale = jnp.clip(
            state.log_scale + rate * (acceptance - target), *_LOG_SCALE_BOUNDS
        )
        new = TemperedState(
            particles,
            log_weights,
            loglikelihood,
            jnp.where(no_step, beta, new_beta).astype(beta.dtype),
            log_evidence,
            log_scale.astype(state.log_scale.dtype),
        )
        new = jax.tree_util.tree_map(
            lambda old, value: jnp.where(stalled, old, value), state, new
        )
        return new, TemperedInfo(
            new.tempering_param,
            increment,
            ess(log_increments) / num_particles,
            acceptance,
            jnp.exp(state.log_scale),
            stalled,
        )

    return stage


class SamplingAlgorithm(NamedTuple):
    """``(init, step)``: ``init(particles) -> TemperedState``, ``step(key, state) ->
    (TemperedState, TemperedInfo)``."""

    init: Callable
    step: Callable


def as_top_level_api(
    logdensity_fn: Callable,
    num_particles: int,
    dim: int,
    **options,
) -> SamplingAlgorithm:
    """Adaptive tempered SMC for ``logdensity_fn(z) -> (log prior, log likelihood)``
    on ``(dim,)`` positions; ``options`` as in :func:`build_kernel`."""
    kernel = options.get("kernel", "rwmh")
    return SamplingAlgorithm(
        lambda particles: init(particles, logdensity_fn, kernel),
        build_kernel(logdensity_fn, num_particles, dim, **options),
    )


def run_tempered_smc(
    key,
    step: Callable,
    state: TemperedState,
    max_stages: int,
    *,
    progress: Callable | None = None,
    run_id=0,
):
    """Stages until $\\beta = 1$, then one more at $\\beta = 1$ (resample and move:
    equally weighted draws), at most ``max_stages`` in all, in one ``while_loop``;
    a stalled stage ends the run.

    Returns ``(final_state, infos, num_stages, finished)``: ``infos`` is a
    :class:`TemperedInfo` of ``(max_stages,)`` arrays, NaN (``stalled``: False) after
    ``num_stages``; ``finished`` says whether the last stage at $\\beta = 1$ ran;
    ``infos.stalled.any()`` whether the run stalled.
    ``progress(run_id, stage, beta)`` is called on the host after each stage.
    """
    dtype = state.log_evidence.dtype
    blank = TemperedInfo(
        *(jnp.full((max_stages,), jnp.nan, dtype) for _ in range(5)),
        jnp.zeros((max_stages,), bool),
    )

    def cond(carry):
        stage, done, *_ = carry
        return ~done & (stage < max_stages)

    def body(carry):
        stage, _, key, state, infos = carry
        key, sub = jax.random.split(key)
        rejuvenation = state.tempering_param >= 1.0
        state, info = step(sub, state)
        infos = jax.tree_util.tree_map(
            lambda a, v: a.at[stage].set(v.astype(a.dtype)), infos, info
        )
        if progress is not None:
            jax.debug.callback(progress, run_id, stage + 1, info.tempering_param)
        return stage + 1, rejuvenation | info.stalled, key, state, infos

    num_stages, done, _, state, infos = jax.lax.while_loop(
        cond, body, (jnp.zeros((), jnp.int32), jnp.asarray(False), key, state, blank)
    )
    return state, infos, num_stages, done & ~jnp.any(infos.stalled)


def select_draws(key, log_weights, num_samples: int):
    """``num_samples`` indices into ``(N,)`` particles with normalised
    ``log_weights``: systematic resampling (sdeppl's
    :func:`~sdeppl.solvers.resampling.systematic`) of the particles in a random order
    (with equal weights and ``num_samples`` = N: every particle once, shuffled)."""
    key_perm, key_res = jax.random.split(key)
    order = jax.random.permutation(key_perm, log_weights.shape[0])
    return order[systematic(key_res, log_weights[order], num_samples)]


def combine_log_evidence(log_evidences) -> tuple[float, float]:
    r"""``(log Z, standard error)`` from independent runs' $\log \hat Z_r$: the log of
    the mean of $\hat Z_r$, and the runs' standard deviation of $\log \hat Z_r$ over
    $\sqrt R$ (NaN for one run).

    Examples
    --------
    >>> value, se = combine_log_evidence([-10.1, -9.9])
    >>> round(value, 4), round(se, 4)
    (-9.995, 0.1)
    """
    values = np.asarray(log_evidences, dtype=float)
    num = values.size
    if num == 0 or not np.all(np.isfinite(values)):
        return float("nan"), float("nan")
    pooled = float(np.logaddexp.reduce(values) - np.log(num))
    se = float(np.std(values, ddof=1) / np.sqrt(num)) if num > 1 else float("nan")
    return pooled, se


def runs_ess(draws: dict) -> tuple[float, str | None]:
    r"""Effective sample size of the posterior draws from the spread of independent
    runs (see the module docstring): ``draws`` maps a site to ``(runs, draws, ...)``;
    per site $R / \operatorname{mean}_c (v_c / \bar s^2_c)$ over its components $c$
    (constant components left out), capped at the number of draws. Returns the
    smallest over the sites and that site's name, or ``(nan, None)`` with one run.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((4, 1000))
    >>> value, name = runs_ess({"x": x + np.array([[0.0], [1.0], [0.0], [1.0]])})
    >>> # the runs' means spread like means of 3 draws each: about 4 x 3 in all
    >>> name, round(value)
    ('x', 11)
    """
    best, best_name = float("nan"), None
    for name, values in draws.items():
        values = np.asarray(values, dtype=float)
        runs, num = values.shape[:2]
        if runs < 2 or num < 2:
            continue
        values = values.reshape(runs, num, -1)
        within = values.var(axis=1, ddof=1).mean(axis=0)
        between = values.mean(axis=1).var(axis=0, ddof=1)
        keep = np.isfinite(within) & np.isfinite(between) & (within > 0)
        if not keep.any():
            continue
        value = float(min(runs / np.mean(between[keep] / within[keep]), runs * num))
        if best_name is None or value < best:
            best, best_name = value, name
    return best, best_name


# -- the backend --------------------------------------------------------------------


class _StageProgress:
    """A tqdm bar over the tempering: its count is the sum of the runs' $\\beta$ (one
    unit per run), its description the latest stage."""

    def __init__(self, num_runs: int):
        self.num_runs = num_runs
        self.betas: dict = {}
        self.bar = None

    def __call__(self, run_id, stage, beta):
        from tqdm.auto import tqdm

        run = int(np.asarray(run_id).reshape(-1)[0])
        beta = float(np.asarray(beta).reshape(-1)[0])
        self.betas[run] = beta
        if self.bar is None:
            self.bar = tqdm(
                total=float(self.num_runs),
                leave=True,
                bar_format="{desc}{percentage:3.0f}%|{bar}| {elapsed}",
            )
        self.bar.n = round(sum(self.betas.values()), 6)
        self.bar.set_description(
            f"tempered SMC, run {run + 1}/{self.num_runs}: stage {int(stage)}, "
            f"beta={beta:.3g}"
        )

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _reached_row(figures: dict, options: dict) -> tuple:
    reached, stalled = figures["reached"], figures["stalled"]
    runs = len(reached)
    value = f"{int(np.sum(reached))}/{runs} runs"
    if np.all(reached):
        return (
            "tempering reached beta=1",
            value,
            "pass",
            "every run reached the posterior",
        )
    if np.any(stalled):
        run = int(np.flatnonzero(stalled)[0])
        beta = figures["stalled_beta"][run]
        if figures["feasible"][run] == 0:
            cause = (
                f"none of the {options['particles']} prior draws has a finite "
                "likelihood (the prior puts no mass where the data are possible)"
            )
        else:
            cause = (
                "no positive tempering step, or weights that are not finite (a "
                "likelihood of +inf or NaN)"
            )
        return (
            "tempering reached beta=1",
            f"{value}; run {run + 1} stalled at beta={beta:.3g}",
            "fail",
            f"tempering stalled: {cause}; its draws and evidence are not the "
            "posterior's. Check that the prior covers the parameters the data allow "
            "and that the likelihood is finite there, or raise particles",
        )
    return (
        "tempering reached beta=1",
        value,
        "fail",
        f"a run stopped at max_stages={options['max_stages']} before beta=1: its "
        "draws and evidence are not the posterior's; raise max_stages",
    )


def _ess_row(figures: dict, options: dict) -> tuple:
    """The realised ESS of each stage's weights against ``target_ess`` (step 1 aims
    at it, so far below it the weighted particles mis-predicted the next target), and
    stage 0's feasible share."""
    target, min_ess = options["target_ess"], figures["min_ess"]
    feasible, particles = figures["min_feasible"], options["particles"]
    if not np.isfinite(min_ess):
        return (
            "SMC effective sample size",
            "n/a (no tempering stage)",
            "n/a",
            "no stage weighted the particles",
        )
    value = f"min over stages {min_ess:.0%} of particles (target {target:.0%})"
    if feasible < particles:
        value += f"; stage 0: {feasible}/{particles} prior draws feasible"
    ess_status = grade(
        min_ess, lambda e: e >= 0.5 * target, lambda e: e >= 0.1 * target
    )
    # none feasible: the run stalled, which the first row says
    feasible_status = "warn" if 0 < feasible < _FEASIBLE_PASS else "pass"
    advice = []
    if ess_status != "pass":
        advice.append(
            "at some stage the weights of the moved particles were far less balanced "
            "than the current weighted particles predicted: too few particles for how "
            "fast the tempered targets change; raise particles, or target_ess for "
            "smaller steps"
        )
    if feasible_status != "pass":
        advice.append(
            f"in some run only {feasible} prior draws had a finite likelihood (fewer "
            f"than {_FEASIBLE_PASS}): the posterior is "
            "rebuilt from these few, and the evidence's first factor is noisy; raise "
            "particles, or use a prior closer to the data's support"
        )
    status = "fail" if "fail" in (ess_status, feasible_status) else "warn"
    if not advice:
        status = "pass"
        advice = ["every stage kept about the targeted share of the weights"]
    return ("SMC effective sample size", value, status, "; ".join(advice))


def _posterior_ess_row(figures: dict, options: dict) -> tuple:
    value, name = figures["posterior_ess"], figures["posterior_ess_site"]
    runs = len(figures["reached"])
    if not np.all(figures["reached"]):
        return (
            "SMC posterior ESS",
            "n/a (beta=1 not reached)",
            "n/a",
            "no posterior draws without the posterior",
        )
    if name is None:
        return (
            "SMC posterior ESS",
            "n/a (one run)" if runs == 1 else "n/a",
            "n/a",
            "the draws of a run share ancestors; their ESS comes from the spread of "
            "independent runs: use runs >= 2",
        )
    status = grade(value, lambda v: v >= 100 * runs, lambda v: v >= 50 * runs)
    return (
        "SMC posterior ESS",
        f"{value:.0f} ({name}), from the spread of {runs} runs",
        status,
        "the runs agree on the posterior as independent draws would"
        if status == "pass"
        else "the draws of a run share a few ancestors, so the runs disagree on the "
        "posterior: raise particles (more ancestors) or mcmc_steps (more diverse "
        "descendants)",
    )


def _checks(figures: dict, options: dict) -> tuple:
    """The SMC backend's diagnostics rows (see the module docstring) from the
    ``figures`` that :func:`_result` gathers."""
    reached, log_z_runs = figures["reached"], figures["log_z_runs"]
    runs = len(log_z_runs)
    all_reached = bool(np.all(reached))
    rows = [_reached_row(figures, options)]
    if runs > 1 and all_reached:
        spread = float(np.std(log_z_runs, ddof=1))
        rows.append(
            (
                "log-evidence spread",
                f"sd {spread:.3g} nat over {runs} runs",
                grade(spread, lambda s: s <= 1.0, lambda s: s <= 3.0),
                "the runs agree on the evidence"
                if spread <= 1.0
                else "the runs disagree by more than 1 nat: raise particles (or "
                "mcmc_steps) before trusting the evidence",
            )
        )
    else:
        rows.append(
            (
                "log-evidence spread",
                "n/a (one run)" if runs == 1 else "n/a (beta=1 not reached)",
                "n/a",
                "runs=1 gives no Monte Carlo error: use runs >= 2"
                if runs == 1
                else "no evidence without the posterior",
            )
        )
    rows.append(_ess_row(figures, options))
    rows.append(_posterior_ess_row(figures, options))
    acceptance = figures["min_acceptance"]
    if not np.isfinite(acceptance):
        rows.append(
            (
                "inner-kernel acceptance",
                "n/a (no move to judge)",
                "n/a",
                "the particles were not moved past the first stage",
            )
        )
        return tuple(rows)
    rows.append(
        (
            "inner-kernel acceptance",
            f"min over stages {acceptance:.3f} ({options['kernel']})",
            grade(acceptance, lambda a: a >= 0.1, lambda a: a >= 0.02),
            "the particles move at every stage"
            if acceptance >= 0.1
            else "at some stage the particles barely moved: raise mcmc_steps or "
            "particles"
            + (", or use kernel='hmc'" if options["kernel"] == "rwmh" else ""),
        )
    )
    return tuple(rows)


class _TemperedSMC:
    name = "smc"
    summary = "adaptive tempered SMC over the parameters (BlackJAX), with log-evidence"
    options = {
        "particles": int_option(1000, 20, "particles per run"),
        "runs": int_option(
            4, 1, "independent runs (chains); their spread gives the evidence's error"
        ),
        "target_ess": float_option(
            0.7,
            0.0,
            1.0,
            "conditional ESS (share of particles) that sets each next temperature",
        ),
        "mcmc_steps": int_option(
            10, 1, "inner MCMC steps per stage (waste-free: the chains' length)"
        ),
        "kernel": choice_option("rwmh", KERNELS, "inner MCMC kernel"),
        "integration_steps": int_option(10, 1, "leapfrog steps per HMC move"),
        "waste_free": bool_option(False, "waste-free SMC (Dau and Chopin, 2022)"),
        "max_stages": int_option(500, 2, "most tempering stages per run"),
        "samples": optional_int_option(
            None,
            1,
            "draws kept per run, resampled from the final particles (None: all)",
        ),
    }
    needs_gradients = False  # kernel="hmc" differentiates; the default does not
    discrete_latent = False
    jittable = True

    def check(self, options):
        particles, steps = options["particles"], options["mcmc_steps"]
        if options["waste_free"] and (steps < 2 or particles % steps):
            raise ValueError(
                f"waste_free=True runs particles/mcmc_steps chains of mcmc_steps "
                f"states: particles ({particles}) must be a multiple of mcmc_steps "
                f"({steps}) and mcmc_steps >= 2. Set particles to a multiple of "
                "mcmc_steps."
            )
        samples = options["samples"]
        if samples is not None and samples > particles:
            raise ValueError(
                f"samples ({samples}) must be <= particles ({particles}); draws are "
                "resampled from one run's particles."
            )

    def _program(self, model, options, progress=None):
        """``one_run(key, run_id) -> (constrained draws, lp, per-run summary)``."""
        check_proper_prior(model.model, model.args, model.kwargs)
        dim, _ = model.dim_and_dtype()
        logdensity_fn = split_logdensity(model)
        num_particles = options["particles"]
        num_samples = options["samples"] or num_particles
        step = build_kernel(
            logdensity_fn,
            num_particles,
            dim,
            kernel=options["kernel"],
            mcmc_steps=options["mcmc_steps"],
            target_ess=options["target_ess"],
            waste_free=options["waste_free"],
            integration_steps=options["integration_steps"],
        )

        def one_run(key, run_id):
            key_prior, key_run, key_draws = jax.random.split(key, 3)
            state = init(
                prior_particles(model, key_prior, num_particles, logdensity_fn),
                logdensity_fn,
                options["kernel"],
            )
            feasible = jnp.sum(state.log_weights > -jnp.inf)
            feasible = jnp.where(jnp.isfinite(state.log_evidence), feasible, 0)
            state, infos, num_stages, finished = run_tempered_smc(
                key_run,
                step,
                state,
                options["max_stages"],
                progress=progress,
                run_id=run_id,
            )
            chosen = state.particles[
                select_draws(key_draws, state.log_weights, num_samples)
            ]
            lp = jax.vmap(model.logdensity)(chosen)
            summary = {
                "log_evidence": state.log_evidence,
                "num_stages": num_stages,
                "finished": finished,
                "stalled": jnp.any(infos.stalled),
                "reached": (state.tempering_param >= 1.0) & ~jnp.any(infos.stalled),
                "beta": state.tempering_param,
                "feasible": feasible,
                "distinct": _distinct_share(state.particles),
                "infos": infos,
                "final_log_scale": state.log_scale,
            }
            return jax.vmap(model.constrain)(chosen), lp, summary

        return one_run

    def draws(self, model, key, options):
        """One run's constrained draws ``(samples, ...)`` (pure, jit-able)."""
        constrained, _, _ = self._program(model, options)(key, 0)
        return constrained

    def run(self, model, key, options, progress):
        from .mcmc import map_chains

        runs = options["runs"]
        bar = _StageProgress(runs) if progress else None
        one_run = self._program(model, options, bar)
        if progress:
            print(
                f"sdeppl: compiling tempered SMC ({options['particles']} particles x "
                f"{runs} runs, {options['kernel']} moves)...",
                file=sys.stderr,
                flush=True,
            )

        def one_chain(key, run_id):
            return one_run(
                jax.random.fold_in(stream_key(key, "sampler"), run_id), run_id
            )

        try:
            constrained, lp, summary = as_numpy(
                map_chains(one_chain, key, runs, "auto")
            )
        finally:
            if bar is not None:
                bar.close()
        return _result(constrained, lp, summary, options, model.latent_names)


def _distinct_share(particles):
    """Share of distinct rows of ``particles (N, dim)``: exact copies (resampled, not
    moved since) count once; rows are told apart by a fixed projection."""
    weights = jnp.sqrt(jnp.arange(2, particles.shape[1] + 2, dtype=particles.dtype))
    projected = jnp.sort(particles @ weights)
    return (1 + jnp.sum(projected[1:] != projected[:-1])) / particles.shape[0]


def _min(values) -> float:
    """The smallest finite value (NaN when there is none)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(values.min()) if values.size else float("nan")


def _result(constrained, lp, summary, options, latent_names=()) -> BackendResult:
    """The :class:`BackendResult` from the runs' outputs (NumPy, leading ``runs``)."""
    infos = TemperedInfo(*summary["infos"])
    num_stages = summary["num_stages"].astype(int)
    reached = summary["reached"].astype(bool)
    stalled = summary["stalled"].astype(bool)
    log_z_runs = summary["log_evidence"].astype(float)
    if reached.all():
        log_z, se = combine_log_evidence(log_z_runs)
    else:
        log_z, se = float("nan"), float("nan")
    # less the last stage at beta = 1 (a move, not a tempering step) and a stalled one
    tempering = num_stages - summary["finished"].astype(int) - stalled.astype(int)
    stage = np.arange(infos.acceptance_rate.shape[1])
    # the first stage moves (resampled) prior draws: its acceptance says nothing
    moved = (stage >= 1) & (stage < (num_stages - stalled)[:, None])
    weighted = stage < tempering[:, None]
    feasible = summary["feasible"].astype(int)
    posterior_ess, ess_site = runs_ess(
        {n: constrained[n] for n in latent_names if n in constrained}
        if reached.all()
        else {}
    )
    figures = {
        "reached": reached,
        "stalled": stalled,
        "stalled_beta": summary["beta"].astype(float),
        "feasible": feasible,
        "min_feasible": int(feasible.min()),
        "log_z_runs": log_z_runs,
        "min_acceptance": _min(infos.acceptance_rate[moved]),
        "min_ess": _min(infos.ess[weighted]),
        "posterior_ess": posterior_ess,
        "posterior_ess_site": ess_site,
    }
    # the first run's schedule and realised ESS (a share of N) of each stage's weights
    schedule = infos.tempering_param[0, : int(tempering[0])]
    stage_ess = infos.ess[0, : int(tempering[0])]
    num_particles = options["particles"]
    info = {
        "log_evidence": log_z,
        "log_evidence_se": se,
        "log_evidence_runs": log_z_runs.tolist(),
        "tempering_stages": tempering.tolist(),
        "reached_posterior": reached.tolist(),
        "stalled": stalled.tolist(),
        "feasible_share": (feasible / num_particles).tolist(),
        "mean_acceptance": float(np.nanmean(infos.acceptance_rate)),
        "min_acceptance": figures["min_acceptance"],
        "min_ess": figures["min_ess"],
        "posterior_ess": posterior_ess,
        "distinct_particles": float(np.min(summary["distinct"])),
        "kernel": options["kernel"],
        "waste_free": options["waste_free"],
        **(
            {
                "tempering_schedule": [round(float(b), 6) for b in schedule],
                "stage_ess": [round(float(e), 4) for e in stage_ess],
            }
            if schedule.size <= 200
            else {}
        ),
    }
    return BackendResult(
        draws=dict(constrained),
        sample_stats={"lp": lp},
        tuning={
            "final_scale": np.exp(summary["final_log_scale"]),
            "tempering_stages": tempering,
        },
        checks=_checks(figures, options),
        info=info,
        # not a Markov chain (autocorrelation checks do not apply); the dependence
        # through shared ancestors is the "SMC posterior ESS" row's (module docstring)
        independent_draws=True,
    )


register_backend(_TemperedSMC())
