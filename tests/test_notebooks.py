"""Every tutorial in ``notebooks/`` is valid jupytext and runs end to end in its fast mode.

Tutorials are jupytext percent-format ``.py`` files; files starting with ``_`` are helpers, not
tutorials. Each runs as a script in a fresh interpreter with ``NUMPYRO_EBM_FAST=1`` (small
sizes) and the non-interactive matplotlib backend, from an empty directory so that nothing it
writes lands in the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
TUTORIALS = sorted(p for p in NOTEBOOKS.glob("*.py") if not p.name.startswith("_"))
TIMEOUT_S = 900  # generous: compilation dominates, and CI machines can be slow and shared


def test_there_are_tutorials():
    assert TUTORIALS, f"no tutorials found in {NOTEBOOKS}"


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_is_valid_jupytext(path):
    jupytext = pytest.importorskip("jupytext", reason="jupytext is in the [test] extra")
    notebook = jupytext.read(path)
    kinds = {cell.cell_type for cell in notebook.cells}
    assert kinds == {"markdown", "code"}, f"{path.name}: expected markdown and code cells, got {kinds}"
    assert notebook.cells[0].cell_type == "markdown", f"{path.name} should open with a markdown cell"
    assert notebook.cells[0].source.lstrip().startswith("# "), f"{path.name} should open with a title"


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_runs(path, tmp_path):
    env = dict(os.environ, NUMPYRO_EBM_FAST="1", MPLBACKEND="Agg")
    result = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, (
        f"{path.name} exited with code {result.returncode}\n"
        f"--- stdout (tail) ---\n{result.stdout[-4000:]}\n--- stderr (tail) ---\n{result.stderr[-8000:]}"
    )
