"""OU-NUTS peer: dynestyx (NumPyro extension for SDE state-space models).

Runs in its own Python 3.12 venv (dynestyx needs Python >= 3.12), e.g.::

    OMP_NUM_THREADS=1 /work/venv-dx/bin/python benchmarks/peers/dynestyx_ou_nuts.py
    OMP_NUM_THREADS=1 /work/venv-dx/bin/python benchmarks/peers/dynestyx_ou_nuts.py \
        --num-warmup 50 --num-samples 50          # smoke test

Problem (see ``problems.ou_nuts_data`` and ``shared/BENCHMARKS.md``): OU path
dx = theta (mu - x) dt + sigma dW, theta=0.5, mu=1, sigma=0.3, x0=0, 1000 points at
dt=0.1, observed WITHOUT noise.  Priors theta ~ HalfNormal(1), mu ~ Normal(0, 2),
sigma ~ HalfNormal(1).  NumPyro NUTS, 2 chains (chain_method="sequential") x 1000
warm-up x 1000 draws, float64 (``jax_enable_x64``).

How the model is written in dynestyx (its documented route for "continuous-time SDE,
explicit latent path": ``LatentPathBuilder`` + ``Discretizer``):

* ``DynamicalModel(initial_condition=Delta(0), state_evolution=ContinuousTimeStateEvolution(
  drift=AffineDrift(A=[[-theta]], b=[theta*mu]), diffusion=FullDiffusion([[sigma]])),
  observation_model=DiracIdentityObservation())`` and ``dsx.sample("x", dynamics,
  obs_times=ts, obs_values=xs)``.
* Observation model: ``DiracIdentityObservation`` = noise-free y_t = x_t, the exact
  statement of the problem (no artificial observation noise).  Under
  ``LatentPathBuilder`` a fully observed Dirac path has *no* free latent variables (the
  ``x_state_path_params`` site is empty, shape (0,)); the builder scores the observed
  path directly, i.e. the log-likelihood is log p(x_0) + sum_k log p(x_{k+1} | x_k).
  ``Delta(0)`` for x_0 contributes 0.
* Transition: ``Discretizer(ExactAffineConfig(covariance_jitter=...))`` = exact
  Gaussian OU transition (matrix exponential + Van Loan covariance), so there is no
  Euler-Maruyama bias.  (This is also what dynestyx picks automatically for an
  ``AffineDrift`` with constant diffusion.)  At the true parameters the dynestyx log
  density equals the closed-form OU transition log-likelihood plus log-priors to
  ~1e-12; the script re-checks this after timing (``loglik_check_abs_err``).

Crashes during warm-up and the workarounds used (both documented in the JSON notes):

1. ``ExactAffineConfig`` defaults to ``covariance_jitter=0`` and raises (via
   ``equinox.error_if``) "Transition covariance is singular or indefinite" when NUTS
   proposes sigma -> 0 (exp of a very negative unconstrained value underflows) during
   the early step-size search.  dynestyx's own knob is ``covariance_jitter``: we set
   ``ExactAffineConfig(covariance_jitter=1e-10)`` (``--jitter``); the true transition
   variance is ~8.7e-3, so the change is ~1e-8 relative.
2. Jitter alone is NOT enough: the Van Loan routine also raises "Discretization
   requires more than 16 covariance scaling squarings" when theta*dt > 2**16 (again
   extreme warm-up proposals), and dynestyx has no option for it.  We therefore set
   ``EQX_ON_ERROR=nan`` (Equinox's documented switch, set before importing JAX/Equinox
   unless already set) so such checks return NaN; NumPyro then treats the proposal as
   divergent/rejected instead of the whole process dying.  With ``EQX_ON_ERROR=nan`` the
   jitter is in fact optional (``--jitter 0`` also runs); run with
   ``EQX_ON_ERROR=raise`` to reproduce the crashes.

We drive ``numpyro.infer.MCMC(NUTS(model))`` directly, with NumPyro's default NUTS
settings (init_to_uniform, target_accept_prob=0.8).  dynestyx's own wrapper
``dynestyx.inference.mcmc.MCMCInference(NUTSConfig(...), model)`` builds the very same
``MCMC(NUTS(...))`` (but with init_to_sample, and with a fresh MCMC object on every
``run``, so compile could not be excluded, and with no ``chain_method`` option: NumPyro
falls back to sequential chains on one CPU device anyway).

Timing: ``wall_first_s`` = first ``mcmc.run`` (tracing + XLA compile + warm-up +
sampling, 2 chains).  Then ``mcmc.run`` is called again on the same MCMC object with the
same key (the samples are identical, so one ESS serves both).  NumPyro 0.22 with
``chain_method="sequential"`` does NOT reuse the compiled sampler: it re-traces and
re-compiles the ``fori_collect`` loop for each chain and on each ``run`` (~7-10 s per
compile here).  So ``wall_second_raw_s`` still contains compile, and ``wall_second_s`` =
``wall_second_raw_s`` - (union of JAX trace / MLIR-lowering / XLA-compile spans recorded
by ``jax.monitoring`` during that run, ``compile_second_s``).  ``compile_first_s`` is the
same measurement for the first run.  ESS is bulk ESS from ``arviz.ess``
(rank-normalised), min over (theta, mu, sigma).  Timings on a shared 2-core machine are
indicative only.
"""

