"""``webhook.deliver`` (outbound, signed) and ``webhook.process`` (inbound, by source).

Deliveries are signed per the Standard Webhooks spec with ``WEBHOOK_SIGNING_SECRET``
and carry one ``webhook-id`` (made from the job id) on every attempt. The URL is
vetted by :mod:`service.ssrf` at enqueue (the payload schema) and again at send,
and the request goes to the very address that was vetted. Redirects are never
followed. 2xx is done; 408, 429, 5xx and network failures are retried with backoff
and jitter, at least as late as the receiver's ``Retry-After`` says; any other
answer fails at once (410: the endpoint is gone).

Inbound hooks (stored by :mod:`service.hooks`) are handled by ``webhook.process``,
which calls the handler registered for their source with :func:`hook_handler`, or
:func:`record_event`, which records the event in the source's event log.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import math
import re
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable

import redis
from marshmallow import Schema, ValidationError, fields, validate
from standardwebhooks import Webhook

from adapters import ConfigurationError, JobContext, JobNotFound, job
from service import config
from service.ssrf import (Resolver, Target, UnresolvableHost, UnsafeURL, check_url,
                          system_resolve)

from . import _http
from ._hookstore import HookStore

__all__ = [
    "DeliverySchema", "ProcessSchema", "DeliveryRetryable", "DeliveryFailed", "EndpointGone",
    "RetryHook", "HookNotStored", "HookEvent", "deliver_webhook", "process_hook", "hook_handler",
    "handler_for", "record_event", "check_webhook_url", "set_resolver", "webhook_id_for",
    "parse_retry_after", "USER_AGENT",
]

USER_AGENT = "Switchyard-Webhooks/0.1"
_EVENT = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
_SOURCE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

_resolver: Resolver = system_resolve


def set_resolver(resolve: Resolver | None) -> None:
    """Resolve webhook hosts with ``resolve(host, port) -> [address, ...]`` (``None``: the
    system's), e.g. a service-discovery client, or a test's fixed answers."""
    global _resolver
    _resolver = resolve or system_resolve


class DeliveryRetryable(Exception):
    """The receiver could not take the webhook now; retried, no sooner than ``retry_after``."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class DeliveryFailed(Exception):
    """The receiver refused the webhook for good (a 4xx, a redirect); not retried."""


class EndpointGone(DeliveryFailed):
    """The receiver answered 410 Gone: the endpoint no longer exists; stop sending to it."""


class RetryHook(Exception):
    """Raised by a hook handler to have ``webhook.process`` try again (after ``retry_after``)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class HookNotStored(JobNotFound):
    """``webhook.process`` found no stored hook for its source and id (expired or never received)."""


def check_webhook_url(url: str) -> Target:
    """Vet ``url`` with the configured allow-list and resolver (raises ``UnsafeURL`` or
    ``UnresolvableHost``), as the job does at send."""
    return check_url(url, allow=config.webhook_settings().allow, resolve=_resolver)


def _reachable(url: str) -> None:
    # No DNS at enqueue: a name that does not resolve now is a delivery failure to retry,
    # and the send resolves, checks and pins the address anyway.
    try:
        check_url(url, allow=config.webhook_settings().allow, resolve=None)
    except UnsafeURL as exc:
        raise ValidationError(str(exc)) from None


class _DeliveryShape(Schema):
    """The payload's shape; the job vets the URL itself, at send."""

    url = fields.String(required=True, validate=validate.Length(max=2048))
    event = fields.String(required=True, validate=validate.Regexp(
        _EVENT, error="1-200 letters, digits, '_', '.', ':' or '-'"))
    data = fields.Raw(required=True, allow_none=True, metadata={"description": "any JSON"})


class DeliverySchema(_DeliveryShape):
    """The payload of ``webhook.deliver``; loading it also refuses URLs unsafe without DNS."""

    url = fields.String(required=True, validate=[validate.Length(max=2048), _reachable])


class ProcessSchema(Schema):
    """The payload of ``webhook.process`` (enqueued by the inbound hook endpoint)."""

    source = fields.String(required=True, validate=validate.Regexp(_SOURCE))
    webhook_id = fields.String(required=True, validate=validate.Length(1, 180))


DELIVERY_SCHEMA = DeliverySchema()
_SHAPE = _DeliveryShape()
PROCESS_SCHEMA = ProcessSchema()


def webhook_id_for(job_id: str) -> str:
    """The ``webhook-id`` of every attempt of the job."""
    return f"msg_{job_id}"


def parse_retry_after(value: str | None, cap: float, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), cap)


def _snippet(body: bytes, limit: int = 300) -> str:
    return " ".join(body[:limit * 4].decode("utf-8", "replace").split())[:limit]


def _event_time(ctx: JobContext) -> str:
    """The job's creation time, so every attempt sends the same body."""
    try:
        return ctx.adapter.get(ctx.job_id).created_at.isoformat()
    except (JobNotFound, redis.RedisError, AttributeError):
        return datetime.now(timezone.utc).isoformat()


@job("webhook.deliver", max_retries=12, retry_on=(DeliveryRetryable,),
     retry_backoff=config.env_seconds("WEBHOOK_RETRY_BACKOFF", 5.0), retry_backoff_max=3600,
     timeout=120, schema=DELIVERY_SCHEMA)
