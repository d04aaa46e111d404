r"""Variational families for ``method="svi"`` on the model's flat unconstrained space.

A family $q_\phi(z)$ over the flat position $z \in \mathbb{R}^{\dim}$ that the samplers
use (constrained parameters through NumPyro's bijections, latent paths non-centred;
:class:`~sdeppl.infer.ModelAdapter`) is a :class:`Family`: ``init(key) -> phi`` and
``sample(phi, key) -> Draw`` for one draw, reparameterised (a smooth function of
$\phi$ and of standard noise). The ELBO estimate of one draw is

$$\widehat{\mathcal L} = \log p(y, z) - \log q_\phi(z) + c(z),$$

where $c$ is a zero-mean control variate (0 for all but :class:`PathGuide`), so
$\mathbb E_q \widehat{\mathcal L} = \mathcal L(\phi) \le \log p(y)$ and $\log w =
\log p(y, z) - \log q_\phi(z)$ are the importance log-weights (PSIS). The optimiser
follows the gradient of $\log p(y, z_\phi) - \log q_{\bar\phi}(z_\phi)$, with
$\bar\phi$ held fixed (``stop_gradient``) where $q$'s density is evaluated: the
"sticking the landing" estimator (Roeder, Wu and Duvenaud 2017), unbiased for
$\nabla\mathcal L$ and of zero variance when $q$ is the posterior, which is what lets
a guide with thousands of parameters settle on it. The flow keeps the plain
reparameterisation gradient: with the other, its splines diverged on the banana of
the tests (ELBO -71 after 8000 steps at the default step, against -2.5).

Families (NumPyro's autoguide names in brackets):

- ``"normal"`` (``AutoNormal``): $N(\mu, \operatorname{diag}\sigma^2)$;
- ``"mvn"`` (``AutoMultivariateNormal``): $N(\mu, L L^\top)$ with $L$ lower
  triangular, a positive diagonal;
- ``"lowrank"`` (``AutoLowRankMultivariateNormal``): $N(\mu, D^2 + U U^\top)$ with
  $U$ of ``rank`` columns;
- ``"flow"``: a normalising flow on distrax bijectors, $z = \mu + \sigma \odot
  (f_L \circ \dots \circ f_1)(\varepsilon)$, $\varepsilon \sim N(0, I)$, each $f_i$ a
  coupling layer (alternating halves of the coordinates) whose rational-quadratic
  spline (Durkan et al. 2019; ``bins`` bins on $[-B, B]$, the identity outside) has
  its knots set by a one-hidden-layer network of the other half. The layers start as
  the identity (zero last layer), so the flow starts as the ``"normal"`` family and
  only bends where the ELBO asks it to.

Every family works in the prior's frame (:func:`in_frame`): $z = c + D w$ with $c$
the prior median of each coordinate and $D$ its spread, estimated from prior draws,
and starts at $w \sim N(0, 0.1^2 I)$ -- at the prior median with a tenth of the
prior's spread, as NumPyro's autoguides start (``init_to_median``, ``init_scale=0.1``)
but in units in which one optimiser step means the same for every site.

References
----------
Durkan, C., Bekasov, A., Murray, I. and Papamakarios, G. (2019). Neural spline flows.
*NeurIPS* 32.
Li, X., Wong, T.-K. L., Chen, R. T. Q. and Duvenaud, D. (2020). Scalable gradients
for stochastic differential equations. *AISTATS*, 3870–3882.
Roeder, G., Wu, Y. and Duvenaud, D. (2017). Sticking the landing: simple,
lower-variance gradient estimators for variational inference. *NeurIPS* 30.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.distributions.transforms import biject_to
from numpyro.infer.initialization import init_to_median

FAMILIES = ("normal", "mvn", "lowrank", "flow")
CONTROLS = ("affine", "mlp")
_INIT_SCALE = 0.1
_REFERENCE_DRAWS = 64
_LOG_2PI = math.log(2.0 * math.pi)


class Draw(NamedTuple):
    """One reparameterised draw of a :class:`Family`.

    Attributes
    ----------
    z: ``(dim,)`` the draw.
    log_q: $\log q_\phi(z)$.
    correction: the zero-mean control variate $c$ added to the ELBO estimate.
    log_q_fixed: $\log q_{\bar\phi}(z)$, the same value with the guide's
        parameters held fixed (the "sticking the landing" gradient).
    """

    z: jax.Array
    log_q: jax.Array
    correction: jax.Array
    log_q_fixed: jax.Array


class Family(NamedTuple):
    """A variational family on $\\mathbb{R}^{\\dim}$ (see the module docstring).

    Attributes
    ----------
    name: the guide's name.
    init: ``key -> phi`` (a pytree of arrays).
    sample: ``(phi, key) -> Draw``: one reparameterised draw.
    """

    name: str
    init: Callable
    sample: Callable


class PathGuide(NamedTuple):
    r"""A path-space variational posterior for the latent paths of a model
    (``sdeppl.fit(..., method="svi", guide=sp.PathGuide())``, or ``guide="path"``).

    Each latent, non-centred :class:`~sdeppl.Path` is drawn from the prior SDE steered
    by a control (:meth:`~sdeppl.Path.steer`): on fine step $j$ (length $h_j$,
    transition $x_{j+1} = m_j + S_j\xi_j$) the step's mean moves by $v_j$ and its
    noise is scaled by $s_j$, i.e. the innovation is $\xi_j = \mu_j + s_j\eta_j$,
    $\mu_j = S_j^{+} v_j$, $\eta_j \sim N(0, I)$. With Euler steps this is the SDE with
    drift $f + v_j / h_j$ and the prior's diffusion scaled by $s_j$. The ELBO uses
    Girsanov's form: for each path,

    $$\mathcal L = \mathbb E_q\Big[\log p(y \mid x, \theta) + \log p(\theta) -
    \log q(\theta) - \sum_j \mathrm{KL}\big(N(\mu_j, s_j^2) \,\|\, N(0, 1)\big)\Big],
    \qquad \mathrm{KL} = \tfrac12(|\mu_j|^2 + s_j^2 - 1) - \log s_j,$$

    which for $s_j = 1$ is $\tfrac12\sum_j |u_j|^2 h_j$ with $u = g^{-1} v / h$, the
    discretised $\tfrac12\int |u|^2\,dt$; each step's KL is exact given the past, so
    the estimate is unbiased, with less variance than the log-ratio of the sampled
    innovations. The other latent sites $\theta$ (the prior SDE's parameters, a random
    ``x0``) are learned jointly under the ``rest`` family; the guide is
    $q(\theta)\,q(x \mid \theta)$, where $\theta$ acts on the path only through the
    prior SDE (the shift $v$ is in state units, so the innovations it needs scale
    with the diffusion), not through the control.

    The state enters standardised, $\tilde x_j = (x_j - r_j) / \sigma_j$, and shifts
    are in units of $\delta_j$, where $r, \sigma, \delta$ are the mean, spread and
    step spread of 64 paths from the initial guide (the prior path at parameters near
    their prior median), so one optimiser step means the same for a level near 1000
    as near 0.

    Parameters
    ----------
    control
        ``"affine"`` (default): $v_j = \delta_j(a_j + B_j\tilde x_j)$ and $\log s_j$
        free for every fine step -- a Gaussian Markov chain that holds the exact
        smoothing posterior of a linear-Gaussian model, whatever the step, so it
        reaches the Kalman smoother. ``"mlp"``: $v_j = \delta_j\,
        \mathrm{MLP}(j/K, \tilde x_j)$ (one hidden layer of ``hidden`` tanh units,
        shared over time and over a batch of paths) with $s_j = 1$: the
        continuous-time control of Li et al. (2020), with a parameter count that does
        not grow with the path's length; on a coarse grid it cannot shrink a step's
        variance, so it needs ``substeps`` to approach the posterior.
    hidden
        Hidden units of the ``"mlp"`` control.
    rest
        Family for the other latent sites (:data:`FAMILIES`; not ``"flow"``).
    """

    control: str = "affine"
    hidden: int = 32
    rest: str = "normal"

    def check(self) -> PathGuide:
        if self.control not in CONTROLS:
            raise ValueError(
                f"PathGuide: control must be one of {CONTROLS}; got {self.control!r}"
            )
        if self.rest not in FAMILIES or self.rest == "flow":
            raise ValueError(
                "PathGuide: rest must be one of ('normal', 'mvn', 'lowrank'); got "
                f"{self.rest!r}"
            )
        if (
            isinstance(self.hidden, bool)
            or not isinstance(self.hidden, int | np.integer)
            or self.hidden < 1
        ):
            raise ValueError(
                f"PathGuide: hidden must be an int >= 1; got {self.hidden!r}"
            )
        return self


# -- starting point and frame -------------------------------------------------------
def prior_frame(model, key, num: int = 64):
    """Centre and spread of the prior in the flat unconstrained space: the median
    and the interquartile range / 1.349 of ``num`` prior draws (NumPyro's
    ``init_to_median`` per draw: an improper site takes a uniform draw in
    ``[-2, 2]``), each ``(dim,)``; a spread that is 0 or not finite is 1. Traced."""

    def one(k):
        seeded = numpyro.handlers.substitute(
            numpyro.handlers.seed(model.model, k),
            substitute_fn=init_to_median(num_samples=1),
        )
        tr = numpyro.handlers.trace(seeded).get_trace(*model.args, **model.kwargs)
        unconstrained = {
            n: biject_to(tr[n]["fn"].support).inv(tr[n]["value"])
            for n in model.latent_names
        }
        return jax.flatten_util.ravel_pytree(unconstrained)[0]

    draws = jax.vmap(one)(jax.random.split(key, num))
    low, centre, high = jnp.percentile(draws, jnp.array([25.0, 50.0, 75.0]), axis=0)
    spread = (high - low) / 1.349
    return centre, jnp.where((spread > 0) & jnp.isfinite(spread), spread, 1.0)


def in_frame(family: Family, centre, spread) -> Family:
    r"""``family`` over the prior-standardised $w$, reported as $z = c + D w$ with
    $\log q(z) = \log q(w) - \sum \log D$: every family starts at the prior's
    centre and the optimiser's steps are in units of the prior's spread (a level
    near 1000 moves as readily as a log-scale near 0)."""
    log_det = jnp.sum(jnp.log(spread))

    def sample(phi, key):
        w, log_q, correction, log_q_fixed = family.sample(phi, key)
        return Draw(
            centre + spread * w, log_q - log_det, correction, log_q_fixed - log_det
        )

    return Family(family.name, family.init, sample)


# -- Gaussian and flow families ------------------------------------------------------
def _distrax_draw(distribution, phi, key, fixed: bool = True) -> Draw:
    """A draw of the distrax distribution ``distribution(phi)``; with ``fixed=False``
    the optimiser follows the plain reparameterisation gradient."""
    z, log_q = distribution(phi).sample_and_log_prob(seed=key)
    held = distribution(jax.lax.stop_gradient(phi)).log_prob(z) if fixed else log_q
    return Draw(z, log_q, jnp.zeros((), z.dtype), held)


def _tril(raw, log_diag):
    return jnp.tril(raw, -1) + jnp.diag(jnp.exp(log_diag))


def gaussian_family(kind: str, dim: int, dtype, rank: int | None = None) -> Family:
    """``"normal"``, ``"mvn"`` or ``"lowrank"`` around 0 (use :func:`in_frame`)."""
    import distrax

    loc = jnp.zeros((dim,), dtype)
    log0 = jnp.full((dim,), math.log(_INIT_SCALE), loc.dtype)
    rank = max(1, round(math.sqrt(dim))) if rank is None else min(rank, dim)

    def init(key):
        if kind == "normal":
            return {"loc": loc, "log_scale": log0}
        if kind == "mvn":
            return {
                "loc": loc,
                "log_diag": log0,
                "tril": jnp.zeros((dim, dim), loc.dtype),
            }
        factor = 0.01 * jax.random.normal(key, (dim, rank), loc.dtype)
        return {"loc": loc, "log_diag": log0, "factor": factor}

    def distribution(phi):
        if kind == "normal":
            return distrax.MultivariateNormalDiag(phi["loc"], jnp.exp(phi["log_scale"]))
        if kind == "mvn":
            return distrax.MultivariateNormalTri(
                phi["loc"], _tril(phi["tril"], phi["log_diag"])
            )
        return distrax.MultivariateNormalDiagPlusLowRank(
            phi["loc"], jnp.exp(phi["log_diag"]), phi["factor"]
        )

    def sample(phi, key):
        return _distrax_draw(distribution, phi, key)

    return Family(kind, init, sample)


def flow_family(
    dim: int,
    dtype,
    layers: int = 4,
    hidden: int = 32,
    bins: int = 8,
    bound: float = 5.0,
) -> Family:
    """The ``"flow"`` family (module docstring) around 0 (use :func:`in_frame`)."""
    import distrax

    loc = jnp.zeros((dim,), dtype)
    width = 3 * bins + 1  # widths, heights and interior slopes of one spline
    # True: conditions the layer (passed through); a 1-D flow has a learned constant
    # spline (its network sees zeros)
    masks = [
        (np.arange(dim) % 2 == i % 2) if dim > 1 else np.zeros(1, bool)
        for i in range(layers)
    ]

    def init(key):
        nets = []
        for sub in jax.random.split(key, layers):
            nets.append(
                {
                    "w1": jax.random.normal(sub, (dim, hidden), dtype) / math.sqrt(dim),
                    "b1": jnp.zeros((hidden,), dtype),
                    "w2": jnp.zeros((hidden, dim * width), dtype),
                    "b2": jnp.zeros((dim * width,), dtype),
                }
            )
        return {
            "loc": loc,
            "log_scale": jnp.full((dim,), math.log(_INIT_SCALE), dtype),
            "layers": nets,
        }

    def distribution(phi):
        def conditioner(net):
            def spline_params(x):
                h = jnp.tanh(x @ net["w1"] + net["b1"])
                return (h @ net["w2"] + net["b2"]).reshape(x.shape[:-1] + (dim, width))

            return spline_params

        def spline(params):
            return distrax.RationalQuadraticSpline(
                params, -bound, bound, boundary_slopes="identity"
            )

        couplings = [
            distrax.MaskedCoupling(mask, conditioner(net), spline)
            for mask, net in zip(masks, phi["layers"], strict=True)
        ]
        affine = distrax.Block(
            distrax.ScalarAffine(phi["loc"], log_scale=phi["log_scale"]), 1
        )
        base = distrax.MultivariateNormalDiag(
            jnp.zeros(dim, dtype), jnp.ones(dim, dtype)
        )
        return distrax.Transformed(base, distrax.Chain([affine, *couplings[::-1]]))

    def sample(phi, key):  # sticking the landing made the splines diverge (banana)
        return _distrax_draw(distribution, phi, key, fixed=False)

    return Family("flow", init, sample)


# -- the path guide --------------------------------------------------------------------
class _Steered(NamedTuple):
    """Static facts of one steered path: its noise site, the slice of the flat
    position it fills, its noise shape ``(*batch, K, k)`` and state dimension."""

    noise: str
    start: int
    stop: int
    shape: tuple
    state_dim: int


def _site_layout(model) -> dict[str, tuple[int, int, tuple]]:
    """``{site: (start, stop, shape)}`` of the flat position (ravel order: sorted)."""
    dim, dtype = model.dim_and_dtype()
    shapes = jax.eval_shape(model.unravel, jax.ShapeDtypeStruct((dim,), dtype))
    layout, offset = {}, 0
    for name in sorted(shapes):
        size = math.prod(shapes[name].shape)
        layout[name] = (offset, offset + size, tuple(shapes[name].shape))
        offset += size
    return layout


def _steered_paths(model, layout) -> dict[str, _Steered]:
    """The latent non-centred paths of ``model``, found by an abstract trace."""
    found = {}

    def run():
        tr = numpyro.handlers.trace(numpyro.handlers.seed(model.model, 0)).get_trace(
            *model.args, **model.kwargs
        )
        for name, site in tr.items():
            info = site.get("infer") or {}
            if site["type"] == "sample" and "sdeppl_path" in info:
                path = info["sdeppl_path"][0]
                found[name] = path.state_dim
        return 0

    jax.eval_shape(run)
    out = {}
    for noise, state_dim in found.items():
        start, stop, shape = layout[noise]
        out[noise] = _Steered(noise, start, stop, shape, state_dim)
    return out


def _affine_params(s: _Steered, dtype):
    k = s.shape[-1]
    lead = s.shape[:-1]  # (*batch, K)
    d = s.state_dim
    return {
        "a": jnp.zeros(lead + (d,), dtype),
        "B": jnp.zeros(lead + (d, d), dtype),
        "log_s": jnp.zeros(lead + (k,), dtype),
    }


def _reference(p, j, name):
    return jax.lax.stop_gradient(jnp.take(p[name], j, axis=-2))


def _standardised(p, j, x):
    """``x (*batch, d)`` at fine step ``j`` in the reference's units."""
    return (x - _reference(p, j, "ref")) / _reference(p, j, "scale")


