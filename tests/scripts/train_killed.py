"""A training run that is SIGKILLed halfway through writing its second checkpoint.

``python train_killed.py CHECKPOINT_DIR MARKER``: trains with a checkpoint every 2 steps; the
second checkpoint's ``state.eqx`` is written half-way, fsynced, then MARKER is created and the
process sleeps until the parent test (tests/test_faults.py) kills it. ``setup()`` is the run's
configuration, imported by the parent to run it uninterrupted and to resume it.
"""

import io
import os
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import optax
from flowjax.distributions import StandardNormal

from numpyro_ebm import negatives as ng
from numpyro_ebm import training
from numpyro_ebm.energy import EnergyModel
from numpyro_ebm.nets import ToyNet

NUM_STEPS = 6
OPTIMIZER = optax.adam(1e-2)
SAMPLER = ng.MALA(step_size=0.1, num_mcmc_steps=3, target_accept=0.6)


def setup():
    """``(ebm, data, train kwargs)``: the same run in the child and in the parent."""
    ebm = EnergyModel(ToyNet(2, key=jax.random.key(1), widths=(16, 16)), StandardNormal((2,)))
    data = 1.5 + 0.3 * jax.random.normal(jax.random.key(2), (128, 2))
    kwargs = dict(
        key=jax.random.key(3),
        negatives=SAMPLER,
        optimizer=OPTIMIZER,
        batch_size=8,
        bank_size=16,
        chunk_size=2,
        checkpoint_every=2,
        progress=False,
    )
    return ebm, data, kwargs


if __name__ == "__main__":
    checkpoint_dir, marker = Path(sys.argv[1]), Path(sys.argv[2])
    serialise = eqx.tree_serialise_leaves
    calls = []

    def serialise_then_hang(f, pytree, **kwargs):
        calls.append(1)
        if len(calls) < 2:
            return serialise(f, pytree, **kwargs)
        buffer = io.BytesIO()
        serialise(buffer, pytree, **kwargs)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # half of the state, on disk
        f.flush()
        os.fsync(f.fileno())
        marker.write_text(str(os.getpid()))
        time.sleep(600)  # killed here
        raise SystemExit("not killed")

    eqx.tree_serialise_leaves = serialise_then_hang  # what checkpoints.save_checkpoint calls
    ebm, data, kwargs = setup()
    training.train(ebm, data, num_steps=NUM_STEPS, checkpoint_dir=checkpoint_dir, **kwargs)
    raise SystemExit("the second checkpoint was never written")
