"""Faults during training: a process killed mid-checkpoint, a diverging energy, a flow that
breaks mid-run; and bad input caught before anything is compiled."""

import importlib.util
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as npd
import optax
import pytest
from flowjax.distributions import AbstractDistribution, Normal, StandardNormal
from jaxtyping import Array

from numpyro_ebm import checkpoints, training
from numpyro_ebm import negatives as ng
from numpyro_ebm.energy import EnergyModel
from numpyro_ebm.flows import default_flow
from numpyro_ebm.nets import ToyNet
from numpyro_ebm.training import TrainingDivergedError, train

SCRIPTS = Path(__file__).parent / "scripts"


def _assert_trees_equal(a, b):
    leaves_a = jax.tree.leaves(eqx.filter(a, eqx.is_array))
    leaves_b = jax.tree.leaves(eqx.filter(b, eqx.is_array))
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _assert_results_equal(a: training.TrainResult, b: training.TrainResult):
    _assert_trees_equal(
        (a.ebm, a.flow, a.bank, a.opt_state, a.flow_opt_state, a.step_size),
        (b.ebm, b.flow, b.bank, b.opt_state, b.flow_opt_state, b.step_size),
    )
    assert a.step == b.step and a.history.keys() == b.history.keys()
    for name in a.history:
        np.testing.assert_array_equal(a.history[name], b.history[name])


