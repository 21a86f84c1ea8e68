"""``train``: contrastive maximum-likelihood training of an EBM with a persistent negative bank.

See :mod:`numpyro_ebm.training` for the algorithm; this module holds the driver: checks, the
initial state, the chunk loop (progress bar, history, monitor, guards, checkpoints).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jaxtyping import Array, Float, PRNGKeyArray
from tqdm.auto import tqdm

import numpyro_ebm.training as _package  # the chunk runner is looked up here: tests patch it
from numpyro_ebm import checkpoints, sharding
from numpyro_ebm._compat import RenamedKeys
from numpyro_ebm._validate import fraction
from numpyro_ebm.energy import EnergyModel
from numpyro_ebm.flows import combine, partition
from numpyro_ebm.negatives import AbstractNegatives
from numpyro_ebm.training import averaging, checks, monitor
from numpyro_ebm.training.guards import TrainingDivergedError, _raise_if_diverged, _resume
from numpyro_ebm.training.schedule import default_schedule
from numpyro_ebm.training.step import _Carry, _initial_bank, _place_carry, _put_replicated, _Spec

__all__ = ["train", "TrainResult", "TrainingDivergedError", "HISTORY_FIELDS", "default_schedule"]

# Per-chunk history: means over the chunk's steps (``step`` is the step count at its end).
HISTORY_FIELDS = (
    "step",
    "loss",
    "energy_data",
    "energy_negatives",
    "energy_gap",
    "local_accept_prob",
    "global_accept_prob",
    "flow_loss",
    "step_size",
    "flow_ess",
)


class TrainResult(NamedTuple):
    """What :func:`train` returns.

    Attributes:
        ebm: the trained ``EnergyModel``: the averaged parameters (``ema``, ``average_last``),
            else the last iterate.
        flow: the trained flow (the sampler's, or the EBM's tilt for NT-EBM), else ``None``.
        history: per chunk, arrays keyed by ``HISTORY_FIELDS``, the zone weights
            (``model_zone_weights``, ``bank_zone_weights``, ``(chunks, num_zones)``) when zones are
            given, and the user metrics' names.
        bank: the persistent chains, ``(bank_size, dim)``.
        step_size: the sampler's (possibly adapted) step size.
        opt_state: optax state of the EBM optimiser.
        flow_opt_state: optax state of the flow optimiser (``None`` without a trained flow).
        step: number of training steps done.
        ebm_last: the last iterate, the EBM the bank and the flow track.
    """

    ebm: EnergyModel
    flow: Any
    history: dict[str, np.ndarray]
    bank: Float[Array, "bank dim"]
    step_size: Float[Array, ""]
    opt_state: optax.OptState
    flow_opt_state: optax.OptState | None
    step: int
    ebm_last: EnergyModel


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
    average_last: float = 0.0,
    ema: float = 0.0,
    zones: Any = None,
    monitor_samples: int = 2048,
    max_chain_distance: float | None = 100.0,
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
        optimizer: optax optimiser of the EBM; by default Adam at :func:`default_schedule`
            (warmup to 1e-3, cosine decay to 1e-5 at ``num_steps``).
        flow_optimizer: optax optimiser of the sampler's flow; the same default (the paper
            co-adjusts both rates).
        num_steps: total training steps (a resumed run continues up to this number; with the
            default schedule or averaging it must be the checkpoint's).
        batch_size: data points and negatives per step.
        bank_size: persistent chains, ``>= batch_size`` (the paper: 1024 for batch 64).
        chunk_size: steps per jitted ``lax.scan``; history, monitor, metrics and the progress
            bar are updated once per chunk.
        energy_l2: weight of the L2 energy penalty.
        average_last: return the mean of the EBM parameters over this last fraction of the steps
            (Polyak-Ruppert tail averaging; it removes the mini-batch noise of the mode weights);
            ``0`` returns the last iterate. ``result.ebm_last`` is always the last iterate.
        ema: return the exponential moving average of the EBM parameters with this decay
            (``0.995``: over about the last 200 steps; :mod:`.averaging`); ``0``: none.
        zones: a :class:`~numpyro_ebm.datasets.Target` or a zone function with ``num_zones``: the
            monitor records each zone's weight in the bank and under the model (flow
            importance weights) and warns if they disagree at the end (see
            :mod:`numpyro_ebm.training.monitor`).
        monitor_samples: flow draws per chunk for the monitor (``flow_ess``, zone weights);
            ``0`` turns it off.
        max_chain_distance: stop with :class:`TrainingDivergedError` once a chain is farther
            from the data's mean than this many data radii (the largest distance of a data
            point from it): the finite runaway of an untilted EBM. ``None``: no check.
        metrics: ``{name: fn(ebm, flow, bank) -> scalar}``, evaluated on the host after each
            chunk (on the EBM ``train`` would return then) and recorded in the history.
        checkpoint_dir: write checkpoints here (``None``: no checkpoints).
        checkpoint_every: checkpoint at the first chunk boundary after every multiple of this
            many steps, and at the end.
        checkpoints_kept: number of most recent checkpoints kept.
        resume: continue from the latest checkpoint in ``checkpoint_dir`` (start afresh if there
            is none). The run must use the same key, data and settings; ``train`` names any that
            differ.
        progress: show a tqdm bar with the loss, acceptances, flow ESS and energy gap.
        shard: split the bank and each step's chains over devices (``True``: all of
            ``jax.devices()``; or a sequence of devices / a 1-D ``Mesh``; off by default, and a
            single device means no sharding). ``batch_size``, ``bank_size`` and the chains per
            step (``batch_size // keep``) must be multiples of the device count. Parameters,
            optimiser states and the data set are replicated. Results agree with one device up
            to float rounding (see :mod:`numpyro_ebm.training`). Checkpoints resume on any device
            count.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError, TypeError: bad arguments, before anything is compiled.
        TrainingDivergedError: a loss or energy became non-finite, or chains ran away; names
            the step and leaves the last checkpoint untouched.

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
        >>> result.history["loss"].shape, result.history["flow_ess"].shape
        ((2,), (2,))
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
        checks._check_count(name, value)
    checks._check_count("monitor_samples", monitor_samples, minimum=0)
    if bank_size < batch_size:
        raise ValueError(f"bank_size={bank_size} must be >= batch_size={batch_size}; enlarge the bank.")
    if not (isinstance(energy_l2, int | float) and math.isfinite(energy_l2) and energy_l2 >= 0):
        raise ValueError(f"energy_l2 must be a finite number >= 0; got {energy_l2!r}.")
    average_last = fraction(average_last, "average_last")
    ema = fraction(ema, "ema")
    if max_chain_distance is not None and not (
        isinstance(max_chain_distance, int | float) and max_chain_distance > 0
    ):
        raise ValueError(f"max_chain_distance must be a positive number or None; got {max_chain_distance!r}.")
    zone_fn, num_zones = monitor.resolve_zones(zones)
    metrics = dict(metrics or {})
    reserved = (*HISTORY_FIELDS, "model_zone_weights", "bank_zone_weights")
    for name, fn in metrics.items():
        if not isinstance(name, str) or not callable(fn) or name in reserved:
            raise ValueError(
                f"metrics must map new names (not {reserved}) to callables fn(ebm, flow, bank); got {name!r}."
            )
    # A flow optimiser only matters when the sampler trains its flow on the negatives.
    trains_own_flow = negatives.flow_training == "negatives"
    default_opt = optimizer is None, flow_optimizer is None and trains_own_flow
    optimizer = optax.adam(default_schedule(num_steps)) if optimizer is None else optimizer
    flow_optimizer = optax.adam(default_schedule(num_steps)) if flow_optimizer is None else flow_optimizer
    for name, opt in (("optimizer", optimizer), ("flow_optimizer", flow_optimizer)):
        if not (hasattr(opt, "init") and hasattr(opt, "update")):
            raise TypeError(f"{name} must be an optax GradientTransformation; got {type(opt).__name__}.")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir, the directory holding the checkpoints.")
    key_data = checks._key_data(key)
    mesh = checks._check_shard(shard)
    negatives.validate(ebm, batch_size)
    num_chains = negatives.num_chains(batch_size)
    if mesh is not None:
        sharding.check_divisible(batch_size, mesh, "batch_size")
        sharding.check_divisible(bank_size, mesh, "bank_size")
        if num_chains % mesh.size:
            raise ValueError(
                f"batch_size // keep = {num_chains} chains per step cannot be split evenly over "
                f"{mesh.size} devices; use a batch_size that is a multiple of keep * {mesh.size} = "
                f"{negatives.keep * mesh.size}."
            )
    dtype = jnp.result_type(float)
    data = checks._check_data(data, ebm.dim, batch_size, dtype)
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = checkpoints.latest_checkpoint(checkpoint_dir)
        if checkpoint is not None and not resume:
            raise ValueError(
                f"{checkpoint_dir} already holds a checkpoint ({checkpoint.name}); pass resume=True to "
                "continue it, or choose an empty checkpoint_dir."
            )
    # What a checkpoint remembers of this run; resume=True compares it field by field.
    config = {
        "sampler": checks.sampler_settings(negatives),
        "dim": ebm.dim,
        "batch_size": batch_size,
        "bank_size": bank_size,
        "chunk_size": chunk_size,
        "data": checks.data_fingerprint(data),
        "energy_l2": float(energy_l2),
        "average_last": average_last,
        "ema": ema,
        "optimizer": "default" if default_opt[0] else "user",
        "flow_optimizer": "user" if not default_opt[1] and trains_own_flow else "default",
    }
    if any(default_opt) or average_last > 0:  # the schedule and the averaged tail depend on it
        config["num_steps"] = num_steps

    # ------------------------------------------------------------------------ initial state
    base_key = jax.random.wrap_key_data(jnp.asarray(key_data))
    centre = np.mean(data, axis=0)
    radius = max(float(np.max(np.linalg.norm(data - centre, axis=-1))), 1e-6)
    data = jnp.asarray(data, dtype)
    ebm_params, ebm_static = partition(ebm)
    trains_flow = negatives.flow_training == "negatives"
    own_flow = negatives.initial_flow
    flow_params, flow_static = partition(own_flow) if own_flow is not None else (None, None)
    key_bank, key_steps = jax.random.split(base_key)
    key_monitor = jax.random.fold_in(key_bank, 1)  # its own stream: training is the same without it
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
        ebm_average=ebm_params,
    )
    history: dict[str, list] = {name: [] for name in HISTORY_FIELDS}
    if zone_fn is not None:
        history.update(model_zone_weights=[], bank_zone_weights=[])
    history.update({name: [] for name in metrics})
    if checkpoint is not None:
        carry, history = _resume(checkpoint, carry, history, key_data, config)
    carry = _place_carry(carry, mesh, sharding.shard_leading_axis, _put_replicated)
    data = _put_replicated(data, mesh)
    average_start = averaging.average_start(num_steps, average_last, ema)
    spec = _Spec(
        ebm_static,
        flow_static,
        negatives,
        optimizer,
        flow_optimizer,
        batch_size,
        num_chains,
        energy_l2,
        average_start,
        ema,
        mesh,
        jnp.asarray(centre, dtype),
    )
    monitor_flow = None if own_flow is None and negatives.flow_training != "tilt" else True

    # ------------------------------------------------------------------------ chunk loop
    step = int(carry.step)
    last_saved = step
    with tqdm(total=num_steps, initial=min(step, num_steps), unit="step", disable=not progress) as bar:
        while step < num_steps:
            length = min(chunk_size - step % chunk_size, num_steps - step)  # boundaries at multiples
            new_carry, stats = _package._run_chunk(carry, data, key_steps, spec, length)
            stats = jax.tree.map(np.asarray, stats)
            _raise_if_diverged(stats, step, num_steps, checkpoint, trains_flow, max_chain_distance, radius)
            carry, step = new_carry, step + length
            averaged = averaging.is_averaged(step, average_start, average_last, ema)
            now = carry.ebm_average if averaged else carry.ebm_params
            ebm_now, flow_now = _models(now, carry, ebm_static, flow_static, negatives)
            # The monitor runs on the unwrapped models, as the compiled step does.
            ebm_plain = combine(carry.ebm_params, ebm_static)
            flow_plain = None if flow_static is None else combine(carry.flow_params, flow_static)
            if negatives.flow_training == "tilt":
                flow_plain = ebm_plain.base
            row = monitor.history_row(step, stats, carry)
            if monitor_samples and monitor_flow is not None:
                ess, model_w, bank_w = monitor.flow_check(
                    ebm_plain, flow_plain, jax.random.fold_in(key_monitor, step), monitor_samples,
                    zone_fn, num_zones, carry.bank,
                )  # fmt: skip
                row["flow_ess"] = float(ess)
                if zone_fn is not None:
                    row["model_zone_weights"] = np.asarray(model_w, float).tolist()
                    row["bank_zone_weights"] = np.asarray(bank_w, float).tolist()
            elif zone_fn is not None:
                row["model_zone_weights"] = [math.nan] * num_zones
                row["bank_zone_weights"] = [math.nan] * num_zones
            for name, fn in metrics.items():
                row[name] = float(fn(ebm_now, flow_now, carry.bank))
            for name in history:
                history[name].append(row[name])
            bar.set_postfix(monitor.postfix(row), refresh=False)
            bar.update(length)
            if checkpoint_dir is not None and (
                step // checkpoint_every > last_saved // checkpoint_every or step == num_steps
            ):
                manifest = {"key": key_data.tolist(), "config": config, "history": history}
                checkpoint = checkpoints.save_checkpoint(
                    checkpoint_dir, step, carry, manifest, keep=checkpoints_kept
                )
                last_saved = step

    if zone_fn is not None and monitor_samples:
        monitor.warn_if_disagree(history, bank_size, monitor_samples)
    averaged = averaging.is_averaged(step, average_start, average_last, ema)
    ebm_out, flow_out = _models(
        carry.ebm_average if averaged else carry.ebm_params, carry, ebm_static, flow_static, negatives
    )
    ebm_last, _ = _models(carry.ebm_params, carry, ebm_static, flow_static, negatives)
    return TrainResult(
        ebm=ebm_out,
        flow=flow_out,
        history=RenamedKeys({name: np.asarray(values) for name, values in history.items()}),
        bank=carry.bank,
        step_size=carry.step_size,
        opt_state=carry.opt_state,
        flow_opt_state=carry.flow_opt_state,
        step=step,
        ebm_last=ebm_last,
    )


def _models(ebm_params, carry: _Carry, ebm_static, flow_static, negatives: AbstractNegatives):
    """The EBM and flow as users hold them (frozen parts still wrapped, unlike ``combine``)."""
    ebm = eqx.combine(ebm_params, ebm_static)
    if negatives.flow_training == "tilt":
        return ebm, ebm.base
    flow = None if flow_static is None else eqx.combine(carry.flow_params, flow_static)
    return ebm, flow
