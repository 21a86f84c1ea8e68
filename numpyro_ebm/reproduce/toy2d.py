"""Tables 1 and 3: the 2-D tasks (Sec. 4.3; App. C.3-C.4).

* ``table3``: the line of four Gaussians, the three zone-weight MSEs of each method.
* ``table1``: eight Gaussians and rings, the median squared log-density error.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from numpyro_ebm import datasets, diagnostics, plotting
from numpyro_ebm.reproduce.common import chain_starts, last, plot, settings, train_method
from numpyro_ebm.reproduce.presets import GRID, TABLE1_DATASETS, config

__all__ = ["table1", "table3"]


def _final_negatives(trained, key, n: int):
    """Starting points and negatives of one sampler call on ``n`` chains with the trained models.

    Persistent samplers start from the bank (its first ``n`` rows), the others afresh.
    """
    result, sampler = trained["result"], trained["sampler"]
    key_start, key_move = jax.random.split(key)
    start, flow = chain_starts(sampler, result.ebm, result.flow, result.bank, key_start, n)
    out = jax.jit(lambda k, x: sampler(k, result.ebm, flow, x, result.step_size))(key_move, start)
    return start, out.negatives


def table3(preset: str, key, progress: bool, out_dir: Path) -> dict[str, Any]:
    target = datasets.line_of_four_target()
    key_data, key = jax.random.split(key)
    methods = config("table3", preset)
    data = target.sample(key_data, methods[0].schedule.num_data)
    res = GRID[preset]
    out: dict[str, Any] = {"truth": np.asarray(target.weights).tolist(), "methods": {}}
    weights = {}
    for i, method in enumerate(methods):
        trained = train_method(method, data, jax.random.fold_in(key, i), target=target, progress=progress)
        t0 = time.perf_counter()
        start, negatives = _final_negatives(
            trained, jax.random.fold_in(key, 100 + i), method.schedule.bank_size
        )
        ebm = trained["result"].ebm
        mses = diagnostics.zone_weight_mses(start, negatives, ebm, target, resolution=res)
        ebm_w = np.asarray(diagnostics.zone_weights(ebm, target, resolution=res))
        neg_w = np.asarray(diagnostics.zone_frequencies(negatives, target))
        weights[method.name] = (ebm_w, neg_w)
        out["methods"][method.name] = {
            **mses,
            "ebm_weights": ebm_w.tolist(),
            "init_weights": np.asarray(diagnostics.zone_frequencies(start, target)).tolist(),
            "negative_weights": neg_w.tolist(),
            "global_accept_prob": last(trained["result"].history, "global_accept_prob"),
            "local_accept_prob": last(trained["result"].history, "local_accept_prob"),
            "train_seconds": trained["train_seconds"],
            "eval_seconds": time.perf_counter() - t0,
            "work": trained["work"],
            "settings": settings(method),
        }
    plot(out_dir, lambda fig: _table3_plot(fig, weights, np.asarray(target.weights)))
    return out


def table1(preset: str, key, progress: bool, out_dir: Path) -> dict[str, Any]:
    res = GRID[preset]
    out: dict[str, Any] = {"datasets": {}}
    models = {}
    for j, name in enumerate(TABLE1_DATASETS):
        target = datasets.TARGETS[name]()
        key_data, key_run = jax.random.split(jax.random.fold_in(key, j))
        methods = config("table1", preset)
        data = target.sample(key_data, methods[0].schedule.num_data)
        rows = {}
        for i, method in enumerate(methods):
            trained = train_method(
                method, data, jax.random.fold_in(key_run, i), target=target, progress=progress
            )
            ebm = trained["result"].ebm
            err = diagnostics.median_squared_log_density_error(ebm, target, resolution=res)
            rows[method.name] = {
                "median_sq_log_density_error": err,
                **_log_density_error_variants(ebm, target, jax.random.fold_in(key_run, 1000 + i), res),
                "ebm_zone_weights": np.asarray(
                    diagnostics.zone_weights(ebm, target, resolution=res)
                ).tolist(),
                "global_accept_prob": last(trained["result"].history, "global_accept_prob"),
                "local_accept_prob": last(trained["result"].history, "local_accept_prob"),
                "train_seconds": trained["train_seconds"],
                "work": trained["work"],
                "settings": settings(method),
            }
            models[(name, method.name)] = (target, ebm)
        out["datasets"][name] = {"methods": rows}
    plot(out_dir, lambda fig: _table1_plot(fig, models, res))
    return out


def _log_density_error_variants(ebm, target, key, res: int, n: int = 10000) -> dict[str, float]:
    """Table 1's error over other point sets, since the paper does not say which it used.

    ``..._whole_box``: the median over every grid point of the box (``mass=1``);
    ``..._at_data``: the median over ``n`` fresh draws of the target, with the EBM normalised on
    the grid (the mass outside the box is ignored, as for the main number).
    """
    whole = diagnostics.median_squared_log_density_error(ebm, target, resolution=res, mass=1.0)
    grid = diagnostics.grid_log_density(ebm, target.bounds, res)
    raw = np.asarray(ebm.log_density(grid.points), np.float64)
    log_z = float(np.median(raw - np.asarray(grid.log_density, np.float64)))  # the grid constant
    x = target.sample(key, n)
    diff = np.asarray(ebm.log_density(x), np.float64) - log_z - np.asarray(target.log_prob(x), np.float64)
    return {
        "median_sq_log_density_error_whole_box": whole,
        "median_sq_log_density_error_at_data": float(np.median(diff**2)),
    }


def _density_panel(ax, ebm_or_target, bounds, res, title):
    plotting.plot_density(ebm_or_target, bounds, resolution=res, ax=ax)
    ax.set_title(title, fontsize=9)
    ax.set(xticks=[], yticks=[], xlabel="", ylabel="")


def _table3_plot(fig, weights, truth):
    ax = fig.add_subplot(1, 1, 1)
    names = list(weights)
    width = 0.8 / (1 + 2 * len(names))
    x = np.arange(truth.size)
    ax.bar(x, truth, width, label="truth", color="k")
    for i, name in enumerate(names):
        ebm_w, neg_w = weights[name]
        ax.bar(x + (2 * i + 1) * width, ebm_w, width, label=f"{name}: EBM")
        ax.bar(x + (2 * i + 2) * width, neg_w, width, label=f"{name}: negatives", alpha=0.6)
    ax.set_xticks(x + 0.4 - width / 2, [f"mode {i + 1}" for i in x])
    ax.set_ylabel("zone weight")
    ax.legend(fontsize=7, ncol=2)


def _table1_plot(fig, models, res):
    names = sorted({name for name, _ in models})
    methods = sorted({m for _, m in models})
    cols = 1 + len(methods)
    for r, name in enumerate(names):
        target = next(t for (n, _), (t, _) in models.items() if n == name)
        _density_panel(
            fig.add_subplot(len(names), cols, r * cols + 1), target, target.bounds, res, f"{name}: truth"
        )
        for c, m in enumerate(methods):
            _, ebm = models[(name, m)]
            _density_panel(
                fig.add_subplot(len(names), cols, r * cols + c + 2), ebm, target.bounds, res, f"{name}: {m}"
            )
    fig.set_size_inches(3.0 * cols, 3.0 * len(names))
