"""Inbound hooks: verified, stored once, processed once by webhook.process on every engine."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from standardwebhooks import Webhook

from adapters import JobState
from service.hooks import HookSignatureError, InvalidHook, UnknownHookSource, accept_hook
from service import config
from service.jobs._hookstore import HookStore
from tests.jobs.conftest import HOOK_SECRET, OTHER_HOOK_SECRET

SETTINGS = {"HOOK_SECRETS": f"acme:{HOOK_SECRET},billing:{OTHER_HOOK_SECRET}"}


def signed(body: dict | bytes, secret: str = HOOK_SECRET, *, webhook_id: str | None = None,
           at: datetime | None = None) -> tuple[dict, bytes]:
    """Headers and body as a Standard Webhooks sender makes them."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(timezone.utc)
    return {
        "Webhook-Id": webhook_id,
        "Webhook-Timestamp": str(int(at.timestamp())),
        "Webhook-Signature": Webhook(secret).sign(webhook_id, at, raw.decode()),
        "Content-Type": "application/json",
    }, raw


def settings(tenant: str) -> config.HookSettings:
    return config.hook_settings({**SETTINGS, "HOOK_TENANT": tenant})


def store(jobs) -> HookStore:
    return HookStore(jobs.adapter.redis, jobs.adapter.settings.namespace)


def process_jobs(jobs, tenant: str) -> list:
    items, _ = jobs.adapter.list(tenant=tenant, job_type="webhook.process", limit=50)
    return items


def test_a_signed_hook_is_stored_processed_once_and_a_duplicate_returns_the_record(jobs):
    tenant = jobs.tenant()
    headers, body = signed({"type": "order.created", "id": 7}, secret=OTHER_HOOK_SECRET)
    created, record = accept_hook(jobs.adapter, None, "billing", headers, body,
                                  settings=settings(tenant))
    assert created is True
    assert record["source"] == "billing" and record["webhook_id"] == headers["Webhook-Id"]
    done = jobs.engine.wait_for(record["job_id"])
    assert done.state is JobState.SUCCEEDED, done.error
    assert done.tenant == tenant
    assert done.result["handled"] is True and done.result["handler"].endswith("record_event")
    assert done.result["result"] == {"recorded": True, "type": "order.created"}
    [event] = store(jobs).events(tenant, "billing")
    assert event["webhook_id"] == headers["Webhook-Id"] and event["job_id"] == done.id

    again, stored = accept_hook(jobs.adapter, None, "billing", headers, body,
                                settings=settings(tenant))
    assert again is False
    assert stored["job_id"] == done.id and stored["processed_at"] is not None
    assert stored["received_at"] == record["received_at"]
    assert [j.id for j in process_jobs(jobs, tenant)] == [done.id]
    assert len(store(jobs).events(tenant, "billing")) == 1


def test_a_registered_handler_gets_the_event(jobs):
    tenant = jobs.tenant()
    headers, body = signed({"type": "user.deleted"})
    created, record = accept_hook(jobs.adapter, None, "acme", headers, body,
                                  settings=settings(tenant))
    done = jobs.engine.wait_for(record["job_id"])
    assert done.state is JobState.SUCCEEDED, done.error
    assert done.result["handler"] == "tests.jobs.support.handle_acme"
    assert done.result["result"] == {"runs": 1, "type": "user.deleted", "tenant": tenant}


def test_a_second_run_of_the_process_job_does_not_handle_the_hook_again(jobs):
    tenant = jobs.tenant()
    headers, body = signed({"type": "x"})
    _, record = accept_hook(jobs.adapter, None, "acme", headers, body, settings=settings(tenant))
    assert jobs.engine.wait_for(record["job_id"]).state is JobState.SUCCEEDED
    # as if the engine delivered the job twice: enqueue the same processing again
    replay = jobs.adapter.enqueue("webhook.process", {"source": "acme",
                                                      "webhook_id": headers["Webhook-Id"]},
                                  tenant=tenant)
    done = jobs.engine.wait_for(replay.id)
    assert done.state is JobState.SUCCEEDED
    assert done.result["handled"] is False and record["job_id"] in done.result["reason"]
    assert jobs.engine.redis.get(f"test:acme:{headers['Webhook-Id']}") == "1"


