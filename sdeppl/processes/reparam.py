"""Reparametrisation of latent paths for HMC and variational inference.

:func:`reparam_paths` wraps a NumPyro model so that every :class:`~sdeppl.Path` site is
exposed to inference in the way its ``parametrization`` asks:

- latent, ``"noncentered"`` (default): the innovations ``{name}_noise`` (standard
  normal, shape ``(*batch, K, k)``) and, if ``x0`` is a distribution, ``{name}_x0``
  become the latent sites; the path is a deterministic site computed by
  :meth:`~sdeppl.Path.transform_noise`;
- latent, ``"centered"`` with ``substeps > 0``: the fine path ``{name}_fine`` is the
  latent site and ``{name}`` its value at the observation times;
- observed with ``substeps > 0``: latent points between observations are added as
  ``{name}_bridge`` (innovations of a modified diffusion bridge, non-centred) or
  ``{name}_latent`` (the points, centred), and the observed site's density becomes the
  joint density of observations and latent points.

Other sites are untouched. ``sdeppl.fit`` applies this automatically.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import Distribution, ExpandedDistribution
from numpyro.handlers import reparam
from numpyro.infer.reparam import Reparam

from ._constraints import real_or_missing
from ._series import derived_name
from .path import Path


def _unwrap(fn):
    """The Path behind ``fn`` and the batch shape the site uses (plates may expand
    it)."""
    if isinstance(fn, ExpandedDistribution) and isinstance(fn.base_dist, Path):
        return fn.base_dist, fn.batch_shape
    if isinstance(fn, Path):
        return fn, fn.batch_shape
    return None, None


class _Augmented(Distribution):
    """The observed site of an augmented path: ``log_prob`` returns a precomputed
    value."""

    arg_constraints = {}
    pytree_data_fields = ("log_density",)

    def __init__(self, log_density, event_shape):
        self.log_density = log_density
        super().__init__(jnp.shape(log_density), event_shape)

    @property
    def support(self):
        return dist.constraints.independent(real_or_missing, len(self.event_shape))

    def sample(self, key, sample_shape=()):
        raise ValueError("an augmented observed path is never sampled")

    def log_prob(self, value):
        return self.log_density


class PathReparam(Reparam):
    """NumPyro reparametriser for :class:`~sdeppl.Path` sites (see module docstring)."""

    def __call__(self, name, fn, obs):
        path, batch = _unwrap(fn)
        if path is None:
            raise TypeError(f"PathReparam: site {name!r} is not an sdeppl Path.")
        if obs is not None:
            return self._observed(name, path, batch, obs)
        if path.parametrization == "centered":
            fine = numpyro.sample(
                derived_name(name, "fine"), path.fine_path().expand(batch)
            )
            return None, fine[
                ..., :: path.substeps + 1, :
            ] if not path.scalar_state else fine[..., :: path.substeps + 1]
        if isinstance(path.x0, Distribution):
            start = numpyro.sample(derived_name(name, "x0"), path.x0.expand(batch))
        else:
            start = path.x0
        xi = numpyro.sample(
            derived_name(name, "noise"),
            dist.Normal(0.0, 1.0).expand(batch + path.noise_shape).to_event(2),
            # what a path-space guide (sdeppl.PathGuide) steers
            infer={"sdeppl_path": (path, start)},
        )
        return None, path.transform_noise(start, xi)

    def _observed(self, name, path, batch, obs):
        plan = path.augmentation_plan(obs)
        shape = batch + (plan["num_latent"], path.state_dim)
        centered = path.parametrization == "centered"
        if centered:
            z = numpyro.sample(
                derived_name(name, "latent"),
                dist.ImproperUniform(dist.constraints.real, batch, shape[len(batch) :]),
            )
        else:
            z = numpyro.sample(
                derived_name(name, "bridge"),
                dist.Normal(0.0, 1.0).expand(shape).to_event(2),
            )
        log_density = path.augmented_log_prob(obs, z, plan, centered)
        return _Augmented(jnp.broadcast_to(log_density, batch), path.event_shape), obs


def _needs_reparam(msg) -> bool:
    path, _ = _unwrap(msg["fn"])
    if path is None:
        return False
    if msg["is_observed"]:
        return path.substeps > 0
    if path.parametrization == "noncentered":
        return path.reparametrizable  # else it is drawn as it is (predictive draws)
    return path.substeps > 0


def latent_path_problem(name: str, fn) -> str | None:
    """Why the latent site ``name`` cannot be a non-centred latent path for HMC, or
    None (checked by ``sdeppl.fit`` before sampling)."""
    path, _ = _unwrap(fn)
    if path is None or path.parametrization != "noncentered" or path.reparametrizable:
        return None
    return (
        f"the latent path {name!r} uses method={path.method!r}, whose transition is "
        "not a smooth map of standard normals, so it cannot be non-centred for HMC; "
        "use method='euler' or 'local_linear' for a latent path of this SDE "
        f"({type(path.sde).__name__}), or observe it (obs=)."
    )


def reparam_paths(model):
    """Wrap ``model`` so that its :class:`~sdeppl.Path` sites are reparametrised.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> from numpyro.infer import Predictive
    >>> import sdeppl as sp
    >>> def model(ts):
    ...     sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    ...     sde = sp.SDE(lambda t, x: -x, lambda t, x: sigma)
    ...     return numpyro.sample("x", sp.Path(sde, ts, x0=0.0))
    >>> ts = jnp.linspace(0.0, 1.0, 5)
    >>> draws = Predictive(sp.reparam_paths(model), num_samples=2)(
    ...     jax.random.key(0), ts
    ... )
    >>> sorted(draws), draws["x"].shape, draws["x_noise"].shape
    (['sigma', 'x', 'x_noise'], (2, 5), (2, 4, 1))
    """
    return reparam(
        model, config=lambda msg: PathReparam() if _needs_reparam(msg) else None
    )
