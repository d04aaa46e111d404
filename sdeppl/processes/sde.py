r"""Stochastic differential equations: :class:`SDE`, :class:`LinearSDE`, :class:`OU`,
:class:`CIR`.

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
    TRANSITIONS,
    Diffusion,
    Transition,
    affine_transition,
    build_transition,
    cir_transition,
    ou_transition,
)
from ..solvers import simulate as _simulate_solver
from ._checks import check_times


class Fields(NamedTuple):
    """Drift and diffusion acting on internal ``(*batch, d)`` states."""

    drift: Callable
    diffusion: Diffusion


class SDE:
    r"""An Itô SDE $dX_t = f(t, X_t)\,dt + g(t, X_t)\,dW_t$.

    Parameters
    ----------
    drift
        $f$: ``drift(t, x)`` (or ``drift(t, x, params)`` when ``params`` is given);
        returns the shape of ``x``: ``(*batch, d)``, one value per coordinate, or
        ``(*batch,)`` for a scalar state (where a scalar broadcasts). A shape that
        does not fit the state is an error where the path is built.
    diffusion
        $g$: ``diffusion(t, x)`` (or ``diffusion(t, x, params)``). With
        ``noise="diagonal"`` it returns the shape of ``x`` (or a scalar), each
        coordinate driven by its own Brownian motion; with ``noise="general"`` it
        returns ``(*batch, d, m)`` for $m$ Brownian motions ($m \ne d$ allowed, e.g.
        rank-deficient noise in augmented states).
    params
        Optional pytree of parameters passed to ``drift`` and ``diffusion`` as their
        third argument. Parameters given this way are leaves of the SDE's pytree, so
        an SDE can be passed through ``jax.jit``, ``jax.vmap`` (e.g. over parameter
        values) and ``jax.grad`` like an array; parameters captured in closures work
        inside a model but are constants of the object.
    noise
        ``"diagonal"`` (default) or ``"general"``. Diagonal noise assumes $g_i$
        depends on $x_i$ only (used by the Milstein scheme).
    additive
        Declare that $g$ does not depend on the state (enables the SRA1 scheme).

    Notes
    -----
    Likelihood methods available to :class:`~sdeppl.Path` (:attr:`methods`):
    ``"euler"`` (Euler–Maruyama) and ``"local_linear"`` (Shoji–Ozaki);
    :class:`LinearSDE` and :class:`OU` add ``"exact"``. Each is a layer-1
    :class:`~sdeppl.solvers.Transition` (:meth:`transition`).

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

    Parameters as leaves: the same SDE, vmapped over three values of its parameter.

    >>> ou = sp.SDE(lambda t, x, p: p["theta"] * (1.0 - x), lambda t, x, p: 0.3,
    ...             params={"theta": 0.5})
    >>> def final_mean(sde):
    ...     return sde.simulate(jax.random.key(0), jnp.linspace(0.0, 1.0, 5),
    ...                         x0=0.0, num_paths=100)[:, -1].mean()
    >>> thetas = {"theta": jnp.array([0.5, 1.0, 2.0])}
    >>> jax.vmap(lambda p: final_mean(ou.replace(params=p)))(thetas).shape
    (3,)
    """

    methods: tuple[str, ...] = ("euler", "local_linear")

    def __init__(
        self,
        drift,
        diffusion,
        *,
        params=None,
        noise: str = "diagonal",
        additive: bool = False,
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
        self.params = params
        self.noise = noise
        self.additive = bool(additive)

    def replace(self, **changes) -> SDE:
        """A copy with some constructor arguments changed (e.g. ``params=``)."""
        kwargs = {
            "params": self.params,
            "noise": self.noise,
            "additive": self.additive,
            **changes,
        }
        return SDE(
            kwargs.pop("drift", self.drift),
            kwargs.pop("diffusion", self.diffusion),
            **kwargs,
        )

    # -- pytree ---------------------------------------------------------------------
    def tree_flatten(self):
        return (self.params,), (self.drift, self.diffusion, self.noise, self.additive)

    @classmethod
    def tree_unflatten(cls, aux, children):
        drift, diffusion, noise, additive = aux
        obj = cls.__new__(cls)
        SDE.__init__(
            obj, drift, diffusion, params=children[0], noise=noise, additive=additive
        )
        return obj

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_node(cls, cls.tree_flatten, cls.tree_unflatten)

    # -- parameters -----------------------------------------------------------------
    def param_constraints(self) -> dict:
        """``{name: (constraint, value)}`` of array parameters checked under
        validate_args."""
        return {}

    def closures(self):
        """``drift(t, x)`` and ``diffusion(t, x)`` with ``params`` bound."""
        if self.params is None:
            return self.drift, self.diffusion
        drift, diffusion, params = self.drift, self.diffusion, self.params
        return (
            lambda t, x: drift(t, x, params),
            lambda t, x: diffusion(t, x, params),
        )

    # -- canonical vector fields on (*batch, d) states --------------------------------
    def fields(self, scalar_state: bool):
        """Drift and :class:`~sdeppl.solvers.Diffusion` acting on ``(*batch, d)``
        states.

        For a scalar state the user closures are called on ``x[..., 0]`` and their
        output gets a trailing unit axis; outputs are broadcast to the state's shape.
        """
        (drift, diffusion), noise = self.closures(), self.noise
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

    def noise_dim(self, state_shape: tuple) -> int:
        """Number $m$ of Brownian motions for a state of shape ``()`` or ``(d,)``."""
        if self.noise == "diagonal":
            return state_shape[0] if state_shape else 1
        probe = jax.ShapeDtypeStruct(state_shape, jnp.result_type(float))
        return jax.eval_shape(lambda x: self.closures()[1](0.0, x), probe).shape[-1]

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

    @property
    def schemes(self) -> tuple[str, ...]:
        """Every transition this SDE offers: its likelihood :attr:`methods` and the
        simulation schemes of :data:`~sdeppl.solvers.TRANSITIONS`."""
        return tuple(dict.fromkeys(self.methods + tuple(TRANSITIONS)))

    def transition(
        self, method: str, state_shape: tuple, owner: str = "transition"
    ) -> Transition:
        """The layer-1 :class:`~sdeppl.solvers.Transition` of ``method`` on internal
        ``(*batch, d)`` states, for a state of shape ``()`` or ``(d,)``."""
        fields = self.fields(state_shape == ())
        d = state_shape[0] if state_shape else 1
        return build_transition(
            method,
            fields.drift,
            fields.diffusion,
            d,
            self.noise_dim(state_shape),
            owner,
        )

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
        scheme: ``"euler"`` (any noise), ``"milstein"`` (diagonal noise), ``"sra1"``
            (additive noise; strong order 1.5, weak order 2), or any likelihood method
            of the SDE (``"local_linear"``; ``"exact"`` for linear SDEs, which samples
            the exact law at any step size): see :attr:`schemes`.
        substeps: extra equal steps between consecutive output times.
        num_paths: number of independent paths (``None`` for one).

        Returns
        -------
        ``(num_paths, T, *state)`` or ``(T, *state)`` when ``num_paths`` is None.
        """
        owner = f"{type(self).__name__}.simulate"
        ts = jnp.asarray(check_times(ts, owner))
        x0 = jnp.asarray(x0, dtype=ts.dtype)
        if x0.ndim > 1:
            raise ValueError(
                f"{owner}: x0 must have shape () or (d,); got {x0.shape}. Use "
                "num_paths for several paths."
            )
        if (
            isinstance(substeps, bool)
            or not isinstance(substeps, int | np.integer)
            or substeps < 0
        ):
            raise ValueError(
                f"{owner}: substeps must be an int >= 0; got {substeps!r}."
            )
        if scheme not in self.schemes:
            raise ValueError(
                f"{owner}: unknown scheme {scheme!r}; expected one of {self.schemes}."
            )
        transition = self.transition(scheme, tuple(x0.shape), owner)
        scalar = x0.ndim == 0
        state = x0[None] if scalar else x0
        if num_paths is not None:
            state = jnp.broadcast_to(state, (num_paths,) + state.shape)
        xs = _simulate_solver(transition, ts, state, key, substeps)
        xs = jnp.moveaxis(xs, 0, -2)  # (*paths, T, d)
        return xs[..., 0] if scalar else xs


