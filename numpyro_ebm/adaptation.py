"""Step-size adaptation of the local (MALA) moves: the library's two rules, side by side.

* **Dual averaging** (Nesterov 2009, Hoffman and Gelman 2014, NumPyro's ``dual_averaging``): for a
  fixed target, during a kernel's warmup. It converges to one step size (the averaged iterate)
  and is then frozen, as MCMC theory wants.
* **The x1.05 rule** (Grenioux et al.'s companion code, ``flow_mcmc/mcmc/utils.py``): multiply
  the step by 1.05 when the acceptance beats the target by more than 0.03, divide by 1.05 when it
  misses it by more than 0.03. For EBM training, where the target (the current EBM) moves at
  every step, a rule that keeps tracking is what is needed; dual averaging's shrinking gain
  would freeze the step at its early value.

Both are pure and jit-able; the step size is a scalar array.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, Float
from numpyro.infer.hmc_util import dual_averaging

__all__ = [
    "multiplicative_update",
    "DualAveragingState",
    "dual_averaging_init",
    "dual_averaging_update",
    "dual_averaging_step_size",
    "FACTOR",
    "TOLERANCE",
]

FACTOR = 1.05
TOLERANCE = 0.03


def multiplicative_update(
    step_size: Float[Array, ""],
    accept_prob: Float[Array, ""],
    target: float,
    *,
    factor: float = FACTOR,
    tolerance: float = TOLERANCE,
) -> Float[Array, ""]:
    """The paper's rule: ``step * factor`` if ``accept > target + tolerance``, ``step / factor``
    if ``accept < target - tolerance``, else unchanged (dtype of ``step_size`` kept).

    Example:
        >>> import jax.numpy as jnp
        >>> float(multiplicative_update(jnp.float32(1.0), jnp.float32(0.9), 0.574))
        1.0499999523162842
    """
    step_size = jnp.asarray(step_size)
    scale = jnp.where(
        accept_prob - target > tolerance,
        factor,
        jnp.where(target - accept_prob > tolerance, 1.0 / factor, 1.0),
    )
    return (step_size * scale).astype(step_size.dtype)


class DualAveragingState(NamedTuple):
    """NumPyro's dual-averaging state for ``log step_size`` (``x_t``, ``x_avg``, ``g_avg``, ``t``,
    ``prox_center``)."""

    log_step_size: Array
    log_step_size_avg: Array
    gradient_avg: Array
    count: Array
    prox_center: Array


def dual_averaging_init(step_size: float | Array, dtype=jnp.float32) -> DualAveragingState:
    """Start dual averaging at ``step_size``; its prox centre is ``log(10 * step_size)`` (the
    Stan / NumPyro convention, which pulls early proposals toward larger steps).

    Example:
        >>> state = dual_averaging_init(0.1)
        >>> round(float(dual_averaging_step_size(state)), 3)
        0.1
    """
    init, _ = dual_averaging()
    state = init(jnp.log(10.0 * jnp.asarray(step_size, dtype)))
    state = DualAveragingState(*(jnp.asarray(x, dtype) for x in state))
    return state._replace(log_step_size=jnp.log(jnp.asarray(step_size, dtype)))


def dual_averaging_update(
    state: DualAveragingState, accept_prob: Float[Array, ""], target: float
) -> DualAveragingState:
    """One update toward ``target`` acceptance (NumPyro's ``dual_averaging`` update on
    ``target - accept``)."""
    _, update = dual_averaging()
    dtype = state.log_step_size.dtype
    new = update(jnp.asarray(target - accept_prob, dtype), tuple(state))
    return DualAveragingState(*(jnp.asarray(x, dtype) for x in new))


def dual_averaging_step_size(state: DualAveragingState, *, final: bool = False) -> Float[Array, ""]:
    """The current step size, or with ``final=True`` the averaged one used after warmup."""
    return jnp.exp(state.log_step_size_avg if final else state.log_step_size)
