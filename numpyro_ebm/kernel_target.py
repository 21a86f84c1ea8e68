"""From a NumPyro model (or a ``potential_fn``) to the flat target ``FlowMCKernel`` moves.

The transition (:func:`~numpyro_ebm.flowmc.flowmc_step`) works on flattened unconstrained points
``(chains, dim)`` and ``log pi`` of one such point; NumPyro users hand the kernel a model with
constrained, pytree-shaped sites. :func:`flat_target` does the translation once, in ``init``
(and for the tempering reference, the prior), after the checks below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpyro
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float
from numpyro.infer.ensemble_util import batch_ravel_pytree
from numpyro.infer.util import initialize_model

__all__ = ["FlatTarget", "flat_target", "check_continuous", "check_init_params"]


class FlatTarget(NamedTuple):
    """A model's (or potential's) unconstrained space, flattened.

    Attributes:
        init_params: initial unconstrained values, a pytree with a leading chain axis.
        flat: the same, flattened, ``(chains, dim)``.
        unravel_fn: ``(chains, dim)`` array to a pytree shaped like ``init_params``.
        unravel_one: ``(dim,)`` array to one chain's pytree.
        potential_gen: ``potential_gen(*model_args, **model_kwargs)`` is ``-log pi`` of one
            unconstrained pytree (NumPyro's ``initialize_model``); ``None`` for a ``potential_fn``.
        postprocess_gen: to constrained space, likewise; ``None`` for a ``potential_fn``.
    """

    init_params: Any
    flat: Float[Array, "chains dim"]
    unravel_fn: Callable
    unravel_one: Callable
    potential_gen: Callable | None
    postprocess_gen: Callable | None

    def logdensity_fn(self, potential_fn: Callable | None, model_args, model_kwargs) -> Callable:
        """``log pi`` of one flat point ``(dim,) -> ()``: from the model for these arguments, or
        from ``potential_fn`` (``-log pi`` of one pytree) when there is no model."""
        if self.potential_gen is not None:
            potential_fn = self.potential_gen(*model_args, **model_kwargs)
        unravel_one = self.unravel_one
        return lambda x: -potential_fn(unravel_one(x))


def flat_target(
    model: Callable | None,
    key,
    num_chains: int,
    init_params,
    init_strategy: Callable,
    model_args: tuple,
    model_kwargs: dict,
) -> FlatTarget:
    """Initialise ``num_chains`` chains of ``model`` (``None``: a ``potential_fn`` target, then
    ``init_params`` is required) and flatten them.

    Raises before compiling if the model has discrete latent sites or ``init_params`` lacks the
    chain axis.
    """
    potential_gen = postprocess_gen = None
    if model is not None:
        check_continuous(model, key, model_args, model_kwargs, init_strategy)
        params_info, potential_gen, postprocess_gen, _ = initialize_model(
            jax.random.split(key, num_chains),
            model,
            dynamic_args=True,
            init_strategy=init_strategy,
            model_args=model_args,
            model_kwargs=model_kwargs,
            validate_grad=False,
        )
        if init_params is None:
            init_params = params_info[0]
    elif init_params is None:
        raise ValueError(
            "With potential_fn, pass init_params to MCMC.run: a pytree whose leaves have a "
            f"leading axis of size num_chains={num_chains}."
        )
    check_init_params(init_params, num_chains)
    flat, unravel_fn = batch_ravel_pytree(init_params)
    unravel_one = ravel_pytree(jax.tree.map(lambda x: x[0], init_params))[1]
    return FlatTarget(init_params, jnp.asarray(flat), unravel_fn, unravel_one, potential_gen, postprocess_gen)


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
