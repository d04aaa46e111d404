r"""``method="svi"``: stochastic variational inference with optax.

Maximises the evidence lower bound

$$\mathcal L(\phi) = \mathbb E_{q_\phi}\big[\log p(y, z) - \log q_\phi(z)\big]
\le \log p(y)$$

over a variational family $q_\phi$ (:mod:`sdeppl.infer._guides`, which also gives
the gradient estimator: "sticking the landing"; ``"normal"``,
``"mvn"``, ``"lowrank"``, ``"flow"``, or :class:`~sdeppl.PathGuide` for latent SDE
paths) on the flat unconstrained space the samplers use, so $\log p(y, z)$ is the
same log-density (Jacobians of the constraining maps included, latent paths
non-centred) as NUTS sees. Each step averages ``num_particles`` reparameterised
draws (the multi-sample ELBO estimate, unbiased for $\mathcal L$) and applies one
update of ``optimizer`` (default ``optax.adam(learning_rate)``, with
``learning_rate`` 0.05, or 0.01 for the flow, whose networks a larger step
destabilises: measured on the banana of the tests); a step whose estimate
or gradient is not finite is skipped (``optax.apply_if_finite``).

**Stopping.** Steps run in windows of 100 inside one compiled program; after each
window the ELBO's linear trend over the latest steps (a fifth of the run, at least
500 steps, since the last change of learning rate) is tested: a rise smaller than
two standard errors makes the window *flat* (:func:`is_flat`). After ``patience``
flat windows in a row the default optimiser divides its learning rate by 10 (twice:
a constant step leaves the parameters jittering around the optimum at a distance set
by the step), and the next ``patience`` flat windows stop the run; a user's
``optimizer`` (with its own schedule) is stopped at the first plateau.
``patience=0`` runs all ``steps``.

**Draws and their check.** ``samples`` draws $z_s \sim q_\phi$ give the importance
log-weights $\log w_s = \log p(y, z_s) - \log q_\phi(z_s)$; their Pareto $\hat k$
(PSIS; Yao et al. 2018) says whether $q$ can be trusted: $\hat k \le 0.7$ and, with
``resample=True``, the draws are resampled (systematically) with the Pareto-smoothed
weights, which moves them towards the posterior; above 0.7 the draws are $q$'s own,
and the diagnostic fails -- the posterior is beyond the family (use a richer guide or
MCMC). The same draws give the final ELBO estimate with its standard error and the
importance-sampling estimate $\log \frac1S\sum_s w_s$ of $\log p(y)$ (stored as the
fit's log-evidence when $\hat k \le 0.7$).

The ELBO of every step is kept in ``idata.sample_stats["elbo"]`` (dims ``chain``,
``step``) and drawn in the report.

References
----------
Kingma, D. P. and Welling, M. (2014). Auto-encoding variational Bayes. *ICLR*.
Yao, Y., Vehtari, A., Simpson, D. and Gelman, A. (2018). Yes, but did it work?:
Evaluating variational inference. *ICML*, 5581–5590.
"""

from __future__ import annotations

import math
import sys

import jax
import jax.numpy as jnp
import numpy as np

from ..diagnostics.checks import grade
from ._backend import (
    BackendResult,
    Option,
    bool_option,
    float_option,
    int_option,
    optional_int_option,
    register_backend,
    stream_key,
)
from ._guides import (
    FAMILIES,
    PathGuide,
    flow_family,
    gaussian_family,
    in_frame,
    numpyro_family,
    path_family,
    prior_frame,
)
from ._model import as_numpy
from .map import host_rng, pareto_k

WINDOW = 100
MIN_TREND = 500  # steps: the shortest span whose ELBO trend decides a plateau
DECAY = 10.0  # the default optimiser's learning rate falls by this on a plateau
DEFAULT_DECAYS = 2
_MAX_SKIPPED = 50  # consecutive non-finite steps that end the run


def _guide_option() -> Option:
    def check(value):
        if isinstance(value, PathGuide):
            return value.check()
        if isinstance(value, str) and value == "path":  # recipes name it so
            return PathGuide()
        if isinstance(value, str) and value in FAMILIES:
            return value
        if callable(value) and not isinstance(value, str):
            return (
                value  # a NumPyro guide: an autoguide class or instance, or a function
            )
        raise ValueError(
            f"must be one of {FAMILIES}, 'path', an sdeppl.PathGuide(...) or a NumPyro "
            f"guide (an autoguide class, or a guide function); got {value!r}"
        )

    return Option(
        "normal",
        check,
        "variational family: "
        + ", ".join(FAMILIES)
        + ", 'path', PathGuide(...), or a NumPyro guide",
    )


