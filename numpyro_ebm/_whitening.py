"""Full (PCA) whitening as the last layer of a flow: ``x = loc + rotation @ (scale * u)``.

A per-coordinate affine standardisation leaves a mixture whose modes differ along a few directions
that are not coordinate axes (Table 2's four-mode target: every coordinate of a half flips sign
together) for the coupling layers to untangle, and in high dimension their conditioners overfit
before they do. Rotating to the principal axes first puts such directions on single coordinates,
where an elementwise spline can shape them with a handful of parameters.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from flowjax.bijections import AbstractBijection
from jaxtyping import Array, Float


class Whitening(AbstractBijection):
    """``x = loc + rotation @ (scale * (unmixing.T @ u))``, set by :func:`numpyro_ebm.flows.standardize`.

    Not trained: gradients stop at all three arrays (a fit to a ring buffer of a few thousand
    points would overfit the ``dim**2`` entries of the rotation; ``docs/benchmarks.md``), so an
    optimiser leaves them alone or, with weight decay, shrinks each by a common factor. The
    columns of ``rotation`` and rows of ``unmixing`` are renormalised at use, which keeps them
    orthogonal under such a
    shrinkage, so ``sample`` and ``log_prob`` stay consistent (``log det = sum log scale``) and a
    Metropolis correction stays exact. Orthogonality also spares a linear solve: on CPU, XLA's
    batched triangular solve made a fit step 2-4x slower than the whole coupling flow.

    Attributes:
        loc: shape ``(dim,)``.
        rotation: shape ``(dim, dim)``, orthogonal columns (the principal axes).
        scale: shape ``(dim,)``, positive (the standard deviations along them).
        unmixing: shape ``(dim, dim)``, orthogonal: the ICA rotation of the whitened coordinates.

    Example:
        >>> import jax.numpy as jnp
        >>> w = Whitening(jnp.zeros(2), jnp.array([[0.0, 1.0], [1.0, 0.0]]), jnp.array([2.0, 1.0]),
        ...               jnp.eye(2))
        >>> w.transform_and_log_det(jnp.array([1.0, 1.0]))
        (Array([1., 2.], dtype=float32), Array(0.6931472, dtype=float32))
    """

    shape: tuple[int, ...]
    cond_shape: None = None
    loc: Array = eqx.field(default=None)
    rotation: Array = eqx.field(default=None)
    scale: Array = eqx.field(default=None)
    unmixing: Array = eqx.field(default=None)

    def __init__(self, loc, rotation, scale, unmixing):
        self.loc, self.rotation = jnp.asarray(loc), jnp.asarray(rotation)
        self.scale, self.unmixing = jnp.asarray(scale), jnp.asarray(unmixing)
        self.shape = self.loc.shape

    def _frozen(self):
        frozen = jax.lax.stop_gradient((self.loc, self.rotation, self.scale, self.unmixing))
        loc, rotation, scale, unmixing = frozen
        unit = lambda m, axis: m / jnp.linalg.norm(m, axis=axis, keepdims=True)
        return loc, unit(rotation, 0), scale, unit(unmixing, 1)

    def transform_and_log_det(self, x, condition=None):
        loc, rotation, scale, unmixing = self._frozen()
        return loc + rotation @ (scale * (unmixing.T @ x)), jnp.sum(jnp.log(scale))

    def inverse_and_log_det(self, y, condition=None):
        loc, rotation, scale, unmixing = self._frozen()
        return unmixing @ ((rotation.T @ (y - loc)) / scale), -jnp.sum(jnp.log(scale))


def principal_axes(samples: Float[Array, "n dim"]) -> tuple[Array, Array, Array, Array]:
    """Mean, principal axes ``U``, ``sqrt(lambda)`` and an ICA rotation ``W`` of the samples.

    The covariance is shrunk toward its diagonal first.

    The sample covariance of ``n`` points in ``dim`` dimensions is noisy (singular for
    ``n <= dim``); it is shrunk toward its diagonal with weight ``dim / (n + dim)``, which keeps
    the axes well defined and costs little once ``n >> dim``. Principal axes come in decreasing
    order of variance; eigenvalues are floored at ``1e-6`` of the largest.

    Returns:
        ``(mean, U, sqrt(lambda), W)`` of shapes ``(dim,)``, ``(dim, dim)``, ``(dim,)``,
        ``(dim, dim)``, as :class:`Whitening` takes them; where not finite, ``(0, I, 1, I)``.
    """
    n, dim = samples.shape
    mean = jnp.mean(samples, axis=0)
    cov = jnp.cov(samples, rowvar=False).reshape(dim, dim)
    shrink = dim / (n + dim)
    cov = (1 - shrink) * cov + shrink * jnp.diag(jnp.diag(cov))
    eigval, eigvec = jnp.linalg.eigh(cov)
    eigval, eigvec = eigval[::-1], eigvec[:, ::-1]
    eigval = jnp.maximum(eigval, 1e-6 * jnp.maximum(eigval[0], 1e-12))
    scale = jnp.sqrt(eigval)
    unmixing = _fast_ica(((samples - mean) @ eigvec) / scale)
    ok = jnp.all(jnp.isfinite(eigvec)) & jnp.all(jnp.isfinite(unmixing)) & jnp.all(jnp.isfinite(mean))
    eye = jnp.eye(dim, dtype=eigvec.dtype)
    return (
        jnp.where(ok, mean, 0.0),
        jnp.where(ok, eigvec, eye),
        jnp.where(ok, scale, 1.0),
        jnp.where(ok, unmixing, eye),
    )


def _fast_ica(z: Float[Array, "n dim"], num_iterations: int = 50) -> Array:
    """Symmetric FastICA (Hyvarinen 1999, ``tanh`` contrast) on whitened ``z``: an orthogonal ``W``.

    Principal axes are only defined up to a rotation among directions of equal variance, and a
    mixture's mode directions often have equal variance (Table 2's two mode axes do): PCA alone
    may return them rotated by any angle, and a marginal spline cannot shape a rotated grid of
    modes. ICA turns the whitened coordinates to the most non-Gaussian directions, so that
    ``W @ z`` puts each independent bimodal direction on one coordinate. Starts from the
    identity (the principal axes) and runs a fixed number of iterations (jit-friendly).
    """
    n = z.shape[0]

    def decorrelate(w):  # (W W^T)^(-1/2) W: the nearest orthogonal matrix
        eigval, eigvec = jnp.linalg.eigh(w @ w.T)
        return (eigvec / jnp.sqrt(jnp.maximum(eigval, 1e-12))) @ eigvec.T @ w

    def step(w, _):
        g = jnp.tanh(z @ w.T)
        w = (g.T @ z) / n - jnp.mean(1 - g**2, axis=0)[:, None] * w
        return decorrelate(w), None

    w, _ = jax.lax.scan(step, jnp.eye(z.shape[1], dtype=z.dtype), None, length=num_iterations)
    return w
