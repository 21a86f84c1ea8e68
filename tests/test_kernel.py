"""FlowMCKernel through numpyro.infer.MCMC: mode weights, constrained models, the NumPyro surface.

Tolerances: after warmup the flow and step size are frozen, so the chains are independent
Markov chains given the flow. A chain's zone frequency is one estimate of the zone weight; the
spread of those estimates across chains gives a standard error (SE) that accounts for
autocorrelation. We require |estimate - truth| < 4 SE (two-sided ~6e-5 under normality) AND
SE < 0.02, so that chains stuck in their starting mode (per-chain frequencies of 0 or 1,
SE ~ 0.08 with 32 chains) fail even if their average happened to land near the truth.
"""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import MCMC

import numpyro_ebm as ne
from numpyro_ebm import flows
from numpyro_ebm.datasets import two_gaussians_target

FIELDS = ("local_accept_prob", "global_accept_prob", "potential_energy")

# name -> (target, num_chains, num_warmup, num_samples). The d = 16 four-mode mixture is
# tests/test_tempering.py's, with a harder start (every chain in one mode).
TARGETS = {
    "two_gaussians_2to1": (two_gaussians_target(), 32, 300, 400),
}


def _run(target, global_move, num_chains, num_warmup, num_samples, seed=0):
    # Without tempering (tests/test_tempering.py has the default path on the same target): the
    # flow is fitted to the chains' history during warmup, from an over-dispersed start.
    kernel = ne.FlowMCKernel(
        potential_fn=lambda x: -target.log_prob(x),
        global_move=global_move,
        num_particles=16,
        tempering=None,
    )
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    # Over-dispersed start: chains begin far from the modes' proportions.
    init = 2.0 * jax.random.normal(jax.random.key(seed + 100), (num_chains, target.dim))
    mcmc.run(jax.random.key(seed), init_params=init, extra_fields=FIELDS)
    return mcmc


@pytest.mark.parametrize("global_move", ["imh", "isir"])
@pytest.mark.parametrize("name", list(TARGETS))
def test_mode_weights_match_truth(name, global_move):
    target, num_chains, num_warmup, num_samples = TARGETS[name]
    mcmc = _run(target, global_move, num_chains, num_warmup, num_samples)
    x = mcmc.get_samples(group_by_chain=True)  # (chains, draws, dim)
    zones = np.asarray(target.zones(x))
    weights = np.asarray(target.weights)
    per_chain = np.stack([(zones == k).mean(axis=1) for k in range(len(weights))], axis=-1)
    estimate = per_chain.mean(axis=0)
    se = per_chain.std(axis=0, ddof=1) / np.sqrt(num_chains)
    assert np.all(se < 0.02), f"chains do not mix between modes: per-zone SE {se}"
    np.testing.assert_array_less(np.abs(estimate - weights), 4 * se + 1e-3)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    assert extra["global_accept_prob"].shape == (num_chains, num_samples)
    assert 0.4 < float(extra["local_accept_prob"].mean()) < 0.75  # adapted toward 0.574
    assert float(extra["global_accept_prob"].mean()) > 0.05


def _constrained_model():
    numpyro.sample("scale", dist.HalfNormal(1.0))
    p = numpyro.sample("p", dist.Dirichlet(jnp.array([2.0, 3.0, 5.0])))
    numpyro.deterministic("p_max", jnp.max(p))


def test_constrained_sites_use_numpyro_transforms():
    """No data: the posterior is the prior, whose means are known exactly."""
    kernel = ne.FlowMCKernel(_constrained_model, global_move="isir", num_particles=8, tempering=None)
    mcmc = MCMC(
        kernel, num_warmup=300, num_samples=400, num_chains=32, chain_method="vectorized", progress_bar=False
    )
    mcmc.run(jax.random.key(1))
    s = mcmc.get_samples(group_by_chain=True)
    assert float(s["scale"].min()) > 0.0
    np.testing.assert_allclose(np.asarray(s["p"]).sum(-1), 1.0, atol=1e-5)
    assert "p_max" in s  # deterministic sites come back through postprocess_fn
    for value, truth in [
        (s["scale"], np.sqrt(2 / np.pi)),
        (s["p"][..., 0], 0.2),
        (s["p"][..., 2], 0.5),
    ]:
        per_chain = np.asarray(value).mean(axis=1)
        se = per_chain.std(ddof=1) / np.sqrt(len(per_chain))
        assert abs(per_chain.mean() - truth) < 4 * se, (per_chain.mean(), truth, se)


