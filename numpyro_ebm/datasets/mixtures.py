"""Isotropic Gaussian and radial mixtures: the distributions inside the paper's targets."""

from __future__ import annotations

import math
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from numpyro_ebm._keys import as_typed_key
from numpyro_ebm._validate import positive_int

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
        positive_int(n, "n")
        return _mixture_sample(self.means, self.variances, self.weights, as_typed_key(key), int(n))

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
        positive_int(n, "n")
        return _radial_sample(self.radius_means, self.radius_stds, self.weights, as_typed_key(key), int(n))

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
