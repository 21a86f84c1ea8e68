"""Every negative sampler through the same tests (a registry, as in flowjax's bijection tests).

Stationarity tolerances: the EBM at initialisation (E = 0) is its tilt, so chains started from
exact draws of the tilt must stay distributed like it. With 512 chains the mean of a coordinate
has SE 1/sqrt(512) = 0.044 (unit variance) and the variance SE sqrt(2/512) = 0.063; we allow
0.2 and 0.3 (about 4.5 SE), while a move with a wrong acceptance ratio or a missing Jacobian
shifts them by far more (the flows below are deliberately not the target).

The MALA moves (MALA, NT-EBM's latent MALA, and the local moves of FlowMC) run at step 1.0 on
the standard normal tilt, where the Langevin proposal is ``sqrt(2) xi``: without its Metropolis
correction (ULA) the variance is 2 after one step, 16 SE off, so the invariance test fails on a
MALA that lost its correction (``test_invariance_check_catches_mala_without_metropolis`` makes
``moves._metropolis`` accept everything and checks that mala and flowmc_isir go red; by hand,
flowmc_imh and ntebm did too). The mean check alone is symmetric and could not see it.
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import mutants
import numpy as np
import optax
import pytest
from flowjax.distributions import Normal, StandardNormal

from numpyro_ebm import negatives as ng
from numpyro_ebm.energy import EnergyModel
from numpyro_ebm.flows import combine, default_flow, partition
from numpyro_ebm.nets import ToyNet
from numpyro_ebm.training import train

DIM = 2


@functools.cache
def _flow(identity: bool = False):
    """A small flow; with identity=False a random bijection, so the flow is NOT the target."""
    return default_flow(jax.random.key(7), DIM, identity_init=identity, flow_layers=2, knots=4, nn_width=8)


# name -> (factory(flow) -> sampler, expected (persistent, flow_training, start), exact)
SAMPLERS = {
    "flowmc_isir": (
        lambda f: ng.FlowMC(f, num_particles=8, num_local_steps=3, step_size=1.0),
        (True, "negatives", "flow"),
        True,
    ),
    "flowmc_imh": (
        lambda f: ng.FlowMC(f, global_move="imh", num_local_steps=3, step_size=1.0),
        (True, "negatives", "flow"),
        True,
    ),
    "ula": (lambda f: ng.ULA(step_size=0.01, num_mcmc_steps=10), (True, None, "uniform"), True),
    "mala": (
        lambda f: ng.MALA(step_size=1.0, num_mcmc_steps=10, target_accept=0.6),
        (True, None, "gaussian"),
        True,
    ),
    "short_run": (lambda f: ng.ShortRun(step_size=0.01, num_mcmc_steps=10), (False, None, "uniform"), False),
    "ntebm": (lambda f: ng.NTEBM(step_size=1.0, num_mcmc_steps=10), (False, "tilt", "flow"), True),
    "coopflow": (
        lambda f: ng.CoopFlow(f, step_size=5e-3, num_mcmc_steps=10),
        (False, "negatives", "flow"),
        False,
    ),
}


def _ebm_for(sampler, net, flow) -> EnergyModel:
    if sampler.flow_training == "tilt":  # NT-EBM: the EBM is a tilt of the flow
        return EnergyModel(net, flow, trainable_base=True)
    return EnergyModel(net, flow.base_dist)


def _setup(name, net=None, identity=False):
    factory, _, _ = SAMPLERS[name]
    flow = _flow(identity)
    sampler = factory(flow)
    ebm = _ebm_for(sampler, net if net is not None else ToyNet(DIM, key=jax.random.key(1)), flow)
    return sampler, ebm, flow


def _move_unjitted(sampler, ebm, flow, bank, key, step_size, num_chains):
    """One training step's worth of sampling: pick chains, move them, write them back."""
    k1, k2 = jax.random.split(key)
    index, start = sampler.chains_from_bank(k1, ebm, flow, bank, num_chains)
    out = sampler(k2, ebm, flow, start, step_size)
    return bank.at[index].set(out.final), out


_move = eqx.filter_jit(_move_unjitted)


class HoleNet(eqx.Module):
    """E = 0 except NaN where x[0] > threshold: proposals there must be rejected, never stored.

    The threshold is an array, so the finiteness and invariance tests share one compilation.
    """

    threshold: jax.Array
    dim: int = eqx.field(static=True, default=DIM)

    def __call__(self, x):
        return jnp.where(x[0] > self.threshold, jnp.nan, 0.0 * x[0])


