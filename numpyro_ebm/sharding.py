"""Chains (and data batches) sharded over devices with ``jax.sharding``.

A 1-D mesh over the chain axis; parameters stay replicated. JAX's SPMD partitioner does the rest:
per-chain work (log-densities, MALA steps, i-SIR particles) runs where its chains live, and the
few cross-chain reductions (the flow's loss, mean acceptance) become all-reduces. Tested on one
process with several devices; multi-host (multi-process) runs are not supported: checkpoints are
written by a single process (``numpyro_ebm.checkpoints``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "chain_mesh",
    "shard_leading_axis",
    "constrain_leading_axis",
    "replicate",
    "resolve_mesh",
]

AXIS = "chains"


def chain_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named ``"chains"`` over ``devices`` (all of ``jax.devices()`` by default).

    Example:
        >>> mesh = chain_mesh()
        >>> mesh.axis_names
        ('chains',)
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("chain_mesh needs at least one device.")
    return Mesh(np.array(devices), (AXIS,))


def resolve_mesh(shard: bool | Mesh | Sequence[jax.Device]) -> Mesh | None:
    """Turn a user's ``shard=`` argument into a mesh (``None``: no sharding).

    ``False`` -> no sharding; ``True`` -> every device; a sequence of devices or a ``Mesh`` with
    one axis -> that. A single-device mesh is returned as ``None``: sharding would only add cost.
    """
    if shard is False or shard is None:
        return None
    if not isinstance(shard, (bool, Mesh, list, tuple)):
        raise TypeError(
            f"shard must be True/False, a sequence of devices or a 1-D Mesh; got {type(shard).__name__}."
        )
    if shard is True:
        mesh = chain_mesh()
    elif isinstance(shard, Mesh):
        if len(shard.axis_names) != 1:
            raise ValueError(f"shard= needs a 1-D mesh over chains; got axes {shard.axis_names}.")
        mesh = Mesh(shard.devices, (AXIS,))
    else:
        mesh = chain_mesh(shard)
    return None if mesh.size == 1 else mesh


def check_divisible(n: int, mesh: Mesh | None, what: str) -> None:
    """Raise a ``ValueError`` if ``n`` chains (or rows) cannot be split evenly over the mesh."""
    if mesh is not None and n % mesh.size:
        raise ValueError(
            f"{what}={n} cannot be split evenly over {mesh.size} devices; use a multiple of "
            f"{mesh.size} (e.g. {mesh.size * max(1, round(n / mesh.size))})."
        )


def _spec(x) -> PartitionSpec:
    return PartitionSpec(AXIS, *([None] * (np.ndim(x) - 1)))


def shard_leading_axis(tree, mesh: Mesh | None):
    """``device_put`` every leaf of ``tree`` split along its leading (chain) axis."""
    if mesh is None:
        return tree
    return jax.tree.map(lambda x: jax.device_put(x, NamedSharding(mesh, _spec(x))), tree)


def constrain_leading_axis(tree, mesh: Mesh | None):
    """Inside ``jit``: keep every leaf split along its leading (chain) axis."""
    if mesh is None:
        return tree
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, NamedSharding(mesh, _spec(x))), tree)


def replicate(tree, mesh: Mesh | None):
    """Inside ``jit``: gather every leaf onto every device.

    Used before cross-chain reductions that feed adaptation (the step size): each device then
    reduces the whole array, as a single device would. Bit-for-bit equality with an unsharded run
    is not guaranteed (XLA may compile the gathered computation differently); expect agreement to
    floating-point rounding, then statistically as chains diverge.
    """
    if mesh is None:
        return tree
    return jax.tree.map(
        lambda x: jax.lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec())), tree
    )
