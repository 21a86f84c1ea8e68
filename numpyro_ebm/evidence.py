"""Model evidence ``log p(data)`` from a finished ``FlowMCKernel`` run, by importance sampling.

The kernel's target is ``pi(z) = exp(-U(z))`` over the flattened unconstrained latent space,
where NumPyro's potential ``U`` includes the log-Jacobians of the unconstraining transforms; so
``Z = int pi(z) dz`` is the evidence ``p(data) = int p(data | theta) p(theta) dtheta`` of the
model with its (proper) priors. The trained flow ``q`` is a proposal close to ``pi / Z``:

    Z ~= (1 / n) sum_i pi(z_i) / r(z_i),    z_i ~ r,

with ``r`` a defensive mixture ``(1 - a) q + a g`` (Hesterberg 1995): ``g`` is a Gaussian fitted
to the posterior draws with doubled standard deviations, whose tails guard against a flow that
is too light somewhere. Draws are allocated deterministically (``round((1 - a) n)`` from ``q``,
the rest from ``g``) and weighted by the mixture density (the balance heuristic, unbiased).
The weights are Pareto-smoothed (PSIS, Vehtari et al. 2024, through ArviZ); the fitted Pareto
shape ``k`` says whether to trust the result: above 0.7 the estimate is unreliable and a
warning is raised (e.g. the flow missed a mode the posterior has).
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import arviz as az
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.scipy.special import logsumexp
from jaxtyping import PRNGKeyArray
from numpyro.infer.util import unconstrain_fn

from numpyro_ebm._keys import as_typed_key

__all__ = ["Evidence", "EvidenceWarning", "log_evidence"]

PARETO_K_THRESHOLD = 0.7


class Evidence(NamedTuple):
    """An importance-sampling estimate of the log evidence.

    Attributes:
        log_z: ``log Z``, the log evidence (a float).
        stderr: its standard error, ``sqrt(1 / ess - 1 / n)`` (the delta method on ``Z``).
        ess: importance-sampling effective sample size of the smoothed weights, in ``[1, n]``.
        pareto_k: PSIS shape estimate ``k-hat``; above 0.7 the estimate is not reliable.
    """

    log_z: float
    stderr: float
    ess: float
    pareto_k: float


class EvidenceWarning(UserWarning):
    """The importance weights are too heavy-tailed (PSIS ``k-hat > 0.7``) to trust ``log_z``."""


def log_evidence(
    mcmc,
    rng_key: PRNGKeyArray,
    *model_args,
    num_draws: int = 8192,
    defensive: float = 0.1,
    **model_kwargs,
) -> Evidence:
    """Estimate ``log p(data)`` from a run of ``MCMC(FlowMCKernel(model), ...)``.

    Args:
        mcmc: a ``numpyro.infer.MCMC`` whose sampler is a :class:`~numpyro_ebm.FlowMCKernel`,
            after ``run`` (its flow and samples are used).
        rng_key: a PRNG key (typed or ``jax.random.PRNGKey``).
        *model_args: the model's arguments, as given to ``mcmc.run``.
        num_draws: importance draws ``n``.
        defensive: weight ``a`` of the broad Gaussian in the proposal mixture, in ``[0, 1]``;
            0 uses the flow alone. Without a flow (``global_move=None``) the Gaussian alone.
        **model_kwargs: the model's keyword arguments.

    Returns:
        An :class:`Evidence`. Warns (:class:`EvidenceWarning`) when ``pareto_k > 0.7``.

    Example:
        >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> from numpyro.infer import MCMC
        >>> from numpyro_ebm import FlowMCKernel
        >>> def model(y):
        ...     mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> kernel = FlowMCKernel(model, tempering=None)  # one mode: no mode discovery needed
        >>> mcmc = MCMC(kernel, num_warmup=100, num_samples=100, num_chains=16,
        ...             chain_method="vectorized", progress_bar=False)
        >>> mcmc.run(jax.random.PRNGKey(0), 0.5)
        >>> ev = log_evidence(mcmc, jax.random.PRNGKey(1), 0.5)
        >>> truth = float(dist.Normal(0.0, jnp.sqrt(2.0)).log_prob(0.5))
        >>> abs(ev.log_z - truth) < 4 * ev.stderr + 1e-3
        True
    """
    kernel = mcmc.sampler
    if not hasattr(kernel, "get_flow") or mcmc.last_state is None:
        raise TypeError(
            "log_evidence needs an MCMC(FlowMCKernel(...), ...) that has been run; got sampler "
            f"{type(kernel).__name__} (last_state={'None' if mcmc.last_state is None else 'set'})."
        )
    if not isinstance(num_draws, int) or num_draws < 2:
        raise ValueError(f"num_draws must be an integer >= 2; got {num_draws!r}.")
    if not 0.0 <= defensive <= 1.0:
        raise ValueError(f"defensive must lie in [0, 1]; got {defensive!r}.")
    key = as_typed_key(rng_key, name="rng_key")
    logdensity_fn = kernel.logdensity_fn(*model_args, **model_kwargs)
    flow = kernel.get_flow(mcmc.last_state)
    if flow is None:
        defensive = 1.0
    mean, chol = _broad_gaussian(_unconstrained_draws(mcmc, model_args, model_kwargs))
    num_gauss = num_draws if flow is None else int(round(defensive * num_draws))
    log_w = np.asarray(_log_weights(key, logdensity_fn, flow, mean, chol, num_draws, num_gauss, defensive))
    return _psis_estimate(log_w)


def _unconstrained_draws(mcmc, model_args, model_kwargs) -> jax.Array:
    """The posterior draws, flattened in the kernel's unconstrained space: ``(draws, dim)``."""
    kernel = mcmc.sampler
    last_z = mcmc.last_state.z
    samples = mcmc.get_samples()
    if kernel.model is None:
        z = samples
    else:
        latent = {name: samples[name] for name in last_z}
        model = kernel.model
        z = jax.vmap(lambda p: unconstrain_fn(model, model_args, model_kwargs, p))(latent)
    return jax.vmap(lambda one: ravel_pytree(one)[0])(z)


