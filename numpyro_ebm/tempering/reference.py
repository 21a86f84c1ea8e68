"""References for tempered SMC: where the particles start and the density they start from.

For a NumPyro model the reference is its prior in the flattened unconstrained space (observed and
``numpyro.factor`` sites masked, NumPyro's Jacobian factors kept); for an improper prior or a
``potential_fn`` target, a user distribution or a broad Gaussian around the initial points.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from jaxtyping import Array, Float, PRNGKeyArray
from numpyro.infer.initialization import init_to_sample
from numpyro.primitives import Messenger

from numpyro_ebm._compile import ONE_SHOT
from numpyro_ebm.kernel_target import FlatTarget, flat_target

if TYPE_CHECKING:
    from numpyro_ebm.tempering.smc import TemperedSMC

__all__ = ["gaussian_reference", "reference_logdensity", "prior_reference", "initial_particles"]


def gaussian_reference(points: Float[Array, "n dim"], *, widen: float = 2.0, min_scale: float = 2.0):
    """A diagonal Gaussian around ``points``: their mean, ``widen`` times their spread (>= ``min_scale``).

    Example:
        >>> import jax.numpy as jnp
        >>> ref = gaussian_reference(jnp.zeros((4, 3)))
        >>> float(ref.base_dist.scale[0])
        2.0
    """
    scale = jnp.maximum(widen * jnp.std(points, axis=0), min_scale)
    return dist.Normal(jnp.mean(points, axis=0), scale).to_event(1)


def reference_logdensity(reference) -> Callable[[Array], Array]:
    """``log ref`` of one flattened point for a numpyro or flowjax distribution (summed over
    a batch shape, so ``dist.Normal(0, 5).expand([d])`` works too)."""
    return lambda x: jnp.sum(reference.log_prob(x))


class _MaskSites(Messenger):
    """Mask the named sites (the model's observed and ``numpyro.factor`` sites, found by a trace
    beforehand: NumPyro adds its Jacobians as factor sites too, and those must stay)."""

    def __init__(self, fn, names):
        self.names = frozenset(names)
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "sample" and msg["name"] in self.names:
            msg["fn"] = msg["fn"].mask(False)


def _is_improper(fn) -> bool:
    while True:
        if isinstance(fn, dist.ImproperUniform):
            return True
        inner = getattr(fn, "base_dist", None)
        if inner is None:
            return False
        fn = inner


def prior_reference(key: PRNGKeyArray, model: Callable, model_args, model_kwargs, num_particles: int):
    """Prior draws and log prior of a NumPyro model, in its flattened unconstrained space.

    Returns:
        ``(particles, log_prior)``: ``(num_particles, dim)`` draws by ``init_to_sample`` and
        ``log_prior(z)`` of one flattened point (with NumPyro's Jacobians, which cancel in
        ``log pi - log prior``); ``None`` if a latent site has an improper prior.

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> def model(y=1.0):
        ...     mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
        ...     numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> x, log_prior = prior_reference(jax.random.key(0), model, (), {}, 4000)
        >>> round(float(x.std()), 1), round(float(log_prior(x[0] * 0)), 3)
        (2.0, -1.612)
    """
    sites = {}  # name -> (observed, improper)

    def probe(key):
        with numpyro.handlers.block():
            trace = numpyro.handlers.trace(numpyro.handlers.seed(model, key)).get_trace(
                *model_args, **model_kwargs
            )
        samples = [(n, s) for n, s in trace.items() if s["type"] == "sample"]
        sites.update({n: (s["is_observed"], _is_improper(s["fn"])) for n, s in samples})

    try:
        jax.eval_shape(probe, key)  # shapes only: nothing compiled
    except NotImplementedError:  # ImproperUniform (and other improper sites) cannot be sampled
        return None
    if any(improper and not observed for observed, improper in sites.values()):
        return None
    masked = _MaskSites(model, [name for name, (observed, _) in sites.items() if observed])
    pieces = {}

    # one program, run once (ONE_SHOT); op by op, NumPyro's initialisation compiled a dozen tiny ones
    @functools.partial(jax.jit, compiler_options=ONE_SHOT)
    def draw(key):
        prior = flat_target(masked, key, num_particles, None, init_to_sample, model_args, model_kwargs)
        # Functions of static structure only (unravel sizes; the potential closes over the model
        # and its arguments, not over traced values), so they outlive the trace.
        pieces.update(unravel_one=prior.unravel_one, potential_gen=prior.potential_gen)
        return prior.flat

    flat = draw(key)
    prior = FlatTarget(None, flat, None, pieces["unravel_one"], pieces["potential_gen"], None)
    return flat, prior.logdensity_fn(None, model_args, model_kwargs)


def initial_particles(key: PRNGKeyArray, settings: TemperedSMC, model, model_args, model_kwargs, flat):
    """Draws from the reference and its log density, as :class:`TemperedSMC` documents.

    Args:
        key: PRNG key.
        settings: the :class:`TemperedSMC` settings (``reference``, ``num_particles``).
        model: the NumPyro model, or ``None`` for a ``potential_fn`` target.
        model_args: the model's positional arguments.
        model_kwargs: the model's keyword arguments.
        flat: the initial chains, flattened, ``(num_chains, dim)``.

    Returns:
        ``(particles, log_ref)`` with particles ``(num_particles, dim)`` of ``flat``'s dtype, or
        ``None`` for a ``potential_fn`` target without a reference.
    """
    num_chains, dim = flat.shape
    num = settings.num_particles or max(num_chains, 512, min(32 * dim, 4096))
    reference = settings.reference
    if reference is None and model is None:
        return None
    if reference is None:
        prior = prior_reference(key, model, model_args, model_kwargs, num)
        if prior is not None:
            return jnp.asarray(prior[0], flat.dtype), prior[1]
        reference = gaussian_reference(flat)
    particles = jnp.asarray(reference.sample(key, (num,)), flat.dtype)
    if particles.shape != (num, dim):
        raise ValueError(
            f"tempering reference draws have shape {particles.shape[1:]}; the flattened "
            f"unconstrained space has shape ({dim},): pass a reference of that shape, e.g. "
            f"dist.Normal(0.0, 5.0).expand([{dim}])."
        )
    return particles, reference_logdensity(reference)
