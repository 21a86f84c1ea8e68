"""A posterior with known mode weights: the label-switched K = 3 Gaussian mixture (a NumPyro model).

With an exchangeable prior (Dirichlet weights, unordered means, a common scale) every relabelling
of the components is a mode of the posterior, so the ``3! = 6`` labellings hold mass ``1/6``
each, whatever the data. On :data:`DATA` (three clusters of 15 points, 4 apart) the labellings
are about 17 posterior standard deviations apart: a chain that stays in its first mode reports
one labelling, a sampler that mixes reports ``1/6`` each. :func:`labelling` says which
labelling a draw of ``mu`` is in.

Example:
    >>> import jax
    >>> from numpyro.infer import Predictive
    >>> mu = Predictive(model, num_samples=4)(jax.random.key(0), DATA)["mu"]
    >>> labelling(mu).shape, len(LABELLINGS)
    ((4,), 6)
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jaxtyping import Array, ArrayLike, Float, Int

__all__ = ["model", "DATA", "LABELLINGS", "labelling"]

# Three well separated clusters of 15 points.
DATA: Float[Array, " 45"] = jnp.concatenate([jnp.linspace(-1.0, 1.0, 15) + c for c in (-4.0, 0.0, 4.0)])
# The orders of the three component means, one per mode; mode k's mass is 1/6.
LABELLINGS: tuple[tuple[int, ...], ...] = tuple(itertools.permutations(range(3)))


def model(y: Float[ArrayLike, " n"]) -> None:
    """K = 3 Gaussian mixture with an exchangeable prior on 1-D observations ``y`` of shape ``(n,)``:
    sites ``w`` (3,), ``mu`` (3,), ``sigma`` () and the observed ``y``."""
    w = numpyro.sample("w", dist.Dirichlet(jnp.ones(3)))
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0).expand([3]))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
    numpyro.sample("y", dist.MixtureSameFamily(dist.Categorical(w), dist.Normal(mu, sigma)), obs=y)


def labelling(mu: Float[ArrayLike, "*batch 3"]) -> Int[np.ndarray, "*batch"]:
    """Index in :data:`LABELLINGS` of the order of the component means, for ``mu`` of shape ``(..., 3)``.

    Example:
        >>> labelling(np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]])).tolist()
        [0, 5]
    """
    order = np.argsort(np.asarray(mu), axis=-1)
    table = {tuple(p): i for i, p in enumerate(LABELLINGS)}
    return np.apply_along_axis(lambda row: table[tuple(row)], -1, order)