def _affine_control(p, j, t0, t1, x):
    """$v_j = \delta_j \odot (a_j + B_j \tilde x_j)$: the step's shift in units of
    the reference's increments $\delta_j$."""
    a = jnp.take(p["a"], j, axis=-2)
    b = jnp.take(p["B"], j, axis=-3)
    unit = a + jnp.einsum("...ij,...j->...i", b, _standardised(p, j, x))
    return _reference(p, j, "step") * unit, jnp.take(p["log_s"], j, axis=-2)


def _mlp_params(key, s: _Steered, hidden: int, dtype):
    d = s.state_dim
    fan_in = 1 + d
    return {
        "w1": jax.random.normal(key, (fan_in, hidden), dtype) / math.sqrt(fan_in),
        "b1": jnp.zeros((hidden,), dtype),
        "w2": jnp.zeros((hidden, d), dtype),
        "b2": jnp.zeros((d,), dtype),
    }


def _mlp_control(p, j, t0, t1, x):
    """$v_j = \delta_j \odot \mathrm{MLP}(j / K, \tilde x_j)$, noise unscaled."""
    steps = p["ref"].shape[-2]
    x_std = _standardised(p, j, x)
    clock = jnp.broadcast_to(j / steps, x.shape[:-1] + (1,)).astype(x.dtype)
    inputs = jnp.concatenate([clock, x_std], axis=-1)
    unit = jnp.tanh(inputs @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
    return _reference(p, j, "step") * unit, jnp.zeros((), x.dtype)


def _std_normal_log_prob(e):
    return -0.5 * jnp.sum(e * e) - 0.5 * e.size * _LOG_2PI


def _normal_log_prob(x, mean, log_scale):
    """$\sum \log N(x; \mu, e^{2 \log s})$."""
    e = (x - mean) * jnp.exp(-log_scale)
    return _std_normal_log_prob(e) - jnp.sum(log_scale)


def _fixed_control(path, states, control, params):
    """The control's innovation means and log-scales at the drawn fine ``states``
    ``(*batch, K + 1, d)`` with ``params`` held fixed (``stop_gradient``): the
    guide's density of the draw for the "sticking the landing" gradient."""
    fixed = jax.lax.stop_gradient(params)
    tf = path.fine_ts
    steps = jnp.arange(tf.shape[0] - 1)
    k = path.noise_shape[1]

    def one(j, t0, t1, x):
        shift, log_scale = control(fixed, j, t0, t1, x)
        shift = jnp.broadcast_to(shift, x.shape)
        return shift, jnp.broadcast_to(log_scale, x.shape[:-1] + (k,))

    shifts, log_scales = jax.vmap(one, in_axes=(0, 0, 0, -2), out_axes=-2)(
        steps, tf[:-1], tf[1:], states[..., :-1, :]
    )
    return path.innovation_means(states, shifts), log_scales


def path_family(
    guide: PathGuide, model, centre, spread, rank: int | None = None
) -> Family:
    """The :class:`PathGuide` family over ``model``'s flat position; the rest family
    works in the prior's frame (``centre``, ``spread``: :func:`prior_frame`)."""
    guide = guide.check()
    layout = _site_layout(model)
    steered = _steered_paths(model, layout)
    if not steered:
        raise ValueError(
            "fit: guide=PathGuide(...) steers latent non-centred paths (sp.Path "
            "sites sampled without obs=, method 'euler' or 'local_linear'); this "
            "model has none. Use guide='normal', 'mvn', 'lowrank' or 'flow'."
        )
    dim, dtype = model.dim_and_dtype()
    noise_idx = np.concatenate([np.arange(s.start, s.stop) for s in steered.values()])
    rest_idx = np.setdiff1d(np.arange(dim), noise_idx)
    rest = (
        in_frame(
            gaussian_family(guide.rest, rest_idx.size, dtype, rank),
            centre[rest_idx],
            spread[rest_idx],
        )
        if rest_idx.size
        else None
    )
    control = _affine_control if guide.control == "affine" else _mlp_control

    def draw(phi, key):
        """One draw: ``(Draw, {noise site: fine states})``."""
        k_rest, k_eta = jax.random.split(key)
        z = jnp.zeros((dim,), dtype)
        log_q = log_q_fixed = jnp.zeros((), dtype)
        if rest is not None:
            z_rest, log_q, _, log_q_fixed = rest.sample(phi["rest"], k_rest)
            z = z.at[rest_idx].set(z_rest)
        values = model.unravel(z)
        etas = {
            name: jax.random.normal(sub, s.shape, dtype)
            for sub, (name, s) in zip(
                jax.random.split(k_eta, len(steered)), steered.items(), strict=True
            )
        }
        found = {}

        def substitute(msg):
            name = msg["name"]
            if name in steered:
                path, start = msg["infer"]["sdeppl_path"]
                params = phi["paths"][name]
                steered_path = path.steer(start, etas[name], control, params)
                fixed = _fixed_control(path, steered_path[0], control, params)
                found[name] = (*steered_path, *fixed)
                return steered_path[1]
            if name in values and not msg["is_observed"]:
                return biject_to(msg["fn"].support)(values[name])
            return None

        numpyro.handlers.trace(
            numpyro.handlers.substitute(
                numpyro.handlers.seed(model.model, 0), substitute_fn=substitute
            )
        ).get_trace(*model.args, **model.kwargs)
        correction = jnp.zeros((), dtype)
        for name, s in steered.items():
            _, xi, mean, log_s, mean_fixed, log_s_fixed = found[name]
            z = z.at[s.start : s.stop].set(xi.ravel())
            log_q_noise = _std_normal_log_prob(etas[name]) - jnp.sum(log_s)
            kl = jnp.sum(0.5 * (mean**2 + jnp.exp(2.0 * log_s) - 1.0) - log_s)
            log_q = log_q + log_q_noise
            log_q_fixed = log_q_fixed + _normal_log_prob(xi, mean_fixed, log_s_fixed)
            correction = correction + log_q_noise - _std_normal_log_prob(xi) - kl
        states = {n: f[0] for n, f in found.items()}
        return Draw(z, log_q, correction, log_q_fixed), states

    def init(key):
        """Zero controls; the state is standardised by the mean and standard
        deviation, at each fine step, of :data:`_REFERENCE_DRAWS` paths drawn by the
        initial guide (the prior path at parameters near their prior median)."""
        k_rest, k_paths, k_ref = jax.random.split(key, 3)
        paths = {}
        for sub, (name, s) in zip(
            jax.random.split(k_paths, len(steered)), steered.items(), strict=True
        ):
            paths[name] = (
                _affine_params(s, dtype)
                if guide.control == "affine"
                else _mlp_params(sub, s, guide.hidden, dtype)
            )
            ref_shape = s.shape[:-1] + (s.state_dim,)  # (*batch, K, d)
            for field in ("ref", "scale", "step"):
                paths[name][field] = jnp.full(ref_shape, float(field != "ref"), dtype)
        phi = {"rest": rest.init(k_rest) if rest else {}, "paths": paths}
        states = jax.vmap(lambda k: draw(phi, k)[1])(
            jax.random.split(k_ref, _REFERENCE_DRAWS)
        )
        for name, fine in states.items():  # (draws, *batch, K + 1, d)
            paths[name]["ref"] = jnp.mean(fine[..., :-1, :], axis=0)
            for field, values in (
                ("scale", fine[..., :-1, :]),
                ("step", jnp.diff(fine, axis=-2)),
            ):
                sd = jnp.std(values, axis=0)
                paths[name][field] = jnp.where(sd > 0, sd, 1.0)
        return phi

    def sample(phi, key):
        return draw(phi, key)[0]

    return Family("path", init, sample)


# -- a NumPyro guide -------------------------------------------------------------------
def numpyro_family(guide, model) -> Family:
    r"""A NumPyro guide as a family on the flat position: an autoguide class
    (``numpyro.infer.autoguide.AutoIAFNormal``, ...; built on the model as
    ``sdeppl.fit`` sees it), an autoguide instance, or a guide function with
    ``numpyro.param`` and ``numpyro.sample`` statements over the model's latent sites
    -- with a latent path ``x`` non-centred, its sites are ``x_noise`` (and
    ``x_x0``).

    Its parameters are the guide's ``param`` sites (unconstrained); a draw runs the
    guide and maps the latent values $x$ to the flat position $z$ through each site's
    support, with $\log q(z) = \sum_{\text{guide sites}} \log q + \log|\det
    \partial x / \partial z|$. Every sample site of the guide must be
    reparameterisable.
    """
    from numpyro.distributions import constraints
    from numpyro.infer.autoguide import AutoGuide

    if isinstance(guide, type) and issubclass(guide, AutoGuide):
        guide = guide(model.model)
    args, kwargs = model.args, model.kwargs
    layout = _site_layout(model)
    dim, dtype = model.dim_and_dtype()

    def run(key, params=None, values=None):
        fn = numpyro.handlers.seed(guide, key)
        if params is not None:
            fn = numpyro.handlers.substitute(fn, data=params)
        if values is not None:
            fn = numpyro.handlers.substitute(fn, data=values)
        return numpyro.handlers.trace(fn).get_trace(*args, **kwargs)

    found = {}

    def structure():
        tr = run(jax.random.key(0))
        found["constraints"] = {
            n: s["kwargs"].get("constraint", constraints.real)
            for n, s in tr.items()
            if s["type"] == "param"
        }
        found["samples"] = [
            (n, bool(getattr(s["fn"], "has_rsample", True)))
            for n, s in tr.items()
            if s["type"] == "sample" and not s["is_observed"]
        ]
        return 0

    structure()  # concretely: an autoguide builds its prototype on the first call
    names = {n for n, _ in found["samples"]}
    missing = sorted(set(model.latent_names) - names)
    if missing:
        raise ValueError(
            f"fit: the guide has no sample site for the model's latent site(s) "
            f"{missing} (sdeppl.fit samples latent paths non-centred: path 'x' is "
            "'x_noise' and 'x_x0'); write the guide for those sites, or pass an "
            "autoguide class such as numpyro.infer.autoguide.AutoDiagonalNormal."
        )
    not_reparam = [n for n, ok in found["samples"] if not ok]
    if not_reparam:
        raise ValueError(
            f"fit: the guide's site(s) {not_reparam} cannot be reparameterised; "
            "method='svi' differentiates through the guide's draws."
        )
    bijections = found["constraints"]

    def init(key):
        tr = run(key)
        return {
            n: jnp.asarray(biject_to(bijections[n]).inv(tr[n]["value"]), dtype)
            for n in bijections
        }

    def log_density(tr):
        return sum(
            jnp.sum(s["fn"].log_prob(s["value"]))
            for s in tr.values()
            if s["type"] == "sample" and not s["is_observed"]
        )

    def sample(phi, key):
        params = {n: biject_to(bijections[n])(phi[n]) for n in bijections}
        tr = run(key, params)
        z = jnp.zeros((dim,), dtype)
        log_det = jnp.zeros((), dtype)
        # supports from the model (a guide's sites may be Deltas on the real line),
        # at the drawn values (a support may depend on other sites)
        supports = numpyro.handlers.trace(
            numpyro.handlers.substitute(
                numpyro.handlers.seed(model.model, 0),
                data={n: tr[n]["value"] for n in model.latent_names},
            )
        ).get_trace(*args, **kwargs)
        for name in model.latent_names:
            site = tr[name]
            support = biject_to(supports[name]["fn"].support)
            u = support.inv(site["value"])
            start, stop, _ = layout[name]
            z = z.at[start:stop].set(jnp.ravel(u).astype(dtype))
            log_det = log_det + jnp.sum(support.log_abs_det_jacobian(u, site["value"]))
        drawn = {
            n: s["value"]
            for n, s in tr.items()
            if s["type"] == "sample" and not s["is_observed"]
        }
        held = {n: jax.lax.stop_gradient(v) for n, v in params.items()}
        log_q = log_density(tr) + log_det
        log_q_fixed = log_density(run(key, held, drawn)) + log_det
        return Draw(z, log_q, jnp.zeros((), dtype), log_q_fixed)

    return Family(getattr(guide, "__name__", type(guide).__name__), init, sample)
