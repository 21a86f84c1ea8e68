"""The ``numpyro-ebm`` command: the 2:1 demo, training, sampling, evaluation, paper reproduction.

Subcommands (``numpyro-ebm SUBCOMMAND --help`` for each; ``demo`` runs when none is given):

* ``demo``: the paper's motivating example (Grenioux et al. 2023, Sec. 4.1, Fig. 1):
  flowMC-EBM beside ULA-EBM on the 2:1 two-mode mixture; writes figures and ``metrics.json``.
* ``train``: train a ``ToyNet`` EBM on a named data set or your own ``.npy``/``.csv`` file with
  any negative sampler; checkpoints and the final model go to ``--out``.
* ``sample``: sample a trained EBM with ``FlowMCKernel`` (its trained flow as proposal);
  writes ``samples.npy`` and an ArviZ ``samples.nc``.
* ``evaluate``: the paper's metrics on a trained run; prints them and writes ``evaluation.json``.
* ``reproduce``: a table or figure of the paper, through ``numpyro_ebm.reproduce``.

A trained run directory holds ``model.eqx`` (every array, written by
``equinox.tree_serialise_leaves``; never pickle) and ``run.json`` (how to rebuild the models'
skeleton: dimension, network and flow configuration, tilt; plus settings and history), see
:func:`save_run` and :func:`load_run`.

User errors end with a one-line message and exit status 2 (a diverged training: 1). Set
``NUMPYRO_EBM_DEBUG=1`` to get the traceback instead.

Example:
    >>> main(["train", "--help"])  # doctest: +SKIP
    >>> main(["demo", "--quick", "--out", "/tmp/demo"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "main",
    "build_parser",
    "save_run",
    "load_run",
    "Run",
    "UsageError",
    "ZoneWeightMetric",
    "SAMPLERS",
]

PROG = "numpyro-ebm"
SAMPLERS = ("flowmc", "ula", "mala", "shortrun", "ntebm", "coopflow")
EXPERIMENTS = ("table1", "table2", "table3", "figure1")
PRESETS = ("quick", "cpu", "paper")
RUN_FORMAT = "numpyro-ebm-run/1"
MODEL_FILE, RUN_FILE, CONFIG_FILE = "model.eqx", "run.json", "config.json"

# The tilt of each sampler's EBM: the flow's base (flowMC-EBM, CoopFlow), none (the paper's
# ULA-EBM baseline trains exp(-E)), or the flow itself, trained with the energy (NT-EBM).
_TILT = {
    "flowmc": "base",
    "coopflow": "base",
    "ntebm": "flow",
    "ula": "none",
    "mala": "none",
    "shortrun": "none",
}
_HAS_FLOW = ("flowmc", "coopflow", "ntebm")
_NET = {"kind": "ToyNet", "widths": [32, 64, 64, 64], "negative_slope": 0.05}
_FLOW = {"flow_layers": 4, "nn_width": 32, "nn_depth": 1, "knots": 8, "interval": 4.0}


class UsageError(Exception):
    """A user error: printed as one line (what is wrong and how to fix it), exit status 2."""


# ----------------------------------------------------------------------------------- helpers


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}")
    return value


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0; got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0; got {text!r}")
    return value


def _widths(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"must be positive integers separated by commas, e.g. 32,64; got {text!r}"
        )
    return values


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number; got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number; got {text!r}")
    return value


def _write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temporary file, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, default=_json_default)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.ndarray) or hasattr(obj, "__array__"):
        return np.asarray(obj).tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _jsonable(x):
    """Floats for JSON (NaN and inf become ``None``, which JSON can hold)."""
    import numpy as np

    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if hasattr(x, "__array__") or isinstance(x, np.generic):
        x = np.asarray(x)
        return _jsonable(x.tolist()) if x.ndim else _jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _key(seed: int):
    import jax

    return jax.random.key(seed)


def _save_figure(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


# --------------------------------------------------------------------- mode weight, per chunk


class ZoneWeightMetric:
    """``metrics`` callable for ``train``: the EBM's mass in one zone of a 2-D target, by grid.

    The same integration as ``diagnostics.zone_weights`` (cell centres, each cell's mass shared
    among the zones of 4 points inside it), compiled once, so that evaluating it after every
    training chunk costs milliseconds instead of a retrace.

    Args:
        target: a ``datasets.Target`` with ``bounds`` (2-D).
        zone: index of the zone whose weight is returned.
        resolution: grid cells per axis.

    Example:
        >>> import jax
        >>> from numpyro_ebm import datasets
        >>> metric = ZoneWeightMetric(datasets.two_modes_target(), zone=1, resolution=100)
        >>> round(metric(datasets.two_modes_target(), None, None), 3)
        0.667
    """

    # In cell widths from the centre (as diagnostics._SUBCELL_OFFSETS).
    _OFFSETS = ((1 / 8, 3 / 8), (3 / 8, -1 / 8), (-1 / 8, -3 / 8), (-3 / 8, 1 / 8))

    def __init__(self, target, *, zone: int, resolution: int = 100):
        import jax.numpy as jnp
        import numpy as np

        if target.bounds is None:
            raise ValueError(f"target {target.name!r} has no 2-D bounds; a grid weight needs a 2-D target.")
        (x_lo, x_hi), (y_lo, y_hi) = target.bounds
        xs = x_lo + (x_hi - x_lo) / resolution * (np.arange(resolution) + 0.5)
        ys = y_lo + (y_hi - y_lo) / resolution * (np.arange(resolution) + 0.5)
        points = np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1).reshape(-1, 2)
        spacing = np.array([(x_hi - x_lo) / resolution, (y_hi - y_lo) / resolution])
        share = np.zeros(points.shape[0])
        for offset in self._OFFSETS:
            share += 0.25 * (
                np.asarray(target.zones(jnp.asarray(points + np.asarray(offset) * spacing))) == zone
            )
        dtype = jnp.result_type(float)
        self._points = jnp.asarray(points, dtype)
        self._share = jnp.asarray(share, dtype)

    def __call__(self, ebm, flow=None, bank=None) -> float:
        return float(_zone_share_fn()(ebm, self._points, self._share))


@functools.cache
def _zone_share_fn():
    import equinox as eqx
    import jax

    @eqx.filter_jit
    def zone_share(model, points, share):
        fn = model.log_density if hasattr(model, "log_density") else model.log_prob
        return (jax.nn.softmax(fn(points)) * share).sum()

    return zone_share


# ----------------------------------------------------------------------------------- demo

_DEMO = {"steps": 4000, "num_data": 16384, "batch_size": 64, "bank_size": 1024, "lr": 1e-2, "resolution": 100}
_DEMO_QUICK = {
    "steps": 40,
    "num_data": 1024,
    "batch_size": 64,
    "bank_size": 128,
    "lr": 1e-2,
    "resolution": 40,
}
_DEMO_METHODS = {"flowmc": "flowMC-EBM", "ula": "ULA-EBM"}


def _train_demo_method(method, data, target, cfg, keys, progress):
    import jax
    import optax

    from numpyro_ebm import checkpoints
    from numpyro_ebm.energy import EnergyModel
    from numpyro_ebm.flows import default_flow
    from numpyro_ebm.negatives import ULA, FlowMC
    from numpyro_ebm.nets import ToyNet
    from numpyro_ebm.training import TrainingDivergedError, train

    net = ToyNet(2, key=keys["net"])
    if method == "flowmc":
        flow = default_flow(keys["flow"], 2, identity_init=True)
        ebm = EnergyModel(net, flow.base_dist)
        negatives = FlowMC(
            flow, n_particles=32, global_move="isir", step_size=0.01, n_local_steps=4, n_cycles=2
        )
    else:
        ebm = EnergyModel(net, None)  # the paper's ULA-EBM: the untilted exp(-E)
        negatives = ULA(step_size=0.01, n_steps=10)
    metric = ZoneWeightMetric(target, zone=1, resolution=cfg["resolution"])
    settings = {
        "key": keys["train"],
        "negatives": negatives,
        "optimizer": optax.adam(cfg["lr"]),
        "flow_optimizer": optax.adam(cfg["lr"]),
        "batch_size": cfg["batch_size"],
        "bank_size": cfg["bank_size"],
        "chunk_size": cfg["chunk_size"],
        "metrics": {"weight": metric, "negatives_max_abs": _max_abs},
    }
    start = time.perf_counter()
    stopped = None
    # A checkpoint per chunk, so that a baseline whose loss turns NaN still shows how it got there.
    with tempfile.TemporaryDirectory(prefix="numpyro-ebm-demo-") as checkpoint_dir:
        try:
            result = train(
                ebm,
                data,
                num_steps=cfg["steps"],
                checkpoint_dir=checkpoint_dir,
                checkpoint_every=cfg["chunk_size"],
                progress=progress,
                **settings,
            )
        except TrainingDivergedError as err:
            if err.checkpoint is None:
                raise
            print(f"{PROG} demo: {err}", file=sys.stderr)
            stopped = {"step": err.step, "reason": str(err)}
            last = int(checkpoints.read_manifest(err.checkpoint)["step"])
            result = train(
                ebm,
                data,
                num_steps=last,
                checkpoint_dir=checkpoint_dir,
                resume=True,
                progress=False,
                **settings,
            )
    jax.block_until_ready(result.bank)
    seconds = time.perf_counter() - start
    history = {
        "step": [0, *result.history["step"].tolist()],
        "weight": [metric(ebm), *result.history["weight"].tolist()],
        "negatives_max_abs": [None, *result.history["negatives_max_abs"].tolist()],
        "stopped": stopped,
    }
    return result, history, seconds


def _max_abs(ebm, flow, bank) -> float:
    import jax.numpy as jnp

    return float(jnp.max(jnp.abs(bank)))


# The data lie within |x| < 3; negative chains beyond this have left for good (ULA-EBM's
# untilted exp(-E) can put its mass at infinity, and ULA then follows it).
_DIVERGED = 1e3


def _weight_summary(history, total_steps, bank_weight, seconds, truth):
    import numpy as np

    steps, weights = np.asarray(history["step"]), np.asarray(history["weight"])
    last = weights[steps >= 0.75 * total_steps]
    spread = np.asarray(history["negatives_max_abs"][1:], dtype=np.float64)
    escaped = np.flatnonzero(~(spread < _DIVERGED))  # NaN counts as escaped
    final = float(weights[-1])
    return {
        "final_weight": final,
        "abs_error": abs(final - truth),
        "bank_weight": bank_weight,
        "negatives_max_abs": float(spread[-1]),
        "negatives_diverged_at_step": int(steps[1:][escaped[0]]) if escaped.size else None,
        "training_stopped": history["stopped"],
        "last_quarter": {
            "mean": float(last.mean()),
            "min": float(last.min()),
            "max": float(last.max()),
            "range": float(last.max() - last.min()),
            "std": float(last.std()),
            "mean_abs_error": float(np.abs(last - truth).mean()),
        },
        "time_s": seconds,
        "history": {"step": steps.tolist(), "weight": weights.tolist()},
    }


def _cmd_demo(args) -> int:
    cfg = dict(_DEMO_QUICK if args.quick else _DEMO)
    if args.steps is not None:
        cfg["steps"] = args.steps
    cfg["chunk_size"] = max(1, min(50, cfg["steps"] // 10))  # 4000 steps: 80 points per curve
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress

    import jax
    import numpy as np

    from numpyro_ebm import datasets

    total_start = time.perf_counter()
    target = datasets.two_modes_target()
    key_data, key_net, key_flow, key_train = jax.random.split(_key(args.seed), 4)
    keys = {"net": key_net, "flow": key_flow, "train": key_train}
    data = target.sample(key_data, cfg["num_data"])
    truth = float(target.weights[1])
    results, histories, summaries = {}, {}, {}
    for i, (method, label) in enumerate(_DEMO_METHODS.items(), 1):
        print(
            f"[{i}/{len(_DEMO_METHODS)}] training {label} for {cfg['steps']} steps",
            file=sys.stderr,
            flush=True,
        )
        result, history, seconds = _train_demo_method(method, data, target, cfg, keys, progress)
        bank_weight = float(np.mean(np.asarray(target.zones(result.bank)) == 1))
        results[method], histories[label] = result, history
        summaries[method] = {
            "label": label,
            **_weight_summary(history, cfg["steps"], bank_weight, seconds, truth),
        }

    figures = _demo_figures(out, target, results, histories, summaries, 60 if args.quick else 200)
    total = time.perf_counter() - total_start
    metrics = {
        "experiment": "two_modes 2:1 (Grenioux et al. 2023, Sec. 4.1, Fig. 1)",
        "mode": np.asarray(target.distribution.means)[1].tolist(),
        "true_weight": truth,
        "methods": summaries,
        "time_s": total,
        "figures": figures,
        "settings": {
            **{
                k: cfg[k]
                for k in ("steps", "chunk_size", "num_data", "batch_size", "bank_size", "resolution")
            },
            "lr_ebm": cfg["lr"],
            "lr_flow": cfg["lr"],
            "seed": args.seed,
            "quick": bool(args.quick),
            "flowmc": {
                "global_move": "isir",
                "n_particles": 32,
                "step_size": 0.01,
                "n_local_steps": 4,
                "n_cycles": 2,
            },
            "ula": {"step_size": 0.01, "n_steps": 10, "tilt": "none", "start": "uniform [-1, 1]^2"},
            "weight": f"grid integration of the EBM over the half-plane x1 + x2 > 0 of {target.bounds}, "
            f"{cfg['resolution']} x {cfg['resolution']} cells",
            "jax_backend": jax.default_backend(),
        },
    }
    _write_json(out / "metrics.json", _jsonable(metrics))

    print(f"\nweight of the (1.5, 1.5) mode, truth {truth:.3f}; {cfg['steps']} training steps each")
    print(f"{'method':<12} {'final':>6} {'last quarter: mean [min, max]':>30} {'negatives':>9} {'time':>7}")
    for s in summaries.values():
        q = s["last_quarter"]
        span = f"{q['mean']:.3f} [{q['min']:.3f}, {q['max']:.3f}]"
        print(
            f"{s['label']:<12} {s['final_weight']:>6.3f} {span:>30} "
            f"{s['bank_weight']:>9.3f} {s['time_s']:>6.0f}s"
        )
        if s["negatives_diverged_at_step"] is not None:
            print(
                f"  {s['label']}: the negative chains diverged (max |x| {s['negatives_max_abs']:.2g}) "
                f"by step {s['negatives_diverged_at_step']}; its later weights describe a broken model"
            )
        if s["training_stopped"] is not None:
            print(
                f"  {s['label']}: training stopped at step {s['training_stopped']['step']} (non-finite loss)"
            )
    print(f"wrote {', '.join(figures)} and metrics.json to {out} ({total:.0f} s in total)")
    return 0


def _demo_figures(out: Path, target, results, histories, summaries, res: int) -> list[str]:
    """densities.png, slice.png, chains.png and weights.png (the panels of the paper's Fig. 1)."""
    import matplotlib.pyplot as plt
    import numpy as np

    from numpyro_ebm import plotting

    bounds = target.bounds
    centres = np.asarray(target.distribution.means)
    # A diverged model may be NaN on the box: leave its panels empty rather than fail.
    drawable = {m: _finite_on(results[m].ebm, bounds) for m in results}
    flowmc = results["flowmc"]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8), layout="constrained")
    plotting.plot_density(target, bounds, resolution=res, ax=axes[0], title="target (weights 1:2)")
    for ax, method in zip(axes[1:3], ("ula", "flowmc"), strict=True):
        label = summaries[method]["label"]
        if drawable[method]:
            plotting.plot_density(results[method].ebm, bounds, resolution=res, ax=ax, title=label)
        else:
            ax.set_title(f"{label}: NaN or inf on the box")
    plotting.plot_flow_density(
        flowmc.flow, bounds, resolution=res, ax=axes[3], title="flowMC-EBM's companion flow"
    )
    figures = [_save_figure(fig, out / "densities.png")]
    fig = plotting.plot_slice(
        {summaries[m]["label"]: results[m].ebm for m in ("ula", "flowmc") if drawable[m]},
        centres[0],
        centres[1],
        bounds=bounds,
        truth=target,
        resolution=res,
        title="slice through the two centres",
    )
    figures.append(_save_figure(fig, out / "slice.png"))
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), layout="constrained")
    (x_lo, x_hi), (y_lo, y_hi) = bounds
    for ax, method in zip(axes, ("ula", "flowmc"), strict=True):
        bank = np.asarray(results[method].bank)
        inside = np.mean(
            (bank[:, 0] > x_lo) & (bank[:, 0] < x_hi) & (bank[:, 1] > y_lo) & (bank[:, 1] < y_hi)
        )
        title = f"{summaries[method]['label']}: negative chains ({inside:.0%} in view)"
        background = results[method].ebm if drawable[method] else None
        plotting.plot_samples(bank, ax=ax, bounds=bounds, background=background, resolution=res, title=title)
    figures.append(_save_figure(fig, out / "chains.png"))
    fig = plotting.plot_weight_history(
        {label: {"step": h["step"], "weight": h["weight"]} for label, h in histories.items()},
        true_weight=float(target.weights[1]),
        ylabel="weight of the (1.5, 1.5) mode",
        title="mode weight during training (Fig. 1, right)",
    )
    for line, summary in zip(fig.axes[0].lines, summaries.values(), strict=False):
        step = summary["negatives_diverged_at_step"]
        if step is not None:
            fig.axes[0].axvline(step, color=line.get_color(), linestyle=":", linewidth=1.0)
            fig.axes[0].annotate(
                f"{summary['label']} chains diverge",
                (step, 0.5),
                xytext=(-2, 0),
                textcoords="offset points",
                rotation=90,
                fontsize=7,
                color=line.get_color(),
                ha="right",
                va="center",
            )
    figures.append(_save_figure(fig, out / "weights.png"))
    return figures


