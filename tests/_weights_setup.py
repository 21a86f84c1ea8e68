"""Shared set-up of the mode-weight tests (tests/test_training.py) and their seed calibration
(benchmarks/training_weights.py --calibrate): three unequal Gaussians in 2-D."""

import jax
import numpy as np

from numpyro_ebm import datasets, flows, nets
from numpyro_ebm import negatives as ng
from numpyro_ebm.energy import EnergyModel
from numpyro_ebm.training import train

WEIGHTS_2D = (0.5, 0.3, 0.2)


def unequal_2d_target() -> datasets.Target:
    """``sum_k w_k N(m_k, 0.1 I)``, ``w = (0.5, 0.3, 0.2)``, means on a circle of radius 2 at
    90, 210 and 330 degrees: the nearest-mean zones hold the weights up to 1e-7 (the means are
    3.46 apart, 5.5 standard deviations each side of a zone border)."""
    angles = np.deg2rad([90.0, 210.0, 330.0])
    means = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    mixture = datasets.GaussianMixture(means, np.full(3, 0.1), np.asarray(WEIGHTS_2D))
    return datasets.Target(
        "unequal_three", mixture, datasets.NearestMeanZones(means), WEIGHTS_2D, ((-4.0, 4.0), (-4.0, 4.0))
    )


def train_2d_defaults(seed: int, num_steps: int, batch_size: int, bank_size: int, **kwargs):
    """``train`` with every default: FlowMC(flow) as it comes, default optimisers."""
    target = unequal_2d_target()
    data = target.sample(jax.random.key(100 + seed), 20_000)
    key_flow, key_net, key_train = jax.random.split(jax.random.key(seed), 3)
    flow = flows.default_flow(key_flow, 2, identity_init=True)
    ebm = EnergyModel(nets.ToyNet(2, key=key_net), flow.base_dist)
    result = train(
        ebm,
        data,
        key=key_train,
        negatives=ng.FlowMC(flow),
        num_steps=num_steps,
        batch_size=batch_size,
        bank_size=bank_size,
        zones=target,
        progress=False,
        **kwargs,
    )
    return target, result


WEIGHTS_HD = (0.4, 0.3, 0.2, 0.1)


def unequal_mixture_target(dim: int) -> datasets.Target:
    """The paper's d-dimensional 4-mode mixture (``datasets.gaussian_mixture_target``: means
    ``+-c (1, ..., 1)``, ``+-c (-1, .., -1, 1, .., 1)``, ``c = 0.5919 sqrt(2 log d)``, unit
    variances) with unequal weights ``(0.4, 0.3, 0.2, 0.1)``. A point lies nearer another mode's
    mean with probability 4.1e-5 at d = 16 (less above), so the nearest-mean zones hold the
    weights to within 1e-4."""
    equal = datasets.gaussian_mixture_target(dim)
    means = equal.distribution.means
    mixture = datasets.GaussianMixture(means, np.ones(4), np.asarray(WEIGHTS_HD))
    return datasets.Target("unequal_four", mixture, equal.zones, WEIGHTS_HD, None)
