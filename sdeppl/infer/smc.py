r"""``method="smc"``: adaptive tempered SMC over the model's parameters, with the
log-evidence and its Monte Carlo error.

On the unconstrained space $z$ (NumPyro's bijections, as for every backend), the
posterior is split into a prior part $\pi_0(z)$ -- the latent sites' densities with the
Jacobians of the transforms -- and the likelihood $L(z)$ -- every observed site (and
``numpyro.factor``, which cannot be sampled ancestrally, so counts as likelihood).
Tempered SMC (Del Moral, Doucet and Jasra, 2006) moves $N$ particles through

$$\pi_\beta(z) \propto \pi_0(z)\, L(z)^\beta, \qquad
0 = \beta_0 < \beta_1 < \dots < \beta_K = 1,$$

and at each stage $k$ (BlackJAX's ``adaptive_tempered_smc`` kernel):

1. **Resample** the weighted particles (systematic), then **move** each one by
   ``mcmc_steps`` steps of an MCMC kernel that leaves $\pi_{\beta_{k-1}}$ invariant.
2. **Choose** $\beta_k$ by bisection so that the effective sample size of the weights
   $w_i = L(z_i)^{\beta_k - \beta_{k-1}}$ is ``target_ess`` $\times N$ (Jasra et al.,
   2011), or $\beta_k = 1$ when that keeps more.
3. **Reweight**; the evidence gathers one factor per stage,
   $\hat Z = \prod_{k=1}^{K} \frac1N \sum_i w_i^{(k)}$, an estimate of
   $Z = \int \pi_0(z) L(z)\,dz = p(y)$.

A last stage at $\beta = 1$ resamples and moves once more, so the draws are equally
weighted and diversified. Initial particles are drawn from the prior by running the
model forwards and mapping the draws to the unconstrained space.

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

**Waste-free** (``waste_free=True``; Dau and Chopin, 2022): each stage resamples only
$M = N / P$ particles, $P$ = ``mcmc_steps``, and keeps every state of their $P$-step
chains, so a stage costs about $N$ MCMC steps instead of $N P$.

**Monte Carlo error.** ``runs`` independent runs (each run's draws are a ``chain`` of
the ``InferenceData``) give $\log \hat Z_1, \dots, \log \hat Z_R$. The estimate pools
them on the evidence scale, $\log \hat Z = \log \frac1R \sum_r \hat Z_r$ (each
$\hat Z_r$ is unbiased for a fixed schedule; pooling keeps that), and its standard error
is $s / \sqrt R$, $s$ the runs' standard deviation of $\log \hat Z_r$ (the delta
method). With one run no standard error is given (NaN).

**Diagnostics**, beside the generic checks: whether every run reached $\beta = 1$
within ``max_stages`` stages; the spread of $\log \hat Z_r$ across runs (above 1 nat
the evidence is not trustworthy: raise ``particles``); the smallest mean acceptance
rate of the inner kernel over the stages (particles that do not move leave the
population degenerate); and the smallest effective sample size of the weights after
the moves (far below ``target_ess``: the tempered targets change faster than the
particles follow).

References
----------
Del Moral, P., Doucet, A. and Jasra, A. (2006). Sequential Monte Carlo samplers.
*JRSS B* 68(3), 411–436.
Jasra, A., Stephens, D. A., Doucet, A. and Tsagaris, T. (2011). Inference for Lévy
driven stochastic volatility models via adaptive sequential Monte Carlo. *Scand. J.
Stat.* 38(1), 1–22.
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
from ._backend import (
    BackendResult,
    Option,
    bool_option,
    choice_option,
    float_option,
    int_option,
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


# -- the model as prior x likelihood --------------------------------------------------


class LogDensitySplit(NamedTuple):
    """The log-density at a flat unconstrained position ``(dim,)``, split in two:
    ``logprior_fn(z) + loglikelihood_fn(z)`` is the model's log joint density with
    the Jacobians (:meth:`~sdeppl.infer.ModelAdapter.logdensity`)."""

    logprior_fn: Callable  # latent sites and the transforms' Jacobians
    loglikelihood_fn: Callable  # observed sites (and factors)


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


def split_logdensity(model: ModelAdapter) -> LogDensitySplit:
    """The prior and likelihood parts of ``model``'s log-density (see
    :func:`log_prior_and_likelihood`) as two functions of ``z (dim,)``."""
    return LogDensitySplit(
        lambda z: log_prior_and_likelihood(model, z)[0],
        lambda z: log_prior_and_likelihood(model, z)[1],
    )


def prior_particles(model: ModelAdapter, key, num_particles: int):
    """``num_particles`` draws from the prior, mapped to the flat unconstrained space,
    ``(num_particles, dim)``.

    Each particle runs the model forwards (observed sites keep their data) and takes
    the latent sites' values through the inverse bijections. A draw that lands where
    the unconstrained value or the prior density is not finite (a Beta draw of exactly
    0, say) is drawn again, up to 100 times.
    """
    dtype = model.dim_and_dtype()[1]

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
        return jnp.all(jnp.isfinite(z)) & jnp.isfinite(
            log_prior_and_likelihood(model, z)[0]
        )

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

    smc: NamedTuple  # BlackJAX TemperedSMCState: particles (N, dim), weights (N,), beta
    log_evidence: jax.Array  # () the log-evidence gathered so far
    log_scale: jax.Array  # () log of the walk's scale or of HMC's step size


class TemperedInfo(NamedTuple):
    """One stage's diagnostics (not fed back)."""

    tempering_param: jax.Array  # () beta after the stage
    log_evidence_increment: jax.Array  # () log of the mean incremental weight
    ess: jax.Array  # () effective sample size of the new weights, a share of N
    acceptance_rate: jax.Array  # () mean acceptance rate of the stage's moves
    scale: jax.Array  # () the walk's scale or the step size used


