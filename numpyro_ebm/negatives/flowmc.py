"""flowMC negatives (flowMC-EBM) and the check that its EBM and flow start balanced."""

from __future__ import annotations

import warnings
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import paramax
from flowjax.distributions import AbstractDistribution
from jaxtyping import Array, PRNGKeyArray

from numpyro_ebm._compat import old_name, renamed_kwargs
from numpyro_ebm._validate import fraction
from numpyro_ebm.energy import EnergyModel, as_numpyro
from numpyro_ebm.flowmc import FlowMCSettings, run_chains
from numpyro_ebm.moves import init_chains
from numpyro_ebm.negatives.base import AbstractNegatives, Keep, _point_log_density, _Run

__all__ = ["FlowMC", "DefensiveProposal", "UnbalancedWarning"]


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


class DefensiveProposal(eqx.Module):
    """The global moves' proposal ``q = (1 - a) flow + a rho``: the flow, mixed with the EBM's tilt.

    A mixture with a fixed component ``rho`` (Hesterberg's defensive importance sampling): i-SIR
    and IMH stay exact for it (``moves.isir``/``moves.imh`` only call ``sample_and_log_prob`` and
    ``log_prob``), and since ``p = exp(-E) rho / Z``, the weights ``p / q <= exp(-E) / (a Z)`` are
    bounded whenever ``E`` is bounded below, whatever the flow has lost: the global move is then
    uniformly ergodic (Mengersen & Tweedie 1996), and a mode the flow (and the bank) no longer
    visit is re-found from ``rho`` in proportion to its mass.

    Attributes:
        flow: the flow, a distribution of shape ``(dim,)``.
        reference: the tilt ``rho`` as a NumPyro distribution of event shape ``(dim,)``.
        fraction: ``a``, the probability that a proposal comes from ``rho``, in ``(0, 1)``.
    """

    flow: AbstractDistribution
    reference: object
    fraction: float = eqx.field(static=True)

    def log_prob(self, x: Array) -> Array:
        """``log q(x)`` for ``x`` of shape ``(..., dim)``; returns ``(...)``."""
        return jnp.logaddexp(
            jnp.log1p(-self.fraction) + self.flow.log_prob(x),
            jnp.log(self.fraction) + self.reference.log_prob(x),
        )

    def sample_and_log_prob(self, key: PRNGKeyArray, shape: tuple[int, ...]) -> tuple[Array, Array]:
        """``shape`` independent draws of ``q``, shape ``(*shape, dim)``, and their ``log q``."""
        key_flow, key_ref, key_pick = jax.random.split(key, 3)
        from_flow = self.flow.sample(key_flow, shape)
        from_ref = jnp.asarray(self.reference.sample(key_ref, shape), from_flow.dtype)
        pick = jax.random.bernoulli(key_pick, self.fraction, shape)
        x = jnp.where(pick[..., None], from_ref, from_flow)
        return x, self.log_prob(x)


