"""numpyro-ebm: flowMC as a NumPyro kernel, and balanced EBM training with adaptive flow sampling."""

from numpyro_ebm import flowmc, flows, moves
from numpyro_ebm.flowmc import flowmc_step
from numpyro_ebm.kernel import FlowMCKernel, FlowMCState

__version__ = "0.1.0"

__all__ = ["FlowMCKernel", "FlowMCState", "flowmc", "flowmc_step", "flows", "moves"]