def initial_log_scale(kernel: str, dim: int) -> float:
    """The inner kernel's first log scale: $2.38/\\sqrt{\\dim}$ for the random walk,
    $\\dim^{-1/4}$ for HMC's step size."""
    if kernel == "rwmh":
        return math.log(2.38 / math.sqrt(dim))
    return -0.25 * math.log(dim)


def init(particles, kernel: str = "rwmh") -> TemperedState:
    """State at $\\beta = 0$ from prior ``particles (N, dim)``, equally weighted."""
    from blackjax.smc import tempered

    particles = jnp.asarray(particles)
    dtype = particles.dtype
    return TemperedState(
        tempered.init(particles)._replace(tempering_param=jnp.zeros((), dtype)),
        jnp.zeros((), dtype),
        jnp.asarray(initial_log_scale(kernel, particles.shape[1]), dtype),
    )


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


def build_kernel(
    logprior_fn: Callable,
    loglikelihood_fn: Callable,
    num_particles: int,
    dim: int,
    *,
    kernel: str = "rwmh",
    mcmc_steps: int = 10,
    target_ess: float = 0.5,
    waste_free: bool = False,
    integration_steps: int = 10,
):
    """One stage of adaptive tempered SMC (see the module docstring) as a pure
    ``stage(key, state) -> (TemperedState, TemperedInfo)``.

    The static options fix the inner kernel, its steps per stage, the ESS target and
    the update (BlackJAX's move-and-keep-last, or waste-free with chains of
    ``mcmc_steps`` states: ``num_particles`` must then be a multiple of it).
    """
    import blackjax
    from blackjax.smc.base import extend_params
    from blackjax.smc.ess import ess
    from blackjax.smc.resampling import systematic
    from blackjax.smc.waste_free import waste_free_smc

    mcmc_init, mcmc_step = _inner_kernel(kernel, integration_steps)
    extra = {}
    if waste_free:
        extra["update_strategy"] = waste_free_smc(num_particles, mcmc_steps)
    tempered_kernel = blackjax.adaptive_tempered_smc.build_kernel(
        logprior_fn,
        loglikelihood_fn,
        mcmc_step,
        mcmc_init,
        systematic,
        target_ess,
        **extra,
    )
    dense = dim * 10 <= num_particles
    target, rate = TARGET_ACCEPTANCE[kernel], ADAPT_RATE[kernel]

    def stage(key, state: TemperedState):
        _, cov = weighted_moments(state.smc.particles, state.smc.weights)
        params = extend_params(
            {"log_scale": state.log_scale, "factor": proposal_factor(cov, dense)}
        )
        smc, info = tempered_kernel(
            key, state.smc, None if waste_free else mcmc_steps, params
        )
        beta = smc.tempering_param
        beta = jnp.where(beta >= 1.0 - _BETA_SNAP, jnp.ones_like(beta), beta)
        acceptance = jnp.mean(info.update_info.acceptance_rate)
        log_scale = jnp.clip(
            state.log_scale + rate * (acceptance - target), *_LOG_SCALE_BOUNDS
        )
        increment = info.log_likelihood_increment
        new = TemperedState(
            smc._replace(tempering_param=beta),
            state.log_evidence + increment,
            log_scale.astype(state.log_scale.dtype),
        )
        return new, TemperedInfo(
            beta,
            increment,
            ess(jnp.log(smc.weights)) / num_particles,
            acceptance,
            jnp.exp(state.log_scale),
        )

    return stage


