"""``FlowMCKernel``: flowMC as a NumPyro ensemble kernel.

All chains of an ``MCMC(..., chain_method="vectorized")`` run share one normalizing flow. Each
iteration is one :func:`~numpyro_ebm.flowmc.flowmc_step` (a global flow move, IMH or i-SIR, then
``num_local_steps`` MALA steps). After tempering the flow is fitted (forward KL) in ``init``, before
the sampling loop, else during warmup to a ring buffer of recent states
(:mod:`numpyro_ebm.kernel_warmup`); during warmup the MALA step size adapts by NumPyro's dual
averaging; after warmup
both are frozen, so the production chain is a fixed, valid Markov kernel.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from numpyro.infer.ensemble_util import batch_ravel_pytree
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.mcmc import MCMCKernel
from numpyro.util import identity

from numpyro_ebm import adaptation, flows, kernel_warmup, sharding
from numpyro_ebm import tempering as tempering_
from numpyro_ebm._compat import renamed_kwargs
from numpyro_ebm._compile import ONE_SHOT
from numpyro_ebm._kernel_checks import (
    FROM_SETTINGS,
    check_ensemble_key,
    check_finite_start,
    check_kernel_settings,
    check_logdensity,
    check_tempering,
    kernel_settings,
)
from numpyro_ebm._keys import as_typed_key, like_key
from numpyro_ebm.flowmc import FlowMCSettings
from numpyro_ebm.kernel_state import FlowMCState, place_chains
from numpyro_ebm.kernel_target import FlatTarget, flat_target
from numpyro_ebm.moves import ChainState

__all__ = ["FlowMCKernel", "FlowMCState"]


class FlowMCKernel(MCMCKernel):
    """flowMC (Gabrié et al. 2022; Grenioux et al. 2023) as a NumPyro ensemble kernel.

    One iteration = one global move proposed by a normalizing flow (``"imh"``: independent
    Metropolis-Hastings; ``"isir"``: iterated sampling-importance-resampling with
    ``num_particles`` particles, the current state included) followed by ``num_local_steps`` MALA
    steps ``x' = x + eta grad log pi(x) + sqrt(2 eta) xi``. All chains share the flow, so this is
    an ensemble kernel: use ``MCMC(..., num_chains=N >= 2, chain_method="vectorized")``.

    Warmup: if ``train_flow`` and tempering ran, ``init`` fits the flow by forward KL to the
    SMC's particles, alternating fits with flowMC moves under the new flow, until the global
    acceptance stops improving (at most ``num_warmup * flow_steps_per_iteration`` optax steps);
    the warmup iterations then adapt the step size toward ``target_accept_prob`` (dual
    averaging) with the flow fixed. Without tempering, each warmup iteration also takes
    ``flow_steps_per_iteration`` optax steps on a ring buffer of the last ``buffer_iterations``
    states of all chains. Sampling: both frozen.

    Args:
        model: a NumPyro model with continuous latent sites (constrained sites are sampled in
            NumPyro's unconstrained space).
        potential_fn: alternatively, ``-log pi`` of one (unconstrained) point; then pass
            ``init_params`` with a leading chain axis to ``MCMC.run``.
        flow: a flowjax distribution over the flattened unconstrained space, e.g. a pre-trained
            one. Default: :func:`~numpyro_ebm.flows.default_flow` shaped by
            :func:`~numpyro_ebm.flows.flow_capacity` (whitened from 8 dimensions on),
            identity-initialised and standardised to the initial chains (or SMC particles).
        settings: the transition (:class:`~numpyro_ebm.flowmc.FlowMCSettings`: step size,
            local steps, global move, particles, acceptance target, adaptation), shared with
            ``negatives.FlowMC``. Default: the library's defaults with ``global_move="imh"``
            (``numpyro_ebm._kernel_checks.KERNEL_SETTINGS``). Each of the next seven arguments,
            when given, replaces its field.
        step_size: initial MALA step size ``eta`` (> 0) in ``x' = x + eta grad log pi(x) +
            sqrt(2 eta) xi``: the Langevin time step, so the proposal's variance is ``2 eta``
            (HMC's ``step_size`` ``epsilon`` corresponds to ``eta = epsilon^2 / 2``).
        num_local_steps: MALA steps per iteration.
        global_move: ``"imh"``, ``"isir"`` or ``None`` (plain MALA; useful as a baseline).
        num_particles: i-SIR particles per chain, current state included.
        target_accept_prob: MALA acceptance targeted during warmup (0.574 is optimal for MALA).
        adapt_step_size: adapt the MALA step size during warmup.
        train_flow: fit the flow during warmup. ``False`` freezes a pre-trained flow.
        flow_optimizer: optax transformation for the flow; ``optax.adam(1e-3)`` by default.
        flow_steps_per_iteration: the flow's budget of optax steps per warmup iteration.
        flow_batch_size: minibatch size of those steps.
        buffer_iterations: without tempering, how many past iterations of all chains the flow
            is fitted to.
        particle_batch_size: chains per batch when evaluating i-SIR particles (memory bound).
        init_strategy: NumPyro per-site initialisation.
        shard: split the chains over devices with ``jax.sharding`` (``True``: all of
            ``jax.devices()``; or a sequence of devices / a 1-D ``Mesh``). Off by default;
            ``num_chains`` must be a multiple of the device count. The flow is replicated.
        tempering: mode discovery before warmup (:mod:`numpyro_ebm.tempering`). ``"smc"``
            (default): tempered SMC from the model's prior (or ``TemperedSMC(reference=...)``,
            needed for a ``potential_fn``; without one a ``potential_fn`` target skips it) to the
            target; the chains then start from its particles, with the flow fitted to them, and
            ``kernel.tempering_result.log_z`` estimates the log evidence. ``None``: off.

    The trained flow lives in the state: ``kernel.get_flow(mcmc.last_state)``. Nothing is
    copied to the host during the run, so JAX's persistent compilation cache can serve it.

    Example:
        >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> from numpyro.infer import MCMC
        >>> def model():
        ...     mix = dist.MixtureSameFamily(dist.Categorical(jnp.array([1/3, 2/3])),
        ...         dist.MultivariateNormal(jnp.array([[-3.0, -3.0], [3.0, 3.0]]), 0.5 * jnp.eye(2)))
        ...     numpyro.sample("x", mix)
        >>> mcmc = MCMC(FlowMCKernel(model), num_warmup=20, num_samples=10, num_chains=8,
        ...             chain_method="vectorized", progress_bar=False)
        >>> mcmc.run(jax.random.key(0))  # use num_warmup=200, num_samples=200, num_chains=32 in practice
        >>> mcmc.get_samples()["x"].shape
        (80, 2)
        >>> flow = mcmc.sampler.get_flow(mcmc.last_state)  # the trained, frozen flow
    """

    sample_field = "z"

    @renamed_kwargs()
    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        *,
        flow=None,
        settings: FlowMCSettings | None = None,
        step_size: float | None = None,
        num_local_steps: int | None = None,
        global_move: str | None = FROM_SETTINGS,
        num_particles: int | None = None,
        target_accept_prob: float | None = None,
        adapt_step_size: bool | None = None,
        train_flow: bool = True,
        flow_optimizer: optax.GradientTransformation | None = None,
        flow_steps_per_iteration: int = 10,
        flow_batch_size: int = 256,
        buffer_iterations: int = 16,
        particle_batch_size: int | None = FROM_SETTINGS,
        init_strategy: Callable = init_to_uniform,
        shard=False,
        tempering: str | tempering_.TemperedSMC | None = "smc",
    ):
        self._model = model
        self._potential_fn = potential_fn
        self._user_flow = flow
        self.settings = kernel_settings(
            settings,
            step_size=step_size,
            num_local_steps=num_local_steps,
            global_move=global_move,
            num_particles=num_particles,
            target_accept_prob=target_accept_prob,
            adapt_step_size=adapt_step_size,
            particle_batch_size=particle_batch_size,
        )
        self._train_flow = train_flow
        self._flow_optimizer = flow_optimizer if flow_optimizer is not None else optax.adam(1e-3)
        self._flow_steps = flow_steps_per_iteration
        self._flow_batch_size = flow_batch_size
        self._buffer_iterations = buffer_iterations
        self._init_strategy = init_strategy
        check_kernel_settings(self)
        self._mesh = sharding.resolve_mesh(shard)
        self._tempering = check_tempering(tempering)
        self.tempering_result: tempering_.SMCResult | None = None  # set by init
        # Set by init(): the pure pieces the jitted sample() closes over.
        self._target: FlatTarget | None = None
        self._flow_static = None
        self._num_warmup = 0
        self._fit_in_loop = False

    # -- NumPyro's kernel surface ---------------------------------------------------------------
    @property
    def model(self):
        return self._model

    @property
    def is_ensemble_kernel(self) -> bool:
        return True

    @property
    def default_fields(self):
        return ("z",)

    @property
    def flow(self):
        """Removed: the flow lives in the state; ``kernel.get_flow(mcmc.last_state)`` returns it."""
        raise AttributeError("FlowMCKernel.flow was removed: use kernel.get_flow(mcmc.last_state).")

    def get_flow(self, state: FlowMCState):
        """The flow held by ``state`` (e.g. ``mcmc.last_state``), as a flowjax distribution.

        After warmup this is the trained, frozen flow; pass it back as ``FlowMCKernel(model,
        flow=..., train_flow=False)`` to reuse it without retraining. ``None`` with
        ``global_move=None`` (no flow is built).
        """
        if self._target is None:
            raise RuntimeError("The kernel has not been initialised: run MCMC first.")
        if state.flow_params is None:
            return None
        return eqx.combine(state.flow_params, self._flow_static)

    def get_diagnostics_str(self, state: FlowMCState) -> str:
        local = float(jnp.mean(state.local_accept_prob))
        glob = "no global move"
        if self.settings.global_move is not None:
            glob = f"global acc {float(jnp.mean(state.global_accept_prob)):.2f}"
        return f"local acc {local:.2f}, {glob}, step {float(state.step_size):.2e}"

    def postprocess_fn(self, args, kwargs):
        if self._target is None or self._target.postprocess_gen is None:
            return identity
        return self._target.postprocess_gen(*args, **kwargs)

    # -- init ---------------------------------------------------------------------------------
    def init(self, rng_key, num_warmup, init_params=None, model_args=(), model_kwargs=None):
        model_kwargs = {} if model_kwargs is None else model_kwargs
        rng_key = as_typed_key(rng_key, name="rng_key")  # NumPyro passes raw keys (chains, 2) too
        num_chains = check_ensemble_key(rng_key, self._mesh)
        key, key_model, key_flow, key_state = jax.random.split(rng_key[0], 4)
        self._target = target = flat_target(
            self._model, key_model, num_chains, init_params, self._init_strategy, model_args, model_kwargs
        )
        flat, unravel_fn, init_params = target.flat, target.unravel_fn, target.init_params
        logdensity_fn = self._logdensity_fn(model_args, model_kwargs)
        check_logdensity(logdensity_fn, flat)

        self._num_warmup = int(num_warmup)
        flat, params, self._flow_static, self.tempering_result = kernel_warmup.start(
            self, key_flow, flat, logdensity_fn, model_args, model_kwargs
        )
        if self.tempering_result is not None:  # the chains start from the SMC particles
            init_params = unravel_fn(flat)
        # Annealed particles carry the right mode weights, so the flow was fitted to them in
        # start(); from bare starting points it is fitted inside the loop, to a buffer of states.
        self._fit_in_loop = self._fits_flow and self.tempering_result is None

        @functools.partial(jax.jit, compiler_options=ONE_SHOT)  # one program, run once (op by op: a dozen)
        def initial_state(flat, init_params, params, key_state) -> FlowMCState:
            chains, opt_state, buffer = kernel_warmup.init_warmup(self, flat, params, logdensity_fn)
            dtype = flat.dtype
            step_size = jnp.asarray(self.settings.step_size, dtype)
            return FlowMCState(
                i=jnp.asarray(0, jnp.int32),
                z=init_params,
                potential_energy=-chains.logdensity,
                z_grad=unravel_fn(-chains.logdensity_grad),
                local_accept_prob=jnp.zeros(num_chains, dtype),
                global_accept_prob=jnp.full(num_chains, 0.0 if self.settings.global_move else jnp.nan, dtype),
                step_size=step_size,
                adapt_state=adaptation.dual_averaging_init(step_size, dtype),
                flow_params=params,
                flow_opt_state=opt_state,
                buffer=buffer,
                rng_key=key_state,
            )

        state = initial_state(flat, init_params, params, key_state)
        check_finite_start(state.potential_energy)  # finite either sign
        self._sample_fn = self.sample  # tells MCMC.run that this kernel is initialised
        return place_chains(state, self._mesh, sharding.shard_leading_axis)

    def logdensity_fn(self, *model_args, **model_kwargs) -> Callable:
        """The target as :func:`~numpyro_ebm.flowmc_step` wants it, after ``init`` (or a run).

        Returns ``log pi`` of one flattened unconstrained point, shape ``(dim,) -> ()``, for the
        given model arguments; ``flatten``/``unflatten`` of ``z`` pytrees go through
        ``numpyro.infer.ensemble_util.batch_ravel_pytree``.
        """
        if self._target is None:
            raise RuntimeError("The kernel has not been initialised: run MCMC (or kernel.init) first.")
        return self._logdensity_fn(model_args, model_kwargs)

    def _logdensity_fn(self, model_args, model_kwargs) -> Callable:
        """``log pi`` of one flattened unconstrained point, for the current model arguments."""
        return self._target.logdensity_fn(self._potential_fn, model_args, model_kwargs)

    @property
    def _fits_flow(self) -> bool:
        return self._train_flow and self.settings.global_move is not None

    # -- sample -------------------------------------------------------------------------------
    def sample(self, state: FlowMCState, model_args, model_kwargs) -> FlowMCState:
        key, key_step, key_fit = jax.random.split(as_typed_key(state.rng_key), 3)
        flat, _ = batch_ravel_pytree(state.z)
        grad_flat, _ = batch_ravel_pytree(state.z_grad)
        chains = ChainState(flat, -state.potential_energy, -grad_flat)
        flow = None
        if self.settings.global_move is not None:
            flow = flows.combine(state.flow_params, self._flow_static)
        logdensity_fn = self._logdensity_fn(model_args, model_kwargs)
        chains, info = self.settings.step(key_step, chains, logdensity_fn, flow, step_size=state.step_size)
        state = state._replace(
            i=state.i + 1,
            z=self._target.unravel_fn(chains.position),
            potential_energy=-chains.logdensity,
            z_grad=self._target.unravel_fn(-chains.logdensity_grad),
            local_accept_prob=info.local_accept_prob,
            global_accept_prob=info.global_accept_prob,
            rng_key=like_key(key, state.rng_key),  # MCMC.run may hand back the user's raw key
        )
        state = place_chains(state, self._mesh, sharding.constrain_leading_axis)
        if self._num_warmup == 0:
            return state
        return jax.lax.cond(
            state.i <= self._num_warmup,
            lambda s: kernel_warmup.warmup_update(self, s, chains.position, key_fit),
            lambda s: s,
            state,
        )
