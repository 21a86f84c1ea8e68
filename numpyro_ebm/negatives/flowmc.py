"""flowMC negatives (flowMC-EBM) and the check that its EBM and flow start balanced."""

from __future__ import annotations

import warnings
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import paramax
from flowjax.distributions import AbstractDistribution

from numpyro_ebm.energy import EnergyModel, as_numpyro
from numpyro_ebm.flowmc import FlowMCSettings, run_chains
from numpyro_ebm.moves import init_chains
from numpyro_ebm.negatives.base import AbstractNegatives, Keep, _point_log_density, _Run

__all__ = ["FlowMC", "UnbalancedWarning"]


class UnbalancedWarning(UserWarning):
    """flowMC-EBM's tilt is not its flow's base: EBM and flow disagree at initialisation."""


def _warn_if_unbalanced(ebm: EnergyModel, flow) -> None:
    """Warn when the EBM's tilt ``rho`` is neither the flow's base nor the flow itself.

    A warning, not an error: any tilt gives a valid model (``rho`` is the reference measure of
    the EBM) and any flow a valid proposal (i-SIR and IMH are exact MCMC for every proposal with
    full support), so training stays correct. What is lost is the *balance* of flowMC-EBM
    (Grenioux et al. 2023, eq. 6): with ``rho`` the base of an identity-initialised flow and
    ``E = 0``, EBM and flow coincide at step 0, so the first negatives are exact draws and the
    i-SIR weights start uniform. A deliberately broader tilt is legitimate, hence no error.

    The densities are compared at 16 draws of the tilt, so a flowjax ``StandardNormal`` and a
    NumPyro ``Normal(0, 1).expand([dim]).to_event(1)`` count as equal, and so does a tilt that is
    the flow at initialisation without being its base (the image flows: a fixed pre-processing
    after the trained layers, ``images.image_tilt``).
    """
    fix = "build the EBM as EnergyModel(net, flow.base_dist) to start balanced"
    if ebm.base is None:
        warnings.warn(
            f"FlowMC with an untilted EBM (base=None): exp(-E) is not the flow at initialisation and "
            f"may be improper while E is near 0; {fix}.",
            UnbalancedWarning,
            stacklevel=4,
        )
        return
    if ebm.trainable_base:
        return
    flow = paramax.unwrap(flow)
    candidates = [d for d in (getattr(flow, "base_dist", None), flow) if d is not None]
    try:
        tilt = as_numpyro(ebm.base)
        probe = jnp.asarray(tilt.sample(jax.random.key(0), (16,)), jnp.result_type(float))
        tilt_logp = np.asarray(tilt.log_prob(probe))
        matches = any(  # lazily: the base first, the (costlier) flow only if needed
            np.allclose(tilt_logp, np.asarray(as_numpyro(d).log_prob(probe)), rtol=1e-4, atol=1e-4)
            for d in candidates
        )
    except Exception:  # noqa: BLE001 - a tilt we cannot sample or evaluate eagerly: no verdict
        return
    if not matches:
        warnings.warn(
            f"FlowMC: the EBM's tilt {type(paramax.unwrap(ebm.base)).__name__} is neither the flow's "
            f"base nor the flow, so EBM and flow disagree at initialisation (training stays valid, "
            f"but loses flowMC-EBM's balance); {fix}.",
            UnbalancedWarning,
            stacklevel=4,
        )


