"""train(): the 2:1 example, determinism and resuming, validation, checkpoints.

Faults (a kill mid-checkpoint, diverging energies, a breaking flow) are in test_faults.py.
"""

import functools
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from numpyro_ebm import checkpoints, datasets, diagnostics, training
from numpyro_ebm import negatives as ng
from numpyro_ebm.energy import EnergyModel
from numpyro_ebm.flows import default_flow
from numpyro_ebm.nets import ToyNet
from numpyro_ebm.training import train


@pytest.mark.slow
def test_flowmc_ebm_learns_the_2to1_weight():
    """The paper's motivating example (Sec. 4.1, Fig. 1) on a laptop budget.

    Paper settings except the length: lr 1e-2 for EBM and flow, batch 64, bank 1024, i-SIR with
    32 particles, MALA step 0.01, 10 steps = [1 i-SIR, 4 MALA] x 2. Instead of 19,200 steps we run
    1,000 with both rates decayed linearly to 1e-4, which damps the mini-batch noise of the mode
    mass (with a constant 1e-2, or a decay to 1e-3 only, the weight still wanders by +-0.05-0.1
    from chunk to chunk; the paper's Fig. 1 curve sits at about 0.72-0.75).

    Tolerance: over 20 seeds (train key, net and flow initialisation) this budget gave EBM
    weights of the (1.5, 1.5) mode with mean 0.673, standard deviation 0.014 and largest error
    0.036 (600 steps: standard deviation 0.021). 0.06 is about 4 standard deviations beyond the
    small positive bias. A sampler that does not mix between the modes (ULA-EBM in the paper's
    Fig. 1) swings between 0 and 1 and fails it.
    """
    target = datasets.two_modes_target()
    data = datasets.two_modes(jax.random.key(0), 16384)
    flow = default_flow(jax.random.key(10), 2, identity_init=True)
    ebm = EnergyModel(ToyNet(2, key=jax.random.key(20)), flow.base_dist)
    num_steps = 1000
    schedule = optax.linear_schedule(1e-2, 1e-4, num_steps)
    result = train(
        ebm,
        data,
        key=jax.random.key(0),
        negatives=ng.FlowMC(flow, num_particles=32, step_size=0.01, num_local_steps=4, num_cycles=2),
        optimizer=optax.adam(schedule),
        flow_optimizer=optax.adam(schedule),
        num_steps=num_steps,
        batch_size=64,
        bank_size=1024,
        chunk_size=250,
        progress=False,
    )
    weight = float(diagnostics.zone_weights(result.ebm, target)[1])
    print(f"flowMC-EBM weight of the (1.5, 1.5) mode: {weight:.3f} (truth 0.667)")
    assert abs(weight - 2 / 3) < 0.06
    # The flow proposals are accepted: the chains jump between the modes.
    assert result.history["global_accept_prob"][-1] > 0.5
    assert abs(float(diagnostics.zone_weights(result.bank, target)[1]) - 2 / 3) < 0.1


@pytest.mark.slow
def test_defaults_learn_three_unequal_weights_in_2d():
    """train() with every default (FlowMC(flow) as it comes, default schedule) on three unequal
    Gaussians, weights (0.5, 0.3, 0.2), by grid integration of the trained EBM.

    Budget: 1500 steps, batch 128, bank 2048 (the issue's 4000 x 256 x 8192 gives errors of
    0.005, docs/guide-training.md). Tolerance: over seeds 0-3 of this budget the largest weight
    error was 0.012 / 0.008 / 0.003 / 0.012, each weight's standard deviation across seeds at most
    0.005 and its mean offset at most 0.009 (the middle mode, low: 0.291 for 0.3); 0.03 is that
    offset plus 4 standard deviations. At a constant rate (the old default) the final weights
    wander by 0.05-0.15 in the
    last quarter of training, and a sampler that does not mix between modes swings 0 / 1.
    """
    from _weights_setup import train_2d_defaults

    target, result = train_2d_defaults(0, num_steps=1500, batch_size=128, bank_size=2048)
    weights = np.asarray(diagnostics.zone_weights(result.ebm, target))
    print(f"weights {weights.round(4)}, truth {np.asarray(target.weights)}")
    assert np.max(np.abs(weights - np.asarray(target.weights))) < 0.03
    # The monitor: one row per chunk, the model's weights by flow importance weights (2048
    # draws, ESS > 0.9 n: SE < 0.012) and the bank's agree with the grid within 4 SE.
    assert result.history["model_zone_weights"].shape == (15, 3)
    assert result.history["flow_ess"][-1] > 0.5
    for name in ("model_zone_weights", "bank_zone_weights"):
        assert np.max(np.abs(result.history[name][-1] - weights)) < 0.05
    assert 0.4 < float(result.step_size) / 0.1 < 4  # adapted from 0.1 toward 0.574 acceptance


