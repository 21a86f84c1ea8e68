"""``FlowMCKernel``: flowMC as a NumPyro ensemble kernel.

All chains of an ``MCMC(..., chain_method="vectorized")`` run share one normalizing flow. Each
iteration is one :func:`~numpyro_ebm.flowmc.flowmc_step` (a global flow move, IMH or i-SIR, then
``n_local_steps`` MALA steps). During warmup the MALA step size adapts by NumPyro's dual averaging
and the flow is fitted (forward KL) to a ring buffer of recent states of all chains; after warmup
both are frozen, so the production chain is a fixed, valid Markov kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float
from numpyro.infer.ensemble_util import batch_ravel_pytree
from numpyro.infer.hmc_util import dual_averaging
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import initialize_model
from numpyro.util import identity, is_prng_key

from numpyro_ebm import flows, sharding
from numpyro_ebm import tempering as tempering_
from numpyro_ebm.flowmc import check_flowmc_settings, flowmc_step
from numpyro_ebm.moves import ChainState, init_chains

__all__ = ["FlowMCKernel", "FlowMCState"]


class FlowMCState(NamedTuple):
    """State of :class:`FlowMCKernel`; every array has a strong dtype so nothing recompiles.

    Attributes:
        i: iteration counter (warmup included), scalar int32.
        z: unconstrained positions, a pytree whose leaves have a leading chain axis.
        potential_energy: ``-log pi(z)`` per chain, ``(chains,)``.
        z_grad: gradient of ``log pi`` at the flattened ``z``, ``(chains, dim)``.
        local_accept_prob: mean MALA acceptance of the last iteration, ``(chains,)``.
        global_accept_prob: acceptance of the last global move, ``(chains,)``.
        step_size: MALA step size (scalar); frozen after warmup.
        adapt_state: NumPyro dual-averaging state for ``log step_size``.
        flow_params: the flow's trainable arrays (its static part lives on the kernel).
        flow_opt_state: optax state of the flow optimiser.
        buffer: recent flattened states of all chains, ``(buffer_iterations, chains, dim)``.
        rng_key: PRNG key.
    """

    i: Array
    z: Any
    potential_energy: Array
    z_grad: Array
    local_accept_prob: Array
    global_accept_prob: Array
    step_size: Array
    adapt_state: tuple
    flow_params: Any
    flow_opt_state: Any
    buffer: Array
    rng_key: Array


class FlowMCKernel(MCMCKernel):
    """flowMC (Gabrié et al. 2022; Grenioux et al. 2023) as a NumPyro ensemble kernel.

    One iteration = one global move proposed by a normalizing flow (``"imh"``: independent
    Metropolis-Hastings; ``"isir"``: iterated sampling-importance-resampling with
    ``n_particles`` particles, the current state included) followed by ``n_local_steps`` MALA
    steps ``x' = x + eta grad log pi(x) + sqrt(2 eta) xi``. All chains share the flow, so this is
    an ensemble kernel: use ``MCMC(..., num_chains=N >= 2, chain_method="vectorized")``.

    Warmup: the step size adapts toward ``target_accept_prob`` (dual averaging) and, if
    ``train_flow``, the flow takes ``flow_steps_per_iteration`` optax steps of forward KL on a
    ring buffer of the last ``buffer_iterations`` states of all chains. Sampling: both frozen.

    Args:
        model: a NumPyro model with continuous latent sites (constrained sites are sampled in
            NumPyro's unconstrained space).
        potential_fn: alternatively, ``-log pi`` of one (unconstrained) point; then pass
            ``init_params`` with a leading chain axis to ``MCMC.run``.
        flow: a flowjax distribution over the flattened unconstrained space, e.g. a pre-trained
            one. Default: :func:`~numpyro_ebm.flows.default_flow`, identity-initialised and
            standardised to the initial chains.
        step_size: initial MALA step size (> 0).
        n_local_steps: MALA steps per iteration.
        global_move: ``"imh"``, ``"isir"`` or ``None`` (plain MALA; useful as a baseline).
        n_particles: i-SIR particles per chain, current state included.
        target_accept_prob: MALA acceptance targeted during warmup (0.574 is optimal for MALA).
        adapt_step_size: adapt the MALA step size during warmup.
        train_flow: fit the flow during warmup. ``False`` freezes a pre-trained flow.
        flow_optimizer: optax transformation for the flow; ``optax.adam(1e-3)`` by default.
        flow_steps_per_iteration: optax steps of the flow per warmup iteration.
        flow_batch_size: minibatch size of those steps.
        buffer_iterations: how many past iterations of all chains the flow is fitted to.
        particle_batch_size: chains per batch when evaluating i-SIR particles (memory bound).
        init_strategy: NumPyro per-site initialisation.
        shard: split the chains over devices with ``jax.sharding`` (``True``: all of
            ``jax.devices()``; or a sequence of devices / a 1-D ``Mesh``). Off by default;
            ``num_chains`` must be a multiple of the device count. The flow is replicated.
        keep_trained_flow: copy the flow to the host at the end of warmup so that
            ``kernel.flow`` is the trained flow. This puts a host callback in the compiled loop,
            which keeps JAX's persistent compilation cache from serving repeated runs; with
            ``False``, get the flow with ``kernel.get_flow(mcmc.last_state)``.
        tempering: mode discovery before warmup (:mod:`numpyro_ebm.tempering`). ``"smc"``
            (default): tempered SMC from the model's prior (or ``TemperedSMC(reference=...)``,
            needed for a ``potential_fn``; without one a ``potential_fn`` target skips it) to the
            target; the chains then start from its particles, with the flow fitted to them, and
            ``kernel.tempering_result.log_z`` estimates the log evidence. ``None``: off.

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

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        *,
        flow=None,
        step_size: float = 0.1,
        n_local_steps: int = 4,
        global_move: str | None = "imh",
        n_particles: int = 32,
        target_accept_prob: float = 0.574,
        adapt_step_size: bool = True,
        train_flow: bool = True,
        flow_optimizer: optax.GradientTransformation | None = None,
        flow_steps_per_iteration: int = 10,
        flow_batch_size: int = 256,
        buffer_iterations: int = 16,
        particle_batch_size: int | None = None,
        init_strategy: Callable = init_to_uniform,
        shard=False,
        keep_trained_flow: bool = True,
        tempering: str | tempering_.TemperedSMC | None = "smc",
    ):
        if (model is None) == (potential_fn is None):
            raise ValueError("Pass exactly one of `model` or `potential_fn` to FlowMCKernel.")
        check_flowmc_settings(step_size, n_local_steps, global_move, n_particles)
        if not 0.0 < target_accept_prob < 1.0:
            raise ValueError(f"target_accept_prob must lie in (0, 1); got {target_accept_prob!r}.")
        for name, value in [
            ("flow_steps_per_iteration", flow_steps_per_iteration),
            ("flow_batch_size", flow_batch_size),
            ("buffer_iterations", buffer_iterations),
        ]:
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}.")
        if particle_batch_size is not None and (
            not isinstance(particle_batch_size, int) or particle_batch_size < 1
        ):
            raise ValueError(
                f"particle_batch_size must be None or an integer >= 1; got {particle_batch_size!r}."
            )
        if flow is not None and not hasattr(flow, "sample_and_log_prob"):
            raise TypeError(f"flow must be a flowjax distribution; got {type(flow).__name__}.")
        self._model = model
        self._potential_fn = potential_fn
        self._user_flow = flow
        self._step_size = float(step_size)
        self._n_local_steps = n_local_steps
        self._global_move = global_move
        self._n_particles = n_particles
        self._target_accept_prob = target_accept_prob
        self._adapt_step_size = adapt_step_size
        self._train_flow = train_flow
        self._flow_optimizer = flow_optimizer if flow_optimizer is not None else optax.adam(1e-3)
        self._flow_steps = flow_steps_per_iteration
        self._flow_batch_size = flow_batch_size
        self._buffer_iterations = buffer_iterations
        self._particle_batch_size = particle_batch_size
        self._init_strategy = init_strategy
        self._mesh = sharding.resolve_mesh(shard)
        self._keep_trained_flow = keep_trained_flow
        if tempering == "smc":
            tempering = tempering_.TemperedSMC()
        if tempering is not None and not isinstance(tempering, tempering_.TemperedSMC):
            raise ValueError(
                f"tempering must be 'smc', None or a numpyro_ebm.tempering.TemperedSMC; got {tempering!r}."
            )
        self._tempering = tempering
        self.tempering_result: tempering_.SMCResult | None = None  # set by init
        # Set by init(): the pure pieces the jitted sample() closes over.
        self._postprocess_fn = None
        self._potential_gen = None
        self._unravel_fn = None
        self._unravel_one = None
        self._trained_flow_params = None
        self._flow_static = None
        self._num_warmup = 0
        self._initial_flow = None

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
        """The flow after the last completed warmup (trained, then frozen), else the initial flow.

        The flow also lives in every state: ``kernel.get_flow(mcmc.last_state)`` is the
        functional way to get it back, and works for any state.
        """
        if self._trained_flow_params is not None:
            return eqx.combine(self._trained_flow_params, self._flow_static)
        return self._initial_flow if self._initial_flow is not None else self._user_flow

    def _remember_trained_flow(self, params) -> None:
        self._trained_flow_params = params

    def get_flow(self, state: FlowMCState):
        """The flow held by ``state`` (e.g. ``mcmc.last_state``), as a flowjax distribution.

        After warmup this is the trained, frozen flow; pass it back as ``FlowMCKernel(model,
        flow=..., train_flow=False)`` to reuse it without retraining.
        """
        if self._flow_static is None:
            raise RuntimeError("The kernel has not been initialised: run MCMC first.")
        return eqx.combine(state.flow_params, self._flow_static)

    def get_diagnostics_str(self, state: FlowMCState) -> str:
        local = float(jnp.mean(state.local_accept_prob))
        glob = float(jnp.mean(state.global_accept_prob))
        return f"local acc {local:.2f}, global acc {glob:.2f}, step {float(state.step_size):.2e}"

    def postprocess_fn(self, args, kwargs):
        if self._postprocess_fn is None:
            return identity
        return self._postprocess_fn(*args, **kwargs)

    # -- init ---------------------------------------------------------------------------------
    def init(self, rng_key, num_warmup, init_params=None, model_args=(), model_kwargs=None):
        model_kwargs = {} if model_kwargs is None else model_kwargs
        if is_prng_key(rng_key):
            raise ValueError(
                "FlowMCKernel is an ensemble kernel (all chains share one flow): use "
                "MCMC(FlowMCKernel(...), num_chains=N, chain_method='vectorized') with N >= 2; "
                "chain_method='sequential' or 'parallel' and num_chains=1 are not supported."
            )
        num_chains = rng_key.shape[0]
        if num_chains < 2:
            raise ValueError(f"FlowMCKernel needs num_chains >= 2; got {num_chains}.")
        sharding.check_divisible(num_chains, self._mesh, "num_chains")
        key, key_model, key_flow, key_state = jax.random.split(rng_key[0], 4)
        if self._model is not None:
            _check_continuous(self._model, key_model, model_args, model_kwargs)
            params_info, potential_gen, postprocess_gen, _ = initialize_model(
                jax.random.split(key_model, num_chains),
                self._model,
                dynamic_args=True,
                init_strategy=self._init_strategy,
                model_args=model_args,
                model_kwargs=model_kwargs,
                validate_grad=False,
            )
            self._potential_gen = potential_gen
            self._postprocess_fn = postprocess_gen
            if init_params is None:
                init_params = params_info[0]
        else:
            if init_params is None:
                raise ValueError(
                    "With potential_fn, pass init_params to MCMC.run: a pytree whose leaves have a "
                    f"leading axis of size num_chains={num_chains}."
                )
        leaves = jax.tree.leaves(init_params)
        if not leaves or any(jnp.ndim(x) < 1 or jnp.shape(x)[0] != num_chains for x in leaves):
            shapes = [jnp.shape(x) for x in leaves]
            raise ValueError(
                f"init_params must have a leading chain axis of size {num_chains}; got leaf shapes "
                f"{shapes}. For a potential_fn of one point x with shape (dim,), pass an array of "
                f"shape ({num_chains}, dim)."
            )
        flat, unravel_fn = batch_ravel_pytree(init_params)
        flat = jnp.asarray(flat)
        if not jnp.issubdtype(flat.dtype, jnp.floating):
            raise TypeError(f"init_params must be floating point; got dtype {flat.dtype}.")
        dim = flat.shape[1]
        self._unravel_fn = unravel_fn
        self._unravel_one = ravel_pytree(jax.tree.map(lambda x: x[0], init_params))[1]
        logdensity_fn = self._logdensity_fn(model_args, model_kwargs)
        out = jax.eval_shape(logdensity_fn, flat[0])
        if out.shape != ():
            raise ValueError(
                f"potential_fn must return a scalar for one point of shape {flat.shape[1:]}; it "
                f"returned shape {out.shape}. It receives one chain's parameters, not the batch: "
                "write it for a single point (FlowMCKernel vectorises it)."
            )

        flow = self._build_flow(key_flow, dim, flat)
        self._initial_flow = flow
        self._num_warmup = int(num_warmup)
        params, self._flow_static = flows.partition(flow)
        self.tempering_result = self._discover_modes(
            jax.random.fold_in(key_flow, 1), flow, flat, logdensity_fn, model_args, model_kwargs
        )
        if self.tempering_result is not None:  # start from the SMC particles
            flat = self.tempering_result.position[:num_chains]
            init_params = unravel_fn(flat)
            if self._user_flow is None:
                # A fresh flow, standardised to the particles: the SMC's flow, refitted at every
                # level to resampled (duplicated) particles, overfits in high dimension (d = 64:
                # global acceptance 0.003 after warmup when handed over; docs/benchmarks.md).
                params = flows.restandardize(params, self._flow_static, flat)
        chains = init_chains(flat, logdensity_fn)
        if not bool(jnp.all(jnp.isfinite(chains.logdensity))):
            bad = int(jnp.sum(~jnp.isfinite(chains.logdensity)))
            raise ValueError(
                f"{bad} of {num_chains} initial chains have a non-finite log density; pass "
                "init_params inside the support or choose another init_strategy."
            )
        da_init, _ = dual_averaging()
        dtype = flat.dtype
        step_size = jnp.asarray(self._step_size, dtype)
        self._sample_fn = self.sample  # tells MCMC.run that this kernel is initialised
        state = FlowMCState(
            i=jnp.asarray(0, jnp.int32),
            z=init_params,
            potential_energy=-chains.logdensity,
            z_grad=chains.logdensity_grad,
            local_accept_prob=jnp.zeros(num_chains, dtype),
            global_accept_prob=jnp.zeros(num_chains, dtype),
            step_size=step_size,
            adapt_state=jax.tree.map(lambda x: jnp.asarray(x, dtype), da_init(jnp.log(10.0 * step_size))),
            flow_params=params,
            flow_opt_state=self._flow_optimizer.init(params),
            buffer=jnp.broadcast_to(flat, (self._buffer_iterations,) + flat.shape),
            rng_key=key_state,
        )
        return self._place_chains(state, sharding.shard_leading_axis)

    def _discover_modes(self, key, flow, flat, logdensity_fn, model_args, model_kwargs):
        """Tempered SMC from a reference to the target (see ``numpyro_ebm.tempering``), or None."""
        settings = self._tempering
        if settings is None:
            return None
        key_ref, key_smc = jax.random.split(key)
        start = tempering_.initial_particles(key_ref, settings, self._model, model_args, model_kwargs, flat)
        if start is None:
            return None  # a potential_fn target without a reference: nothing to anneal from
        particles, log_ref = start
        return tempering_.tempered_smc(
            key_smc,
            logdensity_fn,
            log_ref,
            particles,
            flow,
            optimizer=self._flow_optimizer,
            step_size=self._step_size,
            n_local_steps=self._n_local_steps,
            global_move=self._global_move,
            n_particles=self._n_particles,
            particle_batch_size=self._particle_batch_size,
            target_accept_prob=self._target_accept_prob,
            flow_batch_size=self._flow_batch_size,
            fit_flow=self._train_flow and self._global_move is not None,
            settings=settings,
        )

    def _place_chains(self, state: FlowMCState, place: Callable) -> FlowMCState:
        """Split the per-chain fields over the mesh (``place`` puts or, inside jit, constrains)."""
        per_chain = (
            state.z,
            state.potential_energy,
            state.z_grad,
            state.local_accept_prob,
            state.global_accept_prob,
        )
        z, pe, grad, local, glob = place(per_chain, self._mesh)
        return state._replace(
            z=z, potential_energy=pe, z_grad=grad, local_accept_prob=local, global_accept_prob=glob
        )

    def logdensity_fn(self, *model_args, **model_kwargs) -> Callable:
        """The target as :func:`~numpyro_ebm.flowmc_step` wants it, after ``init`` (or a run).

        Returns ``log pi`` of one flattened unconstrained point, shape ``(dim,) -> ()``, for the
        given model arguments; ``flatten``/``unflatten`` of ``z`` pytrees go through
        ``numpyro.infer.ensemble_util.batch_ravel_pytree``.
        """
        if self._unravel_one is None:
            raise RuntimeError("The kernel has not been initialised: run MCMC (or kernel.init) first.")
        return self._logdensity_fn(model_args, model_kwargs)

    def _logdensity_fn(self, model_args, model_kwargs) -> Callable:
        """``log pi`` of one flattened unconstrained point, for the current model arguments."""
        if self._model is not None:
            potential_fn = self._potential_gen(*model_args, **model_kwargs)
        else:
            potential_fn = self._potential_fn
        return lambda x: -potential_fn(self._unravel_one(x))

    def _build_flow(self, key, dim, flat):
        if self._user_flow is not None:
            if self._user_flow.shape != (dim,):
                raise ValueError(
                    f"flow has shape {self._user_flow.shape} but the model's flattened "
                    f"unconstrained space has dim {dim}; build the flow with dim={dim}."
                )
            return self._user_flow
        if dim < 2:
            raise ValueError(
                "The default flow needs an unconstrained dimension >= 2; for a 1-D model pass "
                "your own flowjax flow (flow=...)."
            )
        return flows.standardize(flows.default_flow(key, dim, identity_init=True), flat)

    # -- sample -------------------------------------------------------------------------------
    def sample(self, state: FlowMCState, model_args, model_kwargs) -> FlowMCState:
        key, key_step, key_fit = jax.random.split(state.rng_key, 3)
        flat, _ = batch_ravel_pytree(state.z)
        chains = ChainState(flat, -state.potential_energy, state.z_grad)
        flow = flows.combine(state.flow_params, self._flow_static)
        chains, info = flowmc_step(
            key_step,
            chains,
            self._logdensity_fn(model_args, model_kwargs),
            flow,
            step_size=state.step_size,
            n_local_steps=self._n_local_steps,
            global_move=self._global_move,
            n_particles=self._n_particles,
            particle_batch_size=self._particle_batch_size,
        )
        state = state._replace(
            i=state.i + 1,
            z=self._unravel_fn(chains.position),
            potential_energy=-chains.logdensity,
            z_grad=chains.logdensity_grad,
            local_accept_prob=info.local_accept_prob,
            global_accept_prob=info.global_accept_prob,
            rng_key=key,
        )
        state = self._place_chains(state, sharding.constrain_leading_axis)
        if self._num_warmup == 0:
            return state
        return jax.lax.cond(
            state.i <= self._num_warmup,
            lambda s: self._adapt(s, chains.position, key_fit),
            lambda s: s,
            state,
        )

    def _adapt(self, state: FlowMCState, position: Float[Array, "chains dim"], key) -> FlowMCState:
        """One warmup update: step size by dual averaging, flow by forward KL on the buffer."""
        position, local_accept = sharding.replicate((position, state.local_accept_prob), self._mesh)
        buffer = state.buffer.at[(state.i - 1) % self._buffer_iterations].set(position)
        step_size, adapt_state = state.step_size, state.adapt_state
        if self._adapt_step_size and self._n_local_steps > 0:
            _, da_update = dual_averaging()
            accept = jnp.mean(local_accept)
            adapt_state = da_update(self._target_accept_prob - accept, adapt_state)
            log_step, log_step_avg = adapt_state[0], adapt_state[1]
            # The averaged iterate is the better estimate; use it from the last warmup step on.
            step_size = jnp.exp(jnp.where(state.i == self._num_warmup, log_step_avg, log_step))
        params, opt_state = state.flow_params, state.flow_opt_state
        if self._train_flow and self._global_move is not None:
            params, opt_state, _ = flows.fit_flow(
                key,
                params,
                self._flow_static,
                opt_state,
                buffer.reshape(-1, buffer.shape[-1]),
                self._flow_optimizer,
                num_steps=self._flow_steps,
                batch_size=self._flow_batch_size,
                # Only the slots written so far: the initial copies of the start points would
                # teach the flow mass where the chains merely began.
                num_valid=jnp.minimum(state.i, self._buffer_iterations) * buffer.shape[1],
            )
        if self._keep_trained_flow:
            # Hand the final warmup flow to the host once, so that ``kernel.flow`` is the trained
            # flow. (A host callback keeps JAX's persistent compilation cache from serving the
            # program; keep_trained_flow=False removes it.)
            jax.lax.cond(
                state.i == self._num_warmup,
                lambda p: jax.debug.callback(self._remember_trained_flow, p),
                lambda p: None,
                params,
            )
        return state._replace(
            step_size=step_size.astype(state.step_size.dtype),
            adapt_state=adapt_state,
            flow_params=params,
            flow_opt_state=opt_state,
            buffer=buffer,
        )


def _check_continuous(model, key, model_args, model_kwargs) -> None:
    """Raise before compilation if the model has latent sites FlowMCKernel cannot move."""
    with numpyro.handlers.block():
        trace = numpyro.handlers.trace(numpyro.handlers.seed(model, key)).get_trace(
            *model_args, **model_kwargs
        )
    discrete = [
        name
        for name, site in trace.items()
        if site["type"] == "sample" and not site["is_observed"] and site["fn"].support.is_discrete
    ]
    if discrete:
        raise ValueError(
            f"FlowMCKernel moves continuous latent sites only; the model has discrete latent "
            f"site(s) {discrete}. Marginalise them out (e.g. with a MixtureSameFamily) or use "
            "numpyro.infer.MixedHMC / DiscreteHMCGibbs."
        )
