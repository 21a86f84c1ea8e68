"""Mode discovery from one-mode starts: FlowMCKernel's tempered SMC warmup against flowMC 0.6's
parallel-tempering bundle (``RQSpline_MALA_PT_Bundle``), every chain started in the light mode.

Our side runs here (:func:`mode_discovery.run`, the defaults of ``benchmarks/mode_discovery.py``:
IMH, ``TemperedSMC(reference=Normal(0, 5))``); flowMC runs in its own environment through
``benchmarks/flowmc_pt_peer.py`` (flowMC is not a dependency)::

    python3 -m venv /work/flowmc-venv && /work/flowmc-venv/bin/pip install "flowMC==0.6.*"
    PYTHONPATH=$PWD python benchmarks/mode_discovery_vs_flowmc.py 2d   # --flowmc-python PATH

Both get the same target, the same 64 starts and the same number of chains. flowMC's budget is
``kernel_vs_peers.py``'s (``--loops`` training + ``--loops`` production loops of 20 MALA and 50
flow steps, 5 epochs on up to 2,560 examples, a 4-layer RQ spline of width 32, MALA step
``sqrt(2 * 0.1)``) plus its PT (``--n-temperatures``, ``--max-temperature``; the bundle's
defaults 5 and 5.0, ``n_tempered_steps`` = the local steps). Reported for both: zone weights,
max error against the truth, production global acceptance, wall and CPU seconds (the whole run,
compilation included; for flowMC the child process's CPU, imports included) and the ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import mode_discovery as md
import numpy as np

PEER = Path(__file__).with_name("flowmc_pt_peer.py")


def run_flowmc(python: str, target, init: np.ndarray, seed: int, args) -> dict:
    """flowMC's PT bundle in a child process; the same figures as ``md.run``."""
    bundle = dict(
        n_local_steps=20,
        n_global_steps=50,
        n_training_loops=args.loops,
        n_production_loops=args.loops,
        n_epochs=5,
        mala_step_size=float(np.sqrt(2 * 0.1)),
        rq_spline_hidden_units=[32],
        rq_spline_n_bins=8,
        rq_spline_n_layers=4,
        batch_size=256,
        n_max_examples=2560,
        learning_rate=1e-3,
        n_temperatures=args.n_temperatures,
        max_temperature=args.max_temperature,
    )
    d = target.distribution
    spec = dict(
        means=np.asarray(d.means).tolist(),
        variances=np.asarray(d.variances).tolist(),
        weights=np.asarray(d.weights).tolist(),
        init=init.tolist(),
        seed=seed,
        bundle=bundle,
    )
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, out_path = Path(tmp, "spec.json"), Path(tmp, "out.npz")
        spec_path.write_text(json.dumps(spec))
        before, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        subprocess.run([python, str(PEER), str(spec_path), str(out_path)], check=True)
        after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter() - wall
        out = dict(np.load(out_path))
    zones = np.asarray(target.zones(out["positions"]))
    estimate, se = md.zone_weights(zones, len(target.weights))
    truth = np.asarray(target.weights)
    return dict(
        truth=truth,
        estimate=estimate,
        se=se,
        max_error=float(np.abs(estimate - truth).max()),
        global_accept=float(out["global_accs"].mean()),
        wall=wall,
        cpu=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        sample_wall=float(out["wall"]),
        sample_cpu=float(out["cpu"]),
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("target", choices=["2d", "d16"])
    parser.add_argument("--flowmc-python", default="/work/flowmc-venv/bin/python")
    parser.add_argument("--chains", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loops", type=int, default=10, help="flowMC training (= production) loops")
    parser.add_argument("--n-temperatures", type=int, default=5)
    parser.add_argument("--max-temperature", type=float, default=5.0)
    parser.add_argument("--skip-ours", action="store_true")
    args = parser.parse_args()
    target = md._target(args.target)
    init = md.one_mode_start(target, args.chains, args.seed)
    results = {}
    if not args.skip_ours:
        results["FlowMCKernel (tempered SMC)"] = md.run(args.target, chains=args.chains, seed=args.seed)
    results["flowMC 0.6 PT bundle"] = run_flowmc(args.flowmc_python, target, init, args.seed, args)
    print(
        f"target {args.target}, {args.chains} chains all started in the light mode; truth",
        np.round(np.asarray(target.weights), 3),
    )
    print("| sampler | weights | max error | max SE | global acc | wall s | CPU s |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        weights = " / ".join(f"{w:.3f}" for w in r["estimate"])
        print(
            f"| {name} | {weights} | {r['max_error']:.3f} | {r['se'].max():.3f} | "
            f"{r['global_accept']:.2f} | {r['wall']:.1f} | {r['cpu']:.1f} |"
        )
    if len(results) == 2:
        ours, peer = results.values()
        print(f"flowMC / ours: wall {peer['wall'] / ours['wall']:.2f}x, CPU {peer['cpu'] / ours['cpu']:.2f}x")
    peer = results["flowMC 0.6 PT bundle"]
    print(f"(flowMC Sampler.sample alone: wall {peer['sample_wall']:.1f} s, CPU {peer['sample_cpu']:.1f} s)")


if __name__ == "__main__":
    main()