def test_potential_fn_summary_arviz_and_continuation(capsys):
    """A bare potential_fn with init_params; R-hat/ESS through print_summary and ArviZ;
    warmup() then run() continues with step size and flow frozen."""
    kernel = ne.FlowMCKernel(potential_fn=lambda x: 0.5 * jnp.sum(x**2), global_move="imh")
    mcmc = MCMC(
        kernel, num_warmup=200, num_samples=200, num_chains=16, chain_method="vectorized", progress_bar=False
    )
    init = jax.random.normal(jax.random.key(0), (16, 3))
    mcmc.warmup(jax.random.key(1), init_params=init, extra_fields=FIELDS)
    warm = mcmc.post_warmup_state
    assert int(warm.i) == 200
    mcmc.run(jax.random.key(2), extra_fields=FIELDS)
    last = mcmc.last_state
    assert int(last.i) == 400
    assert float(last.step_size) == float(warm.step_size)
    for a, b in zip(jax.tree.leaves(last.flow_params), jax.tree.leaves(warm.flow_params), strict=True):
        np.testing.assert_array_equal(a, b)
    mcmc.print_summary()
    assert "r_hat" in capsys.readouterr().out
    idata = az.from_numpyro(mcmc)
    rhat = float(az.rhat(idata).to_array().max())
    ess = float(az.ess(idata).to_array().min())
    assert rhat < 1.05 and ess > 200  # a standard normal mixes well: 3200 draws
    x = np.asarray(mcmc.get_samples())
    np.testing.assert_array_less(np.abs(x.mean(0)), 4 / np.sqrt(ess))


