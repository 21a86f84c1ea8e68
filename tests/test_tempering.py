"""Mode discovery: every chain of FlowMCKernel starts in ONE mode, tempered SMC must find the rest.

Registry style: each target has known zone weights; each runs with every global move (d = 16:
the kernel's default, IMH, only) through the same check. Tolerances as in test_kernel.py: after
warmup the flow is frozen, so chains are independent given it; the spread of per-chain zone
frequencies gives a standard error (SE) that includes autocorrelation. We require |estimate -
truth| < 4 SE + 1e-3 (4 SE: two-sided ~6e-5 under normality; 1e-3 absorbs the zones' own
misassignment, < 1e-4 here) AND SE < 0.02, so chains that stay where they started (per-chain
frequencies 0 or 1) fail even if the mean lands near.
Without tempering every test below fails: all the mass stays in the starting mode.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import MCMC

import numpyro_ebm as ne
from numpyro_ebm import flows, tempering
from numpyro_ebm.datasets import GaussianMixture, Target, gaussian_mixture_target, two_gaussians_target


def _four_modes_unequal(dim):
    """The four-mode mixture of ``gaussian_mixture_target`` with weights 0.1 / 0.2 / 0.3 / 0.4."""
    base = gaussian_mixture_target(dim)
    weights = np.array([0.1, 0.2, 0.3, 0.4])
    mixture = GaussianMixture(base.distribution.means, np.ones(4), weights)
    return Target("four_modes_unequal", mixture, base.zones, weights, None)


# name -> (target, num_chains, num_warmup, num_samples); chains start in the lightest mode (0).
TARGETS = {
    "two_gaussians_2to1": (two_gaussians_target(), 32, 200, 300),
    "four_modes_unequal_d16": (_four_modes_unequal(16), 64, 300, 300),
}
REFERENCE_SCALE = 5.0  # a broad reference, as a user would pick without knowing the modes


def _zone_check(zones, weights, num_chains):
    """zones: (chains, draws) ints. Asserts the module docstring's criterion."""
    per_chain = np.stack([(zones == k).mean(axis=1) for k in range(len(weights))], axis=-1)
    estimate = per_chain.mean(axis=0)
    se = per_chain.std(axis=0, ddof=1) / np.sqrt(num_chains)
    assert np.all(se < 0.02), f"chains do not mix between modes: estimate {estimate}, SE {se}"
    np.testing.assert_array_less(np.abs(estimate - weights), 4 * se + 1e-3)


@pytest.mark.parametrize(
    "name, global_move",
    # d = 16 with FlowMCKernel's default global move (IMH) only: the i-SIR case cost ~50 CPU s of
    # a suite kept under 15 minutes; i-SIR's correctness is tests/test_moves.py's (with its mutants).
    [("two_gaussians_2to1", "imh"), ("two_gaussians_2to1", "isir"), ("four_modes_unequal_d16", "imh")],
)
def test_one_mode_start_finds_every_mode(name, global_move):
    target, num_chains, num_warmup, num_samples = TARGETS[name]
    reference = dist.Normal(0.0, REFERENCE_SCALE).expand([target.dim])
    kernel = ne.FlowMCKernel(
        potential_fn=lambda x: -target.log_prob(x),
        global_move=global_move,
        num_particles=16,
        tempering=tempering.TemperedSMC(reference=reference),
    )
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    start = target.distribution.means[0]  # the lightest mode
    init = start + 0.5 * jax.random.normal(jax.random.key(1), (num_chains, target.dim))
    mcmc.run(jax.random.key(0), init_params=init)
    zones = np.asarray(target.zones(mcmc.get_samples(group_by_chain=True)))
    _zone_check(zones, np.asarray(target.weights), num_chains)
    assert kernel.tempering_result.betas[-1] == 1.0


def _mixture_model(y):
    """K = 3 Gaussian mixture, exchangeable prior: 3! = 6 label-switched modes of mass 1/6."""
    w = numpyro.sample("w", dist.Dirichlet(jnp.ones(3)))
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0).expand([3]))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
    numpyro.sample("y", dist.MixtureSameFamily(dist.Categorical(w), dist.Normal(mu, sigma)), obs=y)


# Three well separated clusters of 15 points: the labellings are ~17 posterior SDs apart.
MIXTURE_DATA = jnp.concatenate([jnp.linspace(-1.0, 1.0, 15) + c for c in (-4.0, 0.0, 4.0)])
LABELLINGS = list(itertools.permutations(range(3)))


def labelling(mu):
    """Index in LABELLINGS of the order of the component means, for mu of shape (..., 3)."""
    order = np.argsort(np.asarray(mu), axis=-1)
    codes = order @ np.array([9, 3, 1])
    table = {int(np.array(p) @ np.array([9, 3, 1])): i for i, p in enumerate(LABELLINGS)}
    return np.vectorize(table.__getitem__)(codes)


