"""The paper's targets: a distribution, its mode zones, their exact weights and grid bounds."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray
from scipy.special import ndtr

from numpyro_ebm._compat import get_renamed, old_name
from numpyro_ebm._keys import as_typed_key
from numpyro_ebm._validate import is_count, positive_int
from numpyro_ebm.datasets.mixtures import (
    MIXTURE_SCALE,
    Bounds,
    GaussianMixture,
    RadialMixture,
    _float_array,
)
from numpyro_ebm.datasets.zones import (
    AngularZones,
    LinearZones,
    NearestMeanZones,
    RadialZones,
    _zone_masses_1d,
)

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
            ``0 .. num_zones - 1``); zone ``k`` surrounds mode ``k`` in all built-in targets.
        weights: the exact probability of each zone under the target, shape ``(num_zones,)``.
        bounds: ``((x1_lo, x1_hi), (x2_lo, x2_hi))`` holding all but a negligible part of the
            mass (for grid integration and plots) when ``dim == 2``; ``None`` otherwise.

    Example:
        >>> import jax
        >>> target = two_modes_target()
        >>> x = target.sample(jax.random.key(0), 3)
        >>> target.log_prob(x).shape, target.zones(x).shape, target.num_zones
        ((3,), (3,), 2)
    """

    name: str = eqx.field(static=True)
    distribution: Distribution
    zones: Callable[[Array], Array]
    weights: Float[Array, " num_zones"] = eqx.field(converter=_float_array)
    bounds: Bounds | None = eqx.field(static=True)

    def __check_init__(self):
        num_zones = get_renamed(self.zones, "num_zones")
        if num_zones is not None and self.weights.shape != (num_zones,):
            raise ValueError(
                f"Target {self.name!r}: weights have shape {self.weights.shape} but the zones "
                f"define {num_zones} zones; pass one weight per zone."
            )
        if self.bounds is not None and self.distribution.dim != 2:
            raise ValueError(
                f"Target {self.name!r}: bounds are for 2-D grid integration, but dim is "
                f"{self.distribution.dim}; pass bounds=None."
            )

    @property
    def dim(self) -> int:
        return self.distribution.dim

    n_zones = old_name("num_zones")

    @property
    def num_zones(self) -> int:
        return self.weights.shape[0]

    @property
    def zone_weights(self) -> Float[Array, " num_zones"]:
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
        positive_int(n, "n")
        return self.distribution.sample(as_typed_key(key), n)


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
        >>> eight_gaussians_target().num_zones
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
        >>> target.dim, target.num_zones, round(float(target.max_variance), 2)
        (16, 4, 2.94)
    """
    if not is_count(dim, 2) or dim % 2:
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
