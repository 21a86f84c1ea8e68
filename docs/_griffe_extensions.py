"""Griffe extensions for the API pages (loaded by ``mkdocs.yml``; not part of the package).

* ``ExampleSections``: our docstrings head their doctests ``Example:`` (Google style allows it);
  griffe's Google parser only knows ``Examples:`` and would render the doctest as a quote.
* ``EquinoxInit``: an ``equinox.Module`` gets a dataclass ``__init__`` at runtime, which static
  analysis cannot see; without one, griffe reports every documented ``Args:`` entry of such a
  class as "not in the signature". This builds that ``__init__`` from the annotated fields.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)
_EQX_MODULE = "equinox.Module"
_NOT_FIELDS = ("AbstractVar", "AbstractClassVar", "ClassVar")


class ExampleSections(griffe.Extension):
    """Read a docstring section ``Example:`` as ``Examples:``."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)


def _is_equinox(cls: griffe.Class) -> bool:
    if any(getattr(base, "canonical_path", str(base)) == _EQX_MODULE for base in cls.bases):
        return True
    try:
        return any(_is_equinox(parent) for parent in cls.resolved_bases)
    except Exception:  # an unresolvable base: not ours to document
        return False


def _fields(cls: griffe.Class) -> list[griffe.Parameter]:
    fields, kw_only = [], False
    for member in cls.members.values():
        if member.is_alias or not member.is_attribute or member.annotation is None:
            continue
        if "instance-attribute" not in member.labels or "property" in member.labels:
            continue
        annotation = str(member.annotation)
        if annotation.endswith("KW_ONLY"):
            kw_only = True
            continue
        if annotation.split("[")[0].split(".")[-1] in _NOT_FIELDS:
            continue
        value = member.value
        if isinstance(value, griffe.ExprCall) and str(value.function).endswith("field"):
            args = {getattr(a, "name", None): getattr(a, "value", None) for a in value.arguments}
            if str(args.get("init")) == "False":
                continue
            value = args.get("default")
        kind = griffe.ParameterKind.keyword_only if kw_only else griffe.ParameterKind.positional_or_keyword
        fields.append(griffe.Parameter(member.name, annotation=member.annotation, kind=kind, default=value))
    return fields


class EquinoxInit(griffe.Extension):
    """Give each ``equinox.Module`` subclass without an ``__init__`` its dataclass ``__init__``."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        classes = [
            cls
            for module in _all_modules(pkg)  # subpackages too (numpyro_ebm.negatives.flowmc)
            for cls in module.classes.values()
            if not cls.is_alias and _is_equinox(cls)
        ]
        # Decide for all classes before adding any __init__, or a parent's would hide a child's.
        todo = [cls for cls in classes if not any("__init__" in c.members for c in [cls, *_mro(cls)])]
        for cls in todo:
            params = {}
            for parent in [*reversed(_mro(cls)), cls]:
                params.update({p.name: p for p in _fields(parent)})
            ordered = sorted(params.values(), key=lambda p: p.kind == griffe.ParameterKind.keyword_only)
            self_param = griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)
            init = griffe.Function(
                "__init__",
                lineno=0,
                endlineno=0,
                parent=cls,
                parameters=griffe.Parameters(self_param, *ordered),
                returns="None",
            )
            cls.set_member("__init__", init)

    on_package_loaded = on_package  # the older name of this hook, for older griffe versions


def _all_modules(module: griffe.Module) -> list[griffe.Module]:
    """``module`` and every module below it, aliases left out."""
    out = [module]
    for sub in module.modules.values():
        if not sub.is_alias:
            out += _all_modules(sub)
    return out


def _mro(cls: griffe.Class) -> list[griffe.Class]:
    try:
        return cls.mro()
    except Exception:  # an unresolvable base
        return []