def _finite_on(model, bounds, resolution: int = 50) -> bool:
    """Whether ``model``'s log-density is finite (or -inf) on a grid over ``bounds``."""
    import jax.numpy as jnp
    import numpy as np

    (x_lo, x_hi), (y_lo, y_hi) = bounds
    grid = np.stack(
        np.meshgrid(np.linspace(x_lo, x_hi, resolution), np.linspace(y_lo, y_hi, resolution)), -1
    ).reshape(-1, 2)
    logp = np.asarray(model.log_density(jnp.asarray(grid, jnp.result_type(float))))
    return bool(np.all(~np.isnan(logp) & (logp < np.inf)) and np.any(np.isfinite(logp)))


# ----------------------------------------------------------------------------------- runs


class Run(NamedTuple):
    """A trained run loaded by :func:`load_run`.

    Attributes:
        ebm: the trained ``EnergyModel``.
        flow: the trained flow (the sampler's, or the EBM's tilt for NT-EBM), else ``None``.
        bank: the persistent negative chains at the end of training, ``(bank_size, dim)``.
        manifest: the contents of ``run.json``.
    """

    ebm: Any
    flow: Any
    bank: Any
    manifest: dict


def _build_models(key, dim: int, sampler: str, net_cfg: dict, flow_cfg: dict | None):
    """The EBM and flow of a run, freshly initialised: the skeleton ``load_run`` fills in."""
    import jax

    from numpyro_ebm.energy import EnergyModel
    from numpyro_ebm.flows import default_flow
    from numpyro_ebm.nets import ToyNet

    key_net, key_flow = jax.random.split(key)
    net = ToyNet(dim, key=key_net, widths=tuple(net_cfg["widths"]), negative_slope=net_cfg["negative_slope"])
    flow = None if flow_cfg is None else default_flow(key_flow, dim, identity_init=True, **flow_cfg)
    tilt = _TILT[sampler]
    if tilt == "base":
        ebm = EnergyModel(net, flow.base_dist)
    elif tilt == "flow":
        ebm = EnergyModel(net, flow, trainable_base=True)
    else:
        ebm = EnergyModel(net, None)
    return ebm, flow


