"""Gradient-only negatives: ULA (ULA-EBM, PCD), MALA (MALA-PCD) and short-run ULA."""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import ClassVar, Literal

from numpyro_ebm._compat import accepts_old_names
from numpyro_ebm.moves import mala, ula
from numpyro_ebm.negatives.base import (
    NOISE_STARTS,
    AbstractStepNegatives,
    Keep,
    _langevin_run,
    _point_log_density,
    _Run,
)

__all__ = ["ULA", "MALA", "ShortRun"]


class _GradientChains(AbstractStepNegatives):
    """What ULA, MALA and ShortRun share: ``num_mcmc_steps`` of one gradient move (``_move``:
    ``moves.ula`` or ``moves.mala``) from the bank or from noise, and these fields.

    Args:
        step_size: ``eta`` in ``x' = x + eta grad log p(x) + sqrt(2 eta) xi`` (initial, if adapted).
        num_mcmc_steps: moves per training step.
        start: ``"uniform"``, ``"gaussian"`` or ``"base"`` (bank initialisation, or every step's
            start for a non-persistent sampler).
        start_scale: half-width of the uniform start / standard deviation of the Gaussian one.
        keep: ``"last"`` or ``k`` states per chain taken evenly from the trajectory.
    """

    _: KW_ONLY
    step_size: float = 0.01
    num_mcmc_steps: int = 10
    start: Literal["uniform", "gaussian", "base"] = "uniform"
    start_scale: float = 1.0
    keep: Keep = "last"

    flow_training: ClassVar[None] = None
    _positive_fields: ClassVar[tuple[str, ...]] = ("step_size", "start_scale")
    _starts: ClassVar[tuple[str, ...]] = NOISE_STARTS

    def _run(self, key, ebm, flow, positions, step_size) -> _Run:
        steps, thin = self.num_mcmc_steps, self.keep != "last"
        return _langevin_run(self._move, key, _point_log_density(ebm), positions, step_size, steps, thin)


@accepts_old_names
class ULA(_GradientChains):
    """Persistent ULA negatives: ULA-EBM, the PCD baseline (Grenioux et al. 2023, Algorithm 3).

    The paper's baseline trains the untilted EBM: build it as ``EnergyModel(net, None)``. Its
    2-D setting is 512 steps of size ``0.125**2 / 2`` from a uniform start; the 2:1 example uses
    10 steps of 0.01.

    Args:
        step_size: ``eta`` in ``x' = x + eta grad log p(x) + sqrt(2 eta) xi`` (default 0.01).
        num_mcmc_steps: ULA steps per training step (default 10).
        start: ``"uniform"`` (default), ``"gaussian"`` or ``"base"`` (bank initialisation).
        start_scale: half-width of the uniform start / standard deviation of the Gaussian one.
        keep: ``"last"`` or ``k`` states per chain taken evenly from the trajectory.

    Example:
        >>> ULA(step_size=0.01, num_mcmc_steps=10).persistent
        True
    """

    persistent: ClassVar[bool] = True
    _move: ClassVar = staticmethod(ula)


@accepts_old_names
class MALA(_GradientChains):
    """Persistent MALA negatives (MALA-PCD): ULA-EBM with a Metropolis correction.

    Fields as :class:`ULA` (here ``start="gaussian"`` by default), plus ``target_accept``: adapt
    the step size toward this acceptance (``None``, the default: fixed).

    Example:
        >>> MALA(step_size=0.05, num_mcmc_steps=20, target_accept=0.75).num_states
        20
    """

    _: KW_ONLY
    start: Literal["uniform", "gaussian", "base"] = "gaussian"
    target_accept: float | None = None

    persistent: ClassVar[bool] = True
    _move: ClassVar = staticmethod(mala)


@accepts_old_names
class ShortRun(_GradientChains):
    """Non-persistent short-run ULA from noise (Nijkamp et al. 2019): every step starts afresh.

    Fields as :class:`ULA`; ``num_mcmc_steps`` (default 50) counts the ULA steps from the noise start.

    Example:
        >>> ShortRun(step_size=0.01, num_mcmc_steps=50).persistent
        False
    """

    _: KW_ONLY
    num_mcmc_steps: int = 50

    persistent: ClassVar[bool] = False
    _move: ClassVar = staticmethod(ula)