class SamplingAlgorithm(NamedTuple):
    """``(init, step)``: ``init(particles) -> TemperedState``, ``step(key, state) ->
    (TemperedState, TemperedInfo)``."""

    init: Callable
    step: Callable


def as_top_level_api(
    logprior_fn: Callable,
    loglikelihood_fn: Callable,
    num_particles: int,
    dim: int,
    **options,
) -> SamplingAlgorithm:
    """Adaptive tempered SMC for a prior and a likelihood on ``(dim,)`` positions;
    ``options`` as in :func:`build_kernel`."""
    kernel = options.get("kernel", "rwmh")
    return SamplingAlgorithm(
        lambda particles: init(particles, kernel),
        build_kernel(logprior_fn, loglikelihood_fn, num_particles, dim, **options),
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
    equally weighted draws), at most ``max_stages`` in all, in one ``while_loop``.

    Returns ``(final_state, infos, num_stages, finished)``: ``infos`` is a
    :class:`TemperedInfo` of ``(max_stages,)`` arrays, NaN after ``num_stages``;
    ``finished`` says whether the last stage at $\\beta = 1$ ran.
    ``progress(run_id, stage, beta)`` is called on the host after each stage.
    """
    dtype = state.log_evidence.dtype
    blank = TemperedInfo(*(jnp.full((max_stages,), jnp.nan, dtype) for _ in range(5)))

    def cond(carry):
        stage, done, *_ = carry
        return ~done & (stage < max_stages)

    def body(carry):
        stage, _, key, state, infos = carry
        key, sub = jax.random.split(key)
        rejuvenation = state.smc.tempering_param >= 1.0
        state, info = step(sub, state)
        infos = jax.tree_util.tree_map(
            lambda a, v: a.at[stage].set(v.astype(dtype)), infos, info
        )
        if progress is not None:
            jax.debug.callback(progress, run_id, stage + 1, info.tempering_param)
        return stage + 1, rejuvenation, key, state, infos

    num_stages, finished, _, state, infos = jax.lax.while_loop(
        cond, body, (jnp.zeros((), jnp.int32), jnp.asarray(False), key, state, blank)
    )
    return state, infos, num_stages, finished


def select_draws(key, particles, weights, num_samples: int):
    """``num_samples`` indices into ``particles``: systematic resampling of the
    ``weights`` in a random order (with equal weights and ``num_samples`` = N, every
    particle once)."""
    from blackjax.smc.resampling import systematic

    key_perm, key_res = jax.random.split(key)
    order = jax.random.permutation(key_perm, weights.shape[0])
    return order[systematic(key_res, weights[order], num_samples)]


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


def _check_samples(value):
    if value is None:
        return None
    return int_option(1, 1, "").check(value)


def _checks(figures: dict, options: dict) -> tuple:
    """The SMC backend's diagnostics rows (see the module docstring) from the
    ``figures`` that :func:`_result` gathers."""
    reached, log_z_runs = figures["reached"], figures["log_z_runs"]
    runs = len(log_z_runs)
    all_reached = bool(np.all(reached))
    rows = [
        (
            "tempering reached beta=1",
            f"{int(np.sum(reached))}/{runs} runs",
            "pass" if all_reached else "fail",
            "every run reached the posterior"
            if all_reached
            else f"a run stopped at max_stages={options['max_stages']} before beta=1: "
            "its draws and evidence are not the posterior's; raise max_stages",
        )
    ]
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
    target = options["target_ess"]
    min_ess = figures["min_ess"]
    rows.append(
        (
            "SMC effective sample size",
            f"min over stages {min_ess:.0%} of particles (target {target:.0%}); "
            f"{figures['distinct']:.0%} distinct draws",
            grade(min_ess, lambda e: e >= 0.5 * target, lambda e: e >= 0.1 * target),
            "the weights stay balanced after every move"
            if min_ess >= 0.5 * target
            else "after some move the weights collapsed far below the target: the "
            "tempered targets change faster than the particles follow; raise "
            "target_ess (smaller steps), particles or mcmc_steps",
        )
    )
    acceptance = figures["min_acceptance"]
    rows.append(
        (
            "inner-kernel acceptance",
            f"min over stages {acceptance:.3f} ({options['kernel']})",
            grade(acceptance, lambda a: a >= 0.1, lambda a: a >= 0.02),
            "the particles move at every stage"
            if acceptance >= 0.1
            else "at some stage the particles barely moved: raise mcmc_steps or "
            "particles, or use kernel='hmc'",
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
            0.5, 0.0, 1.0, "ESS (share of particles) that sets each next temperature"
        ),
        "mcmc_steps": int_option(
            10, 1, "inner MCMC steps per stage (waste-free: the chains' length)"
        ),
        "kernel": choice_option("rwmh", KERNELS, "inner MCMC kernel"),
        "integration_steps": int_option(10, 1, "leapfrog steps per HMC move"),
        "waste_free": bool_option(False, "waste-free SMC (Dau and Chopin, 2022)"),
        "max_stages": int_option(500, 2, "most tempering stages per run"),
        "samples": Option(
            None,
            _check_samples,
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
        dim, _ = model.dim_and_dtype()
        split = split_logdensity(model)
        num_particles = options["particles"]
        num_samples = options["samples"] or num_particles
        step = build_kernel(
            split.logprior_fn,
            split.loglikelihood_fn,
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
                prior_particles(model, key_prior, num_particles), options["kernel"]
            )
            state, infos, num_stages, finished = run_tempered_smc(
                key_run,
                step,
                state,
                options["max_stages"],
                progress=progress,
                run_id=run_id,
            )
            particles, weights = state.smc.particles, state.smc.weights
            chosen = particles[select_draws(key_draws, particles, weights, num_samples)]
            lp = jax.vmap(model.logdensity)(chosen)
            distinct = _distinct_share(particles)
            summary = {
                "log_evidence": state.log_evidence,
                "num_stages": num_stages,
                "finished": finished,
                "reached": state.smc.tempering_param >= 1.0,
                "distinct": distinct,
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
        return _result(constrained, lp, summary, options)


def _distinct_share(particles):
    """Share of distinct rows of ``particles (N, dim)``: exact copies (resampled, not
    moved since) count once; rows are told apart by a fixed projection."""
    weights = jnp.sqrt(jnp.arange(2, particles.shape[1] + 2, dtype=particles.dtype))
    projected = jnp.sort(particles @ weights)
    return (1 + jnp.sum(projected[1:] != projected[:-1])) / particles.shape[0]


def _min(values) -> float:
    """The smallest finite value (0 when there is none)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(values.min()) if values.size else 0.0


