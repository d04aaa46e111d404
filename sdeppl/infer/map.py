r"""``method="map"``: the posterior mode and a Laplace approximation (a first look).

On the unconstrained space $z$ (where samplers work; constrained parameters are mapped
by NumPyro's bijections and the log-density includes their Jacobian, as in Stan's
``laplace`` method), with $\ell(z) = \log p(z \mid y)$ up to a constant:

1. **Mode.** L-BFGS (``optax.lbfgs``'s quasi-Newton direction, a backtracking line
   search; :class:`Minimiser`) from ``starts`` random points in $[-2, 2]^{\dim}$;
   the best end point $z^*$ takes one Newton step
   $\hat z = z^* + H^{-1}\nabla\ell(z^*)$ with the Hessian $H = -\nabla^2\ell(z^*)$
   (central differences of the gradient), kept if it does not lower $\ell$: this
   makes the mode of a Gaussian posterior exact to rounding and moves a converged
   non-Gaussian one negligibly.
2. **Laplace approximation.** $q = N(\hat z, H^{-1})$, factored by an
   eigendecomposition $H = V \Lambda V^\top$; draws
   $z = \hat z + V \Lambda^{-1/2} \varepsilon$ are mapped to the constrained space and
   fill the same ``InferenceData`` as MCMC draws (one chain of independent draws).
3. **Diagnostics**, shown with the generic checks: whether the starts reached the same
   mode (several modes, or a start that did not converge, are reported); the
   Hessian's condition number (not positive definite: not a maximum); and the Pareto
   $\hat k$ of the importance weights $\log w = \ell(z) - \log q(z)$ of the draws
   (PSIS, Vehtari et al. 2024): $\hat k \le 0.7$ means the Gaussian is a usable
   proposal for the posterior, above it the posterior is too far from Gaussian for
   the approximation to be trusted -- run MCMC. The log-weights are stored as
   ``sample_stats.log_weight``.

Cost: the Hessian takes $2\dim$ gradient evaluations at the mode, so a model with a
long latent path (thousands of unconstrained values) is better served by MCMC.

References
----------
Vehtari, A., Simpson, D., Gelman, A., Yao, Y. and Gabry, J. (2024). Pareto smoothed
importance sampling. *JMLR* 25(72), 1–58.
Nocedal, J. and Wright, S. J. (2006). *Numerical Optimization*, 2nd ed., ch. 7.
"""

from __future__ import annotations

import math
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from .._xla import fast_compile_jit
from ..diagnostics.checks import grade
from ._backend import STREAMS, BackendResult, float_option, int_option, register_backend
from ._model import as_numpy

_LOG_2PI = math.log(2.0 * math.pi)
_MAX_HALVINGS = 40
_FD_STEP = 1e-5


def relative_gradient(value: float, grad: np.ndarray) -> float:
    r"""The gradient's largest entry relative to the objective, $\max_i |g_i| / (1 +
    |f|)$: the convergence measure of :class:`Minimiser`."""
    return float(np.max(np.abs(grad)) / (1.0 + abs(value)))


class Minimiser:
    """L-BFGS on the host around one compiled program, with a backtracking (Armijo)
    line search.

    The program evaluates the objective and its gradient at a point and, from there,
    ``optax.lbfgs``'s quasi-Newton direction (its update, without a line search): the
    direction the next iteration takes if the point is accepted. Compiling this one
    small program -- not a loop with the line search and the log-density inlined
    several times -- is what keeps a MAP fit's first call short; the iterations
    themselves take milliseconds.
    """

    def __init__(self, negative_logdensity, dim: int, dtype):
        import optax

        optimizer = optax.lbfgs(learning_rate=1.0, linesearch=None)

        def evaluate(z, state, fresh):
            value, grad = jax.value_and_grad(negative_logdensity)(z)
            state = jax.tree_util.tree_map(
                lambda new, old: jnp.where(fresh, new, old), optimizer.init(z), state
            )
            direction, state = optimizer.update(grad, state, z)
            return value, grad, direction, state

        self._program = fast_compile_jit(evaluate)
        shapes = jax.eval_shape(optimizer.init, jax.ShapeDtypeStruct((dim,), dtype))
        self._blank = jax.tree_util.tree_map(
            lambda s: np.zeros(s.shape, s.dtype), shapes
        )
        self.dim, self.dtype = dim, dtype

    def _call(self, z, state=None):
        fresh = state is None
        value, grad, direction, state = self._program(
            np.asarray(z, self.dtype), self._blank if fresh else state, fresh
        )
        return float(value), np.asarray(grad), np.asarray(direction), state

    def evaluate(self, z):
        """``(value, grad)`` at ``z``."""
        return self._call(z)[:2]

    def minimise(self, z, steps: int, tolerance: float):
        r"""``(z, value, grad, iterations)`` after at most ``steps`` iterations.

        Stops when the gradient's largest entry is below ``tolerance`` relative to the
        objective's size, $\max_i |g_i| \le \text{tol}\,(1 + |f|)$ (a log-density
        summed over many terms has a gradient noise floor that grows with it), when an
        iteration lowers the objective by less than rounding,
        $10^{-14}(1 + |f|)$, or when no step of the line search lowers it."""
        value, grad, direction, state = self._call(z)
        for iteration in range(steps):
            if relative_gradient(value, grad) <= tolerance:
                return z, value, grad, iteration
            slope = float(grad @ direction)
            if not slope < 0:  # not a descent direction: fall back to the gradient
                direction, slope = -grad, -float(grad @ grad)
            step = 1.0
            for _ in range(_MAX_HALVINGS):
                trial = z + step * direction
                trial_value, trial_grad, trial_direction, trial_state = self._call(
                    trial, state
                )
                if (
                    np.isfinite(trial_value)
                    and trial_value <= value + 1e-4 * step * slope
                ):
                    break
                step *= 0.5
            else:
                return z, value, grad, iteration  # no progress possible
            stalled = value - trial_value <= 1e-14 * (1.0 + abs(value))
            z, value, grad = trial, trial_value, trial_grad
            direction, state = trial_direction, trial_state
            if stalled:
                return z, value, grad, iteration + 1
        return z, value, grad, steps

    def hessian(self, z):
        r"""Central differences of the compiled gradient, symmetrised: exact to rounding
        for a quadratic objective, $O(h^2)$ otherwise, $2 \dim$ gradient calls and no
        extra compilation."""
        steps = _FD_STEP * np.maximum(1.0, np.abs(z))
        columns = []
        for i in range(self.dim):
            e = np.zeros(self.dim)
            e[i] = steps[i]
            columns.append(
                (self.evaluate(z + e)[1] - self.evaluate(z - e)[1]) / (2 * e[i])
            )
        hess = np.stack(columns, axis=1)
        return 0.5 * (hess + hess.T)


