"""``numpyro-ebm evaluate``: the paper's metrics on a trained run.

Example:
    >>> result = evaluate_run("runs/two_modes")  # doctest: +SKIP
    >>> result["test_log_likelihood"]["value"]  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flowjax.distributions import Normal

from numpyro_ebm import diagnostics
from numpyro_ebm._json import jsonable, write_json
from numpyro_ebm.runs import UsageError, load_run, read_array, run_target

__all__ = ["evaluate_run", "report"]


def _gaussian_proposal(bank):
    return Normal(jnp.mean(bank, 0), 1.5 * jnp.std(bank, 0) + 1e-3)


def _test_data(run, data, target, key, num_test: int):
    """``(points, description)``: ``data``, else fresh draws of the target, else the training file."""
    if data is not None:
        if not Path(data).is_file():
            raise UsageError(f"--data {data}: no such file; check the path.")
        test = read_array(Path(data))
        if test.ndim != 2 or test.shape[1] != run.ebm.dim or not np.all(np.isfinite(test)):
            raise UsageError(
                f"--data {data} must be a finite array of shape (n, {run.ebm.dim}); got {test.shape}."
            )
        return test, str(data)
    if target is not None:
        return np.asarray(target.sample(key, num_test)), f"{num_test} fresh draws of {target.name}"
    test = read_array(Path(run.manifest["data"]["source"]))
    return test, "the training file (no held-out set; pass --data TEST_FILE)"


def _zone_weights(run, target, samples, resolution: int) -> dict[str, Any]:
    zones = {
        "truth": target.weights.tolist(),
        "negatives": diagnostics.zone_weights(run.bank, target).tolist(),
    }
    if target.bounds is not None:
        zones["ebm"] = diagnostics.zone_weights(run.ebm, target, resolution=resolution).tolist()
    if samples is not None:
        zones["samples"] = diagnostics.zone_weights(samples.reshape(-1, samples.shape[-1]), target).tolist()
    truth = np.asarray(zones["truth"])
    zones["mse_vs_truth"] = {
        k: float(np.mean((np.asarray(v) - truth) ** 2)) for k, v in zones.items() if k != "truth"
    }
    return zones


def evaluate_run(
    run_dir,
    *,
    data=None,
    out=None,
    num_test: int = 5000,
    num_importance: int = 20000,
    resolution: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """The paper's metrics on the run in ``run_dir``; written to ``out`` (``RUN/evaluation.json``).

    * Zone weights (named targets): of the EBM (2-D, by grid), the negative bank and
      ``samples.npy`` if present, against the truth, with their mean squared errors.
    * The median squared log-density error (2-D named targets).
    * ``log Z`` by importance sampling (the trained flow as proposal, else a Gaussian fitted to
      the bank) and the test log-likelihood on ``data``, else on fresh draws of a named target,
      else on the training file.
    * R-hat and bulk ESS of ``samples.npy`` if present.

    Returns:
        The results written to the JSON file (its path under ``"out"``).

    Raises:
        UsageError: no run in ``run_dir``, or unusable test ``data``.
    """
    run = load_run(run_dir)
    target = run_target(run)
    key_test, key_is = jax.random.split(jax.random.key(seed))
    result: dict[str, Any] = {
        "run": str(Path(run_dir).resolve()),
        "sampler": run.manifest["sampler"],
        "steps": run.manifest["steps"],
    }
    test, test_desc = _test_data(run, data, target, key_test, num_test)
    samples_path = Path(run_dir) / "samples.npy"
    samples = np.load(samples_path) if samples_path.is_file() else None
    if target is not None:
        if target.bounds is not None:
            result["median_squared_log_density_error"] = diagnostics.median_squared_log_density_error(
                run.ebm, target, resolution=resolution
            )
        result["zone_weights"] = _zone_weights(run, target, samples, resolution)
    if run.flow is not None:
        proposal, proposal_desc = run.flow, "the trained flow"
    else:
        proposal = _gaussian_proposal(run.bank)
        proposal_desc = "a Gaussian fitted to the negative bank (the run has no flow)"
    log_z, ess = diagnostics.log_normalizer(run.ebm, proposal, key_is, num_importance, batch_size=4096)
    result["log_normalizer"] = {
        "value": float(log_z),
        "ess": float(ess),
        "n": num_importance,
        "proposal": proposal_desc,
    }
    test_ll = float(np.mean(np.asarray(run.ebm.log_density(test)))) - float(log_z)
    result["test_log_likelihood"] = {"value": test_ll, "data": test_desc, "num_points": int(test.shape[0])}
    if target is not None and data is None:
        result["test_log_likelihood"]["truth"] = float(np.mean(np.asarray(target.log_prob(test))))
    if samples is not None and samples.shape[1] >= 4:
        result["mixing"] = {
            "max_rhat": diagnostics.max_rhat(samples),
            "min_ess": diagnostics.min_ess(samples),
            "samples": str(samples_path),
        }
    out = Path(out) if out else Path(run_dir) / "evaluation.json"
    write_json(out, jsonable(result))
    return {**result, "out": str(out)}


def report(result: dict[str, Any], run_dir) -> str:
    """What ``evaluate`` prints: one line per metric."""
    lines = [f"run {run_dir} ({result['sampler']}, {result['steps']} steps)"]
    if "zone_weights" in result:
        zones = result["zone_weights"]
        for name, weights in zones.items():
            if name != "mse_vs_truth":
                lines.append(f"  zone weights, {name:<9}: " + " ".join(f"{w:.3f}" for w in weights))
        lines.append(
            "  zone-weight MSE vs truth: "
            + ", ".join(f"{k} {v:.2e}" for k, v in zones["mse_vs_truth"].items())
        )
    if "median_squared_log_density_error" in result:
        lines.append(f"  median squared log-density error: {result['median_squared_log_density_error']:.4f}")
    log_z, ll = result["log_normalizer"], result["test_log_likelihood"]
    lines.append(
        f"  log Z = {log_z['value']:.4f} (importance sampling, ESS {log_z['ess']:.0f} of {log_z['n']}, "
        f"proposal: {log_z['proposal']})"
    )
    truth_ll = f" (truth {ll['truth']:.4f})" if "truth" in ll else ""
    lines.append(f"  test log-likelihood {ll['value']:.4f}{truth_ll} on {ll['data']}")
    if "mixing" in result:
        lines.append(
            f"  samples.npy: max R-hat {result['mixing']['max_rhat']:.3f}, "
            f"min bulk ESS {result['mixing']['min_ess']:.0f}"
        )
    lines.append(f"wrote {result['out']}")
    return "\n".join(lines)