def test_trained_flow_is_returned_and_reusable_frozen():
    target = two_gaussians_target()
    mcmc = _run(target, "imh", 32, 200, 10)
    kernel = mcmc.sampler
    trained = kernel.get_flow(mcmc.last_state)
    with pytest.raises(AttributeError, match="get_flow"):  # removed: the flow lives in the state
        _ = kernel.flow
    # The trained flow puts ~2/3 of its mass on the (3, 3) mode.
    draws = trained.sample(jax.random.key(0), (4000,))
    assert abs(float((draws.sum(-1) > 0).mean()) - 2 / 3) < 0.1
    frozen = ne.FlowMCKernel(potential_fn=lambda x: -target.log_prob(x), flow=trained, train_flow=False)
    mcmc2 = MCMC(
        frozen, num_warmup=50, num_samples=50, num_chains=8, chain_method="vectorized", progress_bar=False
    )
    mcmc2.run(jax.random.key(3), init_params=jnp.zeros((8, 2)))
    for a, b in zip(
        jax.tree.leaves(mcmc2.last_state.flow_params),
        jax.tree.leaves(flows.partition(trained)[0]),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def test_state_dtypes_are_strong():
    """Weak-typed leaves in the carried state would make every call recompile."""
    kernel = ne.FlowMCKernel(potential_fn=lambda x: 0.5 * jnp.sum(x**2))
    state = kernel.init(jax.random.split(jax.random.key(0), 4), 10, jnp.zeros((4, 2)))
    state = jax.jit(lambda s: kernel.sample(s, (), {}))(state)
    weak = [x for x in jax.tree.leaves(state) if getattr(x, "weak_type", False)]
    assert not weak


def test_flowmc_step_runs_inside_user_jit():
    target = two_gaussians_target()
    flow = flows.default_flow(jax.random.key(0), 2, identity_init=True)
    chains = ne.moves.init_chains(jnp.zeros((8, 2)), target.log_prob)

    @jax.jit
    def run(key, chains):
        def body(c, k):
            c, info = ne.flowmc_step(
                k,
                c,
                target.log_prob,
                flow,
                step_size=0.1,
                num_local_steps=2,
                global_move="isir",
                num_particles=4,
            )
            return c, info.global_accept_prob.mean()

        return jax.lax.scan(body, chains, jax.random.split(key, 5))

    chains, acc = run(jax.random.key(1), chains)
    assert acc.shape == (5,) and bool(jnp.all(jnp.isfinite(chains.position)))


def test_kernel_step_is_a_direct_flowmc_step():
    """One ``kernel.sample`` moves the chains exactly as ``flowmc_step`` with the same key, chains,
    flow and the fields passed by hand (so the kernel forwards its settings, nothing else)."""
    target = two_gaussians_target()
    kernel = ne.FlowMCKernel(
        potential_fn=lambda x: -target.log_prob(x),
        global_move="isir",
        num_particles=4,
        num_local_steps=2,
        step_size=0.3,
    )
    init = 2.0 * jax.random.normal(jax.random.key(1), (8, 2))
    state = kernel.init(jax.random.split(jax.random.key(0), 8), 3, init)
    new = kernel.sample(state, (), {})
    _, key_step, _ = jax.random.split(state.rng_key, 3)  # the kernel's split of its state's key
    chains = ne.moves.ChainState(state.z, -state.potential_energy, -state.z_grad)
    flow = flows.combine(*flows.partition(kernel.get_flow(state)))
    by_hand, info = ne.flowmc_step(
        key_step,
        chains,
        target.log_prob,
        flow,
        step_size=0.3,
        num_local_steps=2,
        global_move="isir",
        num_particles=4,
    )
    np.testing.assert_array_equal(new.z, by_hand.position)
    np.testing.assert_array_equal(new.potential_energy, -by_hand.logdensity)
    np.testing.assert_array_equal(new.global_accept_prob, info.global_accept_prob)
    assert float(jnp.mean(info.global_accept_prob)) > 0  # the flow move happened, not only MALA


def _discrete_model():
    numpyro.sample("k", dist.Bernoulli(0.3))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ne.FlowMCKernel(), "exactly one"),
        (lambda: ne.FlowMCKernel(_constrained_model, potential_fn=lambda x: x), "exactly one"),
        (lambda: ne.FlowMCKernel(_constrained_model, step_size=-0.1), "step_size"),
        (lambda: ne.FlowMCKernel(_constrained_model, global_move="hmc"), "global_move"),
        (lambda: ne.FlowMCKernel(_constrained_model, global_move="isir", num_particles=1), "num_particles"),
        (lambda: ne.FlowMCKernel(_constrained_model, num_local_steps=-1), "num_local_steps"),
        (lambda: ne.FlowMCKernel(_constrained_model, target_accept_prob=1.5), "target_accept_prob"),
        (lambda: ne.FlowMCKernel(_constrained_model, flow_batch_size=0), "flow_batch_size"),
        (lambda: ne.FlowMCKernel(_constrained_model, flow="not a flow"), "flowjax"),
    ],
)
def test_invalid_arguments_raise(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


@pytest.mark.parametrize("chain_method", ["sequential", "parallel"])
def test_non_vectorized_chain_methods_raise(chain_method):
    mcmc = MCMC(
        ne.FlowMCKernel(_constrained_model),
        num_warmup=2,
        num_samples=2,
        num_chains=2,
        chain_method=chain_method,
        progress_bar=False,
    )
    with pytest.raises(ValueError, match="vectorized"):
        mcmc.run(jax.random.key(0))


def _mcmc(kernel, num_chains=4):
    return MCMC(
        kernel,
        num_warmup=2,
        num_samples=2,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )


def test_run_time_input_errors():
    with pytest.raises(ValueError, match="vectorized"):
        _mcmc(ne.FlowMCKernel(_constrained_model), num_chains=1).run(jax.random.key(0))
    with pytest.raises(ValueError, match="discrete"):
        _mcmc(ne.FlowMCKernel(_discrete_model)).run(jax.random.key(0))
    potential = ne.FlowMCKernel(potential_fn=lambda x: jnp.sum(x**2))
    with pytest.raises(ValueError, match="init_params"):
        _mcmc(potential).run(jax.random.key(0))
    with pytest.raises(ValueError, match="leading"):
        _mcmc(potential).run(jax.random.key(0), init_params=jnp.zeros((3, 2)))
    wrong_flow = flows.default_flow(jax.random.key(0), 5)
    with pytest.raises(ValueError, match="dim"):
        _mcmc(ne.FlowMCKernel(potential_fn=lambda x: jnp.sum(x**2), flow=wrong_flow)).run(
            jax.random.key(0), init_params=jnp.zeros((4, 2))
        )
    with pytest.raises(ValueError, match="scalar"):  # written for a batch, not one point
        _mcmc(ne.FlowMCKernel(potential_fn=lambda x: 0.5 * jnp.sum(x**2, axis=-1, keepdims=True))).run(
            jax.random.key(0), init_params=jnp.zeros((4, 2))
        )
    with pytest.raises(ValueError, match="non-finite"):
        _mcmc(ne.FlowMCKernel(potential_fn=lambda x: jnp.where(x[0] > -10, jnp.nan, 0.0))).run(
            jax.random.key(0), init_params=jnp.zeros((4, 2))
        )


def test_custom_flow_optimizer_is_used():
    """SGD with learning rate 0 leaves the initial flow untouched; with learning rate 0.1 it moves
    it (so the comparison with the initial flow can fail)."""
    initial = flows.default_flow(jax.random.key(1), 2)

    def largest_change(flow_optimizer):
        kernel = ne.FlowMCKernel(
            potential_fn=lambda x: 0.5 * jnp.sum(x**2),
            flow=initial,
            flow_optimizer=flow_optimizer,
            tempering=None,  # the flow is then trained in the warmup loop, 2 iterations here
        )
        mcmc = _mcmc(kernel)
        mcmc.run(jax.random.key(0), init_params=jnp.ones((4, 2)))
        return max(
            float(jnp.max(jnp.abs(a - b)))
            for a, b in zip(
                jax.tree.leaves(mcmc.last_state.flow_params),
                jax.tree.leaves(flows.partition(initial)[0]),
                strict=True,
            )
        )

    assert largest_change(optax.sgd(0.0)) == 0.0
    assert largest_change(optax.sgd(0.1)) > 0.0


def test_nan_region_of_the_target_is_never_entered():
    """A potential that is NaN on x[0] > 2 (a broken model): moves into it are rejected."""
    target = two_gaussians_target()
    potential = lambda x: jnp.where(x[0] > 2.0, jnp.nan, -target.log_prob(x))
    kernel = ne.FlowMCKernel(potential_fn=potential, global_move="isir", num_particles=8, tempering=None)
    mcmc = MCMC(
        kernel, num_warmup=100, num_samples=100, num_chains=16, chain_method="vectorized", progress_bar=False
    )
    mcmc.run(jax.random.key(0), init_params=0.5 * jax.random.normal(jax.random.key(1), (16, 2)))
    x = np.asarray(mcmc.get_samples())
    assert np.all(np.isfinite(x)) and np.all(x[:, 0] <= 2.0)
    assert np.mean(x.sum(-1) > 0) > 0.01  # chains still reach the finite part of the heavy mode


def test_one_dimensional_bimodal_target_with_default_flow():
    """d = 1: the default flow is elementwise splines; the 1/3 : 2/3 mode weights come out
    within 4 SE (tolerance as in test_mode_weights_match_truth)."""
    log_w = jnp.log(jnp.array([1 / 3, 2 / 3]))
    potential = lambda x: -jax.nn.logsumexp(log_w - 0.5 * ((x[0] - jnp.array([-3.0, 3.0])) / 0.5) ** 2)
    kernel = ne.FlowMCKernel(potential_fn=potential)
    mcmc = MCMC(
        kernel, num_warmup=200, num_samples=200, num_chains=32, chain_method="vectorized", progress_bar=False
    )
    mcmc.run(jax.random.PRNGKey(0), init_params=jax.random.normal(jax.random.key(1), (32, 1)))
    per_chain = np.asarray(mcmc.get_samples(group_by_chain=True)[..., 0] > 0).mean(axis=1)
    se = per_chain.std(ddof=1) / np.sqrt(len(per_chain))
    assert se < 0.02, f"chains do not mix between modes: SE {se}"
    assert abs(per_chain.mean() - 2 / 3) < 4 * se + 1e-3, (per_chain.mean(), se)
    assert kernel.get_flow(mcmc.last_state).shape == (1,)


def test_without_global_move_no_flow_is_built_or_carried():
    kernel = ne.FlowMCKernel(potential_fn=lambda x: 0.5 * jnp.sum(x**2), global_move=None)
    mcmc = _mcmc(kernel)
    mcmc.run(jax.random.key(0), init_params=jnp.ones((4, 3)))
    state = mcmc.last_state
    assert state.flow_params is None and state.flow_opt_state is None and state.buffer is None
    assert kernel.get_flow(state) is None
    assert np.isnan(state.global_accept_prob).all()  # "no global move", as in negatives' history
    assert "no global move" in kernel.get_diagnostics_str(state)
    frozen = ne.FlowMCKernel(potential_fn=lambda x: 0.5 * jnp.sum(x**2), train_flow=False)
    state = frozen.init(jax.random.split(jax.random.key(0), 4), 2, jnp.ones((4, 3)))
    assert state.flow_params is not None and state.flow_opt_state is None and state.buffer is None


def test_z_grad_is_the_gradient_of_the_potential_energy():
    """NumPyro's convention (HMCState.z_grad): grad of U = -log pi, shaped like z."""
    kernel = ne.FlowMCKernel(potential_fn=lambda z: 0.5 * jnp.sum(z["a"] ** 2) + jnp.sum(z["b"]))
    init = {"a": jnp.arange(8.0).reshape(4, 2), "b": jnp.zeros((4, 1))}
    state = kernel.init(jax.random.split(jax.random.key(0), 4), 0, init)
    state = kernel.sample(state, (), {})
    np.testing.assert_allclose(state.z_grad["a"], state.z["a"], rtol=1e-6)
    np.testing.assert_allclose(state.z_grad["b"], 1.0)
