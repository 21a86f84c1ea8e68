"""log_evidence against closed forms, and k-hat flagging a flow that misses a mode.

Tolerance: |log_z - truth| < 4 stderr, with stderr the importance-sampling standard error that
log_evidence reports (two-sided ~6e-5 under normality). A k-hat below 0.7 is required as well,
so that a heavy-tailed estimate cannot pass on an inflated stderr.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from flowjax.distributions import Normal
from numpyro.infer import MCMC
from scipy.special import betaln
from scipy.stats import multivariate_normal

import numpyro_ebm as ne
from numpyro_ebm.evidence import EvidenceWarning


def _run(model, *args, num_chains=32, **kernel_kwargs):
    kernel = ne.FlowMCKernel(model, **kernel_kwargs)
    mcmc = MCMC(
        kernel,
        num_warmup=200,
        num_samples=200,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(0), *args)
    return mcmc


def _assert_matches(ev, truth):
    assert ev.pareto_k < 0.7, ev
    assert ev.stderr < 0.05, ev  # a useful estimate, not a wide one
    assert abs(ev.log_z - truth) < 4 * ev.stderr, (ev, truth)


def gaussian_mean_model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    with numpyro.plate("n", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def test_conjugate_gaussian_mean():
    """y ~ N(0, I + 4 11^T) marginally."""
    y = 1.0 + jax.random.normal(jax.random.key(1), (10,))
    mcmc = _run(gaussian_mean_model, y, tempering=None)  # unimodal: no mode discovery needed
    ev = ne.log_evidence(mcmc, jax.random.PRNGKey(2), y)
    truth = multivariate_normal(np.zeros(10), np.eye(10) + 4.0).logpdf(np.asarray(y))
    _assert_matches(ev, truth)


def beta_bernoulli_model(y):
    p = numpyro.sample("p", dist.Beta(2.0, 3.0))
    numpyro.sample("y", dist.Bernoulli(p), obs=y)


def test_beta_bernoulli_constrained_site():
    """p(y) = B(a + k, b + n - k) / B(a, b); the flow works in logit space (Jacobian included)."""
    y = jnp.array([1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1])
    mcmc = _run(beta_bernoulli_model, y, tempering=None)  # unimodal: no mode discovery needed
    ev = ne.log_evidence(mcmc, jax.random.PRNGKey(2), y)
    k, n = int(y.sum()), y.shape[0]
    _assert_matches(ev, betaln(2.0 + k, 3.0 + n - k) - betaln(2.0, 3.0))


PEAKS = jnp.array([[-2.0, -2.0], [2.0, 2.0]])
PEAK_WEIGHTS = jnp.array([0.3, 0.7])


def bimodal_model(peaks):
    """Prior N(0, 9 I); likelihood sum_k w_k N(peak_k; x, 0.25 I): two posterior modes."""
    x = numpyro.sample("x", dist.Normal(jnp.zeros(peaks.shape[1]), 3.0).to_event(1))
    log_lik = dist.Normal(x, 0.5).to_event(1).log_prob(peaks)
    numpyro.factor("likelihood", jax.nn.logsumexp(jnp.log(PEAK_WEIGHTS) + log_lik))


def _bimodal_truth(peaks):
    dim = peaks.shape[1]
    cov = (9.0 + 0.25) * np.eye(dim)
    dens = [multivariate_normal(np.zeros(dim), cov).pdf(np.asarray(p)) for p in peaks]
    return math.log(float(np.dot(np.asarray(PEAK_WEIGHTS), dens)))


def test_bimodal_mixture_likelihood():
    mcmc = _run(bimodal_model, PEAKS)
    ev = ne.log_evidence(mcmc, jax.random.PRNGKey(2), PEAKS)
    _assert_matches(ev, _bimodal_truth(PEAKS))


def test_flow_missing_a_mode_is_flagged_by_k_hat():
    """1-D modes at +-1.8 (sd 0.95). A frozen flow on the right mode alone gives weights
    ~ exp(-c x) under the flow: heavy-tailed, so PSIS k-hat > 0.7 and a warning."""
    peaks = jnp.array([[-2.0], [2.0]])
    flow = Normal(jnp.array([1.8]), jnp.array([0.95]))
    mcmc = _run(bimodal_model, peaks, flow=flow, train_flow=False)
    with pytest.warns(EvidenceWarning, match="k-hat"):
        ev = ne.log_evidence(mcmc, jax.random.PRNGKey(2), peaks, defensive=0.0)
    assert ev.pareto_k > 0.7


def test_bad_input():
    mcmc = MCMC(ne.FlowMCKernel(gaussian_mean_model), num_warmup=1, num_samples=1, num_chains=2)
    with pytest.raises(TypeError, match="has been run"):
        ne.log_evidence(mcmc, jax.random.PRNGKey(0), jnp.zeros(3))