def _broad_gaussian(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and Cholesky factor of ``N(mean(x), 4 cov(x))`` (doubled standard deviations)."""
    x = jnp.asarray(x, jnp.result_type(float))
    mean = jnp.mean(x, axis=0)
    cov = jnp.atleast_2d(jnp.cov(x, rowvar=False))
    jitter = 1e-6 * (1.0 + jnp.mean(jnp.diag(cov)))
    return mean, jnp.linalg.cholesky(4.0 * cov + jitter * jnp.eye(cov.shape[0]))


def _gauss_log_prob(x, mean, chol):
    white = jax.scipy.linalg.solve_triangular(chol, (x - mean).T, lower=True).T
    dim = mean.shape[0]
    return -0.5 * jnp.sum(white**2, -1) - jnp.sum(jnp.log(jnp.diag(chol))) - 0.5 * dim * math.log(2 * math.pi)


@eqx.filter_jit
def _log_weights(key, logdensity_fn, flow, mean, chol, n, num_gauss, defensive):
    key_flow, key_gauss = jax.random.split(key)
    dim = mean.shape[0]
    x_gauss = mean + jax.random.normal(key_gauss, (num_gauss, dim), mean.dtype) @ chol.T
    if flow is None:
        x, log_r = x_gauss, _gauss_log_prob(x_gauss, mean, chol)
    else:
        x_flow = flow.sample(key_flow, (n - num_gauss,)).astype(mean.dtype)
        x = jnp.concatenate([x_flow, x_gauss])
        log_q = flow.log_prob(x)
        if defensive == 0.0:
            log_r = log_q
        else:
            log_r = jnp.logaddexp(
                math.log1p(-defensive) + log_q if defensive < 1.0 else -jnp.inf,
                math.log(defensive) + _gauss_log_prob(x, mean, chol),
            )
    log_w = jax.vmap(logdensity_fn)(x) - log_r
    return jnp.where(jnp.isfinite(log_w), log_w, -jnp.inf)  # a NaN target point has weight 0


def _psis_estimate(log_w: np.ndarray) -> Evidence:
    n = log_w.shape[0]
    if not np.isfinite(log_w).any():
        raise ValueError("log_evidence: every importance weight is zero (non-finite target values).")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns about k too; we raise our own warning
        smoothed, k = az.psislw(log_w, reff=1.0, normalize=False)
    smoothed, k = np.asarray(smoothed, np.float64), float(np.asarray(k))
    lse = float(logsumexp(smoothed))
    ess = float(np.exp(2 * lse - logsumexp(2 * smoothed)))
    stderr = math.sqrt(max(1.0 / ess - 1.0 / n, 0.0))
    if k > PARETO_K_THRESHOLD:
        warnings.warn(
            f"log_evidence: Pareto k-hat = {k:.2f} > {PARETO_K_THRESHOLD}: the importance weights "
            "are too heavy-tailed to trust log_z (the flow probably misses part of the posterior, "
            "e.g. a mode). Train longer (more warmup, more chains), or check the posterior draws.",
            EvidenceWarning,
            stacklevel=2,
        )
    return Evidence(lse - math.log(n), stderr, ess, k)
