"""Atomic training checkpoints: equinox-serialised arrays plus a JSON manifest, never pickle.

A checkpoint is a directory ``<checkpoint_dir>/step-<step>/`` holding ``state.eqx`` (every array
of the training state, written by ``eqx.tree_serialise_leaves``) and ``manifest.json`` (step,
PRNG key, history, configuration). It is written under a temporary name and renamed into place
with ``os.replace``, so a crash mid-write never leaves a half-written checkpoint where a reader
looks: the latest checkpoint is simply the complete ``step-*`` directory with the largest step.
Loading needs a ``like`` pytree of the same structure (the freshly initialised state), as with
``eqx.tree_deserialise_leaves``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jaxtyping import PyTree

__all__ = ["save_checkpoint", "latest_checkpoint", "load_checkpoint", "read_manifest", "FORMAT"]

FORMAT = "numpyro-ebm-checkpoint/1"
_PREFIX = "step-"
_STATE = "state.eqx"
_MANIFEST = "manifest.json"


def _step_dirs(directory: Path) -> list[tuple[int, Path]]:
    found = []
    if directory.is_dir():
        for path in directory.iterdir():
            name = path.name
            if path.is_dir() and name.startswith(_PREFIX) and name[len(_PREFIX) :].isdigit():
                found.append((int(name[len(_PREFIX) :]), path))
    return sorted(found)


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(
    directory: str | os.PathLike,
    step: int,
    state: PyTree,
    manifest: dict[str, Any],
    *,
    keep: int = 2,
) -> Path:
    """Write ``state`` and ``manifest`` as checkpoint ``step`` atomically; keep the newest ``keep``.

    Args:
        directory: the checkpoint directory (created if missing).
        step: training step the state belongs to.
        state: pytree of arrays (JAX or NumPy) and Python scalars.
        manifest: JSON-serialisable metadata; ``format`` and ``step`` are added.
        keep: number of most recent checkpoints to keep (``>= 1``).

    Returns:
        The checkpoint's directory.

    Example:
        >>> import tempfile, jax.numpy as jnp
        >>> d = tempfile.mkdtemp()
        >>> path = save_checkpoint(d, 10, {"w": jnp.ones(3)}, {"note": "hi"})
        >>> state, manifest = load_checkpoint(path, {"w": jnp.zeros(3)})
        >>> manifest["step"], float(state["w"].sum())
        (10, 3.0)
    """
    if not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep must be a positive integer; got {keep!r}.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(".tmp-*"):  # left behind by a crash mid-write
        shutil.rmtree(stale, ignore_errors=True)
    manifest = {"format": FORMAT, **manifest, "step": int(step)}
    text = json.dumps(manifest, indent=1)  # fails here, before anything is written, if not JSON
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=directory))
    try:
        with open(tmp / _STATE, "wb") as f:
            eqx.tree_serialise_leaves(f, state)
            f.flush()
            os.fsync(f.fileno())
        _fsync_write(tmp / _MANIFEST, text.encode())
        target = directory / f"{_PREFIX}{int(step):09d}"
        if target.exists():  # the same step saved again: swap it out, never half-replace it
            trash = Path(tempfile.mkdtemp(prefix=".tmp-", dir=directory))
            os.replace(target, trash / "old")
            os.replace(tmp, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for _, old in _step_dirs(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint in ``directory``, or ``None`` if there is none."""
    found = _step_dirs(Path(directory))
    return found[-1][1] if found else None


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON manifest of the checkpoint at ``path``."""
    manifest = json.loads((Path(path) / _MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a numpyro-ebm checkpoint of format {FORMAT}; got {manifest.get('format')!r}."
        )
    return manifest


def load_checkpoint(path: str | os.PathLike, like: PyTree) -> tuple[PyTree, dict[str, Any]]:
    """Load the state saved at ``path`` into the structure of ``like``; return it with the manifest.

    Raises:
        ValueError: if a saved array's shape or dtype differs from ``like``'s (the checkpoint
            belongs to another configuration).
    """
    manifest = read_manifest(path)
    fix = "Resume with the configuration that wrote it, or use another checkpoint_dir."
    try:
        state = eqx.tree_deserialise_leaves(Path(path) / _STATE, like)
    except (RuntimeError, ValueError, EOFError) as err:  # shape or structure changed
        raise ValueError(f"checkpoint {path} does not match this run: {err} {fix}") from err
    for (where, old), new in zip(
        jax.tree_util.tree_leaves_with_path(like), jax.tree_util.tree_leaves(state), strict=True
    ):
        if hasattr(old, "shape") and (np.shape(old) != np.shape(new) or old.dtype != new.dtype):
            raise ValueError(
                f"checkpoint {path} does not match this run at {jax.tree_util.keystr(where)}: saved "
                f"{new.dtype}{list(np.shape(new))}, expected {old.dtype}{list(np.shape(old))}. {fix}"
            )
    return state, manifest
