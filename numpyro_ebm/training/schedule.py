"""The default learning-rate schedule of :func:`numpyro_ebm.training.train` (both models)."""

from __future__ import annotations

import optax

__all__ = ["default_schedule"]


def default_schedule(num_steps: int, peak: float = 1e-3) -> optax.Schedule:
    """The default learning rate of both models: a linear warmup from 0 over 5 % of the steps
    (at most 500), then a cosine decay to ``peak / 100`` at ``num_steps``.

    The decay is what makes the final mode weights right: at a constant rate the EBM's weights
    move by several hundredths from chunk to chunk (mini-batch noise), see
    docs/guide-training.md, "Why the weights were off".

    Example:
        >>> rate = default_schedule(1000)
        >>> float(rate(0)), round(float(rate(50)), 6), round(float(rate(1000)), 6)
        (0.0, 0.001, 1e-05)
    """
    warmup = max(1, min(num_steps // 20, 500))
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(num_steps, warmup + 1), peak / 100)
