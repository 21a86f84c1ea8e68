"""Maps of 2-D densities and flows, and slices through them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from numpyro_ebm._compat import renamed_kwargs
from numpyro_ebm.plotting._axes import _KINDS, Bounds, _evaluate, _figure_and_axes, _grid


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


@renamed_kwargs(n_points="num_points")
def plot_slice(
    log_densities: Any,
    start: Sequence[float],
    end: Sequence[float],
    *,
    bounds: Bounds,
    truth: Any = None,
    margin: float = 0.5,
    num_points: int = 400,
    resolution: int = 200,
    log: bool = False,
    ax=None,
    title: str | None = None,
):
    """Normalised densities along the line through ``start`` and ``end`` (Fig. 1d and 1h).

    Each density is normalised on the 2-D grid over ``bounds`` (so models with different
    constants compare), then evaluated at ``num_points`` points of the segment extended by
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
        num_points: points along the line.
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
    t = np.linspace(-margin, 1 + margin, num_points)
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
