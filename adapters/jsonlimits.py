"""What a value must be to travel as JSON through the ledger: the limits and their check.

A payload is written to Redis as JSON and read back by a worker, by Python's own
``json`` module; the API reads request bodies the same way. So a value is refused
at the door (with the field at fault named) when a later step would fail on it or
quietly change it: containers nested deeper than :data:`MAX_DEPTH`, integers of
more than :data:`MAX_INT_DIGITS` digits (Python will not read or write them), non-finite
floats, lone surrogates (no UTF-8 encoder can write them), object keys that are
not strings (JSON would turn ``{1: 2}`` into ``{"1": 2}``), and anything that is
not a JSON type at all.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "json_problems", "lone_surrogate", "field_name"]

MAX_DEPTH = 64
"""Most levels of arrays and objects a JSON document may nest (the outermost counts)."""
MAX_INT_DIGITS = 4300
"""Most digits of an integer: Python's own limit for reading and writing one."""

_INT_LIMIT = 10 ** MAX_INT_DIGITS
_SURROGATE = re.compile("[\ud800-\udfff]")
_DEPTH_MESSAGE = f"nests deeper than {MAX_DEPTH} levels of arrays and objects"


def lone_surrogate(text: str) -> str | None:
    """A message naming the first lone surrogate in ``text``, or None if it has none.

    JSON's ``\\ud83d\\ude00`` pairs are joined into one character by the parser, so
    any surrogate left in a ``str`` is a lone one."""
    match = _SURROGATE.search(text)
    if match is None:
        return None
    return (f"contains a lone surrogate (\\u{ord(match.group()):04x} at {match.start()}), "
            "which is not Unicode text; send valid UTF-8")


def field_name(prefix: str, key: Any) -> str:
    """``prefix.key``, or ``key`` itself at the top of a document."""
    return f"{prefix}.{key}" if prefix else str(key)


def json_problems(value: Any, prefix: str = "", depth: int = 0) -> dict[str, list[str]]:
    """Field errors of ``value`` as a JSON document (empty when it can travel as it is).

    ``prefix`` names ``value`` itself (``payload``, ``jobs.3.payload``); ``depth`` is
    how many containers already hold it. Iterative, so no value can exhaust the stack.
    """
    errors: dict[str, list[str]] = {}

    def fail(path: str, message: str) -> None:
        errors.setdefault(path or "_schema", []).append(message)

    stack = [(value, prefix, depth)]
    while stack:
        item, path, level = stack.pop()
        kind = type(item)
        if kind is str or isinstance(item, str):
            problem = lone_surrogate(item)
            if problem:
                fail(path, problem)
        elif item is None or item is True or item is False:
            pass
        elif isinstance(item, int):
            if not -_INT_LIMIT < item < _INT_LIMIT:
                fail(path, f"is an integer of more than {MAX_INT_DIGITS} digits")
        elif isinstance(item, float):
            if not math.isfinite(item):
                fail(path, "is not a finite number")
        elif isinstance(item, dict):
            if level + 1 > MAX_DEPTH:
                fail(path, _DEPTH_MESSAGE)
                continue
            children = []
            for key, child in item.items():
                if not isinstance(key, str):
                    fail(path, f"has a key that is not a string ({key!r}); JSON object "
                               "keys are strings")
                    continue
                problem = lone_surrogate(key)
                if problem:
                    fail(field_name(path, key.encode("utf-8", "backslashreplace").decode()),
                         f"its name {problem}")
                    continue
                children.append((child, field_name(path, key), level + 1))
            stack.extend(reversed(children))  # popped in document order
        elif isinstance(item, (list, tuple)):
            if level + 1 > MAX_DEPTH:
                fail(path, _DEPTH_MESSAGE)
                continue
            stack.extend((item[index], field_name(path, index), level + 1)
                         for index in range(len(item) - 1, -1, -1))
        else:
            fail(path, f"is not a JSON value (a {kind.__name__})")
    return errors
