"""Figure 1: flowMC-EBM beside ULA-EBM on the 2:1 two-mode mixture (Sec. 4.1, App. C.2).

The data are ``(1/3) N((-1.5, -1.5), 0.05 I) + (2/3) N((1.5, 1.5), 0.1 I)``. ULA-EBM's persistent
chains do not cross between the modes, so its EBM cannot learn the weights; flowMC-EBM's flow
moves do, and its EBM's weight of the (1.5, 1.5) mode approaches 2/3. Both train on the same data;
the weight is recorded after every chunk (:class:`~numpyro_ebm.diagnostics.GridZoneWeights`).
This is the one implementation: ``numpyro-ebm reproduce figure1`` and ``numpyro-ebm demo`` (the
``cpu`` preset, ``--quick`` the ``quick`` one) both run :func:`figure1`.

Writes ``figure.png`` (EBM maps and the weight history), and the panels ``densities.png``,
``slice.png``, ``chains.png`` and ``weights.png``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_ebm import datasets, diagnostics, plotting
from numpyro_ebm.reproduce.common import last, plot, settings, train_method
from numpyro_ebm.reproduce.presets import GRID, config

__all__ = ["figure1", "report"]

# The data lie within |x| < 3; negative chains beyond this have left for good (ULA-EBM's
# untilted exp(-E) can put its mass at infinity, and ULA then follows it).
DIVERGED = 1e3


def figure1(preset: str, key, progress: bool, out_dir: Path, steps: int | None = None) -> dict[str, Any]:
    """Train the preset's methods on the 2:1 mixture; ``steps`` overrides the training length."""
    target = datasets.two_modes_target()
    key_data, key = jax.random.split(key)
    methods = config("figure1", preset)
    if steps is not None:
        methods = [
            m.with_schedule(num_steps=steps, chunk_size=math.gcd(steps, m.schedule.chunk_size))
            for m in methods
        ]
    data = target.sample(key_data, methods[0].schedule.num_data)
    res = GRID[preset]
    truth = float(target.weights[1])
    out: dict[str, Any] = {"truth": truth, "true_weight": truth, "methods": {}}
    out["mode"] = np.asarray(target.distribution.means)[1].tolist()
    results = {}
    # The weight of the (1.5, 1.5) mode (zone 1) after every chunk: one grid, one compilation.
    weight = diagnostics.GridZoneWeights(target, resolution=res, zone=1)
    watch = {"weight": weight, "negatives_max_abs": lambda ebm, flow, bank: float(jnp.max(jnp.abs(bank)))}
    for i, method in enumerate(methods):
        trained = train_method(
            method, data, jax.random.fold_in(key, i), target=target, progress=progress, metrics=watch
        )
        result, h = trained["result"], trained["result"].history
        steps_h = np.asarray([0, *h["step"].tolist()])
        weights = np.asarray([0.5, *h["weight"].tolist()])  # E = 0 at the start: the symmetric 1/2
        final = float(diagnostics.zone_weights(result.ebm, target, resolution=res)[1])
        out["methods"][method.name] = {
            "weight": final,
            "weight_error": final - truth,
            "abs_error": abs(final - truth),
            "bank_weight": float(diagnostics.zone_frequencies(result.bank, target)[1]),
            **_stability(steps_h, weights, np.asarray(h["negatives_max_abs"], float), truth),
            "training_stopped": trained["stopped"],
            "global_accept_prob": last(h, "global_accept_prob"),
            "local_accept_prob": last(h, "local_accept_prob"),
            "train_seconds": trained["train_seconds"],
            "work": trained["work"],
            "settings": settings(method),
        }
        results[method.name] = result
    out["settings"] = {"steps": methods[0].schedule.num_steps, "resolution": res}
    out["figures"] = _figures(out_dir, target, results, out["methods"], res)
    return out


def _stability(steps, weights, spread, truth: float) -> dict[str, Any]:
    """How the weight moved over training, and whether the negative chains escaped."""
    q = weights[steps >= 0.75 * steps[-1]]
    escaped = np.flatnonzero(~(spread < DIVERGED))  # NaN counts as escaped
    return {
        "last_quarter": {
            "mean": float(q.mean()),
            "min": float(q.min()),
            "max": float(q.max()),
            "range": float(np.ptp(q)),
            "std": float(q.std()),
            "mean_abs_error": float(np.abs(q - truth).mean()),
        },
        "last_quarter_range": float(np.ptp(q)),
        "last_quarter_std": float(q.std()),
        "history_range": float(np.ptp(weights)),
        "history": {"step": steps.tolist(), "weight": weights.tolist()},
        "negatives_max_abs": float(spread[-1]) if spread.size else math.nan,
        "negatives_diverged_at_step": int(steps[1:][escaped[0]]) if escaped.size else None,
    }


# ------------------------------------------------------------------------------------ figures


