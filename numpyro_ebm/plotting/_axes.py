"""Helpers shared by the plots: the figure/axes choice and the grid of a density."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from numpyro_ebm.diagnostics.grid import evaluate_grid, evaluate_points

Bounds = tuple[tuple[float, float], tuple[float, float]]
_KINDS = ("density", "log_density", "energy")


def _figure_and_axes(ax, figsize=(4.2, 3.6)):
    if ax is not None:
        return ax.figure, ax
    import matplotlib.pyplot as plt  # lazy: importing pyplot costs ~0.5 s and picks a backend

    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


class _Grid(NamedTuple):
    fn: Callable
    log_density: np.ndarray  # (resolution, resolution), indexed [x1, x2], normalised on the box
    log_z: float  # log of the unnormalised mass in the box


def _grid(log_density: Any, bounds: Bounds, resolution: int, who: str) -> _Grid:
    """The density on cell centres over ``bounds``, normalised (``diagnostics``' grid evaluator)."""
    fn, _, logp, log_z = evaluate_grid(log_density, bounds, resolution, who=who)
    return _Grid(fn, np.asarray(logp, np.float64), log_z)


def _evaluate(fn: Callable, points: np.ndarray) -> np.ndarray:
    """``fn`` on ``points (n, 2)`` with the grid's compiled evaluator; float64 NumPy out."""
    return np.asarray(evaluate_points(fn, jnp.asarray(points, jnp.result_type(float))), np.float64)
