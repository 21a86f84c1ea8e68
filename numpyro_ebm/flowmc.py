"""The one flowMC transition: a global flow move followed by local MALA steps.

``flowmc_step`` is pure and batched over chains. ``FlowMCKernel`` builds its ``sample`` from it,
the EBM trainer's ``negatives.FlowMC`` calls it inside its own ``lax.scan``, and users can call it
inside their own ``jit`` without ``MCMC.run``. Nothing in the library samples flowMC any other way.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from numpyro_ebm.moves import ChainState, LogDensityFn, imh, isir, mala

GlobalMove = Literal["imh", "isir"] | None
GLOBAL_MOVES = ("imh", "isir", None)

__all__ = ["FlowMCInfo", "flowmc_step", "check_flowmc_settings", "GLOBAL_MOVES"]


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


def check_flowmc_settings(step_size, n_local_steps, global_move, n_particles) -> None:
    """Raise a ``ValueError`` naming the bad setting; called by every public entry point."""
    if global_move not in GLOBAL_MOVES:
        raise ValueError(f"global_move must be one of {GLOBAL_MOVES}; got {global_move!r}.")
    if not isinstance(n_local_steps, int) or n_local_steps < 0:
        raise ValueError(f"n_local_steps must be an integer >= 0; got {n_local_steps!r}.")
    if global_move == "isir" and (not isinstance(n_particles, int) or n_particles < 2):
        raise ValueError(
            f"n_particles must be an integer >= 2 for global_move='isir' (the current state "
            f"counts as one particle); got {n_particles!r}."
        )
    if global_move is None and n_local_steps == 0:
        raise ValueError("with global_move=None, n_local_steps must be >= 1, or nothing moves.")
    try:
        eta = float(jnp.min(jnp.asarray(step_size)))
    except TypeError:  # a tracer: the caller validated it already
        return
    if not eta > 0:
        raise ValueError(f"step_size must be positive and finite; got {step_size!r}.")


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
    key_global, key_local = jax.random.split(key)
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
