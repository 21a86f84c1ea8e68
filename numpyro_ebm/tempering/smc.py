"""Adaptive tempered SMC with flowMC moves (see :mod:`numpyro_ebm.tempering`)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from numpyro_ebm import flows
from numpyro_ebm._compat import accepts_old_names
from numpyro_ebm._compile import ONE_SHOT, large_program_options
from numpyro_ebm._validate import positive_int
from numpyro_ebm.flowmc import KERNEL_SETTINGS, FlowMCSettings
from numpyro_ebm.moves import LogDensityFn, init_chains
from numpyro_ebm.tempering.reference import initial_particles

# Warm levels stop after this many without a gain of 0.01 in global acceptance over the best so
# far; each level's estimate is noisy and the fit gains ~0.01 a level for a while (d = 64: with
# 2 the fit stopped at 0.47, with 5 it went on to ~0.6; a warm level costs ~0.05 CPU s there).
WARM_PATIENCE = 5

__all__ = ["TemperedSMC", "SMCResult", "tempered_smc", "systematic_resample", "discover_modes"]


@accepts_old_names
@dataclasses.dataclass(frozen=True)
class TemperedSMC:
    """Settings of the tempered SMC warmup (``FlowMCKernel(..., tempering=TemperedSMC(...))``).

    Args:
        reference: distribution of the starting particles over the flattened unconstrained
            space, shape ``(dim,)``, with full support (numpyro or flowjax; ``sample(key,
            (n,))`` and ``log_prob``). ``None``: a model's prior (sites sampled by
            ``init_to_sample``, observed and factor sites masked); for a model with improper
            prior sites, a Gaussian around the initial points with twice their spread (at least
            scale 2); a ``potential_fn`` target needs a reference, else tempering is skipped.
        num_particles: particles; ``None``: ``max(num_chains, 512, min(32 * dim, 4096))``. The
            resampling noise in a mode's weight adds up over the levels, and the number of
            levels grows with the dimension (21 at d = 64): 512 particles let a d = 64
            four-mode mixture drift to weights 0.00 / 0.03 / 0.19 / 0.78, 2048 kept them within
            0.03 of 1/4 (docs/benchmarks.md).
        ess_fraction: each level's incremental-weight ESS, as a fraction of the particles.
        num_mcmc_steps: flowMC transitions per level (each: a global move, then the kernel's
            ``num_local_steps`` MALA steps).
        flow_steps: optax steps of the flow per level, on the resampled particles.
        warm_buffer_levels: at the warm levels (``beta = 1``, see :func:`tempered_smc`) the flow
            is fitted to the particles of the last this many levels, not only the current ones
            (at d = 64: 16,384 points, nearly fresh draws, instead of 2,048; with the whitening's
            held-out variances this took global acceptance from 0.25 to 0.6, docs/benchmarks.md).
        max_levels: stop (and warn through ``SMCResult.num_levels``) after this many levels.

    Example:
        >>> import numpyro.distributions as dist
        >>> TemperedSMC(reference=dist.Normal(0.0, 5.0).expand([2])).ess_fraction
        0.5
    """

    reference: Any = None
    num_particles: int | None = None
    ess_fraction: float = 0.5
    num_mcmc_steps: int = 4
    flow_steps: int = 50
    max_levels: int = 200
    warm_buffer_levels: int = 8

    def __post_init__(self):
        if not 0.0 < self.ess_fraction < 1.0:
            raise ValueError(f"ess_fraction must lie in (0, 1); got {self.ess_fraction!r}.")
        for name in ("num_mcmc_steps", "flow_steps", "max_levels", "warm_buffer_levels"):
            positive_int(getattr(self, name), name)
        if self.num_particles is not None and (
            not isinstance(self.num_particles, int) or self.num_particles < 2
        ):
            raise ValueError(f"num_particles must be None or an integer >= 2; got {self.num_particles!r}.")
        if self.reference is not None and not (
            hasattr(self.reference, "sample") and hasattr(self.reference, "log_prob")
        ):
            raise TypeError(
                "reference must be a numpyro or flowjax distribution (with sample and log_prob); "
                f"got {type(self.reference).__name__}."
            )


class SMCResult(NamedTuple):
    """What :func:`tempered_smc` returns.

    Attributes:
        position: final particles, equally weighted, targeting ``pi``; ``(num_particles, dim)``.
        flow_params: the flow's trainable arrays, fitted to the last level's particles.
        step_size: MALA step size adapted at the last level, scalar.
        log_z: estimate of ``log ∫ ref(z) L(z) dz`` (the log evidence for a model), scalar.
        betas: the inverse temperatures visited, ``(num_levels,)``, ending at 1 unless
            ``max_levels`` stopped it.
        global_accept_prob: mean global acceptance at each level, ``(num_levels,)``.
        num_levels: number of levels (a Python int).
    """

    position: Float[Array, "particles dim"]
    flow_params: Any
    step_size: Float[Array, ""]
    log_z: Float[Array, ""]
    betas: Float[Array, " levels"]
    global_accept_prob: Float[Array, " levels"]
    num_levels: int


def systematic_resample(key: PRNGKeyArray, log_weights: Float[Array, " n"], n: int) -> Array:
    """Indices of ``n`` draws by systematic resampling (one uniform shared by all draws).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> systematic_resample(jax.random.key(0), jnp.log(jnp.array([0.0, 1.0, 0.0])), 3)
        Array([1, 1, 1], dtype=int32)
    """
    cdf = jnp.cumsum(jax.nn.softmax(log_weights))
    u = (jax.random.uniform(key, (), cdf.dtype) + jnp.arange(n, dtype=cdf.dtype)) / n
    return jnp.minimum(jnp.searchsorted(cdf, u), log_weights.shape[0] - 1).astype(jnp.int32)


def _ess_fraction(log_w: Array) -> Array:
    """Effective sample size of normalised weights ``exp(log_w)``, over the number of weights."""
    w = jax.nn.softmax(log_w)
    return 1.0 / (jnp.sum(w**2) * log_w.shape[0])


def _next_beta(beta: Array, loglik: Array, ess_fraction: float) -> Array:
    """The largest ``beta' <= 1`` whose incremental weights keep ESS >= ``ess_fraction``."""
    finite = jnp.isfinite(loglik)
    ess = lambda delta: _ess_fraction(jnp.where(finite, delta * loglik, -jnp.inf))
    hi = 1.0 - beta

    def bisect(_, bounds):
        lo, up = bounds
        mid = 0.5 * (lo + up)
        ok = ess(mid) >= ess_fraction
        return jnp.where(ok, mid, lo), jnp.where(ok, up, mid)

    lo, _ = jax.lax.fori_loop(0, 50, bisect, (jnp.zeros_like(beta), hi))
    # At least a tiny step, so that a degenerate level cannot stall the ladder.
    delta = jnp.where(ess(hi) >= ess_fraction, hi, jnp.maximum(lo, 1e-6 * hi))
    return jnp.minimum(beta + delta, 1.0)


