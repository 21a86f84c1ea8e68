"""EnergyModel, the energy networks and the contrastive loss."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as npd
import optax
import pytest
from flowjax.distributions import Normal, StandardNormal
from numpyro.infer.util import log_density as numpyro_log_density

from numpyro_ebm.energy import EnergyModel, FlowjaxDistribution, as_numpyro
from numpyro_ebm.flows import default_flow, partition
from numpyro_ebm.nets import ConvEnergy, ToyNet
from numpyro_ebm.training import contrastive_loss


@functools.cache
def _identity_flow():
    return default_flow(jax.random.key(0), 2, identity_init=True)


def _n_params(module) -> int:
    return sum(x.size for x in jax.tree.leaves(eqx.filter(module, eqx.is_inexact_array)))


def test_toynet_is_the_papers_network():
    net = ToyNet(2, key=jax.random.key(0))
    assert _n_params(net) == 10_593  # paper-notes 4.1: 2 -> 32 -> 64 -> 64 -> 64 -> 1
    assert [layer.out_features for layer in net.layers] == [32, 64, 64, 64, 1]


@pytest.mark.parametrize(
    "net, dim",
    [
        (ToyNet(2, key=jax.random.key(0)), 2),
        (ToyNet(16, key=jax.random.key(1)), 16),
        (ConvEnergy(key=jax.random.key(2)), 64),
    ],
)
def test_energy_is_zero_at_init_and_has_gradients(net, dim):
    x = jax.random.normal(jax.random.key(3), (7, dim))

    @eqx.filter_jit
    def energies_and_grads(net):
        # The zero last layer still receives a gradient, so training can start.
        return jax.vmap(net)(x), eqx.filter_grad(lambda n: jnp.sum(jax.vmap(n)(x) * jnp.arange(7.0)))(net)

    energies, grads = energies_and_grads(net)
    assert jnp.all(energies == 0.0)
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))


def test_ebm_equals_identity_flow_at_init():
    flow = _identity_flow()
    ebm = EnergyModel(ToyNet(2, key=jax.random.key(1)), flow.base_dist)
    x = 2.0 * jax.random.normal(jax.random.key(2), (100, 2))

    @eqx.filter_jit
    def compare(flow, ebm, x):
        key = jax.random.key(3)
        return (
            flow.sample(key, (5,)),
            StandardNormal((2,)).sample(key, (5,)),
            ebm.log_density(x),
            flow.log_prob(x),
            ebm.energy(x),
        )

    flow_draws, base_draws, ebm_logp, flow_logp, energy = compare(flow, ebm, x)
    np.testing.assert_allclose(flow_draws, base_draws, atol=1e-5)  # the flow is the identity
    np.testing.assert_allclose(ebm_logp, flow_logp, atol=1e-5)
    assert jnp.all(energy == 0.0)


def test_shapes_and_potential():
    ebm = EnergyModel(ToyNet(3, key=jax.random.key(0)), Normal(jnp.ones(3), 2.0 * jnp.ones(3)))
    x = jax.random.normal(jax.random.key(1), (4, 5, 3))
    assert ebm.log_density(x[0, 0]).shape == ()
    assert ebm.log_density(x).shape == (4, 5)
    np.testing.assert_allclose(ebm.potential_fn(x), -ebm.log_density(x))
    with pytest.raises(ValueError, match="dim=3"):
        ebm.energy(jnp.zeros((4, 2)))


def test_numpyro_and_flowjax_tilts_agree():
    net = ToyNet(2, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (10, 2))
    a = EnergyModel(net, StandardNormal((2,)))
    b = EnergyModel(net, npd.Normal(jnp.zeros(2), 1.0).to_event(1))
    np.testing.assert_allclose(a.log_density(x), b.log_density(x), rtol=1e-6)


def test_untilted_ebm_is_plain_exp_minus_energy():
    ebm = EnergyModel(ToyNet(2, key=jax.random.key(0)), None)
    assert ebm.dim == 2
    assert jnp.all(ebm.log_density(jnp.ones((3, 2))) == 0.0)


def test_tilt_is_frozen_unless_trainable():
    flow = _identity_flow()
    net = ToyNet(2, key=jax.random.key(1))
    frozen, _ = partition(EnergyModel(net, Normal(jnp.zeros(2), jnp.ones(2))))
    assert jax.tree.leaves(frozen.base) == []
    learnable, _ = partition(EnergyModel(net, flow, trainable_base=True))
    assert len(jax.tree.leaves(learnable.base)) > 0


def test_model_is_the_ebm():
    flow = _identity_flow()
    net = ToyNet(2, key=jax.random.key(1))
    net = eqx.tree_at(lambda n: n.layers[-1].bias, net, jnp.array([0.7]))  # E = 0.7 everywhere
    for base in (flow.base_dist, npd.Normal(jnp.zeros(2), 1.0).to_event(1), None):
        ebm = EnergyModel(net, base)
        x = jnp.array([0.3, -1.2])
        log_joint, _ = numpyro_log_density(ebm.model, (), {}, {"x": x})
        np.testing.assert_allclose(log_joint, ebm.log_density(x), rtol=1e-6)


def test_model_samples_the_ebm_with_flowmc_kernel():
    import arviz as az
    from numpyro.infer import MCMC

    from numpyro_ebm.kernel import FlowMCKernel

    flow = _identity_flow()
    ebm = EnergyModel(ToyNet(2, key=jax.random.key(1)), flow.base_dist)  # p = N(0, I) at init
    mcmc = MCMC(
        FlowMCKernel(ebm.model),
        num_warmup=50,
        num_samples=100,
        num_chains=16,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(2))
    x = mcmc.get_samples()["x"]
    assert x.shape == (1600, 2)
    # 1600 correlated draws from N(0, I): mean within ~5 SE for an ESS of a few hundred.
    assert float(jnp.abs(x.mean(0)).max()) < 0.3
    assert 0.7 < float(x.std(0).min()) and float(x.std(0).max()) < 1.3
    # ArviZ replays the model with a raw uint32 key; the flowjax base must accept it.
    assert "x" in az.from_numpyro(mcmc).posterior


def test_flowjax_distribution_wrapper():
    d = FlowjaxDistribution(Normal(jnp.zeros(3), 2.0 * jnp.ones(3)))
    assert d.event_shape == (3,) and d.batch_shape == ()
    x = d.sample(jax.random.key(0), (4,))
    assert x.shape == (4, 3)
    np.testing.assert_allclose(d.log_prob(x), npd.Normal(0.0, 2.0).log_prob(x).sum(-1), rtol=1e-6)
    assert isinstance(as_numpyro(npd.Normal(0.0, 1.0)), npd.Normal)


@pytest.mark.parametrize(
    "net, base, kwargs, match",
    [
        (ToyNet(2, key=jax.random.key(0)), StandardNormal((3,)), {}, "inconsistent dimensions"),
        (ToyNet(2, key=jax.random.key(0)), npd.Normal(jnp.zeros(2), 1.0), {}, "to_event"),
        (ToyNet(2, key=jax.random.key(0)), npd.Uniform(jnp.zeros(2), 1.0).to_event(1), {}, "support"),
        (ToyNet(2, key=jax.random.key(0)), None, {"trainable_base": True}, "trainable_base"),
        (lambda x: 0.0 * x.sum(), None, {}, "dim"),
    ],
)
def test_bad_construction_raises(net, base, kwargs, match):
    with pytest.raises(ValueError, match=match):
        EnergyModel(net, base, **kwargs)


def test_loss_pushes_data_energy_below_negatives():
    ebm = EnergyModel(ToyNet(2, key=jax.random.key(0)), StandardNormal((2,)))
    positives = 1.5 + 0.3 * jax.random.normal(jax.random.key(1), (64, 2))
    negatives = jax.random.normal(jax.random.key(2), (64, 2))  # samples of the EBM at init
    params, static = eqx.partition(ebm, eqx.is_inexact_array)
    opt = optax.adam(1e-2)
    state = opt.init(params)

    def loss(p):
        return contrastive_loss(eqx.combine(p, static), positives, negatives)[0]

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = opt.update(grads, state, params)
        return eqx.apply_updates(params, updates), state, value

    gaps = []
    for _ in range(20):
        params, state, value = step(params, state)
        gaps.append(float(value))
    trained = eqx.combine(params, static)
    # The sign of the paper's eq. 2-3 is flipped; descent on mean E(x+) - mean E(x-) is right.
    assert gaps[0] == 0.0 and gaps[-1] < -0.5
    assert float(trained.energy(positives).mean()) < float(trained.energy(negatives).mean())


def test_loss_holds_negatives_constant_and_adds_l2():
    net = eqx.tree_at(lambda n: n.layers[-1].bias, ToyNet(2, key=jax.random.key(0)), jnp.array([2.0]))
    ebm = EnergyModel(net, StandardNormal((2,)))
    pos, neg = jnp.zeros((3, 2)), jnp.ones((5, 2))
    loss, (e_pos, e_neg) = contrastive_loss(ebm, pos, neg, energy_l2=0.1)
    assert float(loss) == pytest.approx(0.1 * (3 * 4.0 + 5 * 4.0))  # lambda * sum of E^2 (App. C.6)
    grad_neg = jax.grad(lambda n: contrastive_loss(ebm, pos, n)[0])(neg)
    assert jnp.all(grad_neg == 0.0)


def test_trainable_tilt_gets_the_likelihood_gradient():
    flow = _identity_flow()
    ebm = EnergyModel(ToyNet(2, key=jax.random.key(1)), flow, trainable_base=True)
    pos = 1.5 + 0.3 * jax.random.normal(jax.random.key(2), (32, 2))
    neg = jax.random.normal(jax.random.key(3), (32, 2))
    loss, expected = eqx.filter_jit(
        lambda ebm, flow: (
            contrastive_loss(ebm, pos, neg)[0],
            -jnp.mean(flow.log_prob(pos)) + jnp.mean(flow.log_prob(neg)),
        )
    )(ebm, flow)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
