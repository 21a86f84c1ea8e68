"""Mode discovery before warmup: adaptive tempered SMC with flowMC moves.

Local samplers report the modes in the proportions in which their chains *start*. Tempered
sequential Monte Carlo (Del Moral, Doucet & Jasra 2006) instead starts from a reference ``ref``
that covers the space (the prior of a NumPyro model) and follows the path

    pi_beta(z) ∝ ref(z)^(1 - beta) pi(z)^beta = ref(z) L(z)^beta,   beta: 0 -> 1,

with ``L = pi / ref`` (for a NumPyro model the likelihood, observed and factor sites; Jacobians
cancel). At each level the next ``beta`` is set by bisection so that the effective sample size
of the incremental weights ``L^(beta' - beta)`` is ``ess_fraction`` of the particles; the
particles are resampled (systematic), the flow is fitted to them (forward KL), and they move by
``num_mcmc_steps`` flowMC transitions (:func:`~numpyro_ebm.flowmc.flowmc_step`) that leave
``pi_beta`` invariant. The weights carry the relative mass of the modes from level to level, so
modes the reference covers are found with the right weights, and the mean incremental weights
multiply to the evidence ``Z = ∫ ref L`` (unbiased; ``log_z`` is its log).

:class:`~numpyro_ebm.kernel.FlowMCKernel` runs this in ``init`` (``tempering="smc"``, the default
for models): its chains then start from the final particles (its own flow restarts, standardised
to them), and the usual warmup and frozen production chain follow unchanged.
"""

from numpyro_ebm.tempering.reference import (
    gaussian_reference,
    initial_particles,
    prior_reference,
    reference_logdensity,
)
from numpyro_ebm.tempering.smc import (
    SMCResult,
    TemperedSMC,
    discover_modes,
    systematic_resample,
    tempered_smc,
)

__all__ = [
    "TemperedSMC",
    "SMCResult",
    "tempered_smc",
    "systematic_resample",
    "discover_modes",
    "prior_reference",
    "gaussian_reference",
    "reference_logdensity",
    "initial_particles",
]
