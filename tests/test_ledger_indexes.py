"""The state indexes and per-minute counters the scripts keep, and the reads over them
(``adapters/search.py``), against a real redis-server with the scripts' own times.

After every transition a job is in exactly the state index of its state (none once
succeeded), in its tenant's index and in ``all``; a deleted or expired one is in none.
"""

from __future__ import annotations

import json

import pytest

from adapters import JobFilter, Search
from tests.test_ledger_scripts import (LEASE, NS, T0, TTL, job, ledger, r, run_to,  # noqa: F401
                                       started, workflow)


def where(r, rec) -> set[str]:
    """Every index key (but ``gone``) holding the job."""
    keys = set()
    for pattern in ("ts:*", "as:*", "t:*", "all", "ty:*", "aty:*"):
        for key in r.scan_iter(NS + pattern):
            if r.type(key) == "zset" and r.zscore(key, rec["id"]) is not None:
                keys.add(key[len(NS):])
    return keys


def expect(r, rec, state: str | None, tenant: str = "acme") -> None:
    assert r.hget(NS + "job:" + rec["id"], "state") == state
    kind = r.hget(NS + "job:" + rec["id"], "type")
    want = {f"t:{tenant}", "all", f"ty:{tenant}:{kind}", f"aty:{kind}"}
    if state != "succeeded":
        want |= {f"ts:{tenant}:{state}", f"as:{state}"}
    assert where(r, rec) == want


# -- index maintenance across every transition ---------------------------------------------

def test_queued_running_retrying_queued_running_failed(ledger, r):
    rec = job(max_retries=1)
    ledger.create_many([rec], T0)
    expect(r, rec, "queued")
    assert ledger.claim(rec["id"], rec["token"], "w", T0).action == "run"
    expect(r, rec, "started")
    ledger.finish(rec["id"], rec["token"], "retry", '{"type": "E"}', repr(T0 + 5), now=T0 + 1)
    expect(r, rec, "retrying")
    (d,) = ledger.maintain(T0 + 5)
    expect(r, rec, "queued")
    ledger.claim(rec["id"], d.token, "w", T0 + 6)
    expect(r, rec, "started")
    ledger.finish(rec["id"], d.token, "failed", '{"type": "E"}', now=T0 + 7)
    expect(r, rec, "failed")
    assert r.zscore(NS + "as:failed", rec["id"]) == T0  # scored by creation time


def test_succeeded_leaves_every_state_index(ledger, r):
    rec, _ = started(ledger)
    ledger.finish(rec["id"], rec["token"], "succeeded", "1", now=T0 + 1)
    expect(r, rec, "succeeded")


@pytest.mark.parametrize("state", ["queued", "scheduled"])
def test_cancel_of_a_waiting_job_moves_it_to_canceled(ledger, r, state):
    rec = job(state=state, run_at=T0 + 50 if state == "scheduled" else None)
    ledger.create_many([rec], T0)
    expect(r, rec, state)
    ledger.cancel(rec["id"], "requested", T0 + 1)
    expect(r, rec, "canceled")


def test_cancel_of_a_running_job_moves_when_it_ends(ledger, r):
    rec, _ = started(ledger)
    assert ledger.cancel(rec["id"], "requested", T0 + 1) == "requested"
    expect(r, rec, "started")
    ledger.finish(rec["id"], rec["token"], "canceled", "requested", now=T0 + 2)
    expect(r, rec, "canceled")


def test_claim_of_an_expired_job_and_maintain_expiry(ledger, r):
    late = job(expires_at=T0 + 1)
    waiting = job(state="scheduled", run_at=T0 + 50, expires_at=T0 + 20)
    ledger.create_many([late, waiting], T0)
    assert ledger.claim(late["id"], late["token"], "w", T0 + 2).reason == "expired"
    expect(r, late, "canceled")
    ledger.maintain(T0 + 20)
    expect(r, waiting, "canceled")


def test_scheduled_released_then_lost_worker_requeued_then_failed(ledger, r):
    rec = job(state="scheduled", run_at=T0 + 5)
    ledger.create_many([rec], T0)
    expect(r, rec, "scheduled")
    (d,) = ledger.maintain(T0 + 5)
    expect(r, rec, "queued")
    ledger.claim(rec["id"], d.token, "w", T0 + 6)
    (d,) = ledger.maintain(T0 + 6 + LEASE + 1)
    expect(r, rec, "queued")
    ledger.claim(rec["id"], d.token, "w", T0 + 100)
    ledger.maintain(T0 + 100 + LEASE + 1)
    expect(r, rec, "failed")
    rows = Search(ledger).minutes(T0, T0 + 200)
    assert sum(row["failed"] for row in rows) == 1


