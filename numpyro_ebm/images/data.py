"""Image data: dequantisation, flips, the CIFAR-10 binary reader, a classifier and class balance."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from numpyro_ebm._compat import renamed_kwargs
from numpyro_ebm._validate import is_count

__all__ = [
    "dequantize",
    "random_flip",
    "load_cifar10",
    "CIFAR10_CLASSES",
    "CIFAR10_SHAPE",
    "fit_digit_classifier",
    "class_balance",
    "tile_images",
]

CIFAR10_SHAPE = (3, 32, 32)
_CIFAR10_RECORD = 1 + 3 * 32 * 32  # one label byte, then the channel-major pixels
_CIFAR10_FILES = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


# --- data ------------------------------------------------------------------------------------------


def dequantize(key: PRNGKeyArray, x: Int[ArrayLike, "*shape"], levels: int) -> Float[Array, "*shape"]:
    """Uniform dequantisation: ``(x + U) / levels`` with ``U ~ U[0, 1)``, in ``[0, 1)``.

    Integer pixels ``x`` in ``0 .. levels - 1`` become a continuous variable, so that a density
    model cannot put infinite density on the grid values. The paper's CIFAR-10 recipe
    ``(255 x + U) / 256`` is ``levels=256`` on the raw bytes; sklearn's digits have
    ``levels=17``.

    Args:
        key: PRNG key.
        x: integer pixel levels (any shape, any integer or float dtype holding integers).
        levels: number of levels (``256`` for 8-bit images).

    Returns:
        float32 array of ``x``'s shape, in ``[0, 1)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> y = dequantize(jax.random.key(0), jnp.array([0, 16]), 17)
        >>> bool((y >= 0).all() & (y < 1).all())
        True
    """
    if not is_count(levels, 2):
        raise ValueError(f"levels must be an integer >= 2 (256 for 8-bit images); got {levels!r}.")
    x = jnp.asarray(x)
    if x.size and not isinstance(x, jax.core.Tracer):  # value check only outside jit
        lo, hi = float(jnp.min(x)), float(jnp.max(x))
        if lo < 0 or hi > levels - 1:
            raise ValueError(
                f"pixel levels must lie in 0 .. {levels - 1}; got values in [{lo}, {hi}]. Pass the raw "
                "integer levels (e.g. uint8 bytes), not pixels already scaled to [0, 1]."
            )
    u = jax.random.uniform(key, x.shape, jnp.float32)
    # (x + U) / levels can round up to exactly 1 in float32 for x = levels - 1: keep it below 1.
    return jnp.minimum((x.astype(jnp.float32) + u) / levels, jnp.float32(1.0 - 2**-24))


def random_flip(
    key: PRNGKeyArray, images: Float[Array, "n ..."], *, image_shape: Sequence[int] | None = None
) -> Float[Array, "n ..."]:
    """Flip each image left-right with probability 1/2 (the paper's CIFAR-10 augmentation).

    Meant for natural images (CIFAR-10), whose classes are mirror-symmetric; do **not** use it
    on digits, where a mirrored 2, 3, 4, 7 or 9 is not a digit.

    Args:
        key: PRNG key.
        images: ``(n, ..., width)`` images, or ``(n, dim)`` flat images with ``image_shape``.
        image_shape: the shape of one image (``(height, width)`` or ``(channels, height,
            width)``) when ``images`` is flat.

    Returns:
        Array of the same shape as ``images``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> x = jnp.arange(4.0).reshape(1, 2, 2)
        >>> random_flip(jax.random.key(1), jnp.concatenate([x] * 8)).shape
        (8, 2, 2)
    """
    images = jnp.asarray(images)
    if images.ndim < 2:
        raise ValueError(f"images must have a leading batch axis, shape (n, ...); got {images.shape}.")
    shaped = images
    if image_shape is not None:
        image_shape = tuple(int(s) for s in image_shape)
        if int(np.prod(image_shape)) != int(np.prod(images.shape[1:])):
            raise ValueError(f"image_shape {image_shape} does not match images of shape {images.shape}.")
        shaped = jnp.reshape(images, (images.shape[0], *image_shape))
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0],))
    flip = jnp.reshape(flip, (-1,) + (1,) * (shaped.ndim - 1))
    out = jnp.where(flip, jnp.flip(shaped, axis=-1), shaped)
    return jnp.reshape(out, images.shape)


def _cifar10_dir(path: Path) -> Path:
    """Accept the ``cifar-10-batches-bin`` folder itself or the folder that holds it."""
    if not path.exists():
        raise FileNotFoundError(
            f"CIFAR-10 directory {str(path)!r} does not exist. Download the binary version "
            "(cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html), extract it, "
            "and pass the extracted 'cifar-10-batches-bin' folder."
        )
    if not path.is_dir():
        raise NotADirectoryError(f"{str(path)!r} is not a directory; pass the 'cifar-10-batches-bin' folder.")
    nested = path / "cifar-10-batches-bin"
    if (
        not (path / "test_batch.bin").exists()
        and not (path / "data_batch_1.bin").exists()
        and nested.is_dir()
    ):
        return nested
    return path


def load_cifar10(
    path: str | os.PathLike,
    *,
    split: str = "train",
    limit: int | None = None,
    flat: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Read a local copy of CIFAR-10 in its official binary format (numpy only; no download).

    The binary version holds ``data_batch_1.bin`` .. ``data_batch_5.bin`` (train, 10,000
    images each) and ``test_batch.bin``; each record is one label byte (0..9, see
    :data:`CIFAR10_CLASSES`) followed by 3072 pixel bytes, the 32x32 red, green then blue planes
    in row-major order.

    Args:
        path: the ``cifar-10-batches-bin`` folder (or the folder containing it).
        split: ``"train"`` (the five data batches, in order) or ``"test"``.
        limit: read only the first ``limit`` images (``None``: all).
        flat: return pixels as ``(n, 3072)`` instead of ``(n, 3, 32, 32)``.

    Returns:
        ``(images, labels)``: ``images`` uint8 of shape ``(n, 3, 32, 32)`` (or ``(n, 3072)``),
        ``labels`` int32 of shape ``(n,)``. Scale with :func:`dequantize` (``levels=256``).

    Raises:
        FileNotFoundError: the folder or one of the split's files is missing.
        ValueError: a file's size is not a multiple of 3073 bytes (truncated or not CIFAR-10),
            a label is not in 0..9, or a bad ``split``/``limit``.

    Example:
        >>> x, y = load_cifar10("data/cifar-10-batches-bin", split="test", limit=16)  # doctest: +SKIP
        >>> x.shape, y.shape  # doctest: +SKIP
        ((16, 3, 32, 32), (16,))
    """
    if split not in _CIFAR10_FILES:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")
    if limit is not None and not is_count(limit):
        raise ValueError(f"limit must be a positive integer or None; got {limit!r}.")
    folder = _cifar10_dir(Path(path))
    files = [folder / name for name in _CIFAR10_FILES[split]]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 {split} split incomplete in {str(folder)!r}: missing {missing}. Expected the "
            f"binary version's files {list(_CIFAR10_FILES[split])}."
        )
    chunks = []
    remaining = limit
    for file in files:
        size = file.stat().st_size
        if size == 0 or size % _CIFAR10_RECORD:
            raise ValueError(
                f"{str(file)!r} has {size} bytes, not a positive multiple of the {_CIFAR10_RECORD}-byte "
                f"CIFAR-10 record ({size // _CIFAR10_RECORD} whole records and {size % _CIFAR10_RECORD} "
                "bytes left): the file is truncated or not the binary version of CIFAR-10."
            )
        n = size // _CIFAR10_RECORD
        if remaining is not None:
            n = min(n, remaining)
        records = np.fromfile(file, dtype=np.uint8, count=n * _CIFAR10_RECORD).reshape(n, _CIFAR10_RECORD)
        chunks.append(records)
        if remaining is not None:
            remaining -= n
            if remaining == 0:
                break
    records = np.concatenate(chunks)
    labels = records[:, 0].astype(np.int32)
    if labels.size and labels.max() > 9:
        bad = int(np.flatnonzero(labels > 9)[0])
        raise ValueError(
            f"record {bad} of the CIFAR-10 {split} split has label {labels[bad]}, not in 0..9: the files "
            "are not the CIFAR-10 binary version (CIFAR-100 records have two label bytes)."
        )
    images = np.ascontiguousarray(records[:, 1:])
    if not flat:
        images = images.reshape(-1, *CIFAR10_SHAPE)
    return images, labels


