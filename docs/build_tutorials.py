"""Render the tutorials (``notebooks/NN_*.py``) into the docs site, with their outputs and figures.

Usage, from the repository root::

    python docs/build_tutorials.py            # every tutorial
    python docs/build_tutorials.py 02 04      # those whose file name starts with 02 or 04

Each tutorial runs in a fresh interpreter, from an empty temporary directory, in its fast mode
(``NUMPYRO_EBM_FAST=1``, the mode ``tests/test_notebooks.py`` runs) with the Agg backend. Cells run
one by one in one namespace, as in Jupyter: what a cell prints and the value of its last expression
become a text block under it, and every figure open at the end of a cell becomes a PNG. The result
is ``docs/tutorials/<name>.md`` plus ``docs/tutorials/<name>/figure-N.png``, committed, so building
the site executes nothing (``tests/test_docs.py`` builds it on every run).

Each page records the SHA-256 of the source it was rendered from; ``tests/test_docs.py`` fails when
a tutorial has no page or a stale one, naming this script. ``docs/_hooks.py`` lists the pages under
"Tutorials" in the site's navigation, so a new ``notebooks/05_*.py`` needs no edit to ``mkdocs.yml``.
Needs only ``jupytext`` (the ``[test]`` extra), no Jupyter kernel.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
OUT = ROOT / "docs" / "tutorials"
DPI = 80  # small PNGs: the site is committed to git
MAX_OUTPUT_LINES = 60  # long progress logs are cut in the middle


def tutorials() -> list[Path]:
    """The tutorials: ``notebooks/*.py`` not starting with ``_`` (helpers), sorted by name."""
    return sorted(p for p in NOTEBOOKS.glob("*.py") if not p.name.startswith("_"))


def source_hash(path: Path) -> str:
    """SHA-256 of a tutorial's source, as recorded on its rendered page."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hash_line(path: Path) -> str:
    return f"<!-- rendered from notebooks/{path.name} sha256:{source_hash(path)} -->"


def _run_cell(code: str, namespace: dict) -> str:
    """Execute one code cell; return what it printed and the repr of its last expression."""
    tree = ast.parse(code)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(io.StringIO()):
        exec(compile(tree, "<cell>", "exec"), namespace)
        if last is not None:
            value = eval(compile(last, "<cell>", "eval"), namespace)
            if value is not None and not _is_matplotlib(value):
                print(repr(value))
    return buffer.getvalue()


def _is_matplotlib(value) -> bool:
    """Jupyter shows a figure, not the repr of the Axes / Text / list of artists that made it."""
    items = value if isinstance(value, list | tuple) else [value]
    return bool(items) and all(type(v).__module__.startswith("matplotlib") for v in items)


def _shorten(text: str) -> str:
    lines = text.rstrip().splitlines()
    if len(lines) <= MAX_OUTPUT_LINES:
        return "\n".join(lines)
    half = MAX_OUTPUT_LINES // 2
    return "\n".join(lines[:half] + [f"... ({len(lines) - 2 * half} lines cut) ..."] + lines[-half:])


def render(path: Path, out_dir: Path) -> None:
    """Run one tutorial (in this process, from the current directory) and write its page."""
    import jupytext
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.show = lambda *args, **kwargs: None  # figures are collected at the end of each cell
    figures_dir = out_dir / path.stem
    shutil.rmtree(figures_dir, ignore_errors=True)
    figures_dir.mkdir(parents=True)
    namespace = {"__name__": "__main__", "__file__": str(path)}
    parts = [hash_line(path), ""]
    n_figures = 0
    for i, cell in enumerate(jupytext.read(path).cells):
        if cell.cell_type == "markdown":
            parts += [cell.source, ""]
            if i == 0:  # after the title: where the page comes from and how it was run
                parts += [
                    '!!! note "Rendered from `notebooks/' + path.name + '`"',
                    "    Run by `docs/build_tutorials.py` in the fast mode (`NUMPYRO_EBM_FAST=1`): smaller",
                    "    runs than the notebook's default, so the numbers are noisier. Run it yourself with",
                    f"    `python notebooks/{path.name}` or open it in Jupyter through jupytext.",
                    "",
                ]
            continue
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        parts += ["```python", cell.source.rstrip(), "```", ""]
        output = _run_cell(cell.source, namespace)
        if output.strip():
            parts += ["```text", _shorten(output), "```", ""]
        for number in plt.get_fignums():
            n_figures += 1
            name = f"figure-{n_figures}.png"
            plt.figure(number).savefig(figures_dir / name, dpi=DPI, bbox_inches="tight")
            parts += [f"![{path.stem}, figure {n_figures}]({path.stem}/{name})", ""]
        plt.close("all")
    (out_dir / f"{path.stem}.md").write_text("\n".join(parts).rstrip() + "\n")
    if n_figures == 0:
        figures_dir.rmdir()


def build(paths: list[Path]) -> None:
    """Render each tutorial in a fresh interpreter, in fast mode, from an empty directory."""
    OUT.mkdir(exist_ok=True)
    # PYTHONPATH: this checkout's numpyro_ebm, whatever else is installed.
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, NUMPYRO_EBM_FAST="1", MPLBACKEND="Agg", PYTHONPATH=pythonpath)
    for path in paths:
        print(f"rendering {path.name} ...", flush=True)
        with tempfile.TemporaryDirectory() as work:
            subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--render", str(path), str(OUT)],
                cwd=work,
                env=env,
                check=True,
            )
        print(f"  wrote docs/tutorials/{path.stem}.md", flush=True)


INDEX = """# Tutorials

Worked examples, each a [jupytext](https://jupytext.readthedocs.io) notebook in `notebooks/`,
shown here with its outputs and figures:

{items}

The pages are rendered by `python docs/build_tutorials.py` in the notebooks' fast mode
(`NUMPYRO_EBM_FAST=1`): smaller runs than a notebook's default, so their numbers are noisier.
To run one yourself: `python notebooks/01_flowmc_kernel.py`, or
`jupytext --to notebook notebooks/01_flowmc_kernel.py` and open it in Jupyter
(`pip install -e ".[notebooks]"`).
"""


def write_index() -> None:
    """``docs/tutorials/index.md``: one link per rendered page, under the page's title."""
    items = []
    for page in sorted(OUT.glob("[0-9]*.md")):
        title = next(line[2:] for line in page.read_text().splitlines() if line.startswith("# "))
        items.append(f"* [{title}]({page.name}) (`notebooks/{page.stem}.py`)")
    (OUT / "index.md").write_text(INDEX.format(items="\n".join(items)))


def main(argv: list[str]) -> None:
    if argv[:1] == ["--render"]:
        render(Path(argv[1]), Path(argv[2]))
        return
    chosen = [p for p in tutorials() if not argv or any(p.name.startswith(a) for a in argv)]
    if not chosen:
        raise SystemExit(f"no tutorial in {NOTEBOOKS} matches {argv}")
    build(chosen)
    write_index()


if __name__ == "__main__":
    main(sys.argv[1:])
