"""Default normalizing flows (flowjax) and their forward-KL fit.

The default flow is a coupling flow with rational-quadratic spline transformers: both its
``sample`` and its ``log_prob`` are one analytic pass, which matters because every global move
needs both (a masked autoregressive flow samples 10-30x slower than it evaluates). Its last
layer is an affine standardisation, so the spline intervals (``[-interval, interval]``) cover the
target once :func:`standardize` has set it from samples.

A flow travels through ``jit``/``scan`` as ``(params, static)``, the two halves of
:func:`partition`; :func:`combine` puts them back together into an unwrapped distribution.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import paramax
from flowjax.bijections import (
    Affine,
    Chain,
    Coupling,
    Invert,
    Permute,
    RationalQuadraticSpline,
    Vmap,
)
from flowjax.distributions import AbstractDistribution, StandardNormal, Transformed
from flowjax.flows import coupling_flow
from flowjax.utils import get_ravelled_pytree_constructor
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from numpyro_ebm._keys import as_typed_key
from numpyro_ebm._whitening import Whitening, principal_axes

__all__ = [
    "default_flow",
    "flow_capacity",
    "Whitening",
    "standardize",
    "restandardize",
    "partition",
    "combine",
    "forward_kl",
    "fit_flow",
]


def _is_frozen(leaf) -> bool:
    return isinstance(leaf, paramax.NonTrainable)


def default_flow(
    key: PRNGKeyArray,
    dim: int,
    *,
    identity_init: bool = False,
    base: AbstractDistribution | None = None,
    flow_layers: int = 4,
    nn_width: int = 32,
    nn_depth: int = 1,
    knots: int = 8,
    interval: float = 4.0,
    whiten: bool = False,
) -> Transformed:
    """A rational-quadratic-spline coupling flow with an affine standardisation.

    ``x = A(S(z))`` with ``z ~ base``, ``S`` the spline couplings (with permutations between
    them) and ``A`` an elementwise affine map, initially the identity. With ``whiten=True``,
    ``x = W(M(S(z)))`` instead: ``M`` elementwise splines (one per coordinate, no conditioner)
    and ``W`` a :class:`Whitening` (full covariance, principal axes first), so that mode
    structure along a few principal directions costs ``dim * (3 knots - 1)`` parameters rather
    than coupling conditioners that overfit in high dimension (see :func:`flow_capacity`).

    Args:
        key: PRNG key for the conditioner networks and permutations.
        dim: dimension of the samples (``>= 1``; for ``dim == 1``, with no halves to couple,
            ``S`` is ``flow_layers`` elementwise splines, the identity at initialisation).
        identity_init: zero the last layer of every conditioner so that the flow is exactly
            its base at initialisation (``flow.log_prob == base.log_prob``, samples equal base
            samples). The EBM trainer needs this: the tilted EBM starts at ``rho`` too.
        base: base distribution ``rho`` of shape ``(dim,)``; a standard normal by default. It
            is frozen (``paramax.non_trainable``): fitting the flow never moves it.
        flow_layers: number of coupling layers.
        nn_width: hidden width of each conditioner MLP.
        nn_depth: hidden layers of each conditioner MLP.
        knots: spline knots per coordinate.
        interval: splines act on ``[-interval, interval]`` (identity outside).
        whiten: end with marginal splines and a full whitening (set by :func:`standardize`)
            instead of the elementwise affine layer. ``flow_layers=0`` then leaves no couplings.

    Returns:
        A flowjax ``Transformed`` distribution; ``flow.base_dist`` is ``rho``.

    Example:
        >>> import jax
        >>> flow = default_flow(jax.random.key(0), 3, identity_init=True)
        >>> flow.sample(jax.random.key(1), (5,)).shape
        (5, 3)
    """
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"default_flow needs an integer dim >= 1; got {dim!r}.")
    if flow_layers < (0 if whiten else 1) or knots < 2 or interval <= 0:
        raise ValueError(
            f"need flow_layers >= 1 (>= 0 with whiten=True), knots >= 2, interval > 0; got "
            f"{flow_layers}, {knots}, {interval}."
        )
    if base is None:
        base = StandardNormal((dim,))
    if base.shape != (dim,):
        raise ValueError(
            f"base has shape {base.shape}, but the flow has dim {dim}: pass a base of shape ({dim},)."
        )
    shape = dict(flow_layers=flow_layers, nn_width=nn_width, nn_depth=nn_depth, knots=knots)
    # identity_init traced, not static: both kinds of flow share one compiled program
    identity = jnp.asarray(bool(identity_init))
    flow = _build_flow(as_typed_key(key), dim, identity, base, interval=interval, whiten=whiten, **shape)
    # A coupling layer keeps its spline's initial parameters in a closure (not a pytree leaf), so
    # the one built under jit holds a tracer: swap in the same constructor built here (one per
    # spline shape, so that jitted functions taking flows as arguments hit their cache).
    constructor = _spline_constructor(knots, float(interval))
    couplings = lambda f: [
        m.transformer_constructor
        for m in jax.tree.leaves(f, is_leaf=lambda m: isinstance(m, Coupling))
        if isinstance(m, Coupling)
    ]
    return eqx.tree_at(couplings, flow, replace=[constructor] * len(couplings(flow)))


@functools.cache
def _spline_constructor(knots: int, interval: float) -> Callable:
    spline = RationalQuadraticSpline(knots=knots, interval=interval)
    return get_ravelled_pytree_constructor(spline, filter_spec=eqx.is_inexact_array, is_leaf=_is_frozen)[0]


# One compiled program per flow shape: op by op, building a flow ran ~45 tiny programs (~3.5 CPU
# s), more than the rest of a small FlowMCKernel start-up but the two big compiles.
@eqx.filter_jit(compiler_options={"xla_backend_optimization_level": 0})
def _build_flow(key, dim, identity_init, base, *, flow_layers, nn_width, nn_depth, knots, interval, whiten):
    """:func:`default_flow` after its checks (the key typed, ``base`` given)."""
    base = paramax.non_trainable(base)
    spline = RationalQuadraticSpline(knots=knots, interval=interval)
    couple = dict(nn_width=nn_width, nn_depth=nn_depth, identity_init=identity_init)
    if whiten:
        eye = jnp.eye(dim)
        last = [_elementwise_spline(knots, interval, dim), Whitening(jnp.zeros(dim), eye, jnp.ones(dim), eye)]
        if dim > 1 and flow_layers > 0:
            last = [*_couplings(key, base, spline, flow_layers, **couple), *last]
        return Transformed(base, Chain(last))
    if dim == 1:  # nothing to couple: elementwise splines (identity at init either way)
        splines = [_elementwise_spline(knots, interval) for _ in range(flow_layers)]
        return Transformed(base, Chain([*splines, Affine(jnp.zeros(1), jnp.ones(1))]))
    couplings = _couplings(key, base, spline, flow_layers, **couple)
    return Transformed(base, Chain([*couplings, Affine(jnp.zeros(dim), jnp.ones(dim))]))


def flow_capacity(dim: int) -> dict:
    """:func:`default_flow` settings by dimension: the rule ``FlowMCKernel``'s default flow follows.

    * ``dim < 8``: the affine standardisation and 4 coupling layers (width 32, 8 knots);
    * ``8 <= dim <= 32``: ``whiten=True`` (principal axes, marginal splines) and the same 4
      couplings;
    * ``dim > 32``: ``whiten=True`` and no couplings. Their conditioners (~25k parameters per
      layer at ``dim = 64``) overfit even 10,000 exact draws of the four-mode target, and a
      warmup buffer holds ~1,000 correlated ones; the whitened marginal splines do not.

    Measured in ``docs/benchmarks.md`` (flows in high dimension). Example:
        >>> flow_capacity(64)
        {'whiten': True, 'flow_layers': 0}
    """
    if dim < 8:
        return {}
    return {"whiten": True} if dim <= 32 else {"whiten": True, "flow_layers": 0}


def _couplings(key, base, spline, flow_layers, *, nn_width, nn_depth, identity_init) -> list:
    """The spline coupling stack, preceded by the permutation that makes its identity ``x == z``."""
    couplings = coupling_flow(
        as_typed_key(key),
        base_dist=base,
        transformer=spline,
        flow_layers=flow_layers,
        nn_width=nn_width,
        nn_depth=nn_depth,
        invert=True,  # log_prob direction is the layers' forward pass; both directions analytic
    ).bijection
    couplings = Invert(_zero_conditioner_outputs(couplings.bijection, identity_init))
    # With identity couplings the stack is a fixed permutation of the coordinates; undo it once
    # so that "identity at initialisation" means x == z, not x == z[perm].
    neutral = _zero_conditioner_outputs(couplings.bijection)
    dim = base.shape[0]
    order = neutral.transform(jnp.arange(dim, dtype=jnp.float32)).astype(jnp.int32)
    undo = paramax.non_trainable(Permute(jnp.argsort(order)))
    return [Invert(undo), couplings]


def _elementwise_spline(knots: int, interval: float, dim: int = 1) -> Vmap:
    """Independent splines on each of ``dim`` coordinates; flowjax initialises them to the identity."""
    spline = eqx.filter_vmap(lambda: RationalQuadraticSpline(knots=knots, interval=interval), axis_size=dim)()
    return Vmap(spline, in_axes=eqx.if_array(0))


def _zero_conditioner_outputs(scan, where=True):
    """Zero the last linear layer of every conditioner (if ``where``, a bool that may be traced):
    each spline becomes the identity."""
    last = lambda s: s.bijection.bijections[0].conditioner.layers[-1]
    zero = lambda w: jnp.where(where, jnp.zeros_like(w), w)
    return eqx.tree_at(lambda s: (last(s).weight, last(s).bias), scan, replace_fn=zero)


def _affine_path(flow: Transformed):
    return flow.bijection.bijections[-1]


def has_standardization(flow) -> bool:
    """Whether ``flow`` ends with :func:`default_flow`'s affine standardisation or whitening."""
    bijection = getattr(flow, "bijection", None)
    return isinstance(bijection, Chain) and isinstance(bijection.bijections[-1], Affine | Whitening)


