"""The image experiments' presets: CIFAR-10 (Sec. 4, App. C.6, Figs. 7-8) and an 8x8-digits twin.

Paper (CIFAR-10): batch 128, 70 epochs (27,300 steps), bank 1024; Adam at 1e-4 for the EBM and
the flow, x0.99 every 50 batches; L2 energy penalty 1e-4; negatives from 3 x [1 i-SIR with 128
particles + 32 MALA] (the final states); energy: Du & Mordatch's residual conv net reduced to
about 4.5M parameters (:class:`~numpyro_ebm.nets.ResNetEnergy`, ``width=64``: 4.83M); flow: a
multi-scale RealNVP with base width 64 and 6 residual blocks, about 4M parameters
(:func:`~numpyro_ebm.images.realnvp_image_flow`: 4.10M), after the logit pre-processing;
dequantisation ``(x + U) / 256``; random horizontal flips. Fig. 8: the last states of 64 chains of
512 steps from the persistent state.
Reconstructed: the MALA step (not given) starts at 1e-4 and adapts toward 60 % acceptance; the
flips and the dequantisation noise are drawn once for the training set (``train`` takes a fixed
array), not per batch; the grid chains run ``grid_calls`` sampler calls (512 MALA steps = 16 calls
of 32 MALA steps); the class balance uses a multinomial logistic regression on the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

from numpyro_ebm.reproduce.presets import Method, Schedule

__all__ = ["ImageArch", "CIFAR10", "DIGITS", "IMAGE_EVAL"]


@dataclass(frozen=True)
class ImageArch:
    """Networks and data of an image experiment.

    Attributes:
        image_shape: ``(channels, height, width)``.
        energy_width: ``ResNetEnergy`` width (``n_f``).
        flow_width: RealNVP conditioner channels.
        flow_blocks: residual blocks per conditioner.
        flow_scales: RealNVP scales.
        num_test: test images (energy histograms, class balance).
        pretrain_steps: none here (flowMC-EBM's flow starts at the identity); kept for the work count.
    """

    image_shape: tuple[int, int, int]
    energy_width: int
    flow_width: int
    flow_blocks: int
    flow_scales: int
    num_test: int
    pretrain_steps: int = 0


def _method(schedule, arch, note="", **options) -> Method:
    return Method("flowMC-EBM", "flowmc", options, schedule, arch, note)


_SAMPLER = dict(num_cycles=3, num_local_steps=32, step_size=1e-4, target_accept=0.6)
_PAPER = Schedule(27300, 128, 1024, 50000, 1e-4, chunk_size=50, energy_l2=1e-4, decay_every=50, lr_decay=0.99)


def _quick(shape: tuple[int, int, int], rate: float) -> list:
    """The end-to-end smoke run of the tests (tiny networks, a few steps); numbers mean nothing.
    ``rate`` is both the learning rate and the MALA step size."""
    schedule = Schedule(4, 8, 16, 64, rate, chunk_size=2, energy_l2=1e-4, decay_every=50, lr_decay=0.99)
    sampler = dict(num_particles=4, num_cycles=1, num_local_steps=2, step_size=rate, target_accept=0.6)
    return [_method(schedule, ImageArch(shape, 2, 2, 1, 1, 32), **sampler)]


CIFAR10 = {
    "paper": [_method(_PAPER, ImageArch((3, 32, 32), 64, 64, 6, 2, 10000), num_particles=128, **_SAMPLER)],
    # cpu: hours still; 2,000 images, 300 steps, narrow networks, 1 x [1 i-SIR x 16 + 8 MALA].
    "cpu": [
        _method(
            Schedule(300, 32, 256, 2000, 1e-4, chunk_size=50, energy_l2=1e-4, decay_every=50, lr_decay=0.99),
            ImageArch((3, 32, 32), 8, 8, 1, 2, 500),
            "cpu budget: narrow networks (8 channels), 300 steps, 1 x [1 i-SIR x 16 + 8 MALA]",
            num_particles=16,
            num_cycles=1,
            num_local_steps=8,
            step_size=1e-4,
            target_accept=0.6,
        )
    ],
    "quick": _quick((3, 32, 32), 1e-4),
}
# The same experiment on scikit-learn's 8x8 digits (17 grey levels, 1,797 images, 10 classes),
# sized for a CPU: rates 1e-3 (the small networks learn slowly at 1e-4), 3,000 steps.
_DIGITS_SAMPLER = dict(num_cycles=1, num_local_steps=16, step_size=1e-3, target_accept=0.6)
DIGITS = {
    "paper": [
        _method(
            Schedule(
                27300, 128, 1024, 1500, 1e-4, chunk_size=50, energy_l2=1e-4, decay_every=50, lr_decay=0.99
            ),
            ImageArch((1, 8, 8), 64, 64, 6, 2, 297),
            num_particles=128,
            **_SAMPLER,
        )
    ],
    "cpu": [
        _method(
            Schedule(
                3000, 64, 512, 1500, 1e-3, chunk_size=100, energy_l2=1e-4, decay_every=50, lr_decay=0.99
            ),
            ImageArch((1, 8, 8), 16, 16, 1, 2, 297),
            "cpu budget: 16-channel networks, 3,000 steps at 1e-3, 1 x [1 i-SIR x 32 + 16 MALA]",
            num_particles=32,
            **_DIGITS_SAMPLER,
        )
    ],
    "quick": _quick((1, 8, 8), 1e-3),
}
# Evaluation: chains for the sample grid (Fig. 8) and sampler calls they run.
IMAGE_EVAL = {
    "paper": dict(grid=64, grid_calls=16),
    "cpu": dict(grid=64, grid_calls=4),
    "quick": dict(grid=8, grid_calls=2),
}