def _state_to_save(ebm, flow, bank, sampler: str) -> dict:
    # NT-EBM's flow is the EBM's tilt: saved once, inside the EBM.
    return {"ebm": ebm, "flow": None if _TILT[sampler] == "flow" else flow, "bank": bank}


def save_run(directory, *, ebm, flow, bank, manifest: dict) -> Path:
    """Write a trained run: ``model.eqx`` (equinox-serialised arrays) and ``run.json``.

    ``manifest`` must hold ``dim``, ``sampler``, ``net`` and ``flow`` (the configurations
    :func:`load_run` rebuilds the skeleton from) and ``bank_size``; anything else JSON-able is
    kept. Both files are written under temporary names and renamed into place.

    Returns:
        The run directory.
    """
    import equinox as eqx

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = _state_to_save(ebm, flow, bank, manifest["sampler"])
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            eqx.tree_serialise_leaves(f, state)
        os.replace(tmp, directory / MODEL_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _write_json(directory / RUN_FILE, _jsonable({"format": RUN_FORMAT, **manifest}))
    return directory


def load_run(directory) -> Run:
    """Load a run written by ``numpyro-ebm train`` (or :func:`save_run`).

    Raises:
        UsageError: the directory holds no complete run, or one of another format.

    Example:
        >>> run = load_run("runs/two_modes")  # doctest: +SKIP
        >>> run.ebm.log_density(run.bank[:3])  # doctest: +SKIP
    """
    import equinox as eqx
    import jax.numpy as jnp

    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"--run {directory}: no such directory; pass the --out folder of `{PROG} train`.")
    manifest_path, model_path = directory / RUN_FILE, directory / MODEL_FILE
    if not manifest_path.is_file() or not model_path.is_file():
        hint = (
            " (training did not finish: resume it with `train --resume`)"
            if (directory / CONFIG_FILE).is_file()
            else ""
        )
        raise UsageError(
            f"--run {directory} holds no trained model ({RUN_FILE} and {MODEL_FILE}){hint}; pass the --out "
            f"folder of a finished `{PROG} train`."
        )
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != RUN_FORMAT:
        raise UsageError(
            f"--run {directory}: {RUN_FILE} has format {manifest.get('format')!r}, expected {RUN_FORMAT!r}."
        )
    import jax

    ebm, flow = _build_models(
        jax.random.key(0), manifest["dim"], manifest["sampler"], manifest["net"], manifest["flow"]
    )
    like = _state_to_save(
        ebm,
        flow,
        jnp.zeros((manifest["bank_size"], manifest["dim"]), jnp.result_type(float)),
        manifest["sampler"],
    )
    state = eqx.tree_deserialise_leaves(model_path, like)
    flow = state["ebm"].base if _TILT[manifest["sampler"]] == "flow" else state["flow"]
    return Run(state["ebm"], flow, state["bank"], manifest)


