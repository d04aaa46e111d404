r"""Observation models $y_k \mid x_{t_k}$ of a latent state: each has a density and a
sampler.

- :class:`Observation` wraps any function from a state to a NumPyro distribution
  (``lambda x: dist.Poisson(jnp.exp(x))``): counts, heavy tails, mixtures.
- :class:`GaussianObservation`: $y_k = h(x_{t_k}) + \varepsilon_k$,
  $\varepsilon_k \sim N(0, R)$ -- what the extended and unscented filters need.
- :class:`LinearGaussian`: $h(x) = H x$ -- what the Kalman filter needs.

Every model has ``log_prob(x, y, scalar_obs=False)`` and ``sample(key, x)`` on one time
point, with the state in the user's layout (``(*batch,)`` for a scalar state,
``(*batch, d)``) and the observation ``(*batch, k)``, or ``(*batch,)`` for one value per
time point (then pass ``scalar_obs=True``: the layout cannot be told from the shapes
alone). ``log_prob`` returns one term per time point, ``(*batch,)``. NaN in ``y`` marks
a missing value and contributes nothing: Gaussian models marginalise any subset of
coordinates; a general distribution drops NaN coordinates elementwise when it
factorises over them (its ``event_shape`` is ``()``), and otherwise needs each time
point observed whole or not at all (checked by :class:`~sdeppl.StateSpace` on
concrete data). What a model offers is declared as data: ``gaussian`` (``mean`` and
``noise_cov`` exist) and ``linear`` (``H`` exists).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.linalg import solve_triangular

from ._checks import is_concrete

_LOG_2PI = math.log(2.0 * math.pi)


class Observation:
    r"""Observations drawn from any distribution of the state: $y_k \sim F(x_{t_k})$.

    Parameters
    ----------
    fn
        ``fn(x) -> numpyro Distribution`` for a state ``x`` of shape ``(*batch,)``
        (scalar state) or ``(*batch, d)``; its draws have shape ``(*batch,)`` (one
        value per time) or ``(*batch, k)``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpyro.distributions as dist, sdeppl as sp
    >>> counts = sp.Observation(lambda x: dist.Poisson(jnp.exp(x)))
    >>> x = jnp.array([0.0, 1.0])  # a scalar state at two time points
    >>> y = counts.sample(jax.random.key(0), x)  # one count per time point
    >>> y.shape, counts.log_prob(x, y, scalar_obs=True).shape
    ((2,), (2,))
    """

    gaussian = False
    linear = False

    def __init__(self, fn):
        if not callable(fn):
            raise TypeError(
                "Observation: fn must be a callable x -> numpyro Distribution; got "
                f"{type(fn).__name__}."
            )
        self.fn = fn

    def tree_flatten(self):
        return (), (self.fn,)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*aux)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_node(cls, cls.tree_flatten, cls.tree_unflatten)

    def distribution(self, x) -> dist.Distribution:
        """The law of the observation at state ``x``."""
        return self.fn(x)

    def log_prob(self, x, y, scalar_obs: bool = False):
        """``log p(y | x)`` summed over the observation's coordinates; NaN is missing.

        ``scalar_obs`` says ``y`` is one value per time point (shape ``(*batch,)``);
        otherwise its last axis holds the ``k`` coordinates.
        """
        d = self.distribution(x)
        missing = jnp.isnan(y)
        filled = jnp.where(missing, d.support.feasible_like(y), y)
        lp = d.log_prob(filled)
        if d.event_shape or scalar_obs:  # one term per time point
            any_missing = missing if scalar_obs else jnp.any(missing, axis=-1)
            return jnp.where(any_missing, 0.0, lp)
        return jnp.sum(jnp.where(missing, 0.0, lp), axis=-1)

    def sample(self, key, x):
        """One observation per state."""
        return self.distribution(x).sample(key)

    def factorised(self, x_probe) -> bool:
        """True when the distribution scores each coordinate separately (abstractly
        evaluated on a probe state)."""
        return not jax.eval_shape(lambda x: self.distribution(x).event_shape, x_probe)

    def output_shape(self, x_probe) -> tuple:
        """Shape of one observation for a state of the probe's shape (no FLOPs)."""
        out = jax.eval_shape(
            lambda x: self.distribution(x).sample(jax.random.key(0)), x_probe
        )
        return tuple(out.shape)