N_CHAINS = 512


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_declarations_follow_the_paper(name):
    sampler, _, _ = _setup(name)
    _, expected, _ = SAMPLERS[name]
    assert (sampler.persistent, sampler.flow_training, sampler.start) == expected


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_runs_and_keeps_chains_finite(name):
    sampler, ebm, flow = _setup(name, net=HoleNet(jnp.asarray(1.0)))
    flow_now = combine(*partition(flow))
    bank = sampler.initial_positions(jax.random.key(0), ebm, flow_now, N_CHAINS)
    bank = jnp.where(bank[:, :1] > 1.0, -bank, bank)  # start outside the hole
    step_size = sampler.init_step_size()
    for i in range(3):
        bank, out = _move(sampler, ebm, flow_now, bank, jax.random.key(10 + i), step_size, N_CHAINS)
        step_size = out.step_size
        assert out.negatives.shape == (N_CHAINS, DIM)
        assert bool(jnp.all(jnp.isfinite(out.negatives))) and bool(jnp.all(jnp.isfinite(bank)))
        assert bool(jnp.isfinite(out.local_accept_prob)) and bool(jnp.isfinite(step_size))
    if sampler.persistent:  # chains that started in the valid region never enter the hole
        assert float(bank[:, 0].max()) <= 1.0


@pytest.mark.parametrize("name", [n for n, (_, _, exact) in SAMPLERS.items() if exact])
def test_leaves_the_initial_ebm_invariant(name, move=_move):
    sampler, ebm, flow = _setup(name, net=HoleNet(jnp.asarray(jnp.inf)))  # E = 0 everywhere
    flow_now = combine(*partition(flow))
    n = N_CHAINS
    # At E = 0 the EBM is its tilt; start exactly there (the flow for NT-EBM, rho otherwise).
    reference_flow = sampler.flow_for(ebm, flow_now)
    tilt = reference_flow if sampler.flow_training == "tilt" else flow_now.base_dist
    bank = tilt.sample(jax.random.key(0), (n,))
    reference = tilt.sample(jax.random.key(1), (20_000,))
    _, out = move(sampler, ebm, flow_now, bank, jax.random.key(2), sampler.init_step_size(), n)
    scale = np.asarray(reference.std(0))
    assert np.all(np.abs(np.asarray(out.negatives.mean(0) - reference.mean(0))) < 0.2 * scale)
    assert np.all(np.abs(np.asarray(out.negatives.var(0) / reference.var(0)) - 1.0) < 0.3)


@pytest.mark.parametrize("name", ["mala", "flowmc_isir"])
def test_invariance_check_catches_mala_without_metropolis(name, monkeypatch):
    """The check above can fail: with every MALA proposal accepted (ULA) it goes red."""
    mutants.always_accept(monkeypatch)
    fresh = eqx.filter_jit(lambda *args: _move_unjitted(*args))  # not _move's compiled, correct program
    with pytest.raises(AssertionError):
        test_leaves_the_initial_ebm_invariant(name, move=fresh)


def test_keep_takes_states_evenly_from_the_trajectory():
    flow = _flow(identity=True)
    net = eqx.tree_at(
        lambda n: n.layers[-1].weight, ToyNet(DIM, key=jax.random.key(1)), replace_fn=lambda w: w + 0.1
    )
    ebm = EnergyModel(net, flow.base_dist)
    x0 = jax.random.normal(jax.random.key(0), (8, DIM))

    @eqx.filter_jit
    def run(sampler, ebm, flow, step_size):
        return sampler(jax.random.key(1), ebm, flow, x0, step_size)

    # Noise-free Langevin is deterministic: keep=2 of 4 steps gives the states after steps 2 and 4.
    step = jnp.float32(0.05)
    thinned = run(ng.CoopFlow(flow, step_size=0.05, num_mcmc_steps=4, keep=2), ebm, flow, step)
    after2 = run(ng.CoopFlow(flow, step_size=0.05, num_mcmc_steps=2), ebm, flow, step)
    after4 = run(ng.CoopFlow(flow, step_size=0.05, num_mcmc_steps=4), ebm, flow, step)
    np.testing.assert_allclose(thinned.negatives, jnp.concatenate([after2.final, after4.final]), rtol=1e-5)
    # FlowMC: 2 cycles of (1 global + 4 MALA) = 10 states; keep=5 -> 5 states per chain.
    out = run(ng.FlowMC(flow, keep=5), ebm, flow, jnp.float32(0.01))
    assert out.negatives.shape == (40, DIM)
    np.testing.assert_array_equal(out.negatives[-8:], out.final)


