r"""Feynman–Kac correctors (FKC): weighted SDE samplers for composed diffusion targets.

A score-based diffusion noises data $x_0 \sim q_0$ with a *forward* SDE
$dx_t = f(t, x_t)\,dt + g(t)\,dW_t$ on $t \in [0, 1]$ (:class:`ForwardSDE`), whose
marginals $q_t$ have scores $s_t = \nabla \log q_t$, and generates by running the
reverse-time SDE in *generation time* $\tau = 1 - t$ (:func:`reverse_diffusion`).
Below, $f$, $g$ and $s$ without a time argument are evaluated at $t = 1 - \tau$.

Feynman–Kac correctors (Skreta et al., 2025) sample a *different* path of unnormalised
targets $\tilde p_\tau$ built from the same scores -- an annealed $q^\beta$, a product
of experts $q^1 q^2$, or the geometric mixture $q_u^{1-\beta} q_c^\beta$ behind
classifier-free guidance -- by simulating

$$dX_\tau = v_\tau(X_\tau)\,d\tau + \sigma_\tau\,d\bar W_\tau, \qquad
dA_\tau = G_\tau(X_\tau)\,d\tau,$$

with the log-weight rate given by the **general rule** (:func:`fk_general`)

$$G_\tau = \partial_\tau \log \tilde p_\tau + \nabla\cdot v_\tau
+ \langle \nabla \log \tilde p_\tau, v_\tau \rangle
- \tfrac{\sigma_\tau^2}{2}\big(\Delta \log \tilde p_\tau
+ \lVert \nabla \log \tilde p_\tau \rVert^2\big).$$

It makes the weighted law $\mu_\tau(dx) = E[e^{A_\tau}; X_\tau \in dx] =
E[e^{A_\tau} \mathbf{1}_{dx}(X_\tau)]$ solve the same Fokker–Planck equation as
$\tilde p_\tau / Z_0$, so for $X_0 \sim p_0 = \tilde p_0 / Z_0$

$$\frac{E[\varphi(X_\tau) e^{A_\tau}]}{E[e^{A_\tau}]} = E_{p_\tau}[\varphi],
\qquad E[e^{A_\tau}] = Z_\tau / Z_0 .$$

Any drift $v$ and noise $\sigma$ work; only the weights change. The builders choose
them so that $G$ needs no $\partial_\tau \log q$ (it is eliminated with the
Fokker–Planck equation of $q_t$, :func:`log_marginal_dtau`):

- annealed $\tilde p = q^\beta$ (:func:`fk_annealed`): $v = -f + \beta g^2 s$,
  $\sigma = g$, $G = (\beta-1)\nabla\cdot f + \tfrac12 g^2\beta(\beta-1)
  \lVert s\rVert^2$; or (``scheme="scaled_noise"``) $v = -f + \tfrac{\beta+1}{2}
  g^2 s$, $\sigma = g/\sqrt\beta$, the same $G$;
- product of experts $\tilde p = q^1 q^2$ (:func:`fk_product`):
  $v = -f + g^2(s^1 + s^2)$, $\sigma = g$,
  $G = \nabla\cdot f + g^2 \langle s^1, s^2\rangle$;
- geometric / classifier-free guidance $\tilde p = q_u^{1-\beta} q_c^\beta$
  (:func:`fk_geometric`): $v = -f + g^2((1-\beta)s_u + \beta s_c)$, $\sigma = g$,
  $G = \tfrac12 g^2 \beta(\beta-1)\lVert s_c - s_u\rVert^2$.

:func:`fk_sde` simulates $N$ particles by Euler–Maruyama on a grid
$\tau_0 < \dots < \tau_K$, accumulates $A$ (Euler or trapezoidal rule), resamples
when the effective sample size drops below a threshold (or every step, or every $k$
steps), resetting $A = 0$, and estimates $\log Z_{\tau_K} / Z_{\tau_0}$ by the standard
SMC rule: $\log \hat Z \mathrel{+}= \log \frac1N \sum_i e^{A^i}$ at every resampling
and at the end. The noising schedule of Song et al. (2021) is :func:`vp_sde`, its
marginals :func:`vp_marginal` and :func:`vp_marginal_var`.

Shapes: one particle is ``(d,)``; user functions (scores, drifts, rates) act on one
particle and are ``vmap``-ped over the ``(N, d)`` particle array; ``taus: (K + 1,)``.

References
----------
Skreta, Akhound-Sadegh, Ohanesian, Bondesan, Aspuru-Guzik, Doucet, Brekelmans, Tong
and Neklyudov (2025), *Feynman–Kac Correctors in Diffusion: Annealing, Guidance, and
Product of Experts*, arXiv:2503.02819.
Song, Sohl-Dickstein, Kingma, Kumar, Ermon and Poole (2021), *Score-Based Generative
Modeling through Stochastic Differential Equations*, ICLR.
Hutchinson (1989), *A stochastic estimator of the trace of the influence matrix*.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .resampling import ess, get_resampler, normalise

# -- data types -----------------------------------------------------------------------


class ForwardSDE(NamedTuple):
    r"""A forward noising SDE $dx_t = f(t, x_t)\,dt + g(t)\,dW_t$, $t \in [0, 1]$.

    Attributes
    ----------
    drift: ``f(t, x) -> (d,)`` for one state ``x: (d,)``.
    diffusion: ``g(t) -> ()``, a scalar noise scale (isotropic noise).
    drift_divergence: ``(t, x) -> ()``, $\nabla \cdot f$; None computes it by
        autodiff (the exact trace of the Jacobian).
    """

    drift: Callable
    diffusion: Callable
    drift_divergence: Callable | None = None


class WeightedSDE(NamedTuple):
    r"""A weighted SDE $dX = v(\tau, X)\,d\tau + \sigma(\tau)\,d\bar W$,
    $dA = G(\tau, X)\,d\tau$, in generation time $\tau$.

    Attributes
    ----------
    drift: ``v(tau, x) -> (d,)`` for one particle ``x: (d,)``.
    diffusion: ``sigma(tau) -> ()``, a scalar noise scale.
    log_weight_rate: ``G(key, tau, x) -> ()``; the key feeds stochastic estimators
        (Hutchinson divergences) and is ignored by closed-form rates.
    """

    drift: Callable
    diffusion: Callable
    log_weight_rate: Callable


class FKSDEResult(NamedTuple):
    r"""What :func:`fk_sde` returns (``K`` steps, ``N`` particles).

    Attributes
    ----------
    particles: ``(N, d)`` particles at $\tau_K$.
    log_weights: ``(N,)`` normalised log weights of ``particles`` (uniform if the
        last step resampled).
    log_evidence: ``()``, $\log \hat Z_{\tau_K} - \log Z_{\tau_0}$.
    log_evidence_path: ``(K,)``, the running estimate of
        $\log Z_{\tau_{k+1}} - \log Z_{\tau_0}$ after step $k$.
    ess: ``(K,)`` effective sample size after the weight update of step $k$ (before
        any resampling).
    resampled: ``(K,)`` bool, whether step $k$ ended with a resampling.
    """

    particles: jax.Array
    log_weights: jax.Array
    log_evidence: jax.Array
    log_evidence_path: jax.Array
    ess: jax.Array
    resampled: jax.Array


# -- input checks (outside jit, concrete values only) ----------------------------------


def _is_concrete(*values) -> bool:
    return not any(isinstance(v, jax.core.Tracer) for v in values)


def _check_positive(owner: str, name: str, value) -> None:
    if _is_concrete(value) and not np.all(np.asarray(value) > 0):
        raise ValueError(
            f"{owner}: {name} must be positive; got {value!r}. Pass a value > 0."
        )


def _check_forward(owner: str, forward) -> None:
    if not isinstance(forward, ForwardSDE):
        raise TypeError(
            f"{owner}: forward must be a ForwardSDE (e.g. vp_sde()); got "
            f"{type(forward).__name__}. Wrap a drift f(t, x) and noise scale g(t) "
            "as ForwardSDE(f, g)."
        )


def _check_callable(owner: str, **fns) -> None:
    for name, fn in fns.items():
        if not callable(fn):
            raise TypeError(
                f"{owner}: {name} must be a function; got {type(fn).__name__}."
            )


# -- divergence and the general rule -------------------------------------------------


def divergence(fn: Callable, x, key=None, *, num_probes: int = 1):
    r"""$\nabla \cdot F(x) = \operatorname{tr} \partial F / \partial x$ of
    ``fn: (d,) -> (d,)`` at ``x: (d,)``.

    ``key=None`` gives the exact trace of the forward-mode Jacobian ($d$ Jacobian-vector
    products: the choice in low dimension); a key gives Hutchinson's unbiased estimate
    $\frac1P \sum_{p=1}^{P} \varepsilon_p^\top (\partial F / \partial x)\,\varepsilon_p$
    with ``num_probes`` $= P$ Rademacher probes (one JVP each).
    """
    if key is None:
        return jnp.trace(jax.jacfwd(fn)(x))
    probes = jax.random.rademacher(key, (num_probes,) + x.shape, dtype=x.dtype)

    def quadratic_form(probe):
        return jnp.vdot(probe, jax.jvp(fn, (x,), (probe,))[1])

    return jnp.mean(jax.vmap(quadratic_form)(probes))


def _divergence_fn(hutchinson: bool, num_probes: int):
    """``div(fn, x, key)``: exact, or Hutchinson with the given key."""

    def div(fn, x, key):
        return divergence(fn, x, key if hutchinson else None, num_probes=num_probes)

    return div


def general_rate(dlog_dtau, score, score_divergence, drift, drift_divergence, sigma):
    r"""The general rule at one point:
    $G = \partial_\tau \log\tilde p + \nabla\cdot v + \langle \nabla\log\tilde p, v
    \rangle - \frac{\sigma^2}{2}(\Delta \log\tilde p + \lVert\nabla\log\tilde p
    \rVert^2)$, from the values of its pieces (``score = ∇ log p̃``,
    ``score_divergence = Δ log p̃``, ``drift = v``, ``drift_divergence = ∇·v``)."""
    return (
        dlog_dtau
        + drift_divergence
        + jnp.vdot(score, drift)
        - 0.5 * sigma**2 * (score_divergence + jnp.vdot(score, score))
    )


def fk_general(
    drift: Callable,
    diffusion: Callable,
    *,
    log_target: Callable | None = None,
    score: Callable | None = None,
    log_target_dtau: Callable | None = None,
    hutchinson: bool = False,
    num_probes: int = 1,
) -> WeightedSDE:
    r"""A :class:`WeightedSDE` for any target path $\tilde p_\tau$ by the general rule.

    $G_\tau = \partial_\tau \log \tilde p_\tau + \nabla\cdot v_\tau
    + \langle \nabla \log \tilde p_\tau, v_\tau \rangle
    - \tfrac{\sigma_\tau^2}{2}(\Delta \log \tilde p_\tau
    + \lVert \nabla \log \tilde p_\tau \rVert^2)$, with both divergences
    ($\nabla\cdot v$ and $\Delta \log \tilde p = \nabla \cdot \nabla \log \tilde p$) by
    autodiff.

    Parameters
    ----------
    drift: $v(\tau, x) \to (d,)$, any drift.
    diffusion: $\sigma(\tau) \to ()$, any scalar noise scale.
    log_target: $\log \tilde p_\tau(x) \to ()$; its gradients in $x$ and $\tau$ give
        the score and $\partial_\tau \log \tilde p$. Or pass instead both
    score: $\nabla \log \tilde p_\tau(x) \to (d,)$ and
    log_target_dtau: $\partial_\tau \log \tilde p_\tau(x) \to ()$ (for targets built
        from scores, :func:`log_marginal_dtau` gives it by Fokker–Planck).
    hutchinson: estimate the divergences by Hutchinson's estimator (for high
        dimension) with the rate's key, instead of the exact Jacobian trace. The
        estimate $\hat G$ of the rate is unbiased, but the weights it feeds are not:
        $E[e^{h \hat G}] \ge e^{h G}$ (Jensen), a factor of about $1 +
        \tfrac{h^2}{2} \operatorname{Var} \hat G$ per step of size $h$, so the
        evidence estimate $\hat Z$ is biased upwards, and weighted averages
        are biased too (more probes and finer steps reduce this; the ``clip`` of
        :func:`fk_sde` adds its own bias).
    num_probes: Rademacher probes per Hutchinson estimate.

    Raises
    ------
    ValueError: if neither or both of ``log_target`` and (``score``,
        ``log_target_dtau``) are given.

    Notes
    -----
    ``log_target`` is differentiated in $\tau$ on the whole grid, endpoints included:
    build it from pieces that are smooth there. For VP marginals take the variance
    from :func:`vp_marginal_var`, not $\sigma_t^2$ from :func:`vp_marginal`
    ($\sigma_t$ has an infinite derivative at $t = 0$, so autodiff gives NaN at
    $\tau = 1$, and the trapezoid rule then gives every particle weight zero).
    """
    owner = "fk_general"
    _check_callable(owner, drift=drift, diffusion=diffusion)
    pieces = score is not None or log_target_dtau is not None
    if (log_target is None) == (not pieces) or (
        pieces and (score is None or log_target_dtau is None)
    ):
        raise ValueError(
            f"{owner}: pass either log_target, or both score and log_target_dtau; got "
            f"log_target={log_target is not None}, score={score is not None}, "
            f"log_target_dtau={log_target_dtau is not None}."
        )
    if log_target is not None:
        _check_callable(owner, log_target=log_target)
        score = jax.grad(log_target, argnums=1)
        log_target_dtau = jax.grad(log_target, argnums=0)
    else:
        _check_callable(owner, score=score, log_target_dtau=log_target_dtau)
    _check_positive(owner, "num_probes", num_probes)
    div = _divergence_fn(hutchinson, num_probes)

    def rate(key, tau, x):
        key_v, key_s = jax.random.split(key)
        return general_rate(
            log_target_dtau(tau, x),
            score(tau, x),
            div(lambda y: score(tau, y), x, key_s),
            drift(tau, x),
            div(lambda y: drift(tau, y), x, key_v),
            diffusion(tau),
        )

    return WeightedSDE(drift, diffusion, rate)


# -- forward SDEs: the VP schedule ----------------------------------------------------


def _drift_divergence(forward: ForwardSDE, t, x):
    if forward.drift_divergence is not None:
        return forward.drift_divergence(t, x)
    return divergence(lambda y: forward.drift(t, y), x)


def vp_beta(t, beta_min: float = 0.1, beta_max: float = 20.0):
    r"""The VP noise rate $\beta(t) = \beta_0 + t(\beta_1 - \beta_0)$."""
    return beta_min + t * (beta_max - beta_min)


def vp_marginal(t, beta_min: float = 0.1, beta_max: float = 20.0):
    r"""$(\alpha_t, \sigma_t)$ of the VP SDE: $x_t = \alpha_t x_0 + \sigma_t
    \varepsilon$, $\log \alpha_t = -\tfrac12 \beta_0 t - \tfrac14 t^2 (\beta_1 -
    \beta_0)$, $\sigma_t^2 = 1 - \alpha_t^2$.

    $\sigma_t \approx \sqrt{\beta_0 t}$ near $t = 0$: its $t$-derivative is infinite
    there, so autodiff in $t$ of anything built from it (even of $\sigma_t^2$) is NaN
    at $t = 0$. To differentiate in time use :func:`vp_marginal_var`."""
    alpha, var = vp_marginal_var(t, beta_min, beta_max)
    return alpha, jnp.sqrt(var)


def vp_marginal_var(t, beta_min: float = 0.1, beta_max: float = 20.0):
    r"""$(\alpha_t, \sigma_t^2)$ of the VP SDE (:func:`vp_marginal`), the variance
    $\sigma_t^2 = 1 - \alpha_t^2 = -\operatorname{expm1}(2 \log \alpha_t)$ computed
    without a square root: smooth in $t$, $t = 0$ included (where $\partial_t
    \sigma_t^2 = \beta_0$). Use it in anything differentiated in time, e.g. a
    closed-form $\log q_t$ for :func:`fk_general`."""
    log_alpha = -0.5 * beta_min * t - 0.25 * t**2 * (beta_max - beta_min)
    return jnp.exp(log_alpha), -jnp.expm1(2.0 * log_alpha)


def vp_sde(beta_min: float = 0.1, beta_max: float = 20.0) -> ForwardSDE:
    r"""The variance-preserving SDE $dx = -\tfrac12 \beta(t) x\,dt +
    \sqrt{\beta(t)}\,dW$, $\beta(t) = \beta_0 + t(\beta_1 - \beta_0)$ (Song et al.,
    2021), with ``beta_min`` $= \beta_0$, ``beta_max`` $= \beta_1$; $q_1 \approx
    N(0, I)$ for the defaults. Marginals: :func:`vp_marginal`.

    Raises
    ------
    ValueError: if ``beta_min`` or ``beta_max`` is not positive.
    """
    _check_positive("vp_sde", "beta_min", beta_min)
    _check_positive("vp_sde", "beta_max", beta_max)

    def drift(t, x):
        return -0.5 * vp_beta(t, beta_min, beta_max) * x

    def diffusion(t):
        return jnp.sqrt(vp_beta(t, beta_min, beta_max))

    def drift_divergence(t, x):
        return -0.5 * vp_beta(t, beta_min, beta_max) * x.shape[-1]

    return ForwardSDE(drift, diffusion, drift_divergence)


def vp_gaussian_score(mean, var, beta_min: float = 0.1, beta_max: float = 20.0):
    r"""The exact score $s_t(x) = -(x - \alpha_t m) / (\alpha_t^2 v + \sigma_t^2)$ of
    the VP marginals of Gaussian data $N(m, \operatorname{diag} v)$, as
    ``s(t, x) -> (d,)`` (``mean``, ``var``: ``(d,)`` or scalars); smooth in $t$ on
    $[0, 1]$ (it takes $\sigma_t^2$ from :func:`vp_marginal_var`)."""
    mean, var = jnp.asarray(mean), jnp.asarray(var)

    def score(t, x):
        alpha, noise_var = vp_marginal_var(t, beta_min, beta_max)
        return -(x - alpha * mean) / (alpha**2 * var + noise_var)

    return score


def log_marginal_dtau(forward: ForwardSDE, score: Callable) -> Callable:
    r"""$\partial_\tau \log q_{1-\tau}(x)$ from scores alone, by the Fokker–Planck
    equation $\partial_t q = -\nabla\cdot(f q) + \tfrac{g^2}{2} \Delta q$:

    $$\partial_\tau \log q_{1-\tau} = \nabla\cdot f + \langle f, s \rangle
    - \tfrac{g^2}{2}\big(\nabla\cdot s + \lVert s \rVert^2\big)$$

    at $t = 1 - \tau$, as ``(tau, x) -> ()``; $\nabla \cdot s$ is the exact Jacobian
    trace. With :func:`fk_general` this composes scores into new targets.
    """

    def dlog_dtau(tau, x):
        t = 1.0 - tau
        f, s = forward.drift(t, x), score(t, x)
        div_s = divergence(lambda y: score(t, y), x)
        return (
            _drift_divergence(forward, t, x)
            + jnp.vdot(f, s)
            - 0.5 * forward.diffusion(t) ** 2 * (div_s + jnp.vdot(s, s))
        )

    return dlog_dtau


# -- the table rows --------------------------------------------------------------------

_ANNEALED_SCHEMES = ("scaled_score", "scaled_noise")


def fk_annealed(
    forward: ForwardSDE, score: Callable, beta, *, scheme: str = "scaled_score"
) -> WeightedSDE:
    r"""FKC for the annealed path $\tilde p_\tau = q_{1-\tau}^\beta$.

    ``scheme="scaled_score"``: $v = -f + \beta g^2 s$, $\sigma = g$;
    ``scheme="scaled_noise"``: $v = -f + \tfrac{\beta+1}{2} g^2 s$,
    $\sigma = g / \sqrt\beta$; both with
    $G = (\beta-1)\nabla\cdot f + \tfrac12 g^2 \beta(\beta-1) \lVert s \rVert^2$.
    Start from $p_0 \propto q_1^\beta$ ($N(0, I/\beta)$ for the VP SDE); at $\tau = 1$
    the weighted particles target $q_0^\beta$ (for Gaussian data $N(m, S)$: $N(m,
    S/\beta)$) and the evidence estimates $\int q_0^\beta / \int q_1^\beta$.

    Parameters
    ----------
    forward: the :class:`ForwardSDE` ($f$, $g$).
    score: $s(t, x) \to (d,)$, the score of $q_t$ in forward time.
    beta: the inverse temperature $\beta > 0$.
    scheme: ``"scaled_score"`` or ``"scaled_noise"``.

    Raises
    ------
    ValueError: for ``beta <= 0`` or an unknown ``scheme``.
    """
    owner = "fk_annealed"
    _check_forward(owner, forward)
    _check_callable(owner, score=score)
    _check_positive(owner, "beta", beta)
    if scheme not in _ANNEALED_SCHEMES:
        raise ValueError(
            f"{owner}: unknown scheme {scheme!r}; expected one of {_ANNEALED_SCHEMES}."
        )
    score_scale = beta if scheme == "scaled_score" else 0.5 * (beta + 1.0)
    noise_scale = 1.0 if scheme == "scaled_score" else 1.0 / jnp.sqrt(beta)

    def drift(tau, x):
        t = 1.0 - tau
        g = forward.diffusion(t)
        return -forward.drift(t, x) + score_scale * g**2 * score(t, x)

    def diffusion(tau):
        return noise_scale * forward.diffusion(1.0 - tau)

    def rate(key, tau, x):
        t = 1.0 - tau
        s, g = score(t, x), forward.diffusion(t)
        div_f = _drift_divergence(forward, t, x)
        return (beta - 1.0) * (div_f + 0.5 * g**2 * beta * jnp.vdot(s, s))

    return WeightedSDE(drift, diffusion, rate)


def fk_product(forward: ForwardSDE, score1: Callable, score2: Callable) -> WeightedSDE:
    r"""FKC for the product of experts $\tilde p_\tau = q^1_{1-\tau} q^2_{1-\tau}$
    (two diffusions with the same forward SDE).

    $v = -f + g^2 (s^1 + s^2)$, $\sigma = g$,
    $G = \nabla\cdot f + g^2 \langle s^1, s^2 \rangle$. Start from $p_0 \propto q^1_1
    q^2_1$ ($N(0, I/2)$ for the VP SDE); the evidence estimates $\int q^1_0 q^2_0 /
    \int q^1_1 q^2_1$.
    """
    _check_forward("fk_product", forward)
    _check_callable("fk_product", score1=score1, score2=score2)

    def drift(tau, x):
        t = 1.0 - tau
        g = forward.diffusion(t)
        return -forward.drift(t, x) + g**2 * (score1(t, x) + score2(t, x))

    def diffusion(tau):
        return forward.diffusion(1.0 - tau)

    def rate(key, tau, x):
        t = 1.0 - tau
        g = forward.diffusion(t)
        return _drift_divergence(forward, t, x) + g**2 * jnp.vdot(
            score1(t, x), score2(t, x)
        )

    return WeightedSDE(drift, diffusion, rate)


def fk_geometric(
    forward: ForwardSDE, score_uncond: Callable, score_cond: Callable, beta
) -> WeightedSDE:
    r"""FKC for the geometric (classifier-free guidance) path $\tilde p_\tau =
    q_{u,1-\tau}^{1-\beta} q_{c,1-\tau}^{\beta}$.

    $v = -f + g^2((1-\beta) s_u + \beta s_c)$ (the usual CFG drift with guidance
    weight ``beta``), $\sigma = g$, $G = \tfrac12 g^2 \beta(\beta - 1) \lVert s_c -
    s_u \rVert^2$. Start from $p_0 \propto q_{u,1}^{1-\beta} q_{c,1}^\beta$
    ($\approx N(0, I)$ for the VP SDE). For $\beta > 1$ the target must be
    normalisable (for Gaussians: $(1-\beta) S_u^{-1} + \beta S_c^{-1} \succ 0$).

    Parameters
    ----------
    forward: the :class:`ForwardSDE`.
    score_uncond, score_cond: $s_u(t, x)$ and $s_c(t, x)$.
    beta: the guidance weight (any real; 1 is plain conditional sampling).
    """
    _check_forward("fk_geometric", forward)
    _check_callable("fk_geometric", score_uncond=score_uncond, score_cond=score_cond)

    def mixed(t, x):
        return (1.0 - beta) * score_uncond(t, x) + beta * score_cond(t, x)

    def drift(tau, x):
        t = 1.0 - tau
        return -forward.drift(t, x) + forward.diffusion(t) ** 2 * mixed(t, x)

    def diffusion(tau):
        return forward.diffusion(1.0 - tau)

    def rate(key, tau, x):
        t = 1.0 - tau
        g, gap = forward.diffusion(t), score_cond(t, x) - score_uncond(t, x)
        return 0.5 * g**2 * beta * (beta - 1.0) * jnp.vdot(gap, gap)

    return WeightedSDE(drift, diffusion, rate)


# -- the weighted sampler --------------------------------------------------------------

_RESAMPLE_MODES = ("ess", "always", "never")
_WEIGHT_RULES = ("euler", "trapezoid")


class _Options(NamedTuple):
    """Static options of :func:`fk_sde` (hashable: part of the jit cache key).
    ``trigger`` is ``"ess"``, ``"every"`` (every k steps; "always" is k = 1) or
    ``"never"``; the numbers (threshold, k, clip value) are traced, in
    :class:`_Tunables`."""

    trigger: str
    resampling: str
    clip: bool
    weight_rule: str


class _Tunables(NamedTuple):
    """Traced options of :func:`fk_sde`: changing them does not recompile."""

    ess_threshold: jax.Array
    every: jax.Array
    clip: jax.Array


def _options(resample, ess_threshold, resampling, clip, weight_rule):
    """Checked static and traced options of :func:`fk_sde`."""
    owner = "fk_sde"
    is_int = isinstance(resample, int | np.integer) and not isinstance(resample, bool)
    if not (
        (isinstance(resample, str) and resample in _RESAMPLE_MODES)
        or (is_int and resample >= 1)
    ):
        raise ValueError(
            f"{owner}: resample must be one of {_RESAMPLE_MODES} or a positive int k "
            f"(every k steps); got {resample!r}."
        )
    if _is_concrete(ess_threshold) and not 0.0 <= ess_threshold <= 1.0:
        raise ValueError(
            f"{owner}: ess_threshold must lie in [0, 1] (a fraction of the particle "
            f"count); got {ess_threshold!r}."
        )
    get_resampler(resampling, owner)
    if clip is not None and _is_concrete(clip) and not clip > 0:
        raise ValueError(
            f"{owner}: clip must be None (no clipping) or positive; got {clip!r}."
        )
    if weight_rule not in _WEIGHT_RULES:
        raise ValueError(
            f"{owner}: unknown weight_rule {weight_rule!r}; expected one of "
            f"{_WEIGHT_RULES}."
        )
    trigger = "every" if is_int or resample == "always" else resample
    every = resample if is_int else 1
    options = _Options(trigger, resampling, clip is not None, weight_rule)
    tunables = _Tunables(
        jnp.asarray(ess_threshold),
        jnp.asarray(every, jnp.int32),
        jnp.asarray(jnp.inf if clip is None else clip),
    )
    return options, tunables


def _check_inputs(sde, x0, taus, owner: str = "fk_sde") -> None:
    if not isinstance(sde, WeightedSDE):
        raise TypeError(
            f"{owner}: sde must be a WeightedSDE (from fk_annealed, fk_product, "
            f"fk_geometric or fk_general); got {type(sde).__name__}."
        )
    if jnp.ndim(x0) != 2 or jnp.shape(x0)[0] < 1:
        raise ValueError(
            f"{owner}: x0 must have shape (num_particles, d); got shape "
            f"{jnp.shape(x0)}. For a scalar state pass x0[:, None]."
        )
    if jnp.ndim(taus) != 1 or jnp.shape(taus)[0] < 2:
        raise ValueError(
            f"{owner}: taus must be a time grid of shape (K + 1,) with K >= 1; got "
            f"shape {jnp.shape(taus)}."
        )
    if _is_concrete(taus) and not np.all(np.diff(np.asarray(taus)) > 0):
        raise ValueError(
            f"{owner}: taus must be strictly increasing (generation time tau = 1 - t);"
            " got a grid that is not. Pass e.g. jnp.linspace(0.0, 1.0, K + 1)."
        )
    _check_shapes(owner, sde, x0, taus)


def _float_dtype(x0, taus):
    """The dtype the sampler runs in: the common floating dtype of ``x0`` and
    ``taus`` (float32 particles on a float64 grid run in float64)."""
    arrays = (np.asarray(v) if isinstance(v, list | tuple) else v for v in (x0, taus))
    return jnp.result_type(*arrays, 1.0)


def _as_float(x0, taus):
    dtype = _float_dtype(x0, taus)
    return jnp.asarray(x0, dtype), jnp.asarray(taus, dtype)


def _check_shapes(owner, sde, x0, taus) -> None:
    """The drift must return the state's shape, sigma and G scalars."""
    dtype = _float_dtype(x0, taus)
    x = jax.ShapeDtypeStruct(jnp.shape(x0)[1:], dtype)
    tau = jax.ShapeDtypeStruct((), dtype)
    key = jax.eval_shape(lambda: jax.random.key(0))
    calls = {
        "drift": (sde.drift, (tau, x), x.shape),
        "diffusion": (sde.diffusion, (tau,), ()),
        "log_weight_rate": (sde.log_weight_rate, (key, tau, x), ()),
    }
    for name, (fn, args, expected) in calls.items():
        try:
            shape = jax.eval_shape(fn, *args).shape
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"{owner}: sde.{name} fails on one particle of shape {x.shape} (does "
                f"x0 have the state dimension the scores expect?): {err}"
            ) from err
        if shape != expected:
            raise ValueError(
                f"{owner}: sde.{name} must return shape {expected} for one "
                f"particle of shape {x.shape}; got {shape}."
            )


