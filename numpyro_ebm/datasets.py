"""The paper's ground-truth targets and data sets (Grenioux, Moulines, Gabrié 2023, Sec. 4).

A :class:`Target` bundles what the experiments and the metrics need about a known distribution:
an exact ``log_prob``, a ``sample`` method, a partition of space into mode *zones*
(``zones(x)`` gives an integer per point), the exact probability ``weights`` of those zones, and
``bounds`` for 2-D grid integration. The distribution inside is any module with ``log_prob``,
``sample`` and ``dim``: an isotropic :class:`GaussianMixture` for most targets, a
:class:`RadialMixture` for the rings.

Everything is generated; nothing is downloaded (``digits`` ships with scikit-learn).

Example:
    >>> import jax
    >>> data, target = load("two_modes", jax.random.key(0), 1000)
    >>> data.shape, target.n_zones
    ((1000, 2), 2)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Protocol

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray
from scipy.special import ndtr

__all__ = [
    "GaussianMixture",
    "RadialMixture",
    "LinearZones",
    "RadialZones",
    "AngularZones",
    "NearestMeanZones",
    "Distribution",
    "Target",
    "MIXTURE_SCALE",
    "two_modes_target",
    "two_gaussians_target",
    "line_of_four_target",
    "eight_gaussians_target",
    "rings_target",
    "gaussian_mixture_target",
    "two_modes",
    "two_gaussians",
    "line_of_four",
    "eight_gaussians",
    "rings",
    "gaussian_mixture",
    "TARGETS",
    "load",
    "digits",
]

Bounds = tuple[tuple[float, float], tuple[float, float]]

# The paper's constant for the high-dimensional mixture (App. C.5).
MIXTURE_SCALE = 0.5919

# RadialMixture clamps the radius here: the exact density has an integrable 1/r spike at the
# origin, of height ~exp(-22)/r for the rings. Clamping keeps log_prob and its gradient finite,
# and changes the density only inside a disk of radius 1e-6, whose mass is below 1e-15.
_MIN_RADIUS = 1e-6


def _float_array(x: ArrayLike) -> Array:
    return jnp.asarray(x, dtype=jnp.result_type(float))


def _is_concrete(*xs) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def _check_n(n, what: str = "n") -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"{what} must be an integer >= 1; got {n!r}.")


def _check_points(x: Array, dim: int, who: str) -> None:
    if x.ndim < 1 or x.shape[-1] != dim:
        raise ValueError(
            f"{who} takes points of shape (..., {dim}); got shape {x.shape}. "
            f"The last axis must hold the {dim} coordinates."
        )


def _check_mixture_weights(weights: Array, k: int, who: str) -> None:
    if weights.shape != (k,):
        raise ValueError(f"{who}: weights must have shape ({k},); got {weights.shape}.")
    if _is_concrete(weights):
        w = np.asarray(weights)
        if np.any(~np.isfinite(w)) or np.any(w < 0) or abs(w.sum() - 1) > 1e-5:
            raise ValueError(
                f"{who}: weights must be >= 0 and sum to 1; got {w.tolist()}. Divide them by their sum."
            )


def _check_positive(x: Array, name: str, who: str) -> None:
    if _is_concrete(x) and not np.all(np.asarray(x) > 0):
        raise ValueError(f"{who}: {name} must be positive; got {np.asarray(x).tolist()}.")


class GaussianMixture(eqx.Module):
    """Mixture of isotropic Gaussians ``sum_k w_k N(means[k], variances[k] I)``.

    Attributes:
        means: component means, shape ``(k, dim)``.
        variances: per-component isotropic variance (not standard deviation), shape ``(k,)``.
        weights: mixture weights, ``>= 0`` and summing to 1, shape ``(k,)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> mix = GaussianMixture(jnp.array([[-1.0, 0.0], [1.0, 0.0]]), jnp.array([0.1, 0.1]),
        ...                       jnp.array([0.5, 0.5]))
        >>> mix.sample(jax.random.key(0), 5).shape, mix.log_prob(jnp.zeros((3, 2))).shape
        ((5, 2), (3,))
    """

    means: Float[Array, "k dim"]
    variances: Float[Array, " k"]
    weights: Float[Array, " k"]

    def __init__(self, means: ArrayLike, variances: ArrayLike, weights: ArrayLike):
        means, variances, weights = map(_float_array, (means, variances, weights))
        if means.ndim != 2:
            raise ValueError(f"GaussianMixture: means must have shape (k, dim); got {means.shape}.")
        k = means.shape[0]
        if variances.shape != (k,):
            raise ValueError(
                f"GaussianMixture: variances must have shape ({k},), one isotropic variance per "
                f"component; got {variances.shape}."
            )
        _check_positive(variances, "variances", "GaussianMixture")
        _check_mixture_weights(weights, k, "GaussianMixture")
        self.means, self.variances, self.weights = means, variances, weights

    @property
    def dim(self) -> int:
        return self.means.shape[-1]

    def log_prob(self, x: Float[ArrayLike, "*batch dim"]) -> Float[Array, "*batch"]:
        """Exact log-density at points of shape ``(..., dim)``; returns shape ``(...)``."""
        x = _float_array(x)
        _check_points(x, self.dim, "GaussianMixture.log_prob")
        return _mixture_log_prob(self.means, self.variances, self.weights, x)

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n dim"]:
        """``n`` independent draws, shape ``(n, dim)``."""
        _check_n(n)
        return _mixture_sample(self.means, self.variances, self.weights, key, int(n))

    def coordinate_variances(self) -> Float[Array, " dim"]:
        """Variance of each coordinate under the mixture (law of total variance)."""
        mean = self.weights @ self.means
        second = self.weights @ (self.variances[:, None] + self.means**2)
        return second - mean**2


# The methods call jitted kernels: one compiled program per shape instead of one per primitive
# (eager dispatch compiles every primitive separately, which dominates small calls).
@jax.jit
def _mixture_log_prob(means, variances, weights, x):
    sq = jnp.sum((x[..., None, :] - means) ** 2, axis=-1)  # (..., k)
    log_norm = 0.5 * means.shape[-1] * jnp.log(2 * jnp.pi * variances)
    return logsumexp(jnp.log(weights) - log_norm - 0.5 * sq / variances, axis=-1)


@partial(jax.jit, static_argnums=4)
def _mixture_sample(means, variances, weights, key, n):
    key_comp, key_noise = jax.random.split(key)
    comp = jax.random.categorical(key_comp, jnp.log(weights), shape=(n,))
    noise = jax.random.normal(key_noise, (n, means.shape[-1]), means.dtype)
    return means[comp] + jnp.sqrt(variances[comp])[:, None] * noise


class RadialMixture(eqx.Module):
    """2-D law with a Gaussian-mixture radius and a uniform angle (the paper's rings).

    ``r ~ sum_k w_k N(radius_means[k], radius_stds[k]^2)``, ``phi ~ U[0, 2 pi)``,
    ``x = (r cos phi, r sin phi)``. The exact density is
    ``p(x) = p_|r|(|x|) / (2 pi |x|)``, with ``p_|r|(s) = p_r(s) + p_r(-s)`` the folded radius
    density (a negative ``r`` lands on the opposite side, so folding makes it exact; for the
    rings the fold is worth 1e-11).

    Attributes:
        radius_means: centres of the radius components, shape ``(k,)``.
        radius_stds: their standard deviations, shape ``(k,)``.
        weights: component weights, shape ``(k,)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> ring = RadialMixture(jnp.array([1.0]), jnp.array([0.1]), jnp.array([1.0]))
        >>> ring.sample(jax.random.key(0), 4).shape
        (4, 2)
    """

    radius_means: Float[Array, " k"]
    radius_stds: Float[Array, " k"]
    weights: Float[Array, " k"]

    def __init__(self, radius_means: ArrayLike, radius_stds: ArrayLike, weights: ArrayLike):
        radius_means, radius_stds, weights = map(_float_array, (radius_means, radius_stds, weights))
        if radius_means.ndim != 1 or radius_stds.shape != radius_means.shape:
            raise ValueError(
                "RadialMixture: radius_means and radius_stds must both have shape (k,); got "
                f"{radius_means.shape} and {radius_stds.shape}."
            )
        _check_positive(radius_stds, "radius_stds", "RadialMixture")
        _check_mixture_weights(weights, radius_means.shape[0], "RadialMixture")
        self.radius_means, self.radius_stds, self.weights = radius_means, radius_stds, weights

    @property
    def dim(self) -> int:
        return 2

    def log_prob(self, x: Float[ArrayLike, "*batch 2"]) -> Float[Array, "*batch"]:
        """Exact log-density at points of shape ``(..., 2)``; finite everywhere, origin included."""
        x = _float_array(x)
        _check_points(x, 2, "RadialMixture.log_prob")
        return _radial_log_prob(self.radius_means, self.radius_stds, self.weights, x)

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n 2"]:
        """``n`` independent draws, shape ``(n, 2)``."""
        _check_n(n)
        return _radial_sample(self.radius_means, self.radius_stds, self.weights, key, int(n))

    def coordinate_variances(self) -> Float[Array, " 2"]:
        """Variance of each coordinate: ``E[r^2] / 2`` (the mean is 0 by rotation symmetry)."""
        second = self.weights @ (self.radius_means**2 + self.radius_stds**2)
        return jnp.full((2,), 0.5 * second)


@jax.jit
def _radial_log_prob(radius_means, radius_stds, weights, x):
    # maximum() before sqrt: a zero gradient below the clamp instead of sqrt'(0) = inf.
    r = jnp.sqrt(jnp.maximum(jnp.sum(x**2, axis=-1), _MIN_RADIUS**2))[..., None]

    def log_normal(s):
        z = (s - radius_means) / radius_stds
        return -0.5 * z**2 - jnp.log(radius_stds) - 0.5 * math.log(2 * math.pi)

    log_pr = logsumexp(jnp.log(weights) + jnp.logaddexp(log_normal(r), log_normal(-r)), axis=-1)
    return log_pr - math.log(2 * math.pi) - jnp.log(r[..., 0])


@partial(jax.jit, static_argnums=4)
def _radial_sample(radius_means, radius_stds, weights, key, n):
    key_comp, key_r, key_phi = jax.random.split(key, 3)
    comp = jax.random.categorical(key_comp, jnp.log(weights), shape=(n,))
    dtype = radius_means.dtype
    r = radius_means[comp] + radius_stds[comp] * jax.random.normal(key_r, (n,), dtype)
    phi = jax.random.uniform(key_phi, (n,), dtype, 0.0, 2 * jnp.pi)
    return jnp.stack([r * jnp.cos(phi), r * jnp.sin(phi)], axis=-1)


# --- zones: partitions of space into one region per mode -----------------------------------


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

    @property
    def n_zones(self) -> int:
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
        edges = _float_array(edges)
        if edges.ndim != 1 or edges.shape[0] < 1:
            raise ValueError(f"RadialZones needs edges of shape (m,), m >= 1; got {edges.shape}.")
        if _is_concrete(edges) and not (
            np.all(np.asarray(edges) > 0) and np.all(np.diff(np.asarray(edges)) > 0)
        ):
            raise ValueError(f"RadialZones needs positive, increasing edges; got {edges}.")
        self.edges = edges

    @property
    def n_zones(self) -> int:
        return self.edges.shape[0] + 1

    def __call__(self, x: Float[ArrayLike, "*batch dim"]) -> Int[Array, "*batch"]:
        return _radial_zones(self.edges, _float_array(x))


class AngularZones(eqx.Module):
    """``n_sectors`` equal angular sectors in the plane; sector ``i`` is centred on the angle
    ``phase + 2 pi i / n_sectors``.

    Example:
        >>> import jax.numpy as jnp
        >>> AngularZones(4)(jnp.array([[1.0, 0.1], [0.0, 1.0], [-1.0, 0.0]]))
        Array([0, 1, 2], dtype=int32)
    """

    n_sectors: int = eqx.field(static=True)
    phase: float = eqx.field(static=True, default=0.0)

    def __check_init__(self):
        n = self.n_sectors
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 2:
            raise ValueError(f"AngularZones needs an integer n_sectors >= 2; got {n!r}.")

    @property
    def n_zones(self) -> int:
        return int(self.n_sectors)

    def __call__(self, x: Float[ArrayLike, "*batch 2"]) -> Int[Array, "*batch"]:
        x = _float_array(x)
        _check_points(x, 2, "AngularZones")
        return _angular_zones(self.n_sectors, self.phase, x)


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
        means = _float_array(means)
        if means.ndim != 2 or means.shape[0] < 2:
            raise ValueError(f"NearestMeanZones needs means of shape (k >= 2, dim); got {means.shape}.")
        self.means = means

    @property
    def n_zones(self) -> int:
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
def _angular_zones(n_sectors, phase, x):
    angle = jnp.arctan2(x[..., 1], x[..., 0]) - phase
    sector = jnp.round(angle / (2 * jnp.pi / n_sectors)).astype(jnp.int32)
    return jnp.mod(sector, n_sectors)


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


# --- targets ----------------------------------------------------------------------------------


class Distribution(Protocol):
    """What a :class:`Target` needs from the law inside it."""

    @property
    def dim(self) -> int: ...

    def log_prob(self, x: Float[Array, "*batch dim"]) -> Float[Array, "*batch"]: ...

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n dim"]: ...


class Target(eqx.Module):
    """A known distribution with its mode zones: what the paper's metrics compare against.

    Attributes:
        name: registry name, e.g. ``"two_modes"``.
        distribution: the law: any module with ``dim``, ``log_prob(x (..., dim)) -> (...)`` and
            ``sample(key, n) -> (n, dim)``, e.g. :class:`GaussianMixture` or :class:`RadialMixture`.
        zones: ``zones(x (..., dim)) -> int (...)``, the zone of each point (values in
            ``0 .. n_zones - 1``); zone ``k`` surrounds mode ``k`` in all built-in targets.
        weights: the exact probability of each zone under the target, shape ``(n_zones,)``.
        bounds: ``((x1_lo, x1_hi), (x2_lo, x2_hi))`` holding all but a negligible part of the
            mass (for grid integration and plots) when ``dim == 2``; ``None`` otherwise.

    Example:
        >>> import jax
        >>> target = two_modes_target()
        >>> x = target.sample(jax.random.key(0), 3)
        >>> target.log_prob(x).shape, target.zones(x).shape, target.n_zones
        ((3,), (3,), 2)
    """

    name: str = eqx.field(static=True)
    distribution: Distribution
    zones: Callable[[Array], Array]
    weights: Float[Array, " n_zones"] = eqx.field(converter=_float_array)
    bounds: Bounds | None = eqx.field(static=True)

    def __check_init__(self):
        n_zones = getattr(self.zones, "n_zones", None)
        if n_zones is not None and self.weights.shape != (n_zones,):
            raise ValueError(
                f"Target {self.name!r}: weights have shape {self.weights.shape} but the zones "
                f"define {n_zones} zones; pass one weight per zone."
            )
        if self.bounds is not None and self.distribution.dim != 2:
            raise ValueError(
                f"Target {self.name!r}: bounds are for 2-D grid integration, but dim is "
                f"{self.distribution.dim}; pass bounds=None."
            )

    @property
    def dim(self) -> int:
        return self.distribution.dim

    @property
    def n_zones(self) -> int:
        return self.weights.shape[0]

    @property
    def zone_weights(self) -> Float[Array, " n_zones"]:
        """Alias of ``weights``: the true probability of each zone."""
        return self.weights

    @property
    def max_variance(self) -> Float[Array, ""]:
        """Largest per-coordinate variance of the target: ``sigma^2`` of the EBM's flow base
        ``N(0, sigma^2 I)`` in the paper's high-dimensional experiment (App. C.5)."""
        variances = getattr(self.distribution, "coordinate_variances", None)
        if variances is None:
            raise TypeError(
                f"Target {self.name!r}: its distribution has no coordinate_variances(); "
                "estimate the variance from samples instead."
            )
        return jnp.max(variances())

    def log_prob(self, x: Float[ArrayLike, "*batch dim"]) -> Float[Array, "*batch"]:
        """Exact (normalised) log-density, ``(..., dim) -> (...)``."""
        return self.distribution.log_prob(x)

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n dim"]:
        """``n`` independent draws, shape ``(n, dim)``."""
        _check_n(n)
        return self.distribution.sample(key, n)


def _linear_zone_target(name: str, mixture: GaussianMixture, zones: LinearZones, bounds: Bounds) -> Target:
    """A target whose zones are slabs: their exact masses come from the 1-D projected mixture."""
    as64 = lambda a: np.asarray(a, np.float64)
    w = as64(mixture.weights)
    loc = as64(mixture.means) @ as64(zones.direction)
    scale = np.sqrt(as64(mixture.variances))
    cdf = lambda t: w @ ndtr((t[None, :] - loc[:, None]) / scale[:, None])
    weights = _zone_masses_1d(cdf, -np.inf, zones.edges)
    return Target(name, mixture, zones, weights, bounds)


def two_modes_target() -> Target:
    """The paper's motivating 2:1 example (Sec. 4.1):
    ``(1/3) N(-1.5 (1, 1), 0.05 I) + (2/3) N(1.5 (1, 1), 0.1 I)`` (0.05 and 0.1 are variances).

    Zones: the half-planes ``x1 + x2 <= 0`` (zone 0) and ``> 0`` (zone 1, the heavy mode).

    Example:
        >>> [round(w, 4) for w in two_modes_target().weights.tolist()]
        [0.3333, 0.6667]
    """
    mixture = GaussianMixture([[-1.5, -1.5], [1.5, 1.5]], [0.05, 0.1], [1 / 3, 2 / 3])
    return _linear_zone_target(
        "two_modes", mixture, LinearZones([1.0, 1.0], [0.0]), ((-4.0, 4.0), (-4.0, 4.0))
    )


def two_gaussians_target() -> Target:
    """Sampler test target: ``(1/3) N((-3, -3), 0.7^2 I) + (2/3) N((3, 3), 0.7^2 I)``.

    Modes 8.5 standard deviations apart: local samplers almost never cross, so the weights
    only come out right with global moves. Zones: half-planes split by ``x1 + x2 = 0``
    (zone 1 is the heavy ``(3, 3)`` mode).

    Example:
        >>> two_gaussians_target().distribution.means
        Array([[-3., -3.],
               [ 3.,  3.]], dtype=float32)
    """
    mixture = GaussianMixture([[-3.0, -3.0], [3.0, 3.0]], [0.49, 0.49], [1 / 3, 2 / 3])
    return _linear_zone_target(
        "two_gaussians", mixture, LinearZones([1.0, 1.0], [0.0]), ((-8.0, 8.0), (-8.0, 8.0))
    )


def line_of_four_target() -> Target:
    """The extended motivating example (App. C.3): ``sum_i w_i N(mu_i, 0.05 I)`` with
    ``mu = (-3, 0), (-1, 0), (1, 0), (3, 0)`` and ``w = (0.1, 0.2, 0.3, 0.4)``.

    Zones: vertical strips with boundaries ``x1 = -2, 0, 2`` (the paper's Fig. 4 shows strips
    without numbers; these are the midpoints). Zone masses differ from ``w`` by ~4e-6 (the
    Gaussian tails crossing the boundaries); ``weights`` holds the exact masses.

    Example:
        >>> [round(w, 4) for w in line_of_four_target().weights.tolist()]
        [0.1, 0.2, 0.3, 0.4]
    """
    means = [[-3.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [3.0, 0.0]]
    mixture = GaussianMixture(means, [0.05] * 4, [0.1, 0.2, 0.3, 0.4])
    zones = LinearZones([1.0, 0.0], [-2.0, 0.0, 2.0])
    return _linear_zone_target("line_of_four", mixture, zones, ((-4.5, 4.5), (-1.5, 1.5)))


def eight_gaussians_target() -> Target:
    """The 8 Gaussians of Sec. 4.3: equal-weight ``N(mu_i, 0.15^2 I)``,
    ``mu_i = (cos 2 pi i / 8, sin 2 pi i / 8)``.

    Zones: 8 angular sectors centred on the means. Zone masses are exactly 1/8 by the
    rotation symmetry (although 0.5% of each component lies outside its own sector).

    Example:
        >>> eight_gaussians_target().n_zones
        8
    """
    angles = 2 * np.pi * np.arange(8) / 8
    means = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    mixture = GaussianMixture(means, [0.15**2] * 8, [1 / 8] * 8)
    bounds = ((-2.5, 2.5), (-2.5, 2.5))
    return Target("eight_gaussians", mixture, AngularZones(8), np.full(8, 1 / 8), bounds)


def rings_target() -> Target:
    """The rings of Sec. 4.3: radius ``r ~ (1/4) sum_i N(i + 1, 0.15^2)``, ``i = 0..3``, angle
    uniform, ``x = (r cos phi, r sin phi)``; the density is ``p_r(|x|) / (2 pi |x|)``.

    The paper does not give the ring weights; equal weights follow its source
    (Nijkamp et al. 2020a, ``ebm-anatomy``). Zones: annuli split at radii 1.5, 2.5, 3.5;
    ``weights`` holds their exact masses (1/4 each, to 1e-7).

    Example:
        >>> [round(w, 4) for w in rings_target().weights.tolist()]
        [0.25, 0.25, 0.25, 0.25]
    """
    loc, scale, w = np.array([1.0, 2.0, 3.0, 4.0]), 0.15, np.full(4, 0.25)
    radial = RadialMixture(loc, np.full(4, scale), w)
    zones = RadialZones([1.5, 2.5, 3.5])
    # CDF of |r|: P(|r| <= s) = P(r <= s) - P(r < -s).
    cdf = lambda s: w @ (ndtr((s - loc[:, None]) / scale) - ndtr((-s - loc[:, None]) / scale))
    weights = _zone_masses_1d(cdf, 0.0, zones.edges)
    return Target("rings", radial, zones, weights, ((-5.0, 5.0), (-5.0, 5.0)))


def gaussian_mixture_target(dim: int, *, scaling: str = "sqrt_log") -> Target:
    """The high-dimensional 4-mode mixture of Sec. 4.4: equal-weight ``N(mu_k, I_dim)`` with
    ``mu_1 = c (1, ..., 1)``, ``mu_2 = c (-1, ..., -1, 1, ..., 1)`` (first half negative),
    ``mu_3 = -mu_2``, ``mu_4 = -mu_1``.

    The paper sets ``c = a = 0.5919`` and claims that a point of mode ``i`` lies nearer to
    another mode with probability below 1e-10 in any dimension. With a constant ``c`` that is
    false: the nearest pair of means is ``2 c sqrt(dim / 2)`` apart, so the misassignment
    probability is ``Phi(-c sqrt(dim / 2)) = 4.7e-2`` at ``dim = 16``. The authors' companion
    code (``h2o64/flow_mcmc``) scales the coordinates with ``sqrt(2 log dim)``, which gives
    4.1e-5 / 2.4e-10 / 2.7e-22 for ``dim = 16 / 32 / 64``, close to the claim. Hence:

    * ``scaling="sqrt_log"`` (default): ``c = 0.5919 sqrt(2 log dim)``;
    * ``scaling="constant"``: ``c = 0.5919``, the paper's formula taken literally.

    Zones: nearest mean. Their masses are exactly 1/4 by symmetry (flipping the signs of
    either half of the coordinates permutes the means). ``target.max_variance`` is the
    per-coordinate variance ``1 + c^2``, the flow base's ``sigma^2`` in App. C.5.

    Args:
        dim: dimension, an even integer ``>= 2`` (the means split the coordinates in halves).
        scaling: ``"sqrt_log"`` or ``"constant"``, see above.

    Example:
        >>> target = gaussian_mixture_target(16)
        >>> target.dim, target.n_zones, round(float(target.max_variance), 2)
        (16, 4, 2.94)
    """
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 2 or dim % 2:
        raise ValueError(
            f"gaussian_mixture needs an even integer dim >= 2 (its means flip the sign of the "
            f"first half of the coordinates); got dim={dim!r}."
        )
    if scaling == "sqrt_log":
        c = MIXTURE_SCALE * math.sqrt(2 * math.log(dim))
    elif scaling == "constant":
        c = MIXTURE_SCALE
    else:
        raise ValueError(f"scaling must be 'sqrt_log' or 'constant'; got {scaling!r}.")
    half = dim // 2
    mu1 = np.ones(dim)
    mu2 = np.concatenate([-np.ones(half), np.ones(half)])
    means = c * np.stack([mu1, mu2, -mu2, -mu1])
    mixture = GaussianMixture(means, np.ones(4), np.full(4, 0.25))
    bounds = ((-c - 6.0, c + 6.0), (-c - 6.0, c + 6.0)) if dim == 2 else None
    zones = NearestMeanZones(means)
    return Target("gaussian_mixture", mixture, zones, np.full(4, 0.25), bounds)


# --- data generators ----------------------------------------------------------------------------


def two_modes(key: PRNGKeyArray, n: int) -> Float[Array, "n 2"]:
    """``n`` draws from :func:`two_modes_target`, shape ``(n, 2)``.

    Example:
        >>> import jax
        >>> two_modes(jax.random.key(0), 16384).shape
        (16384, 2)
    """
    return two_modes_target().sample(key, n)


def two_gaussians(key: PRNGKeyArray, n: int) -> Float[Array, "n 2"]:
    """``n`` draws from :func:`two_gaussians_target`, shape ``(n, 2)``."""
    return two_gaussians_target().sample(key, n)


def line_of_four(key: PRNGKeyArray, n: int) -> Float[Array, "n 2"]:
    """``n`` draws from :func:`line_of_four_target`, shape ``(n, 2)``."""
    return line_of_four_target().sample(key, n)


def eight_gaussians(key: PRNGKeyArray, n: int) -> Float[Array, "n 2"]:
    """``n`` draws from :func:`eight_gaussians_target`, shape ``(n, 2)``."""
    return eight_gaussians_target().sample(key, n)


def rings(key: PRNGKeyArray, n: int) -> Float[Array, "n 2"]:
    """``n`` draws from :func:`rings_target`, shape ``(n, 2)``."""
    return rings_target().sample(key, n)


def gaussian_mixture(
    key: PRNGKeyArray, n: int, dim: int, *, scaling: str = "sqrt_log"
) -> Float[Array, "n dim"]:
    """``n`` draws from :func:`gaussian_mixture_target`, shape ``(n, dim)``.

    Example:
        >>> import jax
        >>> gaussian_mixture(jax.random.key(0), 100, 32).shape
        (100, 32)
    """
    return gaussian_mixture_target(dim, scaling=scaling).sample(key, n)


TARGETS: dict[str, Callable[..., Target]] = {
    "two_modes": two_modes_target,
    "two_gaussians": two_gaussians_target,
    "line_of_four": line_of_four_target,
    "eight_gaussians": eight_gaussians_target,
    "rings": rings_target,
    "gaussian_mixture": gaussian_mixture_target,
}


def load(name: str, key: PRNGKeyArray, n: int, **kwargs) -> tuple[Float[Array, "n dim"], Target]:
    """Build the target ``name`` (with ``kwargs``, e.g. ``dim=16``) and draw ``n`` points.

    Returns:
        ``(data, target)`` with ``data`` of shape ``(n, target.dim)``.

    Example:
        >>> import jax
        >>> data, target = load("gaussian_mixture", jax.random.key(0), 10, dim=16)
        >>> data.shape, target.name
        ((10, 16), 'gaussian_mixture')
    """
    if name not in TARGETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(TARGETS)}.")
    target = TARGETS[name](**kwargs)
    return target.sample(key, n), target


def digits(
    *, dequantize_key: PRNGKeyArray | None = None
) -> tuple[Float[Array, "1797 64"], Int[Array, " 1797"]]:
    """scikit-learn's 8x8 handwritten digits (shipped with scikit-learn; no download).

    Pixels take the values 0..16. Without a key they are scaled to ``v / 16`` in ``[0, 1]``;
    with ``dequantize_key`` they are dequantised uniformly, ``(v + U) / 17`` with
    ``U ~ U[0, 1)``, so that a continuous density model does not put infinite density on the
    17 grid values (the CIFAR-10 recipe of App. C.6 with 17 levels instead of 256).

    Returns:
        ``(x, labels)``: ``x`` float32 of shape ``(1797, 64)``, ``labels`` int32 of shape
        ``(1797,)`` with values 0..9.

    Example:
        >>> x, labels = digits()
        >>> x.shape, float(x.max()), int(labels.max())
        ((1797, 64), 1.0, 9)
    """
    from sklearn.datasets import load_digits  # lazy: importing scikit-learn takes ~1 s

    bunch = load_digits()
    pixels = jnp.asarray(bunch.data, dtype=jnp.float32)
    if dequantize_key is None:
        x = pixels / 16.0
    else:
        x = (pixels + jax.random.uniform(dequantize_key, pixels.shape, jnp.float32)) / 17.0
    return x, jnp.asarray(bunch.target, dtype=jnp.int32)
