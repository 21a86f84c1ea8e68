"""How the cost of one flowMC cycle grows with chains, i-SIR particles and dimension.

Times one compiled ``flowmc_step`` (i-SIR global move + 4 MALA steps) on the d-dimensional
four-mode mixture with the default spline flow, after compilation, as the median of repeated
calls. Each sweep varies one factor from a base point (64 chains, 16 particles, d = 16) and
reports seconds per cycle and microseconds per (chain x particle) evaluation, so linear growth
shows as a flat last column.

    python benchmarks/scaling.py            # writes the scaling section of docs/benchmarks.md
    python benchmarks/scaling.py --no-write
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time

import jax
from _doc_section import write_section
from tqdm import tqdm

from numpyro_ebm import flowmc_step, flows, moves
from numpyro_ebm.datasets import gaussian_mixture_target

BASE = {"chains": 64, "particles": 16, "dim": 16}
SWEEPS = {
    "chains": [16, 64, 256, 1024],
    "particles": [4, 16, 64, 256],
    "dim": [4, 16, 64, 128],
}


def time_cycle(chains: int, particles: int, dim: int, repeats: int = 7) -> float:
    """Median wall seconds of one compiled flowMC cycle."""
    target = gaussian_mixture_target(dim)
    flow = flows.default_flow(jax.random.key(0), dim, identity_init=True)
    params, static = flows.partition(flow)
    state = moves.init_chains(jax.random.normal(jax.random.key(1), (chains, dim)), target.log_prob)

    @jax.jit
    def cycle(key, state, params):
        return flowmc_step(
            key,
            state,
            target.log_prob,
            flows.combine(params, static),
            step_size=0.05,
            num_local_steps=4,
            global_move="isir",
            num_particles=particles,
        )

    jax.block_until_ready(cycle(jax.random.key(2), state, params))  # compile
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        state, _ = jax.block_until_ready(cycle(jax.random.key(3 + i), state, params))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md")
    args = parser.parse_args(argv)
    rows = []
    configs = [(factor, value) for factor, values in SWEEPS.items() for value in values]
    for factor, value in tqdm(configs, desc="scaling"):
        setting = {**BASE, factor: value}
        seconds = time_cycle(**setting)
        per_eval = 1e6 * seconds / (setting["chains"] * setting["particles"])
        rows.append((factor, setting, seconds, per_eval))
    lines = [
        "| varied | chains | particles | dim | ms per cycle | µs per chain×particle |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {f} | {s['chains']} | {s['particles']} | {s['dim']} | {1e3 * t:.2f} | {e:.2f} |"
        for f, s, t, e in rows
    ]
    table = "\n".join(lines)
    print(table)
    if args.no_write:
        return
    body = (
        f"Command: `python benchmarks/scaling.py`  \nDate: {datetime.date.today()}, "
        f"machine: {platform.machine()} CPU, {jax.device_count()} device(s), jax {jax.__version__}\n\n"
        f"{table}"
    )
    write_section("scaling", body, "Cost against chains, particles and dimension")


if __name__ == "__main__":
    main()