def deliver_webhook(ctx: JobContext, **payload) -> dict:
    """POST a signed event (url, event, data) to a receiver."""
    try:
        data = _SHAPE.load(payload)
    except ValidationError as exc:
        raise DeliveryFailed(f"invalid payload: {exc.messages}") from None
    settings = config.webhook_settings()
    if not settings.signing_secret:
        raise ConfigurationError("WEBHOOK_SIGNING_SECRET is not set, so webhooks cannot be signed")
    url = data["url"]
    try:
        target = check_url(url, allow=settings.allow, resolve=_resolver)
    except UnresolvableHost as exc:
        raise DeliveryRetryable(str(exc)) from exc

    webhook_id = webhook_id_for(ctx.job_id)
    body = json.dumps({"type": data["event"], "timestamp": _event_time(ctx),
                       "data": data["data"]}, separators=(",", ":"), ensure_ascii=False)
    sent_at = datetime.now(timezone.utc)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(math.floor(sent_at.timestamp())),
        "webhook-signature": Webhook(settings.signing_secret).sign(webhook_id, sent_at, body),
    }
    try:
        response = _http.post(target, body.encode("utf-8"), headers, timeout=settings.timeout,
                              max_bytes=settings.max_response_bytes)
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryRetryable(f"POST {url} failed: {type(exc).__name__}: {exc}") from exc

    status = response.status
    answer = f"{url} answered {status} {response.reason}".rstrip()
    text = _snippet(response.body)
    if 200 <= status < 300:
        return {"webhook_id": webhook_id, "status": status, "address": response.address,
                "attempt": ctx.attempt, "response": _snippet(response.body, 1000),
                "truncated": response.truncated}
    if status == 410:
        raise EndpointGone(f"{answer}: the endpoint is gone; stop sending webhooks to it")
    if status in (408, 429) or 500 <= status < 600:
        delay = parse_retry_after(response.headers.get("retry-after"), settings.retry_after_max)
        wait = f"; it asked to wait {delay:g}s" if delay is not None else ""
        raise DeliveryRetryable(f"{answer}{wait}: {text}".rstrip(": "), retry_after=delay)
    if 300 <= status < 400:
        location = response.headers.get("location", "?")
        raise DeliveryFailed(f"{answer} (redirect to {location}); redirects are not followed")
    raise DeliveryFailed(f"{answer}: {text}".rstrip(": "))


# -- inbound hooks ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class HookEvent:
    """One received inbound hook, as a handler sees it."""

    tenant: str
    source: str
    webhook_id: str
    received_at: datetime
    timestamp: int | None
    """The sender's ``webhook-timestamp``."""
    body: str
    """The raw body, exactly as signed."""
    payload: Any
    """The body parsed as JSON, or ``None`` if it is not JSON."""


HookHandler = Callable[[JobContext, HookEvent], Any]
_handlers: dict[str, HookHandler] = {}


def hook_handler(source: str) -> Callable[[HookHandler], HookHandler]:
    """Register ``func(ctx, event) -> JSON`` as the handler of hooks from ``source``.

    Put it in a module named in ``JOB_MODULES``. A handler may run more than once for
    one hook (a worker can die after it ran): key its side effects on ``event.webhook_id``.
    Raise :class:`RetryHook` to be tried again later.
    """
    if not _SOURCE.match(source):
        raise ConfigurationError(f"hook source {source!r} must be 1-64 letters, digits, '_', '.' or '-'")

    def register(func: HookHandler) -> HookHandler:
        existing = _handlers.get(source)
        if existing is not None and (existing.__module__, existing.__qualname__) != (
                func.__module__, func.__qualname__):
            raise ConfigurationError(f"hook source {source!r} already has a handler: "
                                     f"{existing.__module__}.{existing.__qualname__}")
        _handlers[source] = func
        return func

    return register


def _store(ctx: JobContext) -> HookStore:
    keyspace = ctx.keyspace()
    return HookStore(keyspace.redis, keyspace.namespace)


def record_event(ctx: JobContext, event: HookEvent) -> dict:
    """The default handler: append the event to the source's event log, once."""
    store = _store(ctx)
    kind = event.payload.get("type") if isinstance(event.payload, dict) else None
    outcome = store.record_event(event.tenant, event.source, event.webhook_id, {
        "webhook_id": event.webhook_id, "type": kind, "job_id": ctx.job_id,
        "received_at": event.received_at.isoformat()})
    return {"recorded": outcome == 1, "type": kind}


def handler_for(source: str) -> HookHandler:
    """The handler of ``source``: the registered one, or :func:`record_event`."""
    return _handlers.get(source, record_event)


@job("webhook.process", max_retries=5, retry_on=(RetryHook, OSError, redis.RedisError),
     retry_backoff=config.env_seconds("HOOK_RETRY_BACKOFF", 5.0), retry_backoff_max=3600,
     timeout=300, schema=PROCESS_SCHEMA)
def process_hook(ctx: JobContext, **payload) -> dict:
    """Handle one stored inbound hook with its source's handler."""
    data = PROCESS_SCHEMA.load(payload)
    source, webhook_id = data["source"], data["webhook_id"]
    store = _store(ctx)
    record = store.load(ctx.tenant, source, webhook_id)
    if record is None:
        raise HookNotStored(f"no stored hook {webhook_id!r} from {source!r} (expired, or never received)")
    if record.get("processed_at"):
        return {"source": source, "webhook_id": webhook_id, "handled": False,
                "reason": f"already processed by job {record.get('processed_by')}"}
    body = record.get("body", "")
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    stamp = record.get("timestamp") or ""
    event = HookEvent(tenant=ctx.tenant, source=source, webhook_id=webhook_id,
                      received_at=datetime.fromtimestamp(float(record["received_at"]), timezone.utc),
                      timestamp=int(stamp) if stamp.isdigit() else None, body=body, payload=parsed)
    handler = handler_for(source)
    result = handler(ctx, event)
    store.mark_processed(ctx.tenant, source, webhook_id, ctx.job_id)
    return {"source": source, "webhook_id": webhook_id, "handled": True,
            "handler": f"{handler.__module__}.{handler.__qualname__}", "result": result}