from __future__ import annotations

import os

os.environ.setdefault("EQX_ON_ERROR", "nan")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import dynestyx as dsx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from dynestyx.discretizers import ExactAffineConfig  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402
from problems import OU_TRUE, ou_nuts_data  # noqa: E402

PARAMS = ("theta", "mu", "sigma")


def ou_model(obs_times=None, obs_values=None):
    theta = numpyro.sample("theta", dist.HalfNormal(1.0))
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    dynamics = dsx.DynamicalModel(
        initial_condition=dist.Delta(jnp.zeros(1), event_dim=1),  # x0 = 0 known
        state_evolution=dsx.ContinuousTimeStateEvolution(
            drift=dsx.AffineDrift(A=-theta * jnp.eye(1), b=theta * mu * jnp.ones(1)),
            diffusion=dsx.FullDiffusion(sigma * jnp.eye(1)),
        ),
        observation_model=dsx.DiracIdentityObservation(),
    )
    return dsx.sample("x", dynamics, obs_times=obs_times, obs_values=obs_values)


def make_conditioned_model(jitter: float):
    def conditioned_model(obs_times=None, obs_values=None):
        with dsx.LatentPathBuilder():
            with dsx.Discretizer(ExactAffineConfig(covariance_jitter=jitter)):
                return ou_model(obs_times=obs_times, obs_values=obs_values)

    return conditioned_model


class _CompileSpans:
    """Union of JAX trace / lower / XLA-compile time spans (``jax.monitoring``).

    NumPyro 0.22 with ``chain_method="sequential"`` re-traces and re-compiles the whole
    sampler loop for every chain and on every ``MCMC.run`` call (``fori_collect`` builds a
    fresh body function each time), so a second ``run`` does not reuse the compiled code.
    We therefore measure the compile work directly and subtract it.  Spans are merged so
    that nested traces are not double counted.
    """

    EVENTS = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []
        jax.monitoring.register_event_time_span_listener(self._listen)

    def _listen(self, event, start, end, **kwargs) -> None:
        if event in self.EVENTS:
            self.spans.append((start, end))

    def reset(self) -> None:
        self.spans = []

    def total(self) -> float:
        total, cur_start, cur_end = 0.0, None, None
        for start, end in sorted(self.spans):
            if cur_end is None or start > cur_end:
                if cur_end is not None:
                    total += cur_end - cur_start
                cur_start, cur_end = start, end
            else:
                cur_end = max(cur_end, end)
        if cur_end is not None:
            total += cur_end - cur_start
        return total


