"""One conversion for every PRNG key a user may bring.

NumPyro's documentation writes ``jax.random.PRNGKey(0)``: a raw ``uint32`` array of shape
``(2,)`` (or ``(chains, 2)`` once ``MCMC`` has split it for vectorized chains). flowjax insists
on new-style typed keys (``jax.random.key(0)``). Every public entry point of the library calls
:func:`as_typed_key` once, so both kinds work everywhere and nothing inside sees a raw key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

__all__ = ["as_typed_key", "like_key"]


def _is_typed(key) -> bool:
    return jnp.issubdtype(key.dtype, jax.dtypes.prng_key)


def as_typed_key(key, *, name: str = "key") -> Array:
    """Return ``key`` as a typed PRNG key array, keeping its batch shape.

    Args:
        key: a typed key (``jax.random.key(0)``, any batch shape), or a raw key
            (``jax.random.PRNGKey(0)``: ``uint32`` of shape ``(..., 2)`` for the default
            threefry implementation). Works on tracers, so it may run inside ``jit``.
        name: the argument's name, for the error message.

    Returns:
        A typed key array; a raw key of shape ``(..., 2)`` becomes typed of shape ``(...)``.

    Raises:
        TypeError: ``key`` is neither kind.

    Example:
        >>> import jax
        >>> as_typed_key(jax.random.PRNGKey(0)).shape, as_typed_key(jax.random.key(0)).shape
        ((), ())
        >>> as_typed_key(jax.random.split(jax.random.PRNGKey(0), 4)).shape  # vectorized chains
        (4,)
    """
    if not hasattr(key, "dtype"):
        if isinstance(key, (list, tuple)):
            key = np.asarray(key, dtype=np.uint32)
        else:
            raise TypeError(
                f"{name} must be a JAX PRNG key, e.g. jax.random.key(0) or jax.random.PRNGKey(0); "
                f"got {type(key).__name__}."
            )
    if _is_typed(key):
        return key
    raw_shape = jax.random.key_data(jax.random.key(0)).shape  # (2,) for the default threefry
    if key.dtype != jnp.uint32 or tuple(key.shape[-len(raw_shape) :]) != raw_shape:
        raise TypeError(
            f"{name} must be a JAX PRNG key, e.g. jax.random.key(0) or jax.random.PRNGKey(0); got "
            f"an array of dtype {key.dtype} and shape {tuple(key.shape)} (a raw key is uint32 of "
            f"shape (..., {', '.join(map(str, raw_shape))}))."
        )
    return jax.random.wrap_key_data(key)


def like_key(key: Array, reference) -> Array:
    """``key`` (typed) in the same kind as ``reference``: raw if ``reference`` is raw.

    A kernel state must keep the key kind it was given, or ``lax.scan`` rejects the carry.

    Example:
        >>> import jax
        >>> like_key(jax.random.key(1), jax.random.PRNGKey(0)).dtype
        dtype('uint32')
    """
    return key if _is_typed(reference) else jax.random.key_data(key)
