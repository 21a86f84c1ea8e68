"""Negative samplers for contrastive EBM training: flowMC-EBM and the paper's baselines.

Every sampler moves a batch of chains toward the current EBM ``p(x) ∝ exp(-E(x)) rho(x)``
(``EnergyModel.log_density``; an untilted EBM, ``EnergyModel(net, None)``, gives the plain
``exp(-E)`` of ULA-EBM) with the pure moves of :mod:`numpyro_ebm.moves`, and returns the
negatives. :class:`AbstractNegatives` (``negatives.base``) holds everything shared (argument
checks, where chains start, which states become negatives, step-size adaptation); a concrete
sampler holds only its math (``_run``) and declares three things:

* ``persistent``: chains continue from the trainer's bank (PCD) or restart at every step;
* ``flow_training``: ``"negatives"`` (the trainer fits the sampler's flow to the negatives by
  forward KL), ``"tilt"`` (the flow is the EBM's tilt, trained with the energy) or ``None``;
* ``start``: how chains (and the bank) start: ``"flow"``, ``"base"`` (samples of the tilt
  ``rho``), ``"uniform"`` (``U[-start_scale, start_scale]^dim``) or ``"gaussian"``
  (``N(0, start_scale^2 I)``).

Modules: ``base`` (the base class), ``flowmc`` (:class:`FlowMC`), ``langevin`` (:class:`ULA`,
:class:`MALA`, :class:`ShortRun`), ``flow_baselines`` (:class:`NTEBM`, :class:`CoopFlow`).
Grenioux et al. 2023, Tables 4, 5, 7 give the settings quoted in each class.
"""

from numpyro_ebm.negatives.base import NOISE_STARTS, STARTS, AbstractNegatives, NegativeSample  # noqa: F401
from numpyro_ebm.negatives.flow_baselines import NTEBM, CoopFlow
from numpyro_ebm.negatives.flowmc import (  # noqa: F401
    DefensiveProposal,
    FlowMC,
    UnbalancedWarning,
    _warn_if_unbalanced,
)
from numpyro_ebm.negatives.langevin import MALA, ULA, ShortRun

__all__ = [
    "AbstractNegatives",
    "NegativeSample",
    "FlowMC",
    "DefensiveProposal",
    "ULA",
    "MALA",
    "ShortRun",
    "NTEBM",
    "CoopFlow",
    "UnbalancedWarning",
]
