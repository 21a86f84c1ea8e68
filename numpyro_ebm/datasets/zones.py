"""Zones: partitions of space into one region per mode, with exact zone masses."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from numpyro_ebm._compat import accepts_old_names, old_name
from numpyro_ebm._validate import is_count
from numpyro_ebm.datasets.mixtures import _check_points, _float_array, _is_concrete

# --- zones: partitions of space into one region per mode -----------------------------------


def _rows(value: ArrayLike, ndim: int, minimum: int, needs: str) -> Array:
    """``value`` as a float array of ``ndim`` dimensions and ``>= minimum`` rows, else a
    ``ValueError`` saying what the zones ``needs``."""
    array = _float_array(value)
    if array.ndim != ndim or array.shape[0] < minimum:
        raise ValueError(f"{needs}; got {array.shape}.")
    return array


class LinearZones(eqx.Module):
    """Slabs between parallel hyperplanes: zone ``j`` holds ``edges[j-1] < x . u <= edges[j]``.

    ``u`` is ``direction`` normalised. One edge gives two half-spaces, ``m`` edges ``m + 1`` strips.

    Example:
        >>> import jax.numpy as jnp
        >>> zones = LinearZones(jnp.array([1.0, 1.0]), jnp.array([0.0]))
        >>> zones(jnp.array([[-1.0, -1.0], [2.0, 0.0]]))
        Array([0, 1], dtype=int32)
    """

    direction: Float[Array, " dim"]
    edges: Float[Array, " m"]

    def __init__(self, direction: ArrayLike, edges: ArrayLike):
        direction, edges = _float_array(direction), _float_array(edges)
        if direction.ndim != 1 or edges.ndim != 1 or edges.shape[0] < 1:
            raise ValueError(
                f"LinearZones needs direction of shape (dim,) and edges of shape (m,), m >= 1; "
                f"got {direction.shape} and {edges.shape}."
            )
        if _is_concrete(direction, edges) and not (
            np.linalg.norm(direction) > 0 and np.all(np.diff(np.asarray(edges)) > 0)
        ):
            raise ValueError("LinearZones needs a nonzero direction and strictly increasing edges.")
        if _is_concrete(direction):  # numpy: no compilation for a constructor
            self.direction = _float_array(np.asarray(direction) / np.linalg.norm(direction))
        else:
            self.direction = direction / jnp.linalg.norm(direction)
        self.edges = edges

    n_zones = old_name("num_zones")

    @property
    def num_zones(self) -> int:
        return self.edges.shape[0] + 1

    def __call__(self, x: Float[ArrayLike, "*batch dim"]) -> Int[Array, "*batch"]:
        x = _float_array(x)
        _check_points(x, self.direction.shape[0], "LinearZones")
        return _linear_zones(self.direction, self.edges, x)


class RadialZones(eqx.Module):
    """Annuli: zone ``j`` holds ``edges[j-1] < |x| <= edges[j]`` (zone 0 contains the origin).

    Example:
        >>> import jax.numpy as jnp
        >>> RadialZones(jnp.array([1.5]))(jnp.array([[1.0, 0.0], [0.0, 2.0]]))
        Array([0, 1], dtype=int32)
    """

    edges: Float[Array, " m"]

    def __init__(self, edges: ArrayLike):
        edges = _rows(edges, 1, 1, "RadialZones needs edges of shape (m,), m >= 1")
        if _is_concrete(edges) and not (
            np.all(np.asarray(edges) > 0) and np.all(np.diff(np.asarray(edges)) > 0)
        ):
            raise ValueError(f"RadialZones needs positive, increasing edges; got {edges}.")
        self.edges = edges

    n_zones = old_name("num_zones")

    @property
    def num_zones(self) -> int:
        return self.edges.shape[0] + 1

    def __call__(self, x: Float[ArrayLike, "*batch dim"]) -> Int[Array, "*batch"]:
        return _radial_zones(self.edges, _float_array(x))


@accepts_old_names
class AngularZones(eqx.Module):
    """``num_sectors`` equal angular sectors in the plane; sector ``i`` is centred on the angle
    ``phase + 2 pi i / num_sectors``.

    Example:
        >>> import jax.numpy as jnp
        >>> AngularZones(4)(jnp.array([[1.0, 0.1], [0.0, 1.0], [-1.0, 0.0]]))
        Array([0, 1, 2], dtype=int32)
    """

    num_sectors: int = eqx.field(static=True)
    phase: float = eqx.field(static=True, default=0.0)

    def __check_init__(self):
        n = self.num_sectors
        if not is_count(n, 2):
            raise ValueError(f"AngularZones needs an integer num_sectors >= 2; got {n!r}.")

    n_zones = old_name("num_zones")

    @property
    def num_zones(self) -> int:
        return int(self.num_sectors)

    def __call__(self, x: Float[ArrayLike, "*batch 2"]) -> Int[Array, "*batch"]:
        x = _float_array(x)
        _check_points(x, 2, "AngularZones")
        return _angular_zones(self.num_sectors, self.phase, x)


class NearestMeanZones(eqx.Module):
    """Voronoi cells of a set of points: zone ``k`` holds the points closest to ``means[k]``.

    Example:
        >>> import jax.numpy as jnp
        >>> zones = NearestMeanZones(jnp.array([[0.0, 0.0], [4.0, 0.0]]))
        >>> zones(jnp.array([[1.0, 1.0], [3.0, 0.0]]))
        Array([0, 1], dtype=int32)
    """

    means: Float[Array, "k dim"]

    def __init__(self, means: ArrayLike):
        self.means = _rows(means, 2, 2, "NearestMeanZones needs means of shape (k >= 2, dim)")

    n_zones = old_name("num_zones")

    @property
    def num_zones(self) -> int:
        return self.means.shape[0]

    def __call__(self, x: Float[ArrayLike, "*batch dim"]) -> Int[Array, "*batch"]:
        x = _float_array(x)
        _check_points(x, self.means.shape[1], "NearestMeanZones")
        return _nearest_mean_zones(self.means, x)


def _count_below(values: Array, edges: Array) -> Array:
    return jnp.sum(values[..., None] > edges, axis=-1).astype(jnp.int32)


@jax.jit
def _linear_zones(direction, edges, x):
    return _count_below(x @ direction, edges)


@jax.jit
def _radial_zones(edges, x):
    return _count_below(jnp.linalg.norm(x, axis=-1), edges)


@partial(jax.jit, static_argnums=(0, 1))
def _angular_zones(num_sectors, phase, x):
    angle = jnp.arctan2(x[..., 1], x[..., 0]) - phase
    sector = jnp.round(angle / (2 * jnp.pi / num_sectors)).astype(jnp.int32)
    return jnp.mod(sector, num_sectors)


@jax.jit
def _nearest_mean_zones(means, x):
    sq = jnp.sum((x[..., None, :] - means) ** 2, axis=-1)
    return jnp.argmin(sq, axis=-1).astype(jnp.int32)


def _zone_masses_1d(cdf: Callable[[np.ndarray], np.ndarray], lower: float, edges) -> np.ndarray:
    """Mass of each interval between ``lower``, ``edges`` and ``+inf`` under a 1-D law's ``cdf``.

    Plain float64 NumPy: exact to ~1e-16 and nothing to compile when a target is built.
    """
    points = np.concatenate([[lower], np.asarray(edges, np.float64), [np.inf]])
    return np.diff(cdf(points))
