"""The one atomic writer: a file or a directory appears complete under its name, or not at all.

Everything is written under a temporary name in the destination's own directory (so the final
``os.replace`` is a rename on one file system, which POSIX makes atomic), flushed and fsynced, then
renamed into place. A crash mid-write leaves only a ``.tmp-*`` entry, which the next write in that
directory removes. Used by the checkpoints, the JSON outputs and the run folders.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_file", "atomic_directory", "fsync_file", "TMP_PREFIX"]

TMP_PREFIX = ".tmp-"


def fsync_file(f: IO) -> None:
    """Flush ``f`` to the disk (Python's buffer, then the OS's)."""
    f.flush()
    os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file for writing; on success it replaces ``path``, on error it is removed.

    Args:
        path: the destination; its parent directory is created if missing.
        mode: ``"w"`` (text) or ``"wb"`` (bytes).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "out.txt"
        >>> with atomic_file(path) as f:
        ...     _ = f.write("done")
        >>> path.read_text()
        'done'
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb'; got {mode!r}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            fsync_file(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory; on success it replaces ``path``, on error it is removed.

    Files written into it should be fsynced (:func:`fsync_file`). A ``path`` that already exists is
    swapped out whole, never half-replaced. Leftovers of a crash in ``path``'s parent are removed
    first.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> target = Path(tempfile.mkdtemp()) / "step-1"
        >>> with atomic_directory(target) as tmp:
        ...     _ = (tmp / "a.txt").write_text("a")
        >>> sorted(p.name for p in target.iterdir())
        ['a.txt']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(TMP_PREFIX + "*"):  # left behind by a crash mid-write
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=path.parent))
    try:
        yield tmp
        if path.exists():
            trash = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=path.parent))
            os.replace(path, trash / "old")
            os.replace(tmp, path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