# --- evaluation --------------------------------------------------------------------------------


class Classifier(Protocol):
    """What :func:`class_balance` needs: a fitted scikit-learn style classifier."""

    def predict(self, x: np.ndarray) -> np.ndarray: ...


def fit_digit_classifier(x: Float[ArrayLike, "n 64"], labels: Int[ArrayLike, " n"], *, seed: int = 0):
    """A small scikit-learn classifier for 8x8 digits in pixel space (to label EBM samples).

    Multinomial logistic regression on the 64 pixels, fitted on ``(x, labels)`` (use the
    dequantised pixels, the EBM's data). About 97 % accuracy on held-out digits.

    Args:
        x: pixels, ``(n, 64)`` in ``[0, 1]``.
        labels: integer classes, ``(n,)``.
        seed: random state of the solver.

    Returns:
        A fitted ``sklearn.linear_model.LogisticRegression``.

    Example:
        >>> from numpyro_ebm.datasets import digits
        >>> x, labels = digits()
        >>> clf = fit_digit_classifier(x, labels)
        >>> bool(clf.score(x, labels) > 0.95)
        True
    """
    from sklearn.linear_model import LogisticRegression  # lazy: importing scikit-learn takes ~1 s
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    x, labels = np.asarray(x, np.float64), np.asarray(labels)
    if x.ndim != 2 or labels.shape != (x.shape[0],):
        raise ValueError(
            f"need x of shape (n, dim) and labels of shape (n,); got {x.shape} and {labels.shape}."
        )
    # One BLAS thread: the problem is tiny, and beside JAX's threads a multi-threaded BLAS can be
    # 100x slower (0.1 s vs 9 s on a busy 2-core machine).
    with threadpool_limits(1):
        return LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(x, labels)


