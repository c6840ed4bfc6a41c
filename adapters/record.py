"""The job record: one Redis hash per job, ``{ns}job:{id}``, every value a string.

Each field is declared once, in ``FIELDS`` below: its name, its Python type, how it is
encoded in the hash, and one line of documentation (the list at the end of this
docstring is generated from those lines). ``encode`` turns typed values into the
hash's strings, ``decode`` turns a hash back into typed values, and the Lua scripts
(``adapters/lua/``) get the field lists they return by position from here
(``CLAIM_FIELDS``, ``DISPATCH_FIELDS``), generated into them when they are loaded.

Encodings: a string as it is; an int as ``str``; a float or a time (Unix seconds) as
``repr``; JSON for structured values (the payload compact, the rest as ``json.dumps``
writes it); a flag as ``"1"``; and ``""`` for ``None`` (or for a flag that is not set,
or for empty ``links``). A field that is absent reads as ``""``: ``decode`` gives it
its default. A field this version does not declare is passed through as a string.

Fields:
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Iterable

__all__ = ["FIELDS", "Field", "encode", "decode", "CLAIM_FIELDS", "DISPATCH_FIELDS",
           "DURATION_BUCKETS"]


@dataclasses.dataclass(frozen=True)
class Codec:
    """How one kind of value is stored: ``encode`` for a value that is not None,
    ``decode`` for a stored string that is not empty."""

    type: str
    encoding: str
    encode: Callable[[Any], str]
    decode: Callable[[str], Any]


def _json(value: Any) -> str:
    return json.dumps(value)


def _rate(value: tuple[int, float]) -> str:
    limit, window = value
    return f"{int(limit)} {float(window)!r}" if limit else ""


def _unrate(raw: str) -> tuple[int, float]:
    limit, window = raw.split(" ", 1)
    return int(limit), float(window)


STR = Codec("str", "as is", str, str)
INT = Codec("int", "decimal", lambda v: str(int(v)), int)
FLOAT = Codec("float", "repr", lambda v: repr(float(v)), float)
TIME = Codec("float | None", "repr of Unix seconds", lambda v: repr(float(v)), float)
FLAG = Codec("bool", '"1" or ""', lambda v: "1" if v else "", lambda raw: raw == "1")
JSON = Codec("Any", "JSON", _json, json.loads)
COMPACT_JSON = Codec("dict", "JSON without spaces",
                     lambda v: json.dumps(v, allow_nan=False, separators=(",", ":")), json.loads)
OBJECT = Codec("dict", 'JSON, "" when empty', lambda v: _json(v) if v else "", json.loads)
RATE = Codec("tuple[int, float] | None", '"<limit> <window seconds>"', _rate, _unrate)
EVENTS = Codec("list[dict]", "JSON lines",
               lambda v: "\n".join(json.dumps(e, separators=(",", ":")) for e in v),
               lambda raw: [json.loads(line) for line in raw.split("\n") if line])


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    codec: Codec
    doc: str
    default: Any = None

    @property
    def type(self) -> str:
        """The Python type of its decoded value."""
        optional = self.default is None and "None" not in self.codec.type
        return self.codec.type + (" | None" if optional and self.codec.type != "Any" else "")

    def empty(self) -> Any:
        """The value of an absent or empty field (a fresh one for mutable defaults)."""
        return self.default() if callable(self.default) else self.default


_DECLARED = [
    # -- written at enqueue ---------------------------------------------------------
    Field("id", STR, "the job's stable id, the same on every attempt (uuid4 hex)", ""),
    Field("type", STR, "the registered job name, e.g. ``email.send``", ""),
    Field("tenant", STR, "the tenant that owns the job", ""),
    Field("backend", STR, "the engine alias that runs it (``rq``, ``celery``, ``inline``)", ""),
    Field("state", STR, "scheduled, queued, started, retrying, succeeded, failed or canceled", ""),
    Field("queue", STR, "the named queue", ""),
    Field("priority", STR, "``high``, ``default`` or ``low``", "default"),
    Field("payload", COMPACT_JSON, "the JSON object of arguments the job function receives",
          dict),
    Field("attempts", INT, "attempts started so far (0 before the first claim)", 0),
    Field("max_retries", INT, "retries allowed after the first attempt", 0),
    Field("timeout", FLOAT, "hard time limit of one attempt, seconds", 0.0),
    Field("rate", RATE, "the job type's rate limit when enqueued (starts per window)"),
    Field("created_at", TIME, "when it was enqueued"),
    Field("run_at", TIME, "when it may start as asked (delay, run_at), or its next retry"),
    Field("expires_at", TIME, "after this it is canceled (``expired``) unless started"),
    Field("idempotency_key", STR, "the idempotency key it was enqueued with"),
    Field("retry_of", STR, "the id of the failed or canceled job it replays"),
    Field("retried_as", STR, "the ids of the jobs that replay it, oldest first, space-separated"),
    Field("links", OBJECT, 'related ids, e.g. ``{"workflow": ...}``, ``{"parent": ...}``',
          dict),
    Field("token", STR, "its current delivery's token; only that delivery may run it"),
    # -- workflows --------------------------------------------------------------------
    Field("wf", STR, "the id of its workflow (``{ns}wf:{id}``)"),
    Field("wf_role", STR, "its role there: ``member``, ``header`` or ``body``"),
    Field("wf_next", STR, "in a chain, the id of the job after it"),
    Field("waiting", FLAG, "held until the jobs before it in its workflow succeed", False),
    Field("upstream", JSON, "what it was released with: the chain's previous result, the chord header's"),
    # -- written while it runs and when it ends -----------------------------------------
    Field("started_at", TIME, "when the latest attempt started"),
    Field("worker", STR, "``host:pid`` of the worker that ran the latest attempt"),
    Field("progress", JSON, '``{"current", "total", "message"}`` as last reported'),
    Field("finished_at", TIME, "when it ended"),
    Field("result", JSON, "the JSON return value once succeeded"),
    Field("error", JSON, '``{"type", "message", ...}`` of the latest failure'),
    Field("cancel_reason", STR, "why it was canceled: requested, expired, upstream_failed, ..."),
    Field("cancel_requested", FLAG, "a cancel came while it ran; the worker stops it", False),
    Field("lost", INT, "how many times a worker died while running it", 0),
    Field("waited", INT, "callers that waited for it to end (``?wait=``); each is woken "
                         "through ``{ns}done:{id}`` when it does", 0),
    Field("events", EVENTS, "its history, one JSON object per state change", list),
]

FIELDS: dict[str, Field] = {f.name: f for f in _DECLARED}
"""Every field of the job hash, by name, in the order documented."""

CLAIM_FIELDS = ("attempts", "type", "payload", "tenant", "queue", "timeout", "max_retries",
                "links", "upstream")
"""What the claim script returns after ``run``, in this order (``attempts`` already
counting the attempt it starts), as stored."""

DISPATCH_FIELDS = ("queue", "priority", "timeout", "type")
"""What the maintenance script returns of each job it releases, after its id and new
token, in this order, as stored."""

DURATION_BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
                    "10", "30", "60", "120", "300", "600")
"""Upper bounds (seconds) of the attempt-duration buckets the finish script counts in
``{ns}stats`` (``ran|type|backend|outcome|le``, ``le`` spelled as here; above the last
one it is ``+Inf``)."""


_DECODE = {f.name: f.codec.decode for f in _DECLARED}
_EMPTY = {f.name: f.default for f in _DECLARED}


def encode(fields: dict[str, Any]) -> dict[str, str]:
    """The hash strings of ``fields`` (typed values; ``None`` is stored as ``""``).

    Raises ``KeyError`` for a name that is not a declared field."""
    out = {}
    for name, value in fields.items():
        try:
            codec = FIELDS[name].codec
        except KeyError:
            raise KeyError(f"{name!r} is not a field of the job record (adapters/record.py)")
        out[name] = "" if value is None else codec.encode(value)
    return out


def decode(stored: dict[str, str], names: Iterable[str] | None = None) -> dict[str, Any]:
    """Typed values of a job hash: every declared field, or only ``names`` (an absent or
    empty one as its default: ``None``, ``0``, ``{}``, ...); with every field, any
    undeclared one follows as stored."""
    out: dict[str, Any] = {}
    for name in FIELDS if names is None else names:
        raw = stored.get(name)
        if raw:
            out[name] = _DECODE[name](raw)
        else:
            empty = _EMPTY[name]
            out[name] = empty() if callable(empty) else empty
    if names is None:
        for name, raw in stored.items():
            if name not in FIELDS:
                out[name] = raw
    return out


__doc__ += "\n".join(f"    {f.name:<17}{f.type:<26}{f.doc} [{f.codec.encoding}]"
                     for f in _DECLARED) + "\n"
