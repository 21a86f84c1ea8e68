"""``numpyro-ebm train``: settle a run's settings, train its EBM, save the run.

Example:
    >>> config = resolve_config({"data": "two_modes", "sampler": "flowmc"}, steps=100,
    ...                         out=Path("/tmp/new-run"), resume=False)  # doctest: +SKIP
    >>> summary = train_run(config, Path("/tmp/new-run"), resume=False, progress=False)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax

from numpyro_ebm import checkpoints, recipes
from numpyro_ebm import negatives as ng
from numpyro_ebm._compat import renamed_keys
from numpyro_ebm._json import write_json
from numpyro_ebm.commands.flags import flag as _flag
from numpyro_ebm.commands.flags import settings_from
from numpyro_ebm.commands.options import OPTIONS, PRETRAIN_FLOW, PROG, UsageError
from numpyro_ebm.reproduce.common import pretrain_flow
from numpyro_ebm.runs import CONFIG_FILE, FLOW, NET, RUN_FILE, build_models, load_data, save_run
from numpyro_ebm.settings import FlowMCSettings
from numpyro_ebm.training import train
from numpyro_ebm.training.checks import sampler_settings

__all__ = ["OPTIONS", "resolve_config", "build_negatives", "sampler_options", "train_run", "report"]

# The transition's options are FlowMCSettings' fields; all but the step size are flowmc's only.
_SETTINGS = tuple(field.name for field in dataclasses.fields(FlowMCSettings))
_FLOWMC_ONLY = (*(name for name in _SETTINGS if name != "step_size"), "num_cycles")


def resolve_config(given: dict[str, Any], *, steps: int, out: Path, resume: bool) -> dict[str, Any]:
    """The settings of the run in ``out``: ``OPTIONS`` overridden by ``given``, checked.

    Args:
        given: the options set on the command line (keys of ``OPTIONS``).
        steps: total training steps.
        out: the run folder.
        resume: continue the run in ``out``: its saved settings hold, and ``given`` may not differ.

    Raises:
        UsageError: a missing or contradictory option, or an ``out`` that already holds another run.
    """
    config_path = out / CONFIG_FILE
    has_run = config_path.is_file() or (out / "checkpoints").is_dir() or (out / RUN_FILE).is_file()
    if resume and config_path.is_file():
        saved = renamed_keys(json.loads(config_path.read_text()))  # a run from before num_*
        for name, value in given.items():
            if saved.get(name) != value:
                raise UsageError(
                    f"{_flag(name)} {value} differs from the run being resumed in {out} ({saved.get(name)}); "
                    f"drop {_flag(name)} or train into a new --out."
                )
        return {**saved, "steps": steps}
    if has_run and not resume:
        raise UsageError(
            f"--out {out} already holds a run; pass --resume to continue it, or choose an empty --out."
        )
    config = {**OPTIONS, **given, "steps": steps}
    for name in ("data", "sampler"):
        if config[name] is None:
            raise UsageError(f"train needs --{name}; see `{PROG} train --help`.")
    sampler = config["sampler"]
    if sampler != "flowmc":
        wrong = [k for k in _FLOWMC_ONLY if k in given]
        if wrong:
            raise UsageError(f"{_flag(wrong[0])} applies to --sampler flowmc only; drop it.")
    elif "num_mcmc_steps" in given:
        raise UsageError(
            "--num-mcmc-steps does not apply to --sampler flowmc; use --num-local-steps and --num-cycles."
        )
    elif "global_move" in given and given["global_move"] is None:
        raise UsageError("--global-move none leaves flowmc without a flow; use --sampler mala for MALA only.")
    else:
        sampler_options(config)  # FlowMCSettings checks the transition before any work
    if not recipes.has_flow(sampler):
        wrong = [k for k in ("flow_layers", "flow_width") if k in given]
        if wrong:
            with_flow = [name for name in recipes.SAMPLERS if recipes.has_flow(name)]
            raise UsageError(
                f"{_flag(wrong[0])} applies to samplers with a flow ({', '.join(with_flow)}); "
                f"--sampler {sampler} has none. Drop it."
            )
    if config["pretrain_flow"] is None:
        config["pretrain_flow"] = PRETRAIN_FLOW.get(sampler, 0)
    elif config["pretrain_flow"] and sampler not in ("coopflow", "ntebm"):
        raise UsageError(
            "--pretrain-flow applies to --sampler coopflow or ntebm; flowMC-EBM's flow starts at "
            "the identity, like its EBM."
        )
    if config["bank_size"] < config["batch_size"]:
        raise UsageError(f"--bank-size {config['bank_size']} must be >= --batch-size {config['batch_size']}.")
    return config


def sampler_options(config: dict[str, Any]) -> dict[str, Any]:
    """The negatives class's keyword arguments that ``config`` sets (for flowmc: its
    ``FlowMCSettings``, as ``settings``, and ``num_cycles``); unset ones keep the class's defaults.

    Raises:
        UsageError: flowmc settings that ``FlowMCSettings`` rejects (the message names the flags).
    """
    if config["sampler"] != "flowmc":
        return {k: config[k] for k in ("step_size", "num_mcmc_steps") if config.get(k) is not None}
    given = {k: config[k] for k in _SETTINGS if config.get(k) is not None}
    options = {"settings": settings_from(FlowMCSettings, given)}
    if config.get("num_cycles") is not None:
        options["num_cycles"] = config["num_cycles"]
    return options


def build_negatives(config: dict[str, Any], flow) -> ng.AbstractNegatives:
    """The negative sampler named by ``config["sampler"]``, with the settings ``config`` gives."""
    return recipes.make_sampler(config["sampler"], flow, sampler_options(config))


def train_run(config: dict[str, Any], out: Path, *, resume: bool, progress: bool) -> dict[str, Any]:
    """Train the run that ``config`` (from :func:`resolve_config`) describes and save it in ``out``.

    Checkpoints go to ``out/checkpoints`` (``resume`` continues from the latest), the settings to
    ``out/config.json``, the trained run to ``out/model.eqx`` and ``out/run.json``.

    Returns:
        The manifest written to ``run.json``.
    """
    key_data, key_models, key_pretrain, key_train = jax.random.split(jax.random.key(config["seed"]), 4)
    data, _, data_info = load_data(
        config["data"],
        num_data=config["num_data"],
        dim=config["dim"],
        key=key_data,
        batch_size=config["batch_size"],
    )
    if config["batch_size"] > data.shape[0]:
        raise UsageError(
            f"--batch-size {config['batch_size']} exceeds the {data.shape[0]} data points; lower it."
        )
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CONFIG_FILE, config)
    dim, sampler = int(data.shape[1]), config["sampler"]
    net_cfg = {**NET, "widths": list(config["net_widths"])}
    flow_cfg = None
    if recipes.has_flow(sampler):
        flow_cfg = {**FLOW, "flow_layers": config["flow_layers"], "nn_width": config["flow_width"]}
    ebm, flow = build_models(key_models, dim, sampler, net_cfg, flow_cfg)
    checkpoint_dir = out / "checkpoints"
    resuming = checkpoints.latest_checkpoint(checkpoint_dir) is not None
    pretrain_loss = None
    if config["pretrain_flow"] and not resuming:
        print(f"pre-training the flow on the data for {config['pretrain_flow']} steps", file=sys.stderr)
        flow, pretrain_loss = pretrain_flow(
            key_pretrain, flow, jnp.asarray(data), config["pretrain_flow"], config["flow_lr"]
        )
        ebm, _ = recipes.build(sampler, ebm.net, flow)  # the tilt of NT-EBM is the pre-trained flow
    negatives = build_negatives(config, flow)
    print(
        f"training a {NET['kind']} EBM with {type(negatives).__name__} negatives on {config['data']} "
        f"({data.shape[0]} points, dim {dim}) for {config['steps']} steps",
        file=sys.stderr,
    )
    start = time.perf_counter()
    result = train(
        ebm,
        data,
        key=key_train,
        negatives=negatives,
        optimizer=optax.adam(config["lr"]),
        flow_optimizer=optax.adam(config["flow_lr"]),
        num_steps=config["steps"],
        batch_size=config["batch_size"],
        bank_size=config["bank_size"],
        chunk_size=config["chunk_size"],
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=config["checkpoint_every"],
        resume=resume,
        progress=progress,
    )
    manifest = {
        "dim": dim,
        "sampler": sampler,
        "tilt": recipes.tilt_of(sampler),
        "net": net_cfg,
        "flow": flow_cfg,
        "bank_size": config["bank_size"],
        "data": {**data_info, "num_data": int(data.shape[0])},
        "config": config,
        "sampler_settings": sampler_settings(negatives),
        "steps": result.step,
        "time_s": time.perf_counter() - start,
        "pretrain_flow_loss": pretrain_loss,
        "history": {k: v.tolist() for k, v in result.history.items()},
    }
    save_run(out, ebm=result.ebm, flow=result.flow, bank=result.bank, manifest=manifest)
    return manifest


def report(manifest: dict[str, Any], out: Path) -> str:
    """What ``train`` prints: the last losses and acceptances, and what to run next."""
    h = manifest["history"]
    lines = []
    if len(h["step"]):
        line = f"loss {h['loss'][-1]:.3g}, local acceptance {h['local_accept_prob'][-1]:.2f}"
        if math.isfinite(h["global_accept_prob"][-1]):
            line += f", global acceptance {h['global_accept_prob'][-1]:.2f}"
        lines.append(f"step {manifest['steps']}: {line}")
    lines.append(
        f"saved the model to {out} ({manifest['time_s']:.0f} s); next: `{PROG} sample --run {out}` "
        f"or `{PROG} evaluate --run {out}`"
    )
    return "\n".join(lines)
