"""Pick an engine by alias or dotted path."""

from __future__ import annotations

import difflib
import importlib

from .engine import Engine
from .errors import ConfigurationError

__all__ = ["ALIASES", "resolve_engine"]

ALIASES: dict[str, str] = {
    "rq": "adapters.rq:RQEngine",
    "celery": "adapters.celery:CeleryEngine",
    "dramatiq": "adapters.dramatiq:DramatiqEngine",
    "inline": "adapters.inline:InlineEngine",
}


def resolve_engine(name: str):
    """The engine class for an alias (``rq``) or a path (``pkg.mod:Class`` or ``pkg.mod.Class``)."""
    target = ALIASES.get(name, name)
    if ":" in target:
        module_name, _, attr = target.partition(":")
    elif "." in target:
        module_name, _, attr = target.rpartition(".")
    else:
        hint = difflib.get_close_matches(name, ALIASES, n=1)
        raise ConfigurationError(
            f"unknown queue backend {name!r}"
            + (f"; did you mean {hint[0]!r}?" if hint else "")
            + f" (choose one of {', '.join(sorted(ALIASES))} or give a dotted path)")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load queue backend {name!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Engine)):
        raise ConfigurationError(f"{target!r} is not an adapters.Engine subclass")
    return cls

