"""JSON output of the command line: NaN-free values, files written atomically."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from numpyro_ebm._atomic import atomic_file

__all__ = ["jsonable", "write_json"]


def jsonable(x: Any) -> Any:
    """``x`` with arrays as lists and NaN/inf as ``None`` (which JSON can hold).

    Example:
        >>> jsonable({"w": np.array([0.5, np.nan]), "n": np.int32(3)})
        {'w': [0.5, None], 'n': 3}
    """
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if hasattr(x, "__array__") or isinstance(x, np.generic):
        x = np.asarray(x)
        return jsonable(x.tolist()) if x.ndim else jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` to ``path`` atomically (a temporary file, then ``os.replace``)."""
    with atomic_file(path, "w") as f:
        json.dump(obj, f, indent=1, default=_default)
        f.write("\n")


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray) or hasattr(obj, "__array__"):
        return np.asarray(obj).tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