def test_a_failed_chain_cancels_its_waiting_jobs_in_the_indexes(ledger, r):
    _, (a, b) = workflow(ledger, "chain", 2)
    expect(r, b, "scheduled")
    run_to(ledger, a, "failed", "{}")
    expect(r, a, "failed")
    expect(r, b, "canceled")


def test_delete_and_expiry_drop_every_index_entry(ledger, r):
    kept, deleted, expired = job(), job(), job(tenant="other")
    ledger.create_many([kept, deleted, expired], T0)
    ledger.delete_many([(deleted["id"], "acme", "")])
    assert where(r, deleted) == set()
    run_to(ledger, kept, "succeeded", "1")
    run_to(ledger, expired, "failed", "{}")
    assert r.zscore(NS + "gone", f"failed other {expired['id']} t.echo") == T0 + 1 + TTL
    r.delete(NS + "job:" + expired["id"])  # its TTL ran out
    ledger.maintain(T0 + 1 + TTL)
    assert where(r, expired) == set() and r.zcard(NS + "gone") == 1
    # a record that is still there (Redis's clock) keeps its entries, checked again later
    expect(r, kept, "succeeded")
    assert r.zscore(NS + "gone", f"succeeded acme {kept['id']} t.echo") > T0 + 1 + TTL
    # an entry written before the type indexes ('<state> <tenant> <id>') still clears
    old = job(tenant="old")
    ledger.create_many([old], T0)
    run_to(ledger, old, "failed", "{}")
    r.zrem(NS + "gone", f"failed old {old['id']} t.echo")
    r.zadd(NS + "gone", {f"failed old {old['id']}": T0})
    r.delete(NS + "job:" + old["id"])
    ledger.maintain(T0 + 2 + TTL)
    assert where(r, old) <= {"ty:old:t.echo", "aty:t.echo"}  # the walks drop those


# -- reads -----------------------------------------------------------------------------------

def ended(ledger, outcome, error_type="E", **fields):
    """A job created at its ``created_at`` (as the client does) that ended so."""
    rec = job(**fields)
    now = fields.get("created_at", T0)
    ledger.create_many([rec], now)
    ledger.claim(rec["id"], rec["token"], "w", now)
    value = json.dumps({"type": error_type, "message": "boom"}) if outcome == "failed" else "1"
    ledger.finish(rec["id"], rec["token"], outcome, value, now=now + 0.5)
    return rec


def ids(items):
    return [i.id for i in items]


def test_pages_filter_by_state_type_queue_range_tenant_and_payload(ledger):
    s = Search(ledger)
    a = ended(ledger, "failed", created_at=T0 + 1, type="t.a", payload={"user": 7})
    b = ended(ledger, "succeeded", created_at=T0 + 2, queue="mail")
    c = ended(ledger, "failed", created_at=T0 + 3, tenant="other", queue="mail")
    d = job(created_at=T0 + 4)
    ledger.create_many([d], T0 + 4)
    assert ids(s.page(JobFilter(tenant="acme"))[0]) == [d["id"], b["id"], a["id"]]
    assert ids(s.page(JobFilter())[0]) == [d["id"], c["id"], b["id"], a["id"]]
    assert ids(s.page(JobFilter(state="failed"))[0]) == [c["id"], a["id"]]
    assert ids(s.page(JobFilter(tenant="acme", state="failed"))[0]) == [a["id"]]
    assert ids(s.page(JobFilter(state="succeeded"))[0]) == [b["id"]]
    assert ids(s.page(JobFilter(queue="mail"))[0]) == [c["id"], b["id"]]
    assert ids(s.page(JobFilter(type="t.a"))[0]) == [a["id"]]
    assert ids(s.page(JobFilter(created_after=T0 + 1, created_before=T0 + 4))[0]) == [
        c["id"], b["id"]]
    assert ids(s.page(JobFilter(payload={"user": 7}))[0]) == [a["id"]]
    assert ids(s.page(JobFilter(payload={"user": "7"}))[0]) == [a["id"]]
    assert s.page(JobFilter(payload={"user": 8}))[0] == []
    assert s.page(JobFilter(tenant="nobody")) == ([], None)


def test_cursor_pages_through_a_batch_sharing_one_score_and_iter_ids_sees_all(ledger):
    s = Search(ledger)
    recs = [job(created_at=T0) for _ in range(7)]
    ledger.create_many(recs, T0)
    want = sorted((x["id"] for x in recs), reverse=True)
    seen, cursor = [], None
    while True:
        items, cursor = s.page(JobFilter(state="queued"), limit=3, cursor=cursor)
        seen += ids(items)
        if cursor is None:
            break
    assert seen == want
    assert list(s.iter_ids(JobFilter(tenant="acme", state="queued"), chunk=2)) == want
    assert list(s.iter_ids(JobFilter(type="t.echo", queue="default"), chunk=2)) == want


