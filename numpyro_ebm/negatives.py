"""Negative samplers for contrastive EBM training: flowMC-EBM and the paper's baselines.

Every sampler moves a batch of chains toward the current EBM ``p(x) ∝ exp(-E(x)) rho(x)``
(``EnergyModel.log_density``; an untilted EBM, ``EnergyModel(net, None)``, gives the plain
``exp(-E)`` of ULA-EBM) with the pure moves of :mod:`numpyro_ebm.moves`, and returns the
negatives. :class:`AbstractNegatives` holds everything shared (argument checks, where chains
start, which states become negatives, step-size adaptation); a concrete sampler holds only its
math (``_run``) and declares three things:

* ``persistent``: chains continue from the trainer's bank (PCD) or restart at every step;
* ``flow_training``: ``"negatives"`` (the trainer fits the sampler's flow to the negatives by
  forward KL), ``"tilt"`` (the flow is the EBM's tilt, trained with the energy) or ``None``;
* ``start``: how chains (and the bank) start: ``"flow"``, ``"base"`` (samples of the tilt
  ``rho``), ``"uniform"`` (``U[-start_scale, start_scale]^dim``) or ``"gaussian"``
  (``N(0, start_scale^2 I)``).

Grenioux et al. 2023, Tables 4, 5, 7 give the settings quoted in each class.
"""

from __future__ import annotations

import abc
import math
import numbers
import warnings
from dataclasses import KW_ONLY
from typing import ClassVar, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import paramax
from flowjax.distributions import AbstractDistribution, AbstractTransformed
from jaxtyping import Array, Float, Int, PRNGKeyArray

from numpyro_ebm.energy import EnergyModel, as_numpyro
from numpyro_ebm.flowmc import check_flowmc_settings, flowmc_step
from numpyro_ebm.moves import init_chains, mala, ula

__all__ = [
    "AbstractNegatives",
    "NegativeSample",
    "FlowMC",
    "ULA",
    "MALA",
    "ShortRun",
    "NTEBM",
    "CoopFlow",
    "UnbalancedWarning",
]

Keep = Literal["last"] | int
STARTS = ("flow", "base", "uniform", "gaussian")
NOISE_STARTS = ("base", "uniform", "gaussian")

# Step-size adaptation toward `target_accept` (Grenioux et al.'s code, flow_mcmc/mcmc/utils.py):
# multiply or divide by 1.05 when the batch acceptance misses the target by more than 0.03.
_ADAPT_FACTOR = 1.05
_ADAPT_TOLERANCE = 0.03


class NegativeSample(NamedTuple):
    """What one call of a negative sampler returns.

    Attributes:
        final: the chains' last states, written back to the bank, shape ``(chains, dim)``.
        negatives: the negative samples, shape ``(batch, dim)`` (``chains * k`` with ``keep=k``).
        local_accept: mean acceptance of the local (MALA/ULA) steps, scalar.
        global_accept: mean acceptance of the global flow moves, scalar; NaN without them.
        step_size: the step size for the next call (adapted if the sampler has a target).
    """

    final: Float[Array, "chains dim"]
    negatives: Float[Array, "batch dim"]
    local_accept: Float[Array, ""]
    global_accept: Float[Array, ""]
    step_size: Float[Array, ""]


class _Run(NamedTuple):
    final: Array
    trajectory: Array | None  # (states, chains, dim) when negatives are thinned from it
    local_accept: Array
    global_accept: Array