@functools.cache
def _small_run_setup():
    flow = default_flow(jax.random.key(0), 2, identity_init=True, flow_layers=2, knots=4, nn_width=8)
    ebm = EnergyModel(ToyNet(2, key=jax.random.key(1)), flow.base_dist)
    sampler = ng.FlowMC(flow, num_particles=8, num_local_steps=2, num_cycles=1, keep=3)
    data = datasets.two_modes(jax.random.key(2), 256)
    return ebm, sampler, data


def _assert_trees_equal(a, b):
    leaves_a, leaves_b = (
        jax.tree.leaves(eqx.filter(a, eqx.is_array)),
        jax.tree.leaves(eqx.filter(b, eqx.is_array)),
    )
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_resume_equals_uninterrupted_and_same_key_same_result(tmp_path):
    ebm, sampler, data = _small_run_setup()
    # The same optimiser objects in every call: train() then reuses one compilation.
    opt, flow_opt = optax.adam(1e-2), optax.adam(1e-2)
    metrics = {"bank_mean": lambda ebm, flow, bank: jnp.mean(bank)}
    kwargs = dict(
        key=jax.random.key(3),
        negatives=sampler,
        optimizer=opt,
        flow_optimizer=flow_opt,
        batch_size=12,
        bank_size=48,
        chunk_size=2,
        metrics=metrics,
        average_last=0.0,  # the averaged tail depends on num_steps, which grows on resume here
        ema=0.5,  # the moving average is part of the state a checkpoint must carry
        progress=False,
    )
    full = train(ebm, data, num_steps=6, **kwargs)
    again = train(ebm, data, num_steps=6, **kwargs)
    first = train(ebm, data, num_steps=4, checkpoint_dir=tmp_path, checkpoint_every=2, **kwargs)
    assert checkpoints.latest_checkpoint(tmp_path).name == "step-000000004"
    resumed = train(
        ebm, data, num_steps=6, checkpoint_dir=tmp_path, checkpoint_every=2, resume=True, **kwargs
    )

    assert first.step == 4 and resumed.step == 6

    def state(r):
        return (r.ebm, r.ebm_last, r.flow, r.bank, r.opt_state, r.flow_opt_state, r.step_size)

    for other in (again, resumed):
        _assert_trees_equal(state(full), state(other))
        assert other.history.keys() == full.history.keys()
        for name in full.history:
            np.testing.assert_array_equal(other.history[name], full.history[name])
    assert list(full.history["step"]) == [2, 4, 6]
    assert np.all(np.isfinite(full.history["bank_mean"]))
    # The run changed the models; the flow is trained on the negatives.
    assert float(jnp.abs(full.ebm.energy(data)).max()) > 0
    assert np.all(np.isfinite(full.history["flow_loss"]))
    # Resuming a finished run returns it without training.
    done = train(ebm, data, num_steps=6, checkpoint_dir=tmp_path, resume=True, **kwargs)
    _assert_trees_equal(done.ebm, full.ebm)


def _fail_if_compiled(*args, **kwargs):
    raise AssertionError("train() reached the compiled loop despite bad arguments")


