"""Table 2 and Figure 6: mixing of each method's negative chains on the 4-mode mixture, d = 16, 32, 64.

For every dimension and method (CoopFlow, NT-EBM, ULA-EBM, flowMC-EBM, the paper's rows), train,
then run 128 chains of the method's own sampler with the trained models
(:func:`~numpyro_ebm.reproduce.common.sampler_chains`) and report the maximum over coordinates of
the rank-normalised R-hat (the paper's metric) with the mode weights: of those chains, of the bank
and, for the methods with a flow, of the EBM by importance sampling with the flow. The same R-hat
on shorter chains after every training chunk, against the training time spent so far (the time
of the R-hat itself excluded), is Figure 6 (``figure6.png``, log-log).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import jax
import numpy as np

from numpyro_ebm import datasets, diagnostics, recipes
from numpyro_ebm.reproduce.common import (
    chain_starts,
    last,
    plot,
    sampler_chains,
    sampler_work,
    settings,
    train_method,
)
from numpyro_ebm.reproduce.mixture_presets import TABLE2_AT_DIM, TABLE2_DIMS, TABLE2_RHAT, TABLE2_WIDTH
from numpyro_ebm.reproduce.presets import config

__all__ = ["table2", "PAPER_RHAT"]

#: Table 2 of the paper: max R-hat at the end of training, d = 16, 32, 64.
PAPER_RHAT = {
    "CoopFlow": (20.52, 44.12, 51.66),
    "NT-EBM": (2.02, 2.50, 3.10),
    "ULA-EBM": (7.30, 9.29, 90.90),
    "flowMC-EBM": (1.01, 1.01, 1.05),
}


class _RhatClock:
    """A ``train`` metric: R-hat of short chains after each chunk, and the training time so far.

    ``train`` calls metrics on the host after each chunk; the time spent in them is subtracted
    from the wall clock, so ``times`` is training time only (Figure 6's x-axis). The chains use
    the method's sampler at its initial step size (the adapted one is not visible to metrics).
    """

    def __init__(self, method, chains: int, calls: int, key):
        self.method, self.chains, self.calls, self.key = method, chains, calls, key
        self.start = time.perf_counter()
        self.spent = 0.0
        self.times: list[float] = []

    def __call__(self, ebm, flow, bank):
        t0 = time.perf_counter()
        self.times.append(t0 - self.start - self.spent)
        key = jax.random.fold_in(self.key, len(self.times))
        sampler = recipes.make_sampler(self.method.sampler, flow, self.method.options)
        start, flow = chain_starts(sampler, ebm, flow, bank, key, self.chains)
        chains, _ = sampler_chains(sampler, ebm, flow, start, sampler.init_step_size(), key, self.calls)
        value = diagnostics.max_rhat(np.asarray(chains))
        self.spent += time.perf_counter() - t0
        return value


def table2(preset: str, key, progress: bool, out_dir: Path, dims=None, methods=None) -> dict[str, Any]:
    """``methods``: names of the rows to run (default all); each keeps the seed it has in the full
    table, so runs of single rows (in parallel processes, say) give the full run's numbers."""
    dims = TABLE2_DIMS[preset] if dims is None else tuple(dims)
    names = [m.name for m in config("table2", preset)]
    if methods is not None and (unknown := set(methods) - set(names)):
        raise ValueError(f"methods={sorted(unknown)!r}: table2's rows are {names!r}.")
    rhat = TABLE2_RHAT[preset]
    out: dict[str, Any] = {"dims": {}, "rhat_chains": rhat["chains"], "rhat_calls": rhat["calls"]}
    out["paper_max_rhat"] = {
        name: dict(zip(("16", "32", "64"), v, strict=True)) for name, v in PAPER_RHAT.items()
    }
    curves = {}
    for d in dims:
        target = datasets.gaussian_mixture_target(d)
        key_data, key_run, key_rhat, key_is = jax.random.split(jax.random.fold_in(key, d), 4)
        rows = {}
        for i, method in enumerate(config("table2", preset)):
            if methods is not None and method.name not in methods:
                continue
            method = _at_dim(method, preset, d)
            data = target.sample(key_data, method.schedule.num_data)
            key_i = jax.random.fold_in(key_run, i)
            clock = _RhatClock(method, rhat["chains"], rhat["history_calls"], jax.random.fold_in(key_i, 7))
            trained = train_method(
                method, data, key_i, target=target, progress=progress, metrics={"rhat": clock}
            )
            row = _evaluate(trained, method, target, rhat, jax.random.fold_in(key_rhat, i), key_is)
            h = trained["result"].history
            row["rhat_history"] = {
                "step": np.asarray(h["step"]).tolist(),
                "train_seconds": clock.times,
                "max_rhat": np.asarray(h["rhat"]).tolist(),
            }
            rows[method.name] = row
            curves[(d, method.name)] = (np.asarray(clock.times), np.asarray(h["rhat"], float))
        out["dims"][str(d)] = {"methods": rows}
    out["ordering"] = {d: _order(entry["methods"]) for d, entry in out["dims"].items()}
    plot(out_dir, lambda fig: _figure6(fig, curves, dims), "figure6.png", (4.0 * len(dims), 3.4))
    plot(out_dir, lambda fig: _figure6(fig, curves, dims), size=(4.0 * len(dims), 3.4))
    return out


def _at_dim(method, preset: str, d: int):
    """``method`` at dimension ``d``: the flow width of Table 6; the preset's changes for ``d``
    (:data:`~numpyro_ebm.reproduce.mixture_presets.TABLE2_AT_DIM`)."""
    method = replace(method, flow=replace(method.flow, width=TABLE2_WIDTH.get(d, method.flow.width)))
    changes = dict(TABLE2_AT_DIM.get(preset, {}).get(d, {}).get(method.name, {}))
    if not changes:
        return method
    if "num_steps" in changes:
        changes["chunk_size"] = math.gcd(changes["num_steps"], method.schedule.chunk_size)
    said = ", ".join(f"{k} {v}" for k, v in changes.items())
    fields = vars(method.schedule)
    options = {**method.options, **{k: v for k, v in changes.items() if k not in fields}}
    method = method.with_schedule(**{k: v for k, v in changes.items() if k in fields})
    return replace(method, options=options, note=f"{method.note}; d = {d}: {said}")


def _evaluate(trained, method, target, rhat, key, key_is) -> dict[str, Any]:
    t0 = time.perf_counter()
    result, sampler = trained["result"], trained["sampler"]
    start, flow = chain_starts(sampler, result.ebm, result.flow, result.bank, key, rhat["chains"])
    chains, accept = sampler_chains(
        sampler, result.ebm, flow, start, result.step_size, jax.random.fold_in(key, 1), rhat["calls"]
    )
    chains = np.asarray(chains)
    flat = chains.reshape(-1, chains.shape[-1])
    row = {
        "max_rhat": diagnostics.max_rhat(chains),
        "min_ess": diagnostics.min_ess(chains),
        "rhat_global_accept": float(accept),
        "mode_weights_chains": np.asarray(diagnostics.zone_frequencies(flat, target)).tolist(),
        "mode_weights_bank": np.asarray(diagnostics.zone_frequencies(result.bank, target)).tolist(),
    }
    if result.flow is not None and sampler.flow_training is not None:
        # The EBM's mode weights by self-normalised importance sampling, the flow as proposal.
        weights, ess = diagnostics.importance_zone_weights(result.ebm, result.flow, target, key_is, 20000)
        row.update({"mode_weights_is": np.asarray(weights).tolist(), "is_ess": float(ess)})
    else:  # no flow to propose from: ULA-EBM
        row.update({"mode_weights_is": None, "is_ess": None})
    per_call = sampler_work(method.sampler, method.options, rhat["chains"])
    row.update(
        {
            "step_size": float(result.step_size),
            "global_accept_prob": last(result.history, "global_accept_prob"),
            "local_accept_prob": last(result.history, "local_accept_prob"),
            "training_stopped": trained["stopped"],
            "train_seconds": trained["train_seconds"],
            "eval_seconds": time.perf_counter() - t0,
            "work": trained["work"],
            "eval_work": {k: v * rhat["calls"] for k, v in per_call.items()},
            "settings": settings(method),
        }
    )
    return row


def _order(rows: dict[str, Any]) -> list[str]:
    """Method names from the best (lowest) max R-hat to the worst; NaN (a frozen chain) last."""
    key = lambda name: np.nan_to_num(rows[name]["max_rhat"], nan=np.inf)  # noqa: E731
    return sorted(rows, key=key)


def _figure6(fig, curves, dims):
    """Figure 6: max R-hat against training time, log-log, one panel per dimension."""
    for j, d in enumerate(dims):
        ax = fig.add_subplot(1, len(dims), j + 1)
        for (dd, name), (times, values) in curves.items():
            if dd == d:
                ax.plot(np.maximum(times, 1e-3), values, marker="o", ms=3, label=name)
        ax.set(xscale="log", yscale="log", xlabel="training time (s)", ylabel="max R-hat", title=f"d = {d}")
        ax.axhline(1.01, color="k", lw=0.6, ls=":")
        ax.legend(fontsize=7)
