"""XLA compiler options for the few programs ``FlowMCKernel``'s start-up compiles.

Passed per program (``jax.jit(..., compiler_options=...)``); the library never changes JAX's
global settings. Measured in docs/benchmarks.md (session 5):

* :func:`large_program_options`: XLA CPU's older loop emitters instead of its fusion emitters
  (``xla_cpu_use_fusion_emitters=False``). For the tempered SMC level program (a forward-KL fit
  differentiated through the spline flow, then flowMC moves) compilation took ~35% less CPU
  and a level ran ~10% slower. Other backends, and JAX versions whose XLA lacks the option,
  get no options.
* :data:`ONE_SHOT`: programs that run once per ``init`` (building the flow, drawing the starting
  particles, the initial state): XLA's backend optimisation off, since compiling them costs
  more than running them unoptimised.
"""

from __future__ import annotations

import functools

import jax

__all__ = ["ONE_SHOT", "large_program_options"]

ONE_SHOT = {"xla_backend_optimization_level": 0}


@functools.cache
def large_program_options(backend: str | None = None) -> dict | None:
    """Compiler options for a large, repeatedly run program on ``backend`` (default: JAX's
    default backend); ``None`` where none apply."""
    backend = jax.default_backend() if backend is None else backend
    if backend != "cpu":
        return None
    options = {"xla_cpu_use_fusion_emitters": False}
    try:  # an XLA that does not know the option rejects it: then compile with none
        jax.jit(lambda x: x + 1, compiler_options=options).lower(0.0).compile()
    except Exception:  # noqa: BLE001 - the error type is XLA's, not stable across versions
        return None
    return options