class GaussianObservation(Observation):
    r"""Nonlinear Gaussian observations $y_k = h(x_{t_k}) + \varepsilon_k$,
    $\varepsilon_k \sim N(0, R)$.

    Parameters
    ----------
    h
        ``h(x)``: state ``(*batch, d)`` (``(*batch,)`` for a scalar state) to
        ``(*batch, k)``, or ``(*batch,)`` for one observed value per time.
    R
        ``(k, k)`` noise covariance or a scalar variance.

    Examples
    --------
    >>> import jax.numpy as jnp, sdeppl as sp
    >>> log_observed = sp.GaussianObservation(h=lambda x: jnp.log1p(x**2), R=0.05)
    """

    gaussian = True

    def __init__(self, h, R):
        if not callable(h):
            raise TypeError(
                f"{type(self).__name__}: h must be a callable h(x); "
                f"got {type(h).__name__}."
            )
        self.h = h
        self.R = jnp.asarray(R)

    def tree_flatten(self):
        return (self.R,), (self.h,)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(aux[0], *children)

    def mean(self, x):
        """$h(x)$."""
        return self.h(x)

    def noise_cov(self, k: int, dtype):
        """$R$ as a ``(*batch, k, k)`` matrix."""
        R = jnp.asarray(self.R, dtype)
        return R * jnp.eye(k, dtype=dtype) if R.ndim < 2 else R

    def distribution(self, x):
        mean = self.mean(x)
        if self.R.ndim < 2:  # independent coordinates
            return dist.Normal(mean, jnp.sqrt(self.R))
        return dist.MultivariateNormal(mean, self.R)

    def log_prob(self, x, y, scalar_obs: bool = False):
        mean = self.mean(x)
        if scalar_obs:
            mean, y = mean[..., None], y[..., None]
        k = mean.shape[-1]
        return gaussian_missing_log_prob(
            y - mean, self.noise_cov(k, mean.dtype), ~jnp.isnan(y)
        )

    def sample(self, key, x):
        mean = self.mean(x)
        eps = jax.random.normal(key, jnp.shape(mean), jnp.result_type(mean))
        if self.R.ndim < 2:
            return mean + jnp.sqrt(self.R) * eps
        return mean + jnp.einsum("...ij,...j->...i", jnp.linalg.cholesky(self.R), eps)

    def output_shape(self, x_probe) -> tuple:
        return tuple(jax.eval_shape(self.mean, x_probe).shape)

    def factorised(self, x_probe) -> bool:
        return True  # any subset of coordinates is marginalised exactly


class LinearGaussian(GaussianObservation):
    r"""Linear-Gaussian observations $y_k = H x_{t_k} + \varepsilon_k$,
    $\varepsilon_k \sim N(0, R)$.

    Parameters
    ----------
    H
        ``(k, d)`` observation matrix, or ``(d,)`` (or a scalar for a scalar state) for
        one observed value per time (then observations have shape ``(T,)``). Leading
        batch dims allowed.
    R
        ``(k, k)`` noise covariance, or a scalar variance (times the identity).

    Examples
    --------
    >>> import jax.numpy as jnp, sdeppl as sp
    >>> first_coordinate = sp.LinearGaussian(H=jnp.array([1.0, 0.0]), R=0.1**2)
    """

    linear = True

    def __init__(self, H, R):
        self.H = jnp.asarray(H)
        self.R = jnp.asarray(R)
        self.h = self._linear_mean

    def tree_flatten(self):
        return (self.H, self.R), ()

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)

    def _linear_mean(self, x):
        H = self.H
        if H.ndim == 0:
            return H * x
        if H.ndim == 1:
            return jnp.einsum("j,...j->...", H, x)
        return jnp.einsum("...ij,...j->...i", H, x)

    def matrix(self, dtype):
        """``H`` as ``(*batch, k, d)``."""
        H = jnp.asarray(self.H, dtype)
        if H.ndim == 0:
            return jnp.reshape(H, (1, 1))
        return H[None, :] if H.ndim == 1 else H


