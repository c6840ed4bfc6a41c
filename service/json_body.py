"""Request bodies read as JSON within :mod:`adapters.jsonlimits`' limits, or refused with a 422.

Python's parser fails on some valid JSON with errors that are not "bad JSON": a
body nested some thousand levels deep raises ``RecursionError``, an integer of
more than 4300 digits a ``ValueError``; and it hands lone surrogates (``"\\ud800"``)
on as text that no UTF-8 encoder can write. Each of those is refused here, before
any view runs, naming the field at fault. Malformed JSON still raises
``json.JSONDecodeError`` (webargs answers 400).
"""

from __future__ import annotations

import json
import re
from typing import Any

from webargs import core
from webargs.flaskparser import FlaskParser

from adapters.jsonlimits import MAX_DEPTH, MAX_INT_DIGITS, field_name, json_problems

from .errors import ValidationProblem

__all__ = ["loads", "LimitedParser", "DETAIL"]

DETAIL = "the request body is not JSON this API can take; see errors"

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},:]|[^\s\[\]{},:"]+', re.DOTALL)


class _LongInteger(int):
    """Stands in for an integer literal too long to read, so the check can name it."""


def _read_int(literal: str) -> int:
    if len(literal) - literal.startswith("-") > MAX_INT_DIGITS:
        return _LongInteger(0)
    return int(literal)


def _too_deep_at(text: str) -> str:
    """The path of the first container past ``MAX_DEPTH`` in ``text`` (scanned, not parsed,
    so it cannot recurse)."""
    path: list[list] = []  # per open container: [is_object, key or index, expecting a key]
    for token in _TOKEN.finditer(text):
        tok = token.group()
        if tok in "[{":
            if len(path) >= MAX_DEPTH:
                break
            path.append([tok == "{", 0 if tok == "[" else None, tok == "{"])
        elif tok in "]}":
            if path:
                path.pop()
        elif not path:
            continue
        elif tok == ",":
            if path[-1][0]:
                path[-1][2] = True
            else:
                path[-1][1] += 1
        elif tok == ":":
            path[-1][2] = False
        elif path[-1][0] and path[-1][2] and tok.startswith('"'):
            try:
                path[-1][1] = json.loads(tok)
            except ValueError:
                path[-1][1] = tok[1:-1]
    name = ""
    for _, key, _ in path:
        name = field_name(name, key)
    return name or "_schema"


def loads(data: bytes | str) -> Any:
    """The body as JSON; ``ValidationProblem`` (422) if it is out of limits, naming the field."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data  # UnicodeDecodeError: 400
    try:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise
        except ValueError:  # an integer literal Python will not read: find it
            value = json.loads(text, parse_int=_read_int)
    except RecursionError:  # from either parse: the digits may come before the depth
        raise ValidationProblem(DETAIL, {_too_deep_at(text): [
            f"nests deeper than {MAX_DEPTH} levels of arrays and objects"]}) from None
    errors = _long_integers(value) or json_problems(value)
    if errors:
        raise ValidationProblem(DETAIL, errors)
    return value


def _long_integers(value: Any) -> dict[str, list[str]]:
    """Where ``_read_int`` left a stand-in (only after a ValueError, so rarely walked)."""
    errors: dict[str, list[str]] = {}
    stack = [(value, "", 0)]
    while stack:
        item, path, level = stack.pop()
        if type(item) is _LongInteger:
            errors.setdefault(path or "_schema", []).append(
                f"is an integer of more than {MAX_INT_DIGITS} digits")
        elif isinstance(item, dict) and level < MAX_DEPTH:
            stack.extend((v, field_name(path, k), level + 1) for k, v in item.items())
        elif isinstance(item, list) and level < MAX_DEPTH:
            stack.extend((v, field_name(path, i), level + 1) for i, v in enumerate(item))
    return errors


class LimitedParser(FlaskParser):
    """webargs' Flask parser, reading JSON bodies through :func:`loads`."""

    def _raw_load_json(self, req):
        if not core.is_json(req.mimetype):
            return core.missing
        data = req.get_data(cache=True)
        if not data:
            return core.missing
        try:
            return loads(data)
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError(f"Bytes decoding error : {exc.reason}",
                                       doc=str(exc.object), pos=exc.start) from exc