def test_label_switched_posterior_every_labelling_defaults():
    """A NumPyro model with the defaults (tempering from the prior is on by default)."""
    num_chains = 32
    kernel = ne.FlowMCKernel(_mixture_model)
    mcmc = MCMC(
        kernel,
        num_warmup=300,
        num_samples=300,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0), MIXTURE_DATA)
    zones = labelling(mcmc.get_samples(group_by_chain=True)["mu"])
    _zone_check(zones, np.full(6, 1 / 6), num_chains)
    assert np.isfinite(float(kernel.tempering_result.log_z))


def test_smc_population_weights_and_evidence():
    """tempered_smc alone, MALA moves only (no flow jumps): the mode weights of the particles
    and log Z come from the SMC weights alone. Target: the 2:1 mixture times e^3 (log Z = 3).
    2048 particles: the multinomial SE of the heavy mode's share is 0.010, inflated by the
    few resampling steps to ~0.015; we allow 0.05. log Z: its SE at ESS fraction 0.5 over ~3
    levels is ~0.03; we allow 0.15. Dropping the incremental weights gives ~0.5 and log Z = 0."""
    target = two_gaussians_target()
    reference = dist.Normal(0.0, REFERENCE_SCALE).expand([2])
    particles = reference.sample(jax.random.key(0), (2048,))
    flow = flows.default_flow(jax.random.key(1), 2, identity_init=True)
    out = tempering.tempered_smc(
        jax.random.key(2),
        lambda x: target.log_prob(x) + 3.0,
        tempering.reference_logdensity(reference),
        particles,
        flow,
        optimizer=optax.adam(1e-3),
        transition=ne.FlowMCSettings(step_size=0.1, global_move=None),
        fit_flow=False,
    )
    heavy = float((target.zones(out.position) == 1).mean())
    assert abs(heavy - 2 / 3) < 0.05, heavy
    assert abs(float(out.log_z) - 3.0) < 0.15, float(out.log_z)
    assert float(out.betas[-1]) == 1.0 and out.num_levels == out.betas.shape[0]


def test_prior_reference_masks_observed_and_factor_sites():
    def model(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
        scale = numpyro.sample("scale", dist.LogNormal(0.0, 1.0))
        numpyro.factor("penalty", -100.0 * mu**2)
        numpyro.sample("y", dist.Normal(mu, scale), obs=y)

    x, log_prior = tempering.prior_reference(jax.random.key(0), model, (jnp.ones(5),), {}, 4000)
    assert x.shape == (4000, 2)
    # Flattened order: mu, scale (unconstrained: log scale ~ N(0, 1)).
    np.testing.assert_allclose(np.asarray(x.std(0)), [2.0, 1.0], rtol=0.05)
    z = jnp.array([0.3, -0.2])
    expected = dist.Normal(0.0, 2.0).log_prob(0.3) + dist.Normal(0.0, 1.0).log_prob(-0.2)
    np.testing.assert_allclose(float(log_prior(z)), float(expected), rtol=1e-5)


def test_improper_prior_falls_back_to_gaussian_reference():
    def model():
        numpyro.sample("x", dist.ImproperUniform(dist.constraints.real, (), (2,)))

    assert tempering.prior_reference(jax.random.key(0), model, (), {}, 8) is None
    start = tempering.initial_particles(
        jax.random.key(0), tempering.TemperedSMC(num_particles=8), model, (), {}, jnp.zeros((4, 2))
    )
    assert start[0].shape == (8, 2)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: tempering.TemperedSMC(ess_fraction=1.0), "ess_fraction"),
        (lambda: tempering.TemperedSMC(num_mcmc_steps=0), "num_mcmc_steps"),
        (lambda: tempering.TemperedSMC(warm_buffer_levels=0), "warm_buffer_levels"),
        (lambda: tempering.TemperedSMC(num_particles=1), "num_particles"),
        (lambda: tempering.TemperedSMC(reference="normal"), "reference"),
        (lambda: ne.FlowMCKernel(_mixture_model, tempering="pt"), "tempering"),
    ],
)
def test_invalid_settings_raise(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_reference_of_the_wrong_shape_raises():
    kernel = ne.FlowMCKernel(
        potential_fn=lambda x: 0.5 * jnp.sum(x**2),
        tempering=tempering.TemperedSMC(reference=dist.Normal(0.0, 1.0).expand([3])),
    )
    with pytest.raises(ValueError, match="shape"):
        kernel.init(jax.random.split(jax.random.key(0), 4), 10, jnp.zeros((4, 2)))


def test_level_compiler_options_are_accepted_or_omitted():
    """The SMC level's per-program XLA options: on CPU an XLA that knows them compiles with them;
    other backends (and an XLA that rejects them) get none, so the level compiles everywhere."""
    from numpyro_ebm._compile import ONE_SHOT, large_program_options

    assert large_program_options("gpu") is None
    options = large_program_options("cpu")
    assert options is None or options == {"xla_cpu_use_fusion_emitters": False}
    for opts in (options, ONE_SHOT):
        out = jax.jit(lambda x: 2 * x, compiler_options=opts)(jnp.ones(3))
        np.testing.assert_allclose(out, 2.0)