class FlowMC(AbstractNegatives):
    """flowMC negatives (flowMC-EBM, Grenioux et al. 2023, Algorithm 1): persistent chains, flow moves.

    Each call runs ``n_cycles`` flowMC cycles (:func:`numpyro_ebm.flowmc.run_chains`: one global
    move, ``"isir"`` or ``"imh"``, then ``n_local_steps`` MALA steps) on chains drawn from the
    bank. The trainer fits the flow to the negatives (one optax step of forward KL per EBM step).
    The transition is a :class:`~numpyro_ebm.flowmc.FlowMCSettings`, by default the library's
    one set: i-SIR with 32 particles, 4 MALA steps per cycle, and a MALA step size that adapts
    toward 0.574 acceptance by the x1.05 rule (``numpyro_ebm.adaptation``), from 0.1. A fixed step
    over-mixes nothing and under-mixes much: the paper's 0.01 gave acceptance 1.00 in d = 16
    (docs/guide-training.md, "Why the weights were off"). ``n_cycles=2`` makes the paper's 2:1
    example, 10 steps = [1 i-SIR, 4 MALA] x 2; its 2-D tasks use ``n_cycles=1,
    n_local_steps=127, keep=4``.

    Args:
        flow: initial flow (identity-initialised, e.g. ``default_flow(..., identity_init=True)``).
        settings: the transition (``global_move`` must be ``"isir"`` or ``"imh"``); default
            ``FlowMCSettings()``.
        n_cycles: flowMC cycles per training step.
        keep: ``"last"`` or ``k`` states per chain taken evenly from the ``n_cycles *
            (1 + n_local_steps)`` states of the trajectory.
        **fields: each replaces its field of ``settings``: ``n_particles``, ``global_move``,
            ``step_size``, ``n_local_steps``, ``particle_batch_size``, and ``target_accept``
            (the MALA acceptance the step size adapts toward; ``None``: a fixed step size).

    Example:
        >>> import jax
        >>> from numpyro_ebm.flows import default_flow
        >>> sampler = FlowMC(default_flow(jax.random.key(0), 2, identity_init=True))
        >>> sampler.persistent, sampler.flow_training, sampler.n_states, sampler.target_accept
        (True, 'negatives', 10, 0.574)
        >>> FlowMC(sampler.flow, n_particles=8, target_accept=None).settings.adapt_step_size
        False
    """

    flow: AbstractDistribution
    settings: FlowMCSettings
    n_cycles: int
    keep: Keep

    persistent: ClassVar[bool] = True
    flow_training: ClassVar[str] = "negatives"
    start: ClassVar[str] = "flow"
    _count_fields: ClassVar[tuple[str, ...]] = ("n_cycles",)

    def __init__(
        self,
        flow: AbstractDistribution,
        settings: FlowMCSettings | None = None,
        *,
        n_cycles: int = 2,
        keep: Keep = "last",
        **fields,
    ):
        if settings is not None and not isinstance(settings, FlowMCSettings):
            raise TypeError(f"FlowMC: settings must be a FlowMCSettings; got {type(settings).__name__}.")
        if "target_accept" in fields:  # None: a fixed step size
            target = fields.pop("target_accept")
            fields["adapt_step_size"] = target is not None
            if target is not None:
                fields["target_accept_prob"] = target
        try:
            self.settings = (FlowMCSettings() if settings is None else settings).replace(**fields)
        except (TypeError, ValueError) as err:
            raise type(err)(f"FlowMC: {err}") from None
        self.flow, self.n_cycles, self.keep = flow, n_cycles, keep

    def __check_init__(self):
        if self.settings.global_move not in ("isir", "imh"):
            raise ValueError(
                f"FlowMC: global_move must be 'isir' or 'imh'; got {self.settings.global_move!r}."
            )

    @classmethod
    def from_settings(
        cls, flow: AbstractDistribution, settings: FlowMCSettings, *, n_cycles: int = 2, keep: Keep = "last"
    ) -> FlowMC:
        """``FlowMC(flow, settings, n_cycles=n_cycles, keep=keep)`` (kept for older code)."""
        return cls(flow, settings, n_cycles=n_cycles, keep=keep)

    # The transition's fields, read as before settings held them.
    step_size = property(lambda self: self.settings.step_size)
    n_local_steps = property(lambda self: self.settings.n_local_steps)
    n_particles = property(lambda self: self.settings.n_particles)
    global_move = property(lambda self: self.settings.global_move)
    particle_batch_size = property(lambda self: self.settings.particle_batch_size)

    @property
    def target_accept(self) -> float | None:
        """The MALA acceptance the step size adapts toward; ``None`` with a fixed step size."""
        return self.settings.target_accept_prob if self.settings.adapt_step_size else None

    @property
    def n_states(self) -> int:
        return self.n_cycles * (1 + self.n_local_steps)

    def validate(self, ebm: EnergyModel, batch_size: int) -> None:
        super().validate(ebm, batch_size)
        _warn_if_unbalanced(ebm, self.flow)

    def _run(self, key, ebm, flow, positions, step_size) -> _Run:
        log_density = _point_log_density(ebm)
        chains = init_chains(positions, log_density)
        chains, info = run_chains(
            key,
            chains,
            log_density,
            flow,
            self.settings,
            self.n_cycles,
            step_size=step_size,
            keep_trajectory=self.keep != "last",
        )
        return _Run(
            chains.position,
            info.trajectory,
            jnp.mean(info.local_accept_prob),
            jnp.mean(info.global_accept_prob),
        )
