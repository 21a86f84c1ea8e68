"""Command-line flags generated from a settings dataclass, so defaults and help are written once.

Each field of the dataclass becomes a flag (``num_local_steps`` -> ``--num-local-steps``) whose type
follows the field's annotation (``bool`` -> ``--x/--no-x``, a ``Literal`` -> its choices, ``None``
accepted as ``none`` where the field allows it), whose default is the field's and whose help is
the field's entry in the dataclass's ``Attributes:`` docstring section. The dataclass checks the
values (``__post_init__``); :func:`settings_from` turns its ``ValueError`` into a usage error that
names the flags. Nothing here imports JAX.

Example:
    >>> import argparse
    >>> from numpyro_ebm.settings import FlowMCSettings
    >>> parser = argparse.ArgumentParser()
    >>> names = add_dataclass_flags(parser, FlowMCSettings)
    >>> args = parser.parse_args(["--num-particles", "8", "--no-adapt-step-size"])
    >>> settings_from(FlowMCSettings, {n: getattr(args, n) for n in names})
    FlowMCSettings(step_size=0.1, num_local_steps=4, global_move='isir', num_particles=8, \
particle_batch_size=None, target_accept_prob=0.574, adapt_step_size=False)
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
import types
import typing
from typing import Any

from numpyro_ebm._compat import RENAMED
from numpyro_ebm.commands.options import UsageError

__all__ = ["flag", "field_help", "add_dataclass_flags", "add_old_flags", "settings_from"]


def flag(name: str) -> str:
    """The flag of field ``name``: ``"num_local_steps"`` -> ``"--num-local-steps"``."""
    return "--" + name.replace("_", "-")


def field_help(cls: type) -> dict[str, str]:
    """``{field: text}`` from the ``Attributes:`` section of ``cls``'s Google-style docstring.

    Example:
        >>> from numpyro_ebm.settings import FlowMCSettings
        >>> field_help(FlowMCSettings)["num_particles"]
        'i-SIR particles per chain, the current state included (``>= 2``).'
    """
    lines = (cls.__doc__ or "").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:") + 1
    except StopIteration:
        return {}
    entries: dict[str, str] = {}
    name = indent = None
    for line in lines[start:]:
        if not line.strip():
            break
        depth = len(line) - len(line.lstrip())
        entry = re.match(r"\s*(\w+): (.*)", line)
        if entry and (indent is None or depth == indent):
            indent, name = depth, entry.group(1)
            entries[name] = entry.group(2).strip()
        elif name is not None and depth > indent:  # a continuation line
            entries[name] += " " + line.strip()
        else:
            break
    return entries


class _OldFlag(argparse.Action):
    """A flag renamed to ``num_*``: stores like the new one and says so on stderr."""

    def __call__(self, parser, namespace, values, option_string=None):
        new = flag(self.dest)
        print(f"{parser.prog}: {option_string} is deprecated; use {new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_old_flags(parser, name: str, **kwargs) -> None:
    """Hidden aliases of field ``name``'s flag under its old names (``_compat.RENAMED``: the
    old flag of ``--num-particles`` ends in ``-particles``): left out of ``--help``, they set
    nothing unless given. ``kwargs``: the new flag's ``type``/``choices``/``metavar``."""
    for old in (o for o, n in RENAMED.items() if n == name):
        parser.add_argument(
            flag(old), dest=name, action=_OldFlag, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs
        )


def _number(kind: type, text: str):
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number; got {text!r}")
    return value


def _argument(annotation) -> dict[str, Any]:
    """``add_argument`` keywords (type, choices, metavar, action) for a field's annotation."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    options = typing.get_args(annotation) if union else (annotation,)
    optional = type(None) in options
    (kind,) = [o for o in options if o is not type(None)] or [type(None)]
    if typing.get_origin(kind) is typing.Literal:  # e.g. Literal["imh", "isir"] | None
        choices = [*typing.get_args(kind), *([None] if optional else [])]
        return {
            "type": lambda text: None if optional and text == "none" else text,
            "choices": choices,
            "metavar": "{" + ",".join("none" if c is None else str(c) for c in choices) + "}",
        }
    if kind is bool:
        return {"action": argparse.BooleanOptionalAction}
    if kind in (int, float):

        def parse(text):
            return None if optional and text == "none" else _number(kind, text)

        parse.__name__ = kind.__name__  # argparse names the type in its messages
        return {"type": parse, "metavar": kind.__name__.upper()}
    return {"type": str}


def add_dataclass_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    names: tuple[str, ...] | None = None,
    defaults: bool = True,
    help_suffix: dict[str, str] | None = None,
) -> tuple[str, ...]:
    """Add one flag per field of dataclass ``cls`` (or of ``names``); return the field names.

    Args:
        parser: the parser (or argument group) to add to.
        cls: a dataclass whose docstring has an ``Attributes:`` section.
        names: the fields to add (default: all, in declaration order).
        defaults: the flags default to the fields' defaults (shown in ``--help``). With
            ``False`` a flag not given leaves no attribute on the parsed namespace
            (``argparse.SUPPRESS``), so that a caller can tell which were given (``None`` may be
            a given value), and the help names the field's default instead.
        help_suffix: text appended to a field's help, by field name.
    """
    hints = typing.get_type_hints(cls)
    docs = field_help(cls)
    added = []
    for field in dataclasses.fields(cls):
        if names is not None and field.name not in names:
            continue
        default = field.default
        text = docs.get(field.name, field.name).replace("``", "").rstrip(".")
        if not defaults:
            text += f" (default {'none' if default is None else default})"
        text += (help_suffix or {}).get(field.name, "")
        kind = _argument(hints[field.name])
        parser.add_argument(
            flag(field.name),
            dest=field.name,
            default=default if defaults else argparse.SUPPRESS,
            help=text.replace("%", "%%"),
            **kind,
        )
        if "action" not in kind:  # no boolean field was renamed
            add_old_flags(parser, field.name, **kind)
        added.append(field.name)
    return tuple(added)


def settings_from(cls: type, values: dict[str, Any]):
    """``cls(**values)`` (fields not in ``values`` keep their defaults); the dataclass's
    ``ValueError`` becomes a :class:`~numpyro_ebm.commands.options.UsageError` naming the flags."""
    try:
        return cls(**values)
    except ValueError as err:
        names = sorted((f.name for f in dataclasses.fields(cls)), key=len, reverse=True)
        message = re.sub(r"\b(" + "|".join(names) + r")\b", lambda m: flag(m.group(1)), str(err))
        raise UsageError(message) from None
