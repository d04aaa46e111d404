"""Layer 1: pure-JAX SDE solvers (no NumPyro).

Everything here is a function of arrays and PRNG keys, ``jit``- and ``vmap``-able:

- :class:`Transition` (:mod:`.transitions`): one step of a process as pure functions
  (non-centred ``transform``, ``sample``, vectorised ``log_prob``, Gaussian
  ``moments``) with declared :class:`Capabilities`, built from the one table
  :data:`TRANSITIONS` (``euler``, ``local_linear``, ``milstein``, ``sra1``) or, for the
  exact transitions, by :func:`affine_transition`, :func:`ou_transition` and
  :func:`cir_transition` (a scaled non-central chi-square, through the log-space
  Bessel function :func:`log_bessel_ive`);
  :func:`simulate` drives any of them on arbitrary time grids;
- the maths behind them: steppers (:mod:`.euler`, :mod:`.milstein`, :mod:`.sra1`),
  Gaussian moments (:func:`euler_moments`, :func:`local_linear_moments`,
  :func:`affine_discretisation` for linear SDEs, :func:`ou_moments`), scored by
  :func:`gaussian_log_prob` and sampled non-centred by :func:`gaussian_transform`;
- the modified diffusion bridge (:func:`bridge_moments`) for data augmentation;
- particle filters on Feynman–Kac models (:mod:`.particle`: :func:`particle_filter`,
  :func:`bootstrap`, :func:`guided`, backward sampling, :func:`conditional_smc`) with
  the resamplers of :mod:`.resampling`; Feynman–Kac correctors, weighted SDE
  samplers for annealed, product and guided targets of score-based diffusions
  (:mod:`.fkc`: :func:`fk_sde`).

States have shape ``(*batch, d)``; drift closures return the same shape, diffusion
closures ``(*batch, d)`` (diagonal noise) or ``(*batch, d, m)`` (general noise), wrapped
in a :class:`Diffusion` that records which.
"""

from ._terms import Diffusion as Diffusion
from .bessel import log_bessel_i as log_bessel_i
from .bessel import log_bessel_ive as log_bessel_ive
from .bridge import bridge_moments as bridge_moments
from .bridge import bridge_scale_kind as bridge_scale_kind
from .cir import cir_log_transition as cir_log_transition
from .cir import cir_sample as cir_sample
from .cir import cir_transition as cir_transition
from .euler import euler_moments as euler_moments
from .euler import euler_scale_kind as euler_scale_kind
from .euler import euler_step as euler_step
from .fkc import FKSDEResult as FKSDEResult
from .fkc import ForwardSDE as ForwardSDE
from .fkc import WeightedSDE as WeightedSDE
from .fkc import divergence as divergence
from .fkc import fk_annealed as fk_annealed
from .fkc import fk_general as fk_general
from .fkc import fk_geometric as fk_geometric
from .fkc import fk_product as fk_product
from .fkc import fk_sde as fk_sde
from .fkc import log_marginal_dtau as log_marginal_dtau
from .fkc import reverse_diffusion as reverse_diffusion
from .fkc import vp_gaussian_score as vp_gaussian_score
from .fkc import vp_marginal as vp_marginal
from .fkc import vp_marginal_var as vp_marginal_var
from .fkc import vp_sde as vp_sde
from .gaussian import gaussian_log_prob as gaussian_log_prob
from .gaussian import gaussian_transform as gaussian_transform
from .gaussian import noise_for_shift as noise_for_shift
from .linear import AffineTransition as AffineTransition
from .linear import affine_discretisation as affine_discretisation
from .linear import affine_moments as affine_moments
from .linear import ou_moments as ou_moments
from .local_linear import drift_jacobian as drift_jacobian
from .local_linear import local_linear_moments as local_linear_moments
from .milstein import milstein_step as milstein_step
from .particle import FeynmanKac as FeynmanKac
from .particle import ParticleFilterResult as ParticleFilterResult
from .particle import ancestral_paths as ancestral_paths
from .particle import backward_sample as backward_sample
from .particle import bootstrap as bootstrap
from .particle import conditional_smc as conditional_smc
from .particle import fixed_lag_means as fixed_lag_means
from .particle import guided as guided
from .particle import particle_filter as particle_filter
from .simulate import fine_grid as fine_grid
from .simulate import simulate as simulate
from .sra1 import sra1_increments as sra1_increments
from .sra1 import sra1_step as sra1_step
from .transitions import TRANSITIONS as TRANSITIONS
from .transitions import Capabilities as Capabilities
from .transitions import Scheme as Scheme
from .transitions import Transition as Transition
from .transitions import affine_transition as affine_transition
from .transitions import build_transition as build_transition
from .transitions import gaussian_transition as gaussian_transition
from .transitions import ou_transition as ou_transition