def _centre_and_clip(increments, log_w, clip: float):
    """Increments minus their mean over the finite increments of live particles
    (finite ``log_w``), clipped to ``[-clip, clip]``; and that mean (added to the
    evidence, so that centring alone changes nothing). A non-finite increment (an
    impossible particle, ``-inf``) is neither counted in the mean nor clipped."""
    finite = jnp.isfinite(increments)
    counted = finite & jnp.isfinite(log_w)
    count = jnp.maximum(jnp.sum(counted), 1)
    shift = jnp.sum(jnp.where(counted, increments, 0.0)) / count
    clipped = jnp.clip(increments - shift, -clip, clip)
    return jnp.where(finite, clipped, increments), shift


def _finite_states(x):
    """``(N,)``: whether each particle of ``x: (N, d)`` is finite."""
    return jnp.all(jnp.isfinite(x), axis=-1)


def _impossible_if_not_finite(values, ok=True):
    """``values`` where ``ok`` and ``values`` is finite or ``-inf``; ``-inf`` (weight
    zero) elsewhere: NaN and ``+inf`` mean an impossible or blown-up particle, never
    an infinitely likely one."""
    keep = ok & (jnp.isfinite(values) | (values == -jnp.inf))
    return jnp.where(keep, values, -jnp.inf)


