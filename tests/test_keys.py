"""Every public entry accepts both key kinds NumPyro users bring, with identical results.

``jax.random.PRNGKey(s)`` (raw uint32) and ``jax.random.key(s)`` (typed) hold the same bits, so
each entry must return bit-identical output for both: that checks the conversion is a pure
re-labelling (no extra split, no re-seeding), not merely that nothing raises.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from numpyro.infer import MCMC

import numpyro_ebm as ne
from numpyro_ebm import datasets, diagnostics, flows, moves, negatives
from numpyro_ebm._keys import as_typed_key, like_key
from numpyro_ebm.energy import EnergyModel
from numpyro_ebm.nets import ToyNet

KINDS = {"PRNGKey": jax.random.PRNGKey, "key": jax.random.key}
LOGP = lambda x: -0.5 * jnp.sum((x - 1.0) ** 2)  # noqa: E731
FLOW = flows.default_flow(jax.random.key(0), 2, identity_init=True)


def _entries():
    """name -> function of a key returning arrays; one per public entry that takes a key."""
    chains = moves.init_chains(jnp.zeros((4, 2)), LOGP)
    params, static = flows.partition(FLOW)
    opt = optax.adam(1e-2)
    ebm = EnergyModel(ToyNet(2, key=jax.random.key(1)), FLOW.base_dist)
    sampler = negatives.FlowMC(FLOW, num_local_steps=2, num_particles=4)
    return {
        "mala": lambda k: moves.mala(k, chains, LOGP, 0.1)[0].position,
        "ula": lambda k: moves.ula(k, chains, LOGP, 0.1)[0].position,
        "imh": lambda k: moves.imh(k, chains, LOGP, FLOW)[0].position,
        "isir": lambda k: moves.isir(k, chains, LOGP, FLOW, 4)[0].position,
        "flowmc_step": lambda k: (
            ne.flowmc_step(k, chains, LOGP, FLOW, step_size=0.1, num_local_steps=1)[0].position
        ),
        "default_flow": lambda k: flows.default_flow(k, 3).log_prob(jnp.ones(3)),
        "fit_flow": lambda k: flows.fit_flow(
            k, params, static, opt.init(params), jnp.ones((8, 2)), opt, num_steps=2, batch_size=4
        )[2],
        "negatives": lambda k: sampler(k, ebm, FLOW, jnp.zeros((4, 2)), sampler.init_step_size()).final,
        "initial_positions": lambda k: sampler.initial_positions(k, ebm, FLOW, 3),
        "dataset": lambda k: datasets.two_modes(k, 5),
        "log_normalizer": lambda k: diagnostics.log_normalizer(jax.vmap(LOGP), FLOW, k, 16)[0],
        "train": lambda k: (
            ne.train(
                ebm,
                1.0 + 0.3 * jax.random.normal(jax.random.key(5), (16, 2)),  # spread: the guards measure radii
                key=k,
                negatives=sampler,
                num_steps=2,
                batch_size=4,
                bank_size=8,
                progress=False,
            ).bank
        ),
    }


ENTRIES = _entries()


@pytest.mark.parametrize("name", list(ENTRIES))
def test_entry_accepts_both_kinds_identically(name):
    fn = ENTRIES[name]
    raw, typed = fn(jax.random.PRNGKey(3)), fn(jax.random.key(3))
    np.testing.assert_array_equal(np.asarray(raw), np.asarray(typed))


@pytest.mark.parametrize("kind", list(KINDS))
def test_mcmc_run_warmup_then_run(kind):
    """NumPyro splits a raw key into raw (chains, 2) keys for vectorized chains, and after
    warmup() hands run()'s raw key back in the state: both paths must work."""
    make = KINDS[kind]
    kernel = ne.FlowMCKernel(potential_fn=lambda x: -LOGP(x))
    mcmc = MCMC(
        kernel, num_warmup=3, num_samples=3, num_chains=4, chain_method="vectorized", progress_bar=False
    )
    mcmc.warmup(make(0), init_params=jnp.zeros((4, 2)))
    mcmc.run(make(1))
    assert mcmc.get_samples().shape == (12, 2)
    assert mcmc.last_state.rng_key.dtype == make(0).dtype  # the state keeps the user's kind


def test_as_typed_key_shapes_and_errors():
    assert as_typed_key(jax.random.split(jax.random.PRNGKey(0), (3, 4))).shape == (3, 4)
    assert as_typed_key([0, 1]).shape == ()
    assert like_key(jax.random.key(0), jax.random.key(1)).dtype == jax.random.key(1).dtype
    with pytest.raises(TypeError, match="PRNGKey"):
        as_typed_key(jnp.zeros(2))
    with pytest.raises(TypeError, match="PRNGKey"):
        as_typed_key(jnp.zeros(3, jnp.uint32))
    with pytest.raises(TypeError, match="PRNGKey"):
        as_typed_key(0)
