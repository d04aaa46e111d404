"""Layer-1 tests run with strict rank promotion: solvers must broadcast explicitly."""

import jax
import pytest


@pytest.fixture(autouse=True)
def strict_rank_promotion():
    with jax.numpy_rank_promotion("raise"):
        yield
