"""Two small job types for trying the service out: ``demo.echo`` and ``demo.sleep``."""

from __future__ import annotations

import time

from marshmallow import Schema, fields, validate

from adapters import JobContext, job


class EchoPayload(Schema):
    """Anything JSON under ``message``, plus an optional ``data`` object."""

    message = fields.String(required=True, validate=validate.Length(max=10_000))
    data = fields.Dict(keys=fields.String())


class SleepPayload(Schema):
    """How long to sleep, in seconds, and how many progress steps to report."""

    seconds = fields.Float(required=True, validate=validate.Range(min=0, max=3600))
    steps = fields.Integer(strict=True, validate=validate.Range(min=1, max=1000))


@job("demo.echo", schema=EchoPayload(),
     examples=[{"message": "hello"}, {"message": "héllo", "data": {"n": 1, "tags": ["a", "b"]}}])
def echo(ctx: JobContext, message: str, data: dict | None = None) -> dict:
    """Return the payload it was given."""
    result = {"message": message}
    if data is not None:
        result["data"] = data
    return result


@job("demo.sleep", schema=SleepPayload(), examples=[{"seconds": 0.2, "steps": 2}])
def sleep(ctx: JobContext, seconds: float, steps: int = 10) -> dict:
    """Sleep ``seconds`` in ``steps`` steps, reporting progress after each; a cancel interrupts it."""
    started = time.monotonic()
    for step in range(1, steps + 1):
        time.sleep(seconds / steps)
        ctx.progress(step, steps, f"slept {step}/{steps}")
    return {"slept": round(time.monotonic() - started, 3)}
