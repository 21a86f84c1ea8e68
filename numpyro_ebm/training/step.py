"""One compiled training step (Grenioux et al. 2023, Algorithm 1) and the chunk ``lax.scan``.

Everything here is traced: the carry holds strongly typed arrays only, so chunks never
recompile, and all of step ``k``'s randomness comes from ``fold_in(key, k)``, so a resumed run
repeats an uninterrupted one bit for bit. :func:`numpyro_ebm.training.train` drives it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from numpyro_ebm import sharding
from numpyro_ebm.energy import EnergyModel
from numpyro_ebm.flows import combine, forward_kl
from numpyro_ebm.negatives import AbstractNegatives
from numpyro_ebm.training import averaging

__all__ = ["contrastive_loss"]


class _Carry(NamedTuple):
    """Everything a step changes; strongly typed arrays only, so chunks never recompile."""

    step: Array  # int32 scalar: steps done
    ebm_params: PyTree
    flow_params: PyTree
    opt_state: PyTree
    flow_opt_state: PyTree
    bank: Array
    step_size: Array
    ebm_average: PyTree  # tail mean or moving average of ebm_params (training/averaging.py)


class _StepStats(NamedTuple):
    loss: Array
    energy_data: Array
    energy_negatives: Array
    local_accept_prob: Array
    global_accept_prob: Array
    flow_loss: Array
    chain_distance: Array  # largest distance of a moved chain from the data's centre


class _Spec(eqx.Module):
    """Everything but the carry that shapes the compiled chunk. ``eqx.filter_jit`` hashes its
    non-array leaves, so train() calls with the same models, sampler and optimisers share one
    compilation (resuming does not recompile)."""

    ebm_static: PyTree
    flow_static: PyTree
    negatives: AbstractNegatives
    optimizer: optax.GradientTransformation
    flow_optimizer: optax.GradientTransformation
    batch_size: int
    num_chains: int
    energy_l2: float
    average_start: int  # steps after which the EBM parameters are averaged
    ema: float  # decay of their moving average (0: none)
    mesh: Mesh | None  # the chain mesh (None: one device)
    data_centre: Array


def _train_step(
    carry: _Carry, data: Array, key_steps: PRNGKeyArray, spec: _Spec
) -> tuple[_Carry, _StepStats]:
    """One step of Algorithm 1; all randomness from ``fold_in(key_steps, step)``."""
    dtype = carry.bank.dtype
    negatives = spec.negatives
    key_data, key_chains, key_move = jax.random.split(jax.random.fold_in(key_steps, carry.step), 3)
    ebm = combine(carry.ebm_params, spec.ebm_static)
    flow = None if spec.flow_static is None else combine(carry.flow_params, spec.flow_static)
    mesh = spec.mesh
    positives = data[jax.random.randint(key_data, (spec.batch_size,), 0, data.shape[0])]
    index, start = negatives.chains_from_bank(key_chains, ebm, flow, carry.bank, spec.num_chains)
    start = sharding.constrain_leading_axis(start, mesh)
    sample = negatives(key_move, ebm, flow, start, carry.step_size)
    final, negative_points = sharding.constrain_leading_axis((sample.final, sample.negatives), mesh)
    bank = sharding.constrain_leading_axis(carry.bank.at[index].set(final.astype(dtype)), mesh)
    # Data parallel: each device evaluates the energy (and its gradient) on its share of the
    # positives and negatives; XLA sums the gradients over devices.
    positives = sharding.constrain_leading_axis(positives, mesh)

    def loss_fn(params):
        return contrastive_loss(
            combine(params, spec.ebm_static), positives, negative_points, energy_l2=spec.energy_l2
        )

    (loss, (e_pos, e_neg)), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(carry.ebm_params)
    updates, opt_state = spec.optimizer.update(grads, carry.opt_state, carry.ebm_params)
    ebm_params = eqx.apply_updates(carry.ebm_params, updates)

    flow_params, flow_opt_state = carry.flow_params, carry.flow_opt_state
    flow_loss = jnp.full((), jnp.nan, dtype)
    if negatives.flow_training == "negatives":
        flow_loss, flow_grads = eqx.filter_value_and_grad(forward_kl)(
            carry.flow_params, spec.flow_static, negative_points
        )
        flow_updates, flow_opt_state = spec.flow_optimizer.update(
            flow_grads, carry.flow_opt_state, carry.flow_params
        )
        flow_params = eqx.apply_updates(carry.flow_params, flow_updates)

    ebm_average = averaging.update(
        carry.ebm_average, ebm_params, carry.step, average_start=spec.average_start, ema=spec.ema
    )
    new = _place_carry(
        _Carry(
            carry.step + 1,
            ebm_params,
            flow_params,
            opt_state,
            flow_opt_state,
            bank,
            sample.step_size,
            ebm_average,
        ),
        mesh,
        sharding.constrain_leading_axis,
        sharding.replicate,
    )
    distance = jnp.max(jnp.linalg.norm(final - spec.data_centre, axis=-1))
    stats = _StepStats(
        loss,
        jnp.mean(e_pos),
        jnp.mean(e_neg),
        sample.local_accept_prob,
        sample.global_accept_prob,
        flow_loss,
        distance,
    )
    return new, jax.tree.map(lambda x: jnp.asarray(x, dtype), stats)


def _place_carry(carry: _Carry, mesh: Mesh | None, split: Callable, replicate: Callable) -> _Carry:
    """The bank split over the mesh on its chain axis, everything else on every device."""
    if mesh is None:
        return carry
    bank = split(carry.bank, mesh)
    return replicate(carry._replace(bank=None), mesh)._replace(bank=bank)


def _put_replicated(tree, mesh: Mesh | None):
    """``device_put`` every leaf of ``tree`` onto every device of ``mesh`` (outside ``jit``)."""
    if mesh is None:
        return tree
    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda x: jax.device_put(x, replicated), tree)


@eqx.filter_jit
def _run_chunk(carry: _Carry, data: Array, key_steps: PRNGKeyArray, spec: _Spec, length: int):
    """``length`` training steps as one ``lax.scan``; returns the carry and per-step statistics."""
    return jax.lax.scan(lambda c, _: _train_step(c, data, key_steps, spec), carry, None, length=length)


@eqx.filter_jit
def _initial_bank(negatives: AbstractNegatives, key: PRNGKeyArray, ebm, flow, bank_size: int) -> Array:
    """The bank's starting points, jitted once per model structure (flow sampling is a scan)."""
    return negatives.initial_positions(key, ebm, flow, bank_size)