def test_a_hook_stored_by_a_delivery_that_died_before_enqueue_is_finished_by_the_retry(jobs):
    tenant = jobs.tenant()
    headers, body = signed({"type": "half.done"})
    # the first delivery stored the hook, then its process died before the enqueue
    store(jobs).claim(tenant, "acme", headers["Webhook-Id"], {
        "source": "acme", "webhook_id": headers["Webhook-Id"], "tenant": tenant,
        "received_at": "1700000000.0", "timestamp": headers["Webhook-Timestamp"],
        "body": body.decode()}, ttl=600)
    created, record = accept_hook(jobs.adapter, None, "acme", headers, body,
                                  settings=settings(tenant))
    assert created is False and record["job_id"]
    assert jobs.engine.wait_for(record["job_id"]).state is JobState.SUCCEEDED
    again, _ = accept_hook(jobs.adapter, None, "acme", headers, body, settings=settings(tenant))
    assert len(process_jobs(jobs, tenant)) == 1
    assert jobs.engine.redis.get(f"test:acme:{headers['Webhook-Id']}") == "1"


@pytest.mark.parametrize("tamper", ["wrong secret", "changed body", "no signature",
                                    "garbled signature", "too old", "too new"])
def test_bad_or_stale_signatures_are_rejected_and_nothing_is_stored(redis_url, tamper):
    from adapters import AdapterSettings, create_adapter

    adapter = create_adapter("inline", AdapterSettings.from_env({"REDIS_URL": redis_url}))
    secret = OTHER_HOOK_SECRET if tamper == "wrong secret" else HOOK_SECRET
    at = datetime.now(timezone.utc) + {"too old": timedelta(minutes=-6),
                                       "too new": timedelta(minutes=6)}.get(tamper, timedelta())
    headers, body = signed({"type": "t"}, secret, at=at)
    if tamper == "changed body":
        body = body.replace(b'"t"', b'"u"')
    elif tamper == "no signature":
        del headers["Webhook-Signature"]
    elif tamper == "garbled signature":
        headers["Webhook-Signature"] = "v1"
    with pytest.raises(HookSignatureError) as exc:
        accept_hook(adapter, None, "acme", headers, body, settings=settings("t1"))
    assert exc.value.status == 401
    if tamper.startswith("too"):
        assert tamper.split()[1] in str(exc.value)
    assert adapter.redis.keys("*") == []
    adapter.close()


def test_a_hook_within_the_tolerance_is_accepted_and_bad_requests_are_refused(redis_url,
                                                                              monkeypatch):
    from adapters import AdapterSettings, create_adapter

    monkeypatch.setenv("REDIS_URL", redis_url)  # the inline job reads the hook from there

    adapter = create_adapter("inline", AdapterSettings.from_env({"REDIS_URL": redis_url}))
    with pytest.raises(UnknownHookSource) as exc:
        accept_hook(adapter, None, "nobody", *signed({}), settings=settings("t1"))
    assert exc.value.status == 404
    headers, _ = signed({})
    with pytest.raises(InvalidHook):
        accept_hook(adapter, None, "acme", headers, b"\xff\xfe not utf-8", settings=settings("t1"))
    # four minutes old is inside the five-minute tolerance (inline runs the job at once)
    headers, body = signed({"type": "late"}, at=datetime.now(timezone.utc) - timedelta(minutes=4))
    created, record = accept_hook(adapter, None, "billing", headers, body, settings=config.hook_settings(
        {"HOOK_SECRETS": f"billing:{HOOK_SECRET}", "HOOK_TENANT": "t1"}))
    assert created is True
    done = adapter.get(record["job_id"])
    assert done.tenant == "t1" and done.state is JobState.SUCCEEDED, done.error
    adapter.close()
