"""Run FlowMCKernel with and without chain sharding; print a JSON comparison (for test_sharding)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import MCMC

import numpyro_ebm as ne
from numpyro_ebm.datasets import two_gaussians_target

TARGET = two_gaussians_target()


def run(shard, **frozen):
    kernel = ne.FlowMCKernel(
        potential_fn=lambda x: -TARGET.log_prob(x), global_move="isir", num_particles=8, shard=shard, **frozen
    )
    mcmc = MCMC(
        kernel, num_warmup=200, num_samples=300, num_chains=32, chain_method="vectorized", progress_bar=False
    )
    mcmc.run(jax.random.key(0), init_params=jax.random.normal(jax.random.key(1), (32, 2)))
    return mcmc


frozen = dict(train_flow=False, adapt_step_size=False)
a, b = run(False, **frozen), run(True, **frozen)
c, d = run(False), run(True)
try:  # 30 chains cannot be split over 4 devices: a clear error before compiling
    MCMC(
        ne.FlowMCKernel(potential_fn=lambda x: -TARGET.log_prob(x), shard=True),
        num_warmup=1,
        num_samples=1,
        num_chains=30,
        chain_method="vectorized",
        progress_bar=False,
    ).run(jax.random.key(0), init_params=jnp.zeros((30, 2)))
    uneven_error = ""
except ValueError as err:
    uneven_error = str(err)
weight = lambda m: float((m.get_samples().sum(-1) > 0).mean())
print(
    json.dumps(
        {
            "devices": jax.device_count(),
            "sharded_over": len(b.last_state.z.sharding.device_set),
            "frozen_max_abs_diff": float(
                np.abs(np.asarray(a.get_samples()) - np.asarray(b.get_samples())).max()
            ),
            "weight_unsharded": weight(c),
            "weight_sharded": weight(d),
            "uneven_error": uneven_error,
        }
    )
)
