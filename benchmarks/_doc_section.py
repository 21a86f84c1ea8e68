"""Write a benchmark's results into its marked section of docs/benchmarks.md, replacing the last run's.

Each benchmark owns a section between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; a first
run appends it under ``## HEADING``. Run the benchmarks as scripts (``python benchmarks/X.py``),
so that this module is importable beside them.
"""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(name: str, body: str, heading: str, doc: Path = DOC) -> None:
    """Put ``body`` between the markers of section ``name`` of ``doc`` (created under ``heading``)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body}\n{end}"
    text = doc.read_text()
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text += f"\n## {heading}\n\n{block}\n"
    doc.write_text(text)
