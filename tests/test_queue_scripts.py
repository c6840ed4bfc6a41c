"""The claim script's pause check and unpark.lua on their own, against a real redis-server."""

from __future__ import annotations

import json

import pytest

from adapters import scripts
from tests.test_ledger_scripts import NS, T0, job, ledger, r  # noqa: F401 - fixtures


@pytest.fixture
def unpark(r):  # noqa: F811
    script = r.register_script(scripts.source("unpark"))
    return lambda queue="": script(args=[NS, repr(T0), queue, 500])


def pause(r, queue="default"):  # noqa: F811
    r.hset(f"{NS}paused", queue, json.dumps({"at": T0, "by": "test"}))


def test_a_paused_queues_delivery_is_parked_and_released_with_a_new_token(r, ledger, unpark):  # noqa: F811
    rec = job()
    ledger.create_many([rec], T0)
    pause(r)
    assert ledger.claim(rec["id"], rec["token"], "host:1", T0 + 1).reason == "paused"
    stored = r.hmget(f"{NS}job:{rec['id']}", "state", "token")
    assert stored == ["queued", ""]
    assert r.zscore(f"{NS}parked:default", rec["id"]) == r.zscore(f"{NS}queued:default", rec["id"])
    assert r.zscore(f"{NS}dispatching", rec["id"]) is None and r.smembers(f"{NS}parked") == {"default"}
    assert ledger.claim(rec["id"], rec["token"], "host:1", T0 + 1).reason == "stale"
    assert unpark() == 0 and unpark("default") == 0  # still paused: nothing moves
    r.hdel(f"{NS}paused", "default")
    assert unpark() == 1
    assert r.zcard(f"{NS}parked:default") == 0 and r.smembers(f"{NS}parked") == set()
    [delivery] = ledger.maintain(T0 + 2)
    assert delivery.job_id == rec["id"] and delivery.token not in ("", rec["token"])
    assert ledger.claim(rec["id"], delivery.token, "host:1", T0 + 2).action == "run"


def test_unpark_drops_a_parked_job_that_was_canceled(r, ledger, unpark):  # noqa: F811
    rec = job()
    ledger.create_many([rec], T0)
    pause(r)
    ledger.claim(rec["id"], rec["token"], "host:1", T0 + 1)
    assert ledger.cancel(rec["id"], "requested", T0 + 1) == "canceled"
    r.hdel(f"{NS}paused", "default")
    assert unpark() == 1
    assert r.zscore(f"{NS}due", rec["id"]) is None and ledger.maintain(T0 + 2) == []


def test_a_sweeps_maintain_call_releases_what_a_dead_resume_left_parked(r, ledger):
    """The maintenance sweep finishes a resume whose caller died (the queue no longer
    paused, its jobs still parked) in the maintain call itself: parked first, then
    released by priority as any due job, in the one script call."""
    recs = [job(), job(priority="high")]
    ledger.create_many(recs, T0)
    pause(r)
    for rec in recs:
        ledger.claim(rec["id"], rec["token"], "host:1", T0 + 1)
    r.hdel(f"{NS}paused", "default")  # the resume's caller died here
    assert ledger.maintain(T0 + 2) == [] and ledger.unparked == 0  # not a sweep
    out = ledger.maintain(T0 + 2, unpark=1)  # at most one this call
    assert ledger.unparked == 1 and len(out) == 1
    out += ledger.maintain(T0 + 2, unpark=500)
    assert ledger.unparked == 1 and r.smembers(f"{NS}parked") == set()
    assert sorted(d.job_id for d in out) == sorted(rec["id"] for rec in recs)
    assert all(d.token not in ("", rec["token"]) for d, rec in zip(out, recs))
