"""Collection settings shared by the whole suite.

pytest runs with ``--doctest-modules`` (pyproject.toml), which imports every module under its
paths. ``tests/scripts`` holds entry points that tests start in a subprocess (some set XLA flags or
sleep until killed), so they are never imported at collection.

The suite runs on two xdist workers (``--dist worksteal``, pyproject.toml), which take tests in
collection order: the first half of the list goes to one worker, the second to the other, and a
worker with an empty queue takes the later half of the other's. Alphabetical order
leaves the heaviest files (the tutorials, NumPyro's suite, tempering, training) for the end, where
one worker finishes its last long test while the other idles. Running the heaviest files first
(longest-processing-time-first scheduling) lets the many short tests fill in at the end. The
ranking below is by each file's measured total time (seconds per file, 2-core machine; a
module's doctests, collected after tests/, by its file name); an unlisted file runs after the
listed ones, in its usual order.

Compilation is most of the suite's CPU time (JAX's own compile-time events: ~80% of a typical
test), so the test session, and only the test session, sets two compiler settings. The library
never changes JAX's global settings; users' processes keep JAX's defaults.

* A persistent compilation cache shared by the two workers and every subprocess a test starts
  (notebooks, command line), in a fresh temporary folder removed at the end of the run: a
  program whose HLO another test already compiled is loaded, not compiled again. Programs recur
  across tests (the same kernel on the same target with another key kind, with another model
  function object, in a subprocess). Nothing is reused from earlier runs.
* XLA CPU's older loop emitters (``--xla_cpu_use_fusion_emitters=false``), the option
  ``numpyro_ebm._compile.large_program_options`` gives the tempered SMC level: compiling takes
  less CPU and, on these small programs, so does running (measured on tests/test_keys.py, 106
  -> 74 CPU s, and on a 2,000-step training test, 29.5 -> 23.5 CPU s).
* LLVM's lighter optimisation level for the CPU backend (``--xla_backend_optimization_level=1``;
  XLA's default is 2): measured with the flag above in both runs, test_kernel.py + NumPyro's
  suite + a training test 360 -> 317 CPU s, and the d = 16 tempering test + tutorial 03 + the
  sharded-training subprocess (long-running programs) 273 -> 243 CPU s: compiling gets cheaper
  and these programs do not run slower.

Only codegen changes, not what is computed: tests/test_reproduce.py's two-process determinism
test runs without these settings. A flag the user already set in ``XLA_FLAGS`` wins.
"""

import os
import shutil
import sys
import tempfile

import pytest

collect_ignore = ["scripts"]

_CACHE = pytest.StashKey[str]()
_FAST_COMPILE_FLAGS = {  # name -> value; see the module docstring
    "xla_cpu_use_fusion_emitters": "false",
    "xla_backend_optimization_level": "1",
}


def pytest_configure(config):
    """Before anything compiles (collection imports the tests, some of which build flows): in the
    main process, create the session's compilation cache and set the environment that the xdist
    workers and test subprocesses inherit; in every process, point JAX at it."""
    if "PYTEST_XDIST_WORKER" not in os.environ:  # the main process: a worker inherits all of this
        cache = tempfile.mkdtemp(prefix="numpyro-ebm-tests-jax-cache-")
        config.stash[_CACHE] = cache
        os.environ["JAX_COMPILATION_CACHE_DIR"] = cache
        os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # small programs recur too
        os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
        flags = os.environ.get("XLA_FLAGS", "")
        for name, value in _FAST_COMPILE_FLAGS.items():
            if name not in flags:  # a user's own choice wins
                flags = f"{flags} --{name}={value}".strip()
        os.environ["XLA_FLAGS"] = flags
    if "jax" in sys.modules:  # imported already (a plugin): it has read its environment variables
        jax = sys.modules["jax"]
        jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
    cache = config.stash.get(_CACHE, None)
    if cache is not None:
        shutil.rmtree(cache, ignore_errors=True)


HEAVIEST_FIRST = (
    "test_notebooks.py",
    "test_numpyro_suite.py",
    "test_reproduce.py",
    "test_tempering.py",
    "test_kernel.py",
    "test_training.py",
    "test_negatives.py",
    "test_training_sharded.py",  # one 60-s subprocess: late, it would leave the other worker idle
    "test_evidence.py",
    "test_cli.py",
    "test_keys.py",
    "test_images.py",
    "test_moves_properties.py",
    "test_sharding.py",
    "test_energy.py",
    "evidence.py",  # doctests (numpyro_ebm/, collected after tests/): log_evidence's runs a kernel
    "test_moves.py",
    "test_flows.py",
    "test_faults.py",
    "test_diagnostics.py",
    "test_datasets.py",
    "kernel.py",
    "api.py",
)


def pytest_collection_modifyitems(session, config, items):
    """Reorder the collected tests, heaviest files first (a stable sort: same order in every worker)."""
    rank = {name: i for i, name in enumerate(HEAVIEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(HEAVIEST_FIRST)))
