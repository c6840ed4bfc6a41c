"""Pick an adapter by alias or dotted path."""

from __future__ import annotations

import difflib
import importlib
import os

from .errors import ConfigurationError

__all__ = ["ALIASES", "resolve_adapter", "create_adapter"]

ALIASES: dict[str, str] = {
    "rq": "adapters.rq:RQAdapter",
    "celery": "adapters.celery:CeleryAdapter",
    "inline": "adapters.inline:InlineAdapter",
}


def resolve_adapter(name: str):
    """The adapter class for an alias (``rq``) or a path (``pkg.mod:Class`` or ``pkg.mod.Class``)."""
    from .base import QueueAdapter

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
    if not (isinstance(cls, type) and issubclass(cls, QueueAdapter)):
        raise ConfigurationError(f"{target!r} is not a QueueAdapter subclass")
    return cls


def create_adapter(name: str | None = None, settings=None):
    """An adapter instance for ``name`` or ``QUEUE_BACKEND`` (default ``rq``)."""
    return resolve_adapter(name or os.environ.get("QUEUE_BACKEND") or "rq")(settings)
