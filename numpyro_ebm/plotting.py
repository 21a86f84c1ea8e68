"""Figures of 2-D EBMs, flows and training runs (matplotlib), as in Grenioux et al. 2023, Fig. 1.

Every function draws on ``ax`` if given (so panels compose into your own layout) or on a new
figure, and returns the :class:`~matplotlib.figure.Figure`. Wherever a log-density is expected,
pass a callable ``(..., 2) -> (...)`` or an object with a ``log_density`` method (an
``EnergyModel``) or a ``log_prob`` method (a flowjax flow, a ``datasets.Target``); it may be
unnormalised: densities are normalised on the plotting grid (midpoint rule, as
``diagnostics.grid_log_density``; evaluated in compiled chunks, so redrawing a model is fast).

* :func:`plot_density`: density, log-density or energy map on a grid.
* :func:`plot_flow_density`: the same for a normalizing flow.
* :func:`plot_slice`: normalised densities along the segment through two points (the paper's
  slice through the two centres of the 2:1 example), model(s) against the truth.
* :func:`plot_samples`: chains or negatives as a scatter (or paths), optionally over a density.
* :func:`plot_weight_history`: the weight of a mode against the training step for several
  methods, the true weight dashed (the right panel of the paper's Fig. 1).

Example:
    >>> import jax
    >>> from numpyro_ebm import datasets
    >>> target = datasets.two_modes_target()
    >>> fig = plot_density(target, target.bounds, resolution=50)
    >>> fig = plot_samples(target.sample(jax.random.key(0), 500), background=target,
    ...                    bounds=target.bounds, resolution=50)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike

from numpyro_ebm.diagnostics import _as_log_density

__all__ = [
    "plot_density",
    "plot_flow_density",
    "plot_slice",
    "plot_samples",
    "plot_weight_history",
]

Bounds = tuple[tuple[float, float], tuple[float, float]]
_KINDS = ("density", "log_density", "energy")


def _figure_and_axes(ax, figsize=(4.2, 3.6)):
    if ax is not None:
        return ax.figure, ax
    import matplotlib.pyplot as plt  # lazy: importing pyplot costs ~0.5 s and picks a backend

    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


_CHUNK = 65536  # points per compiled evaluation: bounds memory, one compilation per model type


@functools.cache
def _jitted_call():
    import equinox as eqx

    # A bound method of an equinox Module (an EnergyModel, a flow, a Target) is a pytree: its
    # arrays are traced, so every model of the same structure reuses one compilation.
    return eqx.filter_jit(lambda fn, x: fn(x))


def _evaluate(fn: Callable, points: np.ndarray) -> np.ndarray:
    """``fn`` on ``points (n, 2)`` in fixed-size compiled chunks; float64 NumPy out."""
    dtype = jnp.result_type(float)
    n = points.shape[0]
    size = min(n, _CHUNK)
    out = []
    for lo in range(0, n, size):
        chunk = points[lo : lo + size]
        pad = size - chunk.shape[0]
        if pad:  # repeat a real point, so the padding never evaluates somewhere odd
            chunk = np.concatenate([chunk, np.repeat(chunk[:1], pad, axis=0)])
        values = np.asarray(_jitted_call()(fn, jnp.asarray(chunk, dtype)), np.float64)
        if values.shape != (size,):
            raise ValueError(
                f"the log-density must map points (n, 2) to (n,); it returned shape {values.shape}."
            )
        out.append(values[: size - pad])
    return np.concatenate(out)


class _Grid(NamedTuple):
    fn: Callable
    log_density: np.ndarray  # (resolution, resolution), indexed [x1, x2], normalised on the box
    log_z: float  # log of the unnormalised mass in the box


def _grid(log_density: Any, bounds: Bounds, resolution: int, who: str) -> _Grid:
    """Evaluate a log-density on cell centres over ``bounds`` and normalise it (midpoint rule)."""
    fn = _as_log_density(log_density, who)
    try:
        (x_lo, x_hi), (y_lo, y_hi) = (tuple(map(float, axis)) for axis in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be ((x1_lo, x1_hi), (x2_lo, x2_hi)); got {bounds!r}.") from None
    if not (x_lo < x_hi and y_lo < y_hi) or not all(map(math.isfinite, (x_lo, x_hi, y_lo, y_hi))):
        raise ValueError(f"bounds need finite lo < hi on both axes; got {bounds!r}.")
    if not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2; got {resolution!r}.")
    xs = x_lo + (x_hi - x_lo) / resolution * (np.arange(resolution) + 0.5)
    ys = y_lo + (y_hi - y_lo) / resolution * (np.arange(resolution) + 0.5)
    points = np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1).reshape(-1, 2)
    logp = _evaluate(fn, points)
    bad = np.isnan(logp) | (logp == np.inf)
    if bad.any():
        raise ValueError(
            f"{who}: the log-density is NaN or +inf at {int(bad.sum())} grid points (e.g. at "
            f"{points[np.argmax(bad)].round(4).tolist()}); only finite values (or -inf) can be drawn."
        )
    if not np.isfinite(logp).any():
        raise ValueError(
            f"{who}: the density is zero (log-density -inf) on the whole grid; widen the bounds."
        )
    top = logp.max()
    cell_area = (x_hi - x_lo) * (y_hi - y_lo) / resolution**2
    log_z = float(top + np.log(np.sum(np.exp(logp - top)) * cell_area))
    return _Grid(fn, (logp - log_z).reshape(resolution, resolution), log_z)


def plot_density(
    log_density: Any,
    bounds: Bounds,
    *,
    resolution: int = 200,
    kind: str = "density",
    ax=None,
    cmap: str = "viridis",
    title: str | None = None,
    colorbar: bool = False,
    floor: float = -12.0,
):
    """Map of a 2-D density on a regular grid, normalised on the grid.

    Args:
        log_density: a callable ``(..., 2) -> (...)`` or an object with ``log_density``
            (an ``EnergyModel``) or ``log_prob`` (a flow, a ``datasets.Target``); unnormalised is fine.
        bounds: ``((x1_lo, x1_hi), (x2_lo, x2_hi))``, e.g. ``target.bounds``.
        resolution: grid cells per axis.
        kind: ``"density"`` (``p``), ``"log_density"`` (``log p``, floored at ``max + floor``) or
            ``"energy"`` (``-log p``, the energy up to a constant, capped likewise).
        ax: draw here; a new figure when ``None``.
        cmap: matplotlib colour map.
        title: axes title.
        colorbar: add a colour bar.
        floor: for the log scales, how far below the maximum the colour scale stops.

    Returns:
        The matplotlib ``Figure``.

    Example:
        >>> import jax
        >>> from numpyro_ebm.energy import EnergyModel
        >>> from numpyro_ebm.flows import default_flow
        >>> from numpyro_ebm.nets import ToyNet
        >>> flow = default_flow(jax.random.key(0), 2, identity_init=True)
        >>> ebm = EnergyModel(ToyNet(2, key=jax.random.key(1)), flow.base_dist)
        >>> fig = plot_density(ebm, ((-3, 3), (-3, 3)), resolution=40, kind="energy", colorbar=True)
        >>> fig.axes[0].get_xlabel()
        '$x_1$'
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}; got {kind!r}.")
    logp = _grid(log_density, bounds, resolution, "plot_density").log_density
    if kind == "density":
        values, label = np.exp(logp), "density"
    elif kind == "log_density":
        values, label = np.maximum(logp, logp.max() + floor), "log-density"
    else:
        values, label = np.minimum(-logp, -logp.max() - floor), "energy (up to a constant)"
    (x_lo, x_hi), (y_lo, y_hi) = bounds
    fig, ax = _figure_and_axes(ax)
    # grid.points is indexed [i (x1), j (x2)]; imshow wants rows = x2.
    image = ax.imshow(
        values.T,
        origin="lower",
        extent=(x_lo, x_hi, y_lo, y_hi),
        cmap=cmap,
        aspect="auto",
        interpolation="nearest",
    )
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title is not None:
        ax.set_title(title)
    if colorbar:
        fig.colorbar(image, ax=ax, label=label)
    return fig


