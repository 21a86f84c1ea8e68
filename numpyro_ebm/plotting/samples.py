"""Samples over a density, and a mode's weight along training (the paper's Fig. 1, right)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from jaxtyping import ArrayLike

from numpyro_ebm.plotting._axes import Bounds, _figure_and_axes
from numpyro_ebm.plotting.densities import plot_density


def plot_samples(
    samples: ArrayLike,
    *,
    ax=None,
    bounds: Bounds | None = None,
    background: Any = None,
    resolution: int = 100,
    max_points: int = 2000,
    max_paths: int = 8,
    color: str = "tab:red",
    size: float = 3.0,
    alpha: float = 0.5,
    label: str | None = None,
    title: str | None = None,
    seed: int = 0,
):
    """Scatter of 2-D samples (negatives, a bank of chains), or paths of a few chains.

    Args:
        samples: points ``(n, 2)``, drawn as a scatter (a random subset of ``max_points``), or
            chains ``(chains, draws, 2)``, drawn as the paths of the first ``max_paths``
            chains over a scatter of all their draws.
        ax: draw here; a new figure when ``None``.
        bounds: axis limits ``((x1_lo, x1_hi), (x2_lo, x2_hi))``; needed with ``background``.
        background: a log-density drawn underneath (as :func:`plot_density`, in grey).
        resolution: grid cells per axis of the background.
        max_points: at most this many points are drawn.
        max_paths: chains drawn as paths (3-D input only).
        color: scatter colour.
        size: marker size.
        alpha: marker opacity.
        label: legend label of the scatter.
        title: axes title.
        seed: seed of the subset drawn when there are more than ``max_points`` points.

    Returns:
        The matplotlib ``Figure``.

    Example:
        >>> import numpy as np
        >>> chains = np.cumsum(np.random.default_rng(0).normal(size=(4, 50, 2)) * 0.1, axis=1)
        >>> fig = plot_samples(chains, label="chains")
        >>> len(fig.axes[0].lines)  # one path per chain
        4
    """
    x = np.asarray(samples, np.float64)
    if x.ndim not in (2, 3) or x.shape[-1] != 2:
        raise ValueError(
            "plot_samples draws 2-D points: samples must have shape (n, 2) or (chains, draws, 2); "
            f"got {x.shape}."
        )
    fig, ax = _figure_and_axes(ax)
    if background is not None:
        if bounds is None:
            raise ValueError(
                "plot_samples: a background density needs bounds=((x1_lo, x1_hi), (x2_lo, x2_hi))."
            )
        plot_density(background, bounds, resolution=resolution, ax=ax, cmap="Greys")
    paths = x[:max_paths] if x.ndim == 3 else None
    points = x.reshape(-1, 2)
    points = points[np.all(np.isfinite(points), axis=1)]
    if points.shape[0] > max_points:
        points = points[np.random.default_rng(seed).choice(points.shape[0], max_points, replace=False)]
    ax.scatter(points[:, 0], points[:, 1], s=size, alpha=alpha, color=color, label=label, linewidths=0)
    if paths is not None:
        for path in paths:
            ax.plot(path[:, 0], path[:, 1], linewidth=0.6, alpha=0.8)
    if bounds is not None:
        (x_lo, x_hi), (y_lo, y_hi) = bounds
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(y_lo, y_hi)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title is not None:
        ax.set_title(title)
    if label is not None:
        ax.legend(frameon=False, loc="upper left", markerscale=3)
    return fig


def plot_weight_history(
    histories: Mapping[str, Any],
    *,
    true_weight: float | None = None,
    ax=None,
    xlabel: str = "training step",
    ylabel: str = "weight of the mode",
    title: str | None = None,
    ylim: tuple[float, float] | None = (-0.02, 1.02),
):
    """The weight of a mode against the training step, one line per method (Fig. 1, right).

    Args:
        histories: ``{label: (steps, weights)}`` with two 1-D sequences of equal length, or
            ``{label: history}`` with a history mapping holding ``"step"`` and ``"weight"``
            (e.g. ``train(..., metrics={"weight": ...}).history``).
        true_weight: drawn as a dashed black line.
        ax: draw here; a new figure when ``None``.
        xlabel: horizontal axis label.
        ylabel: vertical axis label.
        title: axes title.
        ylim: vertical limits (``None``: automatic).

    Returns:
        The matplotlib ``Figure``.

    Example:
        >>> fig = plot_weight_history({"flowMC-EBM": ([100, 200, 300], [0.5, 0.7, 0.66]),
        ...                            "ULA-EBM": ([100, 200, 300], [1.0, 0.0, 1.0])},
        ...                           true_weight=2 / 3)
        >>> len(fig.axes[0].lines)
        3
    """
    if not isinstance(histories, Mapping) or not histories:
        raise ValueError("histories must be a non-empty mapping {label: (steps, weights)}.")
    fig, ax = _figure_and_axes(ax, figsize=(5.0, 3.4))
    for label, history in histories.items():
        if isinstance(history, Mapping):
            missing = [k for k in ("step", "weight") if k not in history]
            if missing:
                raise ValueError(
                    f"history {label!r} lacks {missing}; pass (steps, weights) or a mapping with both."
                )
            steps, weights = history["step"], history["weight"]
        else:
            steps, weights = history
        steps, weights = np.asarray(steps, np.float64), np.asarray(weights, np.float64)
        if steps.ndim != 1 or steps.shape != weights.shape:
            raise ValueError(
                f"history {label!r}: steps and weights must be 1-D of equal length; got shapes "
                f"{steps.shape} and {weights.shape}."
            )
        ax.plot(steps, weights, label=str(label), linewidth=1.2)
    if true_weight is not None:
        ax.axhline(float(true_weight), color="black", linestyle="--", linewidth=1.0, label="truth")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    if title is not None:
        ax.set_title(title)
    ax.legend(frameon=False)
    return fig
