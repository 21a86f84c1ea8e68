"""``train``: contrastive maximum-likelihood training of an EBM with a persistent negative bank.

One training step is Grenioux et al. 2023, Algorithm 1, with the sampler swappable:

1. draw a data batch ``x+`` (uniformly, with replacement);
2. draw chain indices from the persistent bank (distinct, at random) and move those chains
   toward the current EBM ``-E(x) + log rho(x)`` with the negative sampler; write the final
   states back (paper-notes 2.4); the negatives ``x-`` are the final states or states taken
   evenly from the trajectories;
3. an optax step on ``mean E(x+) - mean E(x-)`` (negatives held constant; this is the sign the
   paper's eq. 2-3 should have), plus ``energy_l2 * sum(E(x+)^2 + E(x-)^2)`` if asked;
4. for samplers that train a flow on their negatives (flowMC, CoopFlow), an optax step of the
   flow on ``-mean log q(x-)``; both updates use the step-``k`` parameters.

Step ``k`` draws all its randomness from ``fold_in(key, k)``, so a run resumed from a checkpoint
repeats an uninterrupted one bit for bit. The hot loop is one jitted ``lax.scan`` over a chunk of
steps; Python only loops over chunks (progress bar, metrics, non-finite checks, checkpoints).

Scaling out (``shard=``): the bank, each step's chains and negatives and its data batch are
split over a 1-D device mesh on the chain axis (:mod:`numpyro_ebm.sharding`); parameters,
optimiser states and the data set are replicated. The sampler, nearly all of a step's work, runs
where its chains live, and so does the loss's energy evaluation; the gradients and the mean
acceptances are summed over devices. A sharded run agrees with an unsharded one up to float
rounding, not bit for bit: XLA compiles each device's smaller batch with other kernels (a
neural energy on 2 points or on 8 rounds differently, even on one device) and adds the partial
sums in another order. Training feeds such differences back (Adam divides by small second
moments, MCMC moves spread them, an accept decision may flip), so a long sharded run is a
different but statistically equivalent run (tests/test_training_sharded.py has the numbers).
Checkpoints resume on any device count.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, Float, PRNGKeyArray, PyTree
from tqdm.auto import tqdm

from numpyro_ebm import checkpoints, sharding
from numpyro_ebm.energy import EnergyModel
from numpyro_ebm.flows import combine, forward_kl, partition
from numpyro_ebm.negatives import AbstractNegatives

__all__ = ["train", "TrainResult", "TrainingDivergedError", "contrastive_loss", "HISTORY_FIELDS"]

# Per-chunk history: means over the chunk's steps (``step`` is the step count at its end).
HISTORY_FIELDS = (
    "step",
    "loss",
    "energy_data",
    "energy_negatives",
    "local_accept",
    "global_accept",
    "flow_loss",
    "step_size",
)


class TrainingDivergedError(FloatingPointError):
    """A loss or energy became NaN or infinite during training.

    Attributes:
        step: the first bad training step (1-based).
        checkpoint: the last good checkpoint (untouched), or ``None``.
    """

    def __init__(self, message: str, *, step: int, checkpoint: Path | None):
        super().__init__(message)
        self.step = step
        self.checkpoint = checkpoint


class TrainResult(NamedTuple):
    """What :func:`train` returns.

    Attributes:
        ebm: the trained ``EnergyModel``.
        flow: the trained flow (the sampler's, or the EBM's tilt for NT-EBM), else ``None``.
        history: per chunk, arrays keyed by ``HISTORY_FIELDS`` and the user metrics' names.
        bank: the persistent chains, ``(bank_size, dim)``.
        step_size: the sampler's (possibly adapted) step size.
        opt_state: optax state of the EBM optimiser.
        flow_opt_state: optax state of the flow optimiser (``None`` without a trained flow).
        step: number of training steps done.
    """

    ebm: EnergyModel
    flow: Any
    history: dict[str, np.ndarray]
    bank: Float[Array, "bank dim"]
    step_size: Float[Array, ""]
    opt_state: optax.OptState
    flow_opt_state: optax.OptState | None
    step: int


class _Carry(NamedTuple):
    """Everything a step changes; strongly typed arrays only, so chunks never recompile."""

    step: Array  # int32 scalar: steps done
    ebm_params: PyTree
    flow_params: PyTree
    opt_state: PyTree
    flow_opt_state: PyTree
    bank: Array
    step_size: Array


class _StepStats(NamedTuple):
    loss: Array
    energy_data: Array
    energy_negatives: Array
    local_accept: Array
    global_accept: Array
    flow_loss: Array


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
    n_chains: int
    energy_l2: float
    mesh: Mesh | None  # the chain mesh (None: one device)


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
    index, start = negatives.chains_from_bank(key_chains, ebm, flow, carry.bank, spec.n_chains)
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

    new = _place_carry(
        _Carry(carry.step + 1, ebm_params, flow_params, opt_state, flow_opt_state, bank, sample.step_size),
        mesh,
        sharding.constrain_leading_axis,
        sharding.replicate,
    )
    stats = _StepStats(
        loss, jnp.mean(e_pos), jnp.mean(e_neg), sample.local_accept, sample.global_accept, flow_loss
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
    bad = ~np.all(np.isfinite(array), axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"data holds {rows.size} non-finite row(s) (NaN or inf), the first at index {rows[0]}; "
            "drop or impute them before training."
        )
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


def _history_to_arrays(history: dict[str, list]) -> dict[str, np.ndarray]:
    return {name: np.asarray(values) for name, values in history.items()}


def train(
    ebm: EnergyModel,
    data: Float[Array, "n dim"],
    *,
    key: PRNGKeyArray,
    negatives: AbstractNegatives,
    optimizer: optax.GradientTransformation | None = None,
    flow_optimizer: optax.GradientTransformation | None = None,
    num_steps: int,
    batch_size: int,
    bank_size: int,
    chunk_size: int = 100,
    energy_l2: float = 0.0,
    metrics: Mapping[str, Callable[[EnergyModel, Any, Array], Any]] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1000,
    checkpoints_kept: int = 2,
    resume: bool = False,
    progress: bool = True,
    shard: bool | Mesh | Sequence[jax.Device] = False,
) -> TrainResult:
    """Train ``ebm`` on ``data`` by contrastive maximum likelihood (Grenioux et al. 2023, Alg. 1).

    Args:
        ebm: the model, e.g. ``EnergyModel(ToyNet(dim, key=k), flow.base_dist)``.
        data: training points, ``(n, dim)``, finite, ``n >= batch_size``.
        key: PRNG key; step ``k`` uses ``fold_in(key, k)``.
        negatives: the negative sampler, e.g. ``negatives.FlowMC(flow)``; its flow (if any) is
            the initial flow, trained along.
        optimizer: optax optimiser of the EBM; ``optax.adam(1e-3)`` by default.
        flow_optimizer: optax optimiser of the sampler's flow; ``optax.adam(1e-3)`` by default.
            The paper co-adjusts both rates (1e-2 for the 2:1 example, 1e-3 for 2-D tasks).
        num_steps: total training steps (a resumed run continues up to this number).
        batch_size: data points and negatives per step.
        bank_size: persistent chains, ``>= batch_size`` (the paper: 1024 for batch 64).
        chunk_size: steps per jitted ``lax.scan``; history, metrics and the progress bar are
            updated once per chunk.
        energy_l2: weight of the L2 energy penalty.
        metrics: ``{name: fn(ebm, flow, bank) -> scalar}``, evaluated on the host after each
            chunk and recorded in the history.
        checkpoint_dir: write checkpoints here (``None``: no checkpoints).
        checkpoint_every: checkpoint at the first chunk boundary after every multiple of this
            many steps, and at the end.
        checkpoints_kept: number of most recent checkpoints kept.
        resume: continue from the latest checkpoint in ``checkpoint_dir`` (start afresh if there
            is none). The run must use the same key and configuration.
        progress: show a tqdm bar with the loss and acceptances.
        shard: split the bank and each step's chains over devices (``True``: all of
            ``jax.devices()``; or a sequence of devices / a 1-D ``Mesh``; off by default, and a
            single device means no sharding). ``batch_size``, ``bank_size`` and the chains per
            step (``batch_size // keep``) must be multiples of the device count. Parameters,
            optimiser states and the data set are replicated. Results agree with one device up
            to float rounding (see the module docstring). Checkpoints resume on any device count.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError, TypeError: bad arguments, before anything is compiled.
        TrainingDivergedError: a loss or energy became non-finite; names the step and leaves the
            last checkpoint untouched.

    Example:
        >>> import jax
        >>> from numpyro_ebm.energy import EnergyModel
        >>> from numpyro_ebm.flows import default_flow
        >>> from numpyro_ebm.negatives import FlowMC
        >>> from numpyro_ebm.nets import ToyNet
        >>> flow = default_flow(jax.random.key(0), 2, identity_init=True)
        >>> ebm = EnergyModel(ToyNet(2, key=jax.random.key(1)), flow.base_dist)
        >>> data = 1.5 + 0.3 * jax.random.normal(jax.random.key(2), (512, 2))
        >>> result = train(ebm, data, key=jax.random.key(3), negatives=FlowMC(flow),
        ...                num_steps=20, batch_size=32, bank_size=128, chunk_size=10,
        ...                progress=False)
        >>> result.history["loss"].shape
        (2,)
    """
    # ---------------------------------------------------------------- validation (no tracing)
    if not isinstance(negatives, AbstractNegatives):
        raise TypeError(
            "negatives must be a sampler from numpyro_ebm.negatives (FlowMC, ULA, ...); "
            f"got {type(negatives).__name__}."
        )
    if not isinstance(ebm, EnergyModel):
        raise TypeError(f"ebm must be a numpyro_ebm.EnergyModel; got {type(ebm).__name__}.")
    for name, value in (
        ("num_steps", num_steps),
        ("batch_size", batch_size),
        ("bank_size", bank_size),
        ("chunk_size", chunk_size),
        ("checkpoint_every", checkpoint_every),
        ("checkpoints_kept", checkpoints_kept),
    ):
        _check_count(name, value)
    if bank_size < batch_size:
        raise ValueError(f"bank_size={bank_size} must be >= batch_size={batch_size}; enlarge the bank.")
    if not (isinstance(energy_l2, int | float) and math.isfinite(energy_l2) and energy_l2 >= 0):
        raise ValueError(f"energy_l2 must be a finite number >= 0; got {energy_l2!r}.")
    metrics = dict(metrics or {})
    for name, fn in metrics.items():
        if not isinstance(name, str) or not callable(fn) or name in HISTORY_FIELDS:
            raise ValueError(
                f"metrics must map new names (not {HISTORY_FIELDS}) to callables fn(ebm, flow, bank); "
                f"got {name!r}."
            )
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    flow_optimizer = optax.adam(1e-3) if flow_optimizer is None else flow_optimizer
    for name, opt in (("optimizer", optimizer), ("flow_optimizer", flow_optimizer)):
        if not (hasattr(opt, "init") and hasattr(opt, "update")):
            raise TypeError(f"{name} must be an optax GradientTransformation; got {type(opt).__name__}.")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir, the directory holding the checkpoints.")
    key_data = _key_data(key)
    mesh = _check_shard(shard)
    negatives.validate(ebm, batch_size)
    n_chains = negatives.n_chains(batch_size)
    if mesh is not None:
        sharding.check_divisible(batch_size, mesh, "batch_size")
        sharding.check_divisible(bank_size, mesh, "bank_size")
        if n_chains % mesh.size:
            raise ValueError(
                f"batch_size // keep = {n_chains} chains per step cannot be split evenly over "
                f"{mesh.size} devices; use a batch_size that is a multiple of keep * {mesh.size} = "
                f"{negatives.keep * mesh.size}."
            )
    dtype = jnp.result_type(float)
    data = _check_data(data, ebm.dim, batch_size, dtype)
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = checkpoints.latest_checkpoint(checkpoint_dir)
        if checkpoint is not None and not resume:
            raise ValueError(
                f"{checkpoint_dir} already holds a checkpoint ({checkpoint.name}); pass resume=True to "
                "continue it, or choose an empty checkpoint_dir."
            )

    # ------------------------------------------------------------------------ initial state
    base_key = jax.random.wrap_key_data(jnp.asarray(key_data))
    data = jnp.asarray(data, dtype)
    ebm_params, ebm_static = partition(ebm)
    trains_flow = negatives.flow_training == "negatives"
    own_flow = negatives.initial_flow
    if own_flow is not None:
        flow_params, flow_static = partition(own_flow)
    else:
        flow_params, flow_static = None, None

    key_bank, key_steps = jax.random.split(base_key)
    init_flow = None if own_flow is None else combine(flow_params, flow_static)
    bank = _initial_bank(negatives, key_bank, ebm, init_flow, bank_size).astype(dtype)
    carry = _Carry(
        step=jnp.asarray(0, jnp.int32),
        ebm_params=ebm_params,
        flow_params=flow_params,
        opt_state=optimizer.init(ebm_params),
        flow_opt_state=flow_optimizer.init(flow_params) if trains_flow else None,
        bank=bank,
        step_size=negatives.init_step_size(dtype),
    )
    history: dict[str, list] = {name: [] for name in (*HISTORY_FIELDS, *metrics)}
    config = {
        "sampler": type(negatives).__name__,
        "dim": ebm.dim,
        "batch_size": batch_size,
        "bank_size": bank_size,
        "chunk_size": chunk_size,
        "num_data": int(data.shape[0]),
    }
    if checkpoint is not None:
        carry, manifest = checkpoints.load_checkpoint(checkpoint, carry)
        if manifest["key"] != key_data.tolist():
            raise ValueError(
                f"the checkpoint {checkpoint} was written by a run with another key; resume with the "
                "same key, or choose another checkpoint_dir."
            )
        if manifest["config"] != config:
            raise ValueError(
                f"the checkpoint {checkpoint} was written with {manifest['config']}, but this run has "
                f"{config}; resume with the same configuration."
            )
        saved = manifest["history"]
        rows = len(saved["step"])
        history = {name: list(saved.get(name, [math.nan] * rows)) for name in history}  # new metrics: NaN
    carry = _place_carry(carry, mesh, sharding.shard_leading_axis, _put_replicated)
    data = _put_replicated(data, mesh)

    spec = _Spec(
        ebm_static, flow_static, negatives, optimizer, flow_optimizer, batch_size, n_chains, energy_l2, mesh
    )

    # ------------------------------------------------------------------------ chunk loop
    step = int(carry.step)
    last_saved = step
    with tqdm(total=num_steps, initial=min(step, num_steps), unit="step", disable=not progress) as bar:
        while step < num_steps:
            length = min(chunk_size - step % chunk_size, num_steps - step)  # boundaries at multiples
            new_carry, stats = _run_chunk(carry, data, key_steps, spec, length)
            stats = jax.tree.map(np.asarray, stats)
            _raise_if_diverged(stats, step, num_steps, checkpoint, trains_flow)
            carry, step = new_carry, step + length
            ebm_out, flow_out = _models(carry, ebm_static, flow_static, negatives)
            row = _history_row(step, stats, carry)
            for name, fn in metrics.items():
                row[name] = float(fn(ebm_out, flow_out, carry.bank))
            for name, value in row.items():
                history[name].append(value)
            postfix = {"loss": f"{row['loss']:.3g}", "local": f"{row['local_accept']:.2f}"}
            if math.isfinite(row["global_accept"]):
                postfix["global"] = f"{row['global_accept']:.2f}"
            bar.set_postfix(postfix, refresh=False)
            bar.update(length)
            if checkpoint_dir is not None and (
                step // checkpoint_every > last_saved // checkpoint_every or step == num_steps
            ):
                manifest = {"key": key_data.tolist(), "config": config, "history": history}
                checkpoint = checkpoints.save_checkpoint(
                    checkpoint_dir, step, carry, manifest, keep=checkpoints_kept
                )
                last_saved = step

    ebm_out, flow_out = _models(carry, ebm_static, flow_static, negatives)
    return TrainResult(
        ebm=ebm_out,
        flow=flow_out,
        history=_history_to_arrays(history),
        bank=carry.bank,
        step_size=carry.step_size,
        opt_state=carry.opt_state,
        flow_opt_state=carry.flow_opt_state,
        step=step,
    )


def _raise_if_diverged(stats: _StepStats, step: int, num_steps: int, checkpoint, trains_flow: bool) -> None:
    """Raise :class:`TrainingDivergedError` at the first non-finite loss or energy of a chunk."""
    checked = {
        "loss": stats.loss,
        "mean E(data)": stats.energy_data,
        "mean E(negatives)": stats.energy_negatives,
    }
    if trains_flow:
        checked["flow loss"] = stats.flow_loss
    for what, values in checked.items():
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            first = step + int(bad[0]) + 1
            kept = (
                f"the last good checkpoint {checkpoint} is untouched"
                if checkpoint
                else "no checkpoint was written"
            )
            raise TrainingDivergedError(
                f"{what} became {values[bad[0]]} at training step {first} (of {num_steps}); {kept}. "
                "Lower the learning rates or the step size, or add energy_l2.",
                step=first,
                checkpoint=checkpoint,
            )


def _history_row(step: int, stats: _StepStats, carry: _Carry) -> dict[str, float]:
    """One history entry: chunk means of the step statistics."""
    row = {"step": step}
    for name in HISTORY_FIELDS[1:-1]:
        row[name] = float(np.mean(getattr(stats, name)))
    row["step_size"] = float(carry.step_size)
    return row


def _models(carry: _Carry, ebm_static, flow_static, negatives: AbstractNegatives):
    """The EBM and flow as users hold them (frozen parts still wrapped, unlike ``combine``)."""
    ebm = eqx.combine(carry.ebm_params, ebm_static)
    if negatives.flow_training == "tilt":
        return ebm, ebm.base
    flow = None if flow_static is None else eqx.combine(carry.flow_params, flow_static)
    return ebm, flow