def plot_flow_density(flow: Any, bounds: Bounds, **kwargs):
    """Density map of a 2-D normalizing flow (the paper's companion flow, Fig. 1e).

    Args:
        flow: a flowjax distribution of shape ``(2,)`` (anything with ``log_prob``).
        bounds: ``((x1_lo, x1_hi), (x2_lo, x2_hi))``.
        **kwargs: as for :func:`plot_density` (``resolution``, ``kind``, ``ax``, ``title``, ...).

    Returns:
        The matplotlib ``Figure``.

    Example:
        >>> import jax
        >>> from numpyro_ebm.flows import default_flow
        >>> fig = plot_flow_density(default_flow(jax.random.key(0), 2), ((-3, 3), (-3, 3)),
        ...                         resolution=40, title="flow")
        >>> fig.axes[0].get_title()
        'flow'
    """
    log_prob = getattr(flow, "log_prob", None)
    if not callable(log_prob):
        raise TypeError(f"plot_flow_density needs a flow with log_prob; got {type(flow).__name__}.")
    shape = getattr(flow, "shape", (2,))
    if tuple(shape) != (2,):
        raise ValueError(f"plot_flow_density draws 2-D flows; this flow has shape {tuple(shape)}.")
    kwargs.setdefault("cmap", "magma")
    return plot_density(log_prob, bounds, **kwargs)