def gaussian_missing_log_prob(resid, cov, observed=None):
    r"""$\log N(r_O; 0, R_{OO})$ over the observed (non-NaN) coordinates $O$ of
    ``resid``.

    Missing coordinates are cut out of the covariance (their rows and columns replaced
    by the identity, their residual by 0) and the constant they would add is removed,
    so any pattern of missing values is scored exactly; all missing gives 0.

    ``observed`` (default: the non-NaN entries of ``resid``) may have fewer batch
    dims than ``resid``: the factorisation is then done once for all of them (many
    particles scored against one observation).

    Shapes
    ------
    resid: ``(*batch, k)``; cov: ``(*batch, k, k)``; observed: ``(*batch, k)``;
    returns ``(*batch,)``.
    """
    observed = ~jnp.isnan(resid) if observed is None else observed
    both = observed[..., :, None] & observed[..., None, :]
    eye = jnp.eye(resid.shape[-1], dtype=cov.dtype)
    cov = jnp.where(both, cov, eye)
    r = jnp.where(observed, resid, 0.0)
    chol = jnp.linalg.cholesky(cov)
    inverse = solve_triangular(chol, jnp.broadcast_to(eye, chol.shape), lower=True)
    z = jnp.einsum("...ij,...j->...i", inverse, r)
    half_logdet = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    num_observed = jnp.sum(observed, axis=-1)
    return -0.5 * jnp.sum(z * z, axis=-1) - half_logdet - 0.5 * num_observed * _LOG_2PI


def check_noise_cov(R, k: int, owner: str = "StateSpace"):
    """Check a concrete ``R`` is a scalar or a symmetric positive definite ``(k, k)``
    matrix."""
    R = jnp.asarray(R)
    if R.ndim >= 2 and R.shape[-2:] != (k, k):
        raise ValueError(
            f"{owner}: the noise covariance R must have shape ({k}, {k}) or be a "
            f"scalar; got {R.shape}."
        )
    if not is_concrete(R):
        return
    Rm = np.asarray(R, dtype=float)
    Rm = Rm * np.eye(k) if Rm.ndim < 2 else Rm
    sym = np.allclose(Rm, np.swapaxes(Rm, -1, -2))
    eigenvalues = np.linalg.eigvalsh(0.5 * (Rm + np.swapaxes(Rm, -1, -2)))
    if not sym or np.any(eigenvalues <= 0):
        raise ValueError(
            f"{owner}: the observation noise covariance R must be symmetric positive "
            f"definite; got eigenvalues {eigenvalues.round(6).tolist()}."
        )


jax.tree_util.register_pytree_node(
    Observation, Observation.tree_flatten, Observation.tree_unflatten
)


def as_observation(obs, owner: str = "StateSpace") -> Observation:
    """``obs`` as an :class:`Observation`: observation models pass through, a callable
    ``x -> Distribution`` is wrapped in :class:`Observation`."""
    if isinstance(obs, Observation):
        return obs
    if callable(obs):
        return Observation(obs)
    raise TypeError(
        f"{owner}: obs must be an observation model (sp.LinearGaussian(H, R), "
        "sp.GaussianObservation(h, R), sp.Observation(fn)) or a function from a state "
        f"to a NumPyro distribution; got {type(obs).__name__}."
    )