# ------------------------------------------------------------------ killed while checkpointing
def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_one_and_resume_is_exact(tmp_path):
    """A real process, killed (SIGKILL: no cleanup) with half of checkpoint 4 on disk."""
    spec = importlib.util.spec_from_file_location("train_killed", SCRIPTS / "train_killed.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    killed_dir, marker, log = tmp_path / "killed", tmp_path / "writing", tmp_path / "child.log"
    with open(log, "w") as out:
        child = subprocess.Popen(
            [sys.executable, str(SCRIPTS / "train_killed.py"), str(killed_dir), str(marker)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert child.poll() is None, f"the child ended early:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the child never reached its second checkpoint"
            time.sleep(0.1)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None and not marker.exists():
            child.kill()
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL

    # On disk: checkpoint 2, complete, and the abandoned temporary directory of checkpoint 4.
    latest = checkpoints.latest_checkpoint(killed_dir)
    assert latest is not None and latest.name == "step-000000002"
    assert checkpoints.read_manifest(latest)["step"] == 2
    (partial,) = killed_dir.glob(".tmp-*")
    assert (partial / "state.eqx").stat().st_size > 0 and not (partial / "manifest.json").exists()

    # It is the checkpoint an uninterrupted run writes at step 2, byte for byte, and it loads.
    ebm, data, kwargs = script.setup()
    full_dir = tmp_path / "full"
    full = train(ebm, data, num_steps=script.NUM_STEPS, checkpoint_dir=full_dir, checkpoints_kept=3, **kwargs)
    for name in ("state.eqx", "manifest.json"):
        assert (latest / name).read_bytes() == (full_dir / "step-000000002" / name).read_bytes()

    # Resuming after the kill reproduces the uninterrupted run exactly; the next save cleans up.
    resumed = train(ebm, data, num_steps=script.NUM_STEPS, checkpoint_dir=killed_dir, resume=True, **kwargs)
    _assert_results_equal(full, resumed)
    assert not list(killed_dir.glob(".tmp-*"))
    assert checkpoints.latest_checkpoint(killed_dir).name == f"step-{script.NUM_STEPS:09d}"


# ------------------------------------------------------------------ an energy that diverges
class ExplodingNet(eqx.Module):
    """``E(x) = s |x|^2``, plus ``bad`` (NaN or inf) once ``s > 0.25``.

    Trained with sign-SGD of rate 0.1 on data near 0 against negatives near N(0, I), ``s`` gains
    exactly 0.1 per step (the gradient ``mean |x+|^2 - mean |x-|^2`` is negative): ``s = 0.3``
    after step 3, so the energies of step 4 are the first non-finite ones.
    """

    s: Array
    bad: float = eqx.field(static=True)
    dim: int = eqx.field(static=True, default=2)

    def __call__(self, x):
        return self.s * jnp.sum(x**2) + jnp.where(self.s > 0.25, self.bad, 0.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_energy_stops_at_its_step_and_keeps_the_last_checkpoint(tmp_path, bad):
    ebm = EnergyModel(ExplodingNet(jnp.zeros(()), bad), StandardNormal((2,)))
    data = 0.1 * jax.random.normal(jax.random.key(1), (64, 2))
    kwargs = dict(
        key=jax.random.key(2),
        negatives=ng.MALA(step_size=0.1, num_mcmc_steps=2),
        optimizer=optax.chain(optax.scale_by_sign(), optax.scale(-0.1)),
        batch_size=16,
        bank_size=32,
        chunk_size=2,
        checkpoint_dir=tmp_path,
        checkpoint_every=2,
        progress=False,
    )
    with pytest.raises(TrainingDivergedError) as info:
        train(ebm, data, num_steps=10, **kwargs)
    error = info.value
    assert isinstance(error, FloatingPointError)
    assert error.step == 4 and "at training step 4 (of 10)" in str(error)
    last = checkpoints.latest_checkpoint(tmp_path)
    assert error.checkpoint == last and last.name == "step-000000002" and str(last) in str(error)
    assert not list(tmp_path.glob(".tmp-*"))

    # The last good checkpoint loads: "resuming" a 2-step run returns it as saved.
    saved = train(ebm, data, num_steps=2, resume=True, **kwargs)
    assert saved.step == 2 and float(saved.ebm.net.s) == pytest.approx(0.2)
    assert np.all(np.isfinite(saved.history["loss"])) and bool(jnp.all(jnp.isfinite(saved.bank)))
    # Resuming replays the same steps: the same error at the same step, the checkpoint untouched.
    with pytest.raises(TrainingDivergedError, match="at training step 4 ") as again:
        train(ebm, data, num_steps=10, resume=True, **kwargs)
    assert again.value.checkpoint == last
    assert checkpoints.latest_checkpoint(tmp_path) == last


# ------------------------------------------------------------------ a flow that breaks mid-run
class BreaksMidRun(AbstractDistribution):
    """A flow that breaks down once training has moved its standardisation by more than
    ``after``: then half of its proposals (those with ``x[0] > x[1]``) come out as NaN points
    with NaN log-densities. Were one accepted, NaN would enter the bank (and the loss)."""

    flow: AbstractDistribution
    after: float = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True)

    def __init__(self, flow, after):
        self.flow, self.after, self.shape, self.cond_shape = flow, after, flow.shape, None

    def broken(self):
        return jnp.mean(self.flow.bijection.bijections[-1].loc) > self.after

    def _log_prob(self, x, condition=None):
        return self.flow._log_prob(x, condition)

    def _sample(self, key, condition=None):
        return self.flow._sample(key, condition)

    def _sample_and_log_prob(self, key, condition=None):
        x, log_q = self.flow._sample_and_log_prob(key, condition)
        bad = self.broken() & (x[0] > x[1])
        return jnp.where(bad, jnp.nan, x), jnp.where(bad, jnp.nan, log_q)


def test_flow_with_nan_log_densities_mid_run_never_reaches_the_bank():
    flow = default_flow(jax.random.key(0), 2, identity_init=True, flow_layers=1, knots=4, nn_width=8)
    ebm = EnergyModel(ToyNet(2, key=jax.random.key(1), widths=(16, 16)), flow.base_dist)
    data = 1.5 + 0.3 * jax.random.normal(jax.random.key(2), (256, 2))
    result = train(
        ebm,
        data,
        key=jax.random.key(3),
        negatives=ng.FlowMC(
            BreaksMidRun(flow, after=0.005), num_particles=8, num_local_steps=2, num_cycles=1
        ),
        optimizer=optax.adam(1e-2),
        flow_optimizer=optax.adam(1e-2),
        num_steps=20,
        batch_size=16,
        bank_size=32,
        chunk_size=5,
        metrics={
            "broken": lambda ebm, flow, bank: flow.broken(),
            "bank_finite": lambda ebm, flow, bank: jnp.all(jnp.isfinite(bank)),
        },
        progress=False,
    )
    history = result.history
    assert history["broken"][0] == 0 and history["broken"][-1] == 1  # it broke mid-run
    assert np.all(history["bank_finite"] == 1) and bool(jnp.all(jnp.isfinite(result.bank)))
    for name in ("loss", "energy_negatives", "flow_loss", "global_accept_prob"):
        assert np.all(np.isfinite(history[name])), name
    assert history["global_accept_prob"][-1] > 0.05  # the finite half of the proposals is still used


# ------------------------------------------------------------------ bad input, before compiling
class _Compiled(Exception):
    pass


def _stop_if_compiled(*args, **kwargs):
    raise _Compiled


@pytest.fixture
def no_compile(monkeypatch):
    monkeypatch.setattr(training, "_run_chunk", _stop_if_compiled)


def _flow(dim=2, **kwargs):
    return default_flow(
        jax.random.key(0), dim, identity_init=True, flow_layers=1, knots=4, nn_width=8, **kwargs
    )


def _train(ebm, negatives, data=None, **overrides):
    data = np.zeros((64, ebm.dim)) if data is None else data
    kwargs = dict(key=jax.random.key(0), negatives=negatives, num_steps=4, batch_size=8, bank_size=16)
    return train(ebm, data, progress=False, **{**kwargs, **overrides})


@pytest.mark.parametrize(
    "make, error, match",
    [
        (
            lambda: _train(_ebm(), ng.FlowMC(_flow(3))),
            ValueError,
            r"flow has shape \(3,\) but the EBM has dim 2",
        ),
        (lambda: _train(_ebm(), ng.FlowMC(_flow(), keep=3)), ValueError, "multiple of keep=3"),
        (lambda: _train(_ebm(), ng.MALA(), bank_size=4), ValueError, "bank_size=4 must be >= batch_size=8"),
        (lambda: _train(_ebm(), ng.MALA(), batch_size=0), ValueError, "batch_size must be an integer >= 1"),
        (lambda: _train(_ebm(), ng.MALA(), data=np.zeros((0, 2))), ValueError, r"empty \(shape \(0, 2\)\)"),
        (lambda: _train(_ebm(), ng.MALA(), data=np.zeros((5, 2))), ValueError, "5 points, fewer than"),
        (lambda: _train(_ebm(), ng.MALA(), data=np.zeros((64, 2, 1))), ValueError, r"shape \(n, dim\)"),
        (lambda: _train(_ebm(), ng.MALA(), data=np.full((64, 2), 1e39)), ValueError, "overflows float32"),
        (lambda: _train(_ebm(), ng.MALA(), shard="all"), TypeError, "shard must be"),
        (lambda: ng.FlowMC(_flow(), step_size=-0.01), ValueError, "step_size must be positive"),
        (lambda: ng.MALA(step_size=-1.0), ValueError, "step_size must be a positive"),
        (lambda: ng.FlowMC(_flow(), num_particles=0), ValueError, "num_particles must be an integer >= 2"),
        (lambda: ng.ULA(num_mcmc_steps=0), ValueError, "num_mcmc_steps must be an integer >= 1"),
    ],
    ids=[
        "flow-dim",
        "keep",
        "bank-size",
        "batch-size",
        "empty-data",
        "too-few-points",
        "data-3d",
        "data-overflow",
        "shard-type",
        "negative-step",
        "negative-mala-step",
        "zero-particles",
        "zero-steps",
    ],
)
def test_bad_input_raises_naming_the_value_and_the_fix(no_compile, make, error, match):
    with pytest.raises(error, match=match):
        make()


def _ebm(base=None, dim=2):
    return EnergyModel(
        ToyNet(dim, key=jax.random.key(1), widths=(8,)), StandardNormal((dim,)) if base is None else base
    )


def test_numpy_scalar_step_sizes_are_accepted():
    assert ng.MALA(step_size=np.float32(0.1)).step_size == pytest.approx(0.1)


@pytest.mark.parametrize(
    "base, warns",
    [
        (StandardNormal((2,)), False),
        (npd.Normal(0.0, 1.0).expand([2]).to_event(1), False),  # the same law, another library
        (Normal(jnp.zeros(2), 2.0 * jnp.ones(2)), True),  # a broader tilt: valid, unbalanced
        ("untilted", True),
        ("flow", False),  # the flow itself (at initialisation) as the tilt: balanced too
    ],
)
def test_flowmc_warns_when_the_tilt_is_not_the_flows_base(no_compile, recwarn, base, warns):
    """A warning, not an error: see negatives._warn_if_unbalanced."""
    base = {"untilted": None, "flow": _flow()}.get(base, base) if isinstance(base, str) else base
    ebm = EnergyModel(ToyNet(2, key=jax.random.key(1), widths=(8,)), base)
    with pytest.raises(_Compiled):  # the warning comes before compilation; training would go on
        _train(ebm, ng.FlowMC(_flow()))
    unbalanced = [w for w in recwarn if issubclass(w.category, ng.UnbalancedWarning)]
    assert len(unbalanced) == int(warns)
    if warns:
        assert "EnergyModel(net, flow.base_dist)" in str(unbalanced[0].message)
