"""The paper's metrics (Grenioux, Moulines, Gabrié 2023, Sec. 4 and App. C).

* **Zone weights** (Fig. 1, Table 3): the share of samples, or of a density's mass, in each mode
  zone of a :class:`~numpyro_ebm.datasets.Target`. A density is integrated on a regular 2-D grid
  ("manually summing the mass in each region", App. C.3); :class:`GridZoneWeights` does the same
  integral compiled once, to track a mode's weight during training.
* **Log-density error** (Table 1): the median over grid points of the squared difference of
  grid-normalised log-densities.
* **Mixing** (Table 2): the maximum over coordinates of the rank-normalised split R-hat of
  Vehtari et al. (2021), through ArviZ; and the bulk effective sample size.
* **Normalising constant** by importance sampling with a flow proposal, and from it a test
  log-likelihood (for any dimension, where grids are out of reach).

Wherever a log-density is expected, pass a callable ``(..., dim) -> (...)`` or an object with a
``log_density`` method of that signature (the trainer's ``EnergyModel``), or with a ``log_prob``
method (a :class:`~numpyro_ebm.datasets.Target`, a flowjax distribution). Log-densities may be
unnormalised; they must be JAX-traceable.

Example:
    >>> import jax
    >>> from numpyro_ebm import datasets
    >>> target = datasets.two_modes_target()
    >>> x = target.sample(jax.random.key(0), 3000)
    >>> [round(w, 1) for w in zone_weights(x, target).tolist()]
    [0.3, 0.7]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

__all__ = [
    "GridDensity",
    "GridZoneWeights",
    "zone_frequencies",
    "grid_log_density",
    "zone_weights",
    "median_squared_log_density_error",
    "zone_weight_mses",
    "max_rhat",
    "min_ess",
    "log_normalizer",
    "test_log_likelihood",
]

LogDensityFn = Callable[[Float[Array, "*batch dim"]], Float[Array, "*batch"]]
Bounds = tuple[tuple[float, float], tuple[float, float]]


# --- argument handling --------------------------------------------------------------------------


def _as_log_density(obj: Any, who: str) -> LogDensityFn:
    """The log-density function behind ``obj``: its ``log_density``, its ``log_prob``, or itself."""
    for attr in ("log_density", "log_prob"):
        method = getattr(obj, attr, None)
        if callable(method):
            return method
    if callable(obj):
        return obj
    raise TypeError(
        f"{who} needs a log-density: a callable (..., dim) -> (...) or an object with a "
        f"log_density or log_prob method; got {type(obj).__name__}."
    )


def _is_log_density(obj: Any) -> bool:
    return callable(obj) or any(callable(getattr(obj, attr, None)) for attr in ("log_density", "log_prob"))


def _check_n(n: Any, what: str) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"{what} must be an integer >= 1; got {n!r}.")


def _check_samples(samples: ArrayLike, who: str, *, ndim: int = 2) -> Array:
    """``samples`` as a float array of rank ``ndim``, finite (checked when concrete)."""
    samples = jnp.asarray(samples)
    layout = "(n, dim)" if ndim == 2 else "(chains, draws, dim)"
    if samples.ndim != ndim or samples.size == 0:
        raise ValueError(f"{who} needs samples of shape {layout}; got shape {samples.shape}.")
    if not jnp.issubdtype(samples.dtype, jnp.floating):
        samples = samples.astype(jnp.result_type(float))
    if not isinstance(samples, jax.core.Tracer):
        bad = ~np.isfinite(np.asarray(samples))
        if bad.any():
            raise ValueError(
                f"{who}: {int(bad.any(axis=-1).sum())} of the samples hold NaN or infinite "
                "values; drop them (or fix the sampler) before computing diagnostics."
            )
    return samples


def _resolve_zones(zones: Any, n_zones: int | None) -> tuple[Callable, int, Bounds | None]:
    """``(zone_fn, n_zones, default_bounds)`` from a zone function or a Target."""
    bounds = None
    if not callable(zones) and callable(getattr(zones, "zones", None)):  # a Target
        bounds = getattr(zones, "bounds", None)
        n_zones = zones.n_zones if n_zones is None else n_zones
        zones = zones.zones
    if not callable(zones):
        raise TypeError(
            f"zones must be a function (..., dim) -> int (...), e.g. target.zones, or a Target; "
            f"got {type(zones).__name__}."
        )
    if n_zones is None:
        n_zones = getattr(zones, "n_zones", None)
        if n_zones is None:
            raise ValueError("pass n_zones: the zone function does not say how many zones it has.")
    _check_n(n_zones, "n_zones")
    return zones, int(n_zones), bounds


def _zone_indices(zone_fn: Callable, points: Array, n_zones: int) -> Array:
    z = jnp.asarray(zone_fn(points))
    if z.shape != points.shape[:-1] or not jnp.issubdtype(z.dtype, jnp.integer):
        raise ValueError(
            f"the zone function must map points of shape {points.shape} to integers of shape "
            f"{points.shape[:-1]}; got {z.dtype} of shape {z.shape}."
        )
    if not isinstance(z, jax.core.Tracer):
        lo, hi = int(jnp.min(z)), int(jnp.max(z))
        if lo < 0 or hi >= n_zones:
            raise ValueError(
                f"the zone function returned indices in [{lo}, {hi}], outside [0, {n_zones - 1}]; "
                f"pass the right n_zones (here at least {hi + 1})."
            )
    return z


def _check_bounds(bounds: Any) -> Bounds:
    try:
        (x_lo, x_hi), (y_lo, y_hi) = bounds
        x_lo, x_hi, y_lo, y_hi = map(float, (x_lo, x_hi, y_lo, y_hi))
    except (TypeError, ValueError):
        raise ValueError(
            f"bounds must be ((x1_lo, x1_hi), (x2_lo, x2_hi)): grid integration is 2-D only. "
            f"Got {bounds!r}; in other dimensions pass samples instead of a density."
        ) from None
    if not all(map(math.isfinite, (x_lo, x_hi, y_lo, y_hi))) or x_lo >= x_hi or y_lo >= y_hi:
        raise ValueError(f"bounds need finite lo < hi on both axes; got {bounds!r}.")
    return (x_lo, x_hi), (y_lo, y_hi)


# --- zone weights ------------------------------------------------------------------------------


def zone_frequencies(
    samples: Float[ArrayLike, "n dim"], zones: Any, n_zones: int | None = None
) -> Float[Array, " n_zones"]:
    """Share of the samples in each zone.

    Args:
        samples: points of shape ``(n, dim)``, all finite.
        zones: zone function ``(..., dim) -> int (...)`` (e.g. ``target.zones``) or a Target.
        n_zones: number of zones; read from ``zones.n_zones`` when omitted.

    Returns:
        Frequencies of shape ``(n_zones,)``, summing to 1.

    Example:
        >>> import jax.numpy as jnp
        >>> from numpyro_ebm.datasets import LinearZones
        >>> zones = LinearZones(jnp.array([1.0, 0.0]), jnp.array([0.0]))
        >>> x = jnp.array([[-1.0, 0.0], [1.0, 0.0], [2.0, 5.0], [3.0, 0.0]])
        >>> zone_frequencies(x, zones).tolist()
        [0.25, 0.75]
    """
    zone_fn, n_zones, _ = _resolve_zones(zones, n_zones)
    samples = _check_samples(samples, "zone_frequencies")
    z = _zone_indices(zone_fn, samples, n_zones)
    return jnp.bincount(z, length=n_zones).astype(samples.dtype) / samples.shape[0]


class GridDensity(NamedTuple):
    """A log-density normalised on a regular 2-D grid of cell centres.

    Attributes:
        points: cell centres, shape ``(resolution, resolution, 2)``; ``points[i, j]`` is
            ``(x1_i, x2_j)`` (``indexing="ij"``: transpose for ``imshow``).
        log_density: log-density at the points, normalised so that
            ``sum(exp(log_density)) * cell_area == 1``; shape ``(resolution, resolution)``.
    """

    points: Float[Array, "r r 2"]
    log_density: Float[Array, "r r"]

    @property
    def cell_area(self) -> float:
        """Area of one grid cell."""
        p = np.asarray(self.points)
        return float((p[1, 0, 0] - p[0, 0, 0]) * (p[0, 1, 1] - p[0, 0, 1]))


def _map_in_batches(fn: LogDensityFn, points: Array, batch_size: int) -> Array:
    """``fn`` over ``points (n, dim)`` in chunks of ``batch_size``: memory stays bounded."""
    n = points.shape[0]
    n_chunks = -(-n // batch_size)
    # Pad with copies of a real point (not zeros), so the padding never evaluates somewhere odd.
    padded = jnp.concatenate([points, jnp.repeat(points[:1], n_chunks * batch_size - n, axis=0)])
    out = jax.lax.map(fn, padded.reshape(n_chunks, batch_size, points.shape[-1]))
    return out.reshape(-1)[:n]


def _check_output_shape(fn: LogDensityFn, dim: int, dtype, who: str) -> None:
    try:
        out = jax.eval_shape(fn, jax.ShapeDtypeStruct((3, dim), dtype))
    except Exception as err:  # any failure here means fn does not take (..., dim) batches
        raise ValueError(
            f"{who}: the log-density fails on a batch of shape (3, {dim}) ({type(err).__name__}: "
            f"{err}). It must take points of shape (..., {dim}); if your density is not {dim}-D, "
            "grid integration does not apply: pass samples instead."
        ) from err
    if getattr(out, "shape", None) != (3,):
        raise ValueError(
            f"{who}: the log-density must map shape (..., {dim}) to (...); on (3, {dim}) it "
            f"returned shape {getattr(out, 'shape', None)}."
        )


def _cell_centres(bounds: Bounds, resolution: int, dtype) -> Float[Array, "r r 2"]:
    """Centres of a ``resolution x resolution`` grid of cells over ``bounds``, ``indexing="ij"``."""
    (x_lo, x_hi), (y_lo, y_hi) = bounds
    xs = x_lo + (x_hi - x_lo) / resolution * (jnp.arange(resolution, dtype=dtype) + 0.5)
    ys = y_lo + (y_hi - y_lo) / resolution * (jnp.arange(resolution, dtype=dtype) + 0.5)
    return jnp.stack(jnp.meshgrid(xs, ys, indexing="ij"), axis=-1)


def grid_log_density(
    log_density_fn: Any,
    bounds: Bounds,
    resolution: int = 200,
    *,
    batch_size: int = 8192,
) -> GridDensity:
    """Evaluate a 2-D log-density on a grid and normalise it by the Riemann (midpoint) sum.

    Mass outside ``bounds`` is ignored: the result is the density conditioned on the box.

    Args:
        log_density_fn: unnormalised log-density, a callable ``(..., 2) -> (...)`` or an object
            with ``log_density``/``log_prob``. ``-inf`` is allowed; NaN and ``+inf`` raise.
        bounds: ``((x1_lo, x1_hi), (x2_lo, x2_hi))``, e.g. ``target.bounds``.
        resolution: number of cells per axis.
        batch_size: points per evaluation (``lax.map`` over chunks, so memory stays bounded).

    Returns:
        A :class:`GridDensity` ``(points, log_density)``.

    Example:
        >>> import jax.numpy as jnp
        >>> grid = grid_log_density(lambda x: -0.5 * jnp.sum(x**2, -1), ((-6, 6), (-6, 6)))
        >>> grid.log_density.shape, round(float(grid.log_density[100, 100]), 3)
        ((200, 200), -1.839)
    """
    fn = _as_log_density(log_density_fn, "grid_log_density")
    (x_lo, x_hi), (y_lo, y_hi) = _check_bounds(bounds)
    _check_n(resolution, "resolution")
    _check_n(batch_size, "batch_size")
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2; got {resolution}.")
    dtype = jnp.result_type(float)
    points = _cell_centres(((x_lo, x_hi), (y_lo, y_hi)), resolution, dtype)
    _check_output_shape(fn, 2, dtype, "grid_log_density")
    flat = points.reshape(-1, 2)
    logp = _map_in_batches(fn, flat, min(batch_size, flat.shape[0]))
    bad = jnp.isnan(logp) | (logp == jnp.inf)
    if bool(jnp.any(bad)):
        where = np.asarray(flat[jnp.argmax(bad)]).round(4).tolist()
        raise ValueError(
            f"the log-density is NaN or +inf at {int(jnp.sum(bad))} of the grid points "
            f"(e.g. at {where}); a density must be finite (or -inf for zero) to be normalised."
        )
    cell_area = (x_hi - x_lo) * (y_hi - y_lo) / resolution**2
    log_z = logsumexp(logp) + math.log(cell_area)
    if not bool(jnp.isfinite(log_z)):
        raise ValueError("the density is zero (log-density -inf) at every grid point; widen the bounds.")
    return GridDensity(points, (logp - log_z).reshape(resolution, resolution))


# Rotated-grid supersampling: each cell's mass is split equally over the zones of these 4 points
# (in cell widths from its centre). A zone boundary through cell centres along an axis or a
# diagonal (the half-planes x1 + x2 = 0 on a symmetric grid) then splits those cells 2:2 instead
# of handing them all to one side, which biased N(0, I)'s half-plane weights by 0.004.
_SUBCELL_OFFSETS = np.array([[1.0, 3.0], [3.0, -1.0], [-1.0, -3.0], [-3.0, 1.0]]) / 8


def _subcell_shares(points: Array, zone_fn: Callable, n_zones: int) -> Float[Array, "cells n_zones"]:
    """Share of each cell of the grid ``points (r, r, 2)`` in each zone: 0, 1/4, ..., 1."""
    p = np.asarray(points)
    spacing = jnp.asarray([p[1, 0, 0] - p[0, 0, 0], p[0, 1, 1] - p[0, 0, 1]], points.dtype)
    shares = jnp.zeros((p.shape[0] * p.shape[1], n_zones), points.dtype)
    for offset in _SUBCELL_OFFSETS:
        z = _zone_indices(zone_fn, points + offset * spacing, n_zones).reshape(-1)
        shares = shares + jax.nn.one_hot(z, n_zones, dtype=points.dtype) / 4
    return shares


def _grid_zone_masses(grid: GridDensity, zone_fn: Callable, n_zones: int) -> Array:
    shares = _subcell_shares(grid.points, zone_fn, n_zones)
    masses = (jnp.exp(grid.log_density) * grid.cell_area).reshape(-1) @ shares
    return masses / jnp.sum(masses)  # removes the last float rounding of the normalisation


def zone_weights(
    samples_or_log_density: Any,
    zones: Any,
    n_zones: int | None = None,
    *,
    bounds: Bounds | None = None,
    resolution: int = 200,
) -> Float[Array, " n_zones"]:
    """The weight of each mode zone, from samples or from a (2-D) density.

    * Samples ``(n, dim)``: the zone frequencies (:func:`zone_frequencies`), any dimension.
    * A log-density (callable, EBM with ``log_density``, or object with ``log_prob``): the mass
      of each zone by grid integration on ``bounds`` (:func:`grid_log_density`), 2-D only.
      Each cell's mass is shared among the zones of 4 points inside it (rotated-grid
      supersampling), so boundaries through cell centres do not bias the weights.

    Args:
        samples_or_log_density: samples or a log-density, as above.
        zones: zone function ``(..., dim) -> int (...)`` or a Target (which also supplies
            ``n_zones`` and the default ``bounds``).
        n_zones: number of zones; read from ``zones`` when omitted.
        bounds: integration box ``((x1_lo, x1_hi), (x2_lo, x2_hi))``, for densities only.
        resolution: grid cells per axis, for densities only.

    Returns:
        Weights of shape ``(n_zones,)``, summing to 1.

    Example:
        >>> from numpyro_ebm import datasets
        >>> target = datasets.line_of_four_target()
        >>> [round(w, 3) for w in zone_weights(target.log_prob, target).tolist()]
        [0.1, 0.2, 0.3, 0.4]
    """
    zone_fn, n_zones, default_bounds = _resolve_zones(zones, n_zones)
    if not _is_log_density(samples_or_log_density):
        return zone_frequencies(samples_or_log_density, zone_fn, n_zones)
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
    return _grid_zone_masses(grid, zone_fn, n_zones)


class GridZoneWeights:
    """:func:`zone_weights` of a 2-D density as one compiled program: a mode's weight during training.

    The integral of :func:`zone_weights` (densities at the cell centres, normalised on the grid;
    each cell's mass shared among the zones of 4 points inside it), with the grid and each cell's
    zone shares built once, here. Calling it on a model runs one compiled program, compiled once
    per model structure: after every training chunk it costs milliseconds, not a retrace.

    It is also a ``metrics`` entry for :func:`~numpyro_ebm.training.train`, which calls
    ``fn(ebm, flow, bank)``: pass ``zone=`` to make it return that zone's weight as a float (the
    scalar a training history records). Unlike :func:`zone_weights` it does not check the
    density: a NaN or ``+inf`` log-density on the grid gives NaN weights rather than an error,
    so that a diverging training run records NaN and goes on to its divergence check.

    Args:
        zones: zone function ``(..., 2) -> int (...)`` or a Target (which also supplies
            ``n_zones`` and the default ``bounds``).
        n_zones: number of zones; read from ``zones`` when omitted.
        bounds: integration box ``((x1_lo, x1_hi), (x2_lo, x2_hi))``; ``zones.bounds`` of a
            Target by default.
        resolution: grid cells per axis (``>= 2``).
        zone: ``None``: calls return every zone's weight, shape ``(n_zones,)``; an index: calls
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

    def __init__(
        self,
        zones: Any,
        n_zones: int | None = None,
        *,
        bounds: Bounds | None = None,
        resolution: int = 200,
        zone: int | None = None,
    ):
        zone_fn, n_zones, default_bounds = _resolve_zones(zones, n_zones)
        bounds = default_bounds if bounds is None else bounds
        if bounds is None:
            raise ValueError(
                "GridZoneWeights integrates on a 2-D grid: pass bounds=((x1_lo, x1_hi), (x2_lo, x2_hi)) "
                "(e.g. target.bounds), or a Target with bounds as zones."
            )
        bounds = _check_bounds(bounds)
        _check_n(resolution, "resolution")
        if resolution < 2:
            raise ValueError(f"resolution must be >= 2; got {resolution}.")
        if zone is not None and (
            isinstance(zone, bool) or not isinstance(zone, int | np.integer) or not 0 <= zone < n_zones
        ):
            raise ValueError(f"zone must be None or an index in [0, {n_zones - 1}]; got {zone!r}.")
        points = _cell_centres(bounds, resolution, jnp.result_type(float))
        self.bounds, self.resolution, self.n_zones = bounds, resolution, n_zones
        self.zone = None if zone is None else int(zone)
        self._points = points.reshape(-1, 2)
        self._shares = _subcell_shares(points, zone_fn, n_zones)

    def __call__(self, model: Any, flow: Any = None, bank: Any = None) -> Float[Array, " n_zones"] | float:
        """The zone weights of ``model``'s density (``flow`` and ``bank`` are ignored).

        Args:
            model: a log-density: a callable ``(..., 2) -> (...)``, an ``EnergyModel`` (its
                ``log_density``) or an object with ``log_prob``.
            flow: ignored (``train`` passes the sampler's flow).
            bank: ignored (``train`` passes the negative chains).

        Returns:
            The weights, shape ``(n_zones,)`` summing to 1; or, with ``zone=``, that zone's weight.
        """
        weights = _softmax_shares(_as_log_density(model, "GridZoneWeights"), self._points, self._shares)
        return weights if self.zone is None else float(weights[self.zone])


