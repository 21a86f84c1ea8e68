"""Averaged EBM parameters: the tail mean (``average_last``) and the moving average (``ema``).

Both live in one slot of the training state, ``_Carry.ebm_average``, which each step moves
toward the new iterate by a rate ``r_k``:

* tail mean (Polyak-Ruppert): ``r_k = 1 / n_k`` with ``n_k`` the steps done in the averaged
  tail (``1`` before it, so the average follows the iterate until the tail starts);
* exponential moving average with decay ``ema``: ``r_k = max(1 / n_k, 1 - ema)``, with ``n_k``
  counted from the start of training (or of the tail, if both are set): the plain mean of the
  first ``1 / (1 - ema)`` iterates, then exponential forgetting. The start carries no bias
  toward the initial parameters, unlike ``optax.ema`` without its debiasing.

With ``ema = 0.995`` the average spans the last ~200 steps: it removes the mini-batch noise that
makes the mode weights of a single iterate wander while the rate is still high, and, unlike a
mean over the last half, does not drag in the models of early training (docs/guide-training.md,
"Why the weights were off").

Example:
    >>> import jax.numpy as jnp
    >>> avg = jnp.zeros(())
    >>> for k in range(3):  # an EMA of 0.5: mean of the first two iterates, then halving
    ...     avg = update(avg, jnp.asarray(float(k + 1)), jnp.asarray(k), average_start=0, ema=0.5)
    >>> float(avg)
    2.25
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, PyTree

__all__ = ["average_start", "update", "is_averaged"]


def average_start(num_steps: int, average_last: float, ema: float) -> int:
    """The step after which the EBM parameters are averaged: ``num_steps`` (never) without
    averaging, ``0`` for an EMA alone, the start of the last ``average_last`` of the steps."""
    if average_last > 0:
        return int(round(num_steps * (1 - average_last)))
    return 0 if ema > 0 else num_steps


def is_averaged(step: int, start: int, average_last: float, ema: float) -> bool:
    """Whether the model to return after ``step`` steps is the average (else the iterate)."""
    return (average_last > 0 or ema > 0) and step > start


def update(average: PyTree, params: PyTree, step: Array, *, average_start: int, ema: float) -> PyTree:
    """The average after step ``step + 1`` (``step`` 0-based: steps done before this one).

    Args:
        average: the average over the steps before, a pytree like ``params``.
        params: the iterate after this step.
        step: int scalar, steps done before this one.
        average_start: from :func:`average_start`.
        ema: the decay (``0``: the plain tail mean).
    """
    n = jnp.maximum(step + 1 - average_start, 1)

    def move(avg: Array, new: Array) -> Array:
        if ema > 0:
            return avg + (new - avg) * jnp.maximum(1.0 / n, 1.0 - ema).astype(new.dtype)
        return avg + (new - avg) / n.astype(new.dtype)

    return jax.tree.map(move, average, params)