# ----------------------------------------------------------------------------------- data


def _load_data(spec: str, *, num_data: int, dim: int | None, key, batch_size: int):
    """``(data (n, dim) float array, target or None, description)`` for ``--data``."""
    import numpy as np

    from numpyro_ebm import datasets

    if spec in datasets.TARGETS:
        if spec == "gaussian_mixture":
            if dim is None:
                raise UsageError("--data gaussian_mixture needs --dim (an even integer >= 2, e.g. --dim 16).")
            kwargs = {"dim": dim}
        elif dim is not None:
            raise UsageError(f"--dim applies to --data gaussian_mixture only; {spec!r} is 2-D. Drop --dim.")
        else:
            kwargs = {}
        data, target = datasets.load(spec, key, num_data, **kwargs)
        return np.asarray(data), target, {"source": spec, "named": True, "dim_arg": dim}
    path = Path(spec)
    if path.suffix.lower() not in (".npy", ".csv"):
        raise UsageError(
            f"--data {spec!r} is neither a named data set ({', '.join(datasets.TARGETS)}) "
            "nor a .npy/.csv file."
        )
    if dim is not None:
        raise UsageError(
            "--dim applies to --data gaussian_mixture only; a file's dimension is its column count."
        )
    if not path.is_file():
        raise UsageError(f"--data {spec}: no such file; check the path.")
    data = _read_array(path)
    if data.ndim != 2:
        raise UsageError(
            f"--data {spec} holds an array of shape {data.shape}; it must be 2-D, (n, dim) "
            "with one point per row."
        )
    if data.shape[1] < 2:
        raise UsageError(
            f"--data {spec} has dim={data.shape[1]}; the default flow needs dim >= 2 (coupling "
            "layers split the coordinates)."
        )
    bad = ~np.all(np.isfinite(data), axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise UsageError(
            f"--data {spec} holds {rows.size} row(s) with NaN or inf, the first at row {rows[0]}; "
            "drop or impute them."
        )
    if data.shape[0] < batch_size:
        raise UsageError(
            f"--data {spec} has {data.shape[0]} points, fewer than --batch-size {batch_size}; lower it."
        )
    scale = float(np.max(np.abs(data)))
    if scale > 50:
        print(
            f"{PROG}: warning: --data {spec} reaches |x| = {scale:.3g}; the EBM's tilt and flow "
            "start at N(0, I), so standardise the data first for faster, stabler training.",
            file=sys.stderr,
        )
    return data.astype(np.float32), None, {"source": str(path.resolve()), "named": False, "dim_arg": None}


def _read_array(path: Path):
    import numpy as np

    if path.suffix.lower() == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise UsageError(f"--data {path}: cannot read it as a numeric .npy array ({err}).") from None
    else:
        data = None
        for skip in (0, 1):  # a header line is allowed
            try:
                data = np.loadtxt(path, delimiter=",", ndmin=2, skiprows=skip, dtype=np.float64)
                break
            except ValueError:
                continue
        if data is None:
            raise UsageError(
                f"--data {path}: cannot parse it as comma-separated numbers (one point per row)."
            )
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise UsageError(f"--data {path} holds dtype {data.dtype}; it must hold real numbers.")
    return np.asarray(data, np.float64)


# ----------------------------------------------------------------------------------- train

# Options that shape a run: on --resume they default to the saved values, and may not change.
_TRAIN_OPTIONS = {
    "data": None,
    "dim": None,
    "num_data": 16384,
    "sampler": None,
    "batch_size": 64,
    "bank_size": 1024,
    "lr": 1e-3,
    "flow_lr": 1e-3,
    "seed": 0,
    "chunk_size": 100,
    "checkpoint_every": 1000,
    "step_size": None,
    "n_steps": None,
    "n_local_steps": None,
    "n_cycles": None,
    "n_particles": None,
    "pretrain_flow": None,
    "net_widths": [32, 64, 64, 64],
    "flow_layers": 4,
    "flow_width": 32,
}
_FLOWMC_ONLY = ("n_local_steps", "n_cycles", "n_particles")


def _resolve_train_config(args, out: Path) -> dict:
    given = {k: getattr(args, k) for k in _TRAIN_OPTIONS if getattr(args, k) is not None}
    config_path = out / CONFIG_FILE
    has_run = config_path.is_file() or (out / "checkpoints").is_dir() or (out / RUN_FILE).is_file()
    if args.resume and config_path.is_file():
        saved = json.loads(config_path.read_text())
        for name, value in given.items():
            if saved.get(name) != value:
                flag = "--" + name.replace("_", "-")
                raise UsageError(
                    f"{flag} {value} differs from the run being resumed in {out} ({saved.get(name)}); "
                    f"drop {flag} or train into a new --out."
                )
        return {**saved, "steps": args.steps}
    if has_run and not args.resume:
        raise UsageError(
            f"--out {out} already holds a run; pass --resume to continue it, or choose an empty --out."
        )
    config = {**_TRAIN_OPTIONS, **given, "steps": args.steps}
    for name in ("data", "sampler"):
        if config[name] is None:
            raise UsageError(f"train needs --{name}; see `{PROG} train --help`.")
    sampler = config["sampler"]
    if sampler != "flowmc":
        wrong = [k for k in _FLOWMC_ONLY if k in given]
        if wrong:
            raise UsageError(f"--{wrong[0].replace('_', '-')} applies to --sampler flowmc only; drop it.")
    elif "n_steps" in given:
        raise UsageError("--n-steps does not apply to --sampler flowmc; use --n-local-steps and --n-cycles.")
    if sampler not in _HAS_FLOW:
        wrong = [k for k in ("flow_layers", "flow_width") if k in given]
        if wrong:
            raise UsageError(
                f"--{wrong[0].replace('_', '-')} applies to samplers with a flow ({', '.join(_HAS_FLOW)}); "
                f"--sampler {sampler} has none. Drop it."
            )
    if config["pretrain_flow"] is None:
        config["pretrain_flow"] = 1000 if sampler == "coopflow" else 0
    elif config["pretrain_flow"] and sampler not in ("coopflow", "ntebm"):
        raise UsageError(
            "--pretrain-flow applies to --sampler coopflow or ntebm; flowMC-EBM's flow starts at "
            "the identity, like its EBM."
        )
    if config["bank_size"] < config["batch_size"]:
        raise UsageError(f"--bank-size {config['bank_size']} must be >= --batch-size {config['batch_size']}.")
    return config


def _build_negatives(config: dict, flow):
    from numpyro_ebm import negatives as ng

    sampler = config["sampler"]
    kwargs = {k: config[k] for k in ("step_size", "n_steps") if config[k] is not None}
    if sampler == "flowmc":
        kwargs.update({k: config[k] for k in _FLOWMC_ONLY if config[k] is not None})
        return ng.FlowMC(flow, global_move="isir", **kwargs)
    if sampler == "coopflow":
        return ng.CoopFlow(flow, **kwargs)
    cls = {"ula": ng.ULA, "mala": ng.MALA, "shortrun": ng.ShortRun, "ntebm": ng.NTEBM}[sampler]
    return cls(**kwargs)


def _sampler_settings(negatives) -> dict:
    names = (
        "step_size",
        "n_steps",
        "n_local_steps",
        "n_cycles",
        "n_particles",
        "global_move",
        "target_accept",
        "start",
        "keep",
    )
    return {n: getattr(negatives, n) for n in names if hasattr(negatives, n)}


def _pretrain_flow(flow, data, key, num_steps: int, lr: float):
    import optax

    from numpyro_ebm import flows

    params, static = flows.partition(flow)
    optimizer = optax.adam(lr)
    params, _, losses = flows.fit_flow(
        key, params, static, optimizer.init(params), data, optimizer, num_steps=num_steps, batch_size=256
    )
    import equinox as eqx

    return eqx.combine(params, static), float(losses[-1])


def _cmd_train(args) -> int:
    out = Path(args.out)
    config = _resolve_train_config(args, out)
    import jax
    import jax.numpy as jnp
    import optax

    from numpyro_ebm import checkpoints
    from numpyro_ebm.training import train

    key_data, key_models, key_pretrain, key_train = jax.random.split(_key(config["seed"]), 4)
    data, target, data_info = _load_data(
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
    _write_json(out / CONFIG_FILE, config)
    dim, sampler = int(data.shape[1]), config["sampler"]
    net_cfg = {**_NET, "widths": list(config["net_widths"])}
    flow_cfg = None
    if sampler in _HAS_FLOW:
        flow_cfg = {**_FLOW, "flow_layers": config["flow_layers"], "nn_width": config["flow_width"]}
    ebm, flow = _build_models(key_models, dim, sampler, net_cfg, flow_cfg)
    checkpoint_dir = out / "checkpoints"
    resuming = checkpoints.latest_checkpoint(checkpoint_dir) is not None
    pretrain_loss = None
    if config["pretrain_flow"] and not resuming:
        print(f"pre-training the flow on the data for {config['pretrain_flow']} steps", file=sys.stderr)
        flow, pretrain_loss = _pretrain_flow(
            flow, jnp.asarray(data), key_pretrain, config["pretrain_flow"], config["flow_lr"]
        )
        if _TILT[sampler] == "flow":  # NT-EBM: the pre-trained flow is the tilt
            from numpyro_ebm.energy import EnergyModel

            ebm = EnergyModel(ebm.net, flow, trainable_base=True)
    negatives = _build_negatives(config, flow)
    print(
        f"training a {_NET['kind']} EBM with {type(negatives).__name__} negatives on {config['data']} "
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
        resume=args.resume,
        progress=not args.no_progress,
    )
    seconds = time.perf_counter() - start
    manifest = {
        "dim": dim,
        "sampler": sampler,
        "tilt": _TILT[sampler],
        "net": net_cfg,
        "flow": flow_cfg,
        "bank_size": config["bank_size"],
        "data": {**data_info, "num_data": int(data.shape[0])},
        "config": config,
        "sampler_settings": _sampler_settings(negatives),
        "steps": result.step,
        "time_s": seconds,
        "pretrain_flow_loss": pretrain_loss,
        "history": {k: v.tolist() for k, v in result.history.items()},
    }
    save_run(out, ebm=result.ebm, flow=result.flow, bank=result.bank, manifest=manifest)
    h = result.history
    if len(h["step"]):
        line = f"loss {h['loss'][-1]:.3g}, local acceptance {h['local_accept'][-1]:.2f}"
        if math.isfinite(h["global_accept"][-1]):
            line += f", global acceptance {h['global_accept'][-1]:.2f}"
        print(f"step {result.step}: {line}")
    print(
        f"saved the model to {out} ({seconds:.0f} s); next: `{PROG} sample --run {out}` "
        f"or `{PROG} evaluate --run {out}`"
    )
    return 0


# ----------------------------------------------------------------------------------- sample


def _zone_report(samples_2d, target) -> dict | None:
    from numpyro_ebm import diagnostics

    if target is None:
        return None
    weights = diagnostics.zone_weights(samples_2d, target)
    return {"samples": weights.tolist(), "truth": target.weights.tolist()}


def _target_of(run: Run):
    from numpyro_ebm import datasets

    data = run.manifest["data"]
    if not data.get("named"):
        return None
    kwargs = {"dim": data["dim_arg"]} if data.get("dim_arg") is not None else {}
    return datasets.TARGETS[data["source"]](**kwargs)


def _cmd_sample(args) -> int:
    if args.chains < 2:
        raise UsageError(
            f"--chains {args.chains}: FlowMCKernel is an ensemble kernel; use --chains 2 or more."
        )
    run = load_run(args.run)
    out = Path(args.out) if args.out else Path(args.run)
    if run.flow is None and args.warmup == 0:
        raise UsageError(
            f"--run {args.run} has no trained flow (sampler {run.manifest['sampler']}); "
            "give --warmup > 0 so that FlowMCKernel fits one."
        )
    import arviz as az
    import jax
    import numpy as np
    from numpyro.infer import MCMC

    from numpyro_ebm import diagnostics
    from numpyro_ebm.kernel import FlowMCKernel

    key_init, key_run = jax.random.split(_key(args.seed))
    bank = run.bank
    index = jax.random.choice(key_init, bank.shape[0], (args.chains,), replace=args.chains > bank.shape[0])
    ebm = run.ebm

    # A potential of the site "x" rather than ebm.model: the same density, it also serves untilted
    # EBMs (whose model has an improper site), and az.from_numpyro does not re-run the model (with
    # ebm.model it does, seeding it with a legacy uint32 key that flowjax's sample rejects).
    def potential_fn(params):
        return ebm.potential_fn(params["x"])

    kernel = FlowMCKernel(
        potential_fn=potential_fn,
        flow=run.flow,
        train_flow=run.flow is None or args.train_flow,
        global_move=args.global_move,
        n_particles=args.n_particles,
        n_local_steps=args.n_local_steps,
        step_size=args.step_size,
    )
    mcmc = MCMC(
        kernel,
        num_warmup=args.warmup,
        num_samples=args.num_samples,
        num_chains=args.chains,
        chain_method="vectorized",
        progress_bar=not args.no_progress,
    )
    start = time.perf_counter()
    mcmc.run(
        key_run, init_params={"x": bank[index]}, extra_fields=("local_accept_prob", "global_accept_prob")
    )
    samples = np.asarray(mcmc.get_samples(group_by_chain=True)["x"])
    seconds = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "samples.npy", samples)
    az.from_numpyro(mcmc).to_netcdf(str(out / "samples.nc"))
    extra = mcmc.get_extra_fields()
    summary = {
        "shape": list(samples.shape),
        "num_warmup": args.warmup,
        "local_accept": float(np.mean(extra["local_accept_prob"])),
        "global_accept": float(np.mean(extra["global_accept_prob"])),
        "max_rhat": diagnostics.max_rhat(samples) if samples.shape[1] >= 4 else None,
        "min_ess": diagnostics.min_ess(samples) if samples.shape[1] >= 4 else None,
        "zone_weights": _zone_report(samples.reshape(-1, samples.shape[-1]), _target_of(run)),
        "time_s": seconds,
    }
    _write_json(out / "sample_summary.json", _jsonable(summary))
    print(f"{args.chains} chains x {args.num_samples} draws (dim {samples.shape[-1]}) in {seconds:.0f} s")
    print(f"acceptance: local {summary['local_accept']:.2f}, global {summary['global_accept']:.2f}")
    if summary["max_rhat"] is not None:
        print(f"max R-hat {summary['max_rhat']:.3f}, min bulk ESS {summary['min_ess']:.0f}")
    if summary["zone_weights"]:
        z = summary["zone_weights"]
        print(
            "zone weights (samples / truth): "
            + ", ".join(f"{a:.3f}/{b:.3f}" for a, b in zip(z["samples"], z["truth"], strict=True))
        )
    print(f"wrote samples.npy (chains, draws, dim), samples.nc (ArviZ) and sample_summary.json to {out}")
    return 0


# ----------------------------------------------------------------------------------- evaluate


def _gaussian_proposal(bank):
    import jax.numpy as jnp
    from flowjax.distributions import Normal

    return Normal(jnp.mean(bank, 0), 1.5 * jnp.std(bank, 0) + 1e-3)


def _cmd_evaluate(args) -> int:
    run = load_run(args.run)
    import jax
    import numpy as np

    from numpyro_ebm import diagnostics

    target = _target_of(run)
    key_test, key_is = jax.random.split(_key(args.seed))
    result: dict[str, Any] = {
        "run": str(Path(args.run).resolve()),
        "sampler": run.manifest["sampler"],
        "steps": run.manifest["steps"],
    }
    if args.data is not None:
        if not Path(args.data).is_file():
            raise UsageError(f"--data {args.data}: no such file; check the path.")
        test, test_desc = _read_array(Path(args.data)), args.data
        if test.ndim != 2 or test.shape[1] != run.ebm.dim or not np.all(np.isfinite(test)):
            raise UsageError(
                f"--data {args.data} must be a finite array of shape (n, {run.ebm.dim}); got {test.shape}."
            )
    elif target is not None:
        test, test_desc = (
            np.asarray(target.sample(key_test, args.num_test)),
            f"{args.num_test} fresh draws of {target.name}",
        )
    else:
        test = _read_array(Path(run.manifest["data"]["source"]))
        test_desc = "the training file (no held-out set; pass --data TEST_FILE)"
    samples_path = Path(args.run) / "samples.npy"
    samples = np.load(samples_path) if samples_path.is_file() else None

    if target is not None:
        zones = {
            "truth": target.weights.tolist(),
            "negatives": diagnostics.zone_weights(run.bank, target).tolist(),
        }
        if target.bounds is not None:
            zones["ebm"] = diagnostics.zone_weights(run.ebm, target, resolution=args.resolution).tolist()
            result["median_squared_log_density_error"] = diagnostics.median_squared_log_density_error(
                run.ebm, target, resolution=args.resolution
            )
        if samples is not None:
            zones["samples"] = diagnostics.zone_weights(
                samples.reshape(-1, samples.shape[-1]), target
            ).tolist()
        truth = np.asarray(zones["truth"])
        zones["mse_vs_truth"] = {
            k: float(np.mean((np.asarray(v) - truth) ** 2)) for k, v in zones.items() if k != "truth"
        }
        result["zone_weights"] = zones

    proposal, proposal_desc = (
        (run.flow, "the trained flow")
        if run.flow is not None
        else (_gaussian_proposal(run.bank), "a Gaussian fitted to the negative bank (the run has no flow)")
    )
    log_z, ess = diagnostics.log_normalizer(run.ebm, proposal, key_is, args.num_importance, batch_size=4096)
    result["log_normalizer"] = {
        "value": float(log_z),
        "ess": float(ess),
        "n": args.num_importance,
        "proposal": proposal_desc,
    }
    test_ll = float(np.mean(np.asarray(run.ebm.log_density(test)))) - float(log_z)
    result["test_log_likelihood"] = {"value": test_ll, "data": test_desc, "num_points": int(test.shape[0])}
    if target is not None and args.data is None:
        result["test_log_likelihood"]["truth"] = float(np.mean(np.asarray(target.log_prob(test))))
    if samples is not None and samples.shape[1] >= 4:
        result["mixing"] = {
            "max_rhat": diagnostics.max_rhat(samples),
            "min_ess": diagnostics.min_ess(samples),
            "samples": str(samples_path),
        }
    out = Path(args.out) if args.out else Path(args.run) / "evaluation.json"
    _write_json(out, _jsonable(result))

    print(f"run {args.run} ({result['sampler']}, {result['steps']} steps)")
    if "zone_weights" in result:
        for name, weights in result["zone_weights"].items():
            if name != "mse_vs_truth":
                print(f"  zone weights, {name:<9}: " + " ".join(f"{w:.3f}" for w in weights))
        print(
            "  zone-weight MSE vs truth: "
            + ", ".join(f"{k} {v:.2e}" for k, v in zones["mse_vs_truth"].items())
        )
    if "median_squared_log_density_error" in result:
        print(f"  median squared log-density error: {result['median_squared_log_density_error']:.4f}")
    ll = result["test_log_likelihood"]
    print(
        f"  log Z = {float(log_z):.4f} (importance sampling, ESS {float(ess):.0f} of {args.num_importance}, "
        f"proposal: {proposal_desc})"
    )
    truth_ll = f" (truth {ll['truth']:.4f})" if "truth" in ll else ""
    print(f"  test log-likelihood {test_ll:.4f}{truth_ll} on {test_desc}")
    if "mixing" in result:
        print(
            f"  samples.npy: max R-hat {result['mixing']['max_rhat']:.3f}, "
            f"min bulk ESS {result['mixing']['min_ess']:.0f}"
        )
    print(f"wrote {out}")
    return 0


# ----------------------------------------------------------------------------------- reproduce


def _cmd_reproduce(args) -> int:
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
        args.experiment, preset=preset, out_dir=out, key=args.seed, progress=not args.no_progress
    )
    _print_reproduce_summary(_jsonable(result), out)
    return 0