# A bound method of an equinox module (ebm.log_density, target.log_prob) is a pytree: its arrays
# are traced, so every model of one structure shares a compilation.
@eqx.filter_jit
def _softmax_shares(fn, points, shares):
    return jax.nn.softmax(fn(points)) @ shares


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
        target: a Target (supplies ``zones``, ``n_zones``, ``weights`` and default ``bounds``).
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


def _chains_dataset(chains: ArrayLike, who: str):
    import arviz as az  # lazy: importing ArviZ takes ~1 s

    chains = _check_samples(chains, who, ndim=3)
    n_chains, draws, _ = chains.shape
    if n_chains < 2 or draws < 4:
        raise ValueError(
            f"{who} needs at least 2 chains of 4 draws (split R-hat compares chain halves); "
            f"got {n_chains} chains of {draws} draws."
        )
    return az, az.convert_to_dataset(np.asarray(chains, dtype=np.float64))


def max_rhat(chains: Float[ArrayLike, "chains draws dim"]) -> float:
    """Maximum over coordinates of the rank-normalised split R-hat (Vehtari et al. 2021).

    The paper's Table 2 reports it on 128 negative chains; values near 1 (below ~1.01) are
    necessary for convergence. Computed by ``arviz.rhat(..., method="rank")``, which is itself
    the larger of the bulk and the folded-tail R-hat.

    Args:
        chains: draws of shape ``(chains, draws, dim)``, ``chains >= 2``, ``draws >= 4``.

    Returns:
        The maximum R-hat over the ``dim`` coordinates (NaN if a coordinate never moves).

    Example:
        >>> import jax
        >>> chains = jax.random.normal(jax.random.key(0), (4, 500, 3))
        >>> max_rhat(chains) < 1.01
        True
    """
    az, dataset = _chains_dataset(chains, "max_rhat")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 for constant coordinates -> NaN
        return float(np.max(az.rhat(dataset, method="rank")["x"].values))


