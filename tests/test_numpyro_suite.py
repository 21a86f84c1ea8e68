"""NumPyro's own generic kernel tests, run with ``FlowMCKernel`` defaults and PRNGKey keys.

Our versions of ``test/infer/test_mcmc.py`` (unnormalized normal, logistic regression,
beta-bernoulli, dirichlet-categorical, dense mass, change point, improper prior, uniform-normal
with ``TransformReparam``) and of the smoke tests of ``test/infer/test_ensemble_mcmc.py``.
Users write ``jax.random.PRNGKey`` (raw uint32) keys, as NumPyro's docs do; so do we here. Two
tests that re-initialise with new data shapes turn tempering off (each shape would re-compile it).

Tolerances are NumPyro's. NumPyro draws 8,000-20,000 samples from one NUTS chain; we draw
32 chains x 200 = 6,400 (IMH moves with a trained flow are nearly independent, so the effective
sample size is of the same order), which keeps each test to a few seconds of sampling. The
logistic-regression coefficients NumPyro hard-codes were fitted to another random stream, so the
reference here is NUTS on the same data.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpy.testing import assert_allclose
from numpyro.distributions.transforms import AffineTransform
from numpyro.infer import MCMC, NUTS
from numpyro.infer.reparam import LocScaleReparam, TransformReparam

import numpyro_ebm as ne

PRNGKey = jax.random.PRNGKey
NUM_CHAINS = 32


def _mcmc(
    model=None, potential_fn=None, num_warmup=200, num_samples=200, num_chains=NUM_CHAINS, **kernel_kwargs
):
    kernel = ne.FlowMCKernel(model, potential_fn, **kernel_kwargs)
    return MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )


def test_unnormalized_normal():
    """A 1-D potential_fn (NumPyro's test_unnormalized_normal_x64), rtol 0.07."""
    true_mean, true_std = 1.0, 0.5
    mcmc = _mcmc(potential_fn=lambda z: 0.5 * jnp.sum(((z - true_mean) / true_std) ** 2))
    mcmc.run(PRNGKey(0), init_params=jnp.zeros(NUM_CHAINS))  # one scalar per chain
    samples = mcmc.get_samples()
    assert samples.shape == (NUM_CHAINS * 200,)
    assert_allclose(jnp.mean(samples), true_mean, rtol=0.07)
    assert_allclose(jnp.std(samples), true_std, rtol=0.07)


# The logistic-regression data of test_logistic_regression_x64 and test_ensemble_mcmc.py.
N, DIM = 3000, 3
DATA = jax.random.normal(PRNGKey(0), (N, DIM))
LABELS = dist.Bernoulli(logits=jnp.sum(jnp.arange(1.0, DIM + 1.0) * DATA, axis=-1)).sample(PRNGKey(1))


def logistic_model(labels):
    coefs = numpyro.sample("coefs", dist.Normal(jnp.zeros(DIM), jnp.ones(DIM)))
    logits = numpyro.deterministic("logits", jnp.sum(coefs * DATA, axis=-1))
    return numpyro.sample("obs", dist.Bernoulli(logits=logits), obs=labels)


def test_logistic_regression():
    """atol 0.1 (NumPyro's) against NUTS on the same data; the posterior sd is ~0.05-0.1."""
    mcmc = _mcmc(logistic_model, num_samples=100)
    mcmc.run(PRNGKey(2), LABELS)
    samples = mcmc.get_samples()
    assert samples["logits"].shape == (NUM_CHAINS * 100, N)
    nuts = MCMC(NUTS(logistic_model), num_warmup=300, num_samples=500, progress_bar=False)
    nuts.run(PRNGKey(2), LABELS)
    assert_allclose(jnp.mean(samples["coefs"], 0), jnp.mean(nuts.get_samples()["coefs"], 0), atol=0.1)


def test_beta_bernoulli():
    def model(data):
        p_latent = numpyro.sample("p_latent", dist.Beta(jnp.array([1.1, 1.1]), jnp.array([1.1, 1.1])))
        numpyro.sample("obs", dist.Bernoulli(p_latent), obs=data)

    true_probs = jnp.array([0.9, 0.1])
    data = dist.Bernoulli(true_probs).sample(PRNGKey(1), (1000,))
    mcmc = _mcmc(model)
    mcmc.run(PRNGKey(2), data)
    assert_allclose(jnp.mean(mcmc.get_samples()["p_latent"], 0), true_probs, atol=0.05)


def test_dirichlet_categorical():
    def model(data):
        p_latent = numpyro.sample("p_latent", dist.Dirichlet(jnp.ones(3)))
        numpyro.sample("obs", dist.Categorical(p_latent), obs=data)

    true_probs = jnp.array([0.1, 0.6, 0.3])
    data = dist.Categorical(true_probs).sample(PRNGKey(1), (2000,))
    mcmc = _mcmc(model)
    mcmc.run(PRNGKey(2), data)
    assert_allclose(jnp.mean(mcmc.get_samples()["p_latent"], 0), true_probs, atol=0.02)


@pytest.mark.parametrize("rho", [-0.7, 0.8])
def test_dense_mass(rho):
    """Variances 10 and 0.1: the flow's standardisation must take the place of a mass matrix."""
    true_cov = jnp.array([[10.0, rho], [rho, 0.1]])

    def model():
        numpyro.sample("x", dist.MultivariateNormal(jnp.zeros(2), covariance_matrix=true_cov))

    mcmc = _mcmc(model)
    mcmc.run(PRNGKey(0))
    samples = mcmc.get_samples()["x"]
    assert_allclose(jnp.mean(samples[:, 0]), 0.0, atol=0.50)
    assert_allclose(jnp.mean(samples[:, 1]), 0.0, atol=0.05)
    assert_allclose(jnp.mean(samples[:, 0] * samples[:, 1]), rho, atol=0.20)
    assert_allclose(jnp.var(samples, axis=0), jnp.array([10.0, 0.1]), rtol=0.20)


# fmt: off
COUNT_DATA = jnp.array([
    13, 24, 8, 24, 7, 35, 14, 11, 15, 11, 22, 22, 11, 57, 11, 19, 29, 6, 19, 12, 22,
    12, 18, 72, 32, 9, 7, 13, 19, 23, 27, 20, 6, 17, 13, 10, 14, 6, 16, 15, 7, 2,
    15, 15, 19, 70, 49, 7, 53, 22, 21, 31, 19, 11, 1, 20, 12, 35, 17, 23, 17, 4, 2,
    31, 30, 13, 27, 0, 39, 37, 5, 14, 13, 22])
# fmt: on


def test_change_point():
    """The likelihood is flat in tau between data points (zero gradient): the flow moves it."""

    def model(data):
        alpha = 1 / jnp.mean(data.astype(np.float32))
        lambda1 = numpyro.sample("lambda1", dist.Exponential(alpha))
        lambda2 = numpyro.sample("lambda2", dist.Exponential(alpha))
        tau = numpyro.sample("tau", dist.Uniform(0, 1))
        lambda12 = jnp.where(jnp.arange(len(data)) < tau * len(data), lambda1, lambda2)
        numpyro.sample("obs", dist.Poisson(lambda12), obs=data)

    mcmc = _mcmc(model)
    mcmc.run(PRNGKey(4), COUNT_DATA)
    tau = np.asarray(mcmc.get_samples()["tau"] * len(COUNT_DATA)).astype(np.int32)
    values, counts = np.unique(tau, return_counts=True)
    assert values[np.argmax(counts)] == 44


def test_improper_prior_warmup_then_run():
    """.mask(False) and ImproperUniform: never sampled (NumPyro's initialisation), rtol 0.05."""
    true_mean, true_std = 1.0, 2.0

    def model(data):
        mean = numpyro.sample("mean", dist.Normal(0, 1).mask(False))
        std = numpyro.sample("std", dist.ImproperUniform(dist.constraints.positive, (), ()))
        return numpyro.sample("obs", dist.Normal(mean, std), obs=data)

    data = dist.Normal(true_mean, true_std).sample(PRNGKey(1), (2000,))
    mcmc = _mcmc(model)
    mcmc.warmup(PRNGKey(2), data)
    mcmc.run(PRNGKey(2), data)
    samples = mcmc.get_samples()
    assert_allclose(jnp.mean(samples["mean"]), true_mean, rtol=0.05)
    assert_allclose(jnp.mean(samples["std"]), true_std, rtol=0.05)


def test_uniform_normal_transform_reparam():
    """warmup(collect_warmup=True), run, then run again from last_state; atol 0.05."""
    true_coef = 0.9

    def model(data):
        alpha = numpyro.sample("alpha", dist.Uniform(0, 1))
        with numpyro.handlers.reparam(config={"loc": TransformReparam()}):
            loc = numpyro.sample(
                "loc", dist.TransformedDistribution(dist.Uniform(0, 1), AffineTransform(0, alpha))
            )
        numpyro.sample("obs", dist.Normal(loc, 0.1), obs=data)

    data = true_coef + jax.random.normal(PRNGKey(0), (1000,))
    num_warmup, num_samples = 200, 200
    mcmc = _mcmc(model, num_warmup=num_warmup, num_samples=num_samples)
    mcmc.warmup(PRNGKey(2), data, collect_warmup=True)
    assert mcmc.post_warmup_state is not None
    warmup_samples = mcmc.get_samples()
    mcmc.run(PRNGKey(3), data)
    samples = mcmc.get_samples()
    assert len(warmup_samples["loc"]) == NUM_CHAINS * num_warmup
    assert len(samples["loc"]) == NUM_CHAINS * num_samples
    assert_allclose(jnp.mean(samples["loc"], 0), true_coef, atol=0.05)
    mcmc.post_warmup_state = mcmc.last_state
    mcmc.run(PRNGKey(3), data)
    assert_allclose(jnp.mean(mcmc.get_samples()["loc"], 0), true_coef, atol=0.05)


# -- test_ensemble_mcmc.py: smoke tests (shapes, several runs, warmup then run) ------------------


@pytest.mark.parametrize("method", ["sequential", "parallel"])
def test_chain_smoke(method):
    mcmc = MCMC(
        ne.FlowMCKernel(logistic_model), num_warmup=10, num_samples=10, num_chains=2, chain_method=method
    )
    with pytest.raises(ValueError, match="chain_method"):
        mcmc.run(PRNGKey(2), LABELS)


def test_out_shape_multirun_and_warmup():
    """Shapes only: tempering is off (each of the three inits below would re-run and re-compile
    the tempered SMC on the 3,000-point likelihood; it was the module's second slowest test)."""
    num_chains = 10
    mcmc = _mcmc(logistic_model, num_warmup=10, num_samples=10, num_chains=num_chains, tempering=None)
    mcmc.run(PRNGKey(2), LABELS)
    assert mcmc.get_samples(group_by_chain=True)["coefs"].shape == (num_chains, 10, DIM)
    mcmc.run(PRNGKey(3), LABELS)  # multirun
    mcmc.warmup(PRNGKey(2), LABELS)
    mcmc.run(PRNGKey(3), LABELS)
    assert mcmc.get_samples(group_by_chain=True)["logits"].shape == (num_chains, 10, N)


# -- NumPyro idioms in one model: improper prior, plate, LocScaleReparam, factor, deterministic --


def idioms_model(y):
    mu = numpyro.sample("mu", dist.ImproperUniform(dist.constraints.real, (), ()))
    with numpyro.plate("n", y.shape[0]), numpyro.handlers.reparam(config={"eps": LocScaleReparam(0)}):
        eps = numpyro.sample("eps", dist.Normal(mu, 1.0))
    numpyro.factor("likelihood", dist.Normal(eps, 1.0).log_prob(y).sum())
    numpyro.deterministic("mu_squared", mu**2)


def test_model_idioms_and_changing_model_args():
    """Flat prior, y_i ~ N(mu, 2) marginally: the posterior of mu is N(mean(y), 2 / n) exactly.
    The second run has more data (model_args change shape). Per-chain means give the SE; 4 SE."""
    # Tempering off, as in test_out_shape_multirun_and_warmup: each data size would re-run and
    # re-compile the tempered SMC (the module's slowest test, ~75 s); an improper prior with the
    # defaults is test_improper_prior_warmup_then_run's.
    mcmc = _mcmc(idioms_model, tempering=None)
    for n, key in [(5, 0), (9, 1)]:
        y = 1.0 + jax.random.normal(PRNGKey(10 + n), (n,))
        mcmc.run(PRNGKey(key), y)
        s = mcmc.get_samples(group_by_chain=True)
        assert s["eps"].shape == (NUM_CHAINS, 200, n)
        assert_allclose(s["mu_squared"], s["mu"] ** 2, rtol=1e-5)
        per_chain = np.asarray(s["mu"]).mean(axis=1)
        se = per_chain.std(ddof=1) / np.sqrt(NUM_CHAINS)
        assert abs(per_chain.mean() - float(y.mean())) < 4 * se, (per_chain.mean(), float(y.mean()), se)
        assert_allclose(np.std(s["mu"]), np.sqrt(2 / n), rtol=0.15)  # ~7 SE of a 1,000+ ESS std
