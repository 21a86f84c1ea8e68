"""Renamed names keep working, with a ``DeprecationWarning`` that names the new one.

The library names counts ``num_*``, as NumPyro does (``num_samples``, ``num_chains``). The names
it used before live in one table, :data:`RENAMED`, read by every shim here: keywords
(:func:`renamed_kwargs`, :func:`accepts_old_names` for dataclass-generated ``__init__``),
attributes (:func:`old_name`) and stored settings (:func:`renamed_keys`: a checkpoint or
``config.json`` written before the rename still resumes).
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = [
    "RENAMED",
    "renamed_kwargs",
    "accepts_old_names",
    "old_name",
    "get_renamed",
    "renamed_keys",
    "RenamedKeys",
]

F = TypeVar("F", bound=Callable)

RENAMED: dict[str, str] = {
    "n_particles": "num_particles",
    "n_local_steps": "num_local_steps",
    "n_cycles": "num_cycles",
    # The Langevin samplers' chain length: `num_steps` already names train()'s training steps,
    # and both sit in the same preset dicts and command line.
    "n_steps": "num_mcmc_steps",
    "n_mcmc_steps": "num_mcmc_steps",  # TemperedSMC: flowMC transitions per level
    "n_zones": "num_zones",
    "n_sectors": "num_sectors",
    "n_states": "num_states",
    "n_chains": "num_chains",
    # Acceptance as NumPyro names it (accept_prob): negatives' samples, train()'s history.
    "local_accept": "local_accept_prob",
    "global_accept": "global_accept_prob",
}
"""Old name -> new name, for every public name renamed in issue 12 (counts to ``num_*``)."""


def _deprecated(where: str, old: str, new: str, stacklevel: int) -> None:
    warnings.warn(f"{where}{old} is deprecated; use {new}", DeprecationWarning, stacklevel=stacklevel + 1)


def renamed_kwargs(**renames: str) -> Callable[[F], F]:
    """Decorator: accept each old keyword ``old=new`` as ``new``, with a ``DeprecationWarning``.

    Without arguments, the old names are those of :data:`RENAMED` whose new name is a parameter
    of the decorated function (or, for a function taking ``**kwargs``, all of them).

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
        table = renames or _table_for(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for old, new in table.items():
                if old in kwargs:
                    name = getattr(fn, "__qualname__", fn.__name__).removesuffix(".__init__")
                    if new in kwargs:
                        raise TypeError(f"{name}() got both {old}= and {new}=; pass {new}= only.")
                    _deprecated(f"{name}(", f"{old}=...)", f"{new}=...", stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def _table_for(fn: Callable) -> dict[str, str]:
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(RENAMED)
    return {old: new for old, new in RENAMED.items() if new in params}


def accepts_old_names(cls: type) -> type:
    """Class decorator: ``cls(old=...)`` works as ``cls(new=...)`` for the old names of
    :data:`RENAMED` (with a ``DeprecationWarning``), including on a dataclass-generated
    ``__init__`` (equinox modules); put it above ``@dataclass`` when there is one.
    Subclasses with a ``__init__`` of their own need the decorator again.

    Example:
        >>> from dataclasses import dataclass
        >>> @accepts_old_names
        ... @dataclass
        ... class Chains:
        ...     num_chains: int = 2
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     Chains(**{"n_chains": 4})
        Chains(num_chains=4)
    """
    cls.__init__ = renamed_kwargs()(cls.__init__)
    return cls


def old_name(new: str) -> property:
    """A read-only attribute under an old name that returns ``self.<new>``, with a warning.

    Example:
        >>> class Target:
        ...     num_zones = 3
        ...     n_zones = old_name("num_zones")
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     Target().n_zones
        3
    """
    old = next((o for o, n in RENAMED.items() if n == new), None)

    def get(self):
        _deprecated(f"{type(self).__name__}.", old or "(old name)", f".{new}", stacklevel=2)
        return getattr(self, new)

    return property(get, doc=f"Deprecated: use ``{new}``.")


def get_renamed(obj: Any, new: str, default: Any = None) -> Any:
    """``obj.<new>``, else ``obj.<old>`` (a user's object written before the rename, e.g. a zone
    function carrying ``n_zones``), else ``default``.

    Example:
        >>> class OldZones:
        ...     n_zones = 4
        >>> get_renamed(OldZones(), "num_zones")
        4
    """
    value = getattr(obj, new, None)
    if value is not None:
        return value
    for old, renamed in RENAMED.items():
        if renamed == new and getattr(obj, old, None) is not None:
            return getattr(obj, old)
    return default


def renamed_keys(record: Any) -> Any:
    """``record`` (nested dicts and lists, as read from JSON) with old keys renamed: stored
    settings written before the rename compare equal to a new run's. No warning: the user did
    nothing wrong.

    Example:
        >>> renamed_keys({"sampler": {"n_particles": 8, "keep": "last"}, "steps": 10})
        {'sampler': {'num_particles': 8, 'keep': 'last'}, 'steps': 10}
    """
    if isinstance(record, Mapping):
        return {RENAMED.get(k, k): renamed_keys(v) for k, v in record.items()}
    if isinstance(record, list):
        return [renamed_keys(v) for v in record]
    return record


class RenamedKeys(dict):
    """A dict (e.g. ``train()``'s history) that answers an old key with the new key's value,
    with a ``DeprecationWarning``.

    Example:
        >>> history = RenamedKeys(local_accept_prob=[0.6])
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     history["local_accept"]
        [0.6]
    """

    def __missing__(self, key):
        new = RENAMED.get(key)
        if new is None or new not in self:
            raise KeyError(key)
        _deprecated("key ", f"[{key!r}]", f"[{new!r}]", stacklevel=2)
        return self[new]