@pytest.mark.parametrize(
    "data, overrides, error, match",
    [
        (np.full((64, 2), np.nan), {}, ValueError, "NaN or inf"),
        (np.r_[np.zeros((63, 2)), [[np.inf, 0.0]]], {}, ValueError, "row 63"),
        (np.zeros((64, 3)), {}, ValueError, "dimension 3"),
        (np.zeros((4, 2)), {}, ValueError, "fewer than batch_size"),
        (np.zeros(64), {}, ValueError, r"shape \(n, dim\)"),
        (np.array([["a", "b"]] * 64), {}, TypeError, "real numbers"),
        (np.zeros((64, 2)), {"bank_size": 4}, ValueError, "bank_size"),
        (np.zeros((64, 2)), {"num_steps": 0}, ValueError, "num_steps"),
        (np.zeros((64, 2)), {"energy_l2": -1.0}, ValueError, "energy_l2"),
        (np.zeros((64, 2)), {"ema": 1.0}, ValueError, r"ema must be a number in \[0, 1\)"),
        (np.zeros((64, 2)), {"resume": True}, ValueError, "checkpoint_dir"),
        (np.zeros((64, 2)), {"negatives": "flowmc"}, TypeError, "negatives"),
        (np.zeros((64, 2)), {"metrics": {"loss": jnp.mean}}, ValueError, "metrics"),
        (np.zeros((64, 2)), {"key": 0}, TypeError, "PRNG key"),
    ],
)
def test_bad_arguments_raise_before_compiling(monkeypatch, data, overrides, error, match):
    monkeypatch.setattr(training, "_run_chunk", _fail_if_compiled)
    ebm, sampler, _ = _small_run_setup()
    kwargs = dict(
        key=jax.random.key(0), negatives=sampler, num_steps=4, batch_size=12, bank_size=48, progress=False
    )
    kwargs.update(overrides)
    with pytest.raises(error, match=match):
        train(ebm, data, **kwargs)


def test_checkpoint_files_are_atomic_json_and_pruned(tmp_path):
    state = {"w": jnp.arange(3.0), "count": jnp.asarray(2, jnp.int32)}
    for step in (1, 2, 3):
        checkpoints.save_checkpoint(tmp_path, step, state, {"history": {"loss": [float("nan"), 1.0]}}, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000002", "step-000000003"]
    last = checkpoints.latest_checkpoint(tmp_path)
    manifest = json.loads((last / "manifest.json").read_text())
    assert manifest["step"] == 3 and manifest["format"] == checkpoints.FORMAT
    assert not any(p.suffix == ".pkl" for p in last.iterdir())
    loaded, _ = checkpoints.load_checkpoint(last, {"w": jnp.zeros(3), "count": jnp.asarray(0, jnp.int32)})
    np.testing.assert_array_equal(loaded["w"], state["w"])
    with pytest.raises(ValueError, match="does not match"):
        checkpoints.load_checkpoint(last, {"w": jnp.zeros(4), "count": jnp.asarray(0, jnp.int32)})
    (tmp_path / ".tmp-crashed").mkdir()  # a crash mid-write leaves only an ignored temp dir
    assert checkpoints.latest_checkpoint(tmp_path) == last


def test_refuses_to_mix_runs_in_one_checkpoint_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "_run_chunk", _fail_if_compiled)
    ebm, sampler, data = _small_run_setup()
    checkpoints.save_checkpoint(tmp_path, 2, {"w": jnp.zeros(1)}, {})
    with pytest.raises(ValueError, match="resume=True"):
        train(
            ebm,
            data,
            key=jax.random.key(0),
            negatives=sampler,
            num_steps=4,
            batch_size=12,
            bank_size=48,
            checkpoint_dir=tmp_path,
            progress=False,
        )


