"""Test configuration: float64 for closed-form comparisons.

STYLE.md asks for ``jax_numpy_rank_promotion="raise"``. NumPyro's own samplers (e.g.
``Normal(...).expand(...).sample``) rely on implicit rank promotion, so the strict mode is
applied to the layer-1 solver tests only (tests/solvers/conftest.py), where every
operation is sdeppl's.
"""

import jax

jax.config.update("jax_enable_x64", True)

import sdeppl  # noqa: E402

# what a script user gets with sp.configure(): XLA's loop tuning (results are
# identical); no persistent cache, so every test compiles as a fresh run would
sdeppl.configure(compilation_cache=False)
