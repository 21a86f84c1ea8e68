"""numpyro-ebm: flowMC as a NumPyro kernel, and balanced EBM training with adaptive flow sampling.

Submodules and the names below load on first use (PEP 562), so that ``numpyro-ebm --help``
answers without importing JAX.

Example:
    >>> import numpyro_ebm as ne
    >>> [name for name in ("FlowMC", "ULA", "NTEBM", "CoopFlow") if name in ne.negatives.__all__]
    ['FlowMC', 'ULA', 'NTEBM', 'CoopFlow']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_SUBMODULES = (
    "checkpoints",
    "datasets",
    "diagnostics",
    "energy",
    "evidence",
    "flowmc",
    "flows",
    "images",
    "moves",
    "negatives",
    "nets",
    "sharding",
    "tempering",
    "training",
)
_NAMES = {
    "EnergyModel": "energy",
    "Evidence": "evidence",
    "log_evidence": "evidence",
    "FlowMCSettings": "flowmc",
    "run_chains": "flowmc",
    "flowmc_step": "flowmc",
    "FlowMCKernel": "kernel",
    "FlowMCState": "kernel",
    "TrainingDivergedError": "training",
    "TrainResult": "training",
    "train": "training",
}

__all__ = sorted([*_NAMES, *_SUBMODULES], key=str.lower)

if TYPE_CHECKING:  # for type checkers and documentation tools: the same names, eagerly
    from numpyro_ebm import (  # noqa: F401
        checkpoints,
        datasets,
        diagnostics,
        energy,
        evidence,
        flowmc,
        flows,
        images,
        moves,
        negatives,
        nets,
        sharding,
        tempering,
        training,
    )
    from numpyro_ebm.energy import EnergyModel  # noqa: F401
    from numpyro_ebm.evidence import Evidence, log_evidence  # noqa: F401
    from numpyro_ebm.flowmc import FlowMCSettings, flowmc_step, run_chains  # noqa: F401
    from numpyro_ebm.kernel import FlowMCKernel, FlowMCState  # noqa: F401
    from numpyro_ebm.training import TrainingDivergedError, TrainResult, train  # noqa: F401


def __getattr__(name: str):
    if name in _NAMES:
        value = getattr(importlib.import_module(f"numpyro_ebm.{_NAMES[name]}"), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"numpyro_ebm.{name}")
    else:
        raise AttributeError(f"module 'numpyro_ebm' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted({*globals(), *__all__})
