"""The paper's metrics (Grenioux, Moulines, Gabrié 2023, Sec. 4 and App. C).

* **Zone weights** (Fig. 1, Table 3): the share of samples, or of a density's mass, in each mode
  zone of a :class:`~numpyro_ebm.datasets.Target`. A density is integrated on a regular 2-D grid
  ("manually summing the mass in each region", App. C.3); :class:`GridZoneWeights` does the same
  integral compiled once, to track a mode's weight during training.
* **Log-density error** (Table 1): the median over grid points of the squared difference of
  grid-normalised log-densities.
* **Mixing** (Table 2): the maximum over coordinates of the rank-normalised split R-hat of
  Vehtari et al. (2021), through ArviZ; and the bulk effective sample size.
* **Normalising constant** by importance sampling with a flow proposal, and from it a test
  log-likelihood (for any dimension, where grids are out of reach).

Wherever a log-density is expected, pass a callable ``(..., dim) -> (...)`` or an object with a
``log_density`` method of that signature (the trainer's ``EnergyModel``), or with a ``log_prob``
method (a :class:`~numpyro_ebm.datasets.Target`, a flowjax distribution). Log-densities may be
unnormalised; they must be JAX-traceable.

Example:
    >>> import jax
    >>> from numpyro_ebm import datasets
    >>> target = datasets.two_modes_target()
    >>> x = target.sample(jax.random.key(0), 3000)
    >>> [round(w, 1) for w in zone_weights(x, target).tolist()]
    [0.3, 0.7]
"""

from numpyro_ebm.diagnostics._args import _as_log_density  # noqa: F401  (used by plotting)
from numpyro_ebm.diagnostics.errors import median_squared_log_density_error, zone_weight_mses
from numpyro_ebm.diagnostics.grid import GridDensity, grid_log_density
from numpyro_ebm.diagnostics.importance import (
    ImportanceSample,
    importance_sample,
    importance_zone_weights,
    log_normalizer,
    test_log_likelihood,
)
from numpyro_ebm.diagnostics.mixing import max_rhat, min_ess
from numpyro_ebm.diagnostics.zones import GridZoneWeights, zone_frequencies, zone_weights

__all__ = [
    "GridDensity",
    "GridZoneWeights",
    "zone_frequencies",
    "grid_log_density",
    "zone_weights",
    "median_squared_log_density_error",
    "zone_weight_mses",
    "max_rhat",
    "min_ess",
    "log_normalizer",
    "test_log_likelihood",
    "ImportanceSample",
    "importance_sample",
    "importance_zone_weights",
]
