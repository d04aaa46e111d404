r"""Stochastic differential equations: :class:`SDE`, :class:`LinearSDE`, :class:`OU`.

An SDE object describes the dynamics $dX_t = f(t, X_t)\,dt + g(t, X_t)\,dW_t$ only; the
distribution over a path at given times is :class:`sdeppl.Path`. Drift and diffusion are
closures ``f(t, x)``, ``g(t, x)`` so that parameters sampled in a NumPyro model are
captured naturally.

Closures see one time point: ``t`` is a scalar and ``x`` has shape ``(*batch, d)`` for
a vector state (``(*batch,)`` for a scalar state), where ``batch`` is the batch shape of
the path (empty unless parameters are batched). They must broadcast over leading batch
dims.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints

from ..solvers import (
    Diffusion,
    affine_discretisation,
    affine_moments,
    euler_moments,
    euler_scale_kind,
    local_linear_moments,
    ou_moments,
)
from ..solvers import simulate as _simulate_solver
from ..solvers.simulate import get_scheme
from ._checks import check_times, uniform_step


class Fields(NamedTuple):
    """Drift and diffusion on ``(*batch, d)`` states, plus parameters in state
    layout."""

    drift: Callable
    diffusion: Diffusion
    params: object = None


class SDE:
    r"""An Itô SDE $dX_t = f(t, X_t)\,dt + g(t, X_t)\,dW_t$.

    Parameters
    ----------
    drift
        $f$: ``drift(t, x)``; returns the shape of ``x`` (``(*batch, d)`` or
        ``(*batch,)`` for a scalar state; a scalar broadcasts).
    diffusion
        $g$: ``diffusion(t, x)``. With ``noise="diagonal"`` it returns the shape of
        ``x`` (or a scalar), each coordinate driven by its own Brownian motion; with
        ``noise="general"`` it returns ``(*batch, d, m)`` for $m$ Brownian motions
        ($m \ne d$ allowed, e.g. rank-deficient noise in augmented states).
    noise
        ``"diagonal"`` (default) or ``"general"``. Diagonal noise assumes $g_i$
        depends on $x_i$ only (used by the Milstein scheme).
    additive
        Declare that $g$ does not depend on the state (enables the SRA1 scheme).

    Notes
    -----
    Likelihood methods available to :class:`~sdeppl.Path`: ``"euler"``
    (Euler–Maruyama) and ``"local_linear"`` (Shoji–Ozaki); :class:`LinearSDE` and
    :class:`OU` add ``"exact"``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import sdeppl as sp
    >>> sde = sp.SDE(drift=lambda t, x: x - x**3, diffusion=lambda t, x: 0.5)
    >>> xs = sde.simulate(
    ...     jax.random.key(0), jnp.linspace(0.0, 1.0, 11), x0=0.0, num_paths=4
    ... )
    >>> xs.shape
    (4, 11)
    """

    methods: tuple[str, ...] = ("euler", "local_linear")

    def __init__(
        self, drift, diffusion, *, noise: str = "diagonal", additive: bool = False
    ):
        name = type(self).__name__
        if not callable(drift):
            raise TypeError(
                f"{name}: drift must be a callable f(t, x); got {type(drift).__name__}."
            )
        if not callable(diffusion):
            raise TypeError(
                f"{name}: diffusion must be a callable g(t, x); "
                f"got {type(diffusion).__name__}."
                " For a constant diffusion write `lambda t, x: sigma`."
            )
        if noise not in ("diagonal", "general"):
            raise ValueError(
                f"{name}: noise must be 'diagonal' or 'general'; got {noise!r}."
            )
        self.drift = drift
        self.diffusion = diffusion
        self.noise = noise
        self.additive = bool(additive)

    # -- pytree ---------------------------------------------------------------------
    def tree_flatten(self):
        return (), (self.drift, self.diffusion, self.noise, self.additive)

    @classmethod
    def tree_unflatten(cls, aux, children):
        drift, diffusion, noise, additive = aux
        return cls(drift, diffusion, noise=noise, additive=additive)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_node(cls, cls.tree_flatten, cls.tree_unflatten)

    # -- parameters -----------------------------------------------------------------
    def param_constraints(self) -> dict:
        """``{name: (constraint, value)}`` of array parameters checked under
        validate_args."""
        return {}

    # -- canonical vector fields on (*batch, d) states --------------------------------
    def fields(self, scalar_state: bool):
        """Drift and :class:`~sdeppl.solvers.Diffusion` acting on ``(*batch, d)``
        states.

        For a scalar state the user closures are called on ``x[..., 0]`` and their
        output gets a trailing unit axis; outputs are broadcast to the state's shape.
        """
        drift, diffusion, noise = self.drift, self.diffusion, self.noise
        if scalar_state:
            if noise != "diagonal":
                raise ValueError(
                    f"{type(self).__name__}: a scalar state needs noise='diagonal'; "
                    f"got noise={noise!r}. Give x0 shape (d,) for a vector state."
                )

            def drift_fn(t, x):
                return jnp.broadcast_to(drift(t, x[..., 0]), x.shape[:-1])[..., None]

            def diffusion_fn(t, x):
                return jnp.broadcast_to(diffusion(t, x[..., 0]), x.shape[:-1])[
                    ..., None
                ]

        else:

            def drift_fn(t, x):
                return jnp.broadcast_to(drift(t, x), x.shape)

            if noise == "diagonal":

                def diffusion_fn(t, x):
                    return jnp.broadcast_to(diffusion(t, x), x.shape)

            else:

                def diffusion_fn(t, x):
                    g = diffusion(t, x)
                    return jnp.broadcast_to(g, x.shape[:-1] + jnp.shape(g)[-2:])

        return Fields(drift_fn, Diffusion(diffusion_fn, noise, self.additive))

    # -- transitions ------------------------------------------------------------------
    def check_method(self, method: str, owner: str = "Path") -> None:
        """Raise a clear error if ``method`` is not a likelihood method of this SDE."""
        if method not in self.methods:
            raise ValueError(
                f"{owner}: method={method!r} is not available for "
                f"{type(self).__name__}; expected one of {self.methods}."
                + (
                    " 'exact' needs a linear SDE (sp.LinearSDE or sp.OU)."
                    if method == "exact"
                    else ""
                )
            )

    def scale_kind(self, method: str) -> str:
        """Scale kind of the Gaussian transition ``method`` produces (see
        solvers.gaussian)."""
        if method == "euler":
            return euler_scale_kind(Diffusion(self.diffusion, self.noise))
        return "tril"

    def coefficients(self, method: str, t0s, t1s):
        """State-independent per-transition quantities, leading axis ``K`` (or
        ``None``)."""
        return None

    def moments(self, method: str, fields, coef, t0, t1, x0):
        """Mean and scale of the ``method`` transition from ``(t0, x0)`` to ``t1``."""
        if method == "euler":
            return euler_moments(fields.drift, fields.diffusion, t0, t1, x0)
        if method == "local_linear":
            return local_linear_moments(fields.drift, fields.diffusion, t0, t1, x0)
        raise ValueError(f"{type(self).__name__}: unknown method {method!r}.")

    # -- simulation -------------------------------------------------------------------
    def simulate(
        self,
        key,
        ts,
        x0,
        *,
        scheme: str = "euler",
        substeps: int = 0,
        num_paths: int | None = None,
    ):
        """Simulate paths at times ``ts`` with a fixed-step scheme.

        Parameters
        ----------
        key: PRNG key.
        ts: ``(T,)`` strictly increasing output times, ``ts[0]`` the start time.
        x0: initial state, shape ``()`` (scalar state) or ``(d,)``.
        scheme: ``"euler"`` (any noise), ``"milstein"`` (diagonal noise) or ``"sra1"``
            (additive noise; strong order 1.5, weak order 2).
        substeps: extra equal steps between consecutive output times.
        num_paths: number of independent paths (``None`` for one).

        Returns
        -------
        ``(num_paths, T, *state)`` or ``(T, *state)`` when ``num_paths`` is None.
        """
        ts = jnp.asarray(check_times(ts, f"{type(self).__name__}.simulate"))
        x0 = jnp.asarray(x0, dtype=ts.dtype)
        if x0.ndim > 1:
            raise ValueError(
                f"{type(self).__name__}.simulate: x0 must have shape () or (d,); got "
                f"{x0.shape}. Use num_paths for several paths."
            )
        if not isinstance(substeps, int | np.integer) or substeps < 0:
            raise ValueError(
                f"{type(self).__name__}.simulate: substeps must be an int >= 0; "
                f"got {substeps!r}."
            )
        scalar = x0.ndim == 0
        drift_fn, diffusion, _ = self.fields(scalar)
        scheme_ = get_scheme(scheme, diffusion)
        state = x0[None] if scalar else x0
        if num_paths is not None:
            state = jnp.broadcast_to(state, (num_paths,) + state.shape)
        xs = _simulate_solver(scheme_, drift_fn, diffusion, ts, state, key, substeps)
        xs = jnp.moveaxis(xs, 0, -2)  # (*paths, T, d)
        return xs[..., 0] if scalar else xs


class LinearSDE(SDE):
    r"""A linear (affine) SDE $dX_t = (A X_t + b)\,dt + L\,dW_t$ with exact transitions.

    Parameters
    ----------
    A: ``(*batch, d, d)`` drift matrix.
    L: ``(*batch, d, m)`` diffusion matrix ($m$ Brownian motions; $m < d$ allowed, e.g.
        a damped oscillator forced in its velocity only).
    b: ``(*batch, d)`` drift offset (default 0).

    Notes
    -----
    ``method="exact"`` uses the matrix-exponential discretisation of
    :func:`sdeppl.solvers.affine_discretisation`, computed once when the time grid is
    regular. The state must be a vector ``(d,)``.

    Examples
    --------
    >>> import jax.numpy as jnp, sdeppl as sp
    >>> osc = sp.LinearSDE(
    ...     A=jnp.array([[0.0, 1.0], [-1.0, -0.2]]), L=jnp.array([[0.0], [0.5]])
    ... )
    >>> osc.methods
    ('euler', 'local_linear', 'exact')
    """

    methods = ("euler", "local_linear", "exact")

    def __init__(self, A, L, b=None):
        A = jnp.asarray(A)
        L = jnp.asarray(L)
        if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
            raise ValueError(
                f"LinearSDE: A must have shape (*batch, d, d); got {A.shape}."
            )
        d = A.shape[-1]
        if L.ndim < 2 or L.shape[-2] != d:
            raise ValueError(
                f"LinearSDE: L must have shape (*batch, {d}, m) to match A {A.shape}; "
                f"got {L.shape}."
            )
        self.has_offset = b is not None  # static: no offset row in the Van Loan exp
        b = jnp.zeros(A.shape[:-1], A.dtype) if b is None else jnp.asarray(b)
        if b.ndim < 1 or b.shape[-1] != d:
            raise ValueError(
                f"LinearSDE: b must have shape (*batch, {d}); got {b.shape}."
            )
        self.A, self.L, self.b = A, L, b
        super().__init__(self._drift, self._diffusion, noise="general", additive=True)

    def _drift(self, t, x):
        return jnp.einsum("...ij,...j->...i", self.A, x) + self.b

    def _diffusion(self, t, x):
        return self.L

    def tree_flatten(self):
        return (self.A, self.L, self.b), (self.has_offset,)

    @classmethod
    def tree_unflatten(cls, aux, children):
        A, L, b = children
        obj = cls.__new__(cls)
        obj.A, obj.L, obj.b = A, L, b
        (obj.has_offset,) = aux
        SDE.__init__(obj, obj._drift, obj._diffusion, noise="general", additive=True)
        return obj

    def fields(self, scalar_state: bool):
        if scalar_state:
            raise ValueError(
                "LinearSDE: the state must be a vector; give x0 shape (d,) (use sp.OU "
                "for a scalar linear SDE)."
            )
        return super().fields(scalar_state)

    def coefficients(self, method, t0s, t1s):
        if method != "exact":
            return None
        cov_rate = jnp.einsum("...ik,...jk->...ij", self.L, self.L)
        num = t0s.shape[0]
        b = self.b if self.has_offset else None
        step = uniform_step(t0s, t1s)
        if step is not None:  # one matrix exponential serves every gap
            one = affine_discretisation(self.A, b, cov_rate, step)
            return jax.tree_util.tree_map(
                lambda a: jnp.broadcast_to(a, (num,) + a.shape), one
            )
        dts = jnp.asarray(t1s) - jnp.asarray(t0s)
        batch_ndim = len(jnp.broadcast_shapes(self.A.shape[:-2], self.b.shape[:-1]))
        return affine_discretisation(
            self.A, b, cov_rate, dts.reshape(dts.shape + (1,) * batch_ndim)
        )

    def moments(self, method, fields, coef, t0, t1, x0):
        if method == "exact":
            return affine_moments(coef, x0)
        return super().moments(method, fields, coef, t0, t1, x0)

    def discretise(self, fields, t0s, t1s, state_dim):
        """Exact transitions over the gaps: ``(phi, shift, q)``, leading axis ``K``."""
        tr = self.coefficients("exact", t0s, t1s)
        return tr.phi, tr.shift, tr.cov


class OU(SDE):
    r"""Ornstein–Uhlenbeck process $dX_t = \theta(\mu - X_t)\,dt + \sigma\,dW_t$.

    Scalar, or elementwise for a vector state (independent coordinates). The exact
    transition is $N\big(\mu + (x_0 - \mu)e^{-\theta h},\;
    \sigma^2(1 - e^{-2\theta h})/(2\theta)\big)$ over a step $h$.

    Parameters
    ----------
    theta: mean-reversion rate $\theta \ge 0$ (array, broadcasts).
    mu: long-run mean $\mu$.
    sigma: volatility $\sigma > 0$.

    Examples
    --------
    >>> import jax.numpy as jnp, numpyro.distributions as dist, sdeppl as sp
    >>> path = sp.Path(sp.OU(0.5, 1.0, 0.3), jnp.arange(5.0), x0=0.0, method="exact")
    >>> path.event_shape
    (5,)
    """

    methods = ("euler", "local_linear", "exact")

    def __init__(self, theta, mu, sigma):
        self.theta = jnp.asarray(theta)
        self.mu = jnp.asarray(mu)
        self.sigma = jnp.asarray(sigma)
        super().__init__(self._drift, self._diffusion, noise="diagonal", additive=True)

    def _drift(self, t, x):
        return self.theta * (self.mu - x)

    def _diffusion(self, t, x):
        return self.sigma

    def tree_flatten(self):
        return (self.theta, self.mu, self.sigma), ()

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)

    def param_constraints(self):
        return {
            "theta": (constraints.nonnegative, self.theta),
            "sigma": (constraints.positive, self.sigma),
        }

    def scale_kind(self, method):
        return "diag" if method in ("euler", "exact") else "tril"

    def fields(self, scalar_state: bool):
        params = (self.theta, self.mu, self.sigma)
        if scalar_state:  # parameters have the batch shape; the state adds a unit axis
            params = tuple(p[..., None] if p.ndim else p for p in params)
        return super().fields(scalar_state)._replace(params=params)

    def moments(self, method, fields, coef, t0, t1, x0):
        if method == "exact":
            theta, mu, sigma = fields.params
            return ou_moments(theta, mu, sigma, t1 - t0, x0)
        return super().moments(method, fields, coef, t0, t1, x0)

    def discretise(self, fields, t0s, t1s, state_dim):
        """Exact transitions over the gaps: ``(phi, shift, q)``, leading axis ``K``."""
        theta, mu, sigma = fields.params
        eye = jnp.eye(state_dim, dtype=jnp.result_type(theta, float))

        def one(dt):
            decay = jnp.exp(-theta * dt)
            shift, sd = ou_moments(
                theta, mu, sigma, dt, jnp.zeros(state_dim, eye.dtype)
            )

            def diag(v):
                return (
                    jnp.broadcast_to(v, jnp.shape(v)[:-1] + (state_dim,))[..., :, None]
                    * eye
                )

            return (
                diag(
                    jnp.broadcast_to(
                        decay, jnp.broadcast_shapes(jnp.shape(decay), (1,))
                    )
                ),
                shift,
                diag(sd**2),
            )

        return jax.vmap(one)(jnp.asarray(t1s) - jnp.asarray(t0s))
