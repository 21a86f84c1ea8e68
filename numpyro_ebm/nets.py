"""Energy networks ``E_theta: R^dim -> R``, each exactly zero at initialisation.

The tilted EBM ``p(x) ∝ exp(-E(x)) rho(x)`` must equal its tilt ``rho`` (and so the identity-init
flow) at step 0 (Grenioux et al. 2023, Sec. 3). The paper does not say how; here the last layer of
every network starts at zero weight and zero bias, so ``E = 0`` exactly, while the hidden layers
keep their random initialisation and receive gradients from the first step on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from numpyro_ebm._validate import is_count

__all__ = ["ToyNet", "ConvEnergy", "ResNetEnergy"]


def _zero_last(linear: eqx.nn.Linear) -> eqx.nn.Linear:
    return eqx.tree_at(lambda layer: (layer.weight, layer.bias), linear, replace_fn=jnp.zeros_like)


def _check_positive_ints(name: str, values: Sequence[int]) -> tuple[int, ...]:
    values = tuple(values)
    if not values or not all(is_count(v) for v in values):
        raise ValueError(f"{name} must be a non-empty sequence of positive integers; got {values!r}.")
    return values


class ToyNet(eqx.Module):
    """The toy MLP energy of Nijkamp et al. 2020a, used by Grenioux et al. 2023 for 2-D and mixtures.

    ``dim -> 32 -> 64 -> 64 -> 64 -> 1`` with LeakyReLU(0.05) (10,593 parameters for ``dim=2``);
    the last layer is zero, so ``E(x) = 0`` for every ``x`` at initialisation.

    Args:
        dim: input dimension.
        key: PRNG key for the hidden layers.
        widths: hidden widths.
        negative_slope: LeakyReLU slope.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> net = ToyNet(2, key=jax.random.key(0))
        >>> float(net(jnp.ones(2)))
        0.0
    """

    layers: tuple[eqx.nn.Linear, ...]
    dim: int = eqx.field(static=True)
    negative_slope: float = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        *,
        key: PRNGKeyArray,
        widths: Sequence[int] = (32, 64, 64, 64),
        negative_slope: float = 0.05,
    ):
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"ToyNet needs an integer dim >= 1; got {dim!r}.")
        widths = _check_positive_ints("widths", widths)
        sizes = (dim, *widths, 1)
        keys = jax.random.split(key, len(sizes) - 1)
        layers = [eqx.nn.Linear(i, o, key=k) for i, o, k in zip(sizes[:-1], sizes[1:], keys, strict=True)]
        layers[-1] = _zero_last(layers[-1])
        self.layers = tuple(layers)
        self.dim = dim
        self.negative_slope = float(negative_slope)

    def __call__(self, x: Float[Array, " dim"]) -> Float[Array, ""]:
        """Energy of one point ``x`` of shape ``(dim,)``; returns a scalar."""
        for layer in self.layers[:-1]:
            x = jax.nn.leaky_relu(layer(x), self.negative_slope)
        return self.layers[-1](x)[0]


class ConvEnergy(eqx.Module):
    """A small convolutional energy for single-channel images given as flat vectors.

    ``x`` of shape ``(height * width,)`` (``(64,)`` for 8x8 digits) is reshaped to
    ``(1, height, width)``; three 3x3 convolutions (the last two with stride 2) and SiLU
    activations, whose smoothness keeps Langevin gradients well behaved, feed a linear read-out
    that starts at zero, so ``E = 0`` at initialisation.

    Args:
        key: PRNG key.
        image_shape: ``(height, width)``.
        channels: output channels of the three convolutions.
        activation: elementwise nonlinearity.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> net = ConvEnergy(key=jax.random.key(0))
        >>> float(net(jnp.ones(64)))
        0.0
    """

    convs: tuple[eqx.nn.Conv2d, ...]
    readout: eqx.nn.Linear
    image_shape: tuple[int, int] = eqx.field(static=True)
    dim: int = eqx.field(static=True)
    activation: Callable = eqx.field(static=True)

    def __init__(
        self,
        *,
        key: PRNGKeyArray,
        image_shape: tuple[int, int] = (8, 8),
        channels: Sequence[int] = (16, 32, 32),
        activation: Callable = jax.nn.silu,
    ):
        image_shape = _check_positive_ints("image_shape", image_shape)
        if len(image_shape) != 2:
            raise ValueError(f"image_shape must be (height, width); got {image_shape!r}.")
        channels = _check_positive_ints("channels", channels)
        if len(channels) != 3:
            raise ValueError(f"channels must hold three output widths; got {channels!r}.")
        keys = jax.random.split(key, 4)
        ins = (1, *channels[:-1])
        strides = (1, 2, 2)
        self.convs = tuple(
            eqx.nn.Conv2d(i, o, 3, stride=s, padding=1, key=k)
            for i, o, s, k in zip(ins, channels, strides, keys[:3], strict=True)
        )
        h, w = image_shape
        for _ in strides[1:]:
            h, w = (h + 1) // 2, (w + 1) // 2  # 3x3 conv, padding 1, stride 2
        self.readout = _zero_last(eqx.nn.Linear(channels[-1] * h * w, 1, key=keys[3]))
        self.image_shape = image_shape
        self.dim = image_shape[0] * image_shape[1]
        self.activation = activation

    def __call__(self, x: Float[Array, " dim"]) -> Float[Array, ""]:
        """Energy of one flat image ``x`` of shape ``(height * width,)``; returns a scalar."""
        h = jnp.reshape(x, (1, *self.image_shape))
        for conv in self.convs:
            h = self.activation(conv(h))
        return self.readout(jnp.ravel(h))[0]


class _DownBlock(eqx.Module):
    """conv3x3 -> Swish -> conv3x3, plus a 1x1 shortcut, Swish, then 2x2 average pooling."""

    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    shortcut: eqx.nn.Conv2d

    def __init__(self, c_in: int, c_out: int, *, key: PRNGKeyArray):
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(c_in, c_out, 3, padding=1, key=k1)
        self.conv2 = eqx.nn.Conv2d(c_out, c_out, 3, padding=1, key=k2)
        self.shortcut = eqx.nn.Conv2d(c_in, c_out, 1, key=k3)

    def __call__(self, h: Array) -> Array:
        out = self.conv2(jax.nn.silu(self.conv1(h))) + self.shortcut(h)
        out = jax.nn.silu(out)
        c, height, width = out.shape
        if height >= 2 and width >= 2:  # 2x2 average pooling (floor), as AvgPool2d(2)
            out = out[:, : height // 2 * 2, : width // 2 * 2]
            out = out.reshape(c, height // 2, 2, width // 2, 2).mean(axis=(2, 4))
        return out


class ResNetEnergy(eqx.Module):
    """The residual convolutional energy of Du & Mordatch 2019 for images, e.g. CIFAR-10's 3x32x32.

    ``x`` (flat, ``(C * H * W,)``, pixels in ``[0, 1]``) is reshaped to ``(C, H, W)``, centred to
    ``[-1, 1]``, and sent through a 3x3 convolution to ``width`` channels, three residual
    downsampling blocks (``width -> 2 width -> 4 width -> 8 width``; each conv3x3, Swish,
    conv3x3 plus a 1x1 shortcut, Swish, 2x2 average pooling) and a last convolution over the
    remaining spatial extent (4x4 for 32x32 images) to ``outputs`` channels, summed. That last
    layer starts at zero, so ``E = 0`` at initialisation. ``width=64, outputs=1`` on CIFAR-10 has
    4.83M parameters: the paper's "about 4.5M" (CoopFlow's ``EBM_res`` with ``n_f=128`` has ~17M;
    the paper's reduction is not stated, this one is reconstructed).

    Args:
        key: PRNG key.
        image_shape: ``(channels, height, width)``.
        width: channels of the first convolution (``n_f``).
        outputs: channels of the last convolution, summed into the energy.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> net = ResNetEnergy(key=jax.random.key(0), image_shape=(1, 8, 8), width=4)
        >>> float(net(jnp.ones(64)))
        0.0
    """

    first: eqx.nn.Conv2d
    blocks: tuple[_DownBlock, ...]
    last: eqx.nn.Conv2d
    image_shape: tuple[int, int, int] = eqx.field(static=True)
    dim: int = eqx.field(static=True)

    def __init__(
        self,
        *,
        key: PRNGKeyArray,
        image_shape: tuple[int, int, int] = (3, 32, 32),
        width: int = 64,
        outputs: int = 1,
    ):
        image_shape = _check_positive_ints("image_shape", image_shape)
        if len(image_shape) != 3:
            raise ValueError(f"image_shape must be (channels, height, width); got {image_shape!r}.")
        (width, outputs) = _check_positive_ints("width and outputs", (width, outputs))
        keys = jax.random.split(key, 5)
        c, h, w = image_shape
        self.first = eqx.nn.Conv2d(c, width, 3, padding=1, key=keys[0])
        chans = (width, 2 * width, 4 * width, 8 * width)
        self.blocks = tuple(
            _DownBlock(a, b, key=k) for a, b, k in zip(chans[:-1], chans[1:], keys[1:4], strict=True)
        )
        for _ in self.blocks:
            h, w = (h // 2 if h >= 2 and w >= 2 else h), (w // 2 if h >= 2 and w >= 2 else w)
        last = eqx.nn.Conv2d(chans[-1], outputs, (h, w), key=keys[4])
        self.last = eqx.tree_at(lambda m: (m.weight, m.bias), last, replace_fn=jnp.zeros_like)
        self.image_shape = image_shape
        self.dim = c * image_shape[1] * image_shape[2]

    def __call__(self, x: Float[Array, " dim"]) -> Float[Array, ""]:
        """Energy of one flat image ``x`` of shape ``(C * H * W,)``; returns a scalar."""
        h = 2.0 * jnp.reshape(x, self.image_shape) - 1.0
        h = jax.nn.silu(self.first(h))
        for block in self.blocks:
            h = block(h)
        return jnp.sum(self.last(h))
