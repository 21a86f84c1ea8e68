"""``EnergyModel``: an energy network and its tilt, ``p(x) ∝ exp(-E(x)) rho(x)``.

The tilt ``rho`` is what makes flowMC-EBM balanced (Grenioux et al. 2023, eq. 6): with ``rho``
the base of an identity-initialised flow and ``E = 0`` at initialisation, EBM and flow agree at
step 0. Three tilts cover the paper's models:

* ``EnergyModel(net, flow.base_dist)``: the tilted EBM of flowMC-EBM; ``rho`` is fixed.
* ``EnergyModel(net, None)``: the plain EBM ``exp(-E(x))`` of ULA-EBM (Algorithm 3).
* ``EnergyModel(net, flow, trainable_base=True)``: NT-EBM's EBM, an exponential tilt of a flow
  whose parameters are trained with the energy (maximum likelihood of the whole model).

``rho`` may be a flowjax or a NumPyro distribution of event shape ``(dim,)`` on ``R^dim``.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as npd
import paramax
from flowjax.distributions import AbstractDistribution
from jaxtyping import Array, Float, PRNGKeyArray
from numpyro.distributions import constraints

from numpyro_ebm._validate import positive_int

__all__ = ["EnergyModel", "FlowjaxDistribution", "as_numpyro"]


class FlowjaxDistribution(npd.Distribution):
    """A flowjax distribution seen as a NumPyro distribution (so it can be a ``numpyro.sample`` site).

    Args:
        dist: an unconditional flowjax distribution on ``R^dim`` (shape ``(dim,)``).

    Example:
        >>> import jax
        >>> from flowjax.distributions import StandardNormal
        >>> d = FlowjaxDistribution(StandardNormal((3,)))
        >>> d.event_shape, d.sample(jax.random.key(0), (5,)).shape
        ((3,), (5, 3))
    """

    pytree_data_fields = ("dist",)

    def __init__(self, dist: AbstractDistribution, *, validate_args: bool | None = None):
        if not isinstance(dist, AbstractDistribution):
            raise TypeError(f"FlowjaxDistribution wraps a flowjax distribution; got {type(dist).__name__}.")
        if dist.cond_shape is not None:
            raise ValueError(
                "FlowjaxDistribution needs an unconditional flowjax distribution (cond_shape None)."
            )
        self.dist = dist
        super().__init__(batch_shape=(), event_shape=tuple(dist.shape), validate_args=validate_args)

    @property
    def support(self):
        return constraints.independent(constraints.real, len(self.event_shape))

    def sample(self, key: PRNGKeyArray, sample_shape: tuple[int, ...] = ()) -> Array:
        # NumPyro and ArviZ still hand out raw uint32 keys (jax.random.PRNGKey); flowjax wants
        # typed keys.
        if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.wrap_key_data(key)
        return self.dist.sample(key, tuple(sample_shape))

    def log_prob(self, value: Array) -> Array:
        return self.dist.log_prob(value)


def as_numpyro(dist) -> npd.Distribution:
    """Return ``dist`` as a NumPyro distribution (flowjax distributions are wrapped).

    Example:
        >>> from flowjax.distributions import StandardNormal
        >>> as_numpyro(StandardNormal((2,))).event_shape
        (2,)
    """
    dist = paramax.unwrap(dist)
    return FlowjaxDistribution(dist) if isinstance(dist, AbstractDistribution) else dist


def _event_dim_of(base) -> int:
    """Validate a tilt and return its dimension; raises before anything is traced."""
    if isinstance(base, AbstractDistribution):
        if base.cond_shape is not None or len(base.shape) != 1:
            raise ValueError(
                f"the tilt must be an unconditional flowjax distribution of shape (dim,); got shape "
                f"{base.shape} and cond_shape {base.cond_shape}."
            )
        return int(base.shape[0])
    if isinstance(base, npd.Distribution):
        if base.event_shape == () and len(base.batch_shape) == 1:
            raise ValueError(
                f"the NumPyro tilt has batch_shape {base.batch_shape} and no event dimension: "
                "pass base.to_event(1) so that one point of shape (dim,) has one log-density."
            )
        if len(base.event_shape) != 1 or base.batch_shape != ():
            raise ValueError(
                f"the NumPyro tilt must have event_shape (dim,) and batch_shape (); got "
                f"{base.event_shape} and {base.batch_shape}."
            )
        support = base.support
        while isinstance(support, constraints.independent):
            support = support.base_constraint
        if support is not constraints.real:
            raise ValueError(
                f"the tilt must live on all of R^dim (support real_vector); got support {base.support}. "
                "Reparametrise your data to R^dim first."
            )
        return int(base.event_shape[0])
    raise TypeError(
        f"base must be a flowjax or NumPyro distribution, or None for an untilted EBM; got "
        f"{type(base).__name__}."
    )


class EnergyModel(eqx.Module):
    """The tilted energy-based model ``p(x) = exp(-E(x)) rho(x) / Z`` (Grenioux et al. 2023, eq. 6).

    Args:
        net: energy network, one point ``(dim,) -> ()`` (an equinox Module, e.g. ``nets.ToyNet``).
        base: the tilt ``rho``: a flowjax or NumPyro distribution of event shape ``(dim,)``
            (e.g. ``flow.base_dist``), or ``None`` for the plain EBM ``exp(-E(x))``.
        trainable_base: train the tilt's parameters with the energy (NT-EBM, where the tilt is a
            flow). By default the tilt is frozen: training never moves it.
        dim: the dimension, needed only when neither ``base`` nor ``net.dim`` gives it.

    Attributes:
        net: the energy network.
        base: the tilt (wrapped in ``paramax.NonTrainable`` unless ``trainable_base``).
        dim: dimension of a point.
        trainable_base: whether the tilt is trained.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from numpyro_ebm.flows import default_flow
        >>> from numpyro_ebm.nets import ToyNet
        >>> flow = default_flow(jax.random.key(0), 2, identity_init=True)
        >>> ebm = EnergyModel(ToyNet(2, key=jax.random.key(1)), flow.base_dist)
        >>> x = jnp.ones((5, 2))
        >>> bool(jnp.allclose(ebm.log_density(x), flow.log_prob(x)))
        True
    """

    net: Callable
    base: object
    dim: int = eqx.field(static=True)
    trainable_base: bool = eqx.field(static=True)

    def __init__(self, net: Callable, base, *, trainable_base: bool = False, dim: int | None = None):
        if not callable(net):
            raise TypeError(f"net must be callable, (dim,) -> (); got {type(net).__name__}.")
        dims = {}
        if base is not None:
            dims["base"] = _event_dim_of(paramax.unwrap(base))
        if isinstance(getattr(net, "dim", None), int):
            dims["net.dim"] = net.dim
        if dim is not None:
            dims["dim"] = positive_int(dim, "dim")
        if not dims:
            raise ValueError(
                "cannot tell the dimension of an untilted EBM whose net has no `dim`: pass dim=..."
            )
        if len(set(dims.values())) > 1:
            raise ValueError(f"inconsistent dimensions {dims}: the net, the tilt and dim must agree.")
        if base is None and trainable_base:
            raise ValueError("trainable_base=True needs a tilt to train; got base=None.")
        self.net = net
        self.base = base if (base is None or trainable_base) else paramax.non_trainable(base)
        self.dim = next(iter(dims.values()))
        self.trainable_base = bool(trainable_base)

    def _batched(self, fn: Callable, x: Array) -> Array:
        x = jnp.asarray(x)
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(
                f"points must have shape (dim,) or (..., dim) with dim={self.dim}; got {x.shape}."
            )
        flat = jnp.reshape(x, (-1, self.dim))
        return jnp.reshape(jax.vmap(fn)(flat), x.shape[:-1])

    def energy(self, x: Float[Array, "... dim"]) -> Float[Array, ...]:
        """``E(x)`` for points of shape ``(dim,)`` or ``(..., dim)``; returns shape ``(...)``."""
        return self._batched(self.net, x)

    def log_base(self, x: Float[Array, "... dim"]) -> Float[Array, ...]:
        """``log rho(x)`` (0 for an untilted EBM), shape ``(...)``."""
        x = jnp.asarray(x)
        if self.base is None:
            return jnp.zeros(x.shape[:-1], x.dtype)
        base = paramax.unwrap(self.base)
        return self._batched(base.log_prob, x)

    def log_density(self, x: Float[Array, "... dim"]) -> Float[Array, ...]:
        """Unnormalised log-density ``-E(x) + log rho(x)``, shape ``(...)``."""
        return -self.energy(x) + self.log_base(x)

    def potential_fn(self, x: Float[Array, "... dim"]) -> Float[Array, ...]:
        """``E(x) - log rho(x)``: the NumPyro potential, e.g. ``FlowMCKernel(potential_fn=ebm.potential_fn)``.

        Example:
            >>> import jax, jax.numpy as jnp
            >>> from flowjax.distributions import StandardNormal
            >>> from numpyro_ebm.nets import ToyNet
            >>> ebm = EnergyModel(ToyNet(2, key=jax.random.key(0)), StandardNormal((2,)))
            >>> round(float(ebm.potential_fn(jnp.zeros(2))), 4)  # -log N(0 | 0, I)
            1.8379
        """
        return -self.log_density(x)

    def model(self) -> None:
        """A NumPyro model of the EBM: ``x ~ rho``, then ``factor(-E(x))``.

        ``numpyro.infer.MCMC(FlowMCKernel(ebm.model), ...)`` samples ``p``. An untilted EBM uses
        an improper flat ``x`` site, so give the kernel ``init_params``.
        """
        if self.base is None:
            prior = npd.ImproperUniform(constraints.real_vector, (), (self.dim,))
        else:
            prior = as_numpyro(self.base)
        x = numpyro.sample("x", prior)
        numpyro.factor("energy", -self.energy(x))
