"""The one importance sampler: flow proposals, log-weights, log Z, ESS, and what is built on them."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from numpyro_ebm._keys import as_typed_key
from numpyro_ebm._validate import positive_int
from numpyro_ebm.diagnostics._args import (
    LogDensityFn,
    _as_log_density,
    _check_samples,
    _resolve_zones,
    _zone_indices,
)

__all__ = [
    "ImportanceSample",
    "importance_sample",
    "importance_zone_weights",
    "log_normalizer",
    "test_log_likelihood",
]


# --- normalising constant and test log-likelihood ----------------------------------------------


class ImportanceSample(NamedTuple):
    """Draws of a flow proposal ``q`` with their importance log-weights ``log pi - log q``.

    Attributes:
        points: the proposals, shape ``(n, dim)``.
        log_weights: ``log pi(x) - log q(x)``, shape ``(n,)``; ``-inf`` where not finite (a NaN
            energy, or a proposal with ``log q = -inf``), which counts as zero weight.
    """

    points: Float[Array, "n dim"]
    log_weights: Float[Array, " n"]

    @property
    def log_z(self) -> Float[Array, ""]:
        """``log mean w``: the estimate of ``log int pi``; ``-inf`` if every weight is zero."""
        return logsumexp(self.log_weights) - math.log(self.log_weights.shape[0])

    @property
    def ess(self) -> Float[Array, ""]:
        """``(sum w)^2 / sum w^2``, between 1 and ``n`` (0 if every weight is zero)."""
        lse = logsumexp(self.log_weights)
        return jnp.where(jnp.isfinite(lse), jnp.exp(2 * lse - logsumexp(2 * self.log_weights)), 0.0)

    @property
    def normalized_weights(self) -> Float[Array, " n"]:
        """``w / sum w``, shape ``(n,)``: self-normalised importance weights."""
        return jax.nn.softmax(self.log_weights)


def _log_weights(fn: LogDensityFn, flow: Any, key: PRNGKeyArray, n: int) -> tuple[Array, Array]:
    x, log_q = flow.sample_and_log_prob(key, (n,))
    log_pi = fn(x)
    if log_pi.shape != (n,):
        raise ValueError(
            f"the log-density must map points of shape (n, dim) to (n,); on flow samples of "
            f"shape {x.shape} it returned shape {log_pi.shape}."
        )
    log_w = log_pi - log_q
    # A non-finite weight (NaN energy, or a flow sample with log q = -inf) counts as zero.
    return x, jnp.where(jnp.isfinite(log_w), log_w, -jnp.inf)


def importance_sample(
    log_density_or_ebm: Any, flow: Any, key: PRNGKeyArray, n: int, *, batch_size: int | None = None
) -> ImportanceSample:
    """Draw ``n`` proposals from ``flow`` and weight them by ``pi / q``: the one importance sampler.

    Args:
        log_density_or_ebm: unnormalised ``log pi``, a callable ``(..., dim) -> (...)`` or an
            object with ``log_density`` (an EBM) or ``log_prob``.
        flow: the proposal, a flowjax distribution with ``sample_and_log_prob(key, (n,))``.
        key: PRNG key.
        n: number of proposals.
        batch_size: draw and evaluate the proposals this many at a time (``lax.map``), so
            memory stays bounded; all at once when ``None``. Changes the random stream.

    Returns:
        An :class:`ImportanceSample`, with ``log_z``, ``ess`` and ``normalized_weights``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flowjax.distributions import Normal
        >>> q = Normal(jnp.zeros(2), jnp.ones(2))
        >>> s = importance_sample(lambda x: q.log_prob(x) + 1.5, q, jax.random.key(0), 100)
        >>> s.points.shape, round(float(s.log_z), 4)
        ((100, 2), 1.5)
    """
    fn = _as_log_density(log_density_or_ebm, "importance_sample")
    positive_int(n, "n")
    if batch_size is not None:
        positive_int(batch_size, "batch_size")
    if not callable(getattr(flow, "sample_and_log_prob", None)):
        raise TypeError(
            f"flow must be a flowjax distribution with sample_and_log_prob(key, (n,)); got "
            f"{type(flow).__name__}."
        )
    key, batch_size = as_typed_key(key), None if batch_size is None else int(batch_size)
    return _importance_sample(fn, flow, key, int(n), batch_size)


# One compiled program (arrays traced, the function and sizes static); a bound method of an
# equinox module, such as ebm.log_density, is a pytree, so its parameters are traced too.
@eqx.filter_jit
def _importance_sample(fn, flow, key, n, batch_size):
    if batch_size is None or batch_size >= n:
        return ImportanceSample(*_log_weights(fn, flow, key, n))
    n_chunks = -(-n // batch_size)
    x, log_w = jax.lax.map(lambda k: _log_weights(fn, flow, k, batch_size), jax.random.split(key, n_chunks))
    return ImportanceSample(x.reshape(-1, x.shape[-1])[:n], log_w.reshape(-1)[:n])


def importance_zone_weights(
    log_density_or_ebm: Any,
    flow: Any,
    zones: Any,
    key: PRNGKeyArray,
    n: int,
    *,
    batch_size: int | None = None,
) -> tuple[Float[Array, " num_zones"], Float[Array, ""]]:
    """Zone weights of ``pi`` by self-normalised importance sampling (any dimension), and the ESS.

    Args:
        log_density_or_ebm: as in :func:`importance_sample`.
        flow: the proposal, as in :func:`importance_sample`.
        zones: a Target, or a zone function with ``num_zones``.
        key: PRNG key.
        n: number of proposals.
        batch_size: as in :func:`importance_sample`.

    Returns:
        ``(weights, ess)``: weights of shape ``(num_zones,)`` summing to 1, and the ESS behind them.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flowjax.distributions import Normal
        >>> from numpyro_ebm import datasets
        >>> target = datasets.two_modes_target()
        >>> q = Normal(jnp.zeros(2), 4.0 * jnp.ones(2))
        >>> w, ess = importance_zone_weights(target, q, target, jax.random.key(0), 20000)
        >>> [round(v, 1) for v in w.tolist()]
        [0.3, 0.7]
    """
    zone_fn, num_zones, _ = _resolve_zones(zones, None)
    s = importance_sample(log_density_or_ebm, flow, key, n, batch_size=batch_size)
    weights = jax.ops.segment_sum(
        s.normalized_weights, _zone_indices(zone_fn, s.points, num_zones), num_zones
    )
    return weights, s.ess


def log_normalizer(
    log_density_or_ebm: Any,
    flow: Any,
    key: PRNGKeyArray,
    n: int,
    *,
    batch_size: int | None = None,
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """Importance-sampling estimate of ``log Z = log int exp(log pi(x)) dx``, proposal = flow.

    With ``x_i ~ q`` and ``w_i = pi(x_i) / q(x_i)``: ``log Z = logsumexp(log w) - log n`` and
    ``ESS = (sum w)^2 / sum w^2``, both computed in logs. The ESS (between 1 and ``n``) says
    how far to trust ``log Z``: the estimate's standard error is roughly
    ``sqrt((n / ESS - 1) / n)``. Non-finite weights count as zero weight.

    Args:
        log_density_or_ebm: unnormalised ``log pi``, as in :func:`importance_sample`.
        flow: the proposal, as in :func:`importance_sample`.
        key: PRNG key.
        n: number of proposals.
        batch_size: as in :func:`importance_sample`.

    Returns:
        ``(log_Z, ess)``, two 0-d arrays. ``log_Z`` is ``-inf`` and ``ess`` 0 when every
        weight is zero.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flowjax.distributions import Normal
        >>> q = Normal(jnp.zeros(2), jnp.ones(2))
        >>> log_z, ess = log_normalizer(lambda x: q.log_prob(x) + 1.5, q, jax.random.key(0), 1000)
        >>> round(float(log_z), 4), round(float(ess))
        (1.5, 1000)
    """
    s = importance_sample(log_density_or_ebm, flow, key, n, batch_size=batch_size)
    return s.log_z, s.ess


def test_log_likelihood(
    log_density_or_ebm: Any,
    data: Float[ArrayLike, "n dim"],
    flow: Any,
    key: PRNGKeyArray,
    n: int,
    *,
    batch_size: int | None = None,
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """Mean normalised log-likelihood of held-out ``data``: ``mean log pi(data) - log Z``.

    ``log Z`` comes from :func:`log_normalizer` with the flow as proposal (``n`` draws).

    Args:
        log_density_or_ebm: unnormalised log-density or EBM, as in :func:`log_normalizer`.
        data: test points of shape ``(m, dim)``, all finite.
        flow: proposal for ``log Z``, a flowjax distribution.
        key: PRNG key.
        n: number of proposals for ``log Z``.
        batch_size: as in :func:`log_normalizer`.

    Returns:
        ``(value, ess)``: the test log-likelihood per point and the importance sampling ESS
        behind its ``log Z`` (0-d arrays).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flowjax.distributions import Normal
        >>> q = Normal(jnp.zeros(2), jnp.ones(2))
        >>> ll, _ = test_log_likelihood(lambda x: q.log_prob(x) + 7.0, jnp.zeros((1, 2)), q,
        ...                             jax.random.key(0), 100)
        >>> round(float(ll), 4)  # log N(0; 0, I_2) = -log(2 pi)
        -1.8379
    """
    fn = _as_log_density(log_density_or_ebm, "test_log_likelihood")
    data = _check_samples(data, "test_log_likelihood")
    log_z, ess = log_normalizer(fn, flow, key, n, batch_size=batch_size)
    return jnp.mean(fn(data)) - log_z, ess


# Not a test: keep pytest from collecting it when a test module imports it by name.
test_log_likelihood.__test__ = False