def laplace(minimiser: Minimiser, starts: np.ndarray, rng, options: dict) -> dict:
    """Mode and Laplace draws (see the module docstring) from ``starts (num, dim)``.

    Returns a dict with ``mode (dim,)``, ``mode_value`` (the log density there),
    ``ends (num, dim)``, ``end_values (num,)``, ``grad_norm (num,)`` (relative,
    :func:`relative_gradient`), ``iterations
    (num,)``, ``eigenvalues (dim,)`` of the negative Hessian, ``draws (samples, dim)``
    and ``log_q (samples,)``.
    """
    ends, values, grad_norms, iterations = [], [], [], []
    for z0 in starts:
        z, value, grad, its = minimiser.minimise(
            z0, options["steps"], options["tolerance"]
        )
        ends.append(z)
        values.append(value)
        grad_norms.append(relative_gradient(value, grad))
        iterations.append(its)
    values = np.asarray(values)
    best = ends[int(np.argmin(np.where(np.isfinite(values), values, np.inf)))]
    value, grad = minimiser.evaluate(best)
    hess = minimiser.hessian(best)
    mode = best
    try:  # one Newton step: exact for a Gaussian posterior
        newton = best - np.linalg.solve(hess, grad)
        newton_value, _ = minimiser.evaluate(newton)
        if np.isfinite(newton_value) and newton_value <= value:
            mode, value = newton, newton_value
    except np.linalg.LinAlgError:
        pass
    eigenvalues, vectors = np.linalg.eigh(hess)
    # a non-positive curvature has no Gaussian: its direction gets unit scale and the
    # failed check says so
    safe = np.where(eigenvalues > 0, eigenvalues, 1.0)
    eps = rng.standard_normal((options["samples"], mode.shape[0]))
    draws = mode + (eps / np.sqrt(safe)) @ vectors.T
    log_q = (
        -0.5 * np.sum(eps * eps, axis=-1)
        + 0.5 * np.sum(np.log(safe))
        - 0.5 * mode.shape[0] * _LOG_2PI
    )
    return {
        "mode": mode,
        "mode_value": -value,
        "ends": np.stack(ends),
        "end_values": -values,
        "grad_norm": np.asarray(grad_norms),
        "iterations": np.asarray(iterations),
        "eigenvalues": eigenvalues,
        "covariance": (vectors / safe) @ vectors.T,
        "draws": draws,
        "log_q": log_q,
    }


def _starts(rng, num: int, minimiser: Minimiser, radius: float = 2.0):
    """``num`` uniform points in ``[-radius, radius]^dim`` with a finite density (each
    redrawn up to 100 times), ``(num, dim)``."""
    out = []
    for _ in range(num):
        for _attempt in range(100):
            z = rng.uniform(-radius, radius, minimiser.dim)
            if np.isfinite(minimiser.evaluate(z)[0]):
                break
        out.append(z)
    return np.stack(out)


def host_rng(key, stream: str) -> np.random.Generator:
    """A NumPy generator seeded by a JAX key and a stream name: the host-side loop
    draws its random numbers without compiling a program per JAX random operation
    (same key, same numbers)."""
    words = np.asarray(jax.random.key_data(key)).ravel().tolist()
    return np.random.default_rng(words + [STREAMS.index(stream)])


