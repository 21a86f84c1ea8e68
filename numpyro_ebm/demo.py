"""The paper's motivating example: flowMC-EBM beside ULA-EBM on the 2:1 two-mode mixture.

Grenioux, Moulines, Gabrié (2023), Sec. 4.1 and Fig. 1: the data are a mixture of
``N((-1.5, -1.5), 0.05 I)`` and ``N((1.5, 1.5), 0.1 I)`` with weights 1:2. An EBM trained with
persistent ULA chains (ULA-EBM) cannot learn the weights, since its chains do not cross between
the modes; flowMC-EBM's flow moves do, and its EBM's weight of the (1.5, 1.5) mode approaches
2/3. :func:`run_demo` trains both on the same data with the same steps, records that weight
after every chunk of training (by :class:`~numpyro_ebm.diagnostics.GridZoneWeights`), and
writes the figure panels and ``metrics.json``; ``numpyro-ebm demo`` runs it.

Both learning rates (EBM and flow, both methods) decay linearly from 1e-2 to 1e-4 over
training. At the paper's constant 1e-2, flowMC-EBM's weight wanders by several hundredths from
one chunk to the next, so where a run stops decides its result: the final weights of seeds 0-3
after 4000 steps were 0.623, 0.673, 0.632 and 0.757. Decayed, they were 0.671, 0.653, 0.664 and
0.671 (truth 0.667).

Example:
    >>> metrics = run_demo("/tmp/demo", quick=True, progress=False)  # doctest: +SKIP
    >>> print(report(metrics, "/tmp/demo"))  # doctest: +SKIP
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from numpyro_ebm import checkpoints, datasets, diagnostics
from numpyro_ebm._json import jsonable, write_json
from numpyro_ebm.energy import EnergyModel
from numpyro_ebm.flows import default_flow
from numpyro_ebm.negatives import ULA, FlowMC
from numpyro_ebm.nets import ToyNet
from numpyro_ebm.training import TrainingDivergedError, train

__all__ = ["run_demo", "report", "DEFAULT", "QUICK"]

#: The default settings of :func:`run_demo` (``steps`` can be overridden).
DEFAULT = {
    "steps": 4000,
    "num_data": 16384,
    "batch_size": 64,
    "bank_size": 1024,
    "lr": 1e-2,
    "lr_final": 1e-4,
    "resolution": 100,
}
#: The ``quick=True`` settings: a few seconds, for tests.
QUICK = {**DEFAULT, "steps": 40, "num_data": 1024, "bank_size": 128, "resolution": 40}
METHODS = {"flowmc": "flowMC-EBM", "ula": "ULA-EBM"}
FLOWMC = {"global_move": "isir", "n_particles": 32, "step_size": 0.01, "n_local_steps": 4, "n_cycles": 2}
ULA_SETTINGS = {"step_size": 0.01, "n_steps": 10}
# The data lie within |x| < 3; negative chains beyond this have left for good (ULA-EBM's
# untilted exp(-E) can put its mass at infinity, and ULA then follows it).
DIVERGED = 1e3


def run_demo(
    out_dir, *, steps: int | None = None, quick: bool = False, seed: int = 0, progress: bool = True
) -> dict[str, Any]:
    """Train flowMC-EBM and ULA-EBM on the 2:1 mixture; write figures and ``metrics.json``.

    Writes to ``out_dir``: ``densities.png`` (the target, both EBMs, flowMC-EBM's flow),
    ``slice.png`` (densities along the line through the two centres), ``chains.png`` (each
    method's negative chains at the end), ``weights.png`` (the weight of the (1.5, 1.5) mode
    during training, Fig. 1 right) and ``metrics.json`` (the returned dictionary).

    Args:
        out_dir: output folder (created if needed).
        steps: training steps per method; ``DEFAULT["steps"]`` (``QUICK["steps"]`` if ``quick``).
        quick: the small ``QUICK`` settings (a few seconds, for tests).
        seed: random seed of the data, the initialisations and the training.
        progress: show the training progress bars.

    Returns:
        ``{"true_weight", "methods": {"flowmc": summary, "ula": summary}, "settings", "figures",
        "time_s", ...}``. A summary holds ``final_weight``, ``last_quarter`` (mean, min, max,
        range, std of the weight over the last quarter of training), ``bank_weight`` (the
        negative chains' share in the mode), ``negatives_diverged_at_step`` (the first step at
        which a chain passed ``|x| > 1e3``, else ``None``), ``training_stopped`` (a non-finite
        loss) and the weight's ``history``. NaN stands where ``metrics.json`` holds ``null``.

    Example:
        >>> metrics = run_demo("/tmp/demo", quick=True, progress=False)  # doctest: +SKIP
        >>> metrics["methods"]["flowmc"]["final_weight"]  # doctest: +SKIP
    """
    cfg = dict(QUICK if quick else DEFAULT)
    if steps is not None:
        cfg["steps"] = steps
    cfg["chunk_size"] = max(1, min(50, cfg["steps"] // 10))  # 4000 steps: 80 points per curve
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    total_start = time.perf_counter()
    target = datasets.two_modes_target()
    key_data, key_net, key_flow, key_train = jax.random.split(jax.random.key(seed), 4)
    keys = {"net": key_net, "flow": key_flow, "train": key_train}
    data = target.sample(key_data, cfg["num_data"])
    truth = float(target.weights[1])
    results, histories, summaries = {}, {}, {}
    for i, (method, label) in enumerate(METHODS.items(), 1):
        print(f"[{i}/{len(METHODS)}] training {label} for {cfg['steps']} steps", file=sys.stderr, flush=True)
        result, history, seconds = _train_method(method, data, target, cfg, keys, progress)
        bank_weight = float(np.mean(np.asarray(target.zones(result.bank)) == 1))
        results[method], histories[label] = result, history
        summaries[method] = {"label": label, **_summary(history, cfg["steps"], bank_weight, seconds, truth)}

    figures = _figures(out, target, results, histories, summaries, 60 if quick else 200)
    metrics = {
        "experiment": "two_modes 2:1 (Grenioux et al. 2023, Sec. 4.1, Fig. 1)",
        "mode": np.asarray(target.distribution.means)[1].tolist(),
        "true_weight": truth,
        "methods": summaries,
        "time_s": time.perf_counter() - total_start,
        "figures": figures,
        "settings": {
            **{
                k: cfg[k]
                for k in ("steps", "chunk_size", "num_data", "batch_size", "bank_size", "resolution")
            },
            "lr_ebm": cfg["lr"],
            "lr_flow": cfg["lr"],
            "lr_final": cfg["lr_final"],
            "lr_schedule": f"linear from {cfg['lr']:g} to {cfg['lr_final']:g} over the {cfg['steps']} steps, "
            "EBM and flow alike",
            "seed": seed,
            "quick": bool(quick),
            "flowmc": FLOWMC,
            "ula": {**ULA_SETTINGS, "tilt": "none", "start": "uniform [-1, 1]^2"},
            "weight": f"grid integration of the EBM over the half-plane x1 + x2 > 0 of {target.bounds}, "
            f"{cfg['resolution']} x {cfg['resolution']} cells",
            "jax_backend": jax.default_backend(),
        },
    }
    write_json(out / "metrics.json", jsonable(metrics))
    return metrics


def _optimizer(cfg: dict) -> optax.GradientTransformation:
    return optax.adam(optax.linear_schedule(cfg["lr"], cfg["lr_final"], transition_steps=cfg["steps"]))


def _train_method(method: str, data, target, cfg: dict, keys: dict, progress: bool):
    """Train one method; ``(TrainResult, weight history, seconds)``."""
    net = ToyNet(2, key=keys["net"])
    if method == "flowmc":
        flow = default_flow(keys["flow"], 2, identity_init=True)
        ebm = EnergyModel(net, flow.base_dist)
        negatives = FlowMC(flow, **FLOWMC)
    else:
        ebm = EnergyModel(net, None)  # the paper's ULA-EBM: the untilted exp(-E)
        negatives = ULA(**ULA_SETTINGS)
    metric = diagnostics.GridZoneWeights(target, resolution=cfg["resolution"], zone=1)
    settings = {
        "key": keys["train"],
        "negatives": negatives,
        "optimizer": _optimizer(cfg),
        "flow_optimizer": _optimizer(cfg),
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
            print(f"numpyro-ebm demo: {err}", file=sys.stderr)
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
    return float(jnp.max(jnp.abs(bank)))


def _summary(history: dict, total_steps: int, bank_weight: float, seconds: float, truth: float) -> dict:
    steps, weights = np.asarray(history["step"]), np.asarray(history["weight"])
    last = weights[steps >= 0.75 * total_steps]
    spread = np.asarray(history["negatives_max_abs"][1:], dtype=np.float64)
    escaped = np.flatnonzero(~(spread < DIVERGED))  # NaN counts as escaped
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


# ------------------------------------------------------------------------------------ figures


def _figures(out: Path, target, results, histories, summaries, res: int) -> list[str]:
    """densities.png, slice.png, chains.png and weights.png (the panels of the paper's Fig. 1)."""
    import matplotlib.pyplot as plt  # lazy: ~0.5 s, and it picks a backend

    from numpyro_ebm import plotting

    def save(fig, name: str) -> str:
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        return name

    bounds = target.bounds
    centres = np.asarray(target.distribution.means)
    # A diverged model may be NaN on the box: leave its panels empty rather than fail.
    drawable = {m: _finite_on(results[m].ebm, bounds) for m in results}
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8), layout="constrained")
    plotting.plot_density(target, bounds, resolution=res, ax=axes[0], title="target (weights 1:2)")
    for ax, method in zip(axes[1:3], ("ula", "flowmc"), strict=True):
        label = summaries[method]["label"]
        if drawable[method]:
            plotting.plot_density(results[method].ebm, bounds, resolution=res, ax=ax, title=label)
        else:
            ax.set_title(f"{label}: NaN or inf on the box")
    plotting.plot_flow_density(
        results["flowmc"].flow, bounds, resolution=res, ax=axes[3], title="flowMC-EBM's companion flow"
    )
    figures = [save(fig, "densities.png")]
    fig = plotting.plot_slice(
        {summaries[m]["label"]: results[m].ebm for m in ("ula", "flowmc") if drawable[m]},
        centres[0],
        centres[1],
        bounds=bounds,
        truth=target,
        resolution=res,
        title="slice through the two centres",
    )
    figures.append(save(fig, "slice.png"))
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
    figures.append(save(fig, "chains.png"))
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
    figures.append(save(fig, "weights.png"))
    return figures