def min_ess(chains: Float[ArrayLike, "chains draws dim"]) -> float:
    """Minimum over coordinates of the bulk effective sample size (ArviZ, Vehtari et al. 2021).

    Args:
        chains: draws of shape ``(chains, draws, dim)``, ``chains >= 2``, ``draws >= 4``.

    Returns:
        The smallest bulk ESS over the coordinates; about ``chains * draws`` for iid draws.

    Example:
        >>> import jax
        >>> chains = jax.random.normal(jax.random.key(0), (4, 500, 3))
        >>> min_ess(chains) > 1500
        True
    """
    az, dataset = _chains_dataset(chains, "min_ess")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.min(az.ess(dataset, method="bulk")["x"].values))


# --- normalising constant and test log-likelihood ----------------------------------------------


def _log_weights(fn: LogDensityFn, flow: Any, key: PRNGKeyArray, n: int) -> Array:
    x, log_q = flow.sample_and_log_prob(key, (n,))
    log_pi = fn(x)
    if log_pi.shape != (n,):
        raise ValueError(
            f"the log-density must map points of shape (n, dim) to (n,); on flow samples of "
            f"shape {x.shape} it returned shape {log_pi.shape}."
        )
    log_w = log_pi - log_q
    # A non-finite weight (NaN energy, or a flow sample with log q = -inf) counts as zero.
    return jnp.where(jnp.isfinite(log_w), log_w, -jnp.inf)