def test_step_size_adapts_toward_target():
    sampler = ng.MALA(step_size=5.0, num_mcmc_steps=5, target_accept=0.6)
    ebm = EnergyModel(ToyNet(DIM, key=jax.random.key(1)), _flow(True).base_dist)
    bank = jax.random.normal(jax.random.key(0), (64, DIM))
    step_size = sampler.init_step_size()
    for i in range(5):
        bank, out = _move(sampler, ebm, None, bank, jax.random.key(i), step_size, 64)
        step_size = out.step_size
    assert float(step_size) == pytest.approx(5.0 / 1.05**5)  # acceptance is far below 0.6


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ng.ULA(step_size=0.0), "step_size"),
        (lambda: ng.MALA(step_size=float("nan")), "step_size"),
        (lambda: ng.ShortRun(num_mcmc_steps=0), "num_mcmc_steps"),
        (lambda: ng.ULA(start="flow"), "start"),
        (lambda: ng.ULA(start_scale=-1.0), "start_scale"),
        (lambda: ng.MALA(target_accept=1.2), "target_accept"),
        (lambda: ng.NTEBM(keep=0), "keep"),
        (lambda: ng.FlowMC(_flow(), keep=11), "keep=11"),
        (lambda: ng.FlowMC(_flow(), num_particles=1), "num_particles"),
        (lambda: ng.FlowMC(_flow(), global_move="hmc"), "global_move"),
        (lambda: ng.FlowMC(_flow(), num_cycles=0), "num_cycles"),
        (lambda: ng.CoopFlow(_flow(), step_size=-1e-3), "step_size"),
        (lambda: ng.ULA(step_size=None), "step_size"),
        (lambda: ng.FlowMC(_flow(), particle_batch_size=0), "particle_batch_size"),
        (lambda: ng.FlowMC(_flow(), reference_fraction=1.0), "reference_fraction"),
    ],
)
def test_invalid_settings_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_mismatched_models_raise():
    net = ToyNet(DIM, key=jax.random.key(1))
    with pytest.raises(TypeError, match="trainable_base=True"):
        ng.NTEBM().validate(EnergyModel(net, _flow().base_dist), 8)
    with pytest.raises(ValueError, match="dim 3"):
        ng.FlowMC(_flow()).validate(EnergyModel(ToyNet(3, key=jax.random.key(0)), None), 8)
    with pytest.raises(ValueError, match="multiple of keep"):
        ng.FlowMC(_flow(), keep=3).validate(EnergyModel(net, _flow().base_dist), 8)
    with pytest.raises(ValueError, match="tilted EBM"):
        ng.MALA(start="base").validate(EnergyModel(net, None), 8)
    with pytest.raises(ValueError, match="untilted"):
        ng.FlowMC(_flow(), reference_fraction=0.25).validate(EnergyModel(net, None), 8)


@pytest.mark.parametrize("name", ["ula", "mala", "short_run", "ntebm", "coopflow"])
def test_trains_a_few_steps(name):
    """flowMC's training is covered by test_training.py; here each baseline runs through train()."""
    sampler, ebm, flow = _setup(name, identity=True)
    if name == "ula":  # the paper's ULA-EBM baseline: the untilted EBM (Algorithm 3)
        ebm = EnergyModel(ToyNet(DIM, key=jax.random.key(1)), None)
    data = 1.5 + 0.3 * jax.random.normal(jax.random.key(0), (64, DIM))
    result = train(
        ebm,
        data,
        key=jax.random.key(1),
        negatives=sampler,
        optimizer=optax.adam(1e-2),
        num_steps=4,
        batch_size=8,
        bank_size=16,
        chunk_size=2,
        progress=False,
    )
    assert result.history["loss"].shape == (2,)
    assert np.all(np.isfinite(result.history["loss"]))
    assert bool(jnp.all(jnp.isfinite(result.bank)))
    assert float(jnp.abs(result.ebm.energy(data)).max()) > 0  # the energy moved off zero
    if sampler.flow_training is None:
        assert result.flow is None
    else:  # the flow was trained: on the negatives (CoopFlow) or as the EBM's tilt (NT-EBM)
        moved = jax.tree.map(
            lambda a, b: float(jnp.abs(a - b).max()),
            eqx.filter(result.flow, eqx.is_inexact_array),
            eqx.filter(flow, eqx.is_inexact_array),
        )
        assert max(jax.tree.leaves(moved)) > 0