def _finite_on(model, bounds, resolution: int = 50) -> bool:
    """Whether ``model``'s log-density is finite (or -inf) on a grid over ``bounds``."""
    (x_lo, x_hi), (y_lo, y_hi) = bounds
    grid = np.stack(
        np.meshgrid(np.linspace(x_lo, x_hi, resolution), np.linspace(y_lo, y_hi, resolution)), -1
    ).reshape(-1, 2)
    logp = np.asarray(model.log_density(jnp.asarray(grid, jnp.result_type(float))))
    return bool(np.all(~np.isnan(logp) & (logp < np.inf)) and np.any(np.isfinite(logp)))


# ------------------------------------------------------------------------------------- report


def report(metrics: dict[str, Any], out_dir) -> str:
    """The table ``numpyro-ebm demo`` prints: each method's final weight, its last-quarter
    spread, the negative chains' weight and the time; and any divergence."""
    truth, steps = metrics["true_weight"], metrics["settings"]["steps"]
    lines = [
        f"\nweight of the (1.5, 1.5) mode, truth {truth:.3f}; {steps} training steps each",
        f"{'method':<12} {'final':>6} {'last quarter: mean [min, max]':>30} {'negatives':>9} {'time':>7}",
    ]
    for s in metrics["methods"].values():
        q = s["last_quarter"]
        span = f"{q['mean']:.3f} [{q['min']:.3f}, {q['max']:.3f}]"
        lines.append(
            f"{s['label']:<12} {s['final_weight']:>6.3f} {span:>30} "
            f"{s['bank_weight']:>9.3f} {s['time_s']:>6.0f}s"
        )
        if s["negatives_diverged_at_step"] is not None:
            lines.append(
                f"  {s['label']}: the negative chains diverged (max |x| {s['negatives_max_abs']:.2g}) "
                f"by step {s['negatives_diverged_at_step']}; its later weights describe a broken model"
            )
        if s["training_stopped"] is not None:
            lines.append(
                f"  {s['label']}: training stopped at step {s['training_stopped']['step']} (non-finite loss)"
            )
    lines.append(
        f"wrote {', '.join(metrics['figures'])} and metrics.json to {out_dir} "
        f"({metrics['time_s']:.0f} s in total)"
    )
    return "\n".join(lines)