def _optimizer_option() -> Option:
    def check(value):
        if value is None:
            return None
        import optax

        if not isinstance(value, optax.GradientTransformation):
            raise ValueError(
                "must be None (adam with learning_rate) or an optax "
                f"GradientTransformation such as optax.adam(1e-2); got {value!r}"
            )
        return value

    return Option(None, check, "optax optimiser (default: optax.adam(learning_rate))")


def _learning_rate_option() -> Option:
    as_float = float_option(1.0, 0.0, np.inf, "").check

    def check(value):
        return None if value is None else as_float(value)

    return Option(
        None,
        check,
        "step size of the default optimiser, adam (default: 0.01 for the flow guide, "
        "0.05 for the others)",
    )


def build_family(model, options, key):
    """The variational family of ``options["guide"]`` for ``model``."""
    dim, dtype = model.dim_and_dtype()
    centre, spread = jax.jit(prior_frame, static_argnums=0)(model, key)
    guide = options["guide"]
    if isinstance(guide, PathGuide):
        return path_family(guide, model, centre, spread, options["rank"])
    if not isinstance(guide, str):
        return numpyro_family(guide, model)
    if guide == "flow":
        family = flow_family(dim, dtype, options["flow_layers"], options["hidden"])
    else:
        family = gaussian_family(guide, dim, dtype, options["rank"])
    return in_frame(family, centre, spread)


def elbo_draws(model, family, phi, key, num: int):
    """``num`` independent draws at ``phi``: ``(elbo (num,), log_w (num,), z (num,
    dim), log_q (num,), objective (num,))`` -- the ELBO estimates, importance
    log-weights, draws, their log-densities under the guide, and the estimates whose
    gradient the optimiser follows ("sticking the landing"; equal in value to
    ``log_w``). Traced."""

    def one(k):
        draw = family.sample(phi, k)
        lp = model.logdensity(draw.z)
        return (
            lp - draw.log_q + draw.correction,
            lp - draw.log_q,
            draw.z,
            draw.log_q,
            lp - draw.log_q_fixed,
        )

    return jax.vmap(one)(jax.random.split(key, num))


class Optimisation:
    """The SVI loop: windows of :data:`WINDOW` steps in one compiled program, driven
    from the host (progress, early stopping)."""

    def __init__(self, model, family, optimizer, num_particles: int, decays: int = 0):
        import optax

        self.optimizer = optax.apply_if_finite(optimizer, _MAX_SKIPPED)
        self.decays = decays

        def loss(phi, key):
            elbo, *_, objective = elbo_draws(model, family, phi, key, num_particles)
            return -jnp.mean(objective), jnp.mean(elbo)

        def window(phi, opt_state, key):
            def step(carry, k):
                phi, opt_state = carry
                (_, elbo), grad = jax.value_and_grad(loss, has_aux=True)(phi, k)
                updates, opt_state = self.optimizer.update(grad, opt_state, phi)
                return (optax.apply_updates(phi, updates), opt_state), elbo

            (phi, opt_state), elbos = jax.lax.scan(
                step, (phi, opt_state), jax.random.split(key, WINDOW)
            )
            return phi, opt_state, elbos

        self._window = jax.jit(window)

    def run(self, phi, key, steps: int, patience: int, progress: bool, label: str):
        """Returns ``(phi, elbos (steps run,), stopped)`` where ``stopped`` is
        ``"plateau"``, ``"steps"`` or ``"non-finite"``."""
        opt_state = self.optimizer.init(phi)
        windows = math.ceil(steps / WINDOW)
        trace, flat, decays, stopped, since = [], 0, 0, "steps", 0
        bar = None
        for k in jax.random.split(key, windows):
            phi, opt_state, elbos = self._window(phi, opt_state, k)
            elbos = np.asarray(elbos)
            trace.append(elbos)
            if progress:  # the bar starts after the first window (compiled)
                if bar is None:
                    bar = _bar(label, windows * WINDOW, WINDOW)
                else:
                    bar.update(WINDOW)
                finite = elbos[np.isfinite(elbos)]
                bar.set_postfix_str(
                    f"ELBO {finite.mean():.4g}" if finite.size else "ELBO non-finite"
                )
            if not np.isfinite(elbos[-_MAX_SKIPPED:]).any():
                stopped = "non-finite"
                break
            if patience:
                flat = flat + 1 if is_flat(np.concatenate(trace[since:])) else 0
                if flat >= patience and decays < self.decays:
                    opt_state, decays, flat = _decayed(opt_state), decays + 1, 0
                    since = len(trace)
                elif flat >= patience:
                    stopped = "plateau"
                    break
        if bar is not None:
            bar.close()
        return (
            phi,
            np.concatenate(trace)[: steps if stopped == "steps" else None],
            stopped,
        )


