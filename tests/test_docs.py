"""The documentation site builds with ``mkdocs build --strict``: every page in the nav exists, no
link is broken, and mkdocstrings renders every docstring of the API pages without a warning."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("build_tutorials", ROOT / "docs" / "build_tutorials.py")
build_tutorials = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_tutorials)
DOCS_TOOLS = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")


def _missing(modules) -> list[str]:
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # the parent package of a dotted name is absent
            found = False
        if not found:
            missing.append(name)
    return missing


@pytest.mark.skipif(
    bool(_missing(DOCS_TOOLS)),
    reason=f"docs tools not installed: {_missing(DOCS_TOOLS)}; pip install -e '.[test]'",
)
def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    # ``python -m mkdocs`` from this interpreter: never a stray mkdocs from another environment.
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-12000:]}"
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{output}"
    for page in ("index.html", "getting-started/index.html", "api/kernel/index.html", "tutorials/index.html"):
        assert (site / page).is_file(), f"{page} was not built\n{output}"
    for path in build_tutorials.tutorials():  # each tutorial is in the site and in its navigation
        page = (site / "tutorials" / path.stem / "index.html").read_text()
        assert f'href="{path.stem}/"' in (site / "tutorials" / "index.html").read_text(), path.stem
        for figure in (ROOT / "docs" / "tutorials" / path.stem).glob("*.png"):
            assert figure.name in page and (site / "tutorials" / path.stem / figure.name).is_file(), figure


@pytest.mark.parametrize("path", build_tutorials.tutorials(), ids=lambda p: p.name)
def test_tutorial_page_is_rendered_from_the_current_notebook(path):
    """Each notebooks/NN_*.py has a page in docs/tutorials/, rendered from its current source."""
    page = ROOT / "docs" / "tutorials" / f"{path.stem}.md"
    fix = f"run `python docs/build_tutorials.py {path.name[:2]}` and commit docs/tutorials/"
    assert page.is_file(), f"{path.name} has no page in the docs: {fix}"
    assert page.read_text().splitlines()[0] == build_tutorials.hash_line(path), (
        f"docs/tutorials/{page.name} was rendered from an older {path.name}: {fix}"
    )
