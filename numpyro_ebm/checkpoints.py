"""Atomic training checkpoints: equinox-serialised arrays plus a JSON manifest, never pickle.

A checkpoint is a directory ``<checkpoint_dir>/step-<step>/`` holding ``state.eqx`` (every array
of the training state, written by ``eqx.tree_serialise_leaves``) and ``manifest.json`` (step,
PRNG key, history, configuration). It is written under a temporary name and renamed into place
with ``os.replace``, so a crash mid-write never leaves a half-written checkpoint where a reader
looks: the latest checkpoint is simply the complete ``step-*`` directory with the largest step.
Loading needs a ``like`` pytree of the same structure (the freshly initialised state), as with
``eqx.tree_deserialise_leaves``.

One process only: the state is written from this process's memory, so every array must be fully
addressable here. That holds on one machine with any number of devices (a run sharded over 4
devices resumes on 1), not in a multi-process (multi-host) run, where :func:`save_checkpoint`
raises instead of writing a partial state.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jaxtyping import PyTree

from numpyro_ebm._atomic import atomic_directory, fsync_file
from numpyro_ebm._validate import positive_int

__all__ = [
    "save_checkpoint",
    "latest_checkpoint",
    "load_checkpoint",
    "read_manifest",
    "require_single_process",
    "FORMAT",
]

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


def require_single_process(state: PyTree = None) -> None:
    """Raise a ``ValueError`` unless this process can write a checkpoint of ``state`` by itself.

    Checkpoints hold every array in one file written by one process. In a multi-process JAX run
    (``jax.distributed.initialize``) no process holds the whole state, so call this before a
    multi-host run starts rather than let the first checkpoint fail.
    """
    not_here = [
        jax.tree_util.keystr(where)
        for where, x in jax.tree_util.tree_leaves_with_path(state)
        if isinstance(x, jax.Array) and not x.is_fully_addressable
    ]
    if jax.process_count() > 1 or not_here:
        raise ValueError(
            f"checkpoints are written by a single process, but this run has {jax.process_count()} "
            f"processes{' and arrays not held by this one: ' + ', '.join(not_here[:3]) if not_here else ''}. "
            "Run multi-host jobs with checkpoint_dir=None (numpyro-ebm has no multi-host checkpoints)."
        )


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
    keep = positive_int(keep, "keep")
    require_single_process(state)
    directory = Path(directory)
    manifest = {"format": FORMAT, **manifest, "step": int(step)}
    text = json.dumps(manifest, indent=1)  # fails here, before anything is written, if not JSON
    target = directory / f"{_PREFIX}{int(step):09d}"
    with atomic_directory(target) as tmp:
        with open(tmp / _STATE, "wb") as f:
            eqx.tree_serialise_leaves(f, state)
            fsync_file(f)
        with open(tmp / _MANIFEST, "w") as f:
            f.write(text)
            fsync_file(f)
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
