"""``train()``'s guards: refuse to resume a different run, stop a run that diverges.

Both raise before anything is written, so the last checkpoint stays intact.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from numpyro_ebm import checkpoints
from numpyro_ebm._compat import renamed_keys
from numpyro_ebm.training import checks
from numpyro_ebm.training.step import _Carry, _StepStats

__all__ = ["TrainingDivergedError"]


class TrainingDivergedError(FloatingPointError):
    """Training ran away: a loss or energy became NaN or infinite, or chains flew off.

    Attributes:
        step: the first bad training step (1-based).
        checkpoint: the last good checkpoint (untouched), or ``None``.
    """

    def __init__(self, message: str, *, step: int, checkpoint: Path | None):
        super().__init__(message)
        self.step = step
        self.checkpoint = checkpoint


def _resume(checkpoint: Path, carry: _Carry, history: dict, key_data, config: dict):
    """The checkpoint's state and history; a ``ValueError`` naming every setting that differs."""
    manifest = checkpoints.read_manifest(checkpoint)
    if manifest["key"] != key_data.tolist():
        raise ValueError(
            f"the checkpoint {checkpoint} was written by a run with another key; resume with the "
            "same key, or choose another checkpoint_dir."
        )
    # A checkpoint written before the num_* rename stores the old names: compare the new ones.
    differences = checks.settings_differences(renamed_keys(manifest["config"]), config)
    if differences:
        raise ValueError(
            f"resume=True refuses: the checkpoint {checkpoint} was written with other settings ("
            + "; ".join(differences)
            + "). Resume with the checkpoint's settings, or start afresh in another checkpoint_dir."
        )
    carry, manifest = checkpoints.load_checkpoint(checkpoint, carry)
    saved = renamed_keys(manifest["history"])
    rows = len(saved["step"])
    history = {name: list(saved.get(name, [math.nan] * rows)) for name in history}  # new metrics: NaN
    return carry, history


def _raise_if_diverged(
    stats: _StepStats, step: int, num_steps: int, checkpoint, trains_flow: bool, max_distance, radius
) -> None:
    """Raise :class:`TrainingDivergedError` at the first bad step of a chunk: a non-finite loss
    or energy, or (``max_distance``) a chain farther than ``max_distance`` data radii."""
    problems = []
    checked = {
        "loss": stats.loss,
        "mean E(data)": stats.energy_data,
        "mean E(negatives)": stats.energy_negatives,
    }
    if trains_flow:
        checked["flow loss"] = stats.flow_loss
    for what, values in checked.items():
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            problems.append((int(bad[0]), f"{what} became {values[bad[0]]}"))
    if max_distance is not None:
        far = np.flatnonzero(~(stats.chain_distance <= max_distance * radius))
        if far.size:
            i = int(far[0])
            problems.append(
                (
                    i,
                    f"a chain ran away to distance {stats.chain_distance[i]:.3g} from the data's mean, "
                    f"{stats.chain_distance[i] / radius:.3g} data radii (max_chain_distance={max_distance})",
                )
            )
    if problems:
        index, what = min(problems)
        first = step + index + 1
        kept = (
            f"the last good checkpoint {checkpoint} is untouched"
            if checkpoint
            else "no checkpoint was written"
        )
        raise TrainingDivergedError(
            f"{what} at training step {first} (of {num_steps}); {kept}. Lower the learning rates or "
            "the step size, add energy_l2, or tilt the EBM (EnergyModel(net, flow.base_dist)).",
            step=first,
            checkpoint=checkpoint,
        )
