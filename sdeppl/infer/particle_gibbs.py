r"""``method="particle_gibbs"``: particle Gibbs with backward sampling (Andrieu,
Doucet and Holenstein, 2010; Whiteley, 2010; Lindsten and Schön, 2013).

A Gibbs sampler on the parameters $\theta$ and the latent paths $x$ of a model whose
time series are :class:`~sdeppl.StateSpace` sites with ``method="particle"``. One sweep:

1. every path: one conditional SMC step with backward sampling at the current
   $\theta$ (``conditional_path`` of the particle :class:`~sdeppl.StateSpace`),
   which leaves $p(x \mid \theta, y)$ invariant for any number of particles;
2. the parameters: ``updates`` random-walk Metropolis steps on the unconstrained
   $\theta$ targeting $p(\theta \mid x, y) \propto p(\theta)\, p(x \mid \theta)\,
   p(y \mid x, \theta)$, an exact density (no particle noise: the site's
   ``complete_log_prob``).

Unlike PMMH, the particle count does not need to keep the likelihood estimate's
variance near 1 (a few dozen particles usually do), but the chain mixes slowly when
the parameters and the path are strongly dependent (e.g. a diffusion coefficient and
a finely observed path). The paths are part of the chain, and come back as
``{name}_latent`` draws. Needs the transition density over each gap (an exact
transition, or ``substeps=1``). A model without particle sites gets step 2 alone
(adaptive random-walk Metropolis).

The random-walk proposal adapts during the warm-up as in :mod:`sdeppl.infer.pmmh`
(Robbins–Monro scale, covariance of the chain's own warm-up draws); chains run
vectorised in one compiled program.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Distribution
from numpyro.infer.util import potential_energy
from numpyro.primitives import Messenger

from ..processes import derived_name
from ._backend import (
    BackendResult,
    float_option,
    int_option,
    register_backend,
    stream_key,
)
from ._model import as_numpy
from .hmc import _progress_callback
from .pmmh import (
    Adaptation,
    acceptance_row,
    adapt,
    evaluator,
    filter_summary,
    initial_states,
    on_devices,
    particle_sites,
)


class _CompleteData(Distribution):
    """A particle state-space site scored with its latent path given: the exact
    complete-data density ``log p(path) + log p(y | path)``."""

    def __init__(self, base, path):
        self.base, self.path = base, path
        super().__init__(base.batch_shape, base.event_shape)

    @property
    def support(self):
        return self.base.support

    def sample(self, key, sample_shape=()):
        return self.base.sample(key, sample_shape)

    def log_prob(self, value):
        return self.base.complete_log_prob(self.path, value)


class _GivenPaths(Messenger):
    """Score the named particle sites with their latent paths given."""

    def __init__(self, fn, paths: dict):
        self.paths = paths
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "sample" and msg["name"] in self.paths:
            msg["fn"] = _CompleteData(msg["fn"], self.paths[msg["name"]])


class GibbsState(NamedTuple):
    position: jax.Array  # (dim,) unconstrained parameters
    log_density: jax.Array  # () log p(theta, paths, y) at position
    paths: dict  # site -> (T, *state)


def conditional_logdensity(model, z, paths: dict):
    """$\\log p(\\theta, x, y)$ at the unconstrained ``z`` with the paths given."""
    given = _GivenPaths(model.model, paths)
    return -potential_energy(given, model.args, model.kwargs, model.unravel(z))


def _chain(model, key, position, options, progress, chain_id):
    """One particle Gibbs chain: draws, paths, statistics, the adapted proposal."""
    dim = position.shape[0]
    num_warmup, updates = options["warmup"], options["updates"]
    total = num_warmup + options["samples"] * options["thinning"]
    key_init, key_run = jax.random.split(key)
    paths = {  # a draw from the prior: the first conditional SMC steps forget it
        name: fn.latent_path().sample(jax.random.fold_in(key_init, i))
        for i, (name, (fn, value)) in enumerate(
            particle_sites(model, position, key_init).items()
        )
    }
    state = GibbsState(position, conditional_logdensity(model, position, paths), paths)
    adaptation = Adaptation(
        jnp.log(jnp.asarray(2.38 / np.sqrt(dim), position.dtype)),
        jnp.zeros((), position.dtype),
        jnp.zeros(dim, position.dtype),
        jnp.zeros((dim, dim), position.dtype),
        0.1 * jnp.eye(dim, dtype=position.dtype),
    )

    def update_paths(key, state):
        sites = particle_sites(model, state.position, key)
        paths = {
            name: fn.conditional_path(
                jax.random.fold_in(key, i), value, state.paths[name]
            )
            for i, (name, (fn, value)) in enumerate(sites.items())
        }
        return state._replace(
            paths=paths,
            log_density=conditional_logdensity(model, state.position, paths),
        )

    def update_parameters(key, state, adaptation):
        scale = jnp.exp(adaptation.log_scale)

        def metropolis(state, key):
            key_move, key_accept = jax.random.split(key)
            noise = jax.random.normal(key_move, (dim,), position.dtype)
            proposal = state.position + scale * adaptation.chol @ noise
            new = conditional_logdensity(model, proposal, state.paths)
            new = jnp.where(jnp.isnan(new), -jnp.inf, new)
            accept_prob = jnp.exp(jnp.minimum(new - state.log_density, 0.0))
            accept_prob = jnp.where(jnp.isnan(accept_prob), 0.0, accept_prob)
            accept = jax.random.uniform(key_accept) < accept_prob
            state = state._replace(
                position=jnp.where(accept, proposal, state.position),
                log_density=jnp.where(accept, new, state.log_density),
            )
            return state, accept_prob

        return jax.lax.scan(metropolis, state, jax.random.split(key, updates))

    def sweep(carry, inputs):
        state, adaptation = carry
        i, key = inputs
        key_paths, key_params = jax.random.split(key)
        state = update_paths(key_paths, state)
        state, accept_probs = update_parameters(key_params, state, adaptation)
        accept_prob = jnp.mean(accept_probs)
        adapted = adapt(
            adaptation,
            i,
            state.position[None],
            accept_prob[None],
            options["target_accept"],
            num_warmup,
        )
        adaptation = jax.tree_util.tree_map(
            lambda new, old: jnp.where(i < num_warmup, new, old), adapted, adaptation
        )
        if progress is not None:
            jax.lax.cond(
                (i + 1) % 20 == 0,
                lambda: jax.debug.callback(progress, i + 1, chain_id),
                lambda: None,
            )
        out = (state.position, state.paths, accept_prob, state.log_density)
        return (state, adaptation), out

    (_, adaptation), (draws, paths, accept, lp) = jax.lax.scan(
        sweep,
        (state, adaptation),
        (jnp.arange(total), jax.random.split(key_run, total)),
    )
    keep = slice(num_warmup + options["thinning"] - 1, None, options["thinning"])
    kept = jax.tree_util.tree_map(lambda a: a[keep], (draws, paths, accept, lp))
    tuning = {"step_scale": jnp.exp(adaptation.log_scale)}
    return kept, tuning


class _ParticleGibbs:
    """Particle Gibbs with backward sampling as a backend."""

    name = "particle_gibbs"
    summary = (
        "particle Gibbs: conditional SMC with backward sampling for the latent paths "
        "(StateSpace method='particle'), random-walk Metropolis for the parameters"
    )
    options = {
        "chains": int_option(4, 1, "number of chains (vectorised)"),
        "warmup": int_option(1000, 0, "adaptation sweeps per chain (discarded)"),
        "samples": int_option(1000, 1, "kept sweeps per chain"),
        "thinning": int_option(1, 1, "sweeps between kept draws"),
        "updates": int_option(5, 1, "Metropolis steps on the parameters per sweep"),
        "target_accept": float_option(
            0.3, 0.0, 1.0, "acceptance rate the proposal scale is tuned to"
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
            "method='particle_gibbs' searches its starting points on the host and "
            "cannot be traced inside jit; simulation-based calibration runs it once "
            "per replicate."
        )

    def run(self, model, key, options, progress):
        dim, dtype = model.dim_and_dtype()
        total = options["warmup"] + options["samples"] * options["thinning"]
        callback = _progress_callback(
            "particle Gibbs", options["warmup"], total, progress, options["chains"]
        )
        if progress:
            print(
                "sdeppl: compiling the particle Gibbs sampler...",
                file=sys.stderr,
                flush=True,
            )
        key = stream_key(key, "sampler")
        key_init, key_run, key_check = jax.random.split(key, 3)
        evaluate = evaluator(model.seeded_logdensity)
        starts = initial_states(key_init, evaluate, options["chains"], dim, dtype)

        def run(key, positions):
            keys = jax.random.split(key, positions.shape[0])
            ids = jnp.arange(positions.shape[0])
            (draws, paths, accept, lp), tuning = jax.vmap(
                lambda k, z, c: _chain(model, k, z, options, callback, c)
            )(keys, positions, ids)
            constrained = jax.vmap(jax.vmap(model.constrain))(draws)
            return constrained, paths, accept, lp, tuning, draws

        run = on_devices(run, options["chains"])
        # XLA's default emitters: the filters run faster (see sdeppl.infer.pmmh)
        constrained, paths, accept, lp, tuning, positions = jax.jit(run)(
            key_run, starts.position
        )
        draws = as_numpy(constrained)
        draws.update(
            {derived_name(name, "latent"): np.asarray(p) for name, p in paths.items()}
        )
        acceptance = float(np.mean(accept))
        median = jnp.median(jnp.reshape(positions, (-1, dim)), axis=0)
        rows, filters = filter_summary(model, median, key_check)
        label = "parameter acceptance rate (given the paths)"
        return BackendResult(
            draws,
            {"acceptance_rate": np.asarray(accept), "lp": np.asarray(lp)},
            as_numpy(tuning),
            (acceptance_row(acceptance, label), *rows),
            {"acceptance_rate": acceptance, "particle_filter": filters},
        )


register_backend(_ParticleGibbs())
