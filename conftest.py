"""Suite-wide settings, for tests/ and the docstring examples in numpyro_ebm/ alike.

Each pytest-xdist worker runs hundreds of tests and examples in one process, and every compiled
XLA program stays mapped in memory until JAX's caches are cleared. After ~25 minutes a worker held
enough of them to crash natively inside XLA (an abort while compiling, a segfault while running;
each test passed alone). Clearing the caches after each module keeps a worker's footprint at one
module's programs; a module recompiles only what it uses itself.
"""

import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    yield
    jax.clear_caches()
