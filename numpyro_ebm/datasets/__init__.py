"""The paper's ground-truth targets and data sets (Grenioux, Moulines, Gabrié 2023, Sec. 4).

A :class:`Target` bundles what the experiments and the metrics need about a known distribution:
an exact ``log_prob``, a ``sample`` method, a partition of space into mode *zones*
(``zones(x)`` gives an integer per point), the exact probability ``weights`` of those zones, and
``bounds`` for 2-D grid integration. The distribution inside is any module with ``log_prob``,
``sample`` and ``dim``: an isotropic :class:`GaussianMixture` for most targets, a
:class:`RadialMixture` for the rings.

Everything is generated; nothing is downloaded (``digits`` ships with scikit-learn).

Example:
    >>> import jax
    >>> data, target = load("two_modes", jax.random.key(0), 1000)
    >>> data.shape, target.num_zones
    ((1000, 2), 2)
"""

from numpyro_ebm.datasets.generators import (
    TARGETS,
    digits,
    eight_gaussians,
    gaussian_mixture,
    line_of_four,
    load,
    rings,
    two_gaussians,
    two_modes,
)
from numpyro_ebm.datasets.mixtures import MIXTURE_SCALE, GaussianMixture, RadialMixture
from numpyro_ebm.datasets.targets import (
    Distribution,
    Target,
    eight_gaussians_target,
    gaussian_mixture_target,
    line_of_four_target,
    rings_target,
    two_gaussians_target,
    two_modes_target,
)
from numpyro_ebm.datasets.zones import AngularZones, LinearZones, NearestMeanZones, RadialZones

__all__ = [
    "GaussianMixture",
    "RadialMixture",
    "LinearZones",
    "RadialZones",
    "AngularZones",
    "NearestMeanZones",
    "Distribution",
    "Target",
    "MIXTURE_SCALE",
    "two_modes_target",
    "two_gaussians_target",
    "line_of_four_target",
    "eight_gaussians_target",
    "rings_target",
    "gaussian_mixture_target",
    "two_modes",
    "two_gaussians",
    "line_of_four",
    "eight_gaussians",
    "rings",
    "gaussian_mixture",
    "TARGETS",
    "load",
    "digits",
]
