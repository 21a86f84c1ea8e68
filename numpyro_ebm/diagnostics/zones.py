"""Zone weights (the paper's mode-weight metric, Fig. 1 and Table 3): from samples or a 2-D density."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from numpyro_ebm._compat import renamed_kwargs
from numpyro_ebm.diagnostics._args import (
    Bounds,
    _as_log_density,
    _check_bounds,
    _check_samples,
    _is_log_density,
    _resolve_zones,
    _zone_indices,
)
from numpyro_ebm.diagnostics.grid import (
    GridDensity,
    cell_centres,
    check_resolution,
    evaluate_points,
    grid_log_density,
)

# --- zone weights ------------------------------------------------------------------------------


@renamed_kwargs()
def zone_frequencies(
    samples: Float[ArrayLike, "n dim"], zones: Any, num_zones: int | None = None
) -> Float[Array, " num_zones"]:
    """Share of the samples in each zone.

    Args:
        samples: points of shape ``(n, dim)``, all finite.
        zones: zone function ``(..., dim) -> int (...)`` (e.g. ``target.zones``) or a Target.
        num_zones: number of zones; read from ``zones.num_zones`` when omitted.

    Returns:
        Frequencies of shape ``(num_zones,)``, summing to 1.

    Example:
        >>> import jax.numpy as jnp
        >>> from numpyro_ebm.datasets import LinearZones
        >>> zones = LinearZones(jnp.array([1.0, 0.0]), jnp.array([0.0]))
        >>> x = jnp.array([[-1.0, 0.0], [1.0, 0.0], [2.0, 5.0], [3.0, 0.0]])
        >>> zone_frequencies(x, zones).tolist()
        [0.25, 0.75]
    """
    zone_fn, num_zones, _ = _resolve_zones(zones, num_zones)
    samples = _check_samples(samples, "zone_frequencies")
    z = _zone_indices(zone_fn, samples, num_zones)
    return jnp.bincount(z, length=num_zones).astype(samples.dtype) / samples.shape[0]


# Rotated-grid supersampling: each cell's mass is split equally over the zones of these 4 points
# (in cell widths from its centre). A zone boundary through cell centres along an axis or a
# diagonal (the half-planes x1 + x2 = 0 on a symmetric grid) then splits those cells 2:2 instead
# of handing them all to one side, which biased N(0, I)'s half-plane weights by 0.004.
_SUBCELL_OFFSETS = np.array([[1.0, 3.0], [3.0, -1.0], [-1.0, -3.0], [-3.0, 1.0]]) / 8


def _subcell_shares(points: Array, zone_fn: Callable, num_zones: int) -> Float[Array, "cells num_zones"]:
    """Share of each cell of the grid ``points (r, r, 2)`` in each zone: 0, 1/4, ..., 1."""
    p = np.asarray(points)
    spacing = jnp.asarray([p[1, 0, 0] - p[0, 0, 0], p[0, 1, 1] - p[0, 0, 1]], points.dtype)
    shares = jnp.zeros((p.shape[0] * p.shape[1], num_zones), points.dtype)
    for offset in _SUBCELL_OFFSETS:
        z = _zone_indices(zone_fn, points + offset * spacing, num_zones).reshape(-1)
        shares = shares + jax.nn.one_hot(z, num_zones, dtype=points.dtype) / 4
    return shares


def _grid_zone_masses(grid: GridDensity, zone_fn: Callable, num_zones: int) -> Array:
    shares = _subcell_shares(grid.points, zone_fn, num_zones)
    masses = (jnp.exp(grid.log_density) * grid.cell_area).reshape(-1) @ shares
    return masses / jnp.sum(masses)  # removes the last float rounding of the normalisation


@renamed_kwargs()
def zone_weights(
    samples_or_log_density: Any,
    zones: Any,
    num_zones: int | None = None,
    *,
    bounds: Bounds | None = None,
    resolution: int = 200,
) -> Float[Array, " num_zones"]:
    """The weight of each mode zone, from samples or from a (2-D) density.

    * Samples ``(n, dim)``: the zone frequencies (:func:`zone_frequencies`), any dimension.
    * A log-density (callable, EBM with ``log_density``, or object with ``log_prob``): the mass
      of each zone by grid integration on ``bounds`` (:func:`grid_log_density`), 2-D only.
      Each cell's mass is shared among the zones of 4 points inside it (rotated-grid
      supersampling), so boundaries through cell centres do not bias the weights.

    Args:
        samples_or_log_density: samples or a log-density, as above.
        zones: zone function ``(..., dim) -> int (...)`` or a Target (which also supplies
            ``num_zones`` and the default ``bounds``).
        num_zones: number of zones; read from ``zones`` when omitted.
        bounds: integration box ``((x1_lo, x1_hi), (x2_lo, x2_hi))``, for densities only.
        resolution: grid cells per axis, for densities only.

    Returns:
        Weights of shape ``(num_zones,)``, summing to 1.

    Example:
        >>> from numpyro_ebm import datasets
        >>> target = datasets.line_of_four_target()
        >>> [round(w, 3) for w in zone_weights(target.log_prob, target).tolist()]
        [0.1, 0.2, 0.3, 0.4]
    """
    zone_fn, num_zones, default_bounds = _resolve_zones(zones, num_zones)
    if not _is_log_density(samples_or_log_density):
        return zone_frequencies(samples_or_log_density, zone_fn, num_zones)
    dim = getattr(samples_or_log_density, "dim", None)
    if isinstance(dim, int) and dim != 2:
        raise ValueError(
            f"zone weights of a density are computed by 2-D grid integration, but this density "
            f"has dim={dim}; pass samples from it instead (e.g. the negative chains)."
        )
    bounds = default_bounds if bounds is None else bounds
    if bounds is None:
        raise ValueError(
            "zone_weights of a density needs bounds=((x1_lo, x1_hi), (x2_lo, x2_hi)) for the "
            "grid (e.g. target.bounds), or pass a Target as zones."
        )
    grid = grid_log_density(samples_or_log_density, bounds, resolution)
    return _grid_zone_masses(grid, zone_fn, num_zones)


class GridZoneWeights:
    """:func:`zone_weights` of a 2-D density, compiled once: a mode's weight during training.

    The integral of :func:`zone_weights` (densities at the cell centres, normalised on the grid;
    each cell's mass shared among the zones of 4 points inside it), with the grid and each cell's
    zone shares built once, here. Calling it on a model evaluates the grid with the compiled
    evaluator of :func:`~numpyro_ebm.diagnostics.grid.evaluate_points`, compiled once per model
    structure: after every training chunk it costs milliseconds, not a retrace.

    It is also a ``metrics`` entry for :func:`~numpyro_ebm.training.train`, which calls
    ``fn(ebm, flow, bank)``: pass ``zone=`` to make it return that zone's weight as a float (the
    scalar a training history records). Unlike :func:`zone_weights` it does not check the
    density: a NaN or ``+inf`` log-density on the grid gives NaN weights rather than an error,
    so that a diverging training run records NaN and goes on to its divergence check.

    Args:
        zones: zone function ``(..., 2) -> int (...)`` or a Target (which also supplies
            ``num_zones`` and the default ``bounds``).
        num_zones: number of zones; read from ``zones`` when omitted.
        bounds: integration box ``((x1_lo, x1_hi), (x2_lo, x2_hi))``; ``zones.bounds`` of a
            Target by default.
        resolution: grid cells per axis (``>= 2``).
        zone: ``None``: calls return every zone's weight, shape ``(num_zones,)``; an index: calls
            return that zone's weight, a float.

    Example:
        >>> import jax
        >>> from numpyro_ebm import datasets
        >>> target = datasets.two_modes_target()
        >>> weights = GridZoneWeights(target, resolution=100)
        >>> [round(w, 3) for w in weights(target).tolist()]
        [0.333, 0.667]
        >>> metric = GridZoneWeights(target, resolution=100, zone=1)  # train(metrics={"w": metric})
        >>> round(metric(target.log_prob, None, None), 3)
        0.667
    """

    @renamed_kwargs()
    def __init__(
        self,
        zones: Any,
        num_zones: int | None = None,
        *,
        bounds: Bounds | None = None,
        resolution: int = 200,
        zone: int | None = None,
    ):
        zone_fn, num_zones, default_bounds = _resolve_zones(zones, num_zones)
        bounds = default_bounds if bounds is None else bounds
        if bounds is None:
            raise ValueError(
                "GridZoneWeights integrates on a 2-D grid: pass bounds=((x1_lo, x1_hi), (x2_lo, x2_hi)) "
                "(e.g. target.bounds), or a Target with bounds as zones."
            )
        bounds = _check_bounds(bounds)
        resolution = check_resolution(resolution)
        if zone is not None and (
            isinstance(zone, bool) or not isinstance(zone, int | np.integer) or not 0 <= zone < num_zones
        ):
            raise ValueError(f"zone must be None or an index in [0, {num_zones - 1}]; got {zone!r}.")
        points = cell_centres(bounds, resolution, jnp.result_type(float))
        self.bounds, self.resolution, self.num_zones = bounds, resolution, num_zones
        self.zone = None if zone is None else int(zone)
        self._points = points.reshape(-1, 2)
        self._shares = _subcell_shares(points, zone_fn, num_zones)

    def __call__(self, model: Any, flow: Any = None, bank: Any = None) -> Float[Array, " num_zones"] | float:
        """The zone weights of ``model``'s density (``flow`` and ``bank`` are ignored).

        Args:
            model: a log-density: a callable ``(..., 2) -> (...)``, an ``EnergyModel`` (its
                ``log_density``) or an object with ``log_prob``.
            flow: ignored (``train`` passes the sampler's flow).
            bank: ignored (``train`` passes the negative chains).

        Returns:
            The weights, shape ``(num_zones,)`` summing to 1; or, with ``zone=``, that zone's weight.
        """
        logp = evaluate_points(_as_log_density(model, "GridZoneWeights"), self._points)
        weights = jax.nn.softmax(logp) @ self._shares
        return weights if self.zone is None else float(weights[self.zone])