def tempered_smc(
    key: PRNGKeyArray,
    log_target: LogDensityFn,
    log_reference: LogDensityFn,
    particles: Float[Array, "particles dim"],
    flow,
    *,
    optimizer: optax.GradientTransformation,
    transition: FlowMCSettings = KERNEL_SETTINGS,
    flow_batch_size: int = 256,
    fit_flow: bool = True,
    settings: TemperedSMC = TemperedSMC(),
    warm_levels: int = 0,
    warm_params=None,
) -> SMCResult:
    """Anneal from ``log_reference`` to ``log_target`` with resampling and flowMC moves.

    Args:
        key: PRNG key.
        log_target: ``log pi`` (unnormalised) of one point, ``(dim,) -> ()``.
        log_reference: ``log ref`` (normalised, full support) of one point.
        particles: exact draws from ``ref``, ``(num_particles, dim)``.
        flow: a flow from :func:`~numpyro_ebm.flows.default_flow` (re-standardised to the
            particles at every level, then fitted to them).
        optimizer: optax transformation for the flow; re-initialised at every level.
        transition: the flowMC move (:class:`~numpyro_ebm.flowmc.FlowMCSettings`; default the
            kernel's, IMH). Its MALA step size adapts from ``transition.step_size`` toward
            ``transition.target_accept_prob`` after every move (the level's particles are a
            population, so this stays a valid SMC move).
        flow_batch_size: minibatch size of the flow fit.
        fit_flow: fit the flow at every level; ``False`` keeps it as given (a frozen flow).
        settings: :class:`TemperedSMC` (ESS fraction, moves and flow steps per level, guard).
        warm_levels: after ``beta`` reaches 1, at most this many more levels at ``beta = 1``
            (equal weights, so no resampling): the flow is fitted to the particles of the last
            ``settings.warm_buffer_levels`` levels at ``beta = 1``, and the particles then move
            under it. This is ``FlowMCKernel``'s flow warmup, outside its sampling loop.
            They stop early once the mean global acceptance has not improved by 0.01 for
            ``WARM_PATIENCE`` (5) levels, and the flow of the best level is kept (a refresh of
            the whitening now and then scrambles a level's flow).
        warm_params: the flow's trainable arrays to warm up (e.g. a fresh flow; the level
            re-standardises it to the particles); ``None``: keep fitting the annealing's flow.

    Returns:
        :class:`SMCResult`. One jitted function runs a level, annealing and warm levels alike;
        ``beta`` is its argument, so it compiles once and a Python loop walks the ladder.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from numpyro_ebm.flows import default_flow
        >>> log_ref = lambda x: -0.5 * jnp.sum((x / 5.0) ** 2) - 2 * jnp.log(5.0 * jnp.sqrt(2 * jnp.pi))
        >>> log_pi = lambda x: jnp.logaddexp(-0.5 * jnp.sum((x - 3) ** 2), -0.5 * jnp.sum((x + 3) ** 2))
        >>> x0 = 5.0 * jax.random.normal(jax.random.key(0), (256, 2))
        >>> out = tempered_smc(jax.random.key(1), log_pi, log_ref, x0,
        ...                    default_flow(jax.random.key(2), 2, identity_init=True),
        ...                    optimizer=optax.adam(1e-3))
        >>> float(out.betas[-1]), out.position.shape
        (1.0, (256, 2))
        >>> 0.3 < float((out.position[:, 0] > 0).mean()) < 0.7
        True
    """
    num, dim = particles.shape
    dtype = particles.dtype
    params, static = flows.partition(flow)
    loglik_fn = jax.vmap(lambda x: log_target(x) - log_reference(x))

    def tempered(beta):
        return lambda x: log_reference(x) + beta * (log_target(x) - log_reference(x))

    # (particles, levels, dim): the particles of the last levels at beta = 1, particle-major so
    # that the whitening's split halves (first / second half of the rows) are disjoint particles.
    ring_levels = settings.warm_buffer_levels if (fit_flow and warm_levels) else 1

    @functools.partial(jax.jit, compiler_options=large_program_options())
    def level(key, position, loglik, beta, log_z, log_step, params, ring):
        key_resample, key_fit, key_move = jax.random.split(key, 3)
        new_beta = _next_beta(beta, loglik, settings.ess_fraction)
        log_w = jnp.where(jnp.isfinite(loglik), (new_beta - beta) * loglik, -jnp.inf)
        log_z = log_z + jax.nn.logsumexp(log_w) - jnp.log(num)
        position = position[systematic_resample(key_resample, log_w, num)]
        # At beta = 1 the previous levels' particles are draws of the same target: keep them
        # (more distinct points for the fit). While annealing only the current ones are.
        ring = jnp.where(
            beta >= 1.0,
            jnp.concatenate([position[:, None], ring[:, :-1]], axis=1),
            jnp.broadcast_to(position[:, None], ring.shape),
        )
        data = ring.reshape(-1, dim)
        if fit_flow:  # the flow follows the particles: re-standardise, then forward-KL steps
            if flows.has_standardization(flow):
                params = flows.restandardize(params, static, data)
            params, _, _ = flows.fit_flow(
                key_fit,
                params,
                static,
                optimizer.init(params),
                data,
                optimizer,
                num_steps=settings.flow_steps,
                batch_size=min(flow_batch_size, num),
            )
        target = tempered(new_beta)
        flow_now = flows.combine(params, static)

        def move(carry, k):
            chains, log_step = carry
            chains, info = transition.step(k, chains, target, flow_now, step_size=jnp.exp(log_step))
            if transition.num_local_steps > 0:  # Robbins-Monro on log step size, gain 1
                log_step = log_step + jnp.mean(info.local_accept_prob) - transition.target_accept_prob
            return (chains, log_step), jnp.mean(info.global_accept_prob)

        chains = init_chains(position, target)
        (chains, log_step), glob = jax.lax.scan(
            move, (chains, log_step), jax.random.split(key_move, settings.num_mcmc_steps)
        )
        loglik = loglik_fn(chains.position)
        return chains.position, loglik, new_beta, log_z, log_step, params, ring, jnp.mean(glob)

    position = particles
    loglik = jax.jit(loglik_fn, compiler_options=ONE_SHOT)(position)  # once (op by op: dozens)
    beta = jnp.zeros((), dtype)
    log_z = jnp.zeros((), dtype)
    log_step = jnp.log(jnp.asarray(transition.step_size, dtype))
    betas, accepts = [], []
    ring = jnp.broadcast_to(position[:, None], (num, ring_levels, dim))
    key_levels, key_shuffle = jax.random.split(key)  # fold_in per level: no 200-key unstack program
    for i in range(settings.max_levels):
        position, loglik, beta, log_z, log_step, params, ring, glob = level(
            jax.random.fold_in(key_levels, i), position, loglik, beta, log_z, log_step, params, ring
        )
        betas.append(beta)
        accepts.append(glob)
        if float(beta) >= 1.0:
            break
    params = params if warm_params is None else warm_params
    best, stale, best_params = -1.0, 0, params
    for i in range(warm_levels if fit_flow else 0):
        position, loglik, beta, log_z, log_step, params, ring, glob = level(
            jax.random.fold_in(key_levels, settings.max_levels + i),
            position,
            loglik,
            beta,
            log_z,
            log_step,
            params,
            ring,
        )
        if float(glob) > best + 0.01:
            best, stale, best_params = float(glob), 0, params
        else:
            stale += 1
        if stale == WARM_PATIENCE:
            break
    params = best_params if warm_levels and fit_flow else params
    position, step_size = _finish(key_shuffle, position, log_step)
    return SMCResult(
        position=position,
        flow_params=params,
        step_size=step_size,
        log_z=log_z,
        betas=jnp.stack(betas),
        global_accept_prob=jnp.stack(accepts),
        num_levels=len(betas),
    )


