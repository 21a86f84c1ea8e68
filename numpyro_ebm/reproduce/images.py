"""CIFAR-10 (Sec. 4, App. C.6, Figs. 7-8) and its CPU-sized twin on scikit-learn's 8x8 digits.

flowMC-EBM on images: the energy :class:`~numpyro_ebm.nets.ResNetEnergy` tilts
``rho = P_# N(0, I)`` (:func:`~numpyro_ebm.images.image_tilt`, ``P`` the logit pre-processing),
and the flow is :func:`~numpyro_ebm.images.realnvp_image_flow`, equal to ``rho`` at step 0.
Outputs, besides ``metrics.json``:

* ``samples.png`` (Fig. 8): the last states of ``grid`` chains run from the bank, beside data;
* ``energies.png`` (Fig. 7): histograms of ``E`` on the negatives, training and test images;
* the global (i-SIR) acceptance (the paper: 5-10 %), at the end of training and on the chains;
* the class balance of the chains through a classifier fitted to the training images, against
  the data's (total-variation distance ``class_balance_tv``).

CIFAR-10 is read from a local copy of the binary version (``data=DIR``); nothing is downloaded.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_ebm import images as im
from numpyro_ebm.nets import ResNetEnergy
from numpyro_ebm.reproduce.common import chain_starts, last, plot, sampler_chains, settings, train_method
from numpyro_ebm.reproduce.image_presets import IMAGE_EVAL
from numpyro_ebm.reproduce.presets import config

__all__ = ["cifar10", "digits"]


def cifar10(preset: str, key, progress: bool, out_dir: Path, data: str | Path) -> dict[str, Any]:
    """CIFAR-10 from the ``cifar-10-batches-bin`` folder ``data``."""
    method = config("cifar10", preset)[0]
    arch = method.flow
    key_deq, key_flip, key_test, key = jax.random.split(key, 4)
    train_u8, train_labels = im.load_cifar10(data, split="train", limit=method.schedule.num_data, flat=True)
    test_u8, test_labels = im.load_cifar10(data, split="test", limit=arch.num_test, flat=True)
    x = im.random_flip(key_flip, im.dequantize(key_deq, train_u8, 256), image_shape=arch.image_shape)
    x_test = im.dequantize(key_test, test_u8, 256)
    return _experiment(
        method, preset, key, progress, out_dir, (x, train_labels), (x_test, test_labels), im.CIFAR10_CLASSES
    )


def digits(preset: str, key, progress: bool, out_dir: Path) -> dict[str, Any]:
    """The same experiment on scikit-learn's digits (no flips: a mirrored digit is no digit)."""
    from numpyro_ebm.datasets import digits as load_digits

    method = config("digits", preset)[0]
    key_deq, key_split, key = jax.random.split(key, 3)
    x, labels = load_digits(dequantize_key=key_deq)
    order = np.asarray(jax.random.permutation(key_split, x.shape[0]))
    n = method.schedule.num_data
    train, test = order[:n], order[n : n + method.flow.num_test]
    x, labels = np.asarray(x), np.asarray(labels)
    return _experiment(
        method,
        preset,
        key,
        progress,
        out_dir,
        (x[train], labels[train]),
        (x[test], labels[test]),
        tuple(str(d) for d in range(10)),
    )