def closed_form_loglik(
    xs: np.ndarray, dt: float, theta: float, mu: float, sigma: float
) -> float:
    decay = np.exp(-theta * dt)
    sd = np.sqrt(sigma**2 / (2 * theta) * (1 - decay**2))
    mean = mu + (xs[:-1] - mu) * decay
    z = (xs[1:] - mean) / sd
    return float(np.sum(-0.5 * z**2 - np.log(sd) - 0.5 * np.log(2 * np.pi)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-warmup", type=int, default=1000)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--num-chains", type=int, default=2)
    parser.add_argument(
        "--jitter",
        type=float,
        default=1e-10,
        help="ExactAffineConfig.covariance_jitter",
    )
    args = parser.parse_args()

    ts_np, xs_np = ou_nuts_data()
    ts = jnp.asarray(ts_np)
    xs = jnp.asarray(xs_np)[:, None]  # (T, 1): state_dim = observation_dim = 1
    model = make_conditioned_model(args.jitter)

    mcmc = MCMC(
        NUTS(model),
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        chain_method="sequential",
        progress_bar=False,
    )
    key = jax.random.PRNGKey(args.seed)

    spans = _CompileSpans()

    def run_once() -> tuple[float, float]:
        spans.reset()
        t0 = time.perf_counter()
        mcmc.run(key, obs_times=ts, obs_values=xs, extra_fields=("diverging",))
        jax.block_until_ready(mcmc.get_samples())
        return time.perf_counter() - t0, spans.total()

    wall_first, compile_first = run_once()
    samples_first = {
        k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()
    }
    wall_second_raw, compile_second = run_once()
    wall_second = wall_second_raw - compile_second
    samples = {
        k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()
    }
    same_draws = all(np.array_equal(samples_first[k], samples[k]) for k in PARAMS)
    divergences = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())

    try:
        import arviz as az

        idata = az.from_dict(posterior={k: samples[k] for k in PARAMS})
        ess_ds = az.ess(idata, method="bulk")
        ess = {k: float(ess_ds[k].values) for k in PARAMS}
        rhat_ds = az.rhat(idata)
        rhat = {k: float(rhat_ds[k].values) for k in PARAMS}
        ess_method = f"arviz {az.__version__} ess(method='bulk')"
    except ImportError:  # pragma: no cover - fallback if arviz is absent
        from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

        ess = {k: float(effective_sample_size(samples[k])) for k in PARAMS}
        rhat = {k: float(split_gelman_rubin(samples[k])) for k in PARAMS}
        ess_method = "numpyro.diagnostics.effective_sample_size (not rank-normalised)"
    min_ess = min(ess.values())

    # Correctness check of the dynestyx likelihood at the true parameters (after timing).
    from numpyro.infer.util import log_density

    true = {k: jnp.asarray(v) for k, v in OU_TRUE.items()}
    lp, _ = log_density(
        numpyro.handlers.seed(model, 0), (), dict(obs_times=ts, obs_values=xs), true
    )
    log_prior = float(
        dist.HalfNormal(1.0).log_prob(true["theta"])
        + dist.Normal(0.0, 2.0).log_prob(true["mu"])
        + dist.HalfNormal(1.0).log_prob(true["sigma"])
    )
    ref = closed_form_loglik(xs_np, float(ts_np[1] - ts_np[0]), **OU_TRUE) + log_prior
    loglik_err = abs(float(lp) - ref)

    notes = (
        "dynestyx LatentPathBuilder + Discretizer(ExactAffineConfig) + "
        "DiracIdentityObservation (exact OU transition density, noise-free path, no latent "
        f"sites); covariance_jitter={args.jitter:g}; EQX_ON_ERROR="
        f"{os.environ.get('EQX_ON_ERROR')} (needed: otherwise equinox.error_if in the Van "
        "Loan discretisation aborts warm-up on extreme proposals); numpyro.infer.MCMC(NUTS) "
        f"defaults, chain_method=sequential, x64; {ess_method}; second run = same MCMC "
        f"object and key (identical draws: {same_draws}); NumPyro re-traces/re-compiles "
        "the sampler per chain and per run, so wall_second_s = wall_second_raw_s minus "
        "the JAX trace+lower+compile time measured in that run (jax.monitoring); "
        "indicative timings on a shared 2-core machine"
    )
    result = {
        "peer": "dynestyx",
        "version": dsx.__version__,
        "numpyro": numpyro.__version__,
        "jax": jax.__version__,
        "dtype": str(jnp.asarray(1.0).dtype),
        "seed": args.seed,
        "num_chains": args.num_chains,
        "num_warmup": args.num_warmup,
        "num_samples": args.num_samples,
        "wall_first_s": round(wall_first, 3),
        "wall_second_s": round(wall_second, 3),
        "wall_second_raw_s": round(wall_second_raw, 3),
        "compile_first_s": round(compile_first, 3),
        "compile_second_s": round(compile_second, 3),
        "min_ess_bulk": round(min_ess, 1),
        "ess_per_s_first": round(min_ess / wall_first, 3),
        "ess_per_s_second": round(min_ess / wall_second, 3),
        "ess_bulk": {k: round(v, 1) for k, v in ess.items()},
        "r_hat": {k: round(v, 4) for k, v in rhat.items()},
        "means": {k: round(float(samples[k].mean()), 5) for k in PARAMS},
        "sds": {k: round(float(samples[k].std()), 5) for k in PARAMS},
        "divergences": divergences,
        "loglik_check_abs_err": loglik_err,
        "notes": notes,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
