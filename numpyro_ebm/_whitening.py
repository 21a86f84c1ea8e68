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


ICA_AXES = 8  # principal axes that FastICA may turn among (see principal_axes)


def principal_axes(samples: Float[Array, "n dim"], previous=None) -> tuple[Array, Array, Array, Array]:
    """Mean, principal axes ``U``, ``sqrt(lambda)`` and an ICA rotation ``W`` of the samples.

    The variances are :func:`held_out_eigh`'s: the plain sample covariance of ``n``
    points in ``dim`` dimensions spreads the variances of equal-variance directions over
    ``(1 +- sqrt(dim / n))**2`` (Marchenko-Pastur), and a flow whitened by it and fitted to the
    same points learns that spread as if it were real: at ``dim = 64``, ``n = 2048`` its
    held-out NLL was 2.2 nats above the target's entropy (IMH acceptance 0.12), against 1.35
    (0.22) with held-out variances (docs/benchmarks.md). Principal axes
    come in decreasing order of variance; eigenvalues are floored at ``1e-6`` of the largest.

    Args:
        samples: points, shape ``(n, dim)``.
        previous: the ``(rotation, unmixing)`` of a :class:`Whitening` being refreshed: the
            leading output coordinates then keep their directions and signs (ICA alone returns
            them in any order and sign), so that a flow's splines stay on the coordinates they
            were fitted to.

    Returns:
        ``(mean, U, sqrt(lambda), W)`` of shapes ``(dim,)``, ``(dim, dim)``, ``(dim,)``,
        ``(dim, dim)``, as :class:`Whitening` takes them; where not finite, ``(0, I, 1, I)``.
    """
    dim = samples.shape[1]
    mean = jnp.mean(samples, axis=0)
    eigval, eigvec = held_out_eigh(samples)
    eigval = jnp.maximum(eigval, 1e-6 * jnp.maximum(eigval[0], 1e-12))
    scale = jnp.sqrt(eigval)
    # ICA turns only the leading ICA_AXES principal axes (mode separations add variance, so the
    # directions between modes lead): a row free to turn among all dim axes picks up sampling
    # noise from each, ~sqrt(dim / n) in all, and at d = 64 that blurred the narrow whitened
    # modes by a third. At most 4,096 evenly spread rows: each iteration costs rows * k**2.
    k = min(dim, ICA_AXES)
    stride = -(-samples.shape[0] // 4096)
    lead = _fast_ica((((samples[::stride] - mean) @ eigvec) / scale)[:, :k])
    if previous is not None:
        lead = _follow(lead, previous, eigvec)
    unmixing = jnp.eye(dim, dtype=eigvec.dtype).at[:k, :k].set(lead)
    ok = jnp.all(jnp.isfinite(eigvec)) & jnp.all(jnp.isfinite(unmixing)) & jnp.all(jnp.isfinite(mean))
    eye = jnp.eye(dim, dtype=eigvec.dtype)
    return (
        jnp.where(ok, mean, 0.0),
        jnp.where(ok, eigvec, eye),
        jnp.where(ok, scale, 1.0),
        jnp.where(ok, unmixing, eye),
    )


def held_out_eigh(samples: Float[Array, "n dim"]) -> tuple[Array, Array]:
    """Principal axes of the samples' covariance, with variances measured on held-out points.

    Returns ``(variances, axes)``, shapes ``(dim,)`` and ``(dim, dim)``, in decreasing order:
    the axes are the eigenvectors of the whole sample's covariance; the variances are
    cross-fitted. The samples are split into their first and second halves ``A`` and ``B``
    (adjacent rows, e.g. a resampled particle's copies, stay together); the variances of ``B``
    along ``A``'s eigenvectors, ``diag(V_A^T S_B V_A)``, and those of ``A`` along ``B``'s are
    averaged rank by rank and sorted (Abadir, Distaso and Zikes 2014; Lam 2016). Directions of
    equal variance then get nearly equal variances instead of the in-sample eigenvalues'
    Marchenko-Pastur spread ``(1 +- sqrt(dim / n))**2``, which a flow fitted to the same points
    would learn as if it were real. (Averaging the two halves' covariances instead mixes their
    two estimates of a large-variance direction into the small ones.) Every covariance is
    shrunk toward its diagonal with weight ``dim / (n + dim)`` (``n`` its points), so that it
    has full rank.

    Example:
        >>> import jax
        >>> variances, axes = held_out_eigh(jax.random.normal(jax.random.key(0), (512, 64)))
        >>> bool(variances.min() > 0.8 and variances.max() < 1.2)  # in-sample: about 0.5 and 1.8
        True
    """
    n, dim = samples.shape
    centred = samples - jnp.mean(samples, axis=0)
    eigval, eigvec = _eigh_desc(_shrunk_cov(centred, dim))
    half = n // 2
    if half < 2:  # too few points to split: the in-sample eigenvalues
        return eigval, eigvec
    cov_a, cov_b = _shrunk_cov(centred[:half], dim), _shrunk_cov(centred[half:], dim)

    def held_out(cov_axes, cov_other):
        vec = _eigh_desc(cov_axes)[1]
        return jnp.einsum("ij,ik,kj->j", vec, cov_other, vec)

    variances = 0.5 * (held_out(cov_a, cov_b) + held_out(cov_b, cov_a))
    return jnp.sort(variances)[::-1], eigvec


def _eigh_desc(cov):
    eigval, eigvec = jnp.linalg.eigh(cov)
    return eigval[::-1], eigvec[:, ::-1]


def _shrunk_cov(centred: Float[Array, "n dim"], dim: int) -> Float[Array, "dim dim"]:
    """``(1 - s) S + s diag(S)``, ``S = centred^T centred / (n - 1)``, ``s = dim / (n + dim)``."""
    n = centred.shape[0]
    cov = centred.T @ centred / max(n - 1, 1)
    shrink = dim / (n + dim)
    return (1 - shrink) * cov + shrink * jnp.diag(jnp.diag(cov))


def _follow(lead: Array, previous, eigvec: Array) -> Array:
    """Reorder and re-sign the rows of the new ICA rotation ``lead`` (``k x k``) to follow the
    previous whitening's leading coordinates, carried into the new axes (``W_prev U_prev^T
    U_new``): greedily, the pair (previous coordinate, new row) of largest ``|cos|`` among
    those left is matched first, with its sign. ICA returns its components in no set order or
    sign."""
    k = lead.shape[0]
    rotation, unmixing = previous
    rotation = rotation / jnp.linalg.norm(rotation, axis=0, keepdims=True)  # as Whitening uses them
    unmixing = unmixing / jnp.linalg.norm(unmixing, axis=1, keepdims=True)
    similarity = (unmixing[:k, :k] @ (rotation[:, :k].T @ eigvec[:, :k])) @ lead.T  # (old, new)

    def claim(_, state):  # the closest pair left first: noise rows must not take a mode's row
        order, old_done, new_taken = state
        free = jnp.where(old_done[:, None] | new_taken[None, :], -1.0, jnp.abs(similarity))
        i, j = jnp.unravel_index(jnp.argmax(free), free.shape)
        return order.at[i].set(j), old_done.at[i].set(True), new_taken.at[j].set(True)

    start = (jnp.zeros(k, jnp.int32), jnp.zeros(k, bool), jnp.zeros(k, bool))
    order, _, _ = jax.lax.fori_loop(0, k, claim, start)
    sign = jnp.where(similarity[jnp.arange(k), order] < 0, -1.0, 1.0).astype(lead.dtype)
    followed = lead[order] * sign[:, None]
    return jnp.where(jnp.all(jnp.isfinite(followed)), followed, lead)


def _decorrelate(w: Array) -> Array:
    """``(W W^T)^(-1/2) W``: the orthogonal matrix nearest ``W``."""
    eigval, eigvec = jnp.linalg.eigh(w @ w.T)
    return (eigvec / jnp.sqrt(jnp.maximum(eigval, 1e-12))) @ eigvec.T @ w


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

    def step(w, _):
        g = jnp.tanh(z @ w.T)
        w = (g.T @ z) / n - jnp.mean(1 - g**2, axis=0)[:, None] * w
        return _decorrelate(w), None

    w, _ = jax.lax.scan(step, jnp.eye(z.shape[1], dtype=z.dtype), None, length=num_iterations)
    return w
