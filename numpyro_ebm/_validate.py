"""Shared checks of user input: each raises a ``ValueError`` that names the value and the fix.

Used wherever a public function takes a count or data, so the rules (``True`` is not a count, a
NumPy integer is) and the messages are written once. NumPy is imported only where an array is
checked: :mod:`numpyro_ebm.settings` uses :func:`is_count`, and ``numpyro-ebm --help`` imports no
NumPy.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["is_count", "positive_int", "fraction", "check_finite_rows"]


def is_count(value: Any, minimum: int = 1) -> bool:
    """Whether ``value`` is an integer ``>= minimum``: a NumPy integer is, a ``bool`` is not.

    Example:
        >>> import numpy as np
        >>> is_count(np.int64(2), 2), is_count(True), is_count(2.0)
        (True, False, False)
    """
    # NumPy's integer types register as numbers.Integral, so no NumPy import is needed here.
    return not isinstance(value, bool) and isinstance(value, numbers.Integral) and bool(value >= minimum)


def positive_int(value: Any, name: str) -> int:
    """``value`` as an ``int`` if it is an integer >= 1 (a ``bool`` is not), else ``ValueError``.

    Example:
        >>> import numpy as np
        >>> positive_int(np.int64(3), "n")
        3
        >>> positive_int(0, "n")
        Traceback (most recent call last):
        ...
        ValueError: n must be an integer >= 1; got 0.
    """
    if not is_count(value):
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}.")
    return int(value)


def fraction(value: Any, name: str, *, closed_high: bool = False) -> float:
    """``value`` as a ``float`` if it is a finite number in ``[0, 1)`` (``[0, 1]`` with
    ``closed_high``; a ``bool`` is not a number here), else ``ValueError``.

    Example:
        >>> fraction(0.25, "ema")
        0.25
        >>> fraction(1.0, "ema")
        Traceback (most recent call last):
        ...
        ValueError: ema must be a number in [0, 1); got 1.0.
    """
    interval = "[0, 1]" if closed_high else "[0, 1)"
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or value > 1 or (value == 1 and not closed_high):
        raise ValueError(f"{name} must be a number in {interval}; got {value!r}.")
    return float(value)


def check_finite_rows(x: Any, name: str, fix: str, *, error: type[Exception] = ValueError) -> None:
    """Raise ``error`` if a row of the 2-D (or N-D: rows along axis 0) array ``x`` holds NaN or inf.

    The message counts the bad rows and names the first, then says ``fix``.

    Example:
        >>> import numpy as np
        >>> check_finite_rows(np.array([[0.0, 1.0], [np.nan, 2.0]]), "data", "drop them.")
        Traceback (most recent call last):
        ...
        ValueError: data holds 1 row(s) with NaN or inf, the first at row 1; drop them.
    """
    import numpy as np

    x = np.asarray(x)
    bad = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1) if x.ndim else ~np.isfinite(x[None])
    if bad.any():
        rows = np.flatnonzero(bad)
        raise error(f"{name} holds {rows.size} row(s) with NaN or inf, the first at row {rows[0]}; {fix}")
