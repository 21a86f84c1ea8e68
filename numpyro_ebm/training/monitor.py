"""The training monitor: is the flow still a good proposal, and do bank and model agree?

After every chunk, :func:`train` draws ``monitor_samples`` points from the flow and weighs them
against the current EBM, ``w = exp(-E(x)) rho(x) / q(x)``, self-normalised:

* ``flow_ess``: the importance-sampling ESS ``(sum w)^2 / sum w^2`` as a fraction of the draws.
  Near 1 the flow is the EBM; a fall means the EBM outruns its flow (global moves stop being
  accepted) and every flow-based estimate below gets rough.
* with ``zones`` (a :class:`~numpyro_ebm.datasets.Target` or a zone function): the weight of
  each zone **under the model** (the self-normalised weights of the draws in the zone) and **in
  the bank** (the share of the persistent chains in the zone). The bank's chains follow the EBM
  with a lag, so a gap between the two beyond their sampling error (4 standard errors, with
  ``sqrt(p (1 - p) / n)`` for the bank and ``sqrt(p (1 - p) / ESS)`` for the model) means the
  chains do not keep up with the EBM (bank lag) or the flow estimate is off: ``train`` warns
  with :class:`WeightsDisagreeWarning` when the last chunk shows one.

:func:`plot_history` draws these with the energy gap and the acceptances.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_ebm import diagnostics
from numpyro_ebm._compat import get_renamed

__all__ = ["WeightsDisagreeWarning", "plot_history", "zone_weight_disagreement"]

# The gap between bank and model weights counts as a disagreement beyond this many standard
# errors: with a handful of zones and one check per run, 4 SE keeps false alarms below ~1e-3.
DISAGREEMENT_SE = 4.0
_STEP_MEANS = (
    "loss",
    "energy_data",
    "energy_negatives",
    "local_accept_prob",
    "global_accept_prob",
    "flow_loss",
)


class WeightsDisagreeWarning(UserWarning):
    """The bank's zone weights and the model's (by flow importance weights) differ by more than
    their sampling error at the end of training."""


def resolve_zones(zones: Any) -> tuple[Callable | None, int]:
    """``(zone_fn, num_zones)`` from a Target, a zone module with ``num_zones``, or ``None``."""
    if zones is None:
        return None, 0
    if not callable(zones) and callable(getattr(zones, "zones", None)):  # a Target
        return zones.zones, int(zones.num_zones)
    n = get_renamed(zones, "num_zones")
    if not callable(zones) or not isinstance(n, int):
        raise TypeError(
            "zones must be a numpyro_ebm.datasets.Target or a zone function with a num_zones "
            f"attribute (e.g. datasets.NearestMeanZones(means)); got {type(zones).__name__}."
        )
    return zones, n


def flow_check(ebm, flow, key, n: int, zone_fn, num_zones: int, bank):
    """``(ess_fraction, model_zone_weights, bank_zone_weights)`` (the last two empty without
    zones), from :func:`numpyro_ebm.diagnostics.importance_sample`, the library's one importance
    sampler (compiled once per model structure)."""
    sample = diagnostics.importance_sample(ebm, flow, key, n)
    ess = sample.ess / n
    if zone_fn is None:
        return ess, jnp.zeros(0), jnp.zeros(0)
    model = jax.ops.segment_sum(sample.normalized_weights, zone_fn(sample.points), num_zones)
    return ess, model, diagnostics.zone_frequencies(bank, zone_fn, num_zones)


def zone_weight_disagreement(model, bank, ess: float, bank_size: int) -> float:
    """The largest ``|model - bank|`` over zones in units of its standard error."""
    model, bank = np.asarray(model, np.float64), np.asarray(bank, np.float64)
    p = np.clip(0.5 * (model + bank), 1e-3, 1 - 1e-3)  # pooled; the floor keeps empty zones sane
    se = np.sqrt(p * (1 - p) * (1 / max(ess, 1.0) + 1 / bank_size))
    return float(np.max(np.abs(model - bank) / se))


def warn_if_disagree(history: Mapping[str, Any], bank_size: int, monitor_samples: int) -> None:
    """Warn when the last recorded bank and model zone weights disagree beyond 4 SE."""
    if not history.get("model_zone_weights"):
        return
    model, bank = history["model_zone_weights"][-1], history["bank_zone_weights"][-1]
    ess = history["flow_ess"][-1] * monitor_samples
    z = zone_weight_disagreement(model, bank, ess, bank_size)
    if z > DISAGREEMENT_SE:
        warnings.warn(
            f"at the end of training the bank's zone weights {np.round(bank, 3).tolist()} and the "
            f"model's (flow importance weights, ESS {ess:.0f}) {np.round(model, 3).tolist()} differ "
            f"by {z:.1f} standard errors. If flow_ess is low the model's estimate is rough (the flow "
            "lags the EBM); otherwise the chains lag the EBM: train longer with a decaying rate, or "
            "run more flowMC cycles per step (FlowMC(num_cycles=...)).",
            WeightsDisagreeWarning,
            stacklevel=3,
        )


def plot_history(history: Mapping[str, Any], *, true_weights=None, axes=None):
    """The monitor at a glance: flow ESS and acceptances, energy gap, zone weights.

    Args:
        history: ``train(...).history``.
        true_weights: the zones' true weights, drawn as dashed lines (optional).
        axes: three matplotlib axes to draw in; a new figure when ``None``.

    Returns:
        The matplotlib ``Figure``.

    Example:
        >>> import numpy as np
        >>> history = {"step": np.array([100, 200]), "flow_ess": np.array([0.9, 0.8]),
        ...            "local_accept_prob": np.array([0.6, 0.6]), "global_accept_prob": np.array([0.9, 0.8]),
        ...            "energy_gap": np.array([0.1, 0.0]),
        ...            "model_zone_weights": np.array([[0.3, 0.7], [0.35, 0.65]]),
        ...            "bank_zone_weights": np.array([[0.32, 0.68], [0.34, 0.66]])}
        >>> fig = plot_history(history, true_weights=[1 / 3, 2 / 3])
        >>> len(fig.axes)
        3
    """
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(12.0, 3.2), constrained_layout=True)
    else:
        fig = axes[0].figure
    step = np.asarray(history["step"])
    ax = axes[0]
    for name, label in (
        ("flow_ess", "flow IS ESS / n"),
        ("global_accept_prob", "global accept"),
        ("local_accept_prob", "local accept"),
    ):
        if name in history and np.size(history[name]):
            ax.plot(step, np.asarray(history[name], float), label=label)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("training step")
    ax.legend(frameon=False)
    ax = axes[1]
    ax.plot(step, np.asarray(history["energy_gap"], float))
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("training step")
    ax.set_ylabel("mean E(negatives) - mean E(data)")
    ax = axes[2]
    model = np.asarray(history.get("model_zone_weights", []), float)
    if model.ndim == 2 and model.size:
        bank = np.asarray(history["bank_zone_weights"], float)
        for k in range(model.shape[1]):
            (line,) = ax.plot(step, model[:, k], label=f"zone {k}: model")
            ax.plot(step, bank[:, k], linestyle=":", color=line.get_color(), label=f"zone {k}: bank")
            if true_weights is not None:
                ax.axhline(float(true_weights[k]), linestyle="--", color=line.get_color(), linewidth=0.8)
        ax.set_ylabel("zone weight")
        ax.legend(frameon=False, fontsize="small", ncol=2)
    else:
        ax.text(0.5, 0.5, "pass zones= to train()", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("training step")
    return fig


def history_row(step: int, stats, carry) -> dict[str, Any]:
    """One history entry: chunk means of the step statistics."""
    row: dict[str, Any] = {"step": step}
    for name in _STEP_MEANS:
        row[name] = float(np.mean(getattr(stats, name)))
    row["energy_gap"] = row["energy_negatives"] - row["energy_data"]
    row["step_size"] = float(carry.step_size)
    row["flow_ess"] = math.nan
    return row


def postfix(row: Mapping[str, Any]) -> dict[str, str]:
    postfix = {
        "loss": f"{row['loss']:.3g}",
        "gap": f"{row['energy_gap']:.2g}",
        "local": f"{row['local_accept_prob']:.2f}",
    }
    if math.isfinite(row["global_accept_prob"]):
        postfix["global"] = f"{row['global_accept_prob']:.2f}"
    if math.isfinite(row["flow_ess"]):
        postfix["ess"] = f"{row['flow_ess']:.2f}"
    if "model_zone_weights" in row:
        gap = np.max(np.abs(np.subtract(row["model_zone_weights"], row["bank_zone_weights"])))
        postfix["zones"] = f"{gap:.3f}"
    return postfix