def plot_slice(
    log_densities: Any,
    start: Sequence[float],
    end: Sequence[float],
    *,
    bounds: Bounds,
    truth: Any = None,
    margin: float = 0.5,
    n_points: int = 400,
    resolution: int = 200,
    log: bool = False,
    ax=None,
    title: str | None = None,
):
    """Normalised densities along the line through ``start`` and ``end`` (Fig. 1d and 1h).

    Each density is normalised on the 2-D grid over ``bounds`` (so models with different
    constants compare), then evaluated at ``n_points`` points of the segment extended by
    ``margin`` of its length on both sides. The horizontal axis is the signed distance from
    the segment's midpoint.

    Args:
        log_densities: one log-density (callable or object with ``log_density``/``log_prob``)
            or a mapping ``{label: log-density}``.
        start: the first point, e.g. the centre ``(-1.5, -1.5)``.
        end: the second point, e.g. the centre ``(1.5, 1.5)``.
        bounds: the normalisation box ``((x1_lo, x1_hi), (x2_lo, x2_hi))``.
        truth: the true log-density (e.g. a ``datasets.Target``), drawn dashed in black.
        margin: extension beyond each end, as a fraction of the segment's length.
        n_points: points along the line.
        resolution: grid cells per axis for the normalisation.
        log: plot log-densities instead of densities.
        ax: draw here; a new figure when ``None``.
        title: axes title.

    Returns:
        The matplotlib ``Figure``.

    Example:
        >>> from numpyro_ebm import datasets
        >>> target = datasets.two_modes_target()
        >>> fig = plot_slice({"truth as a model": target}, (-1.5, -1.5), (1.5, 1.5),
        ...                  bounds=target.bounds, truth=target, resolution=50)
        >>> len(fig.axes[0].lines)
        2
    """
    start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
    if start.shape != (2,) or end.shape != (2,):
        raise ValueError(f"start and end must be 2-D points; got shapes {start.shape} and {end.shape}.")
    length = float(np.linalg.norm(end - start))
    if length == 0:
        raise ValueError(f"start and end must differ; both are {start.tolist()}.")
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite number >= 0; got {margin!r}.")
    if not isinstance(log_densities, Mapping):
        log_densities = {"model": log_densities}
    t = np.linspace(-margin, 1 + margin, n_points)
    line = start[None] + t[:, None] * (end - start)[None]
    distance = (t - 0.5) * length
    fig, ax = _figure_and_axes(ax, figsize=(5.0, 3.4))

    def draw(obj, label, **style):
        grid = _grid(obj, bounds, resolution, "plot_slice")
        values = _evaluate(grid.fn, line) - grid.log_z
        ax.plot(distance, values if log else np.exp(values), label=label, **style)

    if truth is not None:
        draw(truth, "truth", color="black", linestyle="--", linewidth=1.2)
    for label, obj in log_densities.items():
        draw(obj, str(label))
    ax.set_xlabel("position along the line through the two points")
    ax.set_ylabel("log-density" if log else "density")
    if title is not None:
        ax.set_title(title)
    ax.legend(frameon=False)
    return fig


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
