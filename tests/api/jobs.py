"""Job types the API tests run next to the service's own (JOB_MODULES adds this module)."""

import os

import redis
from marshmallow import Schema, fields

from adapters import job


class FailOncePayload(Schema):
    token = fields.String(required=True)


@job("api.fail_once", schema=FailOncePayload())
def fail_once(ctx, token):
    """Fail the first time a token is seen, succeed every time after (so a retry succeeds)."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        if client.set(f"test:failonce:{token}", ctx.job_id, nx=True):
            raise RuntimeError(f"failing once on purpose for {token}")
        return {"token": token, "attempt": ctx.attempt}
    finally:
        client.close()


@job("api.untyped")
def untyped(ctx, name, count=1):
    """A job without a payload schema: its signature is what the API checks."""
    return {"name": name, "count": count}


class AddPayload(Schema):
    n = fields.Integer(required=True, strict=True)


@job("api.add", schema=AddPayload())
def add(ctx, n):
    """Add ``n`` to the upstream result of a chain (0 if there is none)."""
    return (ctx.upstream or 0) + n


@job("api.collect")
def collect(ctx):
    """Return what a chord's header produced, in order."""
    return {"upstream": ctx.upstream, "workflow": ctx.links.get("workflow")}
