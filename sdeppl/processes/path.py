"""The path of an SDE at given times as a NumPyro distribution: :class:`Path`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.util import validate_sample

from ..solvers import (
    bridge_moments,
    bridge_scale_kind,
    fine_grid,
    gaussian_log_prob,
    gaussian_transform,
    noise_for_shift,
    simulate,
)
from ._checks import check_times, check_value_shape, is_concrete
from ._constraints import real_or_missing
from ._eager import compiled_when_eager
from .sde import SDE

METHODS = ("euler", "local_linear", "exact")
PARAMETRIZATIONS = ("noncentered", "centered")


class Path(Distribution):
    r"""Distribution over the path of an SDE observed at times ``ts``.

    For $dX_t = f(t, X_t)\,dt + g(t, X_t)\,dW_t$ and times $t_0 < \dots < t_{T-1}$,
    the path $x = (X_{t_0}, \dots, X_{t_{T-1}})$ has the Markov density

    $$p(x) = p_0(x_0) \prod_{k=1}^{T-1} p_{\text{method}}(x_k \mid x_{k-1};
    t_{k-1}, t_k),$$

    where every transition $p_\text{method}$ is Gaussian: Euler–Maruyama
    $N(x + f\,h,\, g g^\top h)$, the Shoji–Ozaki local linearisation, or the exact
    transition of a linear SDE. With ``obs=`` the path is the likelihood; without, it is
    a latent path.

    Parameters
    ----------
    sde
        An :class:`~sdeppl.SDE`, :class:`~sdeppl.LinearSDE` or :class:`~sdeppl.OU`.
    ts
        ``(T,)`` strictly increasing times (irregular allowed), ``ts[0]`` the start.
    x0
        The initial law $p_0$ (a NumPyro distribution with event shape ``()`` for a
        scalar state or ``(d,)``), or a fixed initial state (array of shape ``()`` or
        ``(d,)``). With a fixed state, sampling starts at ``x0`` and ``log_prob``
        conditions on the first value of the path (its term is 0).
    method
        ``"euler"``, ``"local_linear"`` or ``"exact"`` (linear SDEs only).
    substeps
        ``m`` latent points between consecutive times (data augmentation for coarse
        data, with ``"euler"`` or ``"local_linear"``). Sampling uses the fine grid. An
        observed path with ``substeps > 0`` has no closed-form density: its latent
        points are introduced by :func:`~sdeppl.reparam_paths` (applied by
        ``sdeppl.fit``).
    parametrization
        How :func:`~sdeppl.reparam_paths` exposes latent points to HMC:
        ``"noncentered"`` (default; standard-normal innovations are the latent
        variables and the path is their deterministic transform; for observed paths with
        ``substeps`` a modified diffusion bridge) or ``"centered"`` (the path values).

    Missing values
    --------------
    NaN marks a missing time point of an observed path. Its transition is skipped and
    the next observed point is reached in one transition spanning the gap (exact for
    ``"exact"``; one coarse step for the other methods; with ``substeps`` the missing
    points are latent). Missing points must be at the same times in every series of a
    batch, a time point is missing in all coordinates or none, and the first point
    must be observed; these are checked when the data are concrete.

    Shapes
    ------
    ``ts: (T,)``; ``value: (*sample, *batch, T)`` for a scalar state or
    ``(*sample, *batch, T, d)``; ``log_prob: (*sample, *batch)``. ``batch`` is the
    broadcast of ``x0``'s batch shape and the batch dims of the drift/diffusion outputs.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> import sdeppl as sp
    >>> sde = sp.SDE(drift=lambda t, x: 0.5 * (1.0 - x), diffusion=lambda t, x: 0.3)
    >>> path = sp.Path(sde, jnp.linspace(0.0, 1.0, 6), x0=dist.Normal(0.0, 1.0))
    >>> x = path.sample(jax.random.key(0), (3,))
    >>> x.shape, path.log_prob(x).shape
    ((3, 6), (3,))

    References
    ----------
    Durham, G. B. and Gallant, A. R. (2002). Numerical techniques for maximum
    likelihood estimation of continuous-time diffusion processes. *J. Bus. Econ.
    Stat.* 20, 297–338.
    """

    arg_constraints = {}
    pytree_data_fields = ("sde", "ts", "x0")
    pytree_aux_fields = (
        "method",
        "substeps",
        "parametrization",
        "_state_shape",
        "_noise_size",
    )

    def __init__(
        self,
        sde: SDE,
        ts,
        x0,
        method: str = "euler",
        *,
        substeps: int = 0,
        parametrization: str = "noncentered",
        validate_args=None,
    ):
        if not isinstance(sde, SDE):
            raise TypeError(
                f"Path: sde must be an sdeppl SDE (sp.SDE, sp.LinearSDE, sp.OU); got "
                f"{type(sde).__name__}."
            )
        if method not in METHODS:
            raise ValueError(
                f"Path: unknown method {method!r}; expected one of {METHODS}."
            )
        sde.check_method(method)
        if (
            not isinstance(substeps, int | np.integer)
            or isinstance(substeps, bool)
            or substeps < 0
        ):
            raise ValueError(f"Path: substeps must be an int >= 0; got {substeps!r}.")
        if substeps and method == "exact":
            raise ValueError(
                "Path: substeps are not needed with method='exact' (its transitions "
                "are exact over any gap); use substeps=0."
            )
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(
                f"Path: parametrization must be one of {PARAMETRIZATIONS}; "
                f"got {parametrization!r}."
            )
        ts = check_times(ts, "Path")
        if isinstance(x0, Distribution):
            if len(x0.event_shape) > 1:
                raise ValueError(
                    f"Path: x0 must have event shape () or (d,); got {x0.event_shape}."
                )
            state_shape, init_batch = tuple(x0.event_shape), tuple(x0.batch_shape)
        else:
            if not isinstance(x0, jax.core.Tracer):
                x0 = np.asarray(
                    x0, dtype=ts.dtype
                )  # stays concrete inside traced models
            else:
                x0 = x0.astype(ts.dtype)
            if x0.ndim > 1:
                raise ValueError(
                    f"Path: a fixed x0 must have shape () or (d,); got {x0.shape}. "
                    "For a batch of initial states pass a distribution, e.g. "
                    "dist.Delta(x0, event_dim=1)."
                )
            if is_concrete(x0) and not np.all(np.isfinite(np.asarray(x0))):
                raise ValueError(f"Path: x0 must be finite; got {x0}.")
            state_shape, init_batch = tuple(x0.shape), ()
        self.sde, self.ts, self.x0 = sde, ts, x0
        self.method, self.substeps, self.parametrization = (
            method,
            int(substeps),
            parametrization,
        )
        self._state_shape = state_shape
        batch_shape, noise_dim = self._infer_shapes(init_batch)
        self._noise_size = self._transition().noise_size
        if self.substeps and noise_dim < self.state_dim:
            raise ValueError(
                "Path: substeps need a full-rank diffusion; this SDE has "
                f"{noise_dim} Brownian motions for a {self.state_dim}-dimensional "
                "state."
            )
        super().__init__(
            batch_shape=batch_shape,
            event_shape=(ts.shape[0],) + state_shape,
            validate_args=validate_args,
        )
        if self._validate_args:
            self._validate_sde_params()
        if not isinstance(x0, Distribution):
            self._check_diffusion_at(ts[0], x0)

    # -- shapes ----------------------------------------------------------------------
    @property
    def state_dim(self) -> int:
        """Dimension $d$ of the state (1 for a scalar state)."""
        return self._state_shape[0] if self._state_shape else 1

    @property
    def scalar_state(self) -> bool:
        return self._state_shape == ()

    @property
    def reparametrizable(self) -> bool:
        """Whether a latent path can be non-centred: the method's transition is a
        smooth map of standard normals (not so for the exact CIR transition)."""
        return self._transition().caps.reparam

    @property
    def fine_ts(self):
        """The simulation grid: ``ts`` with ``substeps`` equal steps inserted per
        gap."""
        xp = np if is_concrete(self.ts) else jnp  # keep a concrete grid concrete
        return fine_grid(self.ts, self.substeps, xp)

    @property
    def noise_shape(self) -> tuple[int, int]:
        """Shape ``(K, k)`` of the standard-normal innovations of one path."""
        return (self.fine_ts.shape[0] - 1, self._noise_size)

    def _infer_shapes(self, init_batch):
        """Batch shape and noise dimension from probing the user closures (no FLOPs)."""
        sde, t0 = self.sde, self.ts[0]
        sde.fields(self.scalar_state)  # the SDE's own checks of the state first
        probe = jax.ShapeDtypeStruct(init_batch + self._state_shape, self.ts.dtype)
        shapes = {}
        for name, fn in zip(("drift", "diffusion"), sde.closures(), strict=True):
            try:
                shapes[name] = jax.eval_shape(lambda x, fn=fn: fn(t0, x), probe).shape
            except Exception as e:  # the user's closure failed on a state of this shape
                raise ValueError(
                    f"Path: calling {name}(t, x) with x of shape {probe.shape} "
                    f"failed: {e}"
                ) from e
        state = self._state_shape
        f_shape, g_shape = shapes["drift"], shapes["diffusion"]
        if state and (not f_shape or f_shape[-1] != state[-1]):
            raise ValueError(
                f"Path: drift returned shape {f_shape} for a state of shape {state}; "
                f"expected (*batch, {state[-1]}), one value per coordinate (a constant "
                "drift c: `lambda t, x: c + jnp.zeros_like(x)`)."
            )
        f_batch = f_shape[:-1] if state else f_shape
        if sde.noise == "general":
            if len(g_shape) < 2 or g_shape[-2] != self.state_dim:
                raise ValueError(
                    "Path: a general-noise diffusion must return "
                    f"(*batch, {self.state_dim}, m); got shape {g_shape}."
                )
            g_batch, noise_dim = g_shape[:-2], g_shape[-1]
        else:
            if state and g_shape and g_shape[-1] not in (1, state[-1]):
                raise ValueError(
                    "Path: a diagonal diffusion must return the state's shape "
                    f"{state} (or a scalar); got shape {g_shape}. Use noise='general' "
                    "for a matrix."
                )
            g_batch, noise_dim = (g_shape[:-1] if state else g_shape), self.state_dim
        try:
            batch = jnp.broadcast_shapes(init_batch, f_batch, g_batch)
        except ValueError as e:
            raise ValueError(
                f"Path: batch shapes of x0 {init_batch}, drift {f_batch} and diffusion "
                f"{g_batch} do not broadcast."
            ) from e
        return tuple(batch), noise_dim

    @constraints.dependent_property(is_discrete=False)
    def support(self):
        return constraints.independent(real_or_missing, self.event_dim)

    # -- validation --------------------------------------------------------------------
    def _validate_sde_params(self):
        for name, (constraint, value) in self.sde.param_constraints().items():
            ok = constraint(value)
            if is_concrete(ok) and not np.all(np.asarray(ok)):
                raise ValueError(
                    f"Path: {type(self.sde).__name__} parameter {name} must satisfy "
                    f"{type(constraint).__name__.lstrip('_')}; got {np.asarray(value)}."
                )

    def _check_diffusion_at(self, t, x):
        """Reject a negative diagonal diffusion when it can be evaluated eagerly."""
        if self.sde.noise != "diagonal" or not is_concrete(x):
            return
        try:
            value = self.sde.closures()[1](t, x)
        except Exception:  # closures that only work traced are checked in log_prob
            return
        if is_concrete(value) and np.any(np.asarray(value) < 0):
            raise ValueError(
                "Path: the diffusion returned a negative scale "
                f"(min {np.min(np.asarray(value)):.4g}) at t={float(t):.4g}; "
                "a diagonal diffusion is a standard deviation and must be >= 0."
            )

    # -- internal layout ---------------------------------------------------------------
    def _fields(self):
        return self.sde.fields(self.scalar_state)

    def _transition(self):
        """The layer-1 :class:`~sdeppl.solvers.Transition` of ``method``."""
        return self.sde.transition(self.method, self._state_shape, "Path")

    def _to_internal(self, value):
        """``(*lead, T, *state)`` -> ``(*lead, T, d)``."""
        return value[..., None] if self.scalar_state else value

    def _from_internal(self, xs):
        return xs[..., 0] if self.scalar_state else xs

    def _initial_states(self, key, lead_shape):
        """x0 draws or the fixed x0, broadcast to ``(*lead_shape, d)``."""
        if isinstance(self.x0, Distribution):
            start = self.x0.expand(lead_shape).sample(key)
        else:
            start = jnp.broadcast_to(self.x0, lead_shape + self._state_shape)
        return self._to_internal(start)

    # -- sampling and the non-centred transform ---------------------------------------
    def sample(self, key, sample_shape=()):
        lead = tuple(sample_shape) + self.batch_shape
        key_x0, key_path = jax.random.split(key)
        start = self._initial_states(key_x0, lead)
        return self._from_internal(self._simulate(key_path, start, self.ts))

    def _simulate(self, key, start, ts):
        """Paths from internal states ``start`` ``(*lead, d)``, reported at ``ts``
        (``substeps`` steps of the method's transition between times): ``(*lead, T,
        d)``."""
        xs = simulate(self._transition(), jnp.asarray(ts), start, key, self.substeps)
        return jnp.moveaxis(xs, 0, -2)

    def transform_noise(self, start, xi):
        r"""The non-centred map from innovations to the path.

        $x_{j+1} = m_j(x_j) + S_j(x_j)\,\xi_j$ on the fine grid, reported at ``ts``.

        Shapes
        ------
        start: ``(*lead, *batch, *state)``; xi: ``(*lead, *batch, K, k)`` with
        ``(K, k) = self.noise_shape``; returns ``(*lead, *batch, T, *state)``.
        """
        start = self._to_internal(jnp.asarray(start, dtype=self.ts.dtype))
        nb = len(self.batch_shape)
        lead = jnp.broadcast_shapes(
            start.shape[: max(start.ndim - 1 - nb, 0)],
            xi.shape[: max(xi.ndim - 2 - nb, 0)],
        )
        start = jnp.broadcast_to(start, lead + self.batch_shape + (self.state_dim,))
        xi = jnp.broadcast_to(xi, lead + self.batch_shape + self.noise_shape)
        transition = self._transition()
        tf = self.fine_ts
        coef = transition.coefficients(tf[:-1], tf[1:])

        def one(x_start, xi_one):  # x_start (*batch, d), xi_one (*batch, K, k)
            def step(x, args):
                c, t0, t1, z = args
                x_next = transition.transform(t0, t1, x, z, c)
                return x_next, x_next

            _, xs = jax.lax.scan(
                step, x_start, (coef, tf[:-1], tf[1:], jnp.moveaxis(xi_one, -2, 0))
            )
            xs = jnp.concatenate([x_start[None], xs], axis=0)[:: self.substeps + 1]
            return jnp.moveaxis(xs, 0, -2)

        flat_start = start.reshape((-1,) + start.shape[len(lead) :])
        flat_xi = xi.reshape((-1,) + xi.shape[len(lead) :])
        out = jax.vmap(one)(flat_start, flat_xi)
        return self._from_internal(out.reshape(lead + out.shape[1:]))

    def steer(self, start, eta, control, params):
        r"""The path under a control: on fine step $j$ the transition
        $x_{j+1} = m_j(x_j) + S_j(x_j)\,\xi_j$ takes the innovation
        $\xi_j = \mu_j + s_j\eta_j$ with $\mu_j = S_j^{+} v_j$, where
        $(v_j, \log s_j) =$ ``control(params, j, t_j, t_{j+1}, x_j)``: $v_j$ moves
        the step's mean by $v_j$ (state units, within the span of $S_j$) and $s_j$
        scales its noise. With Euler steps of length $h_j$ this is the SDE with drift
        $f + v_j / h_j$ and diffusion $s_j g$: a path-space variational posterior
        (:class:`sdeppl.PathGuide`). ``control`` sees the whole batch of states
        ``x (*batch, d)`` and returns ``v`` broadcastable to ``(*batch, d)`` and
        ``log s`` to ``(*batch, k)``. Gaussian transitions only (``euler``,
        ``local_linear``).

        Shapes
        ------
        start: broadcastable to ``(*batch, *state)``; eta: ``(*batch, K, k)`` (the
        site's batch, which plates may widen); returns the states on the fine grid
        ``(*batch, K + 1, d)`` and $\xi$, $\mu$, $\log s$ ``(*batch, K, k)``.
        """
        batch = eta.shape[:-2]
        start = self._to_internal(jnp.asarray(start, dtype=self.ts.dtype))
        start = jnp.broadcast_to(start, batch + (self.state_dim,))
        transition = self._transition()
        tf = self.fine_ts
        coef = transition.coefficients(tf[:-1], tf[1:])

        def step(x, args):
            c, j, t0, t1, e = args
            shift, log_scale = control(params, j, t0, t1, x)
            mean, scale = transition.moments(t0, t1, x, c)
            mu = noise_for_shift(
                jnp.broadcast_to(shift, x.shape), scale, transition.scale_kind
            )
            log_scale = jnp.broadcast_to(log_scale, e.shape)
            xi = mu + jnp.exp(log_scale) * e
            x_next = gaussian_transform(mean, scale, transition.scale_kind, xi)
            return x_next, (x_next, xi, mu, log_scale)

        steps = jnp.arange(tf.shape[0] - 1)
        _, (xs, xi, mean, log_scale) = jax.lax.scan(
            step, start, (coef, steps, tf[:-1], tf[1:], jnp.moveaxis(eta, -2, 0))
        )
        xs = jnp.concatenate([start[None], xs], axis=0)
        return tuple(jnp.moveaxis(a, 0, -2) for a in (xs, xi, mean, log_scale))

    def innovation_means(self, states, shifts):
        r"""$\mu_j = S_j^{+} v_j$: the innovation means that move the steps from the
        fine ``states`` $x_j$ by ``shifts`` $v_j$ (see :meth:`steer`).

        Shapes
        ------
        states: ``(*batch, K + 1, d)``; shifts: ``(*batch, K, d)``; returns
        ``(*batch, K, k)``.
        """
        transition = self._transition()
        tf = self.fine_ts
        coef = transition.coefficients(tf[:-1], tf[1:])

        def one(c, t0, t1, x, v):  # x, v: (*batch, d)
            _, scale = transition.moments(t0, t1, x, c)
            return noise_for_shift(v, scale, transition.scale_kind)

        return jax.vmap(one, in_axes=(0, 0, 0, -2, -2), out_axes=-2)(
            coef, tf[:-1], tf[1:], states[..., :-1, :], shifts
        )

    # -- density ----------------------------------------------------------------------
    @validate_sample
    def log_prob(self, value):
        return jnp.sum(self.pointwise_log_prob(value), axis=-1)

    def pointwise_log_prob(self, value):
        r"""Per-time terms of ``log_prob``, shape ``(*sample, *batch, T)``.

        Index 0 holds $\log p_0(x_0)$ (0 for a fixed ``x0``), index ``k`` the transition
        into ``ts[k]``; missing points hold 0 (their transition is counted at the next
        observed point). Used for pointwise log-likelihoods (PSIS-LOO).
        """
        if self.substeps:
            raise ValueError(
                "Path: an observed path with substeps > 0 has latent points between "
                "the observations, so it has no closed-form log_prob. Fit with "
                "sdeppl.fit, or wrap the model with sdeppl.reparam_paths(model), which "
                "adds them as latent variables; or use substeps=0."
            )
        check_value_shape(value, self.event_shape, self.batch_shape, "Path")
        observed = self._observed_index(value)  # on concrete data, before compiling
        self._check_scales_on(value, observed)
        observed = None if observed is None else tuple(int(i) for i in observed)
        return self._pointwise_terms(value, observed)

    def _check_scales_on(self, value, observed):
        """Reject a negative diagonal diffusion at the observed states, when the path
        and its parameters are concrete (outside any trace)."""
        if self.sde.noise != "diagonal" or not is_concrete(value, self):
            return
        x = self._to_internal(np.asarray(value, dtype=float))
        if observed is not None:
            x = x[..., observed, :]
        ts = np.asarray(self.ts) if observed is None else np.asarray(self.ts)[observed]
        diffusion = self._fields().diffusion
        scales = jax.vmap(diffusion, in_axes=(0, -2))(
            ts[:-1], jnp.asarray(x[..., :-1, :])
        )
        if is_concrete(scales) and np.any(np.asarray(scales) < 0):
            raise ValueError(
                "Path: the diffusion returned a negative scale (min "
                f"{float(np.min(np.asarray(scales))):.4g}); a diagonal diffusion is a "
                "standard deviation and must be >= 0."
            )

    @compiled_when_eager
    def _pointwise_terms(self, value, observed):
        """:meth:`pointwise_log_prob` given the observed indices (a tuple, or None for
        all)."""
        observed = (
            np.arange(self.ts.shape[0]) if observed is None else np.array(observed)
        )
        x = self._to_internal(jnp.asarray(value, dtype=self.ts.dtype))
        x = jnp.broadcast_to(
            x, jnp.broadcast_shapes(x.shape[:-2], self.batch_shape) + x.shape[-2:]
        )
        terms = self.transition_log_probs(
            x[..., observed[:-1], :],
            x[..., observed[1:], :],
            self.ts[observed[:-1]],
            self.ts[observed[1:]],
        )
        if isinstance(self.x0, Distribution):
            first = self.x0.log_prob(self._from_internal(x[..., 0, :]))
        else:
            first = jnp.zeros(terms.shape[:-1], terms.dtype)
        out = jnp.zeros(terms.shape[:-1] + (self.ts.shape[0],), terms.dtype)
        out = out.at[..., observed[1:]].set(terms).at[..., 0].set(first)
        return jnp.where(jnp.isnan(out), -jnp.inf, out)

    def one_step_sample(self, key, value):
        r"""One-step-ahead predictive draws: $\tilde x_k \sim p(x_k \mid x_{k-1})$ for
        every observed ``x_{k-1}`` (the last observed point before a gap).

        A residual check for time series: observations should look like draws from these
        transitions. Index 0 and missing points are NaN.

        Shapes
        ------
        value: ``(*batch, T, *state)`` (leading dims from plates allowed); returns the
        same shape.
        """
        observed = self._observed_index(value)
        if observed is None:
            observed = np.arange(self.ts.shape[0])
        x = self._to_internal(jnp.asarray(value, dtype=self.ts.dtype))
        x = jnp.broadcast_to(
            x, jnp.broadcast_shapes(x.shape[:-2], self.batch_shape) + x.shape[-2:]
        )
        transition = self._transition()
        t0s, t1s = self.ts[observed[:-1]], self.ts[observed[1:]]
        coef = transition.coefficients(t0s, t1s)
        # leading dims (e.g. from plates) are batch dims of the closures
        x_prev = jnp.moveaxis(x[..., observed[:-1], :], -2, 0)
        keys = jax.random.split(key, t0s.shape[0])
        draws = jax.vmap(transition.sample)(keys, t0s, t1s, x_prev, coef)
        draws = jnp.moveaxis(draws, 0, -2)
        out = jnp.full(x.shape, jnp.nan, x.dtype).at[..., observed[1:], :].set(draws)
        return self._from_internal(out)

    # -- time-series protocol (sdeppl.processes._series) -------------------------------
    has_latent = False

    @property
    def value_dim(self) -> str | None:
        return None if self.scalar_state else "state"

    @property
    def latent_dim(self) -> str | None:
        return None

    @property
    def pointwise(self) -> bool:
        return self.substeps == 0

    def sample_latent(self, key, value):
        """A path observed directly has no hidden path: the value is the path."""
        raise ValueError(
            "Path: sample_latent is for hidden paths (has_latent is False); the value "
            "of a Path is the path itself."
        )

    def informative_mask(self, value) -> np.ndarray:
        """``(T,)`` mask of the terms of :meth:`pointwise_log_prob` that depend on the
        parameters: observed points, and the first one only when ``x0`` is random.
        Needs concrete data."""
        observed = self._observed_index(value)
        mask = np.ones(self.ts.shape[0], bool)
        if observed is not None:
            mask[:] = False
            mask[observed] = True
        mask[0] &= isinstance(self.x0, Distribution)
        return mask

    def forecast(self, key, value, future_ts):
        """Continue the path beyond ``ts[-1]`` from its last value, at ``future_ts``.

        Shapes
        ------
        value: ``(*batch, T, *state)``; future_ts: ``(F,)``; returns
        ``(*batch, F, *state)``.
        """
        last = self._to_internal(jnp.asarray(value, self.ts.dtype))[..., -1, :]
        ts = jnp.concatenate(
            [jnp.asarray(self.ts[-1:]), jnp.asarray(future_ts, self.ts.dtype)]
        )
        return self._from_internal(self._simulate(key, last, ts)[..., 1:, :])

    def transition_log_probs(self, x_prev, x_next, t0s, t1s):
        """Transition log-densities of consecutive pairs, vectorised over pairs.

        Shapes
        ------
        x_prev, x_next: ``(*lead, *batch, K, d)``; t0s, t1s: ``(K,)``; returns
        ``(*lead, *batch, K)``.
        """
        nb = len(self.batch_shape)
        lead = x_prev.shape[: x_prev.ndim - 2 - nb]
        transition = self._transition()
        flat_prev = x_prev.reshape((-1,) + x_prev.shape[len(lead) :])
        flat_next = x_next.reshape((-1,) + x_next.shape[len(lead) :])

        def one(x0s, x1s):  # (*batch, K, d) -> (*batch, K)
            lp = transition.log_prob(
                t0s, t1s, jnp.moveaxis(x0s, -2, 0), jnp.moveaxis(x1s, -2, 0)
            )
            return jnp.moveaxis(lp, 0, -1)

        lp = jax.vmap(one)(flat_prev, flat_next)
        return lp.reshape(lead + lp.shape[1:])

    def _observed_index(self, value):
        """Indices of observed time points if any are missing (NaN), else None.

        Checked on concrete data only (``value`` as given, before any JAX operation);
        traced data are assumed complete (a NaN there makes ``log_prob`` ``-inf``).
        """
        if isinstance(value, jax.core.Tracer):
            return None
        xv = self._to_internal(np.asarray(value, dtype=np.float64))
        finite = np.isfinite(xv)
        if finite.all():
            return None
        if np.any(np.isinf(xv)):
            raise ValueError(
                "Path: the path has infinite values; only NaN marks a missing value."
            )
        row_missing = ~finite.all(axis=-1)
        if np.any(row_missing & finite.any(axis=-1)):
            raise ValueError(
                "Path: a time point is missing in some coordinates but not all; a Path "
                "needs whole states. Use sdeppl.StateSpace for partially observed "
                "states."
            )
        rows = row_missing.reshape(-1, xv.shape[-2])
        if np.any(rows != rows[:1]):
            raise ValueError(
                "Path: missing values (NaN) must be at the same times in every series "
                "of a batch; fit series with different gaps separately."
            )
        missing = rows[0]
        if missing[0]:
            raise ValueError(
                "Path: the first time point is missing (NaN); start ts at the first "
                "observed time."
            )
        return np.flatnonzero(~missing)

    # -- data augmentation (used by reparam_paths) ------------------------------------
    def augmentation_plan(self, obs):
        """Static structure of the fine grid for an observed path with substeps.

        Returns a dict of NumPy arrays: ``observed`` (F,) bool per fine point,
        ``obs_index`` (F,) index into ``ts`` (or -1), ``target`` (F-1,) the fine index
        of the next observed point after each step's end (or -1), ``latent_slot`` (F,)
        the row of the innovations used by a latent point (or 0), and ``num_latent``.
        """
        if not is_concrete(obs):
            raise ValueError(
                "Path: data augmentation (substeps > 0) needs concrete observations "
                "(not traced inside jit)."
            )
        missing = np.zeros(self.ts.shape[0], bool)
        idx = self._observed_index(obs)
        if idx is not None:
            missing[np.setdiff1d(np.arange(missing.size), idx)] = True
        s1 = self.substeps + 1
        num_fine = (self.ts.shape[0] - 1) * s1 + 1
        observed = np.zeros(num_fine, bool)
        observed[::s1] = ~missing
        obs_index = np.full(num_fine, -1)
        obs_index[::s1] = np.arange(self.ts.shape[0])
        target = np.full(num_fine - 1, -1)
        nxt = -1
        for j in range(num_fine - 1, 0, -1):  # static, on the NumPy plan only
            if observed[j]:
                nxt = j
            target[j - 1] = nxt
        latent = ~observed
        latent_slot = np.where(latent, np.cumsum(latent) - 1, 0)
        return {
            "observed": observed,
            "obs_index": obs_index,
            "target": target,
            "latent_slot": latent_slot,
            "num_latent": int(latent.sum()),
        }

    def augmented_log_prob(self, obs, z, plan, centered: bool):
        r"""Joint log-density of the observations and the latent fine points.

        Non-centred (``centered=False``): ``z`` are standard-normal innovations
        ``(*batch, L, d)``; a latent point before an observation follows the modified
        diffusion bridge $q$ of Durham & Gallant (2002) towards it, one after the last
        observation follows the transition itself. The result is
        $\log p(y, x_{lat}) - \log q(x_{lat} \mid y)$, which together with the
        innovations' $N(0, I)$ prior is the joint density of $(y, x_{lat})$ expressed
        in innovation space. Centred: ``z`` are the latent points and the result is
        $\log p(y, z)$.

        Shapes
        ------
        obs: ``(*batch, T, *state)``; z: ``(*batch, L, d)``; returns ``(*batch,)``.
        """
        y = self._to_internal(jnp.asarray(obs, dtype=self.ts.dtype))
        y = jnp.broadcast_to(y, self.batch_shape + y.shape[-2:])
        y = jnp.where(jnp.isnan(y), 0.0, y)
        z = jnp.broadcast_to(z, self.batch_shape + z.shape[-2:])
        fields, transition = self._fields(), self._transition()
        kind_p = transition.scale_kind
        kind_q = bridge_scale_kind(fields.diffusion)
        tf = self.fine_ts
        y_fine = y[..., np.maximum(plan["obs_index"], 0), :]  # (*batch, F, d)
        z_fine = z[..., plan["latent_slot"], :]  # (*batch, F, d)
        target = plan[
            "target"
        ]  # fine index of the next observation, per latent step end
        has_target = target >= 0
        # steps without a target get a harmless dummy one (their bridge is never used)
        target_t = jnp.where(has_target, tf[np.maximum(target, 0)], tf[-1] + 1.0)
        target_y = y_fine[..., np.maximum(target, 0), :]
        to_front = lambda a: jnp.moveaxis(a, -2, 0)  # noqa: E731

        def step(carry, args):
            x, lp = carry
            t0, t1, obs_next, y_next, z_next, has_t, tt, yt = args
            mean_p, scale_p = transition.moments(t0, t1, x, None)
            if centered:
                x_lat, weight = z_next, 0.0
            else:
                mean_q, scale_q = bridge_moments(
                    fields.drift, fields.diffusion, t0, t1, x, tt, yt
                )
                x_bridge = gaussian_transform(mean_q, scale_q, kind_q, z_next)
                tril_p = _as_square_scale(scale_p, kind_p)
                x_forward = gaussian_transform(
                    mean_p, tril_p, _square_kind(kind_p), z_next
                )
                x_lat = jnp.where(has_t, x_bridge, x_forward)
                # log p - log q; zero for forward draws, where q is the transition
                # itself
                weight = jnp.where(
                    has_t, -gaussian_log_prob(x_lat, mean_q, scale_q, kind_q), 0.0
                )
            x_next = jnp.where(obs_next, y_next, x_lat)
            lp_step = gaussian_log_prob(x_next, mean_p, scale_p, kind_p)
            forward = (~obs_next) & (~has_t) & (not centered)
            lp = lp + jnp.where(
                forward, 0.0, lp_step + jnp.where(obs_next, 0.0, weight)
            )
            return (x_next, lp), None

        xs = (
            tf[:-1],
            tf[1:],
            plan["observed"][1:],
            to_front(y_fine[..., 1:, :]),
            to_front(z_fine[..., 1:, :]),
            has_target,
            target_t,
            to_front(target_y),
        )
        init = (y[..., 0, :], jnp.zeros(self.batch_shape, y.dtype))
        (_, lp), _ = jax.lax.scan(step, init, xs)
        if isinstance(self.x0, Distribution):
            lp = lp + self.x0.log_prob(self._from_internal(y[..., 0, :]))
        return jnp.where(jnp.isnan(lp), -jnp.inf, lp)

    def fine_path(self):
        """The same process on the fine grid (``substeps=0``), for centred latent
        paths."""
        return Path(
            self.sde,
            self.fine_ts,
            self.x0,
            self.method,
            parametrization=self.parametrization,
            validate_args=self._validate_args,
        )


def _square_kind(kind: str) -> str:
    return "diag" if kind == "diag" else "tril"


def _as_square_scale(scale, kind: str):
    """A ``"diag"`` or ``"tril"`` scale with the same covariance as ``scale``."""
    if kind == "factor":
        return jnp.linalg.cholesky(jnp.einsum("...ik,...jk->...ij", scale, scale))
    return scale
