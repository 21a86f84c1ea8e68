"""The command line's argument types, ``train``'s options and the ``reproduce`` summary (no JAX).

Split from :mod:`numpyro_ebm.cli` to keep each module short; nothing here imports JAX.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from numpyro_ebm.commands.flags import add_dataclass_flags, add_old_flags, flag
from numpyro_ebm.commands.options import OPTIONS, PER_SAMPLER
from numpyro_ebm.recipes import SAMPLERS
from numpyro_ebm.settings import FlowMCSettings

__all__ = [
    "positive_int",
    "nonnegative_int",
    "widths",
    "dims",
    "positive_float",
    "add_train_arguments",
    "reproduce_summary",
]


def _int_at_least(minimum: int, what: str):
    """An argparse type: an integer ``>= minimum``, else an error saying it must be ``what``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}")
        return value

    return parse


positive_int = _int_at_least(1, "a positive integer")
nonnegative_int = _int_at_least(0, "an integer >= 0")


def _int_list(example: str):
    """An argparse type: positive integers separated by commas, as a tuple."""

    def parse(text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(v) for v in text.split(","))
        except ValueError:
            values = ()
        if not values or min(values) < 1:
            raise argparse.ArgumentTypeError(
                f"must be positive integers separated by commas, e.g. {example}; got {text!r}"
            )
        return values

    return parse


dims = _int_list("16,32,64")
_widths = _int_list("32,64")


def widths(text: str) -> list[int]:
    return list(_widths(text))


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number; got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number; got {text!r}")
    return value


# `train`'s options besides the sampler's transition: (type, help); each default is OPTIONS'.
_TRAIN_OPTIONS = {
    "dim": (positive_int, "dimension of --data gaussian_mixture"),
    "num_data": (positive_int, "points drawn from a named set"),
    "batch_size": (positive_int, "data points and negatives per step"),
    "bank_size": (positive_int, "persistent negative chains"),
    "lr": (positive_float, "Adam learning rate of the EBM"),
    "flow_lr": (positive_float, "Adam learning rate of the flow"),
    "seed": (int, "random seed"),
    "chunk_size": (positive_int, "steps per compiled chunk"),
    "checkpoint_every": (positive_int, "steps between checkpoints"),
    "num_mcmc_steps": (positive_int, "Langevin/MALA steps per training step, for all samplers but flowmc"),
    "num_cycles": (positive_int, "flowmc: [global move + MALA] cycles per training step"),
    "pretrain_flow": (
        nonnegative_int,
        "coopflow, ntebm: fit the flow to the data for this many Adam steps first",
    ),
    "net_widths": (widths, "hidden widths of the ToyNet energy"),
    "flow_layers": (positive_int, "coupling layers of the flow"),
    "flow_width": (positive_int, "hidden width of the flow's conditioners"),
}


def _default_text(name: str) -> str:
    value = OPTIONS[name]
    if value is None:
        return PER_SAMPLER.get(name, "none")
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``numpyro-ebm train``: the sampler's transition generated from
    :class:`~numpyro_ebm.settings.FlowMCSettings`, the rest from ``OPTIONS``'s defaults."""
    p.add_argument(
        "--data",
        help="a named set (two_modes, two_gaussians, line_of_four, eight_gaussians, rings, "
        "gaussian_mixture) or a .npy/.csv file holding an (n, dim) array, dim >= 2",
    )
    p.add_argument(
        "--sampler",
        choices=SAMPLERS,
        help="negative sampler (flowmc: flowMC-EBM; ula, mala: PCD "
        "baselines; shortrun: short-run ULA from noise; ntebm; coopflow)",
    )
    p.add_argument(
        "--steps", type=positive_int, required=True, help="training steps (in total, when resuming)"
    )
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its latest checkpoint"
    )
    for name, (kind, text) in _TRAIN_OPTIONS.items():
        p.add_argument(flag(name), type=kind, help=f"{text} (default {_default_text(name)})")
        add_old_flags(p, name, type=kind)
    add_dataclass_flags(
        p.add_argument_group("flowmc's transition (FlowMCSettings; --step-size: every sampler)"),
        FlowMCSettings,
        defaults=False,
        help_suffix={"step_size": "; other samplers: their class's own, see numpyro_ebm.negatives"},
    )


# The paper's numbers of each experiment, in the order of its table (the rest is in metrics.json).
_HEADLINE = {
    "figure1": ("weight", "weight_error", "bank_weight", "last_quarter_range"),
    "table3": ("init_vs_ebm", "negatives_vs_ebm", "ebm_vs_target", "ebm_weights"),
    "table1": (
        "median_sq_log_density_error",
        "median_sq_log_density_error_whole_box",
        "median_sq_log_density_error_at_data",
    ),
    "table2": ("max_rhat", "mode_weights_chains", "mode_weights_is"),
    "cifar10": ("global_accept_prob", "class_balance_tv", "energy_gap"),
    "digits": ("global_accept_prob", "class_balance_tv", "energy_gap"),
}


def reproduce_summary(result: dict, out: Path) -> str:
    """A few lines: the experiment, then each method's headline numbers (one line per method, per
    data set or dimension for table1 and table2) and its training time; no histories or settings."""

    def fmt(v):
        if v is None:  # NaN or inf in the JSON
            return "n/a"
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, list) and all(isinstance(x, float) for x in v):
            return "/".join(f"{x:.3f}" for x in v)
        return str(v)

    def row(values) -> str:
        if not isinstance(values, dict):
            return str(values)
        keys = [k for k in _HEADLINE.get(result.get("experiment"), ()) if k in values]
        if not keys:  # an experiment this module does not know: its scalars
            keys = [k for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)]
        if isinstance(values.get("train_seconds"), float) and "train_seconds" not in keys:
            keys.append("train_seconds")
        return ", ".join(f"{k} {fmt(values[k])}" for k in keys)

    head = f"reproduce {result.get('experiment')} (preset {result.get('preset')}"
    head += f", key {result['key']})" if "key" in result else ")"
    if isinstance(result.get("seconds"), float):
        head += f": {result['seconds']:.0f} s"
    if "truth" in result:
        head += f"; truth {fmt(result['truth'])}"
    lines = [head]
    if isinstance(result.get("methods"), dict):
        groups = {"": result["methods"]}
    else:
        groups = {
            f"{kind} {name}": entry.get("methods", {})
            for kind, field in (("data set", "datasets"), ("d =", "dims"))
            for name, entry in (result.get(field) or {}).items()
        }
    for label, methods in groups.items():
        indent = "  "
        if label:
            lines.append(f"  {label}:")
            indent = "    "
        lines.extend(f"{indent}{name}: {row(values)}" for name, values in methods.items())
    lines.append(f"wrote metrics.json and figures to {out}")
    return "\n".join(lines)
