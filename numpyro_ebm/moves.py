"""Pure, batched Markov transitions over an ensemble of chains.

Every move takes a batch of chains, ``ChainState.position`` of shape ``(chains, dim)``, and a
log-density ``logdensity_fn`` of **one** point (``(dim,) -> ()``); the moves vectorise it
themselves. Nothing here is jitted or mutated: callers ``jit``, ``lax.scan`` and shard as they
like (the style of BlackJAX's ``mala.py``).

Conventions (Grenioux et al. 2023, App. A):

* MALA / ULA propose ``x' = x + eta * grad log pi(x) + sqrt(2 eta) * xi``, ``xi ~ N(0, I)``.
  ``eta`` (``step_size``) is a scalar or one value per chain, shape ``(chains,)``.
* IMH proposes ``x' ~ q`` (a flowjax distribution) and accepts with
  ``min(1, pi(x') q(x) / (pi(x) q(x')))``.
* i-SIR draws ``num_particles - 1`` fresh proposals, keeps the current state as particle 0 and
  resamples one particle with weights ``pi / q``. Its "acceptance" is ``P(index != 0)``.

Robustness: a proposal whose log-density (or, for gradient moves, gradient) is NaN or infinite is
rejected, so a chain state never holds a non-finite value as long as it starts finite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from numpyro_ebm._compat import renamed_kwargs
from numpyro_ebm._keys import as_typed_key

LogDensityFn = Callable[[Float[Array, " dim"]], Float[Array, ""]]

__all__ = [
    "ChainState",
    "MoveInfo",
    "init_chains",
    "mala",
    "ula",
    "imh",
    "isir",
]


class ChainState(NamedTuple):
    """A batch of chains with cached log-densities and gradients.

    Attributes:
        position: current points, shape ``(chains, dim)``.
        logdensity: ``log pi(position)``, shape ``(chains,)``.
        logdensity_grad: ``grad log pi(position)``, shape ``(chains, dim)``.
    """

    position: Float[Array, "chains dim"]
    logdensity: Float[Array, " chains"]
    logdensity_grad: Float[Array, "chains dim"]


class MoveInfo(NamedTuple):
    """What one move did, per chain.

    Attributes:
        accept_prob: Metropolis acceptance probability (MALA, IMH), ``P(index != 0)`` (i-SIR),
            or 1 for a finite ULA step; shape ``(chains,)``.
        is_accepted: whether the chain moved to a new point, shape ``(chains,)``.
    """

    accept_prob: Float[Array, " chains"]
    is_accepted: Array


def _value_and_grad(logdensity_fn: LogDensityFn, position: Array) -> tuple[Array, Array]:
    return jax.vmap(jax.value_and_grad(logdensity_fn))(position)


def _is_finite_point(logdensity: Array, grad: Array | None = None) -> Array:
    ok = jnp.isfinite(logdensity)
    if grad is not None:
        ok = ok & jnp.all(jnp.isfinite(grad), axis=-1)
    return ok


def init_chains(position: Float[Array, "chains dim"], logdensity_fn: LogDensityFn) -> ChainState:
    """Evaluate log-density and gradient at the starting points.

    Args:
        position: starting points, shape ``(chains, dim)``.
        logdensity_fn: log-density of one point, ``(dim,) -> ()``.

    Returns:
        The ``ChainState`` every move below consumes.

    Example:
        >>> import jax.numpy as jnp
        >>> state = init_chains(jnp.zeros((4, 2)), lambda x: -0.5 * x @ x)
        >>> state.logdensity.shape
        (4,)
    """
    position = jnp.asarray(position)
    if position.ndim != 2:
        raise ValueError(
            f"position must have shape (chains, dim); got shape {position.shape}. "
            "Add a leading chain axis, e.g. position[None]."
        )
    logdensity, grad = _value_and_grad(logdensity_fn, position)
    return ChainState(position, logdensity, grad)


def _select(accept: Array, new: ChainState, old: ChainState) -> ChainState:
    """Per-chain choice between two ChainStates (``accept`` has shape ``(chains,)``)."""

    def pick(a, b):
        mask = accept.reshape(accept.shape + (1,) * (a.ndim - 1))
        return jnp.where(mask, a, b)

    return ChainState(*(pick(a, b) for a, b in zip(new, old, strict=True)))


def _metropolis(
    key: PRNGKeyArray, log_ratio: Array, finite: Array, proposal: ChainState, state: ChainState
) -> tuple[ChainState, MoveInfo]:
    """Accept each chain's proposal with probability ``min(1, exp(log_ratio))``.

    A proposal that is not ``finite`` (or whose ratio is NaN) has acceptance probability 0.
    """
    finite = finite & ~jnp.isnan(log_ratio)
    log_ratio = jnp.where(finite, log_ratio, -jnp.inf)
    accept_prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
    u = jax.random.uniform(key, accept_prob.shape, accept_prob.dtype)
    accept = finite & (jnp.log(u) < log_ratio)
    return _select(accept, proposal, state), MoveInfo(accept_prob, accept)


def _langevin_proposal(key: PRNGKeyArray, state: ChainState, step_size: Array) -> Array:
    eta = jnp.reshape(step_size, (-1, 1))  # scalar -> (1, 1), per-chain -> (chains, 1)
    noise = jax.random.normal(key, state.position.shape, state.position.dtype)
    return state.position + eta * state.logdensity_grad + jnp.sqrt(2.0 * eta) * noise


def _log_langevin_kernel(to: Array, frm: Array, frm_grad: Array, step_size: Array) -> Array:
    """``log q(to | frm)`` up to a constant shared by both directions."""
    eta = jnp.reshape(step_size, (-1,))
    diff = to - frm - eta[:, None] * frm_grad
    return -jnp.sum(diff**2, axis=-1) / (4.0 * eta)


def mala(
    key: PRNGKeyArray,
    state: ChainState,
    logdensity_fn: LogDensityFn,
    step_size: Float[Array, ""] | Float[Array, " chains"] | float,
) -> tuple[ChainState, MoveInfo]:
    """One Metropolis-adjusted Langevin step for every chain (paper Algorithm 4).

    Args:
        key: PRNG key.
        state: current chains (``ChainState``), ``(chains, dim)``.
        logdensity_fn: log-density of one point.
        step_size: ``eta`` in ``x' = x + eta grad log pi(x) + sqrt(2 eta) xi``; a scalar or
            shape ``(chains,)``.

    Returns:
        ``(new_state, info)``; non-finite proposals are rejected.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> logp = lambda x: -0.5 * x @ x
        >>> state = init_chains(jnp.zeros((8, 3)), logp)
        >>> state, info = mala(jax.random.key(0), state, logp, 0.5)
        >>> info.accept_prob.shape
        (8,)
    """
    step_size = jnp.asarray(step_size, state.position.dtype)
    key_prop, key_acc = jax.random.split(as_typed_key(key))
    proposal = _langevin_proposal(key_prop, state, step_size)
    logdensity, grad = _value_and_grad(logdensity_fn, proposal)
    log_ratio = (
        logdensity
        - state.logdensity
        + _log_langevin_kernel(state.position, proposal, grad, step_size)
        - _log_langevin_kernel(proposal, state.position, state.logdensity_grad, step_size)
    )
    finite = _is_finite_point(logdensity, grad)
    return _metropolis(key_acc, log_ratio, finite, ChainState(proposal, logdensity, grad), state)


def ula(
    key: PRNGKeyArray,
    state: ChainState,
    logdensity_fn: LogDensityFn,
    step_size: Float[Array, ""] | Float[Array, " chains"] | float,
    *,
    noise_scale: float = 1.0,
) -> tuple[ChainState, MoveInfo]:
    """One unadjusted Langevin step (paper Algorithm 2): always moves, unless non-finite.

    ``noise_scale`` multiplies the Gaussian noise: 1 is ULA, 0 is the noise-free gradient ascent
    CoopFlow uses to refine flow samples. A step that lands on a non-finite log-density or
    gradient is not taken (the chain stays), so NaN never enters the state.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> logp = lambda x: -0.5 * x @ x
        >>> state, info = ula(jax.random.key(0), init_chains(jnp.ones((4, 2)), logp), logp, 0.1)
        >>> bool(info.is_accepted.all())
        True
    """
    step_size = jnp.asarray(step_size, state.position.dtype)
    eta = jnp.reshape(step_size, (-1, 1))
    noise = jax.random.normal(as_typed_key(key), state.position.shape, state.position.dtype)
    proposal = state.position + eta * state.logdensity_grad + noise_scale * jnp.sqrt(2 * eta) * noise
    logdensity, grad = _value_and_grad(logdensity_fn, proposal)
    finite = _is_finite_point(logdensity, grad)
    new_state = _select(finite, ChainState(proposal, logdensity, grad), state)
    return new_state, MoveInfo(finite.astype(state.position.dtype), finite)


def imh(
    key: PRNGKeyArray,
    state: ChainState,
    logdensity_fn: LogDensityFn,
    flow,
) -> tuple[ChainState, MoveInfo]:
    """Independent Metropolis-Hastings with a flow proposal (paper Algorithm 5, 1.a-1.b).

    Args:
        key: PRNG key.
        state: current chains, ``(chains, dim)``.
        logdensity_fn: log-density of one point.
        flow: a flowjax distribution of shape ``(dim,)`` (parameters already unwrapped), used
            through ``sample_and_log_prob`` and ``log_prob``.

    Returns:
        ``(new_state, info)``. A proposal whose target or flow log-density is not finite is
        rejected.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flowjax.distributions import Normal
        >>> logp = lambda x: -0.5 * x @ x
        >>> state = init_chains(jnp.zeros((8, 2)), logp)
        >>> state, info = imh(jax.random.key(0), state, logp, Normal(jnp.zeros(2)))
        >>> float(info.accept_prob.min())  # the proposal is the target: always accepted
        1.0
    """
    key_prop, key_acc = jax.random.split(as_typed_key(key))
    chains = state.position.shape[0]
    proposal, log_q_prop = flow.sample_and_log_prob(key_prop, (chains,))
    log_q_current = flow.log_prob(state.position)
    logdensity, grad = _value_and_grad(logdensity_fn, proposal)
    log_ratio = (logdensity - log_q_prop) - (state.logdensity - log_q_current)
    finite = _is_finite_point(logdensity, grad) & jnp.isfinite(log_q_prop)
    return _metropolis(key_acc, log_ratio, finite, ChainState(proposal, logdensity, grad), state)


@renamed_kwargs()
def isir(
    key: PRNGKeyArray,
    state: ChainState,
    logdensity_fn: LogDensityFn,
    flow,
    num_particles: int,
    *,
    batch_size: int | None = None,
) -> tuple[ChainState, MoveInfo]:
    """Iterated sampling-importance-resampling with a flow proposal (paper Algorithm 6).

    Particle 0 is the current state; ``num_particles - 1`` fresh flow proposals join it, and one
    of the ``num_particles`` is drawn with probability proportional to ``pi / q``.

    Args:
        key: PRNG key.
        state: current chains, ``(chains, dim)``.
        logdensity_fn: log-density of one point.
        flow: a flowjax distribution of shape ``(dim,)``.
        num_particles: particles per chain, counting the current state (``>= 2``).
        batch_size: evaluate the target on at most this many chains' particles at a time
            (``jax.lax.map``); bounds memory when ``chains * num_particles`` is large.
            ``None`` evaluates everything in one batch.

    Returns:
        ``(new_state, info)``; ``info.accept_prob`` is ``1 - w_0``, the probability of leaving
        the current state, and ``info.is_accepted`` says whether it was left. Particles with a
        non-finite weight get weight 0.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flowjax.distributions import Normal
        >>> logp = lambda x: -0.5 * x @ x
        >>> state = init_chains(jnp.zeros((8, 2)), logp)
        >>> state, info = isir(jax.random.key(0), state, logp, Normal(jnp.zeros(2)), 16)
        >>> state.position.shape
        (8, 2)
    """
    if num_particles < 2:
        raise ValueError(
            f"num_particles must be >= 2 (the current state counts as one); got {num_particles}."
        )
    key_prop, key_pick = jax.random.split(as_typed_key(key))
    chains, dim = state.position.shape
    proposals, log_q_prop = flow.sample_and_log_prob(key_prop, (chains, num_particles - 1))
    logdensity_one_chain = jax.vmap(logdensity_fn)
    if batch_size is None:
        log_pi_prop = jax.vmap(logdensity_one_chain)(proposals)
    else:
        log_pi_prop = jax.lax.map(logdensity_one_chain, proposals, batch_size=batch_size)
    log_w_prop = log_pi_prop - log_q_prop
    log_w_prop = jnp.where(jnp.isfinite(log_w_prop), log_w_prop, -jnp.inf)
    log_w_current = state.logdensity - flow.log_prob(state.position)
    # A current state the flow cannot evaluate keeps weight 1 relative to nothing: stay there.
    log_w_current = jnp.where(jnp.isnan(log_w_current), jnp.inf, log_w_current)
    log_w = jnp.concatenate([log_w_current[:, None], log_w_prop], axis=1)
    index = jax.random.categorical(key_pick, log_w, axis=1)
    accept_prob = 1.0 - jnp.exp(log_w[:, 0] - jax.nn.logsumexp(log_w, axis=1))
    accept_prob = jnp.where(jnp.isnan(accept_prob), 0.0, accept_prob)
    moved = index != 0
    chosen = jnp.take_along_axis(proposals, jnp.maximum(index - 1, 0)[:, None, None], axis=1)[:, 0]
    position = jnp.where(moved[:, None], chosen, state.position)
    # Gradients only at the chosen points: chains evaluations instead of chains * num_particles.
    logdensity, grad = _value_and_grad(logdensity_fn, position)
    # The chosen particle had a finite weight, but its gradient may still be non-finite.
    ok = moved & _is_finite_point(logdensity, grad)
    new_state = _select(ok, ChainState(position, logdensity, grad), state)
    return new_state, MoveInfo(accept_prob.astype(state.position.dtype), ok)