def standardize(flow: Transformed, samples: Float[Array, "n dim"]) -> Transformed:
    """Set the flow's affine standardisation to the mean and standard deviation of ``samples``.

    A flow built with ``whiten=True`` gets the samples' mean and principal axes instead,
    ``x = mean + U diag(sqrt(lambda)) u`` (covariance shrunk toward its diagonal by
    ``dim / (n + dim)``, so that few samples still give an invertible map).

    Args:
        flow: a flow built by :func:`default_flow`.
        samples: points of shape ``(n, dim)`` (``n >= 2``), e.g. the chains' current states.

    Returns:
        The same flow with ``A(u) = mean + std * u``. Jit-safe.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> flow = standardize(default_flow(jax.random.key(0), 2, identity_init=True),
        ...                    jnp.array([[0.0, 10.0], [2.0, 14.0]]))
        >>> flow.sample(jax.random.key(1), (2000,)).mean(0).round(0)
        Array([ 1., 12.], dtype=float32)
    """
    if not has_standardization(flow):
        raise TypeError("standardize needs a flow built by numpyro_ebm.flows.default_flow.")
    return _standardized(flow, samples)


@eqx.filter_jit  # one program (op by op: a dozen tiny ones; with whitening, dozens)
def _standardized(flow: Transformed, samples: Float[Array, "n dim"]) -> Transformed:
    if isinstance(_affine_path(flow), Whitening):
        old = _affine_path(flow)  # refreshed, its coordinates keep their directions
        new = Whitening(*principal_axes(samples, previous=(old.rotation, old.unmixing)))
        return eqx.tree_at(_affine_path, flow, new)
    mean = jnp.mean(samples, axis=0)
    std = jnp.std(samples, axis=0)
    std = jnp.where(jnp.isfinite(std) & (std > 1e-6), std, 1.0)
    # What Affine(mean, std) stores, without its check that std > 0 (true here): the check is a
    # host callback, and a program with one never enters JAX's persistent compilation cache.
    raw_scale = jnp.log(-jnp.expm1(-std)) + std  # paramax's inv_softplus
    where = lambda f: (_affine_path(f).loc, _affine_path(f).scale.args[0])
    return eqx.tree_at(where, flow, (mean.astype(float), raw_scale.astype(float)))


