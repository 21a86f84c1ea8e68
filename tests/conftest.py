"""Collection settings shared by the whole suite.

pytest runs with ``--doctest-modules`` (pyproject.toml), which imports every module under its
paths. ``tests/scripts`` holds entry points that tests start in a subprocess (some set XLA flags or
sleep until killed), so they are never imported at collection.

The suite runs on two xdist workers, which take tests in collection order. Alphabetical order
leaves the heaviest files (the tutorials, NumPyro's suite, tempering, training) for the end, where
one worker finishes its last long test while the other idles. Running the heaviest files first
(longest-processing-time-first scheduling) lets the many short tests fill in at the end. The
ranking below is by each file's measured total time (CPU seconds per file, 2-core machine); an
unlisted file runs after the listed ones, in its usual order.
"""

collect_ignore = ["scripts"]

HEAVIEST_FIRST = (
    "test_notebooks.py",
    "test_numpyro_suite.py",
    "test_kernel.py",
    "test_reproduce.py",
    "test_tempering.py",
    "test_training.py",
    "test_cli.py",
    "test_evidence.py",
    "test_keys.py",
    "test_negatives.py",
    "test_images.py",
    "test_faults.py",
)


def pytest_collection_modifyitems(session, config, items):
    """Reorder the collected tests, heaviest files first (a stable sort: same order in every worker)."""
    rank = {name: i for i, name in enumerate(HEAVIEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(HEAVIEST_FIRST)))
