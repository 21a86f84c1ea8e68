"""Reproduce the experiments of Grenioux, Moulines and Gabrié (2023) at three budgets.

``run(name, preset=..., out_dir=...)`` trains the paper's models on one experiment, evaluates the
paper's metric and writes ``metrics.json`` and figures into ``out_dir``:

* ``figure1``: the 2:1 two-mode example (Sec. 4.1, Fig. 1), flowMC-EBM beside ULA-EBM; the EBM
  weight of the ``(1.5, 1.5)`` mode by grid integration and its history. ``numpyro-ebm demo``
  is this experiment (:mod:`~numpyro_ebm.reproduce.figure1`).
* ``table3``: the line of four Gaussians (App. C.3, Table 3), the three zone-weight MSEs.
* ``table1``: eight Gaussians and rings (Sec. 4.3, Table 1), the median squared log-density error.
* ``table2``: the 4-mode Gaussian mixture in d = 16, 32, 64 (Sec. 4.4, Table 2, Fig. 6):
  CoopFlow, NT-EBM, ULA-EBM and flowMC-EBM, the maximum R-hat of 128 chains of each method's
  own sampler, the mode weights, and R-hat against training time (``figure6.png``).
* ``cifar10``: the CIFAR-10 EBM (Sec. 4, App. C.6, Figs. 7-8) from a local copy of the binary
  data set (``data=DIR``); ``digits``: the same experiment on scikit-learn's 8x8 digits.

Presets (:data:`PRESETS`): ``"paper"`` (the paper's settings; where it is silent the choice is
marked "reconstructed" in :mod:`~numpyro_ebm.reproduce.presets`), ``"cpu"`` (a budget for a
2-core CPU aiming at the paper's statistical outcome) and ``"quick"`` (a smoke run of seconds).
Every result carries the wall time and the work done (:func:`sampler_work`).

Same seed, same numbers: two processes running the same experiment with the same key write the
same ``metrics.json`` numbers (times aside) on the same machine; see ``docs/reproduction.md``.

Example:
    >>> from numpyro_ebm import reproduce
    >>> sorted(reproduce.EXPERIMENTS), reproduce.PRESETS
    (['cifar10', 'digits', 'figure1', 'table1', 'table2', 'table3'], ('quick', 'cpu', 'paper'))
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from numpyro_ebm._json import jsonable, write_json
from numpyro_ebm.reproduce.common import machine, sampler_work, total_work
from numpyro_ebm.reproduce.figure1 import figure1
from numpyro_ebm.reproduce.images import cifar10, digits
from numpyro_ebm.reproduce.mixture import table2
from numpyro_ebm.reproduce.mixture_presets import TABLE2_AT_DIM, TABLE2_DIMS, TABLE2_RHAT
from numpyro_ebm.reproduce.presets import GRID, PRESETS, FlowArch, Method, Schedule, check, config
from numpyro_ebm.reproduce.toy2d import table1, table3

__all__ = [
    "run",
    "EXPERIMENTS",
    "PRESETS",
    "Method",
    "Schedule",
    "FlowArch",
    "sampler_work",
    "config",
    "GRID",
    "TABLE2_AT_DIM",
    "TABLE2_DIMS",
    "TABLE2_RHAT",
]

EXPERIMENTS = {
    "figure1": figure1,
    "table1": table1,
    "table2": table2,
    "table3": table3,
    "cifar10": cifar10,
    "digits": digits,
}
# Extra keyword arguments each experiment accepts (anything else is a usage error).
_OPTIONS = {"figure1": ("steps",), "table2": ("dims", "methods"), "cifar10": ("data",), "digits": ()}


def run(
    name: str,
    *,
    preset: str,
    out_dir: str | Path,
    key: int = 0,
    progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Run one experiment at one budget; write ``metrics.json`` and figures to ``out_dir``.

    Args:
        name: one of :data:`EXPERIMENTS`.
        preset: one of :data:`PRESETS` (``"quick"``, ``"cpu"``, ``"paper"``).
        out_dir: directory for the outputs (created).
        key: integer seed.
        progress: show progress bars.
        **options: ``dims=(16, 32)`` for ``table2`` (default: the preset's) and ``methods=("NT-EBM",)``
            (some rows only, each with its seed of the full table); ``steps=N`` for
            ``figure1`` (training steps per method); ``data=DIR`` for ``cifar10`` (required: the
            ``cifar-10-batches-bin`` folder).

    Returns:
        The metrics (as written to ``metrics.json``): the experiment's numbers per method, the
        wall time, the work (sampler evaluations), the settings and the machine.

    Example:
        A minute on a CPU, so the doctests skip it (tests/test_reproduce.py runs it):

        >>> import tempfile
        >>> from numpyro_ebm import reproduce
        >>> m = reproduce.run("figure1", preset="quick", out_dir=tempfile.mkdtemp(),
        ...                   progress=False)  # doctest: +SKIP
        >>> sorted(m["methods"])  # doctest: +SKIP
        ['ULA-EBM', 'flowMC-EBM']
    """
    check(name, preset)
    options = {k: v for k, v in options.items() if v is not None}
    for option in options:
        if option not in _OPTIONS.get(name, ()):
            allowed = [n for n, opts in _OPTIONS.items() if option in opts]
            where = f"; it applies to {' and '.join(allowed)} only" if allowed else ""
            raise ValueError(f"{option}={options[option]!r} is not an option of {name!r}{where}.")
    if option_needed := [o for o in ("data",) if o in _OPTIONS.get(name, ()) and o not in options]:
        raise ValueError(f"{name} needs {option_needed[0]}=DIR: the folder of the binary CIFAR-10 files.")
    if isinstance(key, bool) or not isinstance(key, int | np.integer):
        raise TypeError(f"key must be an integer seed; got {key!r}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    where = machine()  # before the run: the code version it started with
    metrics = EXPERIMENTS[name](preset, jax.random.key(int(key)), progress, out_dir, **options)
    metrics = {
        "experiment": name,
        "preset": preset,
        "key": int(key),
        **metrics,
        "seconds": time.perf_counter() - t0,
        "machine": where,
    }
    metrics["work"] = total_work(metrics)
    write_json(out_dir / "metrics.json", jsonable(metrics))
    return metrics