def _result(constrained, lp, summary, options) -> BackendResult:
    """The :class:`BackendResult` from the runs' outputs (NumPy, leading ``runs``)."""
    infos = TemperedInfo(*summary["infos"])
    num_stages = summary["num_stages"].astype(int)
    reached = summary["reached"].astype(bool)
    log_z_runs = summary["log_evidence"].astype(float)
    if reached.all():
        log_z, se = combine_log_evidence(log_z_runs)
    else:
        log_z, se = float("nan"), float("nan")
    # less the last stage at beta = 1 (a move, not a tempering step)
    tempering = num_stages - summary["finished"].astype(int)
    stage = np.arange(infos.acceptance_rate.shape[1])
    # the first stage moves exact prior draws (its acceptance says nothing); the
    # last, at beta = 1, has equal weights
    moved = (stage >= 1) & (stage < num_stages[:, None])
    weighted = stage < tempering[:, None]
    figures = {
        "reached": reached,
        "log_z_runs": log_z_runs,
        "min_acceptance": _min(infos.acceptance_rate[moved]),
        "min_ess": _min(infos.ess[weighted]),
        "distinct": float(np.min(summary["distinct"])),
    }
    schedule = infos.tempering_param[0, : int(tempering[0])]
    info = {
        "log_evidence": log_z,
        "log_evidence_se": se,
        "log_evidence_runs": log_z_runs.tolist(),
        "tempering_stages": tempering.tolist(),
        "reached_posterior": reached.tolist(),
        "mean_acceptance": float(np.nanmean(infos.acceptance_rate)),
        "min_acceptance": figures["min_acceptance"],
        "min_ess": figures["min_ess"],
        "distinct_particles": figures["distinct"],
        "kernel": options["kernel"],
        "waste_free": options["waste_free"],
        **(
            {"tempering_schedule": [round(float(b), 6) for b in schedule]}
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
        independent_draws=True,
    )


register_backend(_TemperedSMC())
