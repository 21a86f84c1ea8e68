"""train(shard=True) over 4 (forced host) devices agrees with one device.

A subprocess is needed: the device count is fixed when JAX starts. The script
(tests/scripts/train_sharded.py) trains flowMC-EBM (i-SIR, a trained flow, thinned negatives, an
adapted step size) on one device and on four, and prints what the assertions below compare.

What agrees how, and why:

* Nothing is expected to be bit for bit. Unlike FlowMCKernel's analytic test target (where
  per-chain work is bit-exact), a neural energy goes through matrix products, and XLA's CPU
  kernels depend on the batch size: one device evaluating the same 16 points as one batch or as
  batches of 2 already differs in the last bits (measured: 1e-6 on energies of order 100),
  without any sharding. Sharding gives
  each device a quarter of the chains, so per-chain values round differently by about one unit
  in the last place; the gradient and acceptance sums are moreover added in another order (an
  all-reduce of per-device partial sums).
* Sampling alone (frozen models, 20 steps, 16 chains per device): the bank within 1e-5
  (measured: 4e-7; a flipped accept decision would move a chain by O(0.1)) and the same
  adapted step size.
* Training, first 25 steps: history within a relative 1e-4 (measured: 7e-7 at most).
* Training, 200 steps: statistically. Differences grow as training feeds them back (Adam divides
  by the root of small second moments, MCMC moves spread them; measured after 200 steps:
  parameters 1e-4 apart, chain positions 8e-3), and on harder targets a flipped accept decision
  or mode jump separates the runs entirely. Both runs must learn the data (mean 1.5, sd 0.3) and
  agree with each other; 32 chains give a bank mean with a standard error of about 0.05.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent / "scripts"
COMPARED = (
    "loss",
    "energy_data",
    "energy_negatives",
    "local_accept_prob",
    "flow_loss",
    "probe_gap",
    "bank_mean",
)


@pytest.fixture(scope="module")
def result() -> dict:
    # Added to the session's XLA flags (tests/conftest.py: faster compilation), not replacing them.
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4".strip()
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, str(SCRIPTS / "train_sharded.py")], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_bank_is_split_over_four_devices_and_parameters_replicated(result):
    assert result["devices"] == 4 and result["bank_sharded_over"] == 4
    assert result["bank_rows_per_device"] == 32 // 4
    assert result["params_replicated"]
    assert result["one_device_list_max_abs_diff"] == 0.0  # shard=[one device] is no sharding
    assert result["mesh_vs_true_max_abs_diff"] == 0.0  # a 1-D Mesh over all devices is shard=True


def test_sampling_agrees_to_rounding(result):
    assert result["frozen_bank_max_abs_diff"] < 1e-5
    one, four = result["frozen_step_size"]
    assert four == pytest.approx(one, rel=1e-6)
    for name, diff in result["frozen_history_max_abs_diff"].items():
        assert diff < 1e-5, name


def test_training_agrees_tightly_then_statistically(result):
    one, four = result["train_first_chunk"]
    for name in COMPARED:
        assert four[name] == pytest.approx(one[name], rel=1e-4, abs=1e-5), name
    one, four = result["train_final"]
    for run in (one, four):
        assert abs(run["bank_mean"] - 1.5) < 0.25
        assert 0.15 < run["bank_std"] < 0.6
    assert abs(one["bank_mean"] - four["bank_mean"]) < 0.25
    assert abs(one["global_accept_prob"] - four["global_accept_prob"]) < 0.2


def test_checkpoint_from_four_devices_resumes_on_one(result):
    assert result["resumed_step"] == 50
    for name in COMPARED:
        assert result["resumed_at_50"][name] == pytest.approx(result["one_at_50"][name], rel=1e-4, abs=1e-5)


def test_sizes_that_do_not_split_raise_before_compiling(result):
    errors = result["errors"]
    assert "bank_size=34" in errors["bank"] and "multiple of 4" in errors["bank"]
    assert "batch_size=18" in errors["batch"] and "multiple of 4" in errors["batch"]
    assert "6 chains per step" in errors["chains"] and "keep * 4 = 8" in errors["chains"]
