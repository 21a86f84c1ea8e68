"""The ``numpyro-ebm`` command: the 2:1 demo, training, sampling, evaluation, paper reproduction.

Subcommands (``numpyro-ebm SUBCOMMAND --help`` for each; ``demo`` runs when none is given):

* ``demo``: the paper's motivating example (Grenioux et al. 2023, Sec. 4.1, Fig. 1):
  flowMC-EBM beside ULA-EBM on the 2:1 two-mode mixture; writes figures and ``metrics.json``
  (:mod:`numpyro_ebm.demo`).
* ``train``: train a ``ToyNet`` EBM on a named data set or your own ``.npy``/``.csv`` file with
  any negative sampler; checkpoints and the final model go to ``--out`` (a run folder,
  :mod:`numpyro_ebm.runs`).
* ``sample``: sample a trained EBM with ``FlowMCKernel`` (its trained flow as proposal);
  writes ``samples.npy`` and an ArviZ ``samples.nc``.
* ``evaluate``: the paper's metrics on a trained run; prints them and writes ``evaluation.json``.
* ``reproduce``: a table or figure of the paper, through ``numpyro_ebm.reproduce``.

This module parses the arguments and reports errors; the work is done by
:mod:`numpyro_ebm.demo` and :mod:`numpyro_ebm.commands` (``train``, ``sample``, ``evaluate``).
User errors end with a one-line message and exit status 2 (a diverged training: 1). Set
``NUMPYRO_EBM_DEBUG=1`` to get the traceback instead.

Example:
    >>> main(["train", "--help"])  # doctest: +SKIP
    >>> main(["demo", "--quick", "--out", "/tmp/demo"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import os
import sys
from pathlib import Path

# Nothing here imports JAX: `--help` and usage errors answer at once; each subcommand imports
# its work (and JAX) when it runs (tests/test_cli.py checks sys.modules).
from numpyro_ebm.commands.arguments import add_train_arguments, reproduce_summary
from numpyro_ebm.commands.arguments import dims as _dims
from numpyro_ebm.commands.arguments import nonnegative_int as _nonnegative_int
from numpyro_ebm.commands.arguments import positive_int as _positive_int
from numpyro_ebm.commands.flags import add_dataclass_flags, settings_from
from numpyro_ebm.commands.options import OPTIONS, PROG, UsageError
from numpyro_ebm.recipes import SAMPLERS
from numpyro_ebm.settings import FlowMCSettings

_SETTINGS = tuple(f.name for f in dataclasses.fields(FlowMCSettings))

__all__ = ["main", "build_parser", "UsageError", "SAMPLERS", "EXPERIMENTS", "PRESETS"]

EXPERIMENTS = ("table1", "table2", "table3", "figure1", "cifar10", "digits")
PRESETS = ("quick", "cpu", "paper")


# ------------------------------------------------------------------------------- subcommands


def _cmd_demo(args) -> int:
    from numpyro_ebm import demo

    if args.quick and args.preset not in (None, "quick"):
        raise UsageError(f"--quick means --preset quick; it contradicts --preset {args.preset}. Drop one.")
    progress = not args.no_progress
    metrics = demo.run_demo(
        args.out, steps=args.steps, quick=args.quick, seed=args.seed, progress=progress, preset=args.preset
    )
    print(demo.report(metrics, args.out))
    return 0


def _cmd_train(args) -> int:
    from numpyro_ebm.commands import train

    out = Path(args.out)
    # The transition's flags leave no attribute unless given (where None may be a given value).
    given = {k: v for k, v in vars(args).items() if k in OPTIONS and (v is not None or k in _SETTINGS)}
    config = train.resolve_config(given, steps=args.steps, out=out, resume=args.resume)
    manifest = train.train_run(config, out, resume=args.resume, progress=not args.no_progress)
    print(train.report(manifest, out))
    return 0


def _call(fn, args, **extra):
    """``fn(args.run, ...)`` with the parsed arguments that ``fn`` takes, and ``extra``."""
    takes = inspect.signature(fn).parameters
    given = {k: v for k, v in vars(args).items() if k in takes and k != "run"}
    return fn(args.run, **given, **extra)


def _cmd_sample(args) -> int:
    from numpyro_ebm.commands import sample

    settings = settings_from(FlowMCSettings, {name: getattr(args, name) for name in _SETTINGS})
    summary = _call(sample.sample_run, args, settings=settings, progress=not args.no_progress)
    print(sample.report(summary))
    return 0


def _cmd_evaluate(args) -> int:
    from numpyro_ebm.commands import evaluate

    print(evaluate.report(_call(evaluate.evaluate_run, args), args.run))
    return 0


# ----------------------------------------------------------------------------------- reproduce


def _cmd_reproduce(args) -> int:
    extra = {}
    if args.dims is not None:
        if args.experiment != "table2":
            raise UsageError(
                f"--dims applies to table2 only (the mixture's dimensions); drop it for {args.experiment}."
            )
        extra["dims"] = args.dims
    if args.data is not None:
        if args.experiment != "cifar10":
            raise UsageError(f"--data applies to cifar10 only; drop it for {args.experiment}.")
        extra["data"] = args.data
    elif args.experiment == "cifar10":
        raise UsageError(
            "reproduce cifar10 needs --data DIR, the 'cifar-10-batches-bin' folder of the binary "
            "CIFAR-10 (cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html; "
            "nothing is downloaded)."
        )
    try:
        reproduce = importlib.import_module("numpyro_ebm.reproduce")
    except ModuleNotFoundError as err:
        if err.name != "numpyro_ebm.reproduce":
            raise
        raise UsageError(
            "numpyro_ebm.reproduce is not part of this installation yet; update numpyro-ebm to reproduce "
            f"{args.experiment}."
        ) from None
    preset = "quick" if args.quick else (args.preset or "cpu")
    if args.quick and args.preset not in (None, "quick"):
        raise UsageError(f"--quick means --preset quick; it contradicts --preset {args.preset}. Drop one.")
    known = getattr(reproduce, "EXPERIMENTS", None)
    if known is not None and args.experiment not in known:
        raise UsageError(f"reproduce {args.experiment!r} is not available; choose one of {', '.join(known)}.")
    out = Path(args.out) if args.out else Path(f"{PROG}-reproduce") / args.experiment
    result = reproduce.run(
        args.experiment, preset=preset, out_dir=out, key=args.seed, progress=not args.no_progress, **extra
    )
    from numpyro_ebm._json import jsonable

    print(reproduce_summary(jsonable(result), out))
    return 0


# ----------------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (what is wrong, where to look), not usage + error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`.\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where the help does not already say what the default is."""

    def _get_help_string(self, action):
        if "default" in (action.help or "") or action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``numpyro-ebm`` (one subparser per subcommand)."""
    from numpyro_ebm import __version__  # the package's __init__ imports nothing heavy

    parser = _Parser(
        prog=PROG,
        description="flowMC as a NumPyro kernel, and balanced EBM training with adaptive flow sampling "
        "(Grenioux, Moulines, Gabrié 2023). Without a subcommand, runs `demo`.",
        epilog="Set NUMPYRO_EBM_DEBUG=1 to see tracebacks instead of one-line errors.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")

    def add(name, help_text, description, func, *, run=False, seed=True):
        """A subcommand running ``func``, with the flags they share."""
        p = sub.add_parser(name, help=help_text, description=description, formatter_class=_HelpFormatter)
        p.set_defaults(func=func)
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")
        if run:
            p.add_argument("--run", required=True, help="run folder written by `train`")
        if seed:
            p.add_argument("--seed", type=int, default=0, help="random seed")
        return p

    p = add(
        "demo",
        "the paper's 2:1 example: flowMC-EBM beside ULA-EBM (the default job)",
        "`reproduce figure1` at the cpu preset: train flowMC-EBM (i-SIR, 32 particles, "
        "[1 i-SIR + 4 MALA] x 2, step 0.01) and ULA-EBM (10 ULA steps of 0.01) on the 2:1 two-mode "
        "mixture with the same data and "
        "steps (4000 steps, batch 64, bank 1024; both learning rates cosine-decayed from 1e-2 to 1e-5), "
        "record the weight of the (1.5, 1.5) mode during training, write figures and metrics.json.",
        _cmd_demo,
    )
    p.add_argument("--out", default=f"{PROG}-demo", help="output folder")
    p.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help="training steps per method (default: the preset's; 4000 for cpu, 40 for quick)",
    )
    p.add_argument("--quick", action="store_true", help="same as --preset quick: seconds, for tests")
    p.add_argument("--preset", choices=PRESETS, default=None, help="figure1's preset (default cpu)")

    p = add(
        "train",
        "train an EBM on a named data set or your own file",
        "Train a ToyNet EBM (Nijkamp et al. 2020) by contrastive maximum likelihood with the chosen negative "
        "sampler; checkpoints go to OUT/checkpoints and the final model to OUT (model.eqx + run.json).",
        _cmd_train,
        seed=False,  # a run's setting: in OPTIONS
    )
    add_train_arguments(p)

    p = add(
        "sample",
        "sample a trained EBM with FlowMCKernel",
        "Sample the trained EBM of --run with MCMC(FlowMCKernel(...), chain_method='vectorized'); "
        "its trained "
        "flow proposes the global moves (frozen, unless --train-flow). Chains start from the negative bank.",
        _cmd_sample,
        run=True,
    )
    p.add_argument("--num-samples", type=_positive_int, default=1000, help="draws per chain")
    p.add_argument("--chains", type=_positive_int, default=64, help="chains (>= 2)")
    p.add_argument(
        "--warmup", type=_nonnegative_int, default=200, help="warmup iterations (step-size adaptation)"
    )
    add_dataclass_flags(p.add_argument_group("the flowMC transition (FlowMCSettings)"), FlowMCSettings)
    p.add_argument("--train-flow", action="store_true", help="also fit the flow during warmup")
    p.add_argument("--out", help="output folder (default: the run folder)")

    p = add(
        "evaluate",
        "the paper's metrics on a trained run",
        "Zone weights vs truth (named targets), median squared log-density error (2-D named targets), "
        "log Z and "
        "test log-likelihood by importance sampling with the flow, R-hat/ESS of samples.npy if present.",
        _cmd_evaluate,
        run=True,
    )
    p.add_argument(
        "--data",
        help="test data (.npy/.csv, (n, dim)); default: fresh draws of a named set, else the training file",
    )
    p.add_argument("--num-test", type=_positive_int, default=5000, help="fresh test draws of a named set")
    p.add_argument("--num-importance", type=_positive_int, default=20000, help="importance samples for log Z")
    p.add_argument("--resolution", type=_positive_int, default=200, help="grid cells per axis (2-D)")
    p.add_argument("--out", help="JSON file (default: RUN/evaluation.json)")

    p = add(
        "reproduce",
        "reproduce a table or figure of the paper",
        "Run numpyro_ebm.reproduce.run(EXPERIMENT, preset=...): quick (seconds), cpu (minutes to hours on a "
        "laptop), paper (the paper's budgets).",
        _cmd_reproduce,
    )
    p.add_argument("experiment", choices=EXPERIMENTS, help="what to reproduce")
    p.add_argument("--quick", action="store_true", help="same as --preset quick")
    p.add_argument("--preset", choices=PRESETS, default=None, help="budget (default cpu)")
    p.add_argument("--out", help=f"output folder (default {PROG}-reproduce/EXPERIMENT)")
    p.add_argument(
        "--dims",
        type=_dims,
        help="table2 only: the mixture's dimensions, comma-separated, e.g. 16 or 16,32 (default: the "
        "preset's, 16,32,64; quick: 4)",
    )
    p.add_argument(
        "--data",
        help="cifar10 only (and required): the 'cifar-10-batches-bin' folder of the binary CIFAR-10 "
        "(never downloaded)",
    )
    return parser


def _exit_code(code) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else 2


def _enable_compilation_cache() -> None:
    """Point JAX's persistent compilation cache at ``~/.cache/numpyro-ebm/jax`` (or under
    ``$XDG_CACHE_HOME``), so a second command skips most compiling (docs/benchmarks.md).

    The command's own choice, never the library's: only ``main()`` without arguments (the
    console script, ``python -m numpyro_ebm.cli``) calls it, so ``main([...])`` from Python or a
    test leaves the process alone. Through JAX's environment variable, before JAX is imported;
    one the user set wins. ``NUMPYRO_EBM_COMPILATION_CACHE=0`` turns it off.
    """
    if os.environ.get("NUMPYRO_EBM_COMPILATION_CACHE", "1").strip().lower() in ("0", "false", "no", "off"):
        return
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(root / "numpyro-ebm" / "jax"))


def main(argv: list[str] | None = None) -> int:
    """Run ``numpyro-ebm`` with ``argv`` (``sys.argv[1:]`` by default); return the exit status.

    Example:
        >>> main(["--version"])  # doctest: +SKIP
        numpyro-ebm 0.1.0
        0
    """
    if argv is None:  # the console script (or python -m): this process is ours to configure
        _enable_compilation_cache()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["demo", *argv]  # demo is the default job
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return _exit_code(exit_.code)
    if args.command is None:
        parser.print_help()
        return 2
    debug = os.environ.get("NUMPYRO_EBM_DEBUG", "") not in ("", "0")
    where = f"{PROG} {args.command}"
    try:
        return int(args.func(args) or 0)
    except UsageError as err:
        if debug:
            raise
        print(f"{where}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return 130
    except FloatingPointError as err:  # TrainingDivergedError
        if debug:
            raise
        print(f"{where}: error: {err}", file=sys.stderr)
        return 1
    # The library's argument checks raise these with messages that name the value and the fix.
    except (ValueError, TypeError, OSError) as err:
        if debug:
            raise
        print(f"{where}: error: {err}", file=sys.stderr)
        return 2 if not isinstance(err, OSError) else 1


if __name__ == "__main__":
    sys.exit(main())
