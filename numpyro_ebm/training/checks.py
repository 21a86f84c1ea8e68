"""``train()``'s argument checks (before anything is traced) and the run's settings record.

The settings record is what a checkpoint remembers of the run that wrote it; ``resume=True``
compares it with the new call's and names every difference.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from numpyro_ebm import sharding
from numpyro_ebm._validate import check_finite_rows


def _check_count(name: str, value, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")


def _check_shard(shard) -> Mesh | None:
    """``train``'s ``shard=`` as a mesh (``None``: no sharding); a ``TypeError`` for anything else."""
    if shard is None:
        return None
    if isinstance(shard, np.ndarray) and shard.ndim == 1:  # e.g. np.array(jax.devices())
        shard = list(shard)
    ok = isinstance(shard, bool | Mesh) or (
        isinstance(shard, Sequence)
        and not isinstance(shard, str)
        and len(shard) > 0
        and all(isinstance(d, jax.Device) for d in shard)
    )
    if not ok:
        raise TypeError(
            "shard must be True/False, a non-empty sequence of devices (e.g. jax.devices()[:4]) or a "
            f"1-D jax.sharding.Mesh; got {shard!r}."
        )
    return sharding.resolve_mesh(shard)


def _check_data(data, dim: int, batch_size: int, dtype) -> np.ndarray:
    try:
        array = np.asarray(data)
    except Exception as err:  # ragged lists and the like
        raise TypeError(f"data must be an array of shape (n, dim); got {type(data).__name__}.") from err
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise TypeError(f"data must hold real numbers; got dtype {array.dtype}.")
    if array.ndim != 2:
        raise ValueError(
            f"data must have shape (n, dim); got shape {array.shape}. Flatten each point to (dim,)."
        )
    if array.shape[0] == 0:
        raise ValueError(
            f"data is empty (shape {array.shape}); pass at least batch_size={batch_size} points."
        )
    if array.shape[1] != dim:
        raise ValueError(
            f"data has dimension {array.shape[1]} but the EBM has dim {dim}; build the EBM and flow for "
            f"dim={array.shape[1]} or fix the data."
        )
    if array.shape[0] < batch_size:
        raise ValueError(
            f"data has {array.shape[0]} points, fewer than batch_size={batch_size}; lower batch_size."
        )
    check_finite_rows(array, "data", "drop or impute them before training.")
    with np.errstate(over="ignore"):
        converted = array.astype(np.dtype(dtype))
    bad = ~np.all(np.isfinite(converted), axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"data row {rows[0]} (and {rows.size - 1} more) overflows {np.dtype(dtype)}, the training "
            f"dtype (largest magnitude {np.max(np.abs(array)):.3g}); rescale the data, or enable "
            "float64 with jax.config.update('jax_enable_x64', True)."
        )
    return converted


def _key_data(key) -> np.ndarray:
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"key must be a single PRNG key; got shape {key.shape}.")
        return np.asarray(jax.random.key_data(key))
    if key.dtype != jnp.uint32 or key.shape != (2,):
        raise TypeError(f"key must be a PRNG key, e.g. jax.random.key(0); got {key.dtype}{list(key.shape)}.")
    return np.asarray(key)


def _describe(value: Any) -> Any:
    """A JSON-able description of a setting: numbers, strings and None as they are."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple | list):
        return [_describe(v) for v in value]
    return type(value).__name__


def sampler_settings(negatives) -> dict[str, Any]:
    """The sampler's type and its static settings (its flow and other arrays left out), flat:
    ``FlowMC``'s transition fields sit beside ``num_cycles`` and ``keep``."""
    settings = {"type": type(negatives).__name__}
    for field in dataclasses.fields(negatives):
        value = getattr(negatives, field.name)
        if field.name.startswith("_") or eqx.is_array(value) or isinstance(value, eqx.Module):
            continue
        if dataclasses.is_dataclass(value):  # a FlowMCSettings: its fields, one by one
            settings.update({k: _describe(v) for k, v in dataclasses.asdict(value).items()})
        else:
            settings[field.name] = _describe(value)
    return settings


def data_fingerprint(data: np.ndarray) -> list[float]:
    """Cheap summary of the data set (count, mean and mean square, in float64, rounded): a
    resumed run must train on the same points."""
    x = np.asarray(data, np.float64)
    return [float(x.shape[0]), round(float(x.mean()), 8), round(float((x**2).mean()), 8)]


def settings_differences(saved: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """``"name: checkpoint A, now B"`` for every setting that differs (nested dicts flattened)."""
    out = []
    for name in sorted(set(saved) | set(now)):
        a, b = saved.get(name, "<absent>"), now.get(name, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += settings_differences(a, b, f"{prefix}{name}.")
        elif a != b and not (_is_nan(a) and _is_nan(b)):
            out.append(f"{prefix}{name}: checkpoint {a!r}, now {b!r}")
    return out


def _is_nan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)
