"""What users pass to ``FlowMCKernel``, checked before anything compiles.

Each check raises a ``ValueError``/``TypeError`` that names the bad value and the fix. The
kernel calls them from its constructor and from ``init``; nothing here is traced.
"""

from __future__ import annotations

import jax
import numpy as np
from numpyro.util import is_prng_key

from numpyro_ebm import sharding
from numpyro_ebm import tempering as tempering_
from numpyro_ebm._validate import positive_int
from numpyro_ebm.flowmc import KERNEL_SETTINGS, FlowMCSettings

FROM_SETTINGS = object()
"""Default of the kernel's per-field arguments: "take this field from ``settings``" (``None`` is a
real value of ``global_move`` and ``particle_batch_size``)."""

__all__ = [
    "kernel_settings",
    "KERNEL_SETTINGS",
    "FROM_SETTINGS",
    "check_kernel_settings",
    "check_ensemble_key",
    "check_tempering",
    "check_finite_start",
    "check_logdensity",
]


def kernel_settings(settings: FlowMCSettings | None, **fields) -> FlowMCSettings:
    """``settings`` (default :data:`KERNEL_SETTINGS`) with every field the user passed replaced.

    ``FlowMCSettings`` checks the result, so a bad value raises a ``ValueError`` naming it.
    """
    if settings is None:
        settings = KERNEL_SETTINGS
    if not isinstance(settings, FlowMCSettings):
        raise TypeError(f"settings must be a numpyro_ebm.FlowMCSettings; got {type(settings).__name__}.")
    given = {k: v for k, v in fields.items() if v is not FROM_SETTINGS and v is not None}
    if fields.get("global_move", FROM_SETTINGS) is None:
        given["global_move"] = None
    if fields.get("particle_batch_size", FROM_SETTINGS) is None:
        given["particle_batch_size"] = None
    if "step_size" in given:
        given["step_size"] = float(given["step_size"])
    return settings.replace(**given)


def check_kernel_settings(kernel) -> None:
    """The constructor's other arguments, as stored on ``kernel`` (the transition's are checked by
    :class:`~numpyro_ebm.flowmc.FlowMCSettings`)."""
    k = kernel
    model, potential_fn, flow = k._model, k._potential_fn, k._user_flow
    if (model is None) == (potential_fn is None):
        raise ValueError("Pass exactly one of `model` or `potential_fn` to FlowMCKernel.")
    for name, value in [
        ("flow_steps_per_iteration", k._flow_steps),
        ("flow_batch_size", k._flow_batch_size),
        ("buffer_iterations", k._buffer_iterations),
    ]:
        positive_int(value, name)
    if flow is not None and not hasattr(flow, "sample_and_log_prob"):
        raise TypeError(f"flow must be a flowjax distribution; got {type(flow).__name__}.")


def check_ensemble_key(rng_key, mesh) -> int:
    """The number of chains of a typed key batch ``(chains,)`` from ``MCMC``: at least 2 (one flow
    is shared by all chains) and a multiple of the devices of ``mesh``."""
    if is_prng_key(rng_key):
        raise ValueError(
            "FlowMCKernel is an ensemble kernel (all chains share one flow): use "
            "MCMC(FlowMCKernel(...), num_chains=N, chain_method='vectorized') with N >= 2; "
            "chain_method='sequential' or 'parallel' and num_chains=1 are not supported."
        )
    num_chains = rng_key.shape[0]
    if num_chains < 2:
        raise ValueError(f"FlowMCKernel needs num_chains >= 2; got {num_chains}.")
    sharding.check_divisible(num_chains, mesh, "num_chains")
    return num_chains


def check_tempering(tempering) -> tempering_.TemperedSMC | None:
    """``"smc"`` (the default :class:`~numpyro_ebm.tempering.TemperedSMC`), one, or ``None``."""
    if tempering == "smc":
        return tempering_.TemperedSMC()
    if tempering is not None and not isinstance(tempering, tempering_.TemperedSMC):
        raise ValueError(
            f"tempering must be 'smc', None or a numpyro_ebm.tempering.TemperedSMC; got {tempering!r}."
        )
    return tempering


def check_finite_start(logdensity) -> None:
    """Every chain starts where the target's log density ``(chains,)`` is finite."""
    finite = np.isfinite(np.asarray(logdensity))  # on the host: no tiny compiled programs
    if not finite.all():
        bad = int((~finite).sum())
        raise ValueError(
            f"{bad} of {logdensity.shape[0]} initial chains have a non-finite log density; pass "
            "init_params inside the support or choose another init_strategy."
        )


def check_logdensity(logdensity_fn, flat) -> None:
    """``logdensity_fn`` maps one flattened point to a scalar (abstractly evaluated)."""
    out = jax.eval_shape(logdensity_fn, flat[0])
    if out.shape != ():
        raise ValueError(
            f"potential_fn must return a scalar for one point of shape {flat.shape[1:]}; it "
            f"returned shape {out.shape}. It receives one chain's parameters, not the batch: "
            "write it for a single point (FlowMCKernel vectorises it)."
        )