def restandardize(params: PyTree, static: PyTree, samples: Float[Array, "n dim"]) -> PyTree:
    """:func:`standardize` on the ``(params, static)`` halves, inside ``jit``: new ``params``.

    Warmup calls it before fitting so that the splines' interval ``[-interval, interval]``
    follows the samples as they spread or contract (flowMC re-whitens before every fit too).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> params, static = partition(default_flow(jax.random.key(0), 2, identity_init=True))
        >>> params = restandardize(params, static, jnp.array([[0.0, 10.0], [2.0, 14.0]]))
        >>> combine(params, static).sample(jax.random.key(1), (2000,)).mean(0).round(0)
        Array([ 1., 12.], dtype=float32)
    """
    return partition(standardize(eqx.combine(params, static), samples))[0]


def partition(flow: AbstractDistribution) -> tuple[PyTree, PyTree]:
    """Split a flow into trainable arrays and the rest (frozen leaves stay static).

    The arrays come back strongly typed. flowjax builds some (the spline derivatives of
    elementwise splines) weakly typed, while anything a jitted update returns is strongly
    typed: a weak leaf made the first call of every program taking the parameters compile a
    second time at the second call (the tempered SMC's level program: 7 s at d = 16).

    Example:
        >>> import jax
        >>> params, static = partition(default_flow(jax.random.key(0), 2))
        >>> flow = combine(params, static)
    """
    params, static = eqx.partition(flow, eqx.is_inexact_array, is_leaf=_is_frozen)
    return jax.tree.map(_strongly_typed, params), static