@functools.partial(jax.jit, compiler_options=ONE_SHOT)  # one program, run once (op by op: ten)
def _finish(key: PRNGKeyArray, position: Array, log_step: Array) -> tuple[Array, Array]:
    """Shuffled particles and the step size. Resampling leaves each ancestor's descendants side
    by side: shuffled, any prefix (the kernel keeps the first num_chains) is a uniform subsample."""
    return position[jax.random.permutation(key, position.shape[0])], jnp.exp(log_step)


def discover_modes(
    key: PRNGKeyArray,
    settings: TemperedSMC,
    transition: FlowMCSettings,
    flow,
    flat: Float[Array, "chains dim"],
    logdensity_fn: LogDensityFn,
    model_and_args: tuple,
    *,
    optimizer: optax.GradientTransformation,
    flow_batch_size: int = 256,
    fit_flow: bool = True,
    warm_levels: int = 0,
    warm_params=None,
) -> SMCResult | None:
    """What ``FlowMCKernel.init`` runs: reference draws, then :func:`tempered_smc` with the
    kernel's transition (a :class:`~numpyro_ebm.flowmc.FlowMCSettings`).

    Args:
        key: PRNG key.
        settings: the :class:`TemperedSMC` settings.
        transition: the kernel's ``FlowMCSettings`` (step size, local steps, global move, ...).
        flow: the kernel's initial flow.
        flat: the initial chains, flattened, ``(num_chains, dim)``.
        logdensity_fn: ``log pi`` of one flattened point.
        model_and_args: ``(model, model_args, model_kwargs)``; ``model`` is ``None`` for a
            ``potential_fn`` target.
        optimizer: optax transformation for the flow.
        flow_batch_size: minibatch size of the flow fit.
        fit_flow: fit the flow at every level.
        warm_levels: as in :func:`tempered_smc` (the kernel's flow warmup).
        warm_params: as in :func:`tempered_smc`.

    Returns:
        :class:`SMCResult`, or ``None`` for a ``potential_fn`` target without a reference.
    """
    key_ref, key_smc = jax.random.split(key)
    model, model_args, model_kwargs = model_and_args
    start = initial_particles(key_ref, settings, model, model_args, model_kwargs, flat)
    if start is None:
        return None  # a potential_fn target without a reference: nothing to anneal from
    particles, log_ref = start
    return tempered_smc(
        key_smc,
        logdensity_fn,
        log_ref,
        particles,
        flow,
        optimizer=optimizer,
        transition=transition,
        flow_batch_size=flow_batch_size,
        fit_flow=fit_flow,
        settings=settings,
        warm_levels=warm_levels,
        warm_params=warm_params,
    )
