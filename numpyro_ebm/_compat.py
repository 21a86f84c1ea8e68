"""Renamed keyword arguments keep working, with a ``DeprecationWarning`` that names the new one.

The library names counts ``num_*``, as NumPyro does (``num_samples``, ``num_chains``); a public
keyword that was documented as ``n_*`` is still accepted through :func:`renamed_kwargs`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import TypeVar

__all__ = ["renamed_kwargs"]

F = TypeVar("F", bound=Callable)


def renamed_kwargs(**renames: str) -> Callable[[F], F]:
    """Decorator: accept each old keyword ``old=new`` as ``new``, warning once per call site.

    Example:
        >>> @renamed_kwargs(n_points="num_points")
        ... def f(*, num_points=3):
        ...     return num_points
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     f(n_points=5), caught[0].category.__name__
        (5, 'DeprecationWarning')
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{fn.__name__}() got both {old}= and {new}=; pass {new}= only.")
                    warnings.warn(
                        f"{fn.__name__}({old}=...) is deprecated; use {new}=...",
                        DeprecationWarning,
                        stacklevel=2,
                    )
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