def _resample_now(options: _Options, tunables: _Tunables, step, ess_value, num: int):
    if options.trigger == "ess":
        return ess_value < tunables.ess_threshold * num
    return (step + 1) % tunables.every == 0


def _fk_sde(
    key, sde: WeightedSDE, x0, taus, tunables: _Tunables, options: _Options
) -> FKSDEResult:
    num_particles, dtype = x0.shape[0], x0.dtype
    resample = get_resampler(options.resampling, "fk_sde")
    drifts = jax.vmap(sde.drift, in_axes=(None, 0))
    rates = jax.vmap(sde.log_weight_rate, in_axes=(0, None, 0))
    log_n = jnp.log(num_particles)

    def rate(key_rate, tau, x):
        keys = jax.random.split(key_rate, num_particles)
        values = rates(keys, tau, x).astype(dtype)
        # an impossible or blown-up particle gets weight zero, never NaN
        return _impossible_if_not_finite(values, _finite_states(x))

    def step(carry, inputs):
        x, log_w, log_z = carry
        index, tau0, tau1, key_step = inputs
        key_move, key_rate0, key_rate1, key_resample = jax.random.split(key_step, 4)
        h = tau1 - tau0
        rate0 = rate(key_rate0, tau0, x)
        noise = jax.random.normal(key_move, x.shape, dtype)
        move = drifts(tau0, x) * h + sde.diffusion(tau0) * jnp.sqrt(h) * noise
        x = (x + move).astype(dtype)
        if options.weight_rule == "trapezoid":
            increment = 0.5 * h * (rate0 + rate(key_rate1, tau1, x))
        else:
            increment = h * rate0
        # a particle that left the finite states during the move is dead too (the
        # Euler rule only looks at the state before it)
        increment = _impossible_if_not_finite(increment, _finite_states(x))
        if options.clip:
            increment, shift = _centre_and_clip(increment, log_w, tunables.clip)
            log_z = log_z + shift
        log_w = log_w + increment
        log_z_now = log_z + normalise(log_w)[1] - log_n
        ess_now = ess(log_w)
        if options.trigger == "never":
            return (x, log_w, log_z), (log_z_now, ess_now, jnp.asarray(False))
        flag = _resample_now(options, tunables, index, ess_now, num_particles)

        def resampled(_):
            ancestors = resample(key_resample, log_w, num_particles)
            return x[ancestors], jnp.zeros_like(log_w), log_z_now

        def kept(_):
            return x, log_w, log_z

        carry = jax.lax.cond(flag, resampled, kept, None)
        return carry, (log_z_now, ess_now, flag)

    num_steps = taus.shape[0] - 1
    inputs = (
        jnp.arange(num_steps),
        taus[:-1],
        taus[1:],
        jax.random.split(key, num_steps),
    )
    log_w0 = jnp.zeros(num_particles, dtype)
    log_z0 = jnp.zeros((), dtype)
    (x, log_w, _), (log_z_path, esses, flags) = jax.lax.scan(
        step, (x0, log_w0, log_z0), inputs
    )
    return FKSDEResult(
        particles=x,
        log_weights=normalise(log_w)[0],
        log_evidence=log_z_path[-1],
        log_evidence_path=log_z_path,
        ess=esses,
        resampled=flags,
    )


