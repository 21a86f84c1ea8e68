"""A negative bank *and its flow* that lost a mode: does ``FlowMC(reference_fraction=...)`` bring
both back when the flow is trained on the negatives, as the trainer does?

The EBM is fixed and known: the tilted EBM whose law is ``2/3 N((2.5, 0), 0.5^2 I) + 1/3
N((-2.5, 0), 0.5^2 I)`` with ``rho = N(0, I)`` (``tests/test_negatives.py``'s ``_TwoModes``).
The flow (``default_flow``, identity-initialised) is first fitted to the light mode alone (500
Adam steps on 4,096 draws), the bank of 1,024 chains starts there too; then each step is the
trainer's: one ``FlowMC`` call on the whole bank, one Adam step (1e-3) of forward KL of the flow
on the negatives. Prints the bank's and the flow's heavy-mode mass along the way, and CPU s.

    PYTHONPATH=$PWD python benchmarks/bank_recovery.py --fraction 0.25
    PYTHONPATH=$PWD python benchmarks/bank_recovery.py --fraction 0
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from flowjax.distributions import StandardNormal

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_negatives import _HEAVY, _TwoModes  # noqa: E402

from numpyro_ebm import negatives as ng  # noqa: E402
from numpyro_ebm.energy import EnergyModel  # noqa: E402
from numpyro_ebm.flows import combine, default_flow, fit_flow, partition  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fraction", type=float, default=0.25)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--chains", type=int, default=1024)
    args = parser.parse_args()
    keys = jax.random.split(jax.random.key(0), 4)
    light = -_HEAVY + 0.5 * jax.random.normal(keys[0], (4096, 2))
    params, static = partition(default_flow(keys[1], 2, identity_init=True))
    optimizer = optax.adam(1e-3)
    params, _, _ = fit_flow(keys[2], params, static, optimizer.init(params), light, optimizer, num_steps=500)
    opt_state = optimizer.init(params)
    ebm = EnergyModel(_TwoModes(), StandardNormal((2,)))
    sampler = ng.FlowMC(combine(params, static), reference_fraction=args.fraction)

    @jax.jit
    def run(key, bank, step_size, params, opt_state):
        def step(carry, k):
            bank, step_size, params, opt_state = carry
            k_move, k_fit, k_probe = jax.random.split(k, 3)
            out = sampler(k_move, ebm, combine(params, static), bank, step_size)
            params, opt_state, _ = fit_flow(
                k_fit, params, static, opt_state, out.negatives, optimizer, num_steps=1
            )
            flow_heavy = jnp.mean(combine(params, static).sample(k_probe, (4096,))[:, 0] > 0)
            stats = (jnp.mean(out.final[:, 0] > 0), flow_heavy, out.global_accept_prob)
            return (out.final, out.step_size, params, opt_state), stats

        carry = (bank, step_size, params, opt_state)
        return jax.lax.scan(step, carry, jax.random.split(key, args.steps))[1]

    wall, cpu = time.perf_counter(), time.process_time()
    bank_heavy, flow_heavy, accept = run(
        keys[3], light[: args.chains], sampler.init_step_size(), params, opt_state
    )
    bank_heavy.block_until_ready()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"reference_fraction {args.fraction}: heavy-mode mass (truth 0.667)")
    for i in sorted({0, 4, 19, 49, 99, args.steps - 1} & set(range(args.steps))):
        print(
            f"  step {i + 1:4d}: bank {float(bank_heavy[i]):.3f}  flow {float(flow_heavy[i]):.3f}"
            f"  global acc {float(accept[i]):.2f}"
        )
    print(f"wall {wall:.1f} s, CPU {cpu:.1f} s (compilation included)")


if __name__ == "__main__":
    main()
