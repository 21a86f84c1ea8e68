"""Images: the logit pre-processing, image flows and tilts, dequantisation, CIFAR-10, class balance.

The EBM of Grenioux et al. 2023 (App. C.6) lives in pixel space and its flow in the logit space of
Dinh et al. 2017, joined by a fixed bijection; :mod:`~numpyro_ebm.images.pixels` explains how
flow and tilt stay balanced across it.

Submodules: :mod:`~numpyro_ebm.images.pixels` (pre-processing, image flow and tilt),
:mod:`~numpyro_ebm.images.realnvp` (the multi-scale RealNVP flow of the CIFAR-10 experiment) and
:mod:`~numpyro_ebm.images.data` (dequantisation, CIFAR-10 reader, class balance).
"""

from numpyro_ebm.images import data
from numpyro_ebm.images.data import *  # noqa: F403 - the data module's __all__, re-exported whole
from numpyro_ebm.images.pixels import image_flow, image_tilt, logit_preprocessing
from numpyro_ebm.images.realnvp import realnvp_image_flow

__all__ = ["logit_preprocessing", "image_flow", "image_tilt", "realnvp_image_flow", *data.__all__]
