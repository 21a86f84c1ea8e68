"""What every experiment shares: building and training a method, its negative chains, work counts.

Models come from the one factory :func:`numpyro_ebm.recipes.build`; training is
:func:`numpyro_ebm.training.train`; chains after training are calls of the method's own
negatives sampler (:func:`sampler_chains`), so nothing here is a second MCMC implementation.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from numpyro_ebm import checkpoints, recipes
from numpyro_ebm.flows import default_flow, fit_flow, partition
from numpyro_ebm.nets import ToyNet
from numpyro_ebm.reproduce.presets import FlowArch, Method
from numpyro_ebm.training import TrainingDivergedError, train

__all__ = ["sampler_work", "train_method", "sampler_chains", "settings", "last", "machine", "total_work"]


def sampler_work(sampler: str, options: dict[str, Any], num_chains: int) -> dict[str, int]:
    """Evaluations one sampler call makes on ``num_chains`` chains.

    ``energy`` counts every evaluation of the energy (with or without input gradient),
    ``energy_grad`` those with a gradient, ``flow`` the flow samples and density evaluations.
    flowMC: per chain, ``init`` (1 gradient) + per cycle ``particles - 1`` proposals (energy and
    flow), 1 flow density of the current state, 1 gradient at the chosen particle, and one gradient
    per MALA step. Langevin samplers: 1 + ``num_mcmc_steps`` gradients per chain (NT-EBM also pushes each
    through the flow).

    Example:
        >>> sampler_work("ula", {"num_mcmc_steps": 10}, 64)
        {'energy': 704, 'energy_grad': 704, 'flow': 0}
    """
    if sampler == "flowmc":
        cycles = options.get("num_cycles", 2)
        local = options.get("num_local_steps", 4)
        proposals = (
            options.get("num_particles", 32) - 1 if options.get("global_move", "isir") == "isir" else 1
        )
        grads = 1 + cycles * (1 + local)
        energy = grads + cycles * proposals
        flow = cycles * (proposals + 1)
    else:
        grads = 1 + options.get("num_mcmc_steps", 10)
        energy = grads
        flow = grads + 1 if sampler == "ntebm" else 0
    return {"energy": energy * num_chains, "energy_grad": grads * num_chains, "flow": flow * num_chains}


def num_chains(options: dict[str, Any], batch_size: int) -> int:
    keep = options.get("keep", "last")
    return batch_size if keep == "last" else batch_size // keep


def training_work(method: Method) -> dict[str, int]:
    s = method.schedule
    per_step = sampler_work(method.sampler, method.options, num_chains(method.options, s.batch_size))
    work = {f"sampler_{k}_evals": v * s.num_steps for k, v in per_step.items()}
    work["train_steps"] = s.num_steps
    work["data_points_seen"] = s.num_steps * s.batch_size
    work["flow_pretrain_steps"] = (
        getattr(method.flow, "pretrain_steps", 0) if method.sampler in ("ntebm", "coopflow") else 0
    )
    return work


# ------------------------------------------------------------------------------ models


def base_scale(data: np.ndarray, target) -> float:
    """``s`` of rho = N(0, s^2 I): the largest coordinate variance (App. C.5)."""
    try:
        return float(np.sqrt(target.max_variance))
    except (TypeError, AttributeError):
        return float(np.sqrt(np.max(np.var(data, axis=0))))


def toy_flow(key, dim: int, arch: FlowArch, scale: float, *, identity_init: bool):
    """The flow of the toy experiments: ``default_flow`` on the base ``N(0, scale^2 I)``."""
    from flowjax.distributions import Normal

    base = Normal(jnp.zeros(dim), jnp.full(dim, scale))
    return default_flow(
        key,
        dim,
        identity_init=identity_init,
        base=base,
        flow_layers=arch.layers,
        nn_width=arch.width,
        nn_depth=arch.depth,
        interval=arch.interval * scale,
    )


def pretrain_flow(key, flow, data, steps: int, lr: float, batch_size: int = 256):
    """Maximum likelihood of the flow on the data (the baselines' pre-training, and
    ``numpyro-ebm train --pretrain-flow``): ``(flow, last loss)`` (``None`` for 0 steps)."""
    if steps == 0:
        return flow, None
    params, static = partition(flow)
    opt = optax.adam(lr)
    batch_size = min(batch_size, data.shape[0])
    params, _, losses = jax.jit(
        lambda k, p, s: fit_flow(k, p, static, s, data, opt, num_steps=steps, batch_size=batch_size)
    )(key, params, opt.init(params))
    return eqx.combine(params, static), float(losses[-1])


def train_method(
    method: Method,
    data,
    key,
    *,
    target=None,
    net=None,
    flow_fn: Callable | None = None,
    base=None,
    progress: bool = True,
    metrics=None,
) -> dict[str, Any]:
    """Build the EBM, flow and sampler of ``method`` (:func:`numpyro_ebm.recipes.build`), train, time.

    ``net`` defaults to a ``ToyNet``; ``flow_fn(key, identity_init)`` to :func:`toy_flow` on the
    data's scale. Baselines with a flow (NT-EBM, CoopFlow) start from a flow pre-trained on the
    data; flowMC-EBM's starts at the identity, balanced with its EBM.

    A training that diverges (a baseline's loss turns non-finite or its chains run away) is not
    an error: the models of the last good checkpoint (within the first chunk: of the step before)
    are returned, with ``stopped`` naming the step.

    Returns:
        ``{"result", "sampler", "train_seconds", "work", "stopped"}``.
    """
    key_net, key_flow, key_pre, key_train = jax.random.split(key, 4)
    dim = data.shape[1]
    net = ToyNet(dim, key=key_net) if net is None else net
    if flow_fn is None:
        scale = base_scale(np.asarray(data), target)
        flow_fn = lambda k, identity: toy_flow(k, dim, method.flow, scale, identity_init=identity)  # noqa: E731
    t0 = time.perf_counter()
    flow = None
    if recipes.has_flow(method.sampler):
        pretrained = method.sampler in ("ntebm", "coopflow")
        flow = flow_fn(key_flow, not pretrained)
        if pretrained:
            flow, _ = pretrain_flow(
                key_pre, flow, jnp.asarray(data), method.flow.pretrain_steps, method.flow.pretrain_lr
            )
    ebm, sampler = recipes.build(method.sampler, net, flow, method.options, base=base)
    result, stopped = _train_recovering(ebm, data, sampler, method, key_train, progress, metrics)
    return {
        "result": result,
        "sampler": sampler,
        "train_seconds": time.perf_counter() - t0,
        "work": training_work(method),
        "stopped": stopped,
    }


def _train_recovering(ebm, data, sampler, method: Method, key, progress, metrics):
    s = method.schedule
    kwargs = dict(
        key=key,
        negatives=sampler,
        optimizer=s.optimizer(),
        flow_optimizer=s.optimizer(),
        batch_size=s.batch_size,
        bank_size=s.bank_size,
        chunk_size=s.chunk_size,
        energy_l2=s.energy_l2,
        ema=s.ema,
        metrics=metrics,
    )
    # A checkpoint per chunk, so that a baseline whose loss turns NaN still shows how it got there.
    with tempfile.TemporaryDirectory(prefix="numpyro-ebm-reproduce-") as directory:
        try:
            result = train(
                ebm,
                data,
                num_steps=s.num_steps,
                checkpoint_dir=directory,
                checkpoint_every=s.chunk_size,
                progress=progress,
                **kwargs,
            )
            return result, None
        except TrainingDivergedError as err:
            if err.checkpoint is None and err.step <= 1:
                raise
            print(f"numpyro-ebm reproduce: {method.name}: {err}", file=sys.stderr)
            if err.checkpoint is None:  # within the first chunk: the same steps (same key and
                # rates, which follow the schedule, not num_steps) up to the one before
                result = train(ebm, data, num_steps=err.step - 1, progress=False, **kwargs)
            else:
                done = int(checkpoints.read_manifest(err.checkpoint)["step"])
                result = train(
                    ebm, data, num_steps=done, checkpoint_dir=directory, resume=True, progress=False, **kwargs
                )
            return result, {"step": err.step, "reason": str(err)}


def sampler_chains(sampler, ebm, flow, start, step_size, key, calls: int):
    """``calls`` states of each chain of ``start`` under the method's own negatives sampler.

    Persistent samplers (flowMC-EBM, ULA-EBM) are called ``calls`` times in a row, each call
    continuing from the last (one call = the moves of one training step; its final state is a
    draw). Samplers whose chains restart at every step (NT-EBM, CoopFlow) make one call
    ``calls`` times as long from fresh starts, thinned to ``calls`` evenly spaced states.

    Returns:
        ``(chains, global_accept_prob)``: ``(len(start), calls, dim)`` and the mean global acceptance
        (NaN without global moves).
    """
    if sampler.persistent:
        return _persistent_chains(
            dataclasses.replace(sampler, keep="last"), ebm, flow, start, jnp.asarray(step_size), key, calls
        )
    long = dataclasses.replace(sampler, num_mcmc_steps=sampler.num_mcmc_steps * calls, keep=calls)
    return _restarting_chains(long, ebm, flow, start, jnp.asarray(step_size), key, calls)


@eqx.filter_jit
def _persistent_chains(sampler, ebm, flow, start, step_size, key, calls):
    def body(carry, k):
        x, eta = carry
        out = sampler(k, ebm, flow, x, eta)
        return (out.final, out.step_size), (out.final, out.global_accept_prob)

    _, (states, accept) = jax.lax.scan(body, (start, step_size), jax.random.split(key, calls))
    return jnp.swapaxes(states, 0, 1), jnp.mean(accept)


@eqx.filter_jit
def _restarting_chains(sampler, ebm, flow, start, step_size, key, calls):
    out = sampler(key, ebm, flow, start, step_size)
    return jnp.swapaxes(out.negatives.reshape(calls, start.shape[0], -1), 0, 1), out.global_accept_prob


def chain_starts(sampler, ebm, flow, bank, key, n: int):
    """Where evaluation chains start, and the flow to pass the sampler: the first ``n`` rows of
    the bank (persistent samplers), else ``n`` fresh draws of the sampler's start."""
    flow = None if sampler.flow_training in (None, "tilt") else flow
    if sampler.persistent:
        return bank[:n], flow
    return sampler.initial_positions(key, ebm, flow, n).astype(bank.dtype), flow


# ------------------------------------------------------------------------------ bookkeeping


def last(history, name: str) -> float:
    values = np.asarray(history.get(name, [np.nan]), dtype=float)
    return float(values[-1]) if values.size else math.nan


def settings(method: Method) -> dict[str, Any]:
    return {
        "sampler": method.sampler,
        "tilt": recipes.tilt_of(method.sampler),
        **method.options,
        **asdict(method.schedule),
        "flow": asdict(method.flow) if recipes.has_flow(method.sampler) else None,
        "note": method.note,
    }


def total_work(metrics: dict[str, Any]) -> dict[str, int]:
    total: dict[str, int] = {}

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "work" and isinstance(v, dict):
                    for name, value in v.items():
                        total[name] = total.get(name, 0) + int(value)
                else:
                    walk(v)

    walk({k: v for k, v in metrics.items() if k != "work"})
    return total


def _code_version() -> str:
    """The package version and, in a git checkout, the commit (``+dirty`` with local changes): two
    runs can only be expected to agree digit for digit on the same code."""
    import subprocess

    from numpyro_ebm import __version__

    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."],
            cwd=here.parent,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+{commit}{'.dirty' if dirty else ''}" if commit else __version__


def machine() -> dict[str, Any]:
    return {
        "code_version": _code_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "jax_version": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def plot(out_dir: Path, draw: Callable, name: str = "figure.png", size=(10, 3.2)) -> str:
    """Draw a figure with matplotlib (Agg) into ``out_dir/name``; returns ``name``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=size)
    try:
        draw(fig)
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=110)
    finally:
        plt.close(fig)
    return name