def _checks(out: dict, tol: float, pareto_k: float) -> tuple:
    """The MAP backend's diagnostics rows (see the module docstring)."""
    ends, mode = out["ends"], out["mode"]
    scale = 1.0 + np.abs(mode)
    converged = out["grad_norm"] <= max(tol, 1e-10) * 1e3
    same = np.all(np.abs(ends - mode) <= 1e-3 * scale, axis=-1) & converged
    best_ok = bool(np.isfinite(out["mode_value"]))
    starts = ends.shape[0]
    if not best_ok:
        status, advice = (
            "fail",
            "no start reached a finite log density: check the model",
        )
    elif same.all():
        status, advice = "pass", "every start reached the same mode"
    elif same.any():
        status, advice = (
            "warn",
            "some starts ended elsewhere (another mode, or not converged): the "
            "posterior may be multimodal; compare with MCMC",
        )
    else:
        status, advice = (
            "warn",
            "no start converged to the polished mode within the step budget: raise "
            "steps",
        )
    optimiser = (
        "optimiser",
        f"{int(same.sum())}/{starts} starts at the mode (log density "
        f"{float(out['mode_value']):.6g})",
        status,
        advice,
    )
    eig = out["eigenvalues"]
    positive = bool(np.all(eig > 0))
    condition = float(eig.max() / eig.min()) if positive else float("inf")
    hessian = (
        "Hessian at the mode",
        f"condition number {condition:.3g}" if positive else "not positive definite",
        "fail"
        if not positive
        else grade(condition, lambda c: c < 1e8, lambda c: c < 1e12),
        "a well-defined maximum"
        if positive and condition < 1e8
        else (
            "not a maximum (a saddle or flat direction): the Laplace draws are not a "
            "posterior approximation; use MCMC"
            if not positive
            else "nearly flat directions: parameters poorly identified; use MCMC"
        ),
    )
    pareto = (
        "Pareto k (Laplace)",
        f"{pareto_k:.2f}",
        grade(pareto_k, lambda k: k <= 0.7, lambda k: k <= 1.0),
        "the Gaussian approximation is close to the posterior"
        if pareto_k <= 0.7
        else "the posterior is far from Gaussian: use MCMC (method='blackjax')",
    )
    return optimiser, hessian, pareto


def pareto_k(log_weights: np.ndarray) -> float:
    """Pareto $\\hat k$ of importance log-weights (ArviZ's PSIS)."""
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, k = az.psislw(np.asarray(log_weights, dtype=float))
    return float(k)


class _MAP:
    name = "map"
    summary = "posterior mode (L-BFGS from several starts) and a Laplace approximation"
    options = {
        "starts": int_option(4, 1, "random starting points of the optimiser"),
        "steps": int_option(500, 1, "maximum L-BFGS iterations per start"),
        "samples": int_option(2000, 1, "draws from the Laplace approximation"),
        "tolerance": float_option(
            1e-9,
            0.0,
            np.inf,
            "stop when the largest gradient entry is below this x (1 + |log density|)",
        ),
    }
    needs_gradients = True
    discrete_latent = False
    jittable = False  # the optimiser's loop runs on the host (see Minimiser)

    def check(self, options):
        pass

    def draws(self, model, key, options):
        raise ValueError(
            "method='map' runs its optimiser on the host and cannot be traced inside "
            "jit; sdeppl.sbc runs it replicate by replicate instead."
        )

    def run(self, model, key, options, progress):
        if progress:
            print(
                f"sdeppl: MAP by L-BFGS from {options['starts']} starts, then "
                f"{options['samples']} Laplace draws...",
                file=sys.stderr,
                flush=True,
            )
        dim, dtype = model.dim_and_dtype()
        minimiser = Minimiser(lambda z: -model.logdensity(z), dim, dtype)
        rng = host_rng(key, "sampler")
        out = laplace(
            minimiser, _starts(rng, options["starts"], minimiser), rng, options
        )

        def finish(draws, mode):
            return (
                jax.vmap(model.logdensity)(draws),
                jax.vmap(model.constrain)(draws),
                model.constrain(mode),
            )

        logdensity, constrained, at_mode = as_numpy(
            fast_compile_jit(finish)(
                jnp.asarray(out["draws"], dtype), jnp.asarray(out["mode"], dtype)
            )
        )
        log_weight = logdensity - out["log_q"]
        k = pareto_k(log_weight)
        mode = {
            n: np.asarray(v).tolist() for n, v in at_mode.items() if np.size(v) <= 16
        }
        return BackendResult(
            draws={n: v[None] for n, v in constrained.items()},
            sample_stats={"lp": logdensity[None], "log_weight": log_weight[None]},
            tuning={"iterations": out["iterations"], "grad_norm": out["grad_norm"]},
            checks=_checks(out, options["tolerance"], k),
            info={
                "mode": mode,
                "mode_log_density": float(out["mode_value"]),
                "hessian_eigenvalues_min_max": [
                    float(out["eigenvalues"].min()),
                    float(out["eigenvalues"].max()),
                ],
                "pareto_k": k,
                **(
                    {"laplace_covariance": out["covariance"].tolist()}
                    if out["mode"].size <= 16
                    else {}
                ),
            },
            independent_draws=True,
        )


register_backend(_MAP())
