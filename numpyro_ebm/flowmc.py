"""The one flowMC transition: a global flow move followed by local MALA steps.

``flowmc_step`` is pure and batched over chains; :func:`run_chains` is the one ``lax.scan`` over
it; :class:`FlowMCSettings` holds the transition's settings, defaults and checks in one place.
``FlowMCKernel`` builds its ``sample`` from ``flowmc_step``, the EBM trainer's ``negatives.FlowMC``
calls ``run_chains``, and users can call either inside their own ``jit`` without ``MCMC.run``.
Nothing in the library samples flowMC any other way.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from numpyro_ebm._keys import as_typed_key
from numpyro_ebm._validate import positive_int
from numpyro_ebm.moves import ChainState, LogDensityFn, imh, isir, mala

GlobalMove = Literal["imh", "isir"] | None
GLOBAL_MOVES = ("imh", "isir", None)

__all__ = [
    "FlowMCInfo",
    "FlowMCSettings",
    "KERNEL_SETTINGS",
    "flowmc_step",
    "run_chains",
    "check_flowmc_settings",
    "GLOBAL_MOVES",
]


class FlowMCInfo(NamedTuple):
    """Per-chain statistics of one flowMC cycle.

    Attributes:
        local_accept_prob: MALA acceptance probability averaged over the local steps,
            shape ``(chains,)``.
        global_accept_prob: acceptance probability of the global move (``P(index != 0)`` for
            i-SIR), shape ``(chains,)``; zeros when there is no global move.
        trajectory: the positions after the global move and after each local step, shape
            ``(1 + n_local_steps, chains, dim)``, when ``keep_trajectory=True``; else ``None``.
    """

    local_accept_prob: Float[Array, " chains"]
    global_accept_prob: Float[Array, " chains"]
    trajectory: Float[Array, "steps chains dim"] | None


def _is_count(value, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


@dataclass(frozen=True)
class FlowMCSettings:
    """The settings of the flowMC transition, with the library's one set of defaults.

    ``FlowMCKernel``, ``negatives.FlowMC`` and :func:`run_chains` read their transition from
    one of these; every check of the settings lives in ``__post_init__`` (a ``ValueError``
    naming the bad field, before anything is traced).

    Attributes:
        step_size: initial MALA step size (adapted when ``adapt_step_size``).
        n_local_steps: MALA steps after each global move (``>= 0``; ``>= 1`` without a
            global move).
        global_move: ``"isir"`` (one of ``n_particles`` flow proposals, the paper's choice),
            ``"imh"`` (independent Metropolis-Hastings) or ``None`` (MALA only).
        n_particles: i-SIR particles per chain, the current state included (``>= 2``).
        particle_batch_size: chains per batch when evaluating i-SIR particles (memory bound;
            ``None``: all at once).
        target_accept_prob: MALA acceptance the step size adapts toward (0.574 is optimal for
            MALA in high dimension, Roberts and Rosenthal 1998).
        adapt_step_size: adapt the MALA step size (``numpyro_ebm.adaptation``): by dual
            averaging during a kernel's warmup, by the x1.05 rule in EBM training, where the
            target moves.

    Example:
        >>> settings = FlowMCSettings(n_local_steps=8)
        >>> settings.global_move, settings.n_particles, settings.adapt_step_size
        ('isir', 32, True)
        >>> FlowMCSettings(n_particles=1)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: n_particles must be an integer >= 2 for global_move='isir' ...; got 1.
    """

    step_size: float = 0.1
    n_local_steps: int = 4
    global_move: GlobalMove = "isir"
    n_particles: int = 32
    particle_batch_size: int | None = None
    target_accept_prob: float = 0.574
    adapt_step_size: bool = True

    def __post_init__(self):
        if self.global_move not in GLOBAL_MOVES:
            raise ValueError(f"global_move must be one of {GLOBAL_MOVES}; got {self.global_move!r}.")
        if not _is_count(self.n_local_steps, 0):
            raise ValueError(f"n_local_steps must be an integer >= 0; got {self.n_local_steps!r}.")
        if self.global_move == "isir" and not _is_count(self.n_particles, 2):
            raise ValueError(
                f"n_particles must be an integer >= 2 for global_move='isir' (the current state "
                f"counts as one particle); got {self.n_particles!r}."
            )
        if self.global_move is None and self.n_local_steps == 0:
            raise ValueError("with global_move=None, n_local_steps must be >= 1, or nothing moves.")
        batch = self.particle_batch_size
        if batch is not None and not _is_count(batch, 1):
            raise ValueError(f"particle_batch_size must be None or an integer >= 1; got {batch!r}.")
        target = self.target_accept_prob
        if not (isinstance(target, numbers.Real) and 0.0 < target < 1.0):
            raise ValueError(f"target_accept_prob must lie in (0, 1); got {target!r}.")
        if not isinstance(self.adapt_step_size, bool):
            raise ValueError(f"adapt_step_size must be True or False; got {self.adapt_step_size!r}.")
        try:
            eta = float(jnp.min(jnp.asarray(self.step_size)))
        except (TypeError, jax.errors.ConcretizationTypeError):  # a tracer: validated by the caller
            return
        if not (math.isfinite(eta) and eta > 0):
            raise ValueError(f"step_size must be positive and finite; got {self.step_size!r}.")

    def replace(self, **fields) -> FlowMCSettings:
        """These settings with ``fields`` replaced (checked again; an unknown name raises a
        ``TypeError`` listing the fields).

        Example:
            >>> FlowMCSettings().replace(global_move="imh").global_move
            'imh'
        """
        names = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(fields) - set(names))
        if unknown:
            raise TypeError(f"FlowMCSettings has no field(s) {unknown}; its fields are {names}.")
        return dataclasses.replace(self, **fields)

    def step(
        self,
        key: PRNGKeyArray,
        chains: ChainState,
        logdensity_fn: LogDensityFn,
        flow,
        *,
        step_size: Float[Array, ""] | Float[Array, " chains"] | float | None = None,
        keep_trajectory: bool = False,
    ) -> tuple[ChainState, FlowMCInfo]:
        """One :func:`flowmc_step` with these settings: the one place that hands the transition's
        fields to it. ``step_size`` (scalar or ``(chains,)``, may be traced) defaults to
        ``self.step_size``; the adapted one lives in the caller's state.

        Example:
            >>> import jax, jax.numpy as jnp
            >>> from numpyro_ebm.moves import init_chains
            >>> logp = lambda x: -0.5 * jnp.sum(x**2)
            >>> chains = init_chains(jnp.zeros((4, 2)), logp)
            >>> chains, info = FlowMCSettings(global_move=None).step(jax.random.key(0), chains, logp, None)
            >>> info.local_accept_prob.shape
            (4,)
        """
        return flowmc_step(
            key,
            chains,
            logdensity_fn,
            flow,
            step_size=self.step_size if step_size is None else step_size,
            n_local_steps=self.n_local_steps,
            global_move=self.global_move,
            n_particles=self.n_particles,
            particle_batch_size=self.particle_batch_size,
            keep_trajectory=keep_trajectory,
        )


KERNEL_SETTINGS = FlowMCSettings(global_move="imh")
"""``FlowMCKernel``'s (and its tempered SMC's) transition when the user passes none: the
library's one set of defaults with IMH as the global move. After tempered warmup the flow covers
the posterior, and an IMH proposal costs one density evaluation per chain where i-SIR costs
``n_particles``; the training bank keeps i-SIR, whose resampling tolerates a flow that lags a
moving EBM."""


def check_flowmc_settings(step_size, n_local_steps, global_move, n_particles) -> None:
    """Raise a ``ValueError`` naming the bad setting (kept for callers that predate
    :class:`FlowMCSettings`, which now holds the checks)."""
    FlowMCSettings(
        step_size=step_size, n_local_steps=n_local_steps, global_move=global_move, n_particles=n_particles
    )


def flowmc_step(
    key: PRNGKeyArray,
    chains: ChainState,
    logdensity_fn: LogDensityFn,
    flow,
    *,
    step_size: Float[Array, ""] | Float[Array, " chains"] | float,
    n_local_steps: int,
    global_move: GlobalMove = "imh",
    n_particles: int = 32,
    particle_batch_size: int | None = None,
    keep_trajectory: bool = False,
) -> tuple[ChainState, FlowMCInfo]:
    """Advance every chain by one flowMC cycle: one global move, then ``n_local_steps`` MALA steps.

    Args:
        key: PRNG key.
        chains: the batch of chains, ``(chains, dim)`` (see ``moves.init_chains``).
        logdensity_fn: target log-density of one point, ``(dim,) -> ()``.
        flow: flowjax distribution of shape ``(dim,)`` proposing the global moves (use
            ``flows.combine(params, static)`` inside ``jit``); ignored if ``global_move=None``.
        step_size: MALA step size, scalar or ``(chains,)``.
        n_local_steps: MALA steps after the global move (static).
        global_move: ``"imh"``, ``"isir"`` or ``None`` (MALA only).
        n_particles: i-SIR particles per chain, current state included.
        particle_batch_size: chains per batch when evaluating i-SIR particles (memory bound).
        keep_trajectory: also return every intermediate position (for negatives taken evenly
            from the trajectory).

    Returns:
        ``(chains, info)``, both batched over chains.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from numpyro_ebm.flows import default_flow
        >>> from numpyro_ebm.moves import init_chains
        >>> logp = lambda x: jnp.logaddexp(-0.5 * jnp.sum((x - 3) ** 2), -0.5 * jnp.sum((x + 3) ** 2))
        >>> flow = default_flow(jax.random.key(0), 2, identity_init=True)
        >>> chains = init_chains(jnp.zeros((16, 2)), logp)
        >>> chains, info = jax.jit(lambda k, c: flowmc_step(k, c, logp, flow, step_size=0.1,
        ...                        n_local_steps=4, global_move="isir", n_particles=8))(
        ...     jax.random.key(1), chains)
        >>> info.local_accept_prob.shape
        (16,)
    """
    key_global, key_local = jax.random.split(as_typed_key(key))
    dtype = chains.position.dtype
    if global_move == "imh":
        chains, global_info = imh(key_global, chains, logdensity_fn, flow)
        global_accept = global_info.accept_prob
    elif global_move == "isir":
        chains, global_info = isir(
            key_global, chains, logdensity_fn, flow, n_particles, batch_size=particle_batch_size
        )
        global_accept = global_info.accept_prob
    else:
        global_accept = jnp.zeros(chains.position.shape[:1], dtype)
    after_global = chains.position

    def local(chains, step_key):
        chains, info = mala(step_key, chains, logdensity_fn, step_size)
        return chains, (info.accept_prob, chains.position if keep_trajectory else None)

    if n_local_steps > 0:
        chains, (accept, path) = jax.lax.scan(local, chains, jax.random.split(key_local, n_local_steps))
        local_accept = jnp.mean(accept, axis=0)
    else:
        path = jnp.zeros((0,) + chains.position.shape, dtype) if keep_trajectory else None
        local_accept = jnp.zeros(chains.position.shape[:1], dtype)
    trajectory = jnp.concatenate([after_global[None], path]) if keep_trajectory else None
    return chains, FlowMCInfo(local_accept, global_accept, trajectory)


def run_chains(
    key: PRNGKeyArray,
    chains: ChainState,
    logdensity_fn: LogDensityFn,
    flow,
    settings: FlowMCSettings,
    num_steps: int,
    *,
    step_size: Float[Array, ""] | Float[Array, " chains"] | float | None = None,
    keep_trajectory: bool = False,
) -> tuple[ChainState, FlowMCInfo]:
    """``num_steps`` flowMC cycles as one ``lax.scan`` over :func:`flowmc_step`: the library's
    one chains loop (step size fixed along the loop; adapt between calls).

    Args:
        key: PRNG key; cycle ``i`` uses ``split(key, num_steps)[i]``.
        chains: the chains, ``(chains, dim)`` (``moves.init_chains``).
        logdensity_fn: target log-density of one point, ``(dim,) -> ()``.
        flow: flowjax distribution proposing the global moves.
        settings: the transition's :class:`FlowMCSettings`.
        num_steps: flowMC cycles (static).
        step_size: MALA step size (scalar or ``(chains,)``, may be traced); defaults to
            ``settings.step_size``.
        keep_trajectory: also return every state (``(num_steps * (1 + n_local_steps), chains,
            dim)`` in ``info.trajectory``).

    Returns:
        ``(chains, info)``: the final chains and per-cycle statistics with a leading
        ``num_steps`` axis (``info.local_accept_prob`` is ``(num_steps, chains)``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from numpyro_ebm.flows import default_flow
        >>> from numpyro_ebm.moves import init_chains
        >>> logp = lambda x: -0.5 * jnp.sum(x**2)
        >>> flow = default_flow(jax.random.key(0), 2, identity_init=True)
        >>> chains, info = run_chains(jax.random.key(1), init_chains(jnp.zeros((8, 2)), logp), logp,
        ...                           flow, FlowMCSettings(n_particles=4), 3)
        >>> info.local_accept_prob.shape, chains.position.shape
        ((3, 8), (8, 2))
    """
    positive_int(num_steps, "num_steps")

    def cycle(chains, cycle_key):
        return settings.step(
            cycle_key, chains, logdensity_fn, flow, step_size=step_size, keep_trajectory=keep_trajectory
        )

    chains, info = jax.lax.scan(cycle, chains, jax.random.split(key, num_steps))
    if keep_trajectory:
        info = info._replace(trajectory=jnp.reshape(info.trajectory, (-1, *chains.position.shape)))
    return chains, info