def _print_reproduce_summary(result: dict, out: Path) -> None:
    """The scalar numbers of each method, one line each (everything else is in metrics.json)."""

    def scalars(d):
        return ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in d.items()
            if isinstance(v, int | float | str) and not isinstance(v, bool)
        )

    head = {k: v for k, v in result.items() if k != "methods"}
    print(scalars(head))
    methods = result.get("methods")
    if isinstance(methods, dict):
        for name, values in methods.items():
            print(f"  {name}: {scalars(values) if isinstance(values, dict) else values}")
    print(f"wrote the results to {out}")


# ----------------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (what is wrong, where to look), not usage + error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`.\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``numpyro-ebm`` (one subparser per subcommand)."""
    from numpyro_ebm import __version__

    parser = _Parser(
        prog=PROG,
        description="flowMC as a NumPyro kernel, and balanced EBM training with adaptive flow sampling "
        "(Grenioux, Moulines, Gabrié 2023). Without a subcommand, runs `demo`.",
        epilog="Set NUMPYRO_EBM_DEBUG=1 to see tracebacks instead of one-line errors.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")

    def add(name, help_text, description):
        p = sub.add_parser(
            name,
            help=help_text,
            description=description,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")
        return p

    p = add(
        "demo",
        "the paper's 2:1 example: flowMC-EBM beside ULA-EBM (the default job)",
        "Train flowMC-EBM (i-SIR, 32 particles, [1 i-SIR + 4 MALA] x 2, step 0.01) and ULA-EBM (10 ULA steps "
        "of 0.01) on the 2:1 two-mode mixture with the same data and steps (lr 1e-2, batch 64, bank 1024), "
        "record the weight of the (1.5, 1.5) mode during training, write figures and metrics.json.",
    )
    p.add_argument("--out", default=f"{PROG}-demo", help="output folder")
    p.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help=f"training steps per method (default {_DEMO['steps']}; {_DEMO_QUICK['steps']} with --quick)",
    )
    p.add_argument("--quick", action="store_true", help="a few seconds' version, for tests")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.set_defaults(func=_cmd_demo)

    p = add(
        "train",
        "train an EBM on a named data set or your own file",
        "Train a ToyNet EBM (Nijkamp et al. 2020) by contrastive maximum likelihood with the chosen negative "
        "sampler; checkpoints go to OUT/checkpoints and the final model to OUT (model.eqx + run.json).",
    )
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
        "--steps", type=_positive_int, required=True, help="training steps (in total, when resuming)"
    )
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its latest checkpoint"
    )
    p.add_argument("--dim", type=_positive_int, help="dimension of --data gaussian_mixture (default: none)")
    p.add_argument(
        "--num-data",
        type=_positive_int,
        help=f"points drawn from a named set (default {_TRAIN_OPTIONS['num_data']})",
    )
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        help=f"data points and negatives per step (default {_TRAIN_OPTIONS['batch_size']})",
    )
    p.add_argument(
        "--bank-size",
        type=_positive_int,
        help=f"persistent negative chains (default {_TRAIN_OPTIONS['bank_size']})",
    )
    p.add_argument(
        "--lr", type=_positive_float, help=f"Adam learning rate of the EBM (default {_TRAIN_OPTIONS['lr']})"
    )
    p.add_argument(
        "--flow-lr",
        type=_positive_float,
        help=f"Adam learning rate of the flow (default {_TRAIN_OPTIONS['flow_lr']})",
    )
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument(
        "--chunk-size",
        type=_positive_int,
        help=f"steps per compiled chunk (default {_TRAIN_OPTIONS['chunk_size']})",
    )
    p.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        help=f"steps between checkpoints (default {_TRAIN_OPTIONS['checkpoint_every']})",
    )
    p.add_argument(
        "--step-size",
        type=_positive_float,
        help="step size of the sampler's Langevin/MALA moves (default: "
        "the sampler's, 0.01 except coopflow 5e-4)",
    )
    p.add_argument(
        "--n-steps",
        type=_positive_int,
        help="Langevin/MALA steps per training step, for all samplers "
        "but flowmc (default: ula, mala 10; shortrun 50; ntebm 128; coopflow 256)",
    )
    p.add_argument("--n-local-steps", type=_nonnegative_int, help="flowmc: MALA steps per cycle (default 4)")
    p.add_argument(
        "--n-cycles", type=_positive_int, help="flowmc: [i-SIR + MALA] cycles per training step (default 2)"
    )
    p.add_argument("--n-particles", type=_positive_int, help="flowmc: i-SIR particles (default 32)")
    p.add_argument(
        "--pretrain-flow",
        type=_nonnegative_int,
        help="coopflow, ntebm: fit the flow to the data for this "
        "many Adam steps first (default: coopflow 1000, ntebm 0)",
    )
    p.add_argument(
        "--net-widths", type=_widths, help="hidden widths of the ToyNet energy (default 32,64,64,64)"
    )
    p.add_argument("--flow-layers", type=_positive_int, help="coupling layers of the flow (default 4)")
    p.add_argument(
        "--flow-width", type=_positive_int, help="hidden width of the flow's conditioners (default 32)"
    )
    p.set_defaults(func=_cmd_train)

    p = add(
        "sample",
        "sample a trained EBM with FlowMCKernel",
        "Sample the trained EBM of --run with MCMC(FlowMCKernel(...), chain_method='vectorized'); "
        "its trained "
        "flow proposes the global moves (frozen, unless --train-flow). Chains start from the negative bank.",
    )
    p.add_argument("--run", required=True, help="run folder written by `train`")
    p.add_argument("--num-samples", type=_positive_int, default=1000, help="draws per chain")
    p.add_argument("--chains", type=_positive_int, default=64, help="chains (>= 2)")
    p.add_argument(
        "--warmup", type=_nonnegative_int, default=200, help="warmup iterations (step-size adaptation)"
    )
    p.add_argument("--global-move", choices=("isir", "imh"), default="isir", help="global flow move")
    p.add_argument("--n-particles", type=_positive_int, default=32, help="i-SIR particles")
    p.add_argument("--n-local-steps", type=_nonnegative_int, default=4, help="MALA steps per iteration")
    p.add_argument("--step-size", type=_positive_float, default=0.01, help="initial MALA step size")
    p.add_argument("--train-flow", action="store_true", help="also fit the flow during warmup")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", help="output folder (default: the run folder)")
    p.set_defaults(func=_cmd_sample)

    p = add(
        "evaluate",
        "the paper's metrics on a trained run",
        "Zone weights vs truth (named targets), median squared log-density error (2-D named targets), "
        "log Z and "
        "test log-likelihood by importance sampling with the flow, R-hat/ESS of samples.npy if present.",
    )
    p.add_argument("--run", required=True, help="run folder written by `train`")
    p.add_argument(
        "--data",
        help="test data (.npy/.csv, (n, dim)); default: fresh draws of a named set, else the training file",
    )
    p.add_argument("--num-test", type=_positive_int, default=5000, help="fresh test draws of a named set")
    p.add_argument("--num-importance", type=_positive_int, default=20000, help="importance samples for log Z")
    p.add_argument("--resolution", type=_positive_int, default=200, help="grid cells per axis (2-D)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", help="JSON file (default: RUN/evaluation.json)")
    p.set_defaults(func=_cmd_evaluate)

    p = add(
        "reproduce",
        "reproduce a table or figure of the paper",
        "Run numpyro_ebm.reproduce.run(EXPERIMENT, preset=...): quick (seconds), cpu (minutes to hours on a "
        "laptop), paper (the paper's budgets).",
    )
    p.add_argument("experiment", choices=EXPERIMENTS, help="what to reproduce")
    p.add_argument("--quick", action="store_true", help="same as --preset quick")
    p.add_argument("--preset", choices=PRESETS, default=None, help="budget (default cpu)")
    p.add_argument("--out", help=f"output folder (default {PROG}-reproduce/EXPERIMENT)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.set_defaults(func=_cmd_reproduce)
    return parser


def _exit_code(code) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else 2


def main(argv: list[str] | None = None) -> int:
    """Run ``numpyro-ebm`` with ``argv`` (``sys.argv[1:]`` by default); return the exit status.

    Example:
        >>> main(["--version"])  # doctest: +SKIP
        numpyro-ebm 0.1.0
        0
    """
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
