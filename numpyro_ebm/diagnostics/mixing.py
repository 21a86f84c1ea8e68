"""Mixing of chains (Table 2): rank-normalised split R-hat and bulk ESS, through ArviZ."""

from __future__ import annotations

import warnings

import numpy as np
from jaxtyping import ArrayLike, Float

from numpyro_ebm.diagnostics._args import _check_samples


def _chains_dataset(chains: ArrayLike, who: str):
    import arviz as az  # lazy: importing ArviZ takes ~1 s

    chains = _check_samples(chains, who, ndim=3)
    num_chains, draws, _ = chains.shape
    if num_chains < 2 or draws < 4:
        raise ValueError(
            f"{who} needs at least 2 chains of 4 draws (split R-hat compares chain halves); "
            f"got {num_chains} chains of {draws} draws."
        )
    return az, az.convert_to_dataset(np.asarray(chains, dtype=np.float64))


def max_rhat(chains: Float[ArrayLike, "chains draws dim"]) -> float:
    """Maximum over coordinates of the rank-normalised split R-hat (Vehtari et al. 2021).

    The paper's Table 2 reports it on 128 negative chains; values near 1 (below ~1.01) are
    necessary for convergence. Computed by ``arviz.rhat(..., method="rank")``, which is itself
    the larger of the bulk and the folded-tail R-hat.

    Args:
        chains: draws of shape ``(chains, draws, dim)``, ``chains >= 2``, ``draws >= 4``.

    Returns:
        The maximum R-hat over the ``dim`` coordinates (NaN if a coordinate never moves).

    Example:
        >>> import jax
        >>> chains = jax.random.normal(jax.random.key(0), (4, 500, 3))
        >>> max_rhat(chains) < 1.01
        True
    """
    az, dataset = _chains_dataset(chains, "max_rhat")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 for constant coordinates -> NaN
        return float(np.max(az.rhat(dataset, method="rank")["x"].values))


def min_ess(chains: Float[ArrayLike, "chains draws dim"]) -> float:
    """Minimum over coordinates of the bulk effective sample size (ArviZ, Vehtari et al. 2021).

    Args:
        chains: draws of shape ``(chains, draws, dim)``, ``chains >= 2``, ``draws >= 4``.

    Returns:
        The smallest bulk ESS over the coordinates; about ``chains * draws`` for iid draws.

    Example:
        >>> import jax
        >>> chains = jax.random.normal(jax.random.key(0), (4, 500, 3))
        >>> min_ess(chains) > 1500
        True
    """
    az, dataset = _chains_dataset(chains, "min_ess")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.min(az.ess(dataset, method="bulk")["x"].values))


# --- normalising constant and test log-likelihood ----------------------------------------------
