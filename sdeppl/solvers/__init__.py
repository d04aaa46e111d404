"""Layer 1: pure-JAX SDE solvers (no NumPyro).

Everything here is a function of arrays and PRNG keys, ``jit``- and ``vmap``-able:

- steppers for simulation (:mod:`.euler`, :mod:`.milstein`, :mod:`.sra1`) driven by
  :func:`simulate` on arbitrary time grids, with schemes declared in :data:`SCHEMES`;
- one-step Gaussian transitions for path likelihoods, as ``(mean, scale)`` pairs
  (:func:`euler_moments`, :func:`local_linear_moments`, :func:`affine_discretisation`
  for linear SDEs, :func:`ou_moments`), scored by :func:`gaussian_log_prob` and sampled
  non-centred by :func:`gaussian_transform`;
- the modified diffusion bridge (:func:`bridge_moments`) for data augmentation.

States have shape ``(*batch, d)``; drift closures return the same shape, diffusion
closures ``(*batch, d)`` (diagonal noise) or ``(*batch, d, m)`` (general noise), wrapped
in a :class:`Diffusion` that records which.
"""

from ._terms import Diffusion as Diffusion
from .bridge import bridge_moments as bridge_moments
from .bridge import bridge_scale_kind as bridge_scale_kind
from .euler import euler_moments as euler_moments
from .euler import euler_scale_kind as euler_scale_kind
from .euler import euler_step as euler_step
from .gaussian import gaussian_log_prob as gaussian_log_prob
from .gaussian import gaussian_transform as gaussian_transform
from .linear import AffineTransition as AffineTransition
from .linear import affine_discretisation as affine_discretisation
from .linear import affine_moments as affine_moments
from .linear import ou_moments as ou_moments
from .local_linear import drift_jacobian as drift_jacobian
from .local_linear import local_linear_moments as local_linear_moments
from .milstein import milstein_step as milstein_step
from .simulate import SCHEMES as SCHEMES
from .simulate import Scheme as Scheme
from .simulate import simulate as simulate
from .sra1 import sra1_increments as sra1_increments
from .sra1 import sra1_step as sra1_step
