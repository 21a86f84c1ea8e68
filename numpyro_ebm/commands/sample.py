"""``numpyro-ebm sample``: draw from a trained run's EBM with ``FlowMCKernel``.

Example:
    >>> summary = sample_run("runs/two_modes", num_samples=1000, chains=64)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from numpyro_ebm import diagnostics
from numpyro_ebm._json import jsonable, write_json
from numpyro_ebm.kernel import FlowMCKernel
from numpyro_ebm.runs import UsageError, load_run, run_target
from numpyro_ebm.settings import FlowMCSettings

__all__ = ["sample_run", "report"]


def sample_run(
    run_dir,
    *,
    out=None,
    num_samples: int = 1000,
    chains: int = 64,
    warmup: int = 200,
    settings: FlowMCSettings | None = None,
    train_flow: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Sample the EBM of ``run_dir`` with ``MCMC(FlowMCKernel(...), chain_method="vectorized")``.

    ``settings`` is the transition (default ``FlowMCSettings()``: i-SIR). The run's trained flow
    proposes the global moves (frozen unless ``train_flow``; a run without a flow fits one during
    warmup). Chains start from the negative bank. Writes ``samples.npy``
    ``(chains, draws, dim)``, ``samples.nc`` (ArviZ) and ``sample_summary.json`` to ``out``
    (default: ``run_dir``). ``settings`` is the kernel's transition (default: ``FlowMCSettings()``,
    the library's defaults).

    Returns:
        The summary written to ``sample_summary.json`` (acceptances, R-hat, ESS, zone weights).

    Raises:
        UsageError: fewer than 2 chains, no run in ``run_dir``, or no flow and no warmup.
    """
    import arviz as az  # lazy: ~1 s
    from numpyro.infer import MCMC

    if chains < 2:
        raise UsageError(f"--chains {chains}: FlowMCKernel is an ensemble kernel; use --chains 2 or more.")
    run = load_run(run_dir)
    out = Path(out) if out else Path(run_dir)
    if run.flow is None and warmup == 0:
        raise UsageError(
            f"--run {run_dir} has no trained flow (sampler {run.manifest['sampler']}); "
            "give --warmup > 0 so that FlowMCKernel fits one."
        )
    key_init, key_run = jax.random.split(jax.random.key(seed))
    bank = run.bank
    index = jax.random.choice(key_init, bank.shape[0], (chains,), replace=chains > bank.shape[0])
    ebm = run.ebm

    # A potential of the site "x" rather than ebm.model: the same density, it also serves untilted
    # EBMs (whose model has an improper site), and az.from_numpyro does not re-run the model (with
    # ebm.model it does, seeding it with a legacy uint32 key that flowjax's sample rejects).
    def potential_fn(params):
        return ebm.potential_fn(params["x"])

    kernel = FlowMCKernel(
        potential_fn=potential_fn,
        flow=run.flow,
        train_flow=run.flow is None or train_flow,
        # Not the kernel's own default (KERNEL_SETTINGS, IMH): a run's trained flow lags its EBM,
        # which i-SIR's resampling tolerates, as in training.
        settings=FlowMCSettings() if settings is None else settings,
    )
    mcmc = MCMC(
        kernel,
        num_warmup=warmup,
        num_samples=num_samples,
        num_chains=chains,
        chain_method="vectorized",
        progress_bar=progress,
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
    target = run_target(run)
    zones = None
    if target is not None:
        weights = diagnostics.zone_weights(samples.reshape(-1, samples.shape[-1]), target)
        zones = {"samples": weights.tolist(), "truth": target.weights.tolist()}
    enough = samples.shape[1] >= 4  # split R-hat needs 4 draws
    summary = {
        "shape": list(samples.shape),
        "num_warmup": warmup,
        "local_accept_prob": float(np.mean(extra["local_accept_prob"])),
        # NaN, "not attempted", without a global move (as in the training history), not 0.
        "global_accept_prob": float(np.mean(extra["global_accept_prob"]))
        if kernel.settings.global_move
        else math.nan,
        "max_rhat": diagnostics.max_rhat(samples) if enough else None,
        "min_ess": diagnostics.min_ess(samples) if enough else None,
        "zone_weights": zones,
        "time_s": seconds,
        "out": str(out),
    }
    write_json(out / "sample_summary.json", jsonable({k: v for k, v in summary.items() if k != "out"}))
    return summary


def report(summary: dict[str, Any]) -> str:
    """What ``sample`` prints: draws, acceptances, R-hat and ESS, zone weights, files written."""
    chains, draws, dim = summary["shape"]
    lines = [
        f"{chains} chains x {draws} draws (dim {dim}) in {summary['time_s']:.0f} s",
        f"acceptance: local {summary['local_accept_prob']:.2f}, global "
        + (
            f"{summary['global_accept_prob']:.2f}"
            if math.isfinite(summary["global_accept_prob"])
            else "n/a (no global move)"
        ),
    ]
    if summary["max_rhat"] is not None:
        lines.append(f"max R-hat {summary['max_rhat']:.3f}, min bulk ESS {summary['min_ess']:.0f}")
    if summary["zone_weights"]:
        z = summary["zone_weights"]
        lines.append(
            "zone weights (samples / truth): "
            + ", ".join(f"{a:.3f}/{b:.3f}" for a, b in zip(z["samples"], z["truth"], strict=True))
        )
    lines.append(
        "wrote samples.npy (chains, draws, dim), samples.nc (ArviZ) and sample_summary.json to "
        f"{summary['out']}"
    )
    return "\n".join(lines)
