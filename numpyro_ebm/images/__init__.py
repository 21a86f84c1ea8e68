"""Images: the logit pre-processing, image flows and tilts, dequantisation, CIFAR-10, class balance.

Grenioux et al. 2023 (App. C.6) train their CIFAR-10 EBM in pixel space, while the flow works in
the logit space of Dinh et al. 2017: a fixed bijection ``P`` (a logistic sigmoid followed by an
affine map) takes logit space ``R^dim`` to pixel space, and "the prior of the EBM (eq. 6) was
pushed through the additional transformations stacked onto the flow". Here:

* :func:`logit_preprocessing` is ``P``;
* :func:`image_flow` is ``P o T`` with ``T`` a :func:`numpyro_ebm.flows.default_flow` in logit
  space, so the flow's density lives in pixel space;
* :func:`image_tilt` is the EBM's tilt ``rho = P_# N(0, I)`` in pixel space: the image flow with
  ``T = Id``. With ``identity_init=True`` flow and tilt are the same density, and the tilted EBM
  ``exp(-E(x)) rho(x)`` with ``E = 0`` starts equal to both, as the paper's balance requires.

Pixel space is ``[0, 1]^dim``; ``P`` maps onto the slightly larger open box
``(-alpha / (1 - 2 alpha), (1 - alpha) / (1 - 2 alpha))^dim`` (``(-0.056, 1.056)`` for
``alpha = 0.05``), so samples can fall a little outside ``[0, 1]`` (clip them for display). The
tilt's log-density is NaN outside that box: the MCMC moves of :mod:`numpyro_ebm.moves` reject
such proposals, so chains never leave it.

Submodules: :mod:`~numpyro_ebm.images.pixels` (pre-processing, image flow and tilt),
:mod:`~numpyro_ebm.images.realnvp` (the multi-scale RealNVP flow of the CIFAR-10 experiment) and
:mod:`~numpyro_ebm.images.data` (dequantisation, CIFAR-10 reader, class balance).
"""

from numpyro_ebm.images.data import (
    CIFAR10_CLASSES,
    CIFAR10_SHAPE,
    class_balance,
    dequantize,
    fit_digit_classifier,
    load_cifar10,
    random_flip,
    tile_images,
)
from numpyro_ebm.images.pixels import image_flow, image_tilt, logit_preprocessing
from numpyro_ebm.images.realnvp import realnvp_image_flow

__all__ = [
    "logit_preprocessing",
    "image_flow",
    "image_tilt",
    "realnvp_image_flow",
    "dequantize",
    "random_flip",
    "load_cifar10",
    "CIFAR10_CLASSES",
    "CIFAR10_SHAPE",
    "fit_digit_classifier",
    "class_balance",
    "tile_images",
]
