"""Data sets: draws from the targets by name, and scikit-learn's digits."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from numpyro_ebm.datasets import targets
from numpyro_ebm.datasets.targets import Target

# --- data generators ----------------------------------------------------------------------------


def two_modes(key: PRNGKeyArray, n: int) -> Float[Array, "n 2"]:
    """``n`` draws from :func:`two_modes_target`, shape ``(n, 2)``.

    Example:
        >>> import jax
        >>> two_modes(jax.random.key(0), 16384).shape
        (16384, 2)
    """
    return targets.two_modes_target().sample(key, n)


def two_gaussians(key: PRNGKeyArray, n: int) -> Float[Array, "n 2"]:
    """``n`` draws from :func:`two_gaussians_target`, shape ``(n, 2)``."""
    return targets.two_gaussians_target().sample(key, n)


def line_of_four(key: PRNGKeyArray, n: int) -> Float[Array, "n 2"]:
    """``n`` draws from :func:`line_of_four_target`, shape ``(n, 2)``."""
    return targets.line_of_four_target().sample(key, n)


def eight_gaussians(key: PRNGKeyArray, n: int) -> Float[Array, "n 2"]:
    """``n`` draws from :func:`eight_gaussians_target`, shape ``(n, 2)``."""
    return targets.eight_gaussians_target().sample(key, n)


def rings(key: PRNGKeyArray, n: int) -> Float[Array, "n 2"]:
    """``n`` draws from :func:`rings_target`, shape ``(n, 2)``."""
    return targets.rings_target().sample(key, n)


def gaussian_mixture(
    key: PRNGKeyArray, n: int, dim: int, *, scaling: str = "sqrt_log"
) -> Float[Array, "n dim"]:
    """``n`` draws from :func:`gaussian_mixture_target`, shape ``(n, dim)``.

    Example:
        >>> import jax
        >>> gaussian_mixture(jax.random.key(0), 100, 32).shape
        (100, 32)
    """
    return targets.gaussian_mixture_target(dim, scaling=scaling).sample(key, n)


TARGETS: dict[str, Callable[..., Target]] = {
    "two_modes": targets.two_modes_target,
    "two_gaussians": targets.two_gaussians_target,
    "line_of_four": targets.line_of_four_target,
    "eight_gaussians": targets.eight_gaussians_target,
    "rings": targets.rings_target,
    "gaussian_mixture": targets.gaussian_mixture_target,
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
