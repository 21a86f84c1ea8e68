"""``FlowMCKernel``'s warmup: where chains and flow start, the flow's fit, one warmup update.

After tempering (the default for models), the flow is fitted in ``init``, before the sampling
loop, by the tempering's one compiled level program (:func:`~numpyro_ebm.tempering.tempered_smc`):
after the annealing come "warm levels" at ``beta = 1``, each a forward-KL fit
(:func:`~numpyro_ebm.flows.fit_flow`) to the particles followed by flowMC moves under the new
flow, until the global acceptance stops improving. Fitting inside NumPyro's sampling loop made
that loop's program about 2.5 times as large (docs/benchmarks.md). The loop's warmup iterations
then adapt only the MALA step size (dual averaging, :mod:`numpyro_ebm.adaptation`). Without
tempering, the starting points carry no mode weights (a flow fitted to a few copies of them
traps chains), so the flow is fitted inside the loop as before, to a ring buffer of the last
``buffer_iterations`` states of all chains. After warmup both are frozen, so the production
chain is a fixed, valid Markov kernel. The kernel (:mod:`numpyro_ebm.kernel`)
calls these; its constructor's arguments are read from it as stored (``kernel._flow_optimizer``
...), the same way :mod:`numpyro_ebm._kernel_checks` reads them.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from numpyro_ebm import adaptation, flows, sharding
from numpyro_ebm import tempering as tempering_
from numpyro_ebm.kernel_state import FlowMCState
from numpyro_ebm.moves import ChainState, init_chains

__all__ = ["initial_flow", "start", "init_warmup", "warmup_update"]


def initial_flow(user_flow, key, flat: Float[Array, "chains dim"]):
    """The user's flow (its shape checked against ``dim``), or the default flow (shaped by
    :func:`~numpyro_ebm.flows.flow_capacity`), identity-initialised and standardised to the
    initial chains ``flat``."""
    dim = flat.shape[1]
    if user_flow is not None:
        if user_flow.shape != (dim,):
            raise ValueError(
                f"flow has shape {user_flow.shape} but the model's flattened "
                f"unconstrained space has dim {dim}; build the flow with dim={dim}."
            )
        return user_flow
    flow = flows.default_flow(key, dim, identity_init=True, **flows.flow_capacity(dim))
    return flows.standardize(flow, flat)


def start(kernel, key, flat: Float[Array, "chains dim"], logdensity_fn: Callable, model_args, model_kwargs):
    """Where the chains and the flow start: ``(flat, flow_params, flow_static, tempering_result)``.

    The flow is :func:`initial_flow` (``None`` parts with ``global_move=None``). With tempering
    on, mode discovery (:func:`~numpyro_ebm.tempering.discover_modes`) runs first, then (if the
    flow is fitted) the warm levels fit a fresh default flow (or the user's) to its particles,
    and the chains start from them, ``flat`` ``(chains, dim)``. Without warm levels a default
    flow is standardised afresh to all the particles (the SMC's flow, refitted at every level to
    resampled, duplicated particles, overfits in high dimension). ``tempering_result`` is
    ``None`` without tempering.
    """
    params, static, flow = None, None, None
    if kernel.settings.global_move is not None:
        flow = initial_flow(kernel._user_flow, key, flat)
        params, static = flows.partition(flow)
    warm = warm_levels(kernel, kernel._tempering) if kernel._tempering is not None else 0
    # A fresh flow for the warm levels (each re-standardises it to the particles): the SMC's flow,
    # refitted at every level to resampled (duplicated) particles, overfits in high dimension.
    fresh = params if kernel._user_flow is None else None
    result = None
    if kernel._tempering is not None:
        result = tempering_.discover_modes(
            jax.random.fold_in(key, 1),
            kernel._tempering,
            kernel.settings,
            flow,
            flat,
            logdensity_fn,
            (kernel._model, model_args, model_kwargs),
            optimizer=kernel._flow_optimizer,
            flow_batch_size=kernel._flow_batch_size,
            fit_flow=kernel._fits_flow,
            warm_levels=warm,
            warm_params=fresh,
        )
    if result is None:
        return flat, params, static, None
    flat = result.position[: flat.shape[0]]
    if warm:
        params = result.flow_params
    elif fresh is not None:
        # all particles, not only the chains' share: whitening needs n >> dim points
        params = flows.restandardize(params, static, result.position)
    return flat, params, static, result


def warm_levels(kernel, smc: tempering_.TemperedSMC) -> int:
    """Most warm levels: as many Adam steps as ``num_warmup * flow_steps_per_iteration`` (the
    budget of the former in-loop fit), ``smc.flow_steps`` per level; 0 if the flow is not fitted."""
    if not kernel._fits_flow:
        return 0
    return -(-kernel._num_warmup * kernel._flow_steps // smc.flow_steps)


def init_warmup(kernel, flat: Float[Array, "chains dim"], params, logdensity_fn: Callable):
    """Chains ``(chains, dim)``, flow optimiser state and buffer ``(buffer_iterations, chains,
    dim)`` (the last two ``None`` unless the flow is fitted), as one compiled program (op by op,
    they compiled dozens of tiny programs: slow start-up)."""
    fits_flow = kernel._fit_in_loop
    optimizer, buffer_iterations = kernel._flow_optimizer, kernel._buffer_iterations

    @jax.jit
    def numeric(flat, params) -> tuple[ChainState, object, Array | None]:
        chains = init_chains(flat, logdensity_fn)
        if not fits_flow:
            return chains, None, None
        buffer = jnp.broadcast_to(flat, (buffer_iterations,) + flat.shape)
        return chains, optimizer.init(params), buffer

    return numeric(flat, params)


def warmup_update(kernel, state: FlowMCState, position: Float[Array, "chains dim"], key) -> FlowMCState:
    """One warmup update of ``state``: step size by dual averaging toward the settings'
    ``target_accept_prob``; without an annealing before the loop, also the flow, by forward KL on
    the buffer after writing ``position`` into it."""
    settings = kernel.settings
    position, local_accept_prob = sharding.replicate((position, state.local_accept_prob), kernel._mesh)
    step_size, adapt_state = state.step_size, state.adapt_state
    if settings.adapt_step_size and settings.num_local_steps > 0:
        accept = jnp.mean(local_accept_prob)
        adapt_state = adaptation.dual_averaging_update(adapt_state, accept, settings.target_accept_prob)
        # The averaged iterate is the better estimate; use it from the last warmup step on.
        step_size = jnp.where(
            state.i == kernel._num_warmup,
            adaptation.dual_averaging_step_size(adapt_state, final=True),
            adaptation.dual_averaging_step_size(adapt_state),
        )
    params, opt_state, buffer = state.flow_params, state.flow_opt_state, state.buffer
    if kernel._fit_in_loop:
        n_slots = kernel._buffer_iterations
        buffer = buffer.at[(state.i - 1) % n_slots].set(position)
        params, opt_state, _ = flows.fit_flow(
            key,
            params,
            kernel._flow_static,
            opt_state,
            buffer.reshape(-1, buffer.shape[-1]),
            kernel._flow_optimizer,
            num_steps=kernel._flow_steps,
            batch_size=kernel._flow_batch_size,
            # Only the slots written so far: the initial copies of the start points would
            # teach the flow mass where the chains merely began.
            num_valid=jnp.minimum(state.i, n_slots) * buffer.shape[1],
        )
    return state._replace(
        step_size=step_size.astype(state.step_size.dtype),
        adapt_state=adapt_state,
        flow_params=params,
        flow_opt_state=opt_state,
        buffer=buffer,
    )