jax.tree_util.register_pytree_node(SDE, SDE.tree_flatten, SDE.tree_unflatten)


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

    def transition(self, method, state_shape, owner="transition"):
        if method != "exact":
            return super().transition(method, state_shape, owner)
        self.fields(state_shape == ())  # the state must be a vector
        return affine_transition(self.A, self.b if self.has_offset else None, self.L)


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

    def transition(self, method, state_shape, owner="transition"):
        if method != "exact":
            return super().transition(method, state_shape, owner)
        params = (self.theta, self.mu, self.sigma)
        if not state_shape:  # parameters have the batch shape; the state a unit axis
            params = tuple(p[..., None] if p.ndim else p for p in params)
        return ou_transition(*params, state_shape[0] if state_shape else 1)


class CIR(SDE):
    r"""Cox–Ingersoll–Ross process $dX_t = \kappa(\theta - X_t)\,dt +
    \sigma\sqrt{X_t}\,dW_t$, with its exact transition.

    Positive when started positive; the exact transition is a scaled non-central
    $\chi^2$ (:mod:`sdeppl.solvers.cir`), so ``method="exact"`` gives the likelihood of
    a discretely observed path with no discretisation bias at any step size. Scalar,
    or elementwise for a vector state (independent coordinates). Simulation and
    posterior predictive draws with ``"exact"`` are exact too; a *latent* CIR path
    needs ``"euler"`` or ``"local_linear"`` (the exact draws are not a smooth map of
    normals, which non-centred latent paths need).

    Parameters
    ----------
    kappa: mean-reversion rate $\kappa > 0$ (array, broadcasts).
    theta: long-run mean $\theta > 0$.
    sigma: volatility $\sigma > 0$.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, sdeppl as sp
    >>> rates = sp.Path(sp.CIR(0.5, 4.0, 0.6), jnp.arange(0.0, 5.0, 0.25), x0=3.0,
    ...                 method="exact")
    >>> r = rates.sample(jax.random.key(0))
    >>> r.shape, bool(jnp.all(r > 0))
    ((20,), True)

    References
    ----------
    Cox, J. C., Ingersoll, J. E. and Ross, S. A. (1985). A theory of the term structure
    of interest rates. *Econometrica* 53(2), 385–407.
    """

    methods = ("euler", "local_linear", "exact")

    def __init__(self, kappa, theta, sigma):
        self.kappa = jnp.asarray(kappa)
        self.theta = jnp.asarray(theta)
        self.sigma = jnp.asarray(sigma)
        super().__init__(self._drift, self._diffusion, noise="diagonal")

    def _drift(self, t, x):
        return self.kappa * (self.theta - x)

    def _diffusion(self, t, x):
        return self.sigma * jnp.sqrt(jnp.abs(x))

    def tree_flatten(self):
        return (self.kappa, self.theta, self.sigma), ()

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)

    def param_constraints(self):
        return {
            "kappa": (constraints.positive, self.kappa),
            "theta": (constraints.positive, self.theta),
            "sigma": (constraints.positive, self.sigma),
        }

    def transition(self, method, state_shape, owner="transition"):
        if method != "exact":
            return super().transition(method, state_shape, owner)
        params = (self.kappa, self.theta, self.sigma)
        if not state_shape:  # parameters have the batch shape; the state a unit axis
            params = tuple(p[..., None] if p.ndim else p for p in params)
        return cir_transition(*params)
