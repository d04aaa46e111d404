r"""Transitions: one step $x_{t_0} \to x_{t_1}$ of a Markov process as pure functions.

Every way sdeppl moves a state forward in time -- the likelihood methods of a path
(Euler–Maruyama, Shoji–Ozaki local linearisation, the exact transitions of linear SDEs)
and the simulation schemes (Milstein, SRA1) -- is a :class:`Transition`: a NamedTuple
of pure functions plus declared capabilities. Paths, state-space models, simulation,
particle filters and variational path guides use only this interface, so a new scheme
is one entry of :data:`TRANSITIONS` (or one builder such as :func:`affine_transition`)
and nothing else.

All transitions are *non-centred*: a step is a deterministic map of the state and
standard normals $\xi$ (``transform``), and ``sample`` draws $\xi$ and applies it.
Gaussian transitions also give their ``moments`` $x_1 \sim N(m, S S^\top)$ and a
``log_prob`` vectorised over all transitions of a path.

Rank-deficient noise
--------------------
When a state of dimension $d$ is driven by $m < d$ Brownian motions (a velocity-forced
oscillator, the augmented state of a fractional SDE), the Euler–Maruyama transition is
a degenerate Gaussian supported on the affine subspace $m + \mathrm{range}(S)$. Its
density with respect to the $m$-dimensional (Hausdorff) measure on that subspace is

$$\log p(x_1) = -\tfrac12 |\xi|^2 - \tfrac12 \log\det(S^\top S) - \tfrac m2 \log 2\pi,
\qquad \xi = (S^\top S)^{-1} S^\top (x_1 - m),$$

the route :func:`~sdeppl.solvers.gaussian.gaussian_log_prob` takes for a ``"factor"``
scale with fewer columns than rows (declared as ``caps.rank_deficient``): it factors
the $m \times m$ Gram matrix, never the singular $d \times d$ covariance. The exact and
local-linear transitions integrate the noise over the step, and their covariance is
full rank whenever the noise reaches every coordinate through the drift
(hypoellipticity), so they keep the ordinary density.

Shapes
------
A single step sees ``x0: (*batch, d)`` and innovations ``xi: (*batch, noise_size)``;
``log_prob(t0s, t1s, x0s, x1s)`` takes ``t0s, t1s: (K,)`` and ``x0s, x1s:
(K, *batch, d)`` and returns ``(K, *batch)``. ``coefficients(t0s, t1s)`` gives the
state-independent quantities of ``K`` steps (e.g. matrix exponentials), a pytree with
leading axis ``K`` (or ``None``), which ``moments``/``transform`` take one slice of.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._terms import Diffusion
from .euler import euler_moments
from .gaussian import gaussian_log_prob, gaussian_transform
from .linear import AffineTransition, affine_discretisation, ou_moments
from .local_linear import local_linear_moments
from .milstein import milstein_step
from .sra1 import sra1_increments, sra1_step


class Capabilities(NamedTuple):
    """What a transition can do, declared as data (never probed).

    Attributes
    ----------
    density: ``log_prob`` is available.
    exact: the law of the step is exact for any step size (no discretisation error).
    rank_deficient: fewer noise sources than state dimensions; the density is the one
        on the noise subspace (module docstring).
    strong_order, weak_order: convergence orders of the scheme in simulation.
    reparam: ``transform`` exists (a step is a smooth map of standard normals, so a
        latent path can be non-centred); an exact transition that mixes discrete and
        continuous randomness (CIR) only has ``sample``.
    """

    density: bool
    exact: bool
    rank_deficient: bool
    strong_order: float
    weak_order: float
    reparam: bool = True


class Transition(NamedTuple):
    """One step of a Markov process (see the module docstring for shapes).

    Attributes
    ----------
    name: the method or scheme name.
    transform: ``(t0, t1, x0, xi, coef) -> x1``, the non-centred map.
    sample: ``(key, t0, t1, x0, coef=None) -> x1``.
    log_prob: ``(t0s, t1s, x0s, x1s) -> (K, *batch)``, or None without a density.
    moments: ``(t0, t1, x0, coef) -> (mean, scale)`` of a Gaussian step, else None.
    coefficients: ``(t0s, t1s) -> coef`` with leading axis ``K``, or None.
    affine: ``(t0s, t1s) -> AffineTransition`` (``x1 ~ N(phi x0 + shift, cov)``) for
        linear-Gaussian steps (the Kalman filter's input), else None.
    scale_kind: scale kind of ``moments`` (:mod:`sdeppl.solvers.gaussian`), or None.
    noise_size: standard normals per step and batch element.
    caps: :class:`Capabilities`.
    """

    name: str
    transform: Callable
    sample: Callable
    log_prob: Callable | None
    moments: Callable | None
    coefficients: Callable
    affine: Callable | None
    scale_kind: str | None
    noise_size: int
    caps: Capabilities


def _no_coefficients(t0s, t1s):
    return None


def _sampler(transform, noise_size: int):
    def sample(key, t0, t1, x0, coef=None):
        xi = jax.random.normal(key, x0.shape[:-1] + (noise_size,), x0.dtype)
        return transform(t0, t1, x0, xi, coef)

    return sample


def gaussian_transition(
    name: str,
    moments: Callable,
    scale_kind: str,
    noise_size: int,
    caps: Capabilities,
    coefficients: Callable = _no_coefficients,
    affine: Callable | None = None,
) -> Transition:
    """A :class:`Transition` from Gaussian ``moments(t0, t1, x0, coef)``: the
    non-centred map $m + S\\xi$, sampling, and the density of every step at once."""

    def transform(t0, t1, x0, xi, coef=None):
        mean, scale = moments(t0, t1, x0, coef)
        return gaussian_transform(mean, scale, scale_kind, xi)

    def log_prob(t0s, t1s, x0s, x1s):
        coef = coefficients(t0s, t1s)
        means, scales = jax.vmap(moments)(t0s, t1s, x0s, coef)
        return gaussian_log_prob(x1s, means, scales, scale_kind)

    return Transition(
        name,
        transform,
        _sampler(transform, noise_size),
        log_prob,
        moments,
        coefficients,
        affine,
        scale_kind,
        noise_size,
        caps,
    )


# -- generic schemes: built from drift and diffusion ----------------------------------
def _euler(drift, diffusion: Diffusion, state_dim: int, noise_dim: int):
    kind = "diag" if diffusion.noise == "diagonal" else "factor"
    caps = Capabilities(True, False, noise_dim < state_dim, 0.5, 1.0)
    return gaussian_transition(
        "euler",
        lambda t0, t1, x0, coef: euler_moments(drift, diffusion, t0, t1, x0),
        kind,
        noise_dim,
        caps,
    )


def _local_linear(drift, diffusion: Diffusion, state_dim: int, noise_dim: int):
    caps = Capabilities(True, False, False, 0.5, 1.0)
    return gaussian_transition(
        "local_linear",
        lambda t0, t1, x0, coef: local_linear_moments(drift, diffusion, t0, t1, x0),
        "tril",
        state_dim,
        caps,
    )


def _milstein(drift, diffusion: Diffusion, state_dim: int, noise_dim: int):
    def transform(t0, t1, x0, xi, coef=None):
        return milstein_step(drift, diffusion, t0, t1, x0, jnp.sqrt(t1 - t0) * xi)

    caps = Capabilities(False, False, False, 1.0, 1.0)
    return Transition(
        "milstein",
        transform,
        _sampler(transform, noise_dim),
        None,
        None,
        _no_coefficients,
        None,
        None,
        noise_dim,
        caps,
    )


def _sra1(drift, diffusion: Diffusion, state_dim: int, noise_dim: int):
    def transform(t0, t1, x0, xi, coef=None):
        u = jnp.stack([xi[..., :noise_dim], xi[..., noise_dim:]])
        return sra1_step(drift, diffusion, t0, t1, x0, sra1_increments(u, t1 - t0))

    caps = Capabilities(False, False, noise_dim < state_dim, 1.5, 2.0)
    return Transition(
        "sra1",
        transform,
        _sampler(transform, 2 * noise_dim),
        None,
        None,
        _no_coefficients,
        None,
        None,
        2 * noise_dim,
        caps,
    )


class Scheme(NamedTuple):
    """An entry of :data:`TRANSITIONS`: a builder and what it requires.

    ``build(drift, diffusion, state_dim, noise_dim) -> Transition``; ``noise_types``
    the diffusion layouts it accepts; ``needs_additive`` whether its orders need a
    state-independent diffusion; ``density`` whether it is a likelihood method.
    """

    build: Callable
    noise_types: tuple[str, ...]
    needs_additive: bool
    density: bool


#: The generic transitions, built from any drift and diffusion. The exact transitions
#: need the SDE's coefficients: :func:`affine_transition` (linear SDEs) and
#: :func:`ou_transition`, which the SDE classes offer under the name ``"exact"``.
TRANSITIONS: dict[str, Scheme] = {
    "euler": Scheme(_euler, ("diagonal", "general"), False, True),
    "local_linear": Scheme(_local_linear, ("diagonal", "general"), False, True),
    "milstein": Scheme(_milstein, ("diagonal",), False, False),
    "sra1": Scheme(_sra1, ("diagonal", "general"), True, False),
}


def build_transition(
    name: str,
    drift,
    diffusion: Diffusion,
    state_dim: int,
    noise_dim: int,
    owner: str = "transition",
):
    """Look up ``name`` in :data:`TRANSITIONS`, check it accepts this diffusion, and
    build it."""
    if name not in TRANSITIONS:
        raise ValueError(
            f"{owner}: unknown scheme {name!r}; expected one of {tuple(TRANSITIONS)}."
        )
    scheme = TRANSITIONS[name]
    if diffusion.noise not in scheme.noise_types:
        raise ValueError(
            f"{owner}: scheme {name!r} accepts noise {scheme.noise_types}; this SDE "
            f"has noise={diffusion.noise!r}. Use scheme='euler'."
        )
    if scheme.needs_additive and not diffusion.additive:
        raise ValueError(
            f"{owner}: scheme {name!r} needs additive noise (a diffusion that does not "
            "depend on the state); declare SDE(..., additive=True) if that holds, or "
            "use scheme='euler' or 'milstein'."
        )
    return scheme.build(drift, diffusion, state_dim, noise_dim)


# -- exact transitions ----------------------------------------------------------------
def uniform_step(t0s, t1s):
    """The common step if every ``t1s - t0s`` is equal (concrete grids only), else
    None."""
    leaves = (t0s, t1s)
    if any(isinstance(a, jax.core.Tracer) for a in leaves):
        return None
    dts = np.asarray(t1s) - np.asarray(t0s)
    if dts.size and np.allclose(dts, dts[0], rtol=1e-12, atol=0.0):
        return jnp.asarray(dts[0], dtype=jnp.result_type(t0s))
    return None


def affine_transition(A, b, L) -> Transition:
    r"""The exact transition of $dX_t = (A X_t + b)\,dt + L\,dW_t$.

    $x_1 \sim N(\Phi x_0 + s, Q)$ with $\Phi = e^{A h}$ and $(s, Q)$ from one Van Loan
    exponential per step (:func:`~sdeppl.solvers.affine_discretisation`), computed
    once for all steps when the grid is regular. ``b=None`` means no offset.

    Shapes
    ------
    A: ``(*batch, d, d)``; b: ``(*batch, d)`` or None; L: ``(*batch, d, m)``.
    """
    cov_rate = jnp.einsum("...ik,...jk->...ij", L, L)
    batch_ndim = len(
        jnp.broadcast_shapes(A.shape[:-2], () if b is None else b.shape[:-1])
    )

    def affine(t0s, t1s):
        num = jnp.shape(t0s)[0]
        step = uniform_step(t0s, t1s)
        if step is not None:  # one matrix exponential serves every gap
            one = affine_discretisation(A, b, cov_rate, step)
            return jax.tree_util.tree_map(
                lambda a: jnp.broadcast_to(a, (num,) + a.shape), one
            )
        dts = jnp.asarray(t1s) - jnp.asarray(t0s)
        return affine_discretisation(
            A, b, cov_rate, dts.reshape(dts.shape + (1,) * batch_ndim)
        )

    def moments(t0, t1, x0, coef: AffineTransition):
        mean = jnp.einsum("...ij,...j->...i", coef.phi, x0) + coef.shift
        return mean, jnp.linalg.cholesky(coef.cov)

    d = A.shape[-1]
    caps = Capabilities(True, True, False, np.inf, np.inf)
    return gaussian_transition("exact", moments, "tril", d, caps, affine, affine)


def ou_transition(theta, mu, sigma, state_dim: int) -> Transition:
    r"""The exact Ornstein–Uhlenbeck transition, elementwise: $N\big(\mu + (x_0 -
    \mu)e^{-\theta h},\; \sigma^2(1 - e^{-2\theta h})/(2\theta)\big)$.

    Parameters broadcast against the ``(*batch, d)`` state (scalar-state parameters
    carry a trailing unit axis). ``affine`` gives the same law as diagonal matrices.
    """

    def moments(t0, t1, x0, coef=None):
        return ou_moments(theta, mu, sigma, t1 - t0, x0)

    def affine(t0s, t1s):
        dtype = jnp.result_type(theta, mu, sigma, float)
        eye = jnp.eye(state_dim, dtype=dtype)

        def diag(v):
            v = jnp.broadcast_to(v, jnp.shape(v)[:-1] + (state_dim,))
            return v[..., :, None] * eye

        def one(dt):
            decay = jnp.exp(-theta * dt)
            shift, sd = ou_moments(theta, mu, sigma, dt, jnp.zeros(state_dim, dtype))
            decay = jnp.broadcast_to(
                decay, jnp.broadcast_shapes(jnp.shape(decay), (1,))
            )
            return AffineTransition(diag(decay), shift, diag(sd**2))

        return jax.vmap(one)(jnp.asarray(t1s) - jnp.asarray(t0s))

    caps = Capabilities(True, True, False, np.inf, np.inf)
    return gaussian_transition("exact", moments, "diag", state_dim, caps, affine=affine)
