"""``FlowMCState``: the state ``FlowMCKernel`` carries from one iteration to the next, and how
its per-chain fields are placed on devices."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from jaxtyping import Array

__all__ = ["FlowMCState", "place_chains"]


class FlowMCState(NamedTuple):
    """State of :class:`FlowMCKernel`; every array has a strong dtype so nothing recompiles.

    Attributes:
        i: iteration counter (warmup included), scalar int32.
        z: unconstrained positions, a pytree whose leaves have a leading chain axis.
        potential_energy: ``-log pi(z)`` per chain, ``(chains,)``.
        z_grad: gradient of the potential energy ``-log pi`` at ``z`` (NumPyro's convention, as
            in ``HMCState.z_grad``), a pytree shaped like ``z``.
        local_accept_prob: mean MALA acceptance of the last iteration, ``(chains,)``.
        global_accept_prob: acceptance of the last global move, ``(chains,)``; NaN with
            ``global_move=None``.
        step_size: MALA step size (scalar); frozen after warmup.
        adapt_state: dual-averaging state for ``log step_size``
            (:class:`~numpyro_ebm.adaptation.DualAveragingState`).
        flow_params: the flow's trainable arrays (its static part lives on the kernel);
            ``None`` with ``global_move=None``.
        flow_opt_state: optax state of the flow optimiser; ``None`` unless the flow is fitted
            inside the loop (no tempering ran: after tempering it is fitted in ``init``).
        buffer: recent flattened states of all chains, ``(buffer_iterations, chains, dim)``;
            ``None`` unless the flow is fitted inside the loop.
        rng_key: PRNG key.
    """

    i: Array
    z: Any
    potential_energy: Array
    z_grad: Array
    local_accept_prob: Array
    global_accept_prob: Array
    step_size: Array
    adapt_state: tuple
    flow_params: Any
    flow_opt_state: Any
    buffer: Array
    rng_key: Array


def place_chains(state: FlowMCState, mesh, place: Callable) -> FlowMCState:
    """Split the per-chain fields of ``state`` over ``mesh`` (``place`` is
    :func:`~numpyro_ebm.sharding.shard_leading_axis`, which puts, or inside jit
    :func:`~numpyro_ebm.sharding.constrain_leading_axis`); the flow and the buffer stay replicated."""
    per_chain = (
        state.z,
        state.potential_energy,
        state.z_grad,
        state.local_accept_prob,
        state.global_accept_prob,
    )
    z, pe, grad, local, glob = place(per_chain, mesh)
    return state._replace(
        z=z, potential_energy=pe, z_grad=grad, local_accept_prob=local, global_accept_prob=glob
    )
