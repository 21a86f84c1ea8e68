"""Mode discovery from one-mode starts: FlowMCKernel with and without its tempered SMC warmup.

Targets (truth known):

* ``2d``: the 2:1 two-Gaussian mixture, chains started in the light mode;
* ``d16`` / ``d64``: the four-mode mixture of ``gaussian_mixture_target`` with weights
  0.1 / 0.2 / 0.3 / 0.4 (``d16``) or 1/4 each (``d64``, Table 2's target), chains started in mode 0;
* ``labels``: a K = 3 Gaussian mixture model (NumPyro; Dirichlet weights, unordered means,
  HalfNormal scale) on three separated clusters: 6 labellings of mass 1/6, init_to_uniform.

``potential_fn`` targets get ``TemperedSMC(reference=Normal(0, 5))``; the model uses the defaults.
Prints the zone weights (mean over chains, per-chain SE), global acceptance, the trained flow's
own importance weights of the zones (20,000 proposals), SMC levels, and
wall and CPU seconds of the whole ``MCMC.run`` (CPU time is steadier on a shared machine).

    python benchmarks/mode_discovery.py 2d            # tempering on (default)
    python benchmarks/mode_discovery.py 2d --off      # tempering=None: the previous behaviour
    python benchmarks/mode_discovery.py d64 --warm-buffer-levels 1   # warm fits to the current particles only
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
import numpyro.distributions as dist
from numpyro.infer import MCMC

import numpyro_ebm as ne
from numpyro_ebm.datasets import GaussianMixture, Target, gaussian_mixture_target, two_gaussians_target
from numpyro_ebm.datasets import label_switching as labels


def _target(name):
    if name == "2d":
        return two_gaussians_target()
    base = gaussian_mixture_target(16 if name == "d16" else 64)
    weights = np.array([0.1, 0.2, 0.3, 0.4]) if name == "d16" else np.full(4, 0.25)
    return Target(
        name, GaussianMixture(base.distribution.means, np.ones(4), weights), base.zones, weights, None
    )


def one_mode_start(target: Target, chains: int, seed: int) -> np.ndarray:
    """``chains`` starts around the first mean (the light mode), ``(chains, dim)``."""
    key = jax.random.fold_in(jax.random.key(seed), 1)
    return np.asarray(target.distribution.means[0] + 0.5 * jax.random.normal(key, (chains, target.dim)))


def zone_weights(zones: np.ndarray, num_zones: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean over chains of the per-chain zone frequencies, and its SE; ``zones`` is ``(chains, draws)``."""
    per_chain = np.stack([(zones == k).mean(axis=1) for k in range(num_zones)], axis=-1)
    return per_chain.mean(0), per_chain.std(0, ddof=1) / np.sqrt(zones.shape[0])


def run(name, *, off=False, global_move="imh", chains=64, warmup=300, samples=300, seed=0, buffer=None):
    """Run FlowMCKernel on target ``name``; a dict of the figures printed by :func:`main`."""
    key = jax.random.key(seed)
    if name == "labels":
        kernel = ne.FlowMCKernel(labels.model, global_move=global_move, tempering=None if off else "smc")
        run_args, run_kwargs = (labels.DATA,), {}
        truth = np.full(len(labels.LABELLINGS), 1 / len(labels.LABELLINGS))
    else:
        target = _target(name)
        reference = dist.Normal(0.0, 5.0).expand([target.dim])
        tempering = None if off else ne.tempering.TemperedSMC(reference=reference, **(buffer or {}))
        kernel = ne.FlowMCKernel(
            potential_fn=lambda x: -target.log_prob(x),
            global_move=global_move,
            num_particles=16,
            tempering=tempering,
        )
        run_args, run_kwargs = (), {"init_params": one_mode_start(target, chains, seed)}
        truth = np.asarray(target.weights)
    mcmc = MCMC(
        kernel,
        num_warmup=warmup,
        num_samples=samples,
        num_chains=chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    wall, cpu = time.perf_counter(), time.process_time()
    mcmc.run(key, *run_args, extra_fields=("global_accept_prob",), **run_kwargs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    draws = mcmc.get_samples(group_by_chain=True)
    zones = labels.labelling(draws["mu"]) if name == "labels" else np.asarray(target.zones(draws))
    estimate, se = zone_weights(zones, len(truth))
    out = dict(
        truth=truth,
        estimate=estimate,
        se=se,
        max_error=float(np.abs(estimate - truth).max()),
        global_accept=float(mcmc.get_extra_fields()["global_accept_prob"].mean()),
        wall=wall,
        cpu=cpu,
        smc=kernel.tempering_result,
    )
    if name != "labels":  # the trained flow's own view of the weights (20k proposals)
        out["flow_weights"] = ne.diagnostics.importance_zone_weights(
            target, kernel.get_flow(mcmc.last_state), target, jax.random.fold_in(key, 2), 20_000
        )
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("target", choices=["2d", "d16", "d64", "labels"])
    parser.add_argument("--off", action="store_true", help="tempering=None")
    parser.add_argument("--global-move", default="imh")
    parser.add_argument("--chains", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warm-buffer-levels", type=int, help="TemperedSMC.warm_buffer_levels")
    args = parser.parse_args()
    buffer = {} if args.warm_buffer_levels is None else {"warm_buffer_levels": args.warm_buffer_levels}
    out = run(
        args.target,
        off=args.off,
        global_move=args.global_move,
        chains=args.chains,
        warmup=args.warmup,
        samples=args.samples,
        seed=args.seed,
        buffer=buffer,
    )
    print(f"target {args.target}, tempering {'off' if args.off else 'smc'}, {args.global_move}")
    print("truth    ", np.round(out["truth"], 3))
    print("estimate ", np.round(out["estimate"], 3), " max |err|", round(out["max_error"], 3))
    print("SE       ", np.round(out["se"], 3))
    print("global acceptance (production)", round(out["global_accept"], 3))
    if "flow_weights" in out:
        flow_w, ess = out["flow_weights"]
        print("flow importance weights", np.round(np.asarray(flow_w), 3), f" ESS {float(ess):.0f}")
    smc = out["smc"]
    if smc is not None:
        print(
            f"SMC: {smc.num_levels} levels, {smc.position.shape[0]} particles, log Z {float(smc.log_z):.3f}"
        )
    print(f"wall {out['wall']:.1f} s, CPU {out['cpu']:.1f} s")


if __name__ == "__main__":
    main()