def _experiment(method, preset, key, progress, out_dir, train_set, test_set, classes) -> dict[str, Any]:
    arch = method.flow
    x, labels = (jnp.asarray(train_set[0], jnp.float32), np.asarray(train_set[1]))
    x_test, test_labels = jnp.asarray(test_set[0], jnp.float32), np.asarray(test_set[1])
    dim = x.shape[1]
    key_net, key_flow, key_train, key_eval = jax.random.split(key, 4)
    net = ResNetEnergy(key=key_net, image_shape=arch.image_shape, width=arch.energy_width)
    flow_fn = lambda k, identity: im.realnvp_image_flow(  # noqa: E731
        k, arch.image_shape, width=arch.flow_width, blocks=arch.flow_blocks, scales=arch.flow_scales
    )
    trained = train_method(
        method, x, key_train, net=net, flow_fn=flow_fn, base=im.image_tilt(dim), progress=progress
    )
    t0 = time.perf_counter()
    result, sampler = trained["result"], trained["sampler"]
    ev = IMAGE_EVAL[preset]
    start, flow = chain_starts(sampler, result.ebm, result.flow, result.bank, key_eval, ev["grid"])
    if ev["grid_calls"]:
        chains, accept = sampler_chains(
            sampler,
            result.ebm,
            flow,
            start,
            result.step_size,
            jax.random.fold_in(key_eval, 1),
            ev["grid_calls"],
        )
        samples = np.asarray(chains[:, -1])
    else:  # the quick preset: the bank's chains as they are (one compilation less)
        samples, accept = np.asarray(start), np.nan
    energy = jax.jit(jax.vmap(result.ebm.net))
    e_neg, e_train, e_test = (
        np.asarray(energy(jnp.asarray(a))) for a in (result.bank, x[: x_test.shape[0]], x_test)
    )
    classifier = im.fit_digit_classifier(np.asarray(x), labels)
    balance = im.class_balance(samples, classifier, num_classes=len(classes))
    data_balance = np.bincount(labels, minlength=len(classes)) / labels.size
    out = {
        "methods": {
            method.name: {
                "global_accept_prob": last(result.history, "global_accept_prob"),
                "local_accept_prob": last(result.history, "local_accept_prob"),
                "chains_global_accept": float(accept),  # NaN without chains (quick)
                "step_size": float(result.step_size),
                "energy_mean": {
                    "negatives": float(np.mean(e_neg)),
                    "train": float(np.mean(e_train)),
                    "test": float(np.mean(e_test)),
                },
                "energy_gap": float(np.mean(e_neg) - np.mean(e_test)),
                "class_balance": dict(zip(classes, balance.tolist(), strict=True)),
                "data_class_balance": dict(zip(classes, data_balance.tolist(), strict=True)),
                "class_balance_tv": float(0.5 * np.abs(balance - data_balance).sum()),
                "classifier_test_accuracy": float(
                    np.mean(classifier.predict(np.asarray(x_test)) == test_labels)
                ),
                "samples_finite": bool(np.all(np.isfinite(samples))),
                "training_stopped": trained["stopped"],
                "train_seconds": trained["train_seconds"],
                "eval_seconds": time.perf_counter() - t0,
                "work": trained["work"],
                "settings": settings(method),
                "parameters": {"energy": _count(result.ebm.net), "flow": _count(result.flow)},
            }
        },
        "num_train": int(x.shape[0]),
        "num_test": int(x_test.shape[0]),
        "paper": {"global_accept_prob": "5-10 %", "samples": "medium quality", "metrics": "none (no FID/IS)"},
    }
    shape = arch.image_shape
    n_show = min(samples.shape[0], np.asarray(x).shape[0])
    plot(
        out_dir,
        lambda fig: _grids(fig, samples[:n_show], np.asarray(x)[:n_show], shape),
        "samples.png",
        (10, 5),
    )
    plot(out_dir, lambda fig: _histograms(fig, e_neg, e_train, e_test), "energies.png", (6, 4))
    out["figures"] = ["samples.png", "energies.png"]
    return out


def _count(tree) -> int:
    import equinox as eqx

    return int(sum(a.size for a in jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))))


def _grids(fig, samples, data, shape):
    """Fig. 8: chains' last states beside training images."""
    for i, (title, x) in enumerate(
        (("EBM samples (chains' last states)", samples), ("training images", data))
    ):
        ax = fig.add_subplot(1, 2, i + 1)
        grid = im.tile_images(np.clip(x, 0, 1), shape, ncols=int(np.ceil(np.sqrt(len(x)))))
        ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1)
        ax.set(title=title, xticks=[], yticks=[])


def _histograms(fig, e_neg, e_train, e_test):
    """Fig. 7: energies of the negatives against the training and test images."""
    ax = fig.add_subplot(1, 1, 1)
    values = [v[np.isfinite(v)] for v in (e_neg, e_train, e_test)]
    finite = np.concatenate(values)
    bins = np.linspace(finite.min(), finite.max(), 40) if finite.size and np.ptp(finite) > 0 else 10
    for v, label in zip(values, ("negatives", "train", "test"), strict=True):
        ax.hist(v, bins=bins, alpha=0.5, density=True, label=label)
    ax.set(xlabel="energy E(x)", ylabel="density", title="energies (Fig. 7)")
    ax.legend()