def _strongly_typed(x: Array) -> Array:
    return jax.lax.convert_element_type(x, x.dtype) if getattr(x, "weak_type", False) else x


def combine(params: PyTree, static: PyTree) -> AbstractDistribution:
    """Rebuild the distribution from :func:`partition`'s halves, with parameters unwrapped."""
    return paramax.unwrap(eqx.combine(params, static))


def forward_kl(params: PyTree, static: PyTree, samples: Float[Array, "n dim"]) -> Float[Array, ""]:
    """``-mean log q(samples)``: the forward KL to the samples' law, up to its entropy."""
    return -jnp.mean(combine(params, static).log_prob(samples))


def fit_flow(
    key: PRNGKeyArray,
    params: PyTree,
    static: PyTree,
    opt_state: optax.OptState,
    samples: Float[Array, "n dim"],
    optimizer: optax.GradientTransformation,
    *,
    num_steps: int,
    batch_size: int | None = None,
    num_valid: Array | int | None = None,
    loss_fn: Callable = forward_kl,
) -> tuple[PyTree, optax.OptState, Float[Array, " num_steps"]]:
    """Run ``num_steps`` optax steps of forward KL on ``samples`` as one ``lax.scan``.

    Each step uses a minibatch of ``batch_size`` rows drawn uniformly with replacement (a full
    shuffle per step costs more than the step itself); all rows when ``None``. A step whose loss
    or gradient is not finite is skipped, so a bad batch never corrupts the flow.

    Args:
        key: PRNG key for the minibatches.
        params: the flow's trainable arrays, from :func:`partition`.
        static: the rest of the flow, from :func:`partition`.
        opt_state: ``optimizer.init(params)`` or the state from the previous call.
        samples: training points, shape ``(n, dim)``.
        optimizer: any optax transformation.
        num_steps: optimiser steps (static).
        batch_size: minibatch size (static).
        num_valid: draw minibatches from the first ``num_valid`` rows only (may be traced), e.g.
            the filled part of a ring buffer; needs ``batch_size``.
        loss_fn: ``(params, static, batch) -> scalar``; forward KL by default.

    Returns:
        ``(params, opt_state, losses)`` with ``losses`` of shape ``(num_steps,)``.

    Example:
        >>> import jax, optax
        >>> flow = default_flow(jax.random.key(0), 2, identity_init=True)
        >>> params, static = partition(flow)
        >>> opt = optax.adam(1e-2)
        >>> x = 3.0 + jax.random.normal(jax.random.key(1), (256, 2))
        >>> params, _, losses = fit_flow(jax.random.key(2), params, static, opt.init(params),
        ...                              x, opt, num_steps=50, batch_size=64)
        >>> bool(losses[-1] < losses[0])
        True
    """
    if num_valid is not None and batch_size is None:
        raise ValueError("fit_flow: num_valid needs a batch_size (minibatches are drawn from those rows).")
    n = samples.shape[0] if num_valid is None else num_valid

    def step(carry, step_key):
        params, opt_state = carry
        if batch_size is None:
            batch = samples
        else:
            batch = samples[jax.random.randint(step_key, (batch_size,), 0, n)]
        loss, grads = eqx.filter_value_and_grad(loss_fn)(params, static, batch)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = eqx.apply_updates(params, updates)
        finite = jnp.isfinite(loss) & _all_finite(grads)
        params, opt_state = jax.tree.map(
            lambda new, old: jnp.where(finite, new, old),
            (new_params, new_opt_state),
            (params, opt_state),
        )
        return (params, opt_state), loss

    keys = jax.random.split(as_typed_key(key), num_steps)
    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), keys)
    return params, opt_state, losses


def _all_finite(tree: PyTree) -> Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if eqx.is_inexact_array(x)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)
