"""``numpyro-ebm demo``: the paper's motivating example, which is ``reproduce figure1``.

Grenioux, Moulines, Gabrié (2023), Sec. 4.1 and Fig. 1: flowMC-EBM beside ULA-EBM on the 2:1
two-mode mixture. There is one implementation, :func:`numpyro_ebm.reproduce.figure1.figure1`;
the demo runs it at the ``cpu`` preset (``quick=True``: the ``quick`` preset) and prints
:func:`report`. Outputs: ``figure.png``, ``densities.png``, ``slice.png``, ``chains.png``,
``weights.png`` and ``metrics.json``.

Example:
    >>> metrics = run_demo("/tmp/demo", quick=True, progress=False)  # doctest: +SKIP
    >>> print(report(metrics, "/tmp/demo"))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_demo", "report", "PRESET", "QUICK_PRESET"]

#: The preset of ``reproduce figure1`` that the demo runs, and the one of ``quick=True``.
PRESET, QUICK_PRESET = "cpu", "quick"


def run_demo(
    out_dir,
    *,
    steps: int | None = None,
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
    preset: str | None = None,
) -> dict[str, Any]:
    """Run ``reproduce figure1`` at the demo's preset; write figures and ``metrics.json``.

    Args:
        out_dir: output folder (created if needed).
        steps: training steps per method (default: the preset's, 4000 for ``cpu``).
        quick: the ``quick`` preset (a few seconds, for tests).
        seed: random seed of the data, the initialisations and the training.
        progress: show the training progress bars.
        preset: any preset of ``reproduce`` (overrides ``quick``).

    Returns:
        The metrics of :func:`numpyro_ebm.reproduce.run`.
    """
    from numpyro_ebm import reproduce

    preset = preset or (QUICK_PRESET if quick else PRESET)
    return reproduce.run("figure1", preset=preset, out_dir=out_dir, key=seed, progress=progress, steps=steps)


def report(metrics: dict[str, Any], out_dir) -> str:
    """The table ``numpyro-ebm demo`` prints (:func:`numpyro_ebm.reproduce.figure1.report`)."""
    from numpyro_ebm.reproduce.figure1 import report as figure1_report

    return figure1_report(metrics, out_dir)