@renamed_kwargs(n_classes="num_classes")
def class_balance(
    samples: Float[ArrayLike, "n dim"],
    classifier: Classifier,
    *,
    num_classes: int = 10,
    clip: tuple[float, float] | None = (0.0, 1.0),
) -> np.ndarray:
    """Share of ``samples`` that ``classifier`` assigns to each class: the images' mode weights.

    The image analogue of :func:`numpyro_ebm.diagnostics.zone_weights`: the classifier's decision
    regions are the zones. Compare with the same function on the data (or with the label
    frequencies). Non-finite samples are dropped.

    Args:
        samples: points, ``(n, dim)`` (e.g. EBM negatives or chains in pixel space).
        classifier: anything with ``predict(x (n, dim)) -> (n,)`` integer labels, e.g.
            :func:`fit_digit_classifier`.
        num_classes: number of classes (labels must lie in ``0 .. num_classes - 1``).
        clip: clip pixels to this range before classifying (samples of an image flow can lie
            slightly outside ``[0, 1]``); ``None`` to leave them.

    Returns:
        float64 array ``(num_classes,)`` summing to 1.

    Example:
        >>> from numpyro_ebm.datasets import digits
        >>> x, labels = digits()
        >>> freq = class_balance(x, fit_digit_classifier(x, labels))
        >>> freq.shape, round(float(freq.sum()), 6)
        ((10,), 1.0)
    """
    x = np.asarray(samples, np.float64)
    if x.ndim != 2:
        raise ValueError(f"samples must have shape (n, dim); got {x.shape}.")
    x = x[np.all(np.isfinite(x), axis=1)]
    if x.shape[0] == 0:
        raise ValueError("no finite sample to classify.")
    if clip is not None:
        x = np.clip(x, *clip)
    predicted = np.asarray(classifier.predict(x)).astype(np.int64)
    if predicted.min() < 0 or predicted.max() >= num_classes:
        raise ValueError(f"the classifier returned labels outside 0..{num_classes - 1}; set num_classes.")
    return np.bincount(predicted, minlength=num_classes) / predicted.size


def tile_images(
    images: Float[ArrayLike, "n dim"],
    image_shape: Sequence[int] = (8, 8),
    *,
    ncols: int = 8,
    pad: int = 1,
    pad_value: float = 1.0,
) -> np.ndarray:
    """Arrange flat single-channel images in a grid, ready for ``plt.imshow(grid, cmap=...)``.

    Args:
        images: ``(n, height * width)`` flat images (``(n, channels * height * width)``,
            channel-major as CIFAR-10, with a 3-element ``image_shape``).
        image_shape: ``(height, width)``, or ``(channels, height, width)`` for colour images.
        ncols: images per row.
        pad: pixels between images.
        pad_value: value of the padding.

    Returns:
        A numpy array of shape ``(rows * (height + pad) - pad, ncols * (width + pad) - pad)``,
        with a last axis of ``channels`` for colour images (ready for ``imshow``).

    Example:
        >>> tile_images(np.zeros((10, 64)), ncols=5).shape
        (17, 44)
    """
    x = np.asarray(images, np.float64)
    shape = tuple(int(s) for s in image_shape)
    c, (h, w) = (shape[0] if len(shape) == 3 and shape[0] > 1 else 0), shape[-2:]  # 1 channel: grey
    size = max(c, 1) * h * w
    if x.ndim != 2 or x.shape[1] != size:
        raise ValueError(f"images must have shape (n, {size}) for image_shape {shape}; got {x.shape}.")
    n = x.shape[0]
    ncols = max(1, min(ncols, n))
    rows = -(-n // ncols)
    extra = (c,) if c else ()
    grid = np.full((rows * (h + pad) - pad, ncols * (w + pad) - pad, *extra), pad_value, np.float64)
    tiles = x.reshape(n, c, h, w).transpose(0, 2, 3, 1) if c else x.reshape(n, h, w)
    for i, image in enumerate(tiles):
        r, c = divmod(i, ncols)
        grid[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = image
    return grid
