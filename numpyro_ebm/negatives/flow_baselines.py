"""The flow baselines of the paper: NT-EBM (MALA in a flow's latent space) and CoopFlow."""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import ClassVar

import jax
import paramax
from flowjax.distributions import AbstractDistribution, AbstractTransformed

from numpyro_ebm._compat import accepts_old_names
from numpyro_ebm.energy import EnergyModel
from numpyro_ebm.moves import mala, ula
from numpyro_ebm.negatives.base import (
    AbstractStepNegatives,
    Keep,
    _langevin_run,
    _point_log_density,
    _Run,
)

__all__ = ["NTEBM", "CoopFlow"]


@accepts_old_names
class NTEBM(AbstractStepNegatives):
    """NT-EBM negatives (Nijkamp et al. 2022): MALA in the latent space of the EBM's flow tilt.

    The EBM must be an exponential tilt of a flow ``q = T_# rho``,
    ``EnergyModel(net, flow, trainable_base=True)`` (or frozen, for a pre-trained flow). Pulled
    back by ``T``, ``p(x) ∝ exp(-E(x)) q(x)`` becomes ``exp(-E(T(z))) rho(z)`` in the latent
    space, where MALA runs; the flow is trained with the energy by the contrastive loss. Chains
    start from the flow at every step (``z ~ rho``); the step size adapts toward 75 %
    acceptance (the paper's setting: 128 steps, last state).

    Args:
        step_size: initial latent MALA step size.
        num_mcmc_steps: MALA steps per training step.
        target_accept: adapt the step size toward this acceptance (``None``: fixed).
        keep: ``"last"`` or ``k`` states per chain taken evenly from the trajectory.

    Example:
        >>> NTEBM(num_mcmc_steps=128).flow_training
        'tilt'
    """

    _: KW_ONLY
    step_size: float = 0.01
    num_mcmc_steps: int = 128
    target_accept: float | None = 0.75
    keep: Keep = "last"

    persistent: ClassVar[bool] = False
    flow_training: ClassVar[str] = "tilt"
    start: ClassVar[str] = "flow"

    def validate(self, ebm: EnergyModel, batch_size: int) -> None:
        if not isinstance(ebm, EnergyModel):
            raise TypeError(f"ebm must be a numpyro_ebm.EnergyModel; got {type(ebm).__name__}.")
        if not isinstance(paramax.unwrap(ebm.base), AbstractTransformed):
            raise TypeError(
                "NTEBM samples in the latent space of the EBM's tilt, which must be a flowjax flow: "
                "build the EBM as EnergyModel(net, flow, trainable_base=True)."
            )
        super().validate(ebm, batch_size)

    def _run(self, key, ebm, flow, positions, step_size) -> _Run:
        transform = jax.vmap(flow.bijection.transform)

        def latent_log_density(z):
            return -ebm.net(flow.bijection.transform(z)) + flow.base_dist.log_prob(z)

        # Chains start as flow samples x = T(z); inverting recovers their z.
        z = jax.vmap(flow.bijection.inverse)(positions)
        run = _langevin_run(
            mala, key, latent_log_density, z, step_size, self.num_mcmc_steps, self.keep != "last"
        )
        trajectory = None if run.trajectory is None else jax.vmap(transform)(run.trajectory)
        return run._replace(final=transform(run.final), trajectory=trajectory)


@accepts_old_names
class CoopFlow(AbstractStepNegatives):
    """CoopFlow negatives (Xie et al. 2022): flow samples refined by noise-free Langevin.

    Every step draws fresh flow samples and moves them ``num_mcmc_steps`` times by
    ``x' = x + eta grad log p(x)`` (``moves.ula`` with ``noise_scale=0``, as the CoopFlow authors
    advise); the refined samples are the negatives, and the trainer fits the flow to them. The
    paper's settings: 256 steps of 5e-4 (2-D) or 1e-4 (mixtures), flow pre-trained on the data.

    Args:
        flow: the (pre-trained) flow.
        step_size: gradient step size.
        num_mcmc_steps: refinement steps.
        keep: ``"last"`` or ``k`` states per chain taken evenly from the trajectory.

    Example:
        >>> import jax
        >>> from numpyro_ebm.flows import default_flow
        >>> CoopFlow(default_flow(jax.random.key(0), 2), step_size=5e-4, num_mcmc_steps=256).persistent
        False
    """

    flow: AbstractDistribution
    _: KW_ONLY
    step_size: float = 5e-4
    num_mcmc_steps: int = 256
    keep: Keep = "last"

    persistent: ClassVar[bool] = False
    flow_training: ClassVar[str] = "negatives"
    start: ClassVar[str] = "flow"

    def _run(self, key, ebm, flow, positions, step_size) -> _Run:
        steps, thin = self.num_mcmc_steps, self.keep != "last"
        return _langevin_run(
            ula, key, _point_log_density(ebm), positions, step_size, steps, thin, noise_scale=0.0
        )