def _is_positive_number(value) -> bool:
    return (
        isinstance(value, numbers.Real)  # NumPy scalars included
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


class AbstractNegatives(eqx.Module):
    """Base class of the negative samplers: the shared checks and bookkeeping.

    Concrete samplers set the class variables below, list their positive-real and
    positive-integer fields in ``_positive_fields`` / ``_count_fields`` (checked here, once, at
    construction) and implement ``_run`` and ``n_states``.

    Attributes:
        persistent: chains continue from the bank (``True``) or restart each step.
        flow_training: ``"negatives"``, ``"tilt"`` or ``None`` (see the module docstring).
        start: how chains start: ``"flow"``, ``"base"``, ``"uniform"`` or ``"gaussian"``.
        keep: ``"last"`` (negatives are the final states) or ``k``: ``k`` states taken evenly
            from each chain's trajectory, the last included, from ``batch_size // k`` chains
            (the paper's "subsampling by k").
        step_size: initial step size of the local moves.
    """

    persistent: eqx.AbstractClassVar[bool]
    flow_training: eqx.AbstractClassVar[Literal["negatives", "tilt"] | None]
    start: eqx.AbstractVar[str]
    keep: eqx.AbstractVar[str | int]
    step_size: eqx.AbstractVar[float]

    _positive_fields: ClassVar[tuple[str, ...]] = ("step_size",)
    _count_fields: ClassVar[tuple[str, ...]] = ()
    _starts: ClassVar[tuple[str, ...]] = STARTS

    def __check_init__(self):
        for name in self._positive_fields:
            value = getattr(self, name)
            if not _is_positive_number(value):
                raise ValueError(
                    f"{type(self).__name__}: {name} must be a positive finite number; got {value!r}."
                )
        for name in self._count_fields:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive integer; got {value!r}.")
        target = getattr(self, "target_accept", None)
        if target is not None and not (_is_positive_number(target) and target < 1):
            raise ValueError(
                f"{type(self).__name__}: target_accept must be in (0, 1) or None; got {target!r}."
            )
        if self.start not in self._starts:
            raise ValueError(
                f"{type(self).__name__}: start must be one of {self._starts}; got {self.start!r}."
            )
        if self.keep != "last" and not (
            isinstance(self.keep, int) and not isinstance(self.keep, bool) and self.keep >= 1
        ):
            raise ValueError(
                f"{type(self).__name__}: keep must be 'last' or a positive integer k (k states taken "
                f"evenly from each trajectory); got {self.keep!r}."
            )
        if isinstance(self.keep, int) and self.keep > self.n_states:
            raise ValueError(
                f"{type(self).__name__}: keep={self.keep} exceeds the {self.n_states} states of one "
                "trajectory; lower keep or run more steps."
            )

    # ----------------------------------------------------------------------------- to implement
    @property
    @abc.abstractmethod
    def n_states(self) -> int:
        """States in one chain's trajectory per call (what ``keep=k`` chooses from)."""

    @abc.abstractmethod
    def _run(
        self,
        key: PRNGKeyArray,
        ebm: EnergyModel,
        flow: AbstractDistribution | None,
        positions: Float[Array, "chains dim"],
        step_size: Float[Array, ""],
    ) -> _Run:
        """The sampler's math: move ``positions`` toward the EBM."""

    # ------------------------------------------------------------------------------- shared
    @property
    def initial_flow(self) -> AbstractDistribution | None:
        """The flow this sampler brings to training (``None`` if it has none of its own)."""
        return getattr(self, "flow", None)

    def flow_for(self, ebm: EnergyModel, flow: AbstractDistribution | None) -> AbstractDistribution | None:
        """The flow the sampler uses given the current EBM and the trainer's flow."""
        if self.flow_training == "tilt":
            return paramax.unwrap(ebm.base)
        return flow

    def n_chains(self, batch_size: int) -> int:
        """Chains to move per training step so that ``batch_size`` negatives come out."""
        return batch_size if self.keep == "last" else batch_size // self.keep

    def validate(self, ebm: EnergyModel, batch_size: int) -> None:
        """Raise a ``ValueError``/``TypeError`` if this sampler cannot train ``ebm``; no tracing."""
        if not isinstance(ebm, EnergyModel):
            raise TypeError(f"ebm must be a numpyro_ebm.EnergyModel; got {type(ebm).__name__}.")
        flow = self.flow_for(ebm, self.initial_flow)
        if self.start == "flow" or self.flow_training is not None:
            if not isinstance(flow, AbstractDistribution) or flow.cond_shape is not None:
                raise TypeError(
                    f"{type(self).__name__} needs an unconditional flowjax flow; got {type(flow).__name__}."
                )
            if tuple(flow.shape) != (ebm.dim,):
                raise ValueError(
                    f"{type(self).__name__}: the flow has shape {flow.shape} but the EBM has dim "
                    f"{ebm.dim}; build the flow with default_flow(key, {ebm.dim}, ...)."
                )
        if self.start == "base" and ebm.base is None:
            raise ValueError(
                f"{type(self).__name__}: start='base' needs a tilted EBM; use 'uniform' or 'gaussian'."
            )
        if self.keep != "last" and batch_size % self.keep:
            raise ValueError(
                f"batch_size={batch_size} must be a multiple of keep={self.keep} (batch_size // keep "
                "chains each give keep negatives)."
            )

    def init_step_size(self, dtype=jnp.float32) -> Float[Array, ""]:
        """The step size as a strongly typed scalar: part of the trainer's carried state."""
        return jnp.asarray(self.step_size, dtype)

    def initial_positions(
        self, key: PRNGKeyArray, ebm: EnergyModel, flow: AbstractDistribution | None, n: int
    ) -> Float[Array, "n dim"]:
        """``n`` starting points drawn according to ``start``."""
        dim = ebm.dim
        if self.start == "flow":
            x = self.flow_for(ebm, flow).sample(key, (n,))
        elif self.start == "base":
            x = as_numpyro(ebm.base).sample(key, (n,))
        elif self.start == "uniform":
            x = jax.random.uniform(key, (n, dim), minval=-self.start_scale, maxval=self.start_scale)
        else:
            x = self.start_scale * jax.random.normal(key, (n, dim))
        return jnp.asarray(x, jnp.result_type(float))

    def chains_from_bank(
        self,
        key: PRNGKeyArray,
        ebm: EnergyModel,
        flow: AbstractDistribution | None,
        bank: Float[Array, "bank dim"],
        n_chains: int,
    ) -> tuple[Int[Array, " chains"], Float[Array, "chains dim"]]:
        """Pick ``n_chains`` distinct bank rows at random (written back after the move) and their start.

        Persistent samplers start from those rows (paper-notes 2.4, the ebm-anatomy convention);
        the others start afresh from ``start``.
        """
        key_index, key_start = jax.random.split(key)
        index = jax.random.choice(key_index, bank.shape[0], (n_chains,), replace=False)
        if self.persistent:
            return index, bank[index]
        return index, self.initial_positions(key_start, ebm, flow, n_chains).astype(bank.dtype)

    def __call__(
        self,
        key: PRNGKeyArray,
        ebm: EnergyModel,
        flow: AbstractDistribution | None,
        positions: Float[Array, "chains dim"],
        step_size: Float[Array, ""],
    ) -> NegativeSample:
        """Move ``positions`` toward ``ebm`` and return the negatives (pure; jit it).

        Args:
            key: PRNG key.
            ebm: the current EBM (parameters unwrapped, e.g. ``flows.combine``).
            flow: the current flow (``None`` for samplers without one).
            positions: starting points, ``(chains, dim)``.
            step_size: current step size (scalar array).

        Returns:
            A :class:`NegativeSample`.

        Example:
            >>> import jax, jax.numpy as jnp
            >>> from numpyro_ebm.energy import EnergyModel
            >>> from numpyro_ebm.flows import default_flow
            >>> from numpyro_ebm.nets import ToyNet
            >>> flow = default_flow(jax.random.key(0), 2, identity_init=True)
            >>> ebm = EnergyModel(ToyNet(2, key=jax.random.key(1)), flow.base_dist)
            >>> sampler = FlowMC(flow, keep=5)
            >>> out = sampler(jax.random.key(2), ebm, flow, jnp.zeros((8, 2)), sampler.init_step_size())
            >>> out.final.shape, out.negatives.shape
            ((8, 2), (40, 2))
        """
        flow = self.flow_for(ebm, flow)
        run = self._run(key, ebm, flow, positions, step_size)
        if self.keep == "last":
            negatives = run.final
        else:
            states = run.trajectory.shape[0]
            # k evenly spaced states ending at the last one (the paper's "subsampling by k").
            chosen = [round((i + 1) * states / self.keep) - 1 for i in range(self.keep)]
            negatives = jnp.reshape(run.trajectory[jnp.asarray(chosen)], (-1, positions.shape[-1]))
        return NegativeSample(
            final=run.final,
            negatives=jax.lax.stop_gradient(negatives),
            local_accept=jnp.asarray(run.local_accept, positions.dtype),
            global_accept=jnp.asarray(run.global_accept, positions.dtype),
            step_size=self._adapt(step_size, run.local_accept),
        )

    def _adapt(self, step_size: Array, accept: Array) -> Array:
        target = getattr(self, "target_accept", None)
        if target is None:
            return step_size
        factor = jnp.where(
            accept - target > _ADAPT_TOLERANCE,
            _ADAPT_FACTOR,
            jnp.where(target - accept > _ADAPT_TOLERANCE, 1.0 / _ADAPT_FACTOR, 1.0),
        )
        return (step_size * factor).astype(step_size.dtype)


def _langevin_run(
    move, key, log_density, positions, step_size, n_steps, keep_trajectory, **move_kwargs
) -> _Run:
    """``n_steps`` of one gradient move (ULA or MALA) as a ``lax.scan``."""

    def step(chains, step_key):
        chains, info = move(step_key, chains, log_density, step_size, **move_kwargs)
        return chains, (jnp.mean(info.accept_prob), chains.position if keep_trajectory else None)

    chains = init_chains(positions, log_density)
    chains, (accept, trajectory) = jax.lax.scan(step, chains, jax.random.split(key, n_steps))
    return _Run(chains.position, trajectory, jnp.mean(accept), jnp.full((), jnp.nan, positions.dtype))


def _point_log_density(ebm: EnergyModel):
    return lambda x: ebm.log_density(x)


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

    Each call runs ``n_cycles`` flowMC cycles (:func:`numpyro_ebm.flowmc.flowmc_step`: one
    global move, ``"isir"`` or ``"imh"``, then ``n_local_steps`` MALA steps) on chains drawn from
    the bank. The trainer fits the flow to the negatives (one optax step of forward KL per EBM
    step). Defaults are the paper's 2:1 example: 10 steps = [1 i-SIR, 4 MALA, 1 i-SIR, 4 MALA],
    32 particles, step 0.01. The 2-D tasks use ``n_cycles=1, n_local_steps=127, keep=4``.

    Args:
        flow: initial flow (identity-initialised, e.g. ``default_flow(..., identity_init=True)``).
        n_particles: i-SIR particles, current state included.
        global_move: ``"isir"`` or ``"imh"``.
        step_size: MALA step size.
        n_local_steps: MALA steps per cycle.
        n_cycles: flowMC cycles per training step.
        keep: ``"last"`` or ``k`` states per chain taken evenly from the ``n_cycles *
            (1 + n_local_steps)`` states of the trajectory.
        target_accept: adapt the step size toward this MALA acceptance (``None``: fixed).
        particle_batch_size: bound the memory of the i-SIR particle evaluation.

    Example:
        >>> import jax
        >>> from numpyro_ebm.flows import default_flow
        >>> sampler = FlowMC(default_flow(jax.random.key(0), 2, identity_init=True))
        >>> sampler.persistent, sampler.flow_training, sampler.n_states
        (True, 'negatives', 10)
    """

    flow: AbstractDistribution
    _: KW_ONLY
    n_particles: int = 32
    global_move: Literal["isir", "imh"] = "isir"
    step_size: float = 0.01
    n_local_steps: int = 4
    n_cycles: int = 2
    keep: Keep = "last"
    target_accept: float | None = None
    particle_batch_size: int | None = None

    persistent: ClassVar[bool] = True
    flow_training: ClassVar[str] = "negatives"
    start: ClassVar[str] = "flow"
    _count_fields: ClassVar[tuple[str, ...]] = ("n_cycles",)

    def __check_init__(self):
        if self.global_move not in ("isir", "imh"):
            raise ValueError(f"FlowMC: global_move must be 'isir' or 'imh'; got {self.global_move!r}.")
        check_flowmc_settings(self.step_size, self.n_local_steps, self.global_move, self.n_particles)
        batch = self.particle_batch_size
        if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
            raise ValueError(f"FlowMC: particle_batch_size must be None or an integer >= 1; got {batch!r}.")

    @property
    def n_states(self) -> int:
        return self.n_cycles * (1 + self.n_local_steps)

    def validate(self, ebm: EnergyModel, batch_size: int) -> None:
        super().validate(ebm, batch_size)
        _warn_if_unbalanced(ebm, self.flow)

    def _run(self, key, ebm, flow, positions, step_size) -> _Run:
        log_density = _point_log_density(ebm)
        keep_trajectory = self.keep != "last"

        def cycle(chains, cycle_key):
            chains, info = flowmc_step(
                cycle_key,
                chains,
                log_density,
                flow,
                step_size=step_size,
                n_local_steps=self.n_local_steps,
                global_move=self.global_move,
                n_particles=self.n_particles,
                particle_batch_size=self.particle_batch_size,
                keep_trajectory=keep_trajectory,
            )
            return chains, (
                jnp.mean(info.local_accept_prob),
                jnp.mean(info.global_accept_prob),
                info.trajectory,
            )

        chains = init_chains(positions, log_density)
        chains, (local, global_, trajectory) = jax.lax.scan(
            cycle, chains, jax.random.split(key, self.n_cycles)
        )
        if keep_trajectory:
            trajectory = jnp.reshape(trajectory, (-1, *positions.shape))
        return _Run(chains.position, trajectory, jnp.mean(local), jnp.mean(global_))


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


class NTEBM(AbstractNegatives):
    """NT-EBM negatives (Nijkamp et al. 2022): MALA in the latent space of the EBM's flow tilt.

    The EBM must be an exponential tilt of a flow ``q = T_# rho``,
    ``EnergyModel(net, flow, trainable_base=True)`` (or frozen, for a pre-trained flow). Pulled
    back by ``T``, ``p(x) ∝ exp(-E(x)) q(x)`` becomes ``exp(-E(T(z))) rho(z)`` in the latent
    space, where MALA runs; the flow is trained with the energy by the contrastive loss. Chains
    start from the flow at every step (``z ~ rho``); the step size adapts toward 75 %
    acceptance (the paper's setting: 128 steps, last state).

    Args:
        step_size: initial latent MALA step size.
        n_steps: MALA steps per training step.
        target_accept: adapt the step size toward this acceptance (``None``: fixed).
        keep: ``"last"`` or ``k`` states per chain taken evenly from the trajectory.

    Example:
        >>> NTEBM(n_steps=128).flow_training
        'tilt'
    """

    _: KW_ONLY
    step_size: float = 0.01
    n_steps: int = 128
    target_accept: float | None = 0.75
    keep: Keep = "last"

    persistent: ClassVar[bool] = False
    flow_training: ClassVar[str] = "tilt"
    start: ClassVar[str] = "flow"
    _count_fields: ClassVar[tuple[str, ...]] = ("n_steps",)

    @property
    def n_states(self) -> int:
        return self.n_steps

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
        run = _langevin_run(mala, key, latent_log_density, z, step_size, self.n_steps, self.keep != "last")
        trajectory = None if run.trajectory is None else jax.vmap(transform)(run.trajectory)
        return run._replace(final=transform(run.final), trajectory=trajectory)


class CoopFlow(AbstractNegatives):
    """CoopFlow negatives (Xie et al. 2022): flow samples refined by noise-free Langevin.

    Every step draws fresh flow samples and moves them ``n_steps`` times by
    ``x' = x + eta grad log p(x)`` (``moves.ula`` with ``noise_scale=0``, as the CoopFlow authors
    advise); the refined samples are the negatives, and the trainer fits the flow to them. The
    paper's settings: 256 steps of 5e-4 (2-D) or 1e-4 (mixtures), flow pre-trained on the data.

    Args:
        flow: the (pre-trained) flow.
        step_size: gradient step size.
        n_steps: refinement steps.
        keep: ``"last"`` or ``k`` states per chain taken evenly from the trajectory.

    Example:
        >>> import jax
        >>> from numpyro_ebm.flows import default_flow
        >>> CoopFlow(default_flow(jax.random.key(0), 2), step_size=5e-4, n_steps=256).persistent
        False
    """

    flow: AbstractDistribution
    _: KW_ONLY
    step_size: float = 5e-4
    n_steps: int = 256
    keep: Keep = "last"

    persistent: ClassVar[bool] = False
    flow_training: ClassVar[str] = "negatives"
    start: ClassVar[str] = "flow"
    _count_fields: ClassVar[tuple[str, ...]] = ("n_steps",)

    @property
    def n_states(self) -> int:
        return self.n_steps

    def _run(self, key, ebm, flow, positions, step_size) -> _Run:
        return _langevin_run(
            ula,
            key,
            _point_log_density(ebm),
            positions,
            step_size,
            self.n_steps,
            self.keep != "last",
            noise_scale=0.0,
        )
