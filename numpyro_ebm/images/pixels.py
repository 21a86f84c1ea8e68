"""Pixel space and logit space: the logit pre-processing, the image flow and the EBM's tilt.

Grenioux et al. 2023 (App. C.6) train their CIFAR-10 EBM in pixel space, while the flow works in
the logit space of Dinh et al. 2017: a fixed bijection ``P`` (a logistic sigmoid followed by an
affine map) takes logit space ``R^dim`` to pixel space, and "the prior of the EBM (eq. 6) was
pushed through the additional transformations stacked onto the flow". Here:

* :func:`logit_preprocessing` is ``P``;
* :func:`image_flow` is ``P o T`` with ``T`` a :func:`numpyro_ebm.flows.default_flow` in logit
  space, so the flow's density lives in pixel space;
* :func:`image_tilt` is the EBM's tilt ``rho = P_# N(0, I)`` in pixel space: the image flow with
  ``T = Id``. With ``identity_init=True`` flow and tilt are the same density, and the tilted EBM
  ``exp(-E(x)) rho(x)`` with ``E = 0`` starts equal to both, as the paper's balance requires.

Pixel space is ``[0, 1]^dim``; ``P`` maps onto the slightly larger open box
``(-alpha / (1 - 2 alpha), (1 - alpha) / (1 - 2 alpha))^dim`` (``(-0.056, 1.056)`` for
``alpha = 0.05``), so samples can fall a little outside ``[0, 1]`` (clip them for display). The
tilt's log-density is NaN outside that box: the MCMC moves of :mod:`numpyro_ebm.moves` reject
such proposals, so chains never leave it.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import paramax
from flowjax.bijections import AbstractBijection, Affine, Chain, Sigmoid
from flowjax.distributions import StandardNormal, Transformed
from jaxtyping import PRNGKeyArray

from numpyro_ebm._validate import is_count
from numpyro_ebm.flows import default_flow

__all__ = ["logit_preprocessing", "image_flow", "image_tilt"]


# --- pre-processing and flows -------------------------------------------------------------------


def _shape(shape_or_dim: int | Sequence[int]) -> tuple[int, ...]:
    shape = tuple(shape_or_dim) if isinstance(shape_or_dim, Sequence) else (shape_or_dim,)
    if not shape or not all(is_count(s) for s in shape):
        raise ValueError(f"shape_or_dim must be a positive integer or a shape tuple; got {shape_or_dim!r}.")
    return tuple(int(s) for s in shape)


def _check_alpha(alpha) -> float:
    if not (isinstance(alpha, int | float) and not isinstance(alpha, bool) and 0 < alpha < 0.5):
        raise ValueError(f"alpha must be a number in (0, 0.5) (Dinh et al. use 0.05); got {alpha!r}.")
    return float(alpha)


def logit_preprocessing(shape_or_dim: int | Sequence[int], *, alpha: float = 0.05) -> AbstractBijection:
    """The logit pre-processing of Dinh et al. 2017, as a fixed bijection logit space -> pixel space.

    Pixels ``x`` in ``[0, 1]`` are squeezed into ``[alpha, 1 - alpha]`` and sent through the
    logit: ``u = logit(alpha + (1 - 2 alpha) x)``. The returned bijection is the inverse,
    ``x = (sigmoid(u) - alpha) / (1 - 2 alpha)`` (a flowjax ``Sigmoid`` then an ``Affine``), so
    ``transform`` goes from logit space to pixel space (the sampling direction of a flow) and
    ``inverse`` from pixels to logits. Both log-determinants are exact. Its arrays are frozen
    (``paramax.non_trainable``): no optimiser moves it.

    Args:
        shape_or_dim: shape of one point, e.g. ``64`` or ``(64,)`` for flat 8x8 images.
        alpha: margin that keeps the logit finite on the pixel values 0 and 1.

    Returns:
        A flowjax bijection of shape ``(dim,)`` (or the given shape).

    Example:
        >>> import jax.numpy as jnp
        >>> p = logit_preprocessing(2)
        >>> u = p.inverse(jnp.array([0.0, 1.0]))
        >>> [round(float(v), 4) for v in u]  # logit(0.05), logit(0.95)
        [-2.9444, 2.9444]
        >>> [round(float(v), 4) for v in p.transform(u)]
        [0.0, 1.0]
    """
    shape = _shape(shape_or_dim)
    alpha = _check_alpha(alpha)
    width = 1.0 - 2.0 * alpha
    squeeze = Affine(jnp.full(shape, -alpha / width), jnp.full(shape, 1.0 / width))
    return paramax.non_trainable(Chain([Sigmoid(shape), squeeze]))


def image_tilt(dim: int, *, alpha: float = 0.05) -> Transformed:
    """The EBM's tilt in pixel space: ``rho = P_# N(0, I)`` with ``P`` the logit pre-processing.

    This is the base of :func:`image_flow` pushed through the same fixed pre-processing
    (Grenioux et al. 2023, App. C.6), and the image flow's density at initialisation. Use it as
    the tilt of an image EBM: ``EnergyModel(net, image_tilt(dim))``.

    Args:
        dim: number of pixels (flat images).
        alpha: the pre-processing margin; must match the flow's.

    Returns:
        A flowjax ``Transformed(StandardNormal((dim,)), logit_preprocessing(dim))``.

    Example:
        >>> import jax
        >>> x = image_tilt(64).sample(jax.random.key(0), (3,))
        >>> x.shape, bool(((x > -0.06) & (x < 1.06)).all())
        ((3, 64), True)
    """
    if not is_count(dim):
        raise ValueError(f"dim must be a positive integer (pixels of a flat image); got {dim!r}.")
    return Transformed(StandardNormal((dim,)), logit_preprocessing(dim, alpha=alpha))


def image_flow(
    key: PRNGKeyArray,
    dim: int,
    *,
    identity_init: bool = True,
    alpha: float = 0.05,
    **flow_kw,
) -> Transformed:
    """A flow on pixel space: a :func:`~numpyro_ebm.flows.default_flow` in logit space, then ``P``.

    ``x = P(T(z))`` with ``z ~ N(0, I)``, ``T`` the default coupling flow and ``P`` the fixed
    :func:`logit_preprocessing`. ``flow.base_dist`` is ``N(0, I)`` in logit space; the EBM's tilt
    is **not** that base but its push-forward :func:`image_tilt` (pixel space), which is what the
    flow equals at initialisation when ``identity_init=True``.

    Args:
        key: PRNG key for the flow's conditioners and permutations.
        dim: number of pixels (flat images), ``>= 2``.
        identity_init: start with ``T = Id``, so that ``flow.log_prob == image_tilt(dim).log_prob``
            (to float rounding, ~1e-5 at ``dim=64``) and both sample the same images from the same
            key: the paper's initialisation, and the default here, unlike in ``default_flow``.
        alpha: the pre-processing margin.
        **flow_kw: passed to :func:`~numpyro_ebm.flows.default_flow` (``flow_layers``,
            ``nn_width``, ``nn_depth``, ``knots``, ``interval``).

    Returns:
        A flowjax ``Transformed`` of shape ``(dim,)``; ``flow.bijection`` is
        ``Chain([T, P])``. (``flows.standardize`` does not apply to it: ``T``'s own affine layer
        is ``flow.bijection.bijections[0].bijections[-1]``.)

    Example:
        >>> import jax, jax.numpy as jnp
        >>> flow = image_flow(jax.random.key(0), 64)
        >>> x = flow.sample(jax.random.key(1), (4,))
        >>> bool(jnp.allclose(flow.log_prob(x), image_tilt(64).log_prob(x), atol=1e-4))
        True
    """
    if "base" in flow_kw:
        raise ValueError(
            "image_flow fixes its base to N(0, I) in logit space (the paper's CIFAR-10 set-up); "
            "build default_flow(...) and Transformed(...) yourself for another base."
        )
    inner = default_flow(key, dim, identity_init=identity_init, **flow_kw)
    bijection = Chain([inner.bijection, logit_preprocessing(dim, alpha=alpha)])
    return Transformed(inner.base_dist, bijection)
