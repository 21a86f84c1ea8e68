"""The one flowMC transition: a global flow move followed by local MALA steps.

``flowmc_step`` is pure and batched over chains; :func:`run_chains` is the one ``lax.scan`` over
it; :class:`FlowMCSettings` holds the transition's settings, defaults and checks in one place.
``FlowMCKernel`` builds its ``sample`` from ``flowmc_step``, the EBM trainer's ``negatives.FlowMC``
calls ``run_chains``, and users can call either inside their own ``jit`` without ``MCMC.run``.
Nothing in the library samples flowMC any other way.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from numpyro_ebm._compat import renamed_kwargs
from numpyro_ebm._keys import as_typed_key
from numpyro_ebm._validate import positive_int
from numpyro_ebm.moves import ChainState, LogDensityFn, imh, isir, mala

# The settings hold no JAX, so the command line builds its flags from them without importing JAX.
from numpyro_ebm.settings import GLOBAL_MOVES, FlowMCSettings, GlobalMove

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
            i-SIR), shape ``(chains,)``; NaN when there is no global move (as in
            ``negatives``' history).
        trajectory: the positions after the global move and after each local step, shape
            ``(1 + num_local_steps, chains, dim)``, when ``keep_trajectory=True``; else ``None``.
    """

    local_accept_prob: Float[Array, " chains"]
    global_accept_prob: Float[Array, " chains"]
    trajectory: Float[Array, "steps chains dim"] | None


KERNEL_SETTINGS = FlowMCSettings(global_move="imh")
"""``FlowMCKernel``'s (and its tempered SMC's) transition when the user passes none: the
library's one set of defaults with IMH as the global move. After tempered warmup the flow covers
the posterior, and an IMH proposal costs one density evaluation per chain where i-SIR costs
``num_particles``; the training bank keeps i-SIR, whose resampling tolerates a flow that lags a
moving EBM."""


@renamed_kwargs()
def check_flowmc_settings(step_size, num_local_steps, global_move, num_particles) -> None:
    """Raise a ``ValueError`` naming the bad setting (kept for callers that predate
    :class:`FlowMCSettings`, which now holds the checks)."""
    FlowMCSettings(
        step_size=step_size,
        num_local_steps=num_local_steps,
        global_move=global_move,
        num_particles=num_particles,
    )


@renamed_kwargs()
def flowmc_step(
    key: PRNGKeyArray,
    chains: ChainState,
    logdensity_fn: LogDensityFn,
    flow,
    *,
    step_size: Float[Array, ""] | Float[Array, " chains"] | float,
    num_local_steps: int,
    global_move: GlobalMove = "imh",
    num_particles: int = 32,
    particle_batch_size: int | None = None,
    keep_trajectory: bool = False,
) -> tuple[ChainState, FlowMCInfo]:
    """Advance every chain by one flowMC cycle: one global move, then ``num_local_steps`` MALA steps.

    Args:
        key: PRNG key.
        chains: the batch of chains, ``(chains, dim)`` (see ``moves.init_chains``).
        logdensity_fn: target log-density of one point, ``(dim,) -> ()``.
        flow: flowjax distribution of shape ``(dim,)`` proposing the global moves (use
            ``flows.combine(params, static)`` inside ``jit``); ignored if ``global_move=None``.
        step_size: MALA step size, scalar or ``(chains,)``.
        num_local_steps: MALA steps after the global move (static).
        global_move: ``"imh"``, ``"isir"`` or ``None`` (MALA only).
        num_particles: i-SIR particles per chain, current state included.
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
        ...                        num_local_steps=4, global_move="isir", num_particles=8))(
        ...     jax.random.key(1), chains)
        >>> info.local_accept_prob.shape
        (16,)
    """
    key_global, key_local = jax.random.split(as_typed_key(key))
    dtype = chains.position.dtype
    if global_move == "imh":
        chains, global_info = imh(key_global, chains, logdensity_fn, flow)
        global_accept_prob = global_info.accept_prob
    elif global_move == "isir":
        chains, global_info = isir(
            key_global, chains, logdensity_fn, flow, num_particles, batch_size=particle_batch_size
        )
        global_accept_prob = global_info.accept_prob
    else:  # no global move: NaN, as everywhere in the package (0 would read as "always rejected")
        global_accept_prob = jnp.full(chains.position.shape[:1], jnp.nan, dtype)
    after_global = chains.position

    def local(chains, step_key):
        chains, info = mala(step_key, chains, logdensity_fn, step_size)
        return chains, (info.accept_prob, chains.position if keep_trajectory else None)

    if num_local_steps > 0:
        chains, (accept, path) = jax.lax.scan(local, chains, jax.random.split(key_local, num_local_steps))
        local_accept_prob = jnp.mean(accept, axis=0)
    else:
        path = jnp.zeros((0,) + chains.position.shape, dtype) if keep_trajectory else None
        local_accept_prob = jnp.zeros(chains.position.shape[:1], dtype)
    trajectory = jnp.concatenate([after_global[None], path]) if keep_trajectory else None
    return chains, FlowMCInfo(local_accept_prob, global_accept_prob, trajectory)


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
        keep_trajectory: also return every state (``(num_steps * (1 + num_local_steps), chains,
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
        ...                           flow, FlowMCSettings(num_particles=4), 3)
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