def contrastive_loss(
    ebm: EnergyModel,
    positives: Float[Array, "n dim"],
    negatives: Float[Array, "m dim"],
    *,
    energy_l2: float = 0.0,
) -> tuple[Float[Array, ""], tuple[Float[Array, " n"], Float[Array, " m"]]]:
    """``mean E(x+) - mean E(x-)`` (+ ``energy_l2 * sum(E(x+)^2 + E(x-)^2)``), negatives constant.

    Its gradient is minus the log-likelihood gradient of the tilted EBM (Grenioux et al. 2023,
    App. B; eq. 2-3 there print the opposite sign). If the EBM's tilt is trainable (NT-EBM),
    ``mean(-log rho(x+)) - mean(-log rho(x-))`` is added: the same maximum likelihood for the
    tilt's parameters.

    Args:
        ebm: the model.
        positives: data batch, ``(n, dim)``.
        negatives: model samples, ``(m, dim)``; no gradient flows through them.
        energy_l2: weight of the L2 energy penalty (the paper's CIFAR-10 setting: 1e-4).

    Returns:
        ``(loss, (E(x+), E(x-)))``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flowjax.distributions import StandardNormal
        >>> from numpyro_ebm.nets import ToyNet
        >>> ebm = EnergyModel(ToyNet(2, key=jax.random.key(0)), StandardNormal((2,)))
        >>> loss, _ = contrastive_loss(ebm, jnp.ones((4, 2)), jnp.zeros((4, 2)))
        >>> float(loss)  # E = 0 at initialisation
        0.0
    """
    negatives = jax.lax.stop_gradient(negatives)
    e_pos, e_neg = ebm.energy(positives), ebm.energy(negatives)
    loss = jnp.mean(e_pos) - jnp.mean(e_neg)
    if ebm.trainable_base:
        loss = loss - jnp.mean(ebm.log_base(positives)) + jnp.mean(ebm.log_base(negatives))
    if energy_l2:
        loss = loss + energy_l2 * (jnp.sum(e_pos**2) + jnp.sum(e_neg**2))
    return loss, (e_pos, e_neg)