_fk_sde_jit = jax.jit(_fk_sde, static_argnames=("sde", "options"))


def fk_sde(
    key,
    sde: WeightedSDE,
    x0,
    taus,
    *,
    resample: str | int = "ess",
    ess_threshold: float = 0.5,
    resampling: str = "systematic",
    clip: float | None = None,
    weight_rule: str = "euler",
) -> FKSDEResult:
    r"""Simulate a weighted SDE with resampling: the Feynman–Kac corrector sampler.

    $N$ particles follow $dX = v(\tau, X)\,d\tau + \sigma(\tau)\,d\bar W$ by
    Euler–Maruyama on the grid ``taus`` $= (\tau_0, \dots, \tau_K)$,
    $X_{k+1} = X_k + v(\tau_k, X_k) h_k + \sigma(\tau_k) \sqrt{h_k}\,\xi_k$, and carry
    log weights $A$ with $dA = G(\tau, X)\,d\tau$:

    - ``weight_rule="euler"``: $A \mathrel{+}= h_k G(\tau_k, X_k)$;
    - ``weight_rule="trapezoid"``: $A \mathrel{+}= \tfrac{h_k}{2}(G(\tau_k, X_k) +
      G(\tau_{k+1}, X_{k+1}))$ (two evaluations of $G$ per step).

    After each step, if resampling is due, the log-evidence grows by
    $\log \frac1N \sum_i e^{A^i}$, ancestors are drawn from the normalised weights and
    $A$ is reset to 0. With $X_0 \sim p_0 = \tilde p_{\tau_0} / Z_{\tau_0}$ the
    weighted particles at $\tau_K$ target $p_{\tau_K}$ and ``log_evidence`` estimates
    $\log Z_{\tau_K} / Z_{\tau_0}$ (the estimate of $Z$ is unbiased up to the time
    discretisation, for exact rates and without ``clip``; Hutchinson rates and
    clipping add bias).

    A particle is impossible, with weight zero ($A = -\infty$) from then on, when its
    state is not finite (before or after a move, under both weight rules) or its
    rate $G$ is $-\infty$, NaN or $+\infty$ (a NaN or $+\infty$ rate signals a
    blow-up, never an infinitely likely particle). Clipping never revives one. If
    all particles are impossible, the log-evidence is $-\infty$ (never NaN).

    ``x0`` and ``taus`` are cast to their common floating dtype (float32 particles on
    a float64 grid run in float64), and the drift's and rate's values to that dtype.

    Parameters
    ----------
    key: PRNG key (same key, same result).
    sde: the :class:`WeightedSDE` ($v$, $\sigma$, $G$), from :func:`fk_annealed`,
        :func:`fk_product`, :func:`fk_geometric` or :func:`fk_general`.
    x0: ``(N, d)`` initial particles, draws from $p_0$.
    taus: ``(K + 1,)`` strictly increasing generation times (e.g.
        ``jnp.linspace(0, 1, K + 1)``; $\tau = 1 - t$ of the forward SDE).
    resample: when to resample: ``"ess"`` (when $\mathrm{ESS} <$ ``ess_threshold``
        $\cdot N$, the default), ``"always"`` (every step), ``"never"``, or an int
        $k \ge 1$ (after every $k$-th step).
    ess_threshold: the ESS fraction for ``resample="ess"``, in $[0, 1]$ (traced:
        changing it does not recompile; 0 never resamples).
    resampling: the scheme of :mod:`~sdeppl.solvers.resampling`: ``"systematic"``,
        ``"stratified"``, ``"multinomial"`` or ``"residual"``.
    clip: None (default), or $c > 0$: each step's increments $\Delta A$ are centred
        (minus their mean over the live particles' finite increments, which goes
        into the evidence) and clipped to $[-c, c]$; a $-\infty$ increment stays
        $-\infty$. A *biased* stabiliser used for guided image models; off unless
        asked for. Whether to clip is static, the value $c$ is traced.
    weight_rule: ``"euler"`` or ``"trapezoid"``.

    Returns
    -------
    :class:`FKSDEResult` (particles, log_weights, log_evidence, log_evidence_path,
    ess, resampled).

    Raises
    ------
    TypeError: if ``sde`` is not a :class:`WeightedSDE`.
    ValueError: for ``x0`` not of shape ``(N, d)``, ``taus`` not a strictly
        increasing ``(K + 1,)`` grid, drift/diffusion/rate output shapes that do not
        fit the state, or an unknown or out-of-range option (named in the message).

    Shapes
    ------
    ``x0: (N, d)``, ``taus: (K + 1,)``; ``particles: (N, d)``, ``log_weights: (N,)``,
    ``log_evidence: ()``, ``log_evidence_path, ess, resampled: (K,)``.

    Examples
    --------
    Classifier-free guidance with weight 2 between Gaussian data $N(0, 2)$
    (unconditional) and $N(1, 1)$ (conditional): at $\tau = 1$ (the data, $t = 0$)
    the target $q_u^{-1} q_c^2$ is $N(4/3, 2/3)$ with $\log Z_1 = 0.477$; at $\tau = 0$
    both noised laws are about $N(0, 1)$, so $Z_0 \approx 1$ and ``log_evidence``
    $\approx 0.477$:

    >>> import jax, jax.numpy as jnp
    >>> from sdeppl.solvers.fkc import (
    ...     fk_geometric, fk_sde, vp_gaussian_score, vp_sde)
    >>> s_u, s_c = vp_gaussian_score(0.0, 2.0), vp_gaussian_score(1.0, 1.0)
    >>> sde = fk_geometric(vp_sde(), s_u, s_c, 2.0)
    >>> x0 = jax.random.normal(jax.random.key(0), (1000, 1))
    >>> out = fk_sde(jax.random.key(1), sde, x0, jnp.linspace(0.0, 1.0, 101))
    >>> w = jnp.exp(out.log_weights)[:, None]
    >>> mean = jnp.sum(w * out.particles)
    >>> var = jnp.sum(w * (out.particles - mean) ** 2)
    >>> bool(abs(mean - 4 / 3) < 0.15), bool(abs(var - 2 / 3) < 0.15)
    (True, True)
    >>> bool(abs(out.log_evidence - 0.477) < 0.1)
    True

    References
    ----------
    Skreta et al. (2025), arXiv:2503.02819; Chopin and Papaspiliopoulos (2020), *An
    Introduction to Sequential Monte Carlo*, ch. 10 (adaptive resampling, evidence).
    """
    options, tunables = _options(resample, ess_threshold, resampling, clip, weight_rule)
    _check_inputs(sde, x0, taus)
    x0, taus = _as_float(x0, taus)
    return _fk_sde_jit(key, sde, x0, taus, tunables, options)