def test_flowmc_settings_round_trip_and_run_chains_is_the_flowmc_step_loop():
    from numpyro_ebm.flowmc import FlowMCSettings, flowmc_step, run_chains
    from numpyro_ebm.moves import init_chains

    settings = FlowMCSettings(num_local_steps=2, num_particles=4, step_size=0.3)
    sampler = ng.FlowMC(_flow(), settings, num_cycles=3)
    assert sampler.settings == settings and sampler.num_states == 9
    assert ng.FlowMC(_flow(), target_accept=None).settings.adapt_step_size is False
    # A keyword replaces its field of the settings; an unknown one names the fields.
    assert ng.FlowMC(_flow(), settings, num_particles=8).settings == settings.replace(num_particles=8)
    with pytest.raises(TypeError, match="n_particels"):
        ng.FlowMC(_flow(), n_particels=8)
    flow = combine(*partition(_flow()))
    logp = lambda x: -0.5 * jnp.sum(x**2)  # noqa: E731
    chains = init_chains(jax.random.normal(jax.random.key(0), (8, DIM)), logp)
    key = jax.random.key(1)
    out, info = run_chains(key, chains, logp, flow, settings, 3, keep_trajectory=True)
    by_hand = chains
    for k in jax.random.split(key, 3):
        by_hand, _ = flowmc_step(
            k, by_hand, logp, flow, step_size=0.3, num_local_steps=2, global_move="isir", num_particles=4
        )
    np.testing.assert_allclose(out.position, by_hand.position, rtol=1e-6)
    assert info.local_accept_prob.shape == (3, 8) and info.trajectory.shape == (9, 8, DIM)
    np.testing.assert_array_equal(info.trajectory[-1], out.position)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"global_move": "hmc"}, "global_move"),
        ({"num_local_steps": -1}, "num_local_steps"),
        ({"global_move": None, "num_local_steps": 0}, "nothing moves"),
        ({"particle_batch_size": 0}, "particle_batch_size"),
        ({"target_accept_prob": 1.0}, "target_accept_prob"),
        ({"step_size": float("inf")}, "step_size"),
        ({"adapt_step_size": "yes"}, "adapt_step_size"),
    ],
)
def test_flowmc_settings_check_every_field(kwargs, match):
    from numpyro_ebm.flowmc import FlowMCSettings

    with pytest.raises(ValueError, match=match):
        FlowMCSettings(**kwargs)


_HEAVY = jnp.array([2.5, 0.0])


class _TwoModes(eqx.Module):
    """E = log rho - log m for m = 2/3 N((2.5, 0), 0.5^2 I) + 1/3 N((-2.5, 0), 0.5^2 I), rho = N(0, I):
    the tilted EBM's law is exactly m (E is bounded below, so the defensive weights are bounded)."""

    dim: int = DIM

    def __call__(self, x):
        def log_normal(mean):
            return -0.5 * jnp.sum((x - mean) ** 2) / 0.25 - jnp.log(2 * jnp.pi * 0.25)

        log_m = jnp.logaddexp(jnp.log(2 / 3) + log_normal(_HEAVY), jnp.log(1 / 3) + log_normal(-_HEAVY))
        return -0.5 * jnp.sum(x**2) - jnp.log(2 * jnp.pi) - log_m


@pytest.mark.parametrize("fraction", [0.25, 0.0])
def test_reference_fraction_recovers_a_lost_mode(fraction):
    """A bank of 1024 chains and a flow that have both lost the heavy mode (the flow a Gaussian on
    the light one, without tails that reach the other), 30 calls of FlowMC (60 cycles): with
    reference_fraction the bank's heavy-mode weight reaches 2/3; without, no chain ever leaves
    (modes 10 sd apart). benchmarks/bank_recovery.py runs the trainer's joint flow fit instead.

    Tolerance: at stationarity the 1024 chains are independent, so the weight has binomial SE
    sqrt((2/9) / 1024) = 0.015; we allow 0.06 (4 SE). Recovery takes about 8 calls (measured:
    0.28 after 1, 0.64 after 5). A proposal density without its rho term sends every chain to the
    heavy mode (weight 1.00), one without its flow term leaves 0.01 there (both checked by hand).
    """
    sampler = ng.FlowMC(Normal(-_HEAVY, 0.5 * jnp.ones(DIM)), reference_fraction=fraction, num_particles=16)
    ebm = EnergyModel(_TwoModes(), StandardNormal((DIM,)))
    bank = -_HEAVY + 0.5 * jax.random.normal(jax.random.key(0), (1024, DIM))

    @jax.jit
    def run(key, bank):
        def call(carry, k):
            out = sampler(k, ebm, sampler.flow, *carry)
            return (out.final, out.step_size), None

        return jax.lax.scan(call, (bank, sampler.init_step_size()), jax.random.split(key, 30))[0][0]

    heavy = float(jnp.mean(run(jax.random.key(1), bank)[:, 0] > 0))
    if fraction:
        assert abs(heavy - 2 / 3) < 0.06, heavy
    else:
        assert heavy == 0.0