def test_resume_refuses_other_settings_and_names_them(tmp_path):
    ebm, sampler, data = _small_run_setup()
    kwargs = dict(key=jax.random.key(3), batch_size=12, bank_size=48, chunk_size=2, progress=False)
    train(ebm, data, negatives=sampler, num_steps=2, checkpoint_dir=tmp_path, **kwargs)
    other = eqx.tree_at(lambda s: s.settings, sampler, sampler.settings.replace(num_particles=6))
    with pytest.raises(
        ValueError, match=r"num_steps: checkpoint 2, now 4; sampler\.num_particles: checkpoint 8, now 6"
    ):
        train(ebm, data, negatives=other, num_steps=4, checkpoint_dir=tmp_path, resume=True, **kwargs)
    with pytest.raises(ValueError, match=r"ema: checkpoint 0\.0, now 0\.9"):
        train(
            ebm, data, negatives=sampler, num_steps=2, checkpoint_dir=tmp_path, resume=True, ema=0.9, **kwargs
        )
    with pytest.raises(ValueError, match=r"data: checkpoint"):
        train(ebm, data + 1.0, negatives=sampler, num_steps=2, checkpoint_dir=tmp_path, resume=True, **kwargs)


class _Bowl(eqx.Module):
    """``E(x) = -w |x|^2``: an untilted EBM whose density grows away from the origin, so Langevin
    chains fly off geometrically (x 1.05 per ULA step at w = 0.05, step 0.5) with finite energies."""

    w: jax.Array
    dim: int = eqx.field(static=True, default=2)

    def __call__(self, x):
        return -self.w * jnp.sum(x**2)


def test_finite_runaway_stops_naming_the_step_and_keeps_the_checkpoint(tmp_path):
    data = jax.random.normal(jax.random.key(0), (64, 2))
    ebm = EnergyModel(_Bowl(jnp.asarray(0.05)), None)
    sampler = ng.ULA(step_size=0.5, num_mcmc_steps=10, start="gaussian")
    kwargs = dict(key=jax.random.key(1), negatives=sampler, batch_size=8, bank_size=16, progress=False)
    with pytest.raises(training.TrainingDivergedError, match=r"ran away .* at training step (\d+)") as info:
        train(ebm, data, num_steps=40, chunk_size=2, checkpoint_dir=tmp_path, checkpoint_every=2, **kwargs)
    err = info.value
    assert 2 < err.step < 40 and f"step {err.step} " in str(err)
    # The last checkpoint is the one before the bad chunk, untouched and loadable.
    last = checkpoints.latest_checkpoint(tmp_path)
    assert err.checkpoint == last and last.name == f"step-{(err.step - 1) // 2 * 2:09d}"
    assert checkpoints.read_manifest(last)["step"] == (err.step - 1) // 2 * 2
    # The same run without the guard goes on with finite energies: the guard saw what NaN checks miss.
    free = train(ebm, data, num_steps=err.step, chunk_size=err.step, max_chain_distance=None, **kwargs)
    radius = float(jnp.linalg.norm(data - data.mean(0), axis=-1).max())
    assert np.all(np.isfinite(free.history["loss"]))
    assert float(jnp.linalg.norm(free.bank - data.mean(0), axis=-1).max()) > 100 * radius


def test_monitor_disagreement_rule():
    from numpyro_ebm.training import monitor

    # Equal weights: 0 SE. Bank 8192 chains, ESS 2048: SE of a 0.5 weight is ~0.012, so 0.1 is ~8 SE.
    assert monitor.zone_weight_disagreement([0.5, 0.5], [0.5, 0.5], 2048, 8192) == 0.0
    assert monitor.zone_weight_disagreement([0.6, 0.4], [0.5, 0.5], 2048, 8192) > 4
    assert monitor.zone_weight_disagreement([0.51, 0.49], [0.5, 0.5], 2048, 8192) < 4
    history = {"model_zone_weights": [[0.6, 0.4]], "bank_zone_weights": [[0.5, 0.5]], "flow_ess": [1.0]}
    with pytest.warns(training.WeightsDisagreeWarning, match="standard errors"):
        monitor.warn_if_disagree(history, 8192, 2048)
