"""mkdocs hook (``hooks:`` in mkdocs.yml; not part of the package): fill the "Tutorials" section.

The rendered tutorials are ``docs/tutorials/NN_*.md`` (written by ``docs/build_tutorials.py``);
every one found is listed in the navigation, in file-name order, under the page's own title. A new
tutorial therefore needs no edit to ``mkdocs.yml``.
"""

from __future__ import annotations

from pathlib import Path


def on_config(config):
    pages = sorted(Path(config["docs_dir"], "tutorials").glob("[0-9]*.md"))
    for entry in config["nav"] or []:
        if isinstance(entry, dict) and "Tutorials" in entry:
            entry["Tutorials"] = ["tutorials/index.md"] + [f"tutorials/{p.name}" for p in pages]
    return config
