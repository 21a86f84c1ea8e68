"""Figures of 2-D EBMs, flows and training runs (matplotlib), as in Grenioux et al. 2023, Fig. 1.

Every function draws on ``ax`` if given (so panels compose into your own layout) or on a new
figure, and returns the :class:`~matplotlib.figure.Figure`. Wherever a log-density is expected,
pass a callable ``(..., 2) -> (...)`` or an object with a ``log_density`` method (an
``EnergyModel``) or a ``log_prob`` method (a flowjax flow, a ``datasets.Target``); it may be
unnormalised: densities are normalised on the plotting grid by ``diagnostics.grid_log_density``'s
evaluator (midpoint rule, compiled chunks, so redrawing a model is fast).

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

from numpyro_ebm.plotting.densities import plot_density, plot_flow_density, plot_slice
from numpyro_ebm.plotting.samples import plot_samples, plot_weight_history

__all__ = [
    "plot_density",
    "plot_flow_density",
    "plot_slice",
    "plot_samples",
    "plot_weight_history",
]