def test_a_rare_type_walks_its_own_index_and_the_shorter_index_wins(ledger, r):
    s = Search(ledger)
    rare = ended(ledger, "failed", created_at=T0, type="t.rare")
    many = [ended(ledger, "failed", created_at=T0 + 1 + i) for i in range(30)]
    assert ids(s.page(JobFilter(type="t.rare"), limit=5, scan_cap=10)[0]) == [rare["id"]]
    assert s.index(JobFilter(tenant="acme", type="t.rare", state="failed")) == \
        NS + "ty:acme:t.rare"
    assert s.index(JobFilter(type="t.rare")) == NS + "aty:t.rare"
    # the type index says nothing of the state: it is checked on the records
    assert s.page(JobFilter(type="t.rare", state="queued"))[0] == []
    assert ids(s.page(JobFilter(type="t.rare", state="failed"))[0]) == [rare["id"]]
    # a common type within a sparse state walks the state's index
    ledger.create_many([job(created_at=T0 + 100 + i) for i in range(40)], T0)
    assert s.index(JobFilter(tenant="acme", type="t.echo", state="failed")) == \
        NS + "ts:acme:failed"
    assert len(s.page(JobFilter(type="t.echo", state="failed"), limit=100)[0]) == len(many)
    # a bulk delete leaves no index entry behind, and the counts know it
    assert ledger.purge_many([rare["id"], many[0]["id"]], now=T0 + 200) == ["deleted"] * 2
    assert where(r, rare) == set() and where(r, many[0]) == set()
    assert s.counts("acme")["failed"] == len(many) - 1


def test_a_sparse_unindexed_filter_pages_on_past_the_scan_cap(ledger):
    s = Search(ledger)
    rare = job(created_at=T0, queue="rare")
    ledger.create_many([rare] + [job(created_at=T0 + 1 + i) for i in range(30)], T0)
    items, cursor = s.page(JobFilter(queue="rare"), limit=5, scan_cap=10)
    assert items == [] and cursor is not None
    found = []
    while cursor is not None:
        items, cursor = s.page(JobFilter(queue="rare"), limit=5, cursor=cursor, scan_cap=10)
        found += ids(items)
    assert found == [rare["id"]]


def test_lookups_counts_and_failure_groups(ledger):
    s = Search(ledger)
    keyed = job(idempotency_key="k1", fingerprint="f")
    ledger.create_many([keyed], T0)
    for i in range(3):
        ended(ledger, "failed", "Timeout", created_at=T0 + i)
    ended(ledger, "failed", "ValueError", created_at=T0 + 5, type="t.b")
    ended(ledger, "succeeded", tenant="other")
    ended(ledger, "failed", "Timeout", tenant="other", created_at=T0 + 9)
    assert s.by_idempotency_key("acme", "k1").id == keyed["id"]
    assert s.by_idempotency_key("other", "k1") is None
    assert s.job(keyed["id"]).state.value == "queued" and s.job(keyed["id"], "other") is None
    assert s.counts("acme") == {"scheduled": 0, "queued": 1, "started": 0, "retrying": 0,
                                "succeeded": 0, "failed": 4, "canceled": 0, "total": 5}
    assert s.counts() == {"scheduled": 0, "queued": 1, "started": 0, "retrying": 0,
                          "succeeded": 1, "failed": 5, "canceled": 0, "total": 7}
    out = s.failure_groups()
    assert [(g["type"], g["error_type"], g["count"]) for g in out["groups"]] == [
        ("t.echo", "Timeout", 4), ("t.b", "ValueError", 1)]
    assert out["complete"] and out["total"] == 5 and out["groups"][0]["message"] == "boom"
    part = s.failure_groups("acme", scan=2, limit=1)
    assert part["scanned"] == 2 and not part["complete"] and len(part["groups"]) == 1


def test_minutes_count_outcomes_and_run_time_quantiles(ledger):
    minute = (int(T0) // 60 + 1) * 60
    for i, (outcome, ran) in enumerate([("succeeded", 0.003)] * 9 + [("failed", 7.0)]):
        rec, _ = started(ledger, now=minute + i)
        ledger.finish(rec["id"], rec["token"], outcome, "{}", now=minute + i + ran)
    rows = Search(ledger).minutes(minute - 60, minute + 60)
    assert [r["minute"] for r in rows] == [minute - 60, minute]
    assert rows[0]["ran"] == 0 and rows[0]["p50"] is None
    row = rows[1]
    assert (row["succeeded"], row["failed"], row["ran"]) == (9, 1, 10)
    assert 0 < row["p50"] <= 0.005 and 5 < row["p95"] <= 10
    assert 0 < ledger.r.ttl(f"{NS}m:{minute}") <= 90000
