"""Inbound webhooks: verify, store once, and enqueue ``webhook.process``.

``POST /v1/hooks/{source}`` calls :func:`accept_hook` and maps its outcome:
``(True, record)`` -> 202, ``(False, record)`` (the same ``webhook-id`` again) -> 200
with the stored record; :class:`HookError` subclasses carry their HTTP ``status``.

A hook is verified per the Standard Webhooks spec against the source's secrets
from ``HOOK_SECRETS`` (signature, and a timestamp within 5 minutes), stored in
Redis under its ``webhook-id`` and handed to one ``webhook.process`` job. A
duplicate finds the stored record and enqueues nothing. If the process dies
between storing and enqueuing, the sender's retry (it got no 2xx) finishes the job;
the enqueue carries an idempotency key, so two racing deliveries make one job.
"""

from __future__ import annotations

import json
import re
import time
from typing import Mapping

import redis as redis_lib
from standardwebhooks import Webhook, WebhookVerificationError

from adapters import BackendUnavailable, JobOptions, Switchyard
from service import json_body
from service.errors import ValidationProblem
from service import config
from service.jobs._hookstore import HookStore, public_view

__all__ = ["HookError", "UnknownHookSource", "HookSignatureError", "InvalidHook",
           "HookBodyOutOfLimits",
           "accept_hook", "verify_hook", "PROCESS_JOB"]

PROCESS_JOB = "webhook.process"
_WEBHOOK_ID = re.compile(r"^[\x21-\x7e]{1,180}$")


class HookError(Exception):
    """An inbound hook that is not accepted; ``status`` is the HTTP answer. Do not raise directly."""

    status = 400
    errors: dict[str, list[str]] = {}


class UnknownHookSource(HookError):
    """No secret is configured for the source."""

    status = 404


class HookSignatureError(HookError):
    """Missing or wrong signature headers, a bad signature, or a timestamp over 5 minutes off."""

    status = 401


class InvalidHook(HookError):
    """A verified request that cannot be stored: its body is not UTF-8, or its id is unusable."""

    status = 400


class HookBodyOutOfLimits(InvalidHook):
    """A verified JSON body its handler could not read: nested too deep, an integer too long,
    a lone surrogate (the JSON limits of every request body)."""

    status = 422

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("the hook's JSON body is out of this API's limits; see errors")
        self.errors = errors


def verify_hook(secrets: tuple[str, ...], headers: Mapping[str, str], body: bytes) -> str:
    """Check the Standard Webhooks signature and timestamp; returns the body as text."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidHook("the body is not UTF-8 text") from None
    wanted = {k.lower(): v for k, v in headers.items()
              if k.lower() in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    problem = "no secret"
    for secret in secrets:
        try:
            Webhook(secret).verify(text, wanted, json_parse=False)
            return text
        except WebhookVerificationError as exc:
            problem = str(exc)
        except (ValueError, TypeError) as exc:  # malformed signature lists or base64
            problem = f"malformed webhook-signature ({type(exc).__name__})"
    raise HookSignatureError(f"webhook signature rejected: {problem}")


def accept_hook(adapter: Switchyard, redis: redis_lib.Redis | None, source: str,
                headers: Mapping[str, str], body: bytes, *, tenant: str | None = None,
                settings: config.HookSettings | None = None) -> tuple[bool, dict]:
    """Verify, store and enqueue one inbound hook: ``(created, record)``.

    ``redis`` defaults to the ledger's (``adapter.keyspace()``); ``tenant`` to ``HOOK_TENANT``. Raises a
    :class:`HookError` (404 unknown source, 401 bad signature, 400 bad body, 422 a
    JSON body out of limits) or
    ``BackendUnavailable`` (503) when Redis cannot be reached.
    """
    settings = settings or config.hook_settings()
    secrets = settings.secrets.get(source)
    if not secrets:
        raise UnknownHookSource(f"no inbound hook source named {source!r}")
    text = verify_hook(secrets, headers, body)
    try:
        json_body.loads(text)  # what webhook.process will parse; a body that is not JSON may come
    except json.JSONDecodeError:
        pass
    except ValidationProblem as exc:
        raise HookBodyOutOfLimits(exc.errors) from None
    lowered = {k.lower(): v for k, v in headers.items()}
    webhook_id = lowered.get("webhook-id", "")
    if not _WEBHOOK_ID.match(webhook_id):
        raise InvalidHook("webhook-id must be 1-180 visible ASCII characters")
    tenant = tenant or settings.tenant
    keyspace = adapter.keyspace()
    store = HookStore(redis if redis is not None else keyspace.redis, keyspace.namespace)
    fields = {"source": source, "webhook_id": webhook_id, "tenant": tenant,
              "received_at": repr(time.time()), "timestamp": lowered.get("webhook-timestamp", ""),
              "body": text}
    try:
        created, record = store.claim(tenant, source, webhook_id, fields, settings.record_ttl)
        if created or not record.get("job_id"):
            # A duplicate with no job yet means the first delivery died half-way (or is
            # still in flight): enqueue again; the idempotency key keeps it one job.
            info = adapter.enqueue(PROCESS_JOB, {"source": source, "webhook_id": webhook_id},
                                   JobOptions(idempotency_key=f"hook:{source}:{webhook_id}"),
                                   tenant=tenant)
            store.attach_job(tenant, source, webhook_id, info.id)
            record["job_id"] = info.id
    except redis_lib.RedisError as exc:
        raise BackendUnavailable(f"cannot store the hook in Redis: {exc}") from exc
    return created, public_view(record)