def log_normalizer(
    log_density_or_ebm: Any,
    flow: Any,
    key: PRNGKeyArray,
    n: int,
    *,
    batch_size: int | None = None,
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """Importance-sampling estimate of ``log Z = log int exp(log pi(x)) dx``, proposal = flow.

    With ``x_i ~ q`` and ``w_i = pi(x_i) / q(x_i)``: ``log Z = logsumexp(log w) - log n`` and
    ``ESS = (sum w)^2 / sum w^2``, both computed in logs. The ESS (between 1 and ``n``) says
    how far to trust ``log Z``: the estimate's standard error is roughly
    ``sqrt((n / ESS - 1) / n)``. Non-finite weights count as zero weight.

    Args:
        log_density_or_ebm: unnormalised ``log pi``, a callable ``(..., dim) -> (...)`` or an
            object with ``log_density`` (an EBM) or ``log_prob``.
        flow: the proposal, a flowjax distribution with ``sample_and_log_prob(key, (n,))``.
        key: PRNG key.
        n: number of proposals.
        batch_size: draw and evaluate the proposals this many at a time (``lax.map``), so
            memory stays bounded; all at once when ``None``. Changes the random stream.

    Returns:
        ``(log_Z, ess)``, two 0-d arrays. ``log_Z`` is ``-inf`` and ``ess`` 0 when every
        weight is zero.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flowjax.distributions import Normal
        >>> q = Normal(jnp.zeros(2), jnp.ones(2))
        >>> log_z, ess = log_normalizer(lambda x: q.log_prob(x) + 1.5, q, jax.random.key(0), 1000)
        >>> round(float(log_z), 4), round(float(ess))
        (1.5, 1000)
    """
    fn = _as_log_density(log_density_or_ebm, "log_normalizer")
    _check_n(n, "n")
    if batch_size is not None:
        _check_n(batch_size, "batch_size")
    if not callable(getattr(flow, "sample_and_log_prob", None)):
        raise TypeError(
            f"flow must be a flowjax distribution with sample_and_log_prob(key, (n,)); got "
            f"{type(flow).__name__}."
        )
    return _log_normalizer(fn, flow, key, int(n), None if batch_size is None else int(batch_size))


# One compiled program (arrays traced, the function and sizes static); a bound method of an
# equinox module, such as ebm.log_density, is a pytree, so its parameters are traced too.
@eqx.filter_jit
def _log_normalizer(fn, flow, key, n, batch_size):
    if batch_size is None or batch_size >= n:
        log_w = _log_weights(fn, flow, key, n)
    else:
        n_chunks = -(-n // batch_size)
        chunks = jax.lax.map(lambda k: _log_weights(fn, flow, k, batch_size), jax.random.split(key, n_chunks))
        log_w = chunks.reshape(-1)[:n]
    lse = logsumexp(log_w)
    log_z = lse - math.log(n)
    ess = jnp.where(jnp.isfinite(lse), jnp.exp(2 * lse - logsumexp(2 * log_w)), 0.0)
    return log_z, ess


def test_log_likelihood(
    log_density_or_ebm: Any,
    data: Float[ArrayLike, "n dim"],
    flow: Any,
    key: PRNGKeyArray,
    n: int,
    *,
    batch_size: int | None = None,
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """Mean normalised log-likelihood of held-out ``data``: ``mean log pi(data) - log Z``.

    ``log Z`` comes from :func:`log_normalizer` with the flow as proposal (``n`` draws).

    Args:
        log_density_or_ebm: unnormalised log-density or EBM, as in :func:`log_normalizer`.
        data: test points of shape ``(m, dim)``, all finite.
        flow: proposal for ``log Z``, a flowjax distribution.
        key: PRNG key.
        n: number of proposals for ``log Z``.
        batch_size: as in :func:`log_normalizer`.

    Returns:
        ``(value, ess)``: the test log-likelihood per point and the importance sampling ESS
        behind its ``log Z`` (0-d arrays).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flowjax.distributions import Normal
        >>> q = Normal(jnp.zeros(2), jnp.ones(2))
        >>> ll, _ = test_log_likelihood(lambda x: q.log_prob(x) + 7.0, jnp.zeros((1, 2)), q,
        ...                             jax.random.key(0), 100)
        >>> round(float(ll), 4)  # log N(0; 0, I_2) = -log(2 pi)
        -1.8379
    """
    fn = _as_log_density(log_density_or_ebm, "test_log_likelihood")
    data = _check_samples(data, "test_log_likelihood")
    log_z, ess = log_normalizer(fn, flow, key, n, batch_size=batch_size)
    return jnp.mean(fn(data)) - log_z, ess


# Not a test: keep pytest from collecting it when a test module imports it by name.
test_log_likelihood.__test__ = False
