"""train() with and without chain sharding over 4 forced host devices; prints a JSON comparison.

Run by tests/test_training_sharded.py with XLA_FLAGS=--xla_force_host_platform_device_count=4
(the device count is fixed when JAX starts, hence a subprocess). Everything runs in this one
process: ``shard=False`` uses one of the four devices.
"""

import json
import tempfile
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from numpyro_ebm import negatives as ng
from numpyro_ebm import training
from numpyro_ebm.energy import EnergyModel
from numpyro_ebm.flows import default_flow
from numpyro_ebm.nets import ToyNet

start = time.time()
flow = default_flow(jax.random.key(0), 2, identity_init=True, flow_layers=1, knots=4, nn_width=8)
ebm = EnergyModel(ToyNet(2, key=jax.random.key(1)), flow.base_dist)
data = 1.5 + 0.3 * jax.random.normal(jax.random.key(2), (512, 2))


def sampler_for(flow):
    # flowMC-EBM with every cross-chain coupling the trainer has: i-SIR, a trained flow,
    # thinned negatives (keep=2: 8 chains give 16 negatives), a step size adapted from the
    # mean MALA acceptance.
    return ng.FlowMC(
        flow, num_particles=4, num_local_steps=2, num_cycles=1, keep=2, step_size=0.3, target_accept=0.6
    )


PROBES = jnp.array([[1.5, 1.5], [0.0, 0.0]])
METRICS = {  # recorded after every chunk of 25 steps
    "bank_mean": lambda ebm, flow, bank: jnp.mean(bank),
    "bank_std": lambda ebm, flow, bank: jnp.mean(jnp.std(bank, axis=0)),
    # E(data mode) - E(0): the energy up to its additive constant, which the loss cannot see
    "probe_gap": lambda ebm, flow, bank: -jnp.diff(ebm.energy(PROBES))[0],
}
OPT, FLOW_OPT = optax.adam(1e-2), optax.adam(1e-2)  # shared objects: one compilation per mesh
KW = dict(
    key=jax.random.key(3),
    optimizer=OPT,
    flow_optimizer=FLOW_OPT,
    batch_size=16,
    bank_size=32,
    chunk_size=25,
    metrics=METRICS,
    progress=False,
)
SAMPLER = sampler_for(flow)


def arrays(result):
    tree = (result.ebm, result.flow, result.bank, result.opt_state, result.flow_opt_state, result.step_size)
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


def max_abs_diff(a, b, fields=None):
    """Largest difference over every array of the results (fields=None) or over history fields."""
    if fields is None:
        return max(
            float(np.max(np.abs(x - y), initial=0.0)) for x, y in zip(arrays(a), arrays(b), strict=True)
        )
    return max(float(np.nanmax(np.abs(a.history[k] - b.history[k]))) for k in fields)


# 1. Training, 200 steps on one and on four devices.
one = training.train(ebm, data, negatives=SAMPLER, num_steps=200, **KW)
four = training.train(ebm, data, negatives=SAMPLER, num_steps=200, shard=True, **KW)

# 2. Sampling alone (both optimisers frozen) from the models trained above, with 16 chains per
#    device (batch 128, keep=2: 64 chains): per-chain work only, except the acceptance means that
#    adapt the step size.
frozen = dict(
    KW,
    optimizer=optax.set_to_zero(),
    flow_optimizer=optax.set_to_zero(),
    batch_size=128,
    bank_size=128,
    chunk_size=5,
)
trained = sampler_for(one.flow)
frozen_one = training.train(one.ebm, data, negatives=trained, num_steps=20, **frozen)
frozen_four = training.train(one.ebm, data, negatives=trained, num_steps=20, shard=True, **frozen)

# 3. A checkpoint written on four devices resumes on one; a one-device list means no sharding.
with tempfile.TemporaryDirectory() as tmp:
    first = training.train(
        ebm, data, negatives=SAMPLER, num_steps=25, shard=True, checkpoint_dir=tmp, checkpoint_every=25, **KW
    )
    resumed = training.train(
        ebm, data, negatives=SAMPLER, num_steps=50, checkpoint_dir=tmp, resume=True, **KW
    )
listed = training.train(ebm, data, negatives=SAMPLER, num_steps=25, shard=jax.devices()[:1], **KW)
unlisted = training.train(ebm, data, negatives=SAMPLER, num_steps=25, **KW)
meshed = training.train(  # shard= a 1-D Mesh (any axis name): the same as shard=True
    ebm, data, negatives=SAMPLER, num_steps=25, shard=Mesh(np.array(jax.devices()), ("d",)), **KW
)


# 4. Sizes that cannot be split over four devices: a ValueError before compiling.
def _fail_if_compiled(*args, **kwargs):
    raise AssertionError("train() reached the compiled loop despite sizes that do not split")


training._run_chunk = _fail_if_compiled
errors = {}
for name, overrides in {
    "bank": dict(bank_size=34),
    "batch": dict(batch_size=18),
    "chains": dict(batch_size=12),  # keep=2: 6 chains per step
}.items():
    try:
        training.train(ebm, data, negatives=SAMPLER, num_steps=1, shard=True, **{**KW, **overrides})
        errors[name] = ""
    except ValueError as err:
        errors[name] = str(err)

# For the record: one device, no sharding, the same 16 points through the trained energy as one
# batch and as batches of 2 (what each of 4 devices sees with 8 chains).
points = data[:16]
energy = eqx.filter_jit(lambda ebm, x: ebm.energy(x))
by_two = jnp.concatenate([energy(one.ebm, points[i : i + 2]) for i in range(0, 16, 2)])
batching_diff = float(jnp.max(jnp.abs(energy(one.ebm, points) - by_two)))

first_chunk = lambda r: {k: float(v[0]) for k, v in r.history.items()}
print(
    json.dumps(
        {
            "devices": jax.device_count(),
            "bank_sharded_over": len(four.bank.sharding.device_set),
            "bank_rows_per_device": four.bank.addressable_shards[0].data.shape[0],
            "params_replicated": bool(four.ebm.net.layers[0].weight.sharding.is_fully_replicated),
            "frozen_bank_max_abs_diff": float(np.max(np.abs(frozen_one.bank - frozen_four.bank))),
            "frozen_step_size": [float(frozen_one.step_size), float(frozen_four.step_size)],
            "frozen_history_max_abs_diff": {
                k: float(np.max(np.abs(frozen_one.history[k] - frozen_four.history[k])))
                for k in frozen_one.history
            },
            "train_first_chunk": [first_chunk(one), first_chunk(four)],
            "train_final": [
                {k: float(v[-1]) for k, v in one.history.items()},
                {k: float(v[-1]) for k, v in four.history.items()},
            ],
            "train_params_max_abs_diff": max_abs_diff(one, four),
            "resumed_step": resumed.step,
            # the run resumed on one device from the four-device checkpoint, vs. one device throughout
            "resumed_at_50": {k: float(v[1]) for k, v in resumed.history.items()},
            "one_at_50": {k: float(v[1]) for k, v in one.history.items()},
            "one_device_list_max_abs_diff": max_abs_diff(listed, unlisted),
            "mesh_vs_true_max_abs_diff": max_abs_diff(meshed, first),
            "errors": errors,
            "single_device_batching_diff": batching_diff,
            "seconds": time.time() - start,
        }
    )
)
