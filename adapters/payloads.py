"""A payload checked against its job type: the schema's ``load``, else the function's
signature. The one rule, used at enqueue (:mod:`adapters.validation`) and for a job
type's ``examples`` at registration (:mod:`adapters.registry`)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

__all__ = ["check_payload", "flatten_errors"]


@functools.lru_cache(maxsize=None)
def _signature(func) -> inspect.Signature:
    return inspect.signature(func)


def check_payload(definition: Any, payload: dict) -> dict[str, list[str]]:
    """Field errors of ``payload`` for this job type, named ``payload.<field>``."""
    if definition.schema is not None:
        import marshmallow as ma

        try:
            definition.schema.load(payload)
        except ma.ValidationError as exc:
            return flatten_errors(exc.messages, "payload")
        return {}
    try:
        _signature(definition.func).bind(None, **payload)
    except TypeError as exc:
        return {"payload": [str(exc)]}
    return {}


def flatten_errors(errors: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested errors -> ``{"options.delay": ["..."], "payload.0.to": [...]}``."""
    flat: dict[str, list[str]] = {}
    if isinstance(errors, Mapping):
        for key, value in errors.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == "_schema":
                name = prefix or "_schema"
            for field, messages in flatten_errors(value, name).items():
                flat.setdefault(field, []).extend(messages)
    elif isinstance(errors, (list, tuple)):
        if all(isinstance(m, str) for m in errors):
            flat[prefix or "_schema"] = [str(m) for m in errors]
        else:
            for item in errors:
                for field, messages in flatten_errors(item, prefix).items():
                    flat.setdefault(field, []).extend(messages)
    elif errors is not None:
        flat[prefix or "_schema"] = [str(errors)]
    return flat