class FlowMC(AbstractNegatives):
    """flowMC negatives (flowMC-EBM, Grenioux et al. 2023, Algorithm 1): persistent chains, flow moves.

    Each call runs ``num_cycles`` flowMC cycles (:func:`numpyro_ebm.flowmc.run_chains`: one global
    move, ``"isir"`` or ``"imh"``, then ``num_local_steps`` MALA steps) on chains drawn from the
    bank. The trainer fits the flow to the negatives (one optax step of forward KL per EBM step).
    The transition is a :class:`~numpyro_ebm.flowmc.FlowMCSettings`, by default the library's
    one set: i-SIR with 32 particles, 4 MALA steps per cycle, and a MALA step size that adapts
    toward 0.574 acceptance by the x1.05 rule (``numpyro_ebm.adaptation``), from 0.1. A fixed step
    over-mixes nothing and under-mixes much: the paper's 0.01 gave acceptance 1.00 in d = 16
    (docs/guide-training.md, "Why the weights were off"). ``num_cycles=2`` makes the paper's 2:1
    example, 10 steps = [1 i-SIR, 4 MALA] x 2; its 2-D tasks use ``num_cycles=1,
    num_local_steps=127, keep=4``.

    Args:
        flow: initial flow (identity-initialised, e.g. ``default_flow(..., identity_init=True)``).
        settings: the transition (``global_move`` must be ``"isir"`` or ``"imh"``); default
            ``FlowMCSettings()``.
        num_cycles: flowMC cycles per training step.
        keep: ``"last"`` or ``k`` states per chain taken evenly from the ``num_cycles *
            (1 + num_local_steps)`` states of the trajectory.
        reference_fraction: mode recovery. ``0`` (default): the global moves propose from the
            flow alone. ``a`` in ``(0, 1)``: from :class:`DefensiveProposal`, the flow mixed with
            the EBM's tilt ``rho`` (a proposal from ``rho`` with probability ``a``), so a bank
            (and a flow trained on it) that has lost a mode re-finds it in proportion to its
            mass. The chains' stationary law stays the EBM (i-SIR and IMH are exact for any
            proposal with full support); each proposal costs one more density evaluation (of
            ``rho``). Needs a tilted EBM. Works while ``rho`` puts some mass on every mode
            (low dimension, or ``rho`` fitted to the data): with 0.25, a bank and a flow
            entirely in the light mode of a 2-D 2:1 mixture had the heavy mode at 0.64 after 10
            cycles (docs/guide-training.md, "A bank that lost a mode").
        **fields: each replaces its field of ``settings``: ``num_particles``, ``global_move``,
            ``step_size``, ``num_local_steps``, ``particle_batch_size``, and ``target_accept``
            (the MALA acceptance the step size adapts toward; ``None``: a fixed step size).

    Example:
        >>> import jax
        >>> from numpyro_ebm.flows import default_flow
        >>> sampler = FlowMC(default_flow(jax.random.key(0), 2, identity_init=True))
        >>> sampler.persistent, sampler.flow_training, sampler.num_states, sampler.target_accept
        (True, 'negatives', 10, 0.574)
        >>> FlowMC(sampler.flow, num_particles=8, target_accept=None).settings.adapt_step_size
        False

        Mode recovery: a quarter of the proposals drawn from the EBM's tilt.

        >>> import jax.numpy as jnp
        >>> from numpyro_ebm.energy import EnergyModel
        >>> from numpyro_ebm.nets import ToyNet
        >>> ebm = EnergyModel(ToyNet(2, key=jax.random.key(1)), sampler.flow.base_dist)
        >>> recovering = FlowMC(sampler.flow, reference_fraction=0.25, num_particles=8)
        >>> out = recovering(jax.random.key(2), ebm, sampler.flow, jnp.zeros((16, 2)),
        ...                  recovering.init_step_size())
        >>> out.final.shape, recovering.reference_fraction
        ((16, 2), 0.25)
    """

    flow: AbstractDistribution
    settings: FlowMCSettings
    num_cycles: int
    keep: Keep
    reference_fraction: float = eqx.field(static=True)

    persistent: ClassVar[bool] = True
    flow_training: ClassVar[str] = "negatives"
    start: ClassVar[str] = "flow"
    _count_fields: ClassVar[tuple[str, ...]] = ("num_cycles",)

    @renamed_kwargs()
    def __init__(
        self,
        flow: AbstractDistribution,
        settings: FlowMCSettings | None = None,
        *,
        num_cycles: int = 2,
        keep: Keep = "last",
        reference_fraction: float = 0.0,
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
        self.flow, self.num_cycles, self.keep = flow, num_cycles, keep
        self.reference_fraction = fraction(reference_fraction, "FlowMC: reference_fraction")

    def __check_init__(self):
        if self.settings.global_move not in ("isir", "imh"):
            raise ValueError(
                f"FlowMC: global_move must be 'isir' or 'imh'; got {self.settings.global_move!r}."
            )

    @classmethod
    @renamed_kwargs()
    def from_settings(
        cls, flow: AbstractDistribution, settings: FlowMCSettings, *, num_cycles: int = 2, keep: Keep = "last"
    ) -> FlowMC:
        """``FlowMC(flow, settings, num_cycles=num_cycles, keep=keep)`` (kept for older code)."""
        return cls(flow, settings, num_cycles=num_cycles, keep=keep)

    # The transition's fields, read as before settings held them.
    step_size = property(lambda self: self.settings.step_size)
    num_local_steps = property(lambda self: self.settings.num_local_steps)
    num_particles = property(lambda self: self.settings.num_particles)
    global_move = property(lambda self: self.settings.global_move)
    particle_batch_size = property(lambda self: self.settings.particle_batch_size)
    n_local_steps = old_name("num_local_steps")
    n_particles = old_name("num_particles")
    n_cycles = old_name("num_cycles")

    @property
    def target_accept(self) -> float | None:
        """The MALA acceptance the step size adapts toward; ``None`` with a fixed step size."""
        return self.settings.target_accept_prob if self.settings.adapt_step_size else None

    @property
    def num_states(self) -> int:
        return self.num_cycles * (1 + self.num_local_steps)

    def validate(self, ebm: EnergyModel, batch_size: int) -> None:
        super().validate(ebm, batch_size)
        self._check_tilt(ebm)
        _warn_if_unbalanced(ebm, self.flow)

    def _check_tilt(self, ebm: EnergyModel) -> None:
        if self.reference_fraction > 0 and ebm.base is None:
            raise ValueError(
                "FlowMC: reference_fraction > 0 proposes from the EBM's tilt rho, and this EBM is "
                "untilted (base=None); build it as EnergyModel(net, flow.base_dist)."
            )

    def _run(self, key, ebm, flow, positions, step_size) -> _Run:
        logdensity_fn = _point_log_density(ebm)
        chains = init_chains(positions, logdensity_fn)
        if self.reference_fraction > 0:
            self._check_tilt(ebm)
            flow = DefensiveProposal(flow, as_numpyro(ebm.base), self.reference_fraction)
        chains, info = run_chains(
            key,
            chains,
            logdensity_fn,
            flow,
            self.settings,
            self.num_cycles,
            step_size=step_size,
            keep_trajectory=self.keep != "last",
        )
        return _Run(
            chains.position,
            info.trajectory,
            jnp.mean(info.local_accept_prob),
            jnp.mean(info.global_accept_prob),
        )
