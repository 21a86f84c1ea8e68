"""The flowMC transition's settings: one dataclass, one set of defaults, no JAX import.

:class:`FlowMCSettings` lives here rather than in :mod:`numpyro_ebm.flowmc` so that the command
line can generate its sampler flags (names, types, defaults, help) from it without importing JAX
(``numpyro-ebm --help`` answers at once); :mod:`numpyro_ebm.flowmc` re-exports it, and that is
the name to use in code.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from numpyro_ebm._compat import accepts_old_names, old_name, renamed_kwargs
from numpyro_ebm._validate import is_count

if TYPE_CHECKING:  # annotations only: importing these would import JAX
    from jaxtyping import Array, Float, PRNGKeyArray

    from numpyro_ebm.flowmc import FlowMCInfo
    from numpyro_ebm.moves import ChainState, LogDensityFn

__all__ = ["FlowMCSettings", "GLOBAL_MOVES", "GlobalMove"]

GlobalMove = Literal["imh", "isir"] | None
GLOBAL_MOVES = ("imh", "isir", None)


def _smallest(value) -> float | None:
    """The smallest entry of a number or an array (NumPy or JAX); ``None`` for a tracer."""
    if isinstance(value, numbers.Real):
        return float(value)
    import numpy as np  # an array: imported only here, so that the module stays light

    try:
        return float(np.min(np.asarray(value)))
    except TypeError:  # a JAX tracer (its conversion errors are TypeErrors): the caller checks it
        return None


@accepts_old_names
@dataclass(frozen=True)
class FlowMCSettings:
    """The settings of the flowMC transition, with the library's one set of defaults.

    ``FlowMCKernel``, ``negatives.FlowMC``, :func:`~numpyro_ebm.flowmc.run_chains` and the
    command line (``numpyro-ebm train`` and ``sample``, whose flags are generated from these
    fields and this docstring) read their transition from one of these; every check of the
    settings lives in ``__post_init__`` (a ``ValueError`` naming the bad field, before anything
    is traced).

    Attributes:
        step_size: initial MALA step size (adapted when ``adapt_step_size``).
        num_local_steps: MALA steps after each global move (``>= 0``; ``>= 1`` without a
            global move).
        global_move: ``"isir"`` (one of ``num_particles`` flow proposals, the paper's choice),
            ``"imh"`` (independent Metropolis-Hastings) or ``None`` (MALA only).
        num_particles: i-SIR particles per chain, the current state included (``>= 2``).
        particle_batch_size: chains per batch when evaluating i-SIR particles (memory bound;
            ``None``: all at once).
        target_accept_prob: MALA acceptance the step size adapts toward (0.574 is optimal for
            MALA in high dimension, Roberts and Rosenthal 1998).
        adapt_step_size: adapt the MALA step size (``numpyro_ebm.adaptation``): by dual
            averaging during a kernel's warmup, by the x1.05 rule in EBM training, where the
            target moves.

    Example:
        >>> settings = FlowMCSettings(num_local_steps=8)
        >>> settings.global_move, settings.num_particles, settings.adapt_step_size
        ('isir', 32, True)
        >>> FlowMCSettings(num_particles=1)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: num_particles must be an integer >= 2 for global_move='isir' ...; got 1.
    """

    step_size: float = 0.1
    num_local_steps: int = 4
    global_move: GlobalMove = "isir"
    num_particles: int = 32
    particle_batch_size: int | None = None
    target_accept_prob: float = 0.574
    adapt_step_size: bool = True

    n_local_steps = old_name("num_local_steps")
    n_particles = old_name("num_particles")

    def __post_init__(self):
        if self.global_move not in GLOBAL_MOVES:
            raise ValueError(f"global_move must be one of {GLOBAL_MOVES}; got {self.global_move!r}.")
        if not is_count(self.num_local_steps, 0):
            raise ValueError(f"num_local_steps must be an integer >= 0; got {self.num_local_steps!r}.")
        if self.global_move == "isir" and not is_count(self.num_particles, 2):
            raise ValueError(
                f"num_particles must be an integer >= 2 for global_move='isir' (the current state "
                f"counts as one particle); got {self.num_particles!r}."
            )
        if self.global_move is None and self.num_local_steps == 0:
            raise ValueError("with global_move=None, num_local_steps must be >= 1, or nothing moves.")
        batch = self.particle_batch_size
        if batch is not None and not is_count(batch, 1):
            raise ValueError(f"particle_batch_size must be None or an integer >= 1; got {batch!r}.")
        target = self.target_accept_prob
        if not (isinstance(target, numbers.Real) and 0.0 < target < 1.0):
            raise ValueError(f"target_accept_prob must lie in (0, 1); got {target!r}.")
        if not isinstance(self.adapt_step_size, bool):
            raise ValueError(f"adapt_step_size must be True or False; got {self.adapt_step_size!r}.")
        eta = _smallest(self.step_size)
        if eta is not None and not (math.isfinite(eta) and eta > 0):
            raise ValueError(f"step_size must be positive and finite; got {self.step_size!r}.")

    @renamed_kwargs()
    def replace(self, **fields) -> FlowMCSettings:
        """These settings with ``fields`` replaced (checked again; an unknown name raises a
        ``TypeError`` listing the fields).

        Example:
            >>> FlowMCSettings().replace(global_move="imh").global_move
            'imh'
        """
        names = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(fields) - set(names))
        if unknown:
            raise TypeError(f"FlowMCSettings has no field(s) {unknown}; its fields are {names}.")
        return dataclasses.replace(self, **fields)

    def step(
        self,
        key: PRNGKeyArray,
        chains: ChainState,
        logdensity_fn: LogDensityFn,
        flow,
        *,
        step_size: Float[Array, ""] | Float[Array, " chains"] | float | None = None,
        keep_trajectory: bool = False,
    ) -> tuple[ChainState, FlowMCInfo]:
        """One :func:`flowmc_step` with these settings: the one place that hands the transition's
        fields to it. ``step_size`` (scalar or ``(chains,)``, may be traced) defaults to
        ``self.step_size``; the adapted one lives in the caller's state.

        Example:
            >>> import jax, jax.numpy as jnp
            >>> from numpyro_ebm.moves import init_chains
            >>> logp = lambda x: -0.5 * jnp.sum(x**2)
            >>> chains = init_chains(jnp.zeros((4, 2)), logp)
            >>> chains, info = FlowMCSettings(global_move=None).step(jax.random.key(0), chains, logp, None)
            >>> info.local_accept_prob.shape
            (4,)
        """
        from numpyro_ebm.flowmc import flowmc_step  # lazy: this module imports no JAX

        return flowmc_step(
            key,
            chains,
            logdensity_fn,
            flow,
            step_size=self.step_size if step_size is None else step_size,
            num_local_steps=self.num_local_steps,
            global_move=self.global_move,
            num_particles=self.num_particles,
            particle_batch_size=self.particle_batch_size,
            keep_trajectory=keep_trajectory,
        )