def _decayed(opt_state):
    """``opt_state`` of ``apply_if_finite(inject_hyperparams(...))`` with its
    learning rate divided by :data:`DECAY` (same dtype: no recompilation)."""
    inner = opt_state.inner_state
    rates = dict(inner.hyperparams)
    old = rates["learning_rate"]
    rates["learning_rate"] = jnp.asarray(old / DECAY, dtype=jnp.result_type(old))
    return opt_state._replace(inner_state=inner._replace(hyperparams=rates))


def is_flat(elbos: np.ndarray) -> bool:
    r"""True when the ELBO's linear trend over the latest steps rises by less than
    two standard errors: over the last $L$ steps (a fifth of ``elbos``, at least
    :data:`MIN_TREND` and all of them if fewer), the least-squares slope $b$ gives
    the rise $bL$, whose standard error for independent noise of sd $s$ is
    $s\sqrt{12/L}$. Comparing only neighbouring windows would miss a slow rise that
    each window's noise hides; the trend over a span that grows with the run sees
    it. Non-finite steps are ignored; too few steps are never flat."""
    span = max(MIN_TREND, elbos.size // 5)
    if elbos.size < MIN_TREND:
        return False
    recent = elbos[-span:]
    t = np.arange(recent.size, dtype=float)
    ok = np.isfinite(recent)
    if ok.sum() < MIN_TREND // 2:
        return False
    t, y = t[ok], recent[ok]
    slope, intercept = np.polyfit(t, y, 1)
    residual = y - (slope * t + intercept)
    noise = residual.std(ddof=2)
    return bool(slope * span < 2.0 * noise * math.sqrt(12.0 / span))


def _bar(label: str, total: int, initial: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=label, unit="step", leave=True)


def resample_indices(log_weights: np.ndarray, rng) -> np.ndarray:
    """Systematic resampling with Pareto-smoothed importance weights (ArviZ's PSIS),
    ``(S,)`` indices."""
    import warnings

    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        smoothed, _ = az.psislw(np.asarray(log_weights, dtype=float))
    w = np.exp(smoothed - smoothed.max())
    cdf = np.cumsum(w / w.sum())
    num = len(log_weights)
    positions = (rng.uniform() + np.arange(num)) / num
    return np.minimum(np.searchsorted(cdf, positions), num - 1)


def _checks(stopped: str, steps_run: int, k: float, elbo, elbo_se) -> tuple:
    """The SVI backend's diagnostics rows (see the module docstring)."""
    optimiser = {
        "plateau": ("pass", "the ELBO stopped rising (within its Monte Carlo noise)"),
        "steps": (
            "warn",
            "the ELBO was still rising when the steps ran out: raise steps",
        ),
        "non-finite": (
            "fail",
            "the ELBO was not finite for the last steps: the guide drew values where "
            "the model's density is not finite; check the model or lower the "
            "learning rate",
        ),
    }[stopped]
    value = (
        f"{steps_run} steps, ELBO {elbo:.6g} ± {elbo_se:.2g}"
        if np.isfinite(elbo)
        else f"{steps_run} steps, ELBO not finite"
    )
    finite_k = np.isfinite(k)
    pareto = (
        "Pareto k (VI)",
        f"{k:.2f}" if finite_k else "n/a (weights not finite)",
        grade(k, lambda v: v <= 0.7, lambda v: v <= 1.0) if finite_k else "fail",
        "the variational approximation is close to the posterior (draws resampled "
        "with the smoothed importance weights)"
        if finite_k and k <= 0.7
        else "the posterior is far from the variational family: these draws are not "
        "the posterior; use a richer guide ('mvn', 'flow', PathGuide) or MCMC",
    )
    return ("optimiser (ELBO)", value, *optimiser), pareto


class _SVI:
    name = "svi"
    summary = (
        "variational inference: ELBO with optax (Gaussian, flow or path-space guides)"
    )
    options = {
        "guide": _guide_option(),
        "steps": int_option(10_000, 1, "maximum optimisation steps"),
        "learning_rate": _learning_rate_option(),
        "optimizer": _optimizer_option(),
        "num_particles": int_option(4, 1, "draws per ELBO estimate (each step)"),
        "samples": int_option(2000, 2, "draws from the fitted guide"),
        "patience": int_option(
            3, 0, "flat 100-step windows in a row that stop the run (0: never stop)"
        ),
        "rank": optional_int_option(
            None, 1, "columns of the low-rank factor (default: round(sqrt(dim)))"
        ),
        "flow_layers": int_option(4, 1, "coupling layers of the flow guide"),
        "hidden": int_option(32, 1, "hidden units of the flow's coupling networks"),
        "resample": bool_option(
            True, "resample the draws with PSIS weights when Pareto k <= 0.7"
        ),
    }
    needs_gradients = True
    discrete_latent = False
    jittable = False  # the optimisation is driven from the host (early stopping)

    def check(self, options):
        if options["optimizer"] is not None and options["learning_rate"] is not None:
            raise ValueError(
                "learning_rate sets the default optimiser's step; with optimizer= "
                "given, set the step inside it (e.g. optax.adam(1e-3))."
            )

    def draws(self, model, key, options):
        raise ValueError(
            "method='svi' drives its optimisation from the host (early stopping) and "
            "cannot be traced inside jit; sdeppl.sbc runs it replicate by replicate."
        )

    def run(self, model, key, options, progress):
        import optax

        key = stream_key(key, "sampler")
        k_init, k_family, k_opt, k_draws = jax.random.split(key, 4)
        family = build_family(model, options, k_init)
        guide = options["guide"]
        kind = "path" if isinstance(guide, PathGuide) else family.name
        label = f"sdeppl: SVI ({kind} guide)"
        phi = jax.jit(family.init)(k_family)
        if options["optimizer"] is None:
            rate = options["learning_rate"] or (0.01 if guide == "flow" else 0.05)
            optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=rate)
            decays = DEFAULT_DECAYS
        else:
            optimizer, decays = options["optimizer"], 0
        loop = Optimisation(model, family, optimizer, options["num_particles"], decays)
        if progress:
            print(f"{label}: compiling...", file=sys.stderr, flush=True)
        phi, elbos, stopped = loop.run(
            phi, k_opt, options["steps"], options["patience"], progress, label
        )

        def finish(phi, key):
            elbo, log_w, z, log_q, _ = elbo_draws(
                model, family, phi, key, options["samples"]
            )
            return elbo, log_w, z, log_w + log_q

        elbo, log_w, z, lp = as_numpy(jax.jit(finish)(phi, k_draws))
        finite = np.isfinite(log_w)
        k = pareto_k(log_w) if finite.all() else float("nan")
        if np.isfinite(elbo).all():
            mean = float(np.mean(elbo))
            se = float(np.std(elbo, ddof=1) / math.sqrt(elbo.size))
        else:
            mean = se = float("nan")
        info = {
            "elbo": mean,
            "elbo_se": se,
            "pareto_k": k,
            "steps_run": int(len(elbos)),
            "stopped": stopped,
        }
        trusted = bool(np.isfinite(k) and k <= 0.7)
        if trusted:
            info["log_evidence"] = float(
                np.logaddexp.reduce(log_w) - math.log(log_w.size)
            )
            info["log_evidence_se"] = _is_log_evidence_se(log_w)
        info["resampled"] = resampled = bool(options["resample"] and trusted)
        if resampled:
            idx = resample_indices(log_w, host_rng(key, "sampler"))
            z, lp, log_w = z[idx], lp[idx], log_w[idx]
        constrained = as_numpy(jax.jit(jax.vmap(model.constrain))(z))
        return BackendResult(
            draws={n: v[None] for n, v in constrained.items()},
            sample_stats={"lp": lp[None], "log_weight": log_w[None]},
            checks=_checks(stopped, len(elbos), k, mean, se),
            info=info,
            independent_draws=True,
            step_stats={"elbo": elbos[None]},
        )


def _is_log_evidence_se(log_w: np.ndarray) -> float:
    """Delta-method standard error of $\\log \\frac1S \\sum w_s$."""
    w = np.exp(log_w - log_w.max())
    return float(np.std(w, ddof=1) / (math.sqrt(w.size) * w.mean()))


register_backend(_SVI())
