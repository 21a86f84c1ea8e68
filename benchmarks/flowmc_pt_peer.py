"""flowMC 0.6's parallel-tempering bundle on a Gaussian mixture: the peer side of
``benchmarks/mode_discovery_vs_flowmc.py``, run by *another* interpreter (flowMC is not a
dependency of numpyro-ebm; install it in a separate environment)::

    python3 -m venv /work/flowmc-venv && /work/flowmc-venv/bin/pip install "flowMC==0.6.*"
    /work/flowmc-venv/bin/python benchmarks/flowmc_pt_peer.py SPEC.json OUT.npz

This file imports only JAX, NumPy and flowMC. ``SPEC.json`` holds the mixture (``means``
``(K, d)``, ``variances`` ``(K,)``, ``weights`` ``(K,)``), the initial positions ``init``
``(chains, d)``, ``seed`` and the bundle's keyword arguments ``bundle``. ``OUT.npz`` gets the
production positions ``(chains, steps, d)``, the production global acceptances (finite entries),
and the wall and CPU seconds of ``Sampler.sample`` (compilation included).
"""

from __future__ import annotations

import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flowMC.resource_strategy_bundle.RQSpline_MALA_PT import RQSpline_MALA_PT_Bundle
from flowMC.Sampler import Sampler


def mixture_log_density(means, variances, weights):
    """``log sum_k w_k N(x; mu_k, v_k I)`` of one point ``(d,)``."""
    means, variances, log_w = jnp.asarray(means), jnp.asarray(variances), jnp.log(jnp.asarray(weights))
    dim = means.shape[1]

    def log_density(x, data):
        sq = jnp.sum((x[None] - means) ** 2, axis=1)
        log_n = -0.5 * sq / variances - 0.5 * dim * jnp.log(2 * jnp.pi * variances)
        return jax.nn.logsumexp(log_w + log_n)

    return log_density


def main(spec_path: str, out_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    init = jnp.asarray(spec["init"], jnp.float32)
    chains, dim = init.shape
    key_bundle, key_run = jax.random.split(jax.random.key(spec["seed"]))
    log_density = mixture_log_density(spec["means"], spec["variances"], spec["weights"])
    wall, cpu = time.perf_counter(), time.process_time()
    bundle = RQSpline_MALA_PT_Bundle(key_bundle, chains, dim, log_density, **spec["bundle"])
    # checkpoint_interval=0: no files written.
    sampler = Sampler(
        n_dim=dim, n_chains=chains, rng_key=key_run, resource_strategy_bundles=bundle, checkpoint_interval=0
    )
    sampler.sample(init, {})
    positions = np.asarray(sampler.resources["positions_production"].data)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    accs = np.asarray(sampler.resources["global_accs_production"].data)
    np.savez(out_path, positions=positions, global_accs=accs[np.isfinite(accs)], wall=wall, cpu=cpu)


if __name__ == "__main__":
    main(*sys.argv[1:3])
