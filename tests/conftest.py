"""Collection settings shared by the whole suite.

pytest runs with ``--doctest-modules`` (pyproject.toml), which imports every module under its
paths. ``tests/scripts`` holds entry points that tests start in a subprocess (some set XLA flags or
sleep until killed), so they are never imported at collection.
"""

collect_ignore = ["scripts"]
