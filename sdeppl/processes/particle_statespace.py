r"""``StateSpace(..., method="particle")``: any observation model, likelihood by a
particle filter.

The latent SDE moves the particles (its exact transition where it has one -- linear
SDEs, OU, CIR -- else ``substeps`` Euler–Maruyama steps per gap) and any observation
model weights them (:class:`~sdeppl.Observation`: Poisson counts, Student-t, mixtures,
or the Gaussian ones): the bootstrap Feynman–Kac model of
:mod:`sdeppl.solvers.particle`. ``log_prob(y)`` is the log of the filter's unbiased
estimate $\hat p(y_{0:T-1} \mid \theta)$: a random number whose randomness comes only
from a key -- the distribution's ``key`` (given, or drawn from the NumPyro ``seed``
handler when the distribution is built inside a model) -- so the same key gives the
same estimate. Use it with the particle backends of :func:`sdeppl.fit`
(``method="pmmh"``), which draw a fresh key for every proposal and keep the current
estimate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.distributions import Distribution

from ..solvers.particle import (
    ParticleFilterResult,
    ancestral_paths,
    backward_sample,
    bootstrap,
    conditional_smc,
    fixed_lag_means,
    particle_filter,
    take,
)
from ..solvers.resampling import RESAMPLERS, multinomial
from ..solvers.simulate import fine_grid
from ._checks import check_value_shape
from ._eager import compiled_when_eager
from .statespace import StateSpace


def _current_model_key():
    """A key from the enclosing NumPyro ``seed`` handler, or None outside one."""
    if not numpyro.primitives._PYRO_STACK:
        return None
    return numpyro.prng_key()


class ParticleStateSpace(StateSpace):
    r"""Observations of a latent SDE, likelihood by a bootstrap particle filter.

    Built by ``sp.StateSpace(sde, ts, x0, obs, method="particle", ...)``; see
    :class:`~sdeppl.StateSpace` for the model and shapes.

    Parameters
    ----------
    x0: any NumPyro distribution of the initial state (event shape ``()`` or
        ``(d,)``), or a fixed state.
    obs: any observation model: :class:`~sdeppl.Observation` (a function from the
        state to a NumPyro distribution), :class:`~sdeppl.GaussianObservation`,
        :class:`~sdeppl.LinearGaussian`. NaN marks missing values.
    substeps: Euler–Maruyama steps per gap for an SDE without an exact transition
        (weak order 1: the bias of the likelihood shrinks as ``1 / substeps``).
    num_particles: $N$ (default 1000). The estimate's log-variance shrinks as
        $1/N$; for PMMH a variance near 1 is the usual target
        (:meth:`log_prob_variance` measures it).
    resampling: ``"systematic"`` (default), ``"stratified"``, ``"multinomial"`` or
        ``"residual"``.
    ess_threshold: resample when the effective sample size falls below this
        fraction of $N$ (default 0.5).
    key: PRNG key of the estimate. Default: drawn from the NumPyro ``seed`` handler
        when built inside a model (as every backend of :func:`sdeppl.fit` runs it);
        outside one, methods that need it say so.

    Restrictions: one latent process per distribution (``batch_shape == ()``); several
    series are leading dimensions of the value, each filtered independently.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpyro.distributions as dist, sdeppl as sp
    >>> model = sp.StateSpace(sp.OU(0.5, 0.0, 0.5), jnp.arange(20.0),
    ...                       x0=dist.Normal(0.0, 0.7),
    ...                       obs=lambda x: dist.Poisson(jnp.exp(x)),
    ...                       method="particle", num_particles=256,
    ...                       key=jax.random.key(1))
    >>> y = model.sample(jax.random.key(0))
    >>> result = model.filter(y)
    >>> result.ess.shape, result.particles.shape
    ((20,), (20, 256))
    """

    pytree_data_fields = ("key",)
    pytree_aux_fields = ("num_particles", "resampling", "ess_threshold")

    def __init__(
        self,
        sde,
        ts,
        x0,
        obs,
        method: str = "particle",
        *,
        substeps: int = 10,
        num_particles: int = 1000,
        resampling: str = "systematic",
        ess_threshold: float = 0.5,
        key=None,
        validate_args=None,
    ):
        if (
            isinstance(num_particles, bool)
            or not isinstance(num_particles, int | np.integer)
            or num_particles < 2
        ):
            raise ValueError(
                f"StateSpace: num_particles must be an int >= 2; got {num_particles!r}."
            )
        if resampling not in RESAMPLERS:
            raise ValueError(
                f"StateSpace: unknown resampling {resampling!r}; expected one of "
                f"{tuple(RESAMPLERS)}."
            )
        if not 0.0 <= float(ess_threshold) <= 1.0:
            raise ValueError(
                f"StateSpace: ess_threshold must be in [0, 1]; got {ess_threshold!r}."
            )
        self.num_particles, self.resampling = int(num_particles), resampling
        self.ess_threshold = float(ess_threshold)
        self.key = _current_model_key() if key is None else key
        super().__init__(
            sde, ts, x0, obs, method, substeps=substeps, validate_args=validate_args
        )
        if self.batch_shape != ():
            raise ValueError(
                "StateSpace: method='particle' filters one latent process; got batch "
                f"shape {self.batch_shape} from the parameters, x0 or obs. Give "
                "several series as leading dims of the value with shared parameters, "
                "or vectorise over parameter values with jax.vmap."
            )

    @staticmethod
    def _check_method(method, sde, obs) -> None:
        if method != "particle":
            raise ValueError(
                f"StateSpace: ParticleStateSpace has method='particle'; got {method!r}."
            )

    # -- the Feynman-Kac model ---------------------------------------------------------
    @property
    def exact(self) -> bool:
        """The particles move by the SDE's exact transition (no discretisation)."""
        return "exact" in self.sde.methods

    def _latent_transition(self):
        name = "exact" if self.exact else "euler"
        return self.sde.transition(name, self._state_shape, "StateSpace")

    def _user(self, x):
        """Internal ``(..., d)`` states in the user's layout."""
        return x[..., 0] if self.scalar_state else x

    def _internal(self, x):
        return x[..., None] if self.scalar_state else x

    def feynman_kac(self, y):
        r"""The bootstrap :class:`~sdeppl.solvers.particle.FeynmanKac` model of one
        series ``y`` ``(T, k)`` (internal layout; NaN missing), on internal
        ``(N, d)`` states: $M_0$ the law of ``x0``, $M_t$ the latent transition
        over ``(ts[t-1], ts[t]]``, $G_t = p(y_t \mid x_t)$. Its ``log_transition``
        exists when one step of an exact or Euler transition spans each gap."""
        transition = self._latent_transition()
        steps = 1 if self.exact else self.substeps
        ts = jnp.asarray(self.ts)
        fine = fine_grid(ts, steps - 1)
        coef = transition.coefficients(fine[:-1], fine[1:])
        coef = jax.tree_util.tree_map(
            lambda a: a.reshape((len(ts) - 1, steps) + a.shape[1:]), coef
        )
        fine = fine.reshape(-1)  # (T - 1) * steps + 1 times
        d, dtype = self.state_dim, ts.dtype

        def initial(key, num):
            if isinstance(self.x0, Distribution):
                x = self.x0.sample(key, (num,))
                return self._internal(jnp.asarray(x, dtype))
            return jnp.broadcast_to(
                self._internal(jnp.asarray(self.x0, dtype)), (num, d)
            )

        def move(key, t, x):
            if steps == 1:
                coef_t = jax.tree_util.tree_map(lambda a: a[t - 1, 0], coef)
                return transition.sample(key, ts[t - 1], ts[t], x, coef_t)

            def substep(x, j):
                k = (t - 1) * steps + j
                coef_j = jax.tree_util.tree_map(lambda a: a[t - 1, j], coef)
                key_j = jax.random.fold_in(key, j)
                return transition.sample(key_j, fine[k], fine[k + 1], x, coef_j), None

            x, _ = jax.lax.scan(substep, x, jnp.arange(steps))
            return x

        def log_observation(t, x):
            y_t = y[t, 0] if self._scalar_obs else y[t]  # one value for all particles
            lp = self.obs.log_prob(self._user(x), y_t, self._scalar_obs)
            return jnp.broadcast_to(lp, x.shape[:1])

        log_transition = None
        if steps == 1 and transition.caps.density:

            def log_transition(t, x_prev, x):
                x = jnp.broadcast_to(x, x_prev.shape)
                return transition.log_prob(
                    ts[t - 1][None], ts[t][None], x_prev[None], x[None]
                )[0]

        return bootstrap(initial, move, log_observation, len(ts), log_transition)

    # -- running the filter ------------------------------------------------------------
    def _series(self, value):
        """``value`` ``(*lead, T[, k])`` as ``(L, T, k)`` series and the lead shape."""
        check_value_shape(value, self.event_shape, self.batch_shape, "StateSpace")
        y = jnp.asarray(value, self.ts.dtype)
        y = y[..., None] if self._scalar_obs else y
        return y.reshape((-1,) + y.shape[-2:]), y.shape[:-2]

    def _key(self, key, what: str):
        key = self.key if key is None else key
        if key is None:
            raise ValueError(
                f"StateSpace: method='particle' needs a random key for {what}: the "
                "likelihood is a particle estimate. Pass key=jax.random.key(...) to "
                "sp.StateSpace (or to filter), or build the distribution inside a "
                "NumPyro model under a seed handler (as sdeppl.fit does)."
            )
        return key

    def _run(self, key, y, history: bool = True) -> ParticleFilterResult:
        return particle_filter(
            self.feynman_kac(y),
            key,
            self.num_particles,
            resampling=self.resampling,
            ess_threshold=self.ess_threshold,
            history=history,
        )

    def _per_series(self, fn, key, value):
        """``fn(key, y)`` on every series (one key each, from ``key``), outputs with
        the value's lead dims in front."""
        ys, lead = self._series(value)
        keys = jax.random.split(key, ys.shape[0])
        out = jax.vmap(fn)(keys, ys)
        return jax.tree_util.tree_map(lambda a: a.reshape(lead + a.shape[1:]), out)

    def log_prob(self, value):
        return self.filter_log_prob(value, self._key(None, "its likelihood estimate"))

    @compiled_when_eager
    def pointwise_log_prob(self, value):
        r"""The filter's per-time terms $\log \hat p(y_k \mid y_{0:k-1})$,
        ``(..., T)``; they sum to :meth:`log_prob` (same key)."""
        terms = self._per_series(
            lambda k, y: self._run(k, y, history=False).log_evidence_increments,
            self._key(None, "its likelihood estimate"),
            value,
        )
        return jnp.where(jnp.isnan(terms), -jnp.inf, terms)

    @compiled_when_eager
    def filter(self, value, key=None):
        """Run the particle filter: a
        :class:`~sdeppl.solvers.particle.ParticleFilterResult` with the
        log-likelihood estimate, its per-time terms, the ESS and resampling flags per
        step, and the particles ``(..., T, N, *state)``, normalised log weights and
        ancestors ``(..., T, N)``. ``key`` defaults to the distribution's."""
        result = self._per_series(
            lambda k, y: self._run(k, y), self._key(key, "the filter"), value
        )
        return result._replace(particles=self._user(result.particles))

    @compiled_when_eager
    def smooth(self, value, lag=None):
        """Smoothed means ``(..., T, *state)`` and covariances ``(..., T, d, d)``
        (variances for a scalar state) from the genealogy of the particles
        ``lag`` steps later (default: the last time, i.e. the whole series). A long
        lag sees more data, a short one suffers less from the genealogy's
        degeneracy (few distinct ancestors far back)."""
        lag = len(self.ts) - 1 if lag is None else int(lag)

        def one(key, y):
            result = self._run(key, y)
            second = fixed_lag_means(
                result, lag, lambda x: x[:, :, None] * x[:, None, :]
            )
            mean = fixed_lag_means(result, lag)
            return mean, second - mean[:, :, None] * mean[:, None, :]

        means, covs = self._per_series(
            one, self._key(None, "its likelihood estimate"), value
        )
        if self.scalar_state:
            return means[..., 0], covs[..., 0, 0]
        return means, covs

    @compiled_when_eager
    def sample_latent(self, key, value):
        """One draw of the latent path given the observations, from the particle
        system of the distribution's filter (the one behind :meth:`log_prob`):
        backward sampling when the transition over a gap has a density, else the
        genealogy. Under PMMH this is the path the chain carries, so the draws
        target the exact joint posterior of parameters and path."""
        fk_key = self._key(None, "its likelihood estimate")
        ys, lead = self._series(value)
        keys = jax.random.split(fk_key, ys.shape[0])
        draw_keys = jax.random.split(key, ys.shape[0])

        def one(fk_key, draw_key, y):
            fk = self.feynman_kac(y)
            result = self._run(fk_key, y)
            if fk.log_transition is not None:
                paths = backward_sample(draw_key, fk, result)
            else:
                paths = ancestral_paths(draw_key, result)
            return paths[0]

        xs = jax.vmap(one)(keys, draw_keys, ys)
        return self._user(xs.reshape(lead + xs.shape[1:]))

    @compiled_when_eager
    def one_step_sample(self, key, value):
        r"""Draws of each $y_k$ from the filter's one-step predictive: a particle at
        $t_{k-1}$ by its weight, moved to $t_k$, observed with noise ($y_0$ from the
        prior of $x_0$). Same shape as ``value``."""
        ys, lead = self._series(value)
        keys = jax.random.split(self._key(None, "its likelihood estimate"), ys.shape[0])
        draw_keys = jax.random.split(key, ys.shape[0])

        def one(fk_key, draw_key, y):
            fk = self.feynman_kac(y)
            result = self._run(fk_key, y)
            key_0, key_pick, key_move, key_obs = jax.random.split(draw_key, 4)
            num_steps = len(self.ts)
            picks = jax.vmap(lambda k, lw: multinomial(k, lw, 1)[0])(
                jax.random.split(key_pick, num_steps - 1), result.log_weights[:-1]
            )
            parents = jax.vmap(lambda x, i: take(x, i[None]))(
                result.particles[:-1], picks
            )
            moved = jax.vmap(fk.move)(
                jax.random.split(key_move, num_steps - 1),
                jnp.arange(1, num_steps),
                parents,
            )[:, 0]
            x = jnp.concatenate([fk.initial(key_0, 1), moved])  # (T, d)
            return self._observe_states(key_obs, self._user(x))

        draws = jax.vmap(one)(keys, draw_keys, ys)
        return draws.reshape(lead + draws.shape[1:])

    @compiled_when_eager
    def forecast(self, key, value, future_ts):
        """Observations at ``future_ts`` beyond ``ts[-1]``: a particle at the last
        time drawn by its weight, simulated forward, observed with noise. Shapes:
        value ``(*lead, T[, k])``; returns ``(*lead, F[, k])``."""
        ys, lead = self._series(value)
        keys = jax.random.split(self._key(None, "its likelihood estimate"), ys.shape[0])
        draw_keys = jax.random.split(key, ys.shape[0])

        def one(fk_key, draw_key, y):
            result = self._run(fk_key, y, history=False)
            key_pick, key_path, key_obs = jax.random.split(draw_key, 3)
            pick = multinomial(key_pick, result.log_weights, 1)
            last = self._user(result.particles[pick])  # (1, *state): a one-time path
            x = self.latent_path().forecast(key_path, last, future_ts)
            return self._observe_states(key_obs, x)

        draws = jax.vmap(one)(keys, draw_keys, ys)
        return draws.reshape(lead + draws.shape[1:])

    @compiled_when_eager
    def filter_log_prob(self, value, key):
        """:meth:`log_prob` with an explicit key: the log of the filter's unbiased
        likelihood estimate, ``(*lead,)``."""
        lp = self._per_series(
            lambda k, y: self._run(k, y, history=False).log_evidence, key, value
        )
        return jnp.where(jnp.isnan(lp), -jnp.inf, lp)

    def log_prob_variance(self, value, key, num_runs: int = 16):
        """Variance of the log-likelihood estimate over ``num_runs`` independent keys:
        about 1 or below is what PMMH needs (it scales as ``1 / num_particles``)."""
        keys = jax.random.split(key, num_runs)
        return jnp.var(jnp.stack([self.filter_log_prob(value, k) for k in keys]), 0)

    # -- particle Gibbs ----------------------------------------------------------------
    def _one_series(self, value, what: str):
        ys, lead = self._series(value)
        if lead:
            raise ValueError(
                f"StateSpace: {what} takes one series of shape {self.event_shape}; got "
                f"{jnp.shape(value)}."
            )
        fk = self.feynman_kac(ys[0])
        if fk.log_transition is None:
            raise ValueError(
                f"StateSpace: {what} needs the latent transition's density over each "
                "gap: an SDE with an exact transition, or substeps=1 (Euler–Maruyama "
                "from one observation time to the next); got "
                f"{type(self.sde).__name__} with substeps={self.substeps}."
            )
        return fk, ys[0]

    def complete_log_prob(self, path, value):
        r"""$\log p(x_{0:T-1}) + \sum_k \log p(y_k \mid x_k)$: the joint density of a
        latent path ``(T, *state)`` and one series ``value`` (what parameter updates
        given the path target in particle Gibbs)."""
        _, y = self._one_series(value, "complete_log_prob")
        x = self._internal(jnp.asarray(path, self.ts.dtype))
        transition = self._latent_transition()
        ts = jnp.asarray(self.ts)
        steps = jnp.sum(transition.log_prob(ts[:-1], ts[1:], x[:-1], x[1:]))
        start = (
            self.x0.log_prob(self._user(x[0]))
            if isinstance(self.x0, Distribution)
            else 0.0
        )
        y = y[:, 0] if self._scalar_obs else y
        observed = jnp.sum(self.obs.log_prob(self._user(x), y, self._scalar_obs))
        return jnp.sum(start) + steps + observed

    def conditional_path(self, key, value, reference):
        """One conditional SMC step (:func:`~sdeppl.solvers.particle.conditional_smc`
        with backward sampling): a new latent path ``(T, *state)`` given the
        ``reference`` path, leaving the path's posterior given the parameters
        invariant."""
        fk, _ = self._one_series(value, "conditional_path")
        reference = self._internal(jnp.asarray(reference, self.ts.dtype))
        result = conditional_smc(fk, key, self.num_particles, reference)
        return self._user(result.path)

    # -- time-series protocol ----------------------------------------------------------
    #: its log-density is a random estimate (sdeppl.fit needs a particle backend)
    estimated_log_prob = True