# -- plain reverse-time sampling -------------------------------------------------------


def reverse_diffusion(
    key,
    forward: ForwardSDE,
    score: Callable,
    x0,
    taus,
    *,
    num_corrector_steps: int = 0,
    snr: float = 0.16,
):
    r"""Sample a score-based diffusion by its reverse-time SDE, optionally with
    Langevin correctors (the predictor–corrector sampler of Song et al., 2021).

    Predictor (Euler–Maruyama on the reverse SDE, $t = 1 - \tau$):
    $X \leftarrow X + (-f + g^2 s)(t_k, X)\,h_k + g(t_k)\sqrt{h_k}\,\xi$.
    Corrector (``num_corrector_steps`` Langevin steps targeting $q_{t_{k+1}}$):
    $X \leftarrow X + \epsilon\, s(t_{k+1}, X) + \sqrt{2\epsilon}\, z$ with
    $\epsilon = 2 (r \overline{\lVert z \rVert} / \overline{\lVert s \rVert})^2$,
    ``snr`` $= r$, the norms averaged over the particles.

    Parameters
    ----------
    key: PRNG key.
    forward: the :class:`ForwardSDE`.
    score: $s(t, x) \to (d,)$ in forward time.
    x0: ``(N, d)`` draws from $q_1$ ($\approx N(0, I)$ for the VP SDE).
    taus: ``(K + 1,)`` strictly increasing generation times (``x0`` and ``taus`` are
        cast to their common floating dtype, as in :func:`fk_sde`).
    num_corrector_steps: Langevin steps after each predictor step (0: plain
        reverse SDE).
    snr: the signal-to-noise ratio $r$ fixing the Langevin step size (traced).

    Returns
    -------
    ``(N, d)`` samples at $\tau_K$ (from $q_0$ when ``taus[-1] == 1``).
    """
    owner = "reverse_diffusion"
    _check_forward(owner, forward)
    _check_callable(owner, score=score)
    sde = fk_annealed(forward, score, 1.0)
    _check_inputs(sde, x0, taus, owner)
    if not (isinstance(num_corrector_steps, int) and num_corrector_steps >= 0):
        raise ValueError(
            f"{owner}: num_corrector_steps must be an int >= 0; got "
            f"{num_corrector_steps!r}."
        )
    _check_positive(owner, "snr", snr)
    x0, taus = _as_float(x0, taus)
    return _reverse_jit(
        key, forward, score, x0, taus, num_corrector_steps, jnp.asarray(snr, x0.dtype)
    )