def _figures(out: Path, target, results, rows, res: int) -> list[str]:
    bounds = target.bounds
    # A diverged model may be NaN on the box: leave its panels empty rather than fail.
    drawable = {name: _finite_on(r.ebm, bounds) for name, r in results.items()}
    flowmc = results.get("flowMC-EBM")

    def densities(fig):
        axes = fig.subplots(1, 2 + len(results))
        plotting.plot_density(target, bounds, resolution=res, ax=axes[0], title="target (weights 1:2)")
        for ax, (name, r) in zip(axes[1:], results.items(), strict=False):
            if drawable[name]:
                plotting.plot_density(r.ebm, bounds, resolution=res, ax=ax, title=name)
            else:
                ax.set_title(f"{name}: NaN or inf on the box")
        if flowmc is not None:
            plotting.plot_flow_density(
                flowmc.flow, bounds, resolution=res, ax=axes[-1], title="flowMC-EBM's companion flow"
            )

    def chains(fig):
        axes = np.atleast_1d(fig.subplots(1, len(results)))
        for ax, (name, r) in zip(axes, results.items(), strict=True):
            bank = np.asarray(r.bank)
            background = r.ebm if drawable[name] else None
            plotting.plot_samples(
                bank,
                ax=ax,
                bounds=bounds,
                background=background,
                resolution=res,
                title=f"{name}: negative chains",
            )

    def weights(fig):
        ax = fig.add_subplot(1, 1, 1)
        plotting.plot_weight_history(
            {name: row["history"] for name, row in rows.items()},
            true_weight=float(target.weights[1]),
            ylabel="weight of the (1.5, 1.5) mode",
            title="mode weight during training (Fig. 1, right)",
            ax=ax,
        )
        for line, row in zip(ax.lines, rows.values(), strict=False):
            if row["negatives_diverged_at_step"] is not None:
                ax.axvline(row["negatives_diverged_at_step"], color=line.get_color(), linestyle=":")

    def summary(fig):
        n = len(results)
        for i, (name, r) in enumerate(results.items()):
            ax = fig.add_subplot(1, n + 1, i + 1)
            if drawable[name]:
                plotting.plot_density(r.ebm, bounds, resolution=res, ax=ax, title=name)
            ax.set(xticks=[], yticks=[], xlabel="", ylabel="")
        plotting.plot_weight_history(
            {k: row["history"] for k, row in rows.items()},
            true_weight=2 / 3,
            ax=fig.add_subplot(1, n + 1, n + 1),
            ylabel="weight of the (1.5, 1.5) mode",
        )

    names = [plot(out, summary), plot(out, densities, "densities.png", (16, 3.8))]
    centres = np.asarray(target.distribution.means)
    fig = plotting.plot_slice(
        {name: r.ebm for name, r in results.items() if drawable[name]},
        centres[0],
        centres[1],
        bounds=bounds,
        truth=target,
        resolution=res,
        title="slice through the two centres",
    )
    fig.savefig(out / "slice.png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    names += ["slice.png", plot(out, chains, "chains.png", (9, 4)), plot(out, weights, "weights.png", (7, 4))]
    return names


def _finite_on(model, bounds, resolution: int = 50) -> bool:
    """Whether ``model``'s log-density is finite (or -inf) on a grid over ``bounds``."""
    (x_lo, x_hi), (y_lo, y_hi) = bounds
    grid = np.stack(
        np.meshgrid(np.linspace(x_lo, x_hi, resolution), np.linspace(y_lo, y_hi, resolution)), -1
    ).reshape(-1, 2)
    logp = np.asarray(model.log_density(jnp.asarray(grid, jnp.result_type(float))))
    return bool(np.all(~np.isnan(logp) & (logp < np.inf)) and np.any(np.isfinite(logp)))


def report(metrics: dict[str, Any], out_dir) -> str:
    """What ``numpyro-ebm demo`` prints: each method's final weight, its last-quarter spread, the
    negative chains' weight and the time; and any divergence."""
    truth, steps = metrics["truth"], metrics["settings"]["steps"]
    lines = [
        f"\nweight of the (1.5, 1.5) mode, truth {truth:.3f}; {steps} training steps each "
        f"(figure1, preset {metrics['preset']})",
        f"{'method':<12} {'final':>6} {'last quarter: mean [min, max]':>30} {'negatives':>9} {'time':>7}",
    ]
    for name, s in metrics["methods"].items():
        q = s["last_quarter"]
        span = f"{q['mean']:.3f} [{q['min']:.3f}, {q['max']:.3f}]"
        lines.append(
            f"{name:<12} {s['weight']:>6.3f} {span:>30} {s['bank_weight']:>9.3f} {s['train_seconds']:>6.0f}s"
        )
        if s["negatives_diverged_at_step"] is not None:
            lines.append(
                f"  {name}: the negative chains diverged (max |x| {s['negatives_max_abs']:.2g}) by "
                f"step {s['negatives_diverged_at_step']}; its later weights describe a broken model"
            )
        if s["training_stopped"] is not None:
            lines.append(
                f"  {name}: training stopped at step {s['training_stopped']['step']} (it diverged; "
                "shown: the model of the last good step)"
            )
    lines.append(
        f"wrote {', '.join(metrics['figures'])} and metrics.json to {out_dir} "
        f"({metrics['seconds']:.0f} s in total)"
    )
    return "\n".join(lines)
