"""The base class of the negative samplers: the checks and bookkeeping they all share.

:class:`AbstractNegatives` holds argument checks, where chains start, which states become
negatives (``keep``) and step-size adaptation (:mod:`numpyro_ebm.adaptation`'s x1.05 rule); a
concrete sampler holds only its math (``_run``). See :mod:`numpyro_ebm.negatives`.
"""

from __future__ import annotations

import abc
import math
import numbers
from typing import ClassVar, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import paramax
from flowjax.distributions import AbstractDistribution
from jaxtyping import Array, Float, Int, PRNGKeyArray

from numpyro_ebm import adaptation
from numpyro_ebm._compat import old_name
from numpyro_ebm._keys import as_typed_key
from numpyro_ebm._validate import positive_int
from numpyro_ebm.energy import EnergyModel, as_numpyro
from numpyro_ebm.moves import init_chains

Keep = Literal["last"] | int
STARTS = ("flow", "base", "uniform", "gaussian")
NOISE_STARTS = ("base", "uniform", "gaussian")


class NegativeSample(NamedTuple):
    """What one call of a negative sampler returns.

    Attributes:
        final: the chains' last states, written back to the bank, shape ``(chains, dim)``.
        negatives: the negative samples, shape ``(batch, dim)`` (``chains * k`` with ``keep=k``).
        local_accept_prob: mean acceptance of the local (MALA/ULA) steps, scalar.
        global_accept_prob: mean acceptance of the global flow moves, scalar; NaN without them.
        step_size: the step size for the next call (adapted if the sampler has a target).
    """

    final: Float[Array, "chains dim"]
    negatives: Float[Array, "batch dim"]
    local_accept_prob: Float[Array, ""]
    global_accept_prob: Float[Array, ""]
    step_size: Float[Array, ""]

    local_accept = old_name("local_accept_prob")
    global_accept = old_name("global_accept_prob")


class _Run(NamedTuple):
    final: Array
    trajectory: Array | None  # (states, chains, dim) when negatives are thinned from it
    local_accept_prob: Array
    global_accept_prob: Array


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
    construction) and implement ``_run`` and ``num_states``.

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
            positive_int(getattr(self, name), f"{type(self).__name__}: {name}")
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
        if isinstance(self.keep, int) and self.keep > self.num_states:
            raise ValueError(
                f"{type(self).__name__}: keep={self.keep} exceeds the {self.num_states} states of one "
                "trajectory; lower keep or run more steps."
            )

    # ----------------------------------------------------------------------------- to implement
    @property
    @abc.abstractmethod
    def num_states(self) -> int:
        """States in one chain's trajectory per call (what ``keep=k`` chooses from)."""

    @abc.abstractmethod
    def _run(self, key, ebm, flow, positions, step_size) -> _Run:
        """The sampler's math: move ``positions`` toward the EBM (arguments as in ``__call__``)."""

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

    def num_chains(self, batch_size: int) -> int:
        """Chains to move per training step so that ``batch_size`` negatives come out."""
        return batch_size if self.keep == "last" else batch_size // self.keep

    n_chains = old_name("num_chains")
    n_states = old_name("num_states")

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
        key, dim = as_typed_key(key), ebm.dim
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
        num_chains: int,
    ) -> tuple[Int[Array, " chains"], Float[Array, "chains dim"]]:
        """Pick ``num_chains`` distinct bank rows at random (written back after the move) and their start.

        Persistent samplers start from those rows (paper-notes 2.4, the ebm-anatomy convention);
        the others start afresh from ``start``.
        """
        key_index, key_start = jax.random.split(as_typed_key(key))
        index = jax.random.choice(key_index, bank.shape[0], (num_chains,), replace=False)
        if self.persistent:
            return index, bank[index]
        return index, self.initial_positions(key_start, ebm, flow, num_chains).astype(bank.dtype)

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
            >>> from numpyro_ebm.negatives import FlowMC
            >>> sampler = FlowMC(flow, keep=5)
            >>> out = sampler(jax.random.key(2), ebm, flow, jnp.zeros((8, 2)), sampler.init_step_size())
            >>> out.final.shape, out.negatives.shape
            ((8, 2), (40, 2))
        """
        flow = self.flow_for(ebm, flow)
        run = self._run(as_typed_key(key), ebm, flow, positions, step_size)
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
            local_accept_prob=jnp.asarray(run.local_accept_prob, positions.dtype),
            global_accept_prob=jnp.asarray(run.global_accept_prob, positions.dtype),
            step_size=self._adapt(step_size, run.local_accept_prob),
        )

    def _adapt(self, step_size: Array, accept: Array) -> Array:
        # The x1.05 rule, not dual averaging: the target (the EBM) moves at every step.
        target = getattr(self, "target_accept", None)
        if target is None:
            return step_size
        return adaptation.multiplicative_update(step_size, accept, target)


class AbstractStepNegatives(AbstractNegatives):
    """A sampler that makes ``num_mcmc_steps`` moves per call, so one trajectory has
    ``num_mcmc_steps`` states (ULA, MALA, ShortRun, NT-EBM, CoopFlow)."""

    num_mcmc_steps: eqx.AbstractVar[int]

    _count_fields: ClassVar[tuple[str, ...]] = ("num_mcmc_steps",)

    n_steps = old_name("num_mcmc_steps")

    @property
    def num_states(self) -> int:
        return self.num_mcmc_steps


def _langevin_run(
    move, key, logdensity_fn, positions, step_size, num_mcmc_steps, keep_trajectory, **move_kwargs
) -> _Run:
    """``num_mcmc_steps`` of one gradient move (ULA or MALA) as a ``lax.scan``."""

    def step(chains, step_key):
        chains, info = move(step_key, chains, logdensity_fn, step_size, **move_kwargs)
        return chains, (jnp.mean(info.accept_prob), chains.position if keep_trajectory else None)

    chains = init_chains(positions, logdensity_fn)
    chains, (accept, trajectory) = jax.lax.scan(step, chains, jax.random.split(key, num_mcmc_steps))
    return _Run(chains.position, trajectory, jnp.mean(accept), jnp.full((), jnp.nan, positions.dtype))


def _point_log_density(ebm: EnergyModel):
    return lambda x: ebm.log_density(x)
