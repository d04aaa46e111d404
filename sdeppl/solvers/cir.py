r"""The exact transition of the Cox–Ingersoll–Ross process.

For $dX_t = \kappa(\theta - X_t)\,dt + \sigma\sqrt{X_t}\,dW_t$ and a step $h$, with

$$c = \frac{2\kappa}{\sigma^2 (1 - e^{-\kappa h})},\quad u = c\,x_0 e^{-\kappa h},\quad
v = c\,x_1,\quad q = \frac{2\kappa\theta}{\sigma^2} - 1,$$

$2 c X_{t+h}$ given $X_t = x_0$ is non-central $\chi^2$ with $2q + 2$ degrees of freedom
and non-centrality $2u$ (Cox, Ingersoll & Ross 1985; Feller 1951), so

$$\log p(x_1 \mid x_0) = \log c - (\sqrt v - \sqrt u)^2 + \tfrac q2 \log\frac vu
+ \log\big(e^{-2\sqrt{uv}} I_q(2\sqrt{uv})\big),$$

written with the exponentially scaled Bessel function
(:func:`~sdeppl.solvers.bessel.log_bessel_ive`), which keeps the large arguments of
frequent data exact; from $x_0 = 0$ it is the Gamma law $v^q e^{-v} c / \Gamma(q + 1)$.
Draws use the Poisson mixture of Gammas, $N \sim \text{Poisson}(u)$,
$X_{t+h} = G / c$ with $G \sim \text{Gamma}(q + 1 + N)$: exact, but not a smooth map of
standard normals, so the transition has no non-centred ``transform``.

References
----------
Cox, J. C., Ingersoll, J. E. and Ross, S. A. (1985). A theory of the term structure of
interest rates. *Econometrica* 53(2), 385–407.
Glasserman, P. (2003). *Monte Carlo Methods in Financial Engineering*, §3.4.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from .bessel import log_bessel_ive
from .transitions import Capabilities, Transition


def _constants(kappa, theta, sigma, h):
    decay = jnp.exp(-kappa * h)
    c = 2.0 * kappa / (sigma**2 * -jnp.expm1(-kappa * h))
    q = 2.0 * kappa * theta / sigma**2 - 1.0
    return c, decay, q


def cir_log_transition(kappa, theta, sigma, h, x0, x1):
    r"""$\log p(x_1 \mid x_0)$ of the CIR process over a step ``h`` (module docstring).

    ``-inf`` for $x_1 \le 0$ (the process is positive) and for non-positive
    parameters; all arguments broadcast.
    """
    c, decay, q = _constants(kappa, theta, sigma, h)
    ok = (x1 > 0) & (x0 >= 0) & (kappa > 0) & (theta > 0) & (sigma > 0)
    safe_x0 = jnp.where(ok & (x0 > 0), x0, 1.0)
    safe_x1 = jnp.where(ok, x1, 1.0)
    c = jnp.where(ok, c, 1.0)
    q = jnp.where(ok, q, 0.0)
    u, v = c * safe_x0 * jnp.where(ok, decay, 1.0), c * safe_x1
    moving = (
        jnp.log(c)
        - (jnp.sqrt(v) - jnp.sqrt(u)) ** 2
        + 0.5 * q * (jnp.log(v) - jnp.log(u))
        + log_bessel_ive(q, 2.0 * jnp.sqrt(u * v))
    )
    from_zero = jnp.log(c) + q * jnp.log(v) - v - gammaln(q + 1.0)
    lp = jnp.where(x0 > 0, moving, from_zero)
    return jnp.where(ok, lp, -jnp.inf)


def cir_sample(key, kappa, theta, sigma, h, x0):
    """One exact CIR step from ``x0`` (Poisson mixture of Gammas); shape of the
    broadcast arguments."""
    c, decay, q = _constants(kappa, theta, sigma, h)
    shape = jnp.broadcast_shapes(jnp.shape(x0), jnp.shape(c), jnp.shape(q))
    key_n, key_g = jax.random.split(key)
    n = jax.random.poisson(key_n, jnp.broadcast_to(c * x0 * decay, shape))
    g = jax.random.gamma(key_g, jnp.broadcast_to(q + 1.0, shape) + n)
    return g / c


def cir_transition(kappa, theta, sigma) -> Transition:
    """The exact CIR :class:`~sdeppl.solvers.Transition`: ``log_prob`` and ``sample``
    (no non-centred ``transform``); parameters broadcast against ``(*batch, d)``
    states (elementwise, independent coordinates)."""

    def log_prob(t0s, t1s, x0s, x1s):
        h = (jnp.asarray(t1s) - jnp.asarray(t0s)).reshape((-1,) + (1,) * (x0s.ndim - 1))
        return jnp.sum(cir_log_transition(kappa, theta, sigma, h, x0s, x1s), axis=-1)

    def sample(key, t0, t1, x0, coef=None):
        return cir_sample(key, kappa, theta, sigma, t1 - t0, x0)

    def no_transform(*args):
        raise ValueError(
            "the exact CIR transition is not a smooth map of standard normals (its "
            "draws mix Poisson and Gamma variables): a latent CIR path needs "
            "method='euler' or 'local_linear'."
        )

    caps = Capabilities(True, True, False, np.inf, np.inf, reparam=False)
    return Transition(
        "exact",
        no_transform,
        sample,
        log_prob,
        None,
        lambda t0s, t1s: None,
        None,
        None,
        0,
        caps,
    )
