"""Argument handling shared by the metrics: log-densities, samples, zones and grid bounds."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from numpyro_ebm._compat import get_renamed
from numpyro_ebm._validate import check_finite_rows, positive_int

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


def _check_samples(samples: ArrayLike, who: str, *, ndim: int = 2) -> Array:
    """``samples`` as a float array of rank ``ndim``, finite (checked when concrete)."""
    samples = jnp.asarray(samples)
    layout = "(n, dim)" if ndim == 2 else "(chains, draws, dim)"
    if samples.ndim != ndim or samples.size == 0:
        raise ValueError(f"{who} needs samples of shape {layout}; got shape {samples.shape}.")
    if not jnp.issubdtype(samples.dtype, jnp.floating):
        samples = samples.astype(jnp.result_type(float))
    if not isinstance(samples, jax.core.Tracer):
        check_finite_rows(
            np.asarray(samples).reshape(-1, samples.shape[-1]),
            f"{who}: the samples (flattened to (n, dim))",
            "drop them (or fix the sampler) before computing diagnostics.",
        )
    return samples


def _resolve_zones(zones: Any, num_zones: int | None) -> tuple[Callable, int, Bounds | None]:
    """``(zone_fn, num_zones, default_bounds)`` from a zone function or a Target."""
    bounds = None
    if not callable(zones) and callable(getattr(zones, "zones", None)):  # a Target
        bounds = getattr(zones, "bounds", None)
        num_zones = zones.num_zones if num_zones is None else num_zones
        zones = zones.zones
    if not callable(zones):
        raise TypeError(
            f"zones must be a function (..., dim) -> int (...), e.g. target.zones, or a Target; "
            f"got {type(zones).__name__}."
        )
    if num_zones is None:
        num_zones = get_renamed(zones, "num_zones")
        if num_zones is None:
            raise ValueError("pass num_zones: the zone function does not say how many zones it has.")
    positive_int(num_zones, "num_zones")
    return zones, int(num_zones), bounds


def _zone_indices(zone_fn: Callable, points: Array, num_zones: int) -> Array:
    z = jnp.asarray(zone_fn(points))
    if z.shape != points.shape[:-1] or not jnp.issubdtype(z.dtype, jnp.integer):
        raise ValueError(
            f"the zone function must map points of shape {points.shape} to integers of shape "
            f"{points.shape[:-1]}; got {z.dtype} of shape {z.shape}."
        )
    if not isinstance(z, jax.core.Tracer):
        lo, hi = int(jnp.min(z)), int(jnp.max(z))
        if lo < 0 or hi >= num_zones:
            raise ValueError(
                f"the zone function returned indices in [{lo}, {hi}], outside [0, {num_zones - 1}]; "
                f"pass the right num_zones (here at least {hi + 1})."
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
