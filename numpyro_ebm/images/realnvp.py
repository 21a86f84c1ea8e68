"""A multi-scale RealNVP image flow (Dinh et al. 2017) built from flowjax bijections.

Grenioux et al. 2023 (App. C.6) use the RealNVP of ``fmu2/realNVP`` on CIFAR-10 (base width 64,
6 residual blocks, "about 4M parameters"), stacked with the logit pre-processing. Here every
coupling is one flowjax bijection, :class:`ImageCoupling`, acting on the flat image: it gathers
its active pixels through an index array shaped ``(C, H, W)``, so the squeeze
(space-to-depth) and the factoring-out of half the channels between scales are only new index
arrays, with no data movement and a zero log-determinant. Each scale but the last runs three
checkerboard couplings, a squeeze, three channel couplings and factors out half the channels; the
last scale runs three checkerboard couplings. Conditioners are residual conv nets whose last
convolution starts at zero, so the flow starts at the identity (``s = t = 0``), balanced with the
tilt :func:`~numpyro_ebm.images.image_tilt`. Scales are ``tanh``-bounded (no batch norm).
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from flowjax.bijections import AbstractBijection, Chain
from flowjax.distributions import StandardNormal, Transformed
from jaxtyping import Array, PRNGKeyArray

from numpyro_ebm.images.pixels import logit_preprocessing

__all__ = ["ImageCoupling", "ResNetConditioner", "realnvp_image_flow"]


class ResNetConditioner(eqx.Module):
    """conv3x3 -> ``blocks`` x [ReLU, conv3x3, ReLU, conv3x3, + skip] -> ReLU -> conv3x3 (zero init)."""

    first: eqx.nn.Conv2d
    blocks: tuple[tuple[eqx.nn.Conv2d, eqx.nn.Conv2d], ...]
    last: eqx.nn.Conv2d

    def __init__(self, c_in: int, c_out: int, width: int, blocks: int, *, key: PRNGKeyArray):
        keys = jax.random.split(key, 2 + 2 * blocks)
        self.first = eqx.nn.Conv2d(c_in, width, 3, padding=1, key=keys[0])
        self.blocks = tuple(
            (
                eqx.nn.Conv2d(width, width, 3, padding=1, key=keys[2 + 2 * i]),
                eqx.nn.Conv2d(width, width, 3, padding=1, key=keys[3 + 2 * i]),
            )
            for i in range(blocks)
        )
        last = eqx.nn.Conv2d(width, c_out, 3, padding=1, key=keys[1])
        self.last = eqx.tree_at(lambda m: (m.weight, m.bias), last, replace_fn=jnp.zeros_like)

    def __call__(self, h: Array) -> Array:
        h = self.first(h)
        for conv1, conv2 in self.blocks:
            h = h + conv2(jax.nn.relu(conv1(jax.nn.relu(h))))
        return self.last(jax.nn.relu(h))


def _mask(kind: str, parity: int, shape: tuple[int, int, int]) -> np.ndarray:
    """1 on the pixels a coupling keeps (and conditions on), 0 on those it transforms."""
    c, h, w = shape
    if kind == "checkerboard":
        board = (np.add.outer(np.arange(h), np.arange(w)) + parity) % 2
        return np.broadcast_to(board, shape).astype(np.float32)
    half = (np.arange(c) < c // 2) if parity == 0 else (np.arange(c) >= c // 2)
    return np.broadcast_to(half[:, None, None], shape).astype(np.float32)


class ImageCoupling(AbstractBijection):
    """An affine coupling on the pixels ``x[index]`` of a flat image (``index`` shaped ``(C, H, W)``).

    ``y = m * u + (1 - m) * (u * exp(s) + t)`` with ``u = x[index]``, ``(s, t)`` from the
    conditioner applied to ``m * u`` and ``s`` bounded by ``tanh``; pixels outside ``index``
    are unchanged. ``m`` is a checkerboard or channel mask, rebuilt from static settings so that
    no optimiser can move it.
    """

    shape: tuple[int, ...]
    cond_shape: None
    index: Array
    net: ResNetConditioner
    kind: str = eqx.field(static=True)
    parity: int = eqx.field(static=True)

    def __init__(self, dim: int, index: np.ndarray, kind: str, parity: int, width: int, blocks: int, *, key):
        if kind not in ("checkerboard", "channel"):
            raise ValueError(f"kind must be 'checkerboard' or 'channel'; got {kind!r}.")
        self.shape, self.cond_shape = (dim,), None
        self.index = jnp.asarray(index, jnp.int32)
        self.kind, self.parity = kind, int(parity)
        c = index.shape[0]
        self.net = ResNetConditioner(c, 2 * c, width, blocks, key=key)

    def _scale_shift(self, u):
        mask = jnp.asarray(_mask(self.kind, self.parity, self.index.shape), u.dtype)
        st = self.net(mask * u)
        c = u.shape[0]
        s, t = jnp.tanh(st[:c]) * (1 - mask), st[c:] * (1 - mask)
        return mask, s, t

    def transform_and_log_det(self, x, condition=None):
        u = x[self.index]
        mask, s, t = self._scale_shift(u)
        y = mask * u + (1 - mask) * (u * jnp.exp(s) + t)
        return x.at[self.index].set(y), jnp.sum(s)

    def inverse_and_log_det(self, y, condition=None):
        v = y[self.index]
        mask, s, t = self._scale_shift(v)  # the kept pixels are the same on both sides
        x = mask * v + (1 - mask) * ((v - t) * jnp.exp(-s))
        return y.at[self.index].set(x), -jnp.sum(s)


def _squeeze(index: np.ndarray) -> np.ndarray:
    """Space-to-depth on an index array: ``(C, H, W) -> (4C, H/2, W/2)``."""
    c, h, w = index.shape
    out = index.reshape(c, h // 2, 2, w // 2, 2).transpose(0, 2, 4, 1, 3)
    return out.reshape(4 * c, h // 2, w // 2)


def realnvp_image_flow(
    key: PRNGKeyArray,
    image_shape: Sequence[int] = (3, 32, 32),
    *,
    width: int = 64,
    blocks: int = 6,
    scales: int = 2,
    alpha: float = 0.05,
) -> Transformed:
    """The multi-scale RealNVP on pixel space: ``x = P(T(z))``, ``z ~ N(0, I)``, ``P`` the logit
    pre-processing; ``T`` starts at the identity, so the flow equals ``image_tilt(dim)``.

    Args:
        key: PRNG key.
        image_shape: ``(channels, height, width)``; height and width divisible by ``2^(scales-1)``.
        width: channels of the conditioners (the paper's base dimension 64).
        blocks: residual blocks per conditioner (the paper: 6).
        scales: number of scales.
        alpha: the logit pre-processing margin.

    Returns:
        A flowjax ``Transformed`` of shape ``(C * H * W,)``. ``width=64, blocks=6`` on CIFAR-10:
        9 couplings, about 4.0M parameters.

    Example:
        >>> import jax
        >>> flow = realnvp_image_flow(jax.random.key(0), (1, 8, 8), width=4, blocks=1)
        >>> flow.shape
        (64,)
    """
    c, h, w = (int(s) for s in image_shape)
    if scales < 1 or h % 2 ** (scales - 1) or w % 2 ** (scales - 1):
        raise ValueError(
            f"image_shape {tuple(image_shape)} cannot be squeezed {scales - 1} time(s); lower scales."
        )
    dim = c * h * w
    index = np.arange(dim).reshape(c, h, w)
    couplings, keys = [], iter(jax.random.split(key, 6 * scales))
    for scale in range(scales):
        for parity in range(3):
            couplings.append(
                ImageCoupling(dim, index, "checkerboard", parity % 2, width, blocks, key=next(keys))
            )
        if scale == scales - 1:
            break
        index = _squeeze(index)
        for parity in range(3):
            couplings.append(ImageCoupling(dim, index, "channel", parity % 2, width, blocks, key=next(keys)))
        index = index[: index.shape[0] // 2]  # factor out half the channels: they stay as they are
    bijection = Chain([*couplings, logit_preprocessing(dim, alpha=alpha)])
    return Transformed(StandardNormal((dim,)), bijection)
