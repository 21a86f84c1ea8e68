"""One place that turns a sampler's name into its EBM tilt and negative sampler.

``numpyro-ebm train``, the run loader (:mod:`numpyro_ebm.runs`), the paper reproduction
(:mod:`numpyro_ebm.reproduce`, hence ``numpyro-ebm demo``) all build their models here, so a
method means the same thing everywhere:

========== ================================ ============================================
name       negatives class                  tilt ``rho`` of the EBM ``exp(-E) rho``
========== ================================ ============================================
flowmc     :class:`~numpyro_ebm.negatives.FlowMC`   ``"base"``: the flow's base (balanced start)
ula        :class:`~numpyro_ebm.negatives.ULA`      ``"none"``: the paper's untilted ``exp(-E)``
mala       :class:`~numpyro_ebm.negatives.MALA`     ``"none"``
shortrun   :class:`~numpyro_ebm.negatives.ShortRun` ``"none"``
ntebm      :class:`~numpyro_ebm.negatives.NTEBM`    ``"flow"``: the flow itself, trained with ``E``
coopflow   :class:`~numpyro_ebm.negatives.CoopFlow` ``"none"``: Xie et al.'s plain EBM
========== ================================ ============================================

A negatives class may declare its tilt as a class attribute ``tilt``; :func:`tilt_of` reads it
when present and falls back to the table above otherwise. Importing this module does not import
JAX (the command line's ``--help`` relies on that); :func:`build` does.

Example:
    >>> tilt_of("ntebm"), has_flow("ula")
    ('flow', False)
"""

from __future__ import annotations

from typing import Any

__all__ = ["SAMPLERS", "TILTS", "tilt_of", "has_flow", "sampler_class", "make_sampler", "build"]

SAMPLERS = ("flowmc", "ula", "mala", "shortrun", "ntebm", "coopflow")
TILTS = ("base", "flow", "none")
_CLASS = {
    "flowmc": "FlowMC",
    "ula": "ULA",
    "mala": "MALA",
    "shortrun": "ShortRun",
    "ntebm": "NTEBM",
    "coopflow": "CoopFlow",
}
# Used unless the negatives class declares `tilt` itself.
_TILT = {
    "flowmc": "base",
    "ula": "none",
    "mala": "none",
    "shortrun": "none",
    "ntebm": "flow",
    "coopflow": "none",
}
_HAS_FLOW = ("flowmc", "coopflow", "ntebm")


def _check(name: str) -> None:
    if name not in _CLASS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}.")


def sampler_class(name: str) -> type:
    """The :mod:`numpyro_ebm.negatives` class of sampler ``name`` (imports JAX)."""
    _check(name)
    from numpyro_ebm import negatives

    return getattr(negatives, _CLASS[name])


def tilt_of(name: str) -> str:
    """``"base"``, ``"flow"`` or ``"none"``: how sampler ``name``'s EBM is tilted (no JAX import
    unless the negatives module is already loaded, where a class attribute ``tilt`` wins)."""
    _check(name)
    import sys

    negatives = sys.modules.get("numpyro_ebm.negatives")
    declared = getattr(getattr(negatives, _CLASS[name], None), "tilt", None)
    return declared if declared in TILTS else _TILT[name]


def has_flow(name: str) -> bool:
    """Whether sampler ``name`` needs a flow."""
    _check(name)
    return name in _HAS_FLOW


def build(name: str, net, flow=None, options: dict[str, Any] | None = None, *, base=None):
    """The EBM and the negative sampler of method ``name``.

    Args:
        name: one of :data:`SAMPLERS`.
        net: the energy network ``E`` (e.g. ``nets.ToyNet(dim, key=k)``).
        flow: the flow (``None`` for samplers without one). For NT-EBM it becomes the EBM's
            trainable tilt; for flowMC-EBM and CoopFlow the sampler's flow.
        options: keyword arguments of the negatives class (``num_particles``, ``step_size``, ...).
        base: the tilt of a ``"base"``-tilted EBM; default ``flow.base_dist``. Image flows pass
            their push-forward (``images.image_tilt``), the flow's density at initialisation.

    Returns:
        ``(ebm, sampler)``.

    Example:
        >>> import jax
        >>> from numpyro_ebm.flows import default_flow
        >>> from numpyro_ebm.nets import ToyNet
        >>> flow = default_flow(jax.random.key(0), 2, identity_init=True)
        >>> ebm, sampler = build("flowmc", ToyNet(2, key=jax.random.key(1)), flow, {"num_particles": 8})
        >>> type(sampler).__name__, ebm.dim, ebm.base is not None  # tilted by the flow's base
        ('FlowMC', 2, True)
    """
    from numpyro_ebm.energy import EnergyModel

    _check(name)
    if has_flow(name) and flow is None:
        raise ValueError(f"sampler {name!r} needs a flow; build one with flows.default_flow(key, dim).")
    tilt = tilt_of(name)
    if tilt == "base":
        ebm = EnergyModel(net, flow.base_dist if base is None else base)
    elif tilt == "flow":
        ebm = EnergyModel(net, flow, trainable_base=True)
    else:
        ebm = EnergyModel(net, None)
    return ebm, make_sampler(name, flow, options)


def make_sampler(name: str, flow=None, options: dict[str, Any] | None = None):
    """The negatives sampler of method ``name`` with ``options``; ``flow`` if its class takes one.

    ``options["settings"]``, a :class:`~numpyro_ebm.settings.FlowMCSettings`, goes to the class's
    ``from_settings`` (``negatives.FlowMC``) with the other options.

    Example:
        >>> type(make_sampler("ula", None, {"num_mcmc_steps": 5})).__name__
        'ULA'
    """
    cls = sampler_class(name)
    options = dict(options or {})
    if "settings" in options:
        return cls.from_settings(flow, options.pop("settings"), **options)
    takes_flow = "flow" in getattr(cls, "__dataclass_fields__", {})
    return cls(flow, **options) if takes_flow else cls(**options)
