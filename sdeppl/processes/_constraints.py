"""Constraints of the process primitives."""

from __future__ import annotations

import jax.numpy as jnp
from numpyro.distributions import constraints
from numpyro.distributions.transforms import IdentityTransform, biject_to


class _RealOrMissing(constraints._Real):
    """Real numbers, or NaN as the documented missing-value marker; never +-inf."""

    def __call__(self, x):
        return ~jnp.isinf(x)

    def tree_flatten(self):
        return (), ((), dict())


real_or_missing = _RealOrMissing()


@biject_to.register(_RealOrMissing)
def _identity(constraint):
    return IdentityTransform()
