"""The command line's argument types, ``train``'s options and the ``reproduce`` summary (no JAX).

Split from :mod:`numpyro_ebm.cli` to keep each module short; nothing here imports JAX.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from numpyro_ebm.commands.options import OPTIONS
from numpyro_ebm.recipes import SAMPLERS

__all__ = [
    "positive_int",
    "nonnegative_int",
    "widths",
    "dims",
    "positive_float",
    "add_train_arguments",
    "reproduce_summary",
]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0; got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0; got {text!r}")
    return value


def widths(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"must be positive integers separated by commas, e.g. 32,64; got {text!r}"
        )
    return values


def dims(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"must be positive integers separated by commas, e.g. 16,32,64; got {text!r}"
        )
    return values


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number; got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number; got {text!r}")
    return value


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``numpyro-ebm train``."""
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
    p.add_argument("--dim", type=positive_int, help="dimension of --data gaussian_mixture (default: none)")
    p.add_argument(
        "--num-data",
        type=positive_int,
        help=f"points drawn from a named set (default {OPTIONS['num_data']})",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        help=f"data points and negatives per step (default {OPTIONS['batch_size']})",
    )
    p.add_argument(
        "--bank-size",
        type=positive_int,
        help=f"persistent negative chains (default {OPTIONS['bank_size']})",
    )
    p.add_argument(
        "--lr", type=positive_float, help=f"Adam learning rate of the EBM (default {OPTIONS['lr']})"
    )
    p.add_argument(
        "--flow-lr",
        type=positive_float,
        help=f"Adam learning rate of the flow (default {OPTIONS['flow_lr']})",
    )
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        help=f"steps per compiled chunk (default {OPTIONS['chunk_size']})",
    )
    p.add_argument(
        "--checkpoint-every",
        type=positive_int,
        help=f"steps between checkpoints (default {OPTIONS['checkpoint_every']})",
    )
    p.add_argument(
        "--step-size",
        type=positive_float,
        help="step size of the sampler's Langevin/MALA moves (default: "
        "the sampler's, 0.01 except coopflow 5e-4)",
    )
    p.add_argument(
        "--n-steps",
        type=positive_int,
        help="Langevin/MALA steps per training step, for all samplers "
        "but flowmc (default: ula, mala 10; shortrun 50; ntebm 128; coopflow 256)",
    )
    p.add_argument("--n-local-steps", type=nonnegative_int, help="flowmc: MALA steps per cycle (default 4)")
    p.add_argument(
        "--n-cycles", type=positive_int, help="flowmc: [i-SIR + MALA] cycles per training step (default 2)"
    )
    p.add_argument("--n-particles", type=positive_int, help="flowmc: i-SIR particles (default 32)")
    p.add_argument(
        "--pretrain-flow",
        type=nonnegative_int,
        help="coopflow, ntebm: fit the flow to the data for this "
        "many Adam steps first (default: coopflow 1000, ntebm 0)",
    )
    p.add_argument(
        "--net-widths", type=widths, help="hidden widths of the ToyNet energy (default 32,64,64,64)"
    )
    p.add_argument("--flow-layers", type=positive_int, help="coupling layers of the flow (default 4)")
    p.add_argument(
        "--flow-width", type=positive_int, help="hidden width of the flow's conditioners (default 32)"
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
    "cifar10": ("global_accept", "class_balance_tv", "energy_gap"),
    "digits": ("global_accept", "class_balance_tv", "energy_gap"),
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
