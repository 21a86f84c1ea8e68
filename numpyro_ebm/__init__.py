"""numpyro-ebm: flowMC as a NumPyro kernel, and balanced EBM training with adaptive flow sampling.

Example:
    >>> import numpyro_ebm as ne
    >>> sorted(ne.negatives.__all__)[:3]
    ['AbstractNegatives', 'CoopFlow', 'FlowMC']
"""

from numpyro_ebm import (
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
from numpyro_ebm.energy import EnergyModel
from numpyro_ebm.evidence import Evidence, log_evidence
from numpyro_ebm.flowmc import FlowMCSettings, flowmc_step, run_chains
from numpyro_ebm.kernel import FlowMCKernel, FlowMCState
from numpyro_ebm.training import TrainingDivergedError, TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "EnergyModel",
    "Evidence",
    "FlowMCKernel",
    "FlowMCSettings",
    "FlowMCState",
    "TrainResult",
    "TrainingDivergedError",
    "checkpoints",
    "datasets",
    "diagnostics",
    "energy",
    "evidence",
    "flowmc",
    "flowmc_step",
    "flows",
    "images",
    "log_evidence",
    "moves",
    "negatives",
    "nets",
    "sharding",
    "run_chains",
    "tempering",
    "train",
    "training",
]