def _langevin(key, score_t, x, snr):
    """One Langevin step with the SNR step-size rule."""
    s = score_t(x)
    z = jax.random.normal(key, x.shape, x.dtype)
    s_norm = jnp.mean(jnp.linalg.norm(s, axis=-1))
    z_norm = jnp.mean(jnp.linalg.norm(z, axis=-1))
    eps = 2.0 * (snr * z_norm / jnp.maximum(s_norm, jnp.finfo(x.dtype).tiny)) ** 2
    return (x + eps * s + jnp.sqrt(2.0 * eps) * z).astype(x.dtype)


def _reverse(key, forward, score, x0, taus, num_corrector_steps, snr):
    scores = jax.vmap(score, in_axes=(None, 0))
    drifts = jax.vmap(forward.drift, in_axes=(None, 0))

    def step(x, inputs):
        tau0, tau1, key_step = inputs
        key_move, key_correct = jax.random.split(key_step)
        t0, h = 1.0 - tau0, tau1 - tau0
        g = forward.diffusion(t0)
        noise = jax.random.normal(key_move, x.shape, x.dtype)
        move = (g**2 * scores(t0, x) - drifts(t0, x)) * h + g * jnp.sqrt(h) * noise
        x = (x + move).astype(x.dtype)

        def correct(x, key_c):
            return _langevin(key_c, lambda y: scores(1.0 - tau1, y), x, snr), None

        if num_corrector_steps:
            keys = jax.random.split(key_correct, num_corrector_steps)
            x, _ = jax.lax.scan(correct, x, keys)
        return x, None

    num_steps = taus.shape[0] - 1
    inputs = (taus[:-1], taus[1:], jax.random.split(key, num_steps))
    return jax.lax.scan(step, x0, inputs)[0]


_reverse_jit = jax.jit(
    _reverse, static_argnames=("forward", "score", "num_corrector_steps")
)
