"""Errors against a known target: Table 1's log-density error and Table 3's zone-weight MSEs."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from numpyro_ebm.diagnostics._args import Bounds, _as_log_density
from numpyro_ebm.diagnostics.grid import grid_log_density
from numpyro_ebm.diagnostics.zones import zone_frequencies, zone_weights

# --- log-density error and zone-weight errors (Tables 1 and 3) ---------------------------------


def _highest_density_region(log_density: Array, cell_area: float, mass: float) -> np.ndarray:
    """Mask of the fewest grid points whose cells hold at least ``mass`` of the density."""
    p = np.exp(np.asarray(log_density, dtype=np.float64)).ravel()
    order = np.argsort(p)[::-1]
    cumulative = np.cumsum(p[order]) * cell_area
    k = int(np.searchsorted(cumulative, mass * cumulative[-1]))
    mask = np.zeros(p.shape, dtype=bool)
    mask[order[: k + 1]] = True
    return mask.reshape(np.shape(log_density))


def _resolve_target_bounds(target: Any, bounds: Bounds | None, who: str) -> Bounds:
    bounds = getattr(target, "bounds", None) if bounds is None else bounds
    if bounds is None:
        raise ValueError(
            f"{who} integrates on a 2-D grid: pass bounds=((x1_lo, x1_hi), (x2_lo, x2_hi)); "
            "this target has none (it is not 2-D, or carries no bounds)."
        )
    return bounds


def median_squared_log_density_error(
    log_density_fn: Any,
    target: Any,
    *,
    bounds: Bounds | None = None,
    resolution: int = 200,
    mass: float = 0.99,
) -> float:
    """Table 1's metric: ``median_x (log p_model(x) - log p_true(x))^2`` on a 2-D grid.

    Both densities are normalised on the same grid (:func:`grid_log_density`), so an EBM's
    unknown constant cancels. The paper does not say which points ``x`` the median runs over.
    Here they are the grid points of the true density's highest-density region holding
    ``mass`` of its mass (99% by default): over the whole box the median would be dominated by
    empty space, where both log-densities are far below anything that matters.

    Args:
        log_density_fn: model log-density (callable, or object with ``log_density``/``log_prob``).
        target: the truth: an object with ``log_prob`` (and ``bounds``), e.g. a Target.
        bounds: grid box; ``target.bounds`` by default.
        resolution: grid cells per axis.
        mass: share of the true mass whose points enter the median, in ``(0, 1]``; 1 takes
            every point of positive true density.

    Returns:
        The median squared error, a float (0 for a perfect model).

    Example:
        >>> from numpyro_ebm import datasets
        >>> target = datasets.two_modes_target()
        >>> median_squared_log_density_error(lambda x: target.log_prob(x) + 3.0, target) < 1e-8
        True
    """
    if not 0 < mass <= 1:
        raise ValueError(f"mass must be in (0, 1]; got {mass!r}.")
    bounds = _resolve_target_bounds(target, bounds, "median_squared_log_density_error")
    true = grid_log_density(_as_log_density(target, "target"), bounds, resolution)
    model = grid_log_density(log_density_fn, bounds, resolution)
    region = _highest_density_region(true.log_density, true.cell_area, mass)
    diff = np.asarray(model.log_density, np.float64) - np.asarray(true.log_density, np.float64)
    return float(np.median(diff[region] ** 2))


def zone_weight_mses(
    init_samples: Float[ArrayLike, "n dim"],
    negative_samples: Float[ArrayLike, "m dim"],
    log_density_fn: Any,
    target: Any,
    *,
    bounds: Bounds | None = None,
    resolution: int = 200,
) -> dict[str, float]:
    """Table 3's three mean squared errors between zone-weight vectors (2-D targets).

    The EBM's zone weights come from grid integration of ``log_density_fn``; the samples' from
    their zone frequencies; the truth is ``target.weights``. Each MSE is the mean over zones.

    Args:
        init_samples: the negative chains' starting points, shape ``(n, 2)``.
        negative_samples: the negative samples they produced, shape ``(m, 2)``.
        log_density_fn: the EBM (callable or object with ``log_density``).
        target: a Target (supplies ``zones``, ``num_zones``, ``weights`` and default ``bounds``).
        bounds: grid box; ``target.bounds`` by default.
        resolution: grid cells per axis.

    Returns:
        ``{"init_vs_ebm": ..., "negatives_vs_ebm": ..., "ebm_vs_target": ...}``: the columns
        "MSE of the init. wrt E", "MSE of the neg. samples wrt E" and "MSE of E wrt -log p*".

    Example:
        >>> import jax
        >>> from numpyro_ebm import datasets
        >>> target = datasets.line_of_four_target()
        >>> x = target.sample(jax.random.key(0), 4000)
        >>> mses = zone_weight_mses(x, x, target.log_prob, target)
        >>> mses["ebm_vs_target"] < 1e-10
        True
    """
    bounds = _resolve_target_bounds(target, bounds, "zone_weight_mses")
    ebm = zone_weights(log_density_fn, target, bounds=bounds, resolution=resolution)
    init = zone_frequencies(init_samples, target)
    negatives = zone_frequencies(negative_samples, target)
    mse = lambda a, b: float(jnp.mean((jnp.asarray(a) - jnp.asarray(b)) ** 2))
    return {
        "init_vs_ebm": mse(init, ebm),
        "negatives_vs_ebm": mse(negatives, ebm),
        "ebm_vs_target": mse(ebm, target.weights),
    }


# --- mixing (Table 2) --------------------------------------------------------------------------
