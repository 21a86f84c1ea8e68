"""The one 2-D grid evaluator: a log-density on cell centres, in compiled chunks, normalised.

Used by :func:`grid_log_density`, :func:`zone_weights`, :class:`GridZoneWeights` and the plots.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float

from numpyro_ebm._validate import positive_int
from numpyro_ebm.diagnostics._args import Bounds, LogDensityFn, _as_log_density, _check_bounds

__all__ = ["GridDensity", "grid_log_density", "evaluate_grid", "evaluate_points", "cell_centres"]


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


_CHUNK = 65536  # points per compiled evaluation: bounds memory; one compilation per chunk size


# A bound method of an equinox module (ebm.log_density, target.log_prob, flow.log_prob) is a
# pytree: its arrays are traced, so every model of one structure reuses one compilation.
@eqx.filter_jit
def _call(fn, x):
    return fn(x)


def evaluate_points(fn: LogDensityFn, points: Float[Array, "n dim"], batch_size: int = _CHUNK) -> Array:
    """``fn`` on ``points (n, dim)`` in fixed-size compiled chunks; shape ``(n,)``.

    Memory stays bounded by ``batch_size`` points, and redrawing or re-measuring a model of the same
    structure reuses the compiled program (milliseconds after every training chunk). The last
    chunk is padded with copies of a real point, never with zeros, so padding never evaluates
    somewhere odd.

    Example:
        >>> import jax.numpy as jnp
        >>> evaluate_points(lambda x: -jnp.sum(x**2, -1), jnp.ones((5, 2)), batch_size=2).tolist()
        [-2.0, -2.0, -2.0, -2.0, -2.0]
    """
    points = jnp.asarray(points)
    n = points.shape[0]
    size = min(n, batch_size)
    out = []
    for lo in range(0, n, size):
        chunk = points[lo : lo + size]
        pad = size - chunk.shape[0]
        if pad:
            chunk = jnp.concatenate([chunk, jnp.repeat(chunk[:1], pad, axis=0)])
        values = _call(fn, chunk)
        if values.shape != (size,):
            raise ValueError(
                f"the log-density must map points (n, {points.shape[-1]}) to (n,); it returned "
                f"shape {values.shape}."
            )
        out.append(values[: size - pad])
    return out[0] if len(out) == 1 else jnp.concatenate(out)


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


def cell_centres(bounds: Bounds, resolution: int, dtype) -> Float[Array, "r r 2"]:
    """Centres of a ``resolution x resolution`` grid of cells over ``bounds``, ``indexing="ij"``.

    Example:
        >>> import jax.numpy as jnp
        >>> cell_centres(((0, 2), (0, 1)), 2, jnp.float32)[1, 0].tolist()
        [1.5, 0.25]
    """
    (x_lo, x_hi), (y_lo, y_hi) = bounds
    xs = x_lo + (x_hi - x_lo) / resolution * (jnp.arange(resolution, dtype=dtype) + 0.5)
    ys = y_lo + (y_hi - y_lo) / resolution * (jnp.arange(resolution, dtype=dtype) + 0.5)
    return jnp.stack(jnp.meshgrid(xs, ys, indexing="ij"), axis=-1)


def check_resolution(resolution: Any) -> int:
    """``resolution`` (cells per axis) as an int >= 2, else ``ValueError``."""
    resolution = positive_int(resolution, "resolution")
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2; got {resolution}.")
    return resolution


def evaluate_grid(
    log_density: Any, bounds: Bounds, resolution: int, *, batch_size: int = _CHUNK, who: str
) -> tuple[LogDensityFn, Float[Array, "r r 2"], Float[Array, "r r"], float]:
    """The one grid evaluation: ``(fn, points, normalised log-density, log Z)``.

    Checks the arguments, evaluates at the cell centres (:func:`evaluate_points`), refuses NaN and
    ``+inf``, and normalises by the midpoint rule; ``log Z`` is the log of the unnormalised mass in
    the box. :func:`grid_log_density` and the plots are built on it.

    Example:
        >>> import jax.numpy as jnp
        >>> fn, points, logp, log_z = evaluate_grid(lambda x: jnp.zeros(x.shape[:-1]),
        ...                                         ((0, 2), (0, 1)), 4, who="example")
        >>> points.shape, logp.shape, round(log_z, 4)  # log of the box's area, 2
        ((4, 4, 2), (4, 4), 0.6931)
    """
    fn = _as_log_density(log_density, who)
    (x_lo, x_hi), (y_lo, y_hi) = bounds = _check_bounds(bounds)
    resolution = check_resolution(resolution)
    batch_size = positive_int(batch_size, "batch_size")
    dtype = jnp.result_type(float)
    _check_output_shape(fn, 2, dtype, who)
    points = cell_centres(bounds, resolution, dtype)
    flat = points.reshape(-1, 2)
    logp = evaluate_points(fn, flat, batch_size)
    bad = jnp.isnan(logp) | (logp == jnp.inf)
    if bool(jnp.any(bad)):
        where = np.asarray(flat[jnp.argmax(bad)]).round(4).tolist()
        raise ValueError(
            f"{who}: the log-density is NaN or +inf at {int(jnp.sum(bad))} of the grid points "
            f"(e.g. at {where}); a density must be finite (or -inf for zero) to be normalised."
        )
    cell_area = (x_hi - x_lo) * (y_hi - y_lo) / resolution**2
    log_z = float(logsumexp(logp)) + math.log(cell_area)
    if not math.isfinite(log_z):
        raise ValueError(
            f"{who}: the density is zero (log-density -inf) at every grid point; widen the bounds."
        )
    return fn, points, (logp - log_z).reshape(resolution, resolution), log_z


def grid_log_density(
    log_density_fn: Any,
    bounds: Bounds,
    resolution: int = 200,
    *,
    batch_size: int = _CHUNK,
) -> GridDensity:
    """Evaluate a 2-D log-density on a grid and normalise it by the Riemann (midpoint) sum.

    Mass outside ``bounds`` is ignored: the result is the density conditioned on the box.

    Args:
        log_density_fn: unnormalised log-density, a callable ``(..., 2) -> (...)`` or an object
            with ``log_density``/``log_prob``. ``-inf`` is allowed; NaN and ``+inf`` raise.
        bounds: ``((x1_lo, x1_hi), (x2_lo, x2_hi))``, e.g. ``target.bounds``.
        resolution: number of cells per axis.
        batch_size: points per compiled evaluation (chunks, so memory stays bounded).

    Returns:
        A :class:`GridDensity` ``(points, log_density)``.

    Example:
        >>> import jax.numpy as jnp
        >>> grid = grid_log_density(lambda x: -0.5 * jnp.sum(x**2, -1), ((-6, 6), (-6, 6)))
        >>> grid.log_density.shape, round(float(grid.log_density[100, 100]), 3)
        ((200, 200), -1.839)
    """
    _, points, log_density, _ = evaluate_grid(
        log_density_fn, bounds, resolution, batch_size=batch_size, who="grid_log_density"
    )
    return GridDensity(points, log_density)
