r"""SDEs observed with noise: :class:`StateSpace`, with Kalman, extended and unscented
filters.

The latent path is integrated out: ``StateSpace(...).log_prob(y)`` is the marginal
likelihood $\log p(y_{0:T-1} \mid \theta)$, smooth in the parameters, for NUTS or SVI.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions import Distribution, constraints

from ..solvers.kalman import (
    backward_sample,
    extended_observe,
    extended_predict,
    gaussian_filter,
    linear_log_likelihood,
    linear_observe,
    linear_predict,
    rts_smoother,
    unscented_observe,
    unscented_predict,
)
from ._checks import check_times, check_value_shape
from ._constraints import real_or_missing
from ._eager import compiled_when_eager
from .observations import as_observation, check_noise_cov
from .path import Path
from .sde import SDE

METHODS = ("kalman", "ekf", "ukf", "particle")


def _gaussian_moments(x0, d: int, dtype):
    """Mean ``(*batch, d)`` and covariance ``(*batch, d, d)`` of a Gaussian (or fixed)
    x0."""
    if not isinstance(x0, Distribution):
        mean = jnp.reshape(
            jnp.asarray(x0, dtype),
            jnp.shape(x0)[: jnp.ndim(x0) - (1 if jnp.ndim(x0) else 0)] + (d,),
        )
        return mean, jnp.zeros(mean.shape + (d,), dtype)
    base = x0
    while isinstance(base, dist.Independent):
        base = base.base_dist
    if isinstance(base, dist.MultivariateNormal):
        return base.loc, base.covariance_matrix
    if isinstance(base, dist.Normal):
        loc = jnp.broadcast_to(base.loc, x0.batch_shape + x0.event_shape)
        scale = jnp.broadcast_to(base.scale, loc.shape)
        if not x0.event_shape:
            loc, scale = loc[..., None], scale[..., None]
        return loc, scale[..., :, None] ** 2 * jnp.eye(d, dtype=dtype)
    raise TypeError(
        "StateSpace: x0 must be Gaussian for a Gaussian filter (dist.Normal, "
        f"dist.MultivariateNormal or a fixed array); got {type(x0).__name__}."
    )


class StateSpace(Distribution):
    r"""Observations of a latent SDE, with the latent path integrated out by a filter.

    Model: $dX_t = f(t, X_t)\,dt + g(t, X_t)\,dW_t$, $X_{t_0} \sim N(m_0, P_0)$ (from
    ``x0``), observed as $y_k = h(X_{t_k}) + \varepsilon_k$,
    $\varepsilon_k \sim N(0, R)$. ``log_prob(y)`` is the marginal likelihood computed
    by a Gaussian filter (:mod:`sdeppl.solvers.kalman`):

    - ``method="kalman"``: exact for linear SDEs (:class:`~sdeppl.LinearSDE`,
      :class:`~sdeppl.OU`) with :class:`LinearGaussian` observations; exact
      matrix-exponential transitions over every gap (computed once on a regular
      grid), Joseph-form updates; its ``log_prob`` has a hand-written reverse-mode
      adjoint (:func:`~sdeppl.solvers.kalman.linear_log_likelihood`), so it supports
      ``jax.grad``/``jax.vjp`` (all NUTS and SVI need) but not forward mode;
    - ``method="ekf"``: extended filter, moment equations linearised around the mean
      and integrated by RK4 with ``substeps`` steps per gap;
    - ``method="ukf"``: unscented (cubature) filter, sigma-point moment equations, RK4.

    Parameters
    ----------
    sde: the latent SDE.
    ts: ``(T,)`` strictly increasing observation times (irregular allowed).
    x0: Gaussian initial law (``dist.Normal``, ``dist.MultivariateNormal``) or a fixed
        state.
    obs: an observation model (:mod:`sdeppl.processes.observations`):
        :class:`~sdeppl.LinearGaussian` (all methods),
        :class:`~sdeppl.GaussianObservation` (``"ekf"``, ``"ukf"``), or
        :class:`~sdeppl.Observation` / any function from a state to a NumPyro
        distribution (simulation with :meth:`sample`; its likelihood needs a particle
        filter).
    method: ``"kalman"``, ``"ekf"`` or ``"ukf"``.
    substeps: RK4 steps per gap for ``"ekf"``/``"ukf"`` (default 10); also the Euler
        substeps used to simulate a nonlinear SDE in :meth:`sample`.

    Missing values
    --------------
    NaN marks a missing observation: a whole time point or some coordinates, any
    pattern, with every method; missing values contribute nothing to the likelihood.

    Shapes
    ------
    ``value``: ``(*sample, *batch, T, k)``, or ``(*sample, *batch, T)`` for one observed
    value per time; ``log_prob``: ``(*sample, *batch)``; latent states
    ``(..., T, *state)`` (``(..., T)`` for a scalar state).

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpyro.distributions as dist, sdeppl as sp
    >>> model = sp.StateSpace(sp.OU(0.5, 1.0, 0.3), jnp.arange(5.0),
    ...                       x0=dist.Normal(0.0, 1.0),
    ...                       obs=sp.LinearGaussian(H=1.0, R=0.05**2),
    ...                       method="kalman")
    >>> y = model.sample(jax.random.key(0))
    >>> y.shape, model.log_prob(y).shape
    ((5,), ())

    References
    ----------
    Särkkä, S. and Svensson, L. (2023). *Bayesian Filtering and Smoothing*, 2nd ed.
    """

    arg_constraints = {}
    pytree_data_fields = ("sde", "ts", "x0", "obs")
    pytree_aux_fields = (
        "method",
        "substeps",
        "_state_shape",
        "_obs_dim",
        "_scalar_obs",
    )

    def __new__(cls, *args, **kwargs):
        # method="particle" builds the particle-filter subclass (its own file)
        method = kwargs.get("method", args[4] if len(args) > 4 else None)
        if cls is StateSpace and method == "particle":
            from .particle_statespace import ParticleStateSpace

            cls = ParticleStateSpace
        return super().__new__(cls)

    @staticmethod
    def _check_method(method, sde, obs) -> None:
        """Reject a method that cannot score this SDE and observation model."""
        if method not in METHODS:
            raise ValueError(
                f"StateSpace: unknown method {method!r}; expected one of {METHODS}."
            )
        if not obs.gaussian:
            raise ValueError(
                f"StateSpace: method={method!r} needs Gaussian observations "
                "(sp.LinearGaussian or sp.GaussianObservation); got "
                f"{type(obs).__name__}. Other observation models need the particle "
                "filter: method='particle'."
            )
        if method == "kalman" and not ("exact" in sde.methods and obs.linear):
            raise ValueError(
                "StateSpace: method='kalman' needs a linear SDE (sp.LinearSDE or "
                "sp.OU) and "
                f"sp.LinearGaussian observations; got {type(sde).__name__} with "
                f"{type(obs).__name__}. Use method='ekf' or 'ukf'."
            )

    def __init__(
        self,
        sde: SDE,
        ts,
        x0,
        obs,
        method: str = "kalman",
        *,
        substeps: int = 10,
        validate_args=None,
    ):
        if not isinstance(sde, SDE):
            raise TypeError(
                f"StateSpace: sde must be an sdeppl SDE; got {type(sde).__name__}."
            )
        obs = as_observation(obs)
        self._check_method(method, sde, obs)
        if (
            isinstance(substeps, bool)
            or not isinstance(substeps, int | np.integer)
            or substeps < 1
        ):
            raise ValueError(
                f"StateSpace: substeps must be an int >= 1; got {substeps!r}."
            )
        ts = check_times(ts, "StateSpace")
        if isinstance(x0, Distribution):
            if len(x0.event_shape) > 1:
                raise ValueError(
                    "StateSpace: x0 must have event shape () or (d,); "
                    f"got {x0.event_shape}."
                )
            state_shape, init_batch = tuple(x0.event_shape), tuple(x0.batch_shape)
        else:
            x0 = (
                np.asarray(x0, dtype=ts.dtype)
                if not isinstance(x0, jax.core.Tracer)
                else x0
            )
            if jnp.ndim(x0) > 1:
                raise ValueError(
                    "StateSpace: a fixed x0 must have shape () or (d,); "
                    f"got {jnp.shape(x0)}."
                )
            state_shape, init_batch = tuple(jnp.shape(x0)), ()
        self.sde, self.ts, self.x0, self.obs = sde, ts, x0, obs
        self.method, self.substeps = method, int(substeps)
        self._state_shape = state_shape
        if method == "kalman" and sde.transition("exact", state_shape).affine is None:
            raise ValueError(
                f"StateSpace: method='kalman' needs a linear SDE; {type(sde).__name__}"
                "'s exact transition is not Gaussian. Use method='ekf', 'ukf' or "
                "'particle'."
            )
        # the latent path's shapes and checks (drift/diffusion shapes, batch) come
        # from Path
        path = self.latent_path()
        obs_dim, scalar_obs, obs_batch = self._check_obs(path.batch_shape)
        self._obs_dim, self._scalar_obs = obs_dim, scalar_obs
        batch = jnp.broadcast_shapes(path.batch_shape, init_batch, obs_batch)
        event = (ts.shape[0],) if scalar_obs else (ts.shape[0], obs_dim)
        super().__init__(
            batch_shape=tuple(batch), event_shape=event, validate_args=validate_args
        )

    # -- structure ---------------------------------------------------------------------
    @property
    def state_dim(self) -> int:
        return self._state_shape[0] if self._state_shape else 1

    @property
    def scalar_state(self) -> bool:
        return self._state_shape == ()

    @constraints.dependent_property(is_discrete=False)
    def support(self):
        return constraints.independent(real_or_missing, self.event_dim)

    def latent_path(self) -> Path:
        """The latent process as a :class:`~sdeppl.Path` (exact if linear, else
        Euler)."""
        linear = "exact" in self.sde.methods
        return Path(
            self.sde,
            self.ts,
            self.x0,
            method="exact" if linear else "euler",
            substeps=0 if linear else self.substeps - 1,
        )

    def _check_obs(self, path_batch):
        """Observation dimension, scalar-observation flag and batch shape; checks
        shapes and R."""
        d, obs = self.state_dim, self.obs
        if obs.linear:
            H = obs.H
            if (H.ndim == 0 and d == 1) or (H.ndim == 1 and H.shape[0] == d):
                k, scalar, h_batch = 1, True, ()
            elif H.ndim >= 2 and H.shape[-1] == d:
                k, scalar, h_batch = H.shape[-2], False, H.shape[:-2]
            else:
                raise ValueError(
                    f"StateSpace: the observation matrix H must have shape (k, {d}) "
                    f"(or ({d},) for one observed value per time) for a "
                    f"{d}-dimensional state; got {H.shape}."
                )
        else:
            probe = jax.ShapeDtypeStruct(
                tuple(path_batch) + self._state_shape, self.ts.dtype
            )
            try:
                out = obs.output_shape(probe)
            except Exception as e:
                raise ValueError(
                    f"StateSpace: calling the observation model on a state of shape "
                    f"{probe.shape} failed: {e}"
                ) from e
            if len(out) == len(path_batch):
                k, scalar, h_batch = 1, True, out
            else:
                k, scalar, h_batch = out[-1], False, out[:-1]
        if obs.gaussian:
            check_noise_cov(obs.R, k)
        return k, scalar, tuple(h_batch)

    # -- internal pieces ---------------------------------------------------------------
    def _fields(self):
        return self.sde.fields(self.scalar_state)

    def _observation_function(self, dtype):
        """``h`` on internal ``(*batch, d)`` states returning ``(*batch, k)``."""
        if self.obs.linear:
            H = self.obs.matrix(dtype)
            return lambda x: jnp.einsum("...ij,...j->...i", H, x)
        h = self.obs.mean
        state_fn = (lambda x: h(x[..., 0])) if self.scalar_state else h
        return (lambda x: state_fn(x)[..., None]) if self._scalar_obs else state_fn

    def _obs_parts(self, dtype):
        """``(observe, R)`` on internal ``(*batch, d)`` states and ``(*batch, k)``
        observations."""
        R = self.obs.noise_cov(self._obs_dim, dtype)
        if self.obs.linear:
            return linear_observe(self.obs.matrix(dtype)), R
        fn = self._observation_function(dtype)
        if self.method == "ukf":
            return unscented_observe(fn), R
        return extended_observe(fn), R

    def _affine(self):
        """Exact transitions over the gaps of ``ts``: ``(phi, shift, cov)``, leading
        axis ``T - 1``."""
        transition = self.sde.transition("exact", self._state_shape, "StateSpace")
        return transition.affine(self.ts[:-1], self.ts[1:])

    def _predict(self, dtype):
        fields = self._fields()
        if self.method == "kalman":
            return linear_predict(*self._affine())
        if self.method == "ekf":
            return extended_predict(fields.drift, fields.diffusion, self.substeps)
        return unscented_predict(fields.drift, fields.diffusion, self.substeps)

    def _prepared(self, value):
        """``value`` ``(*lead, T[, k])`` as NaN-free ``(N, *batch, T, k)``
        observations and mask (lead dims flattened), the lead dims beyond the batch,
        and the prior moments ``m0 (*batch, d)``, ``P0 (*batch, d, d)``."""
        check_value_shape(value, self.event_shape, self.batch_shape, "StateSpace")
        y = jnp.asarray(value, dtype=self.ts.dtype)
        y = y[..., None] if self._scalar_obs else y
        lead = jnp.broadcast_shapes(y.shape[:-2], self.batch_shape)
        y = jnp.broadcast_to(y, lead + y.shape[-2:])
        extra = lead[: len(lead) - len(self.batch_shape)]
        flat = y.reshape((-1,) + y.shape[len(extra) :])
        mask = ~jnp.isnan(flat)
        m0, p0 = _gaussian_moments(self.x0, self.state_dim, y.dtype)
        m0 = jnp.broadcast_to(m0, self.batch_shape + (self.state_dim,))
        p0 = jnp.broadcast_to(p0, self.batch_shape + (self.state_dim,) * 2)
        return jnp.where(mask, flat, 0.0), mask, extra, m0, p0

    def _filter(self, value):
        """Run the filter on ``value`` ``(*lead, T[, k])``; results have lead dims
        flattened."""
        ys, masks, extra, m0, p0 = self._prepared(value)
        observe, R = self._obs_parts(ys.dtype)
        predict = self._predict(ys.dtype)
        ts = jnp.asarray(self.ts)

        def one(y1, mask1):  # (*batch, T, k) -> FilterResult with time first
            yt, mt = jnp.moveaxis(y1, -2, 0), jnp.moveaxis(mask1, -2, 0)
            return gaussian_filter(ts, yt, mt, m0, p0, predict, observe, R)

        return jax.vmap(one)(ys, masks), extra

    def _linear_log_likelihood(self, value):
        """``log_prob`` of a Kalman model by :func:`linear_log_likelihood` (hand-written
        adjoint), vmapped over batch and lead dims."""
        ys, masks, extra, m0, p0 = self._prepared(value)
        dtype = ys.dtype
        phi, shift, q = self._affine()
        batch, d, k = self.batch_shape, self.state_dim, self._obs_dim

        def per_batch(x, event, time_axis=False):
            """Broadcast to ``batch`` and flatten it into one leading axis."""
            if time_axis:  # (K, *b, *event) -> (*b, K, *event)
                x = jnp.moveaxis(x, 0, x.ndim - len(event) - 1)
                event = (x.shape[x.ndim - len(event) - 1],) + event
            x = jnp.broadcast_to(x, batch + event)
            return x.reshape((-1,) + event)

        args = (
            per_batch(phi, (d, d), True),
            per_batch(shift, (d,), True),
            per_batch(q, (d, d), True),
            per_batch(self.obs.matrix(dtype), (k, d)),
            per_batch(self._obs_parts(dtype)[1], (k, k)),
        )
        prior = (per_batch(m0, (d,)), per_batch(p0, (d, d)))
        lead = ys.shape[0]
        ys = ys.reshape((lead, -1) + ys.shape[-2:])
        masks = masks.reshape(ys.shape)

        def one(y1, mask1):  # (B, T, k) -> (B,)
            return jax.vmap(linear_log_likelihood)(*args, y1, mask1, *prior)

        lp = jax.vmap(one)(ys, masks)
        return lp.reshape(extra + batch)

    # -- distribution API --------------------------------------------------------------
    @compiled_when_eager
    def log_prob(self, value):
        if self.method == "kalman":
            lp = self._linear_log_likelihood(value)
        else:
            result, extra = self._filter(value)
            lp = result.log_likelihood.reshape(extra + self.batch_shape)
        return jnp.where(jnp.isnan(lp), -jnp.inf, lp)

    @compiled_when_eager
    def sample(self, key, sample_shape=()):
        key_x, key_eps = jax.random.split(key)
        path = self.latent_path()
        if (
            path.batch_shape != self.batch_shape
        ):  # independent latent paths per batch element
            path = path.expand(self.batch_shape)
        xs = path.sample(key_x, tuple(sample_shape))
        return self._observe_states(key_eps, xs)

    def _observe_states(self, key, xs):
        """Observations of latent states ``(..., T, *state)`` (user layout)."""
        y = self.obs.sample(key, xs)
        expected = xs.shape[: xs.ndim - len(self._state_shape)]
        expected = expected if self._scalar_obs else expected + (self._obs_dim,)
        return jnp.broadcast_to(y, expected)

    # -- time-series protocol (sdeppl.processes._series) -------------------------------
    has_latent = True
    pointwise = True

    @property
    def value_dim(self) -> str | None:
        return None if self._scalar_obs else "obs"

    @property
    def latent_dim(self) -> str | None:
        return None if self.scalar_state else "state"

    @compiled_when_eager
    def pointwise_log_prob(self, value):
        r"""Per-time terms $\log p(y_k \mid y_{0:k-1})$ of ``log_prob``, shape
        ``(..., T)``; a missing time point holds 0."""
        result, extra = self._filter(value)
        terms = jnp.moveaxis(result.log_likelihood_terms, 1, -1)  # (N, *batch, T)
        terms = terms.reshape(extra + terms.shape[1:])
        return jnp.where(jnp.isnan(terms), -jnp.inf, terms)

    def informative_mask(self, value) -> np.ndarray:
        """``(T,)`` mask of time points with at least one observed value (concrete
        data)."""
        y = np.asarray(value, dtype=float)
        y = y[..., None] if self._scalar_obs else y
        observed = ~np.isnan(y).all(axis=-1)
        return observed.reshape(-1, observed.shape[-1]).any(axis=0)

    @compiled_when_eager
    def one_step_sample(self, key, value):
        r"""Draws of each $y_k$ from its one-step-ahead predictive
        $p(y_k \mid y_{0:k-1})$ (the filter's predicted observation plus noise); same
        shape as ``value``."""
        result, extra = self._filter(value)
        observe, R = self._obs_parts(self.ts.dtype)
        y_hat, s0, _, _ = observe(result.predicted_mean, result.predicted_cov)
        chol = jnp.linalg.cholesky(0.5 * (s0 + jnp.swapaxes(s0, -1, -2)) + R)
        z = jax.random.normal(key, y_hat.shape, y_hat.dtype)
        draws = y_hat + jnp.einsum("...ij,...j->...i", chol, z)  # (N, T, *batch, k)
        draws = self._unflatten(draws, extra)
        return draws[..., 0] if self._scalar_obs else draws

    @compiled_when_eager
    def forecast(self, key, value, future_ts):
        """Observations at ``future_ts`` beyond ``ts[-1]``: the latent state drawn from
        its filtered law at the last time, simulated forward, observed with noise.

        Shapes: value ``(*batch, T[, k])``; returns ``(*batch, F[, k])``.
        """
        key_x, key_path, key_eps = jax.random.split(key, 3)
        result, extra = self._filter(value)
        m_last, p_last = result.filtered_mean[:, -1], result.filtered_cov[:, -1]
        chol = jnp.linalg.cholesky(
            p_last + 1e-12 * jnp.eye(self.state_dim, dtype=p_last.dtype)
        )
        x_last = m_last + jnp.einsum(
            "...ij,...j->...i",
            chol,
            jax.random.normal(key_x, m_last.shape, m_last.dtype),
        )
        x_last = x_last.reshape(extra + x_last.shape[1:])
        start = x_last[..., 0, None] if self.scalar_state else x_last[..., None, :]
        x = self.latent_path().forecast(key_path, start, future_ts)  # a length-1 "path"
        return self._observe_states(key_eps, x)

    # -- smoothing and latent draws ----------------------------------------------------
    @compiled_when_eager
    def filter(self, value):
        """Filtered means ``(..., T, *state)`` and covariances ``(..., T, d, d)``
        (variances ``(..., T)`` for a scalar state)."""
        result, extra = self._filter(value)
        return self._moments(result.filtered_mean, result.filtered_cov, extra)

    @compiled_when_eager
    def smooth(self, value):
        """Smoothed means ``(..., T, *state)`` and covariances ``(..., T, d, d)``
        (variances ``(..., T)`` for a scalar state); RTS smoother."""
        result, extra = self._filter(value)
        means, covs = jax.vmap(rts_smoother)(result)
        return self._moments(means, covs, extra)

    def _moments(self, means, covs, extra):
        means, covs = self._unflatten(means, extra), self._unflatten(covs, extra)
        if self.scalar_state:
            return means[..., 0], covs[..., 0, 0]
        return means, covs

    @compiled_when_eager
    def sample_latent(self, key, value):
        """One draw of the latent path given the observations (forward filtering,
        backward sampling), shape ``(..., T, *state)``."""
        result, extra = self._filter(value)
        keys = jax.random.split(key, result.log_likelihood.shape[0])
        xs = jax.vmap(backward_sample)(keys, result)
        xs = self._unflatten(xs, extra)
        return xs[..., 0] if self.scalar_state else xs

    def _unflatten(self, a, extra):
        """``(N, T, *batch, ...)`` -> ``(*extra, *batch, T, ...)``."""
        nb = len(self.batch_shape)
        a = jnp.moveaxis(a, 1, 1 + nb)  # time after batch
        return a.reshape(extra + a.shape[1:])
