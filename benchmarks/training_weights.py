"""Mode-weight error of a trained EBM against training time, with train()'s defaults.

For each dimension, trains ``EnergyModel(ToyNet(d), rho)`` with ``negatives.FlowMC(flow)`` and
every default of ``train`` (batch 128, bank 4096) on the 4-mode mixture of the paper's Table 2
with unequal weights (0.4, 0.3, 0.2, 0.1) (``--equal``: the paper's equal weights), and records
after every chunk the wall time and the model's zone weights by flow importance weights (the
training monitor, ``zones=target``). At the end it samples ``ebm.model`` with ``FlowMCKernel``
(the trained flow, frozen) and reports the zone frequencies, max R-hat and the flow's weights.

    python benchmarks/training_weights.py --dims 16 --steps 5000          # d = 16, ~10 min idle
    python benchmarks/training_weights.py --dims 16,32,64 --steps 5000 --write

``--write`` replaces the training-weights section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flowjax.distributions import Normal
from numpyro.infer import MCMC

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the targets are shared with the tests

from _doc_section import write_section  # noqa: E402
from _weights_setup import unequal_mixture_target  # noqa: E402

from numpyro_ebm import FlowMCKernel, datasets, diagnostics, flows, nets, train  # noqa: E402
from numpyro_ebm import negatives as ng  # noqa: E402
from numpyro_ebm.energy import EnergyModel  # noqa: E402


def run(dim: int, steps: int, batch: int, bank: int, seed: int, equal: bool, chains: int) -> dict:
    target = datasets.gaussian_mixture_target(dim) if equal else unequal_mixture_target(dim)
    truth = np.asarray(target.weights)
    data = target.sample(jax.random.key(100 + seed), 50_000)
    key_flow, key_net, key_train, key_mcmc = jax.random.split(jax.random.key(seed), 4)
    sigma = float(jnp.sqrt(target.max_variance))  # the paper's rho = N(0, sigma^2 I), App. C.5
    base = Normal(jnp.zeros(dim), jnp.full(dim, sigma))
    flow = flows.default_flow(key_flow, dim, identity_init=True, base=base, interval=3 * sigma)
    ebm = EnergyModel(nets.ToyNet(dim, key=key_net), flow.base_dist)
    clock = {"t0": time.perf_counter()}
    result = train(
        ebm, data, key=key_train, negatives=ng.FlowMC(flow), num_steps=steps, batch_size=batch,
        bank_size=bank, chunk_size=max(steps // 20, 1), zones=target, progress=False,
        metrics={"seconds": lambda e, f, b: time.perf_counter() - clock["t0"]},
    )  # fmt: skip
    history = result.history
    curve = [
        (int(s), round(float(t), 1), round(float(np.max(np.abs(np.asarray(w) - truth))), 4))
        for s, t, w in zip(history["step"], history["seconds"], history["model_zone_weights"], strict=True)
    ]
    kernel = FlowMCKernel(result.ebm.model, flow=result.flow, train_flow=False, global_move="isir")
    mcmc = MCMC(kernel, num_warmup=200, num_samples=200, num_chains=chains, chain_method="vectorized",
                progress_bar=False)  # fmt: skip
    mcmc.run(key_mcmc)
    x = np.asarray(mcmc.get_samples(group_by_chain=True)["x"])
    freq = np.asarray(diagnostics.zone_frequencies(x.reshape(-1, dim), target))
    return {
        "dim": dim, "steps": steps, "seconds": curve[-1][1], "truth": truth.round(3).tolist(),
        "kernel_weights": freq.round(3).tolist(),
        "kernel_error": round(float(np.max(np.abs(freq - truth))), 4),
        "max_rhat": round(diagnostics.max_rhat(x), 3),
        "flow_is_weights": np.round(history["model_zone_weights"][-1], 3).tolist(),
        "bank_weights": np.round(history["bank_zone_weights"][-1], 3).tolist(),
        "flow_ess": round(float(history["flow_ess"][-1]), 3),
        "step_size": round(float(result.step_size), 4),
        "curve": curve,
    }  # fmt: skip


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", default="16", help="comma-separated dimensions")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--bank", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chains", type=int, default=128, help="FlowMCKernel chains at the end")
    parser.add_argument("--equal", action="store_true", help="the paper's equal weights")
    parser.add_argument("--write", action="store_true", help="write the docs/benchmarks.md section")
    args = parser.parse_args(argv)
    rows = []
    for dim in map(int, args.dims.split(",")):
        row = run(dim, args.steps, args.batch, args.bank, args.seed, args.equal, args.chains)
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.write:
        write(rows, args, argv)


def write(rows: list[dict], args, argv) -> None:
    command = "python benchmarks/training_weights.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        f"Command: `{command}` ({datetime.date.today()}, {platform.machine()}, "
        f"{jax.devices()[0].platform}).",
        "",
        "| d | steps | train s | max weight error (kernel) | kernel weights | truth | max R-hat "
        "| flow IS weights | bank | flow ESS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['dim']} | {r['steps']} | {r['seconds']:.0f} | {r['kernel_error']:.3f} "
            f"| {r['kernel_weights']} | {r['truth']} | {r['max_rhat']:.3f} | {r['flow_is_weights']} "
            f"| {r['bank_weights']} | {r['flow_ess']:.2f} |"
        )  # fmt: skip
    lines += ["", "Weight error (flow IS, monitor) against training time:", ""]
    for r in rows:
        lines.append(f"* d = {r['dim']}: " + ", ".join(f"{t:.0f} s: {e:.3f}" for _, t, e in r["curve"][4::4]))
    write_section("training-weights", "\n".join(lines), "Training: mode weights against training time")


if __name__ == "__main__":
    main()
