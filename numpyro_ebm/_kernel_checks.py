"""What users pass to ``FlowMCKernel``, checked before anything compiles.

Each check raises a ``ValueError``/``TypeError`` that names the bad value and the fix. The
kernel calls them from its constructor and from ``init``; nothing here is traced.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro

from numpyro_ebm.flowmc import check_flowmc_settings

__all__ = ["check_kernel_settings", "check_init_params", "check_logdensity", "check_continuous"]


def check_kernel_settings(kernel) -> None:
    """The constructor's arguments, as stored on ``kernel`` (see ``FlowMCKernel``)."""
    k = kernel
    model, potential_fn, flow = k._model, k._potential_fn, k._user_flow
    target_accept_prob, particle_batch_size = k._target_accept_prob, k._particle_batch_size
    if (model is None) == (potential_fn is None):
        raise ValueError("Pass exactly one of `model` or `potential_fn` to FlowMCKernel.")
    check_flowmc_settings(k._step_size, k._n_local_steps, k._global_move, k._n_particles)
    if not 0.0 < target_accept_prob < 1.0:
        raise ValueError(f"target_accept_prob must lie in (0, 1); got {target_accept_prob!r}.")
    for name, value in [
        ("flow_steps_per_iteration", k._flow_steps),
        ("flow_batch_size", k._flow_batch_size),
        ("buffer_iterations", k._buffer_iterations),
    ]:
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}.")
    if particle_batch_size is not None and (
        not isinstance(particle_batch_size, int) or particle_batch_size < 1
    ):
        raise ValueError(f"particle_batch_size must be None or an integer >= 1; got {particle_batch_size!r}.")
    if flow is not None and not hasattr(flow, "sample_and_log_prob"):
        raise TypeError(f"flow must be a flowjax distribution; got {type(flow).__name__}.")


def check_init_params(init_params, num_chains: int) -> None:
    """Every leaf has a leading chain axis of size ``num_chains`` and a floating dtype."""
    leaves = jax.tree.leaves(init_params)
    if not leaves or any(jnp.ndim(x) < 1 or jnp.shape(x)[0] != num_chains for x in leaves):
        shapes = [jnp.shape(x) for x in leaves]
        raise ValueError(
            f"init_params must have a leading chain axis of size {num_chains}; got leaf shapes "
            f"{shapes}. For a potential_fn of one point x with shape (dim,), pass an array of "
            f"shape ({num_chains}, dim)."
        )
    for x in leaves:
        if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
            raise TypeError(f"init_params must be floating point; got dtype {jnp.result_type(x)}.")


def check_logdensity(logdensity_fn, flat) -> None:
    """``logdensity_fn`` maps one flattened point to a scalar (abstractly evaluated)."""
    out = jax.eval_shape(logdensity_fn, flat[0])
    if out.shape != ():
        raise ValueError(
            f"potential_fn must return a scalar for one point of shape {flat.shape[1:]}; it "
            f"returned shape {out.shape}. It receives one chain's parameters, not the batch: "
            "write it for a single point (FlowMCKernel vectorises it)."
        )


def check_continuous(model, key, model_args, model_kwargs, init_strategy) -> None:
    """Raise before compilation if the model has latent sites FlowMCKernel cannot move.

    The trace is the one NumPyro's ``initialize_model`` makes: ``init_strategy`` supplies every
    continuous latent value, so an improper prior (``ImproperUniform``, ``.mask(False)``) is
    never sampled. It is traced abstractly (``jax.eval_shape``), so it compiles nothing.
    """
    handlers = numpyro.handlers
    discrete = []

    def probe(key):
        substituted = handlers.substitute(handlers.seed(model, key), substitute_fn=init_strategy)
        with handlers.block():
            trace = handlers.trace(substituted).get_trace(*model_args, **model_kwargs)
        discrete.extend(
            name
            for name, site in trace.items()
            if site["type"] == "sample" and not site["is_observed"] and site["fn"].support.is_discrete
        )

    # Shapes only: nothing is computed or compiled, and the support is static.
    jax.eval_shape(probe, key)
    if discrete:
        raise ValueError(
            f"FlowMCKernel moves continuous latent sites only; the model has discrete latent "
            f"site(s) {discrete}. Marginalise them out (e.g. with a MixtureSameFamily) or use "
            "numpyro.infer.MixedHMC / DiscreteHMCGibbs."
        )
