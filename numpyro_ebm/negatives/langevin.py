"""Gradient-only negatives: ULA (ULA-EBM, PCD), MALA (MALA-PCD) and short-run ULA."""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import ClassVar, Literal

from numpyro_ebm.moves import mala, ula
from numpyro_ebm.negatives.base import (
    NOISE_STARTS,
    AbstractNegatives,
    Keep,
    _langevin_run,
    _point_log_density,
    _Run,
)

__all__ = ["ULA", "MALA", "ShortRun"]


class _GradientChains(AbstractNegatives):
    """What ULA, MALA and ShortRun share: ``n_steps`` of one gradient move from the bank or noise.

    A subclass declares its fields (``step_size``, ``n_steps``, ``start``, ``start_scale``,
    ``keep``), ``persistent`` and ``_move`` (``moves.ula`` or ``moves.mala``).
    """

    flow_training: ClassVar[None] = None
    _positive_fields: ClassVar[tuple[str, ...]] = ("step_size", "start_scale")
    _count_fields: ClassVar[tuple[str, ...]] = ("n_steps",)
    _starts: ClassVar[tuple[str, ...]] = NOISE_STARTS

    @property
    def n_states(self) -> int:
        return self.n_steps

    def _run(self, key, ebm, flow, positions, step_size) -> _Run:
        return _langevin_run(
            self._move, key, _point_log_density(ebm), positions, step_size, self.n_steps, self.keep != "last"
        )


class ULA(_GradientChains):
    """Persistent ULA negatives: ULA-EBM, the PCD baseline (Grenioux et al. 2023, Algorithm 3).

    The paper's baseline trains the untilted EBM: build it as ``EnergyModel(net, None)``. Its
    2-D setting is 512 steps of size ``0.125**2 / 2`` from a uniform start; the 2:1 example uses
    10 steps of 0.01.

    Args:
        step_size: ``eta`` in ``x' = x + eta grad log p(x) + sqrt(2 eta) xi``.
        n_steps: ULA steps per training step.
        start: ``"uniform"``, ``"gaussian"`` or ``"base"`` (bank initialisation).
        start_scale: half-width of the uniform start / standard deviation of the Gaussian one.
        keep: ``"last"`` or ``k`` states per chain taken evenly from the trajectory.

    Example:
        >>> ULA(step_size=0.01, n_steps=10).persistent
        True
    """

    _: KW_ONLY
    step_size: float = 0.01
    n_steps: int = 10
    start: Literal["uniform", "gaussian", "base"] = "uniform"
    start_scale: float = 1.0
    keep: Keep = "last"

    persistent: ClassVar[bool] = True
    _move: ClassVar = staticmethod(ula)


class MALA(_GradientChains):
    """Persistent MALA negatives (MALA-PCD): ULA-EBM with a Metropolis correction.

    Args:
        step_size: initial MALA step size.
        n_steps: MALA steps per training step.
        target_accept: adapt the step size toward this acceptance (``None``: fixed).
        start: ``"gaussian"``, ``"uniform"`` or ``"base"``.
        start_scale: scale of the uniform / Gaussian start.
        keep: ``"last"`` or ``k`` states per chain taken evenly from the trajectory.

    Example:
        >>> MALA(step_size=0.05, n_steps=20, target_accept=0.75).n_states
        20
    """

    _: KW_ONLY
    step_size: float = 0.01
    n_steps: int = 10
    target_accept: float | None = None
    start: Literal["uniform", "gaussian", "base"] = "gaussian"
    start_scale: float = 1.0
    keep: Keep = "last"

    persistent: ClassVar[bool] = True
    _move: ClassVar = staticmethod(mala)


class ShortRun(_GradientChains):
    """Non-persistent short-run ULA from noise (Nijkamp et al. 2019): every step starts afresh.

    Args:
        step_size: ULA step size.
        n_steps: ULA steps from the noise start.
        start: ``"uniform"``, ``"gaussian"`` or ``"base"``.
        start_scale: scale of the noise start.
        keep: ``"last"`` or ``k`` states per chain taken evenly from the trajectory.

    Example:
        >>> ShortRun(step_size=0.01, n_steps=50).persistent
        False
    """

    _: KW_ONLY
    step_size: float = 0.01
    n_steps: int = 50
    start: Literal["uniform", "gaussian", "base"] = "uniform"
    start_scale: float = 1.0
    keep: Keep = "last"

    persistent: ClassVar[bool] = False
    _move: ClassVar = staticmethod(ula)
