"""Every ledger script on its own, against a real redis-server: each transition it makes.

The scripts take the time as an argument, so most cases pass their own ``now`` and
need no waiting. After each case every job hash may hold declared fields only
(``adapters/record.py``).
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
import redis

from adapters import record, scripts
from adapters.errors import IdempotencyKeyReused
from adapters.ledger import ClaimResult, Dispatch, Ledger
from adapters.riders import Riders
from adapters.settings import AdapterSettings

NS = "sy:"
LEASE = 30.0
TTL = 3600
# A fixed time well after the wall clock: the scripts that read the clock themselves
# (heartbeat, redeliver) never meet the times the other cases pass.
T0 = float(int(time.time()) + 10**7)


@pytest.fixture
def r(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    for key in client.scan_iter(f"{NS}job:*"):
        if client.type(key) == "hash":
            undeclared = set(client.hkeys(key)) - set(record.FIELDS)
            assert not undeclared, f"{key} holds undeclared fields {undeclared}"
    client.close()


@pytest.fixture
def ledger(r):
    return Ledger(r, AdapterSettings(namespace=NS, lease_seconds=LEASE, max_lost_deliveries=2,
                                     job_ttl=TTL, idempotency_ttl=600))


def job(**fields) -> dict:
    """A record as the adapter writes one (stored strings, plus its fingerprint)."""
    fingerprint = fields.pop("fingerprint", "")
    typed = {"id": uuid.uuid4().hex, "type": "t.echo", "tenant": "acme", "backend": "rq",
             "state": "queued", "queue": "default", "priority": "default", "payload": {"x": 1},
             "attempts": 0, "max_retries": 0, "timeout": 60.0, "rate": None, "created_at": T0,
             "run_at": None, "expires_at": None, "idempotency_key": None, "retry_of": None,
             "links": None, "token": uuid.uuid4().hex[:12]}
    typed.update(fields)
    return {**record.encode(typed), "fingerprint": fingerprint}


def zset(r, name: str) -> dict[str, float]:
    return dict(r.zrange(NS + name, 0, -1, withscores=True))


def stored(r, rec: dict) -> dict:
    return record.decode(r.hgetall(NS + "job:" + rec["id"]))


def states(ledger, rec) -> list[str]:
    return [e["state"] for e in ledger.events(rec["id"])]


def started(ledger, now=T0, **fields) -> tuple[dict, ClaimResult]:
    rec = job(**fields)
    ledger.create_many([rec], now)
    claim = ledger.claim(rec["id"], rec["token"], "host:1", now)
    assert claim.action == "run", claim
    return rec, claim


# -- the record and the loader ----------------------------------------------------------

def test_every_script_file_loads_into_redis(r):
    for name in scripts.NAMES:
        assert r.script_load(scripts.source(name))


def test_record_round_trips_through_encode_and_decode():
    typed = {"id": "j1", "payload": {"a": [1, 2]}, "attempts": 2, "timeout": 5.0,
             "rate": (3, 60.0), "created_at": T0, "run_at": None, "links": {"parent": "p"},
             "waiting": True, "result": {"ok": True}, "events": [{"state": "queued", "at": T0}]}
    raw = record.encode(typed)
    assert raw["payload"] == '{"a":[1,2]}' and raw["rate"] == "3 60.0" and raw["run_at"] == ""
    assert raw["timeout"] == "5.0" and raw["created_at"] == repr(T0) and raw["waiting"] == "1"
    back = record.decode(raw)
    assert {k: back[k] for k in typed} == typed
    empty = record.decode({"id": "j2", "extra": "kept"})
    assert empty["payload"] == {} and empty["links"] == {} and empty["events"] == []
    assert empty["priority"] == "default" and empty["attempts"] == 0 and empty["error"] is None
    assert empty["extra"] == "kept"
    with pytest.raises(KeyError, match="not a field"):
        record.encode({"colour": "red"})


def test_the_module_docstring_documents_every_field():
    documented = [line.split()[0] for line in record.__doc__.split("Fields:\n")[1].splitlines()
                  if line.strip()]
    assert documented == list(record.FIELDS)


def test_the_adapter_writes_what_record_encode_writes(redis_url):
    import tests.conformance.jobs  # noqa: F401 - registers t.*
    from adapters import JobOptions, create_adapter
    from adapters.validation import build_record

    adapter = create_adapter("rq", AdapterSettings.from_env({"REDIS_URL": redis_url}))
    try:
        built = build_record(adapter, "t.rated", {"i": "é"},
                             JobOptions(delay=5, idempotency_key="k"), "acme", T0,
                             {"parent": "p"}, "old")
    finally:
        adapter.close()
    built.pop("fingerprint")
    decoded = record.decode(built)
    assert record.encode({name: decoded[name] for name in built}) == built


def test_the_claim_and_dispatch_lists_are_generated_into_the_lua():
    lua = scripts.source("claim")
    assert "local CLAIM_FIELDS = {'attempts', 'type'," in lua
    assert "{0.005, '0.005'}" in lua and "{600.0, '600'}" in lua
    from service.metrics import BUCKETS
    assert BUCKETS is record.DURATION_BUCKETS


# -- create ------------------------------------------------------------------------------

def test_create_queued_writes_record_indexes_guard_backlog_and_counter(ledger, r):
    rec = job()
    assert ledger.create_many([rec], T0) == [(True, rec["id"])]
    got = stored(r, rec)
    assert got["state"] == "queued" and got["payload"] == {"x": 1} and got["token"] == rec["token"]
    assert states(ledger, rec) == ["queued"]
    assert zset(r, "t:acme") == {rec["id"]: T0}
    assert zset(r, "dispatching") == {rec["id"]: T0 + LEASE}
    assert zset(r, "queued:default") == {rec["id"]: T0}
    assert r.smembers(NS + "queues") == {"default"}
    assert ledger.stats() == {"enqueued|t.echo|rq": 1.0}
    assert zset(r, "due") == {} and zset(r, "expiries") == {}


def test_a_batch_writes_each_index_queue_set_and_count_once(ledger, r):
    recs = [job(), job(), job(type="t.other", queue="q2")]
    ledger.create_many(recs, T0)  # the script loaded
    more = [job(), job(), job(type="t.other", queue="q2")]
    r.config_resetstat()
    assert [fresh for fresh, _ in ledger.create_many(more, T0)] == [True] * 3
    calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in r.info("commandstats").items()}
    # before: a ZADD a job in each of its indexes, a SADD and an HINCRBY a job
    assert calls["hset"] == 3 and calls["sadd"] == 1 and calls["hincrby"] == 2, calls
    assert calls["zadd"] < 7 * len(more), calls
    for rec in recs + more:
        assert r.zscore(f"{NS}all", rec["id"]) == T0
        assert r.zscore(f"{NS}queued:{rec['queue']}", rec["id"]) == T0
        assert r.zscore(f"{NS}as:queued", rec["id"]) == T0
        assert r.zscore(f"{NS}aty:{rec['type']}", rec["id"]) == T0
    assert r.smembers(f"{NS}queues") == {"default", "q2"}
    assert r.hget(f"{NS}stats", "enqueued|t.echo|rq") == "4"
    assert r.hget(f"{NS}stats", "enqueued|t.other|rq") == "2"


def test_create_scheduled_goes_to_due_and_a_waiting_one_nowhere(ledger, r):
    later = job(state="scheduled", run_at=T0 + 50, expires_at=T0 + 90)
    waiting = job(state="scheduled", waiting=True)
    ledger.create_many([later, waiting], T0)
    assert zset(r, "due") == {later["id"]: T0 + 50}
    assert zset(r, "expiries") == {later["id"]: T0 + 90}
    assert zset(r, "dispatching") == {} and zset(r, "queued:default") == {}


def test_create_in_a_transaction_sets_no_dispatch_guard(ledger, r):
    rec = job()
    with r.pipeline(transaction=True) as pipe:
        ledger.create_in(pipe, [rec], T0)
        pipe.execute()
    assert stored(r, rec)["state"] == "queued"
    assert zset(r, "dispatching") == {}


def test_create_runs_its_riders_after_the_records_in_the_same_call(ledger, r):
    """An engine's deliveries ride with their records (adapters/riders.py): the writes
    its publish queued in a Riders, run by the create script, binary values and all."""
    rec = job()
    riders = Riders()
    riders.hset(f"{NS}t:rq:job:{rec['id']}", mapping={"data": b"\x00\xff", "timeout": 60})
    riders.rpush(f"{NS}t:rq:queue", rec["id"])
    riders.pexpire(f"{NS}t:rq:queue", 60_000)
    raw = redis.Redis(connection_pool=r.connection_pool.__class__(
        **r.connection_pool.connection_kwargs | {"decode_responses": False}))
    ledger.load_create_script()  # as after the first enqueue
    raw.config_resetstat()
    assert ledger.create_riding([rec], T0, riders) == [(True, rec["id"])]
    calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in raw.info("commandstats").items()
             if k != "cmdstat_info"}
    assert calls["evalsha"] == 1 and "multi" not in calls, calls  # one client command
    assert stored(r, rec)["state"] == "queued" and zset(r, "dispatching") == {}
    assert raw.hgetall(f"{NS}t:rq:job:{rec['id']}".encode()) == {b"data": b"\x00\xff",
                                                                  b"timeout": b"60"}
    assert r.lrange(f"{NS}t:rq:queue", 0, -1) == [rec["id"]]
    assert 0 < r.pttl(f"{NS}t:rq:queue") <= 60_000
    raw.close()


def test_the_callers_own_work_runs_while_redis_runs_the_create_call(ledger, r):
    """create_riding's meanwhile runs once the call is sent, before its answer is read:
    an enqueue builds its answers then, not after. A script Redis lost is loaded and
    the call goes again (meanwhile not twice); a refused call raises; the connection
    goes back to the pool each time."""
    from tests.harness import wait_until

    seen = []

    def meanwhile(rec):
        # the records are there before this returns: the call went first
        seen.append(wait_until(lambda: r.exists(NS + "job:" + rec["id"]), 10, 0.001,
                               "the record written while the caller works"))

    ledger.load_create_script()
    pool = ledger.r.connection_pool
    rec = job()
    assert ledger.create_riding([rec], T0, Riders(),
                                meanwhile=lambda: meanwhile(rec)) == [(True, rec["id"])]
    assert seen == [1] and len(pool._in_use_connections) == 0
    r.script_flush()
    again = job()
    calls = []
    r.config_resetstat()
    assert ledger.create_riding([again], T0, Riders(), meanwhile=lambda: calls.append(1)) \
        == [(True, again["id"])]
    assert calls == [1] and stored(r, again)["state"] == "queued"
    stats = r.info("commandstats")  # NOSCRIPT, the load, the call: nothing sent twice
    assert (stats["cmdstat_evalsha"]["calls"], stats["cmdstat_script|load"]["calls"]) == (2, 1)
    bad = Riders()
    bad.keys, bad.args = [f"{NS}t:x"], ["DEL", 0]
    with pytest.raises(redis.ResponseError, match="not a single-key write"):
        ledger.create_riding([job()], T0, bad, meanwhile=lambda: None)
    assert len(pool._in_use_connections) == 0 and r.ping()


def test_hashes_that_share_fields_send_them_once_and_are_written_whole(ledger, r):
    recs = [job(), job()]
    riders, fixed = Riders(), {"origin": "q", "timeout": 60, "status": "queued"}
    for rec in recs:
        riders.hset_shared(f"{NS}t:rq:job:{rec['id']}", fixed, {"data": rec["id"]})
    riders.hset_shared(f"{NS}t:rq:job:other", {"origin": "elsewhere"}, {})
    riders.rpush(f"{NS}t:rq:queue", *[rec["id"] for rec in recs])
    assert riders.args.count("=") == 2 and riders.args.count("queued") == 1
    assert ledger.create_riding(recs, T0, riders) == [(True, rec["id"]) for rec in recs]
    for rec in recs:
        assert r.hgetall(f"{NS}t:rq:job:{rec['id']}") == {
            "origin": "q", "timeout": "60", "status": "queued", "data": rec["id"]}
    assert r.hgetall(f"{NS}t:rq:job:other") == {"origin": "elsewhere"}
    # a shared write naming a template the call does not hold writes nothing at all
    rec = job()
    bad = Riders()
    bad.keys, bad.args = [f"{NS}t:y"], ["HSET=", 3, 1, "data", "x"]
    with pytest.raises(redis.ResponseError, match="not a single-key write"):
        ledger.create_riding([rec], T0, bad)
    assert r.exists(NS + "job:" + rec["id"]) == 0 and r.exists(f"{NS}t:y") == 0


def test_only_single_key_writes_ride_and_a_bad_one_writes_nothing(ledger, r):
    riders = Riders()
    for refused in (lambda: riders.get("k"), lambda: riders.delete("a", "b"),
                    lambda: riders.execute_command("EVAL", "return 1", 0)):
        with pytest.raises(TypeError, match="cannot ride"):
            refused()
    assert len(riders) == 0
    # one that slipped past the client (say, another version's) is refused by the
    # script before it writes a thing, the records included
    rec = job()
    bad = Riders()
    bad.keys, bad.args = [f"{NS}t:x"], ["DEL", 0]
    with pytest.raises(redis.ResponseError, match="not a single-key write"):
        ledger.create_riding([rec], T0, bad)
    assert r.exists(NS + "job:" + rec["id"]) == 0 and r.exists(f"{NS}t:x") == 0


def test_create_refuses_a_field_the_record_does_not_declare(ledger, r):
    with pytest.raises(KeyError, match="colour"):
        ledger.create_many([{**job(), "colour": "red"}], T0)
    assert r.dbsize() == 0


def test_idempotency_hit_returns_the_first_job_and_writes_nothing(ledger, r):
    first = job(idempotency_key="k1", fingerprint="fp")
    ledger.create_many([first], T0)
    again = job(idempotency_key="k1", fingerprint="fp")
    assert ledger.create_many([again], T0 + 1) == [(False, first["id"])]
    assert not r.exists(NS + "job:" + again["id"])
    assert r.get(NS + "idem:acme:k1") == f"{first['id']} fp"
    assert 0 < r.ttl(NS + "idem:acme:k1") <= 600
    # the same key twice in one batch: the second is a hit on the first
    a, b = job(idempotency_key="k2", fingerprint="x"), job(idempotency_key="k2", fingerprint="x")
    assert ledger.create_many([a, b], T0) == [(True, a["id"]), (False, a["id"])]
    assert ledger.stats()["enqueued|t.echo|rq"] == 2


def test_a_reused_key_with_other_parameters_writes_nothing_of_the_batch(ledger, r):
    first = job(idempotency_key="k", fingerprint="one")
    ledger.create_many([first], T0)
    before = r.dbsize()
    fresh, clash = job(), job(idempotency_key="k", fingerprint="two")
    with pytest.raises(IdempotencyKeyReused) as caught:
        ledger.create_many([fresh, clash], T0)
    assert caught.value.job_id == first["id"] and caught.value.index == 1
    assert r.dbsize() == before and not r.exists(NS + "job:" + fresh["id"])


def test_a_key_whose_job_is_gone_or_has_no_fingerprint(ledger, r):
    r.set(NS + "idem:acme:old", "nosuchjob fp")
    rec = job(idempotency_key="old", fingerprint="new")
    assert ledger.create_many([rec], T0) == [(True, rec["id"])]
    legacy = job(idempotency_key="legacy")
    ledger.create_many([legacy], T0)
    r.set(NS + "idem:acme:legacy", legacy["id"])  # an older version stored no fingerprint
    assert ledger.create_many([job(idempotency_key="legacy", fingerprint="any")], T0) == [
        (False, legacy["id"])]


def test_create_workflow_writes_the_workflow_and_its_jobs_together(ledger, r):
    a = job(wf="w1", wf_role="member")
    ledger.create_many([a], T0, {"id": "w1", "kind": "group", "tenant": "acme",
                                 "state": "running", "created_at": repr(T0),
                                 "jobs": json.dumps([a["id"]]), "pending": "1"})
    assert ledger.load_workflow("w1")["kind"] == "group"
    assert zset(r, "wft:acme") == {"w1": T0}
    assert ledger.load_many([a["id"]])[0]["wf"] == "w1"


# -- delete (rollback) and dispatched ---------------------------------------------------

def test_delete_takes_back_the_record_its_indexes_its_count_and_its_key(ledger, r):
    rec = job(idempotency_key="k", fingerprint="f", expires_at=T0 + 99)
    ledger.create_many([rec], T0)
    other = job(idempotency_key="k2")
    ledger.create_many([other], T0)
    r.set(NS + "idem:acme:k2", "someone-else f")  # a key that names another job stays
    ledger.delete_many([(rec["id"], "acme", "k"), (other["id"], "acme", "k2")])
    assert not r.exists(NS + "job:" + rec["id"]) and not r.exists(NS + "idem:acme:k")
    assert r.get(NS + "idem:acme:k2") == "someone-else f"
    for name in ("t:acme", "dispatching", "expiries", "queued:default", "due"):
        assert zset(r, name) == {}, name
    assert ledger.stats()["enqueued|t.echo|rq"] == 0


def test_dispatched_lifts_the_guard_alone_or_in_a_pipeline(ledger, r):
    a, b = job(), job()
    ledger.create_many([a, b], T0)
    ledger.dispatched([a["id"]])
    assert zset(r, "dispatching") == {b["id"]: T0 + LEASE}
    with r.pipeline(transaction=True) as pipe:
        ledger.dispatched([b["id"]], pipeline=pipe)
        pipe.execute()
    assert zset(r, "dispatching") == {}


# -- claim -------------------------------------------------------------------------------

def test_claim_runs_a_current_delivery_and_marks_it_started(ledger, r):
    rec, claim = started(ledger, expires_at=T0 + 100, links={"parent": "p"}, max_retries=2)
    assert claim == ClaimResult("run", attempt=1, job_type="t.echo", payload='{"x":1}',
                                tenant="acme", queue="default", timeout=60.0, max_retries=2,
                                links='{"parent": "p"}', upstream="")
    got = stored(r, rec)
    assert got["state"] == "started" and got["attempts"] == 1 and got["worker"] == "host:1"
    assert got["started_at"] == T0 and got["token"] == rec["token"]
    assert ledger.events(rec["id"])[-1] == {"state": "started", "at": T0, "attempt": 1,
                                            "worker": "host:1"}
    assert zset(r, "leases") == {rec["id"]: T0 + LEASE}
    assert zset(r, "queued:default") == {} and zset(r, "expiries") == {}


def test_claim_drops_unknown_stale_and_not_queued_deliveries(ledger, r):
    assert ledger.claim("nope", "t", "w", T0) == ClaimResult("drop", reason="unknown")
    rec = job()
    ledger.create_many([rec], T0)
    assert ledger.claim(rec["id"], "old-token", "w", T0) == ClaimResult("drop", reason="stale")
    assert ledger.claim(rec["id"], rec["token"], "w", T0).action == "run"
    assert ledger.claim(rec["id"], rec["token"], "w", T0) == ClaimResult("drop", reason="started")
    waiting = job()
    ledger.create_many([waiting], T0)
    r.hset(NS + "job:" + waiting["id"], "state", "canceled")
    assert ledger.claim(waiting["id"], waiting["token"], "w", T0).reason == "canceled"
    assert stored(r, rec)["attempts"] == 1


def test_claim_of_an_expired_job_cancels_it(ledger, r):
    rec = job(expires_at=T0 + 5)
    ledger.create_many([rec], T0)
    assert ledger.claim(rec["id"], rec["token"], "w", T0 + 5) == ClaimResult("drop",
                                                                             reason="expired")
    got = stored(r, rec)
    assert (got["state"], got["cancel_reason"], got["token"]) == ("canceled", "expired", None)
    assert got["finished_at"] == T0 + 5 and states(ledger, rec) == ["queued", "canceled"]
    assert zset(r, "expiries") == {} and zset(r, "queued:default") == {}
    assert ledger.stats()["finished|t.echo|rq|canceled"] == 1
    assert 0 < r.ttl(NS + "job:" + rec["id"]) <= TTL


def test_claim_over_the_rate_limit_defers_to_the_next_slot(ledger, r):
    a, b = job(rate=(1, 60.0)), job(rate=(1, 60.0))
    ledger.create_many([a, b], T0)
    assert ledger.claim(a["id"], a["token"], "w", T0).action == "run"
    assert zset(r, "rl:t.echo") == {f"{a['id']}:0": T0}
    assert ledger.claim(b["id"], b["token"], "w", T0 + 10) == ClaimResult(
        "defer", reason=repr(T0 + 60).removesuffix(".0"))
    got = stored(r, b)
    assert got["state"] == "queued" and got["token"] is None and got["attempts"] == 0
    assert zset(r, "due") == {b["id"]: T0 + 60}
    # once the window has passed, the slot is free again
    r.hset(NS + "job:" + b["id"], "token", "again")
    assert ledger.claim(b["id"], "again", "w", T0 + 61).action == "run"
    assert set(zset(r, "rl:t.echo")) == {f"{b['id']}:0"}


# -- finish ------------------------------------------------------------------------------

def test_finish_succeeded_stores_the_result_counts_the_run_and_sets_the_ttl(ledger, r):
    rec, _ = started(ledger)
    assert ledger.finish(rec["id"], rec["token"], "succeeded", '{"ok": 1}', now=T0 + 0.3)
    got = stored(r, rec)
    assert (got["state"], got["result"], got["token"]) == ("succeeded", {"ok": 1}, None)
    assert got["finished_at"] == T0 + 0.3 and states(ledger, rec)[-1] == "succeeded"
    assert zset(r, "leases") == {}
    stats = ledger.stats()
    assert stats["ran|t.echo|rq|succeeded|0.5"] == 1
    assert stats["duration_sum|t.echo|rq"] == pytest.approx(0.3)
    assert 0 < r.ttl(NS + "job:" + rec["id"]) <= TTL


@pytest.mark.parametrize("ran, bucket", [(0.001, "0.005"), (0.5, "0.5"), (0.5001, "1"),
                                         (2.5, "2.5"), (600, "600"), (601, "+Inf")])
def test_finish_counts_each_run_in_its_duration_bucket(ledger, ran, bucket):
    rec, _ = started(ledger)
    ledger.finish(rec["id"], rec["token"], "failed", "{}", now=T0 + ran)
    assert {k for k in ledger.stats() if k.startswith("ran|")} == {
        f"ran|t.echo|rq|failed|{bucket}"}


def test_finish_failed_and_canceled_store_error_and_reason(ledger, r):
    failed, _ = started(ledger)
    ledger.finish(failed["id"], failed["token"], "failed", '{"type": "E"}', now=T0 + 1)
    assert stored(r, failed)["error"] == {"type": "E"} and stored(r, failed)["state"] == "failed"
    plain, _ = started(ledger)
    ledger.finish(plain["id"], plain["token"], "canceled", "requested", now=T0 + 1)
    got = stored(r, plain)
    assert (got["state"], got["cancel_reason"], got["error"]) == ("canceled", "requested", None)
    noisy, _ = started(ledger)
    ledger.finish(noisy["id"], noisy["token"], "canceled", "requested", '{"type": "JobCanceled"}',
                  now=T0 + 1)
    assert stored(r, noisy)["error"] == {"type": "JobCanceled"}


def test_finish_retry_waits_for_its_due_time_without_a_ttl(ledger, r):
    rec, _ = started(ledger, max_retries=1)
    assert ledger.finish(rec["id"], rec["token"], "retry", '{"type": "T"}', repr(T0 + 9),
                         now=T0 + 1)
    got = stored(r, rec)
    assert (got["state"], got["run_at"], got["token"]) == ("retrying", T0 + 9, None)
    assert ledger.events(rec["id"])[-1]["run_at"] == T0 + 9
    assert zset(r, "due") == {rec["id"]: T0 + 9} and zset(r, "leases") == {}
    assert r.ttl(NS + "job:" + rec["id"]) == -1
    assert ledger.stats()["ran|t.echo|rq|retry|1"] == 1


def test_finish_with_a_stale_token_changes_nothing(ledger, r):
    rec, _ = started(ledger)
    before = r.hgetall(NS + "job:" + rec["id"])
    assert ledger.finish(rec["id"], "stale", "succeeded", "1", now=T0 + 1) is False
    assert r.hgetall(NS + "job:" + rec["id"]) == before
    assert zset(r, "leases") == {rec["id"]: T0 + LEASE}
    assert not [k for k in ledger.stats() if k.startswith("ran|")]


# -- heartbeat and progress ----------------------------------------------------------------

def test_heartbeat_renews_the_lease_reports_a_cancel_and_a_lost_job(ledger, r):
    rec, _ = started(ledger)
    before = time.time()
    assert ledger.heartbeat(rec["id"], rec["token"]) == "ok"
    assert zset(r, "leases")[rec["id"]] >= before + LEASE
    ledger.cancel(rec["id"], "requested", T0)
    assert ledger.heartbeat(rec["id"], rec["token"]) == "cancel"
    assert ledger.heartbeat(rec["id"], "stale") == "lost"
    assert ledger.heartbeat("nope", "t") == "lost"


def test_progress_is_stored_for_the_current_delivery(ledger, r):
    rec, _ = started(ledger)
    assert ledger.progress(rec["id"], rec["token"], {"current": 1, "total": 3, "message": "a"})
    assert stored(r, rec)["progress"] == {"current": 1, "total": 3, "message": "a"}


def test_progress_of_a_stale_attempt_is_ignored(ledger, r):
    rec, _ = started(ledger)
    ledger.progress(rec["id"], rec["token"], {"current": 2, "total": 3, "message": "now"})
    assert not ledger.progress(rec["id"], "stale", {"current": 0, "total": 3, "message": "old"})
    assert stored(r, rec)["progress"]["message"] == "now"
    assert not ledger.progress("nope", "t", {"current": 1})
    assert not r.exists(NS + "job:nope")


# -- cancel ------------------------------------------------------------------------------

@pytest.mark.parametrize("state", ["scheduled", "queued", "retrying"])
def test_cancel_of_a_waiting_job_ends_it_at_once(ledger, r, state):
    rec = job(state=state, run_at=T0 + 50 if state != "queued" else None, expires_at=T0 + 99)
    ledger.create_many([rec], T0)
    assert ledger.cancel(rec["id"], "requested", T0 + 1) == "canceled"
    got = stored(r, rec)
    assert (got["state"], got["cancel_reason"], got["token"]) == ("canceled", "requested", None)
    assert got["finished_at"] == T0 + 1 and states(ledger, rec)[-1] == "canceled"
    for name in ("due", "dispatching", "expiries", "queued:default"):
        assert zset(r, name) == {}, name
    assert ledger.stats()["finished|t.echo|rq|canceled"] == 1
    assert 0 < r.ttl(NS + "job:" + rec["id"]) <= TTL


def test_cancel_of_a_running_job_is_a_request(ledger, r):
    rec, _ = started(ledger)
    assert ledger.cancel(rec["id"], "requested", T0 + 1) == "requested"
    got = stored(r, rec)
    assert got["state"] == "started" and got["cancel_requested"] is True
    assert got["cancel_reason"] == "requested" and states(ledger, rec)[-1] == "cancel_requested"
    assert zset(r, "leases") == {rec["id"]: T0 + LEASE}


def test_cancel_of_an_ended_or_unknown_job(ledger, r):
    rec, _ = started(ledger)
    ledger.finish(rec["id"], rec["token"], "succeeded", "1", now=T0 + 1)
    assert ledger.cancel(rec["id"], "requested", T0 + 2) == "ended:succeeded"
    assert ledger.cancel("nope", "requested", T0) == "missing"
    assert stored(r, rec)["cancel_reason"] is None


# -- maintain ----------------------------------------------------------------------------

def test_maintain_releases_due_jobs_high_priority_first(ledger, r):
    low, default, high = (job(state="scheduled", run_at=T0 + 8 + i, priority=p)
                          for i, p in enumerate(("low", "default", "high")))
    late = job(state="scheduled", run_at=T0 + 100)
    ledger.create_many([low, default, high, late], T0)
    out = ledger.maintain(T0 + 10)
    assert [d.job_id for d in out] == [high["id"], default["id"], low["id"]]
    assert out[0] == Dispatch(high["id"], out[0].token, "default", "high", 60.0, "t.echo")
    assert len({d.token for d in out}) == 3 and all(d.token.startswith("r") for d in out)
    for d in out:
        got = r.hgetall(NS + "job:" + d.job_id)
        assert (got["state"], got["token"]) == ("queued", d.token)
    assert zset(r, "due") == {late["id"]: T0 + 100}
    assert zset(r, "dispatching") == {d.job_id: T0 + 10 + LEASE for d in out}
    assert zset(r, "queued:default") == {d.job_id: T0 + 10 for d in out}
    assert states(ledger, low) == ["scheduled", "queued"]


def test_maintain_releases_at_most_limit_and_skips_ended_jobs(ledger, r):
    recs = [job(state="scheduled", run_at=T0 + 1 + i / 10) for i in range(3)]
    ledger.create_many(recs, T0)
    ledger.cancel(recs[0]["id"], "requested", T0)
    r.zadd(NS + "due", {recs[0]["id"]: T0 + 1})  # a stray entry of an ended job
    assert len(ledger.maintain(T0 + 2, limit=2)) == 1
    assert len(ledger.maintain(T0 + 2, limit=2)) == 1
    assert stored(r, recs[0])["state"] == "canceled" and zset(r, "due") == {}


def test_maintain_requeues_a_job_whose_lease_ran_out_then_fails_it_at_the_cap(ledger, r):
    rec, _ = started(ledger)
    out = ledger.maintain(T0 + LEASE + 1)
    got = stored(r, rec)
    assert got["state"] == "queued" and got["lost"] == 1
    assert got["error"]["type"] == "WorkerLost" and "lost delivery 1 of at most 2" in got[
        "error"]["message"]
    assert [d.job_id for d in out] == [rec["id"]] and got["token"] == out[0].token
    assert ledger.events(rec["id"])[-1]["reason"] == "worker_lost"
    assert zset(r, "leases") == {} and zset(r, "due") == {}
    # the second loss reaches max_lost_deliveries (2): it fails for good
    assert ledger.claim(rec["id"], out[0].token, "w", T0 + 40).attempt == 2
    assert ledger.maintain(T0 + 40 + LEASE + 1) == []
    got = stored(r, rec)
    assert (got["state"], got["lost"], got["token"]) == ("failed", 2, None)
    assert ledger.stats()["finished|t.echo|rq|failed"] == 1
    assert 0 < r.ttl(NS + "job:" + rec["id"]) <= TTL


def test_maintain_ends_a_lost_job_that_was_asked_to_cancel_as_canceled(ledger, r):
    rec, _ = started(ledger)
    ledger.cancel(rec["id"], "requested", T0 + 1)
    assert ledger.maintain(T0 + LEASE + 1) == []
    got = stored(r, rec)
    assert (got["state"], got["cancel_reason"]) == ("canceled", "requested")


def test_maintain_ignores_a_lease_of_a_job_no_longer_running(ledger, r):
    rec, _ = started(ledger)
    r.hset(NS + "job:" + rec["id"], "state", "succeeded")
    assert ledger.maintain(T0 + LEASE + 1) == []
    assert zset(r, "leases") == {} and stored(r, rec)["lost"] == 0


def test_maintain_dispatches_again_what_was_never_confirmed(ledger, r):
    rec, gone = job(), job()
    ledger.create_many([rec, gone], T0)
    r.hset(NS + "job:" + gone["id"], "state", "started")
    assert ledger.maintain(T0 + LEASE - 1) == []
    out = ledger.maintain(T0 + LEASE)
    assert [d.job_id for d in out] == [rec["id"]] and out[0].token != rec["token"]
    assert stored(r, rec)["token"] == out[0].token
    assert zset(r, "dispatching") == {rec["id"]: T0 + 2 * LEASE}
    # the first delivery is now stale
    assert ledger.claim(rec["id"], rec["token"], "w", T0 + LEASE).reason == "stale"


def test_maintain_cancels_jobs_that_expired_before_they_started(ledger, r):
    waiting = job(state="scheduled", run_at=T0 + 50, expires_at=T0 + 20)
    running, _ = started(ledger, expires_at=T0 + 20)
    r.zadd(NS + "expiries", {running["id"]: T0 + 20})  # claim took it out; a stray one stays inert
    ledger.create_many([waiting], T0)
    assert ledger.maintain(T0 + 20) == []
    got = stored(r, waiting)
    assert (got["state"], got["cancel_reason"]) == ("canceled", "expired")
    assert zset(r, "due") == {} and zset(r, "expiries") == {}
    assert stored(r, running)["state"] == "started"


# -- redeliver_unclaimed ---------------------------------------------------------------

def test_redeliver_releases_only_current_unclaimed_deliveries(ledger, r):
    lost, claimed, stale = job(), job(), job()
    ledger.create_many([lost, claimed, stale], T0)
    ledger.claim(claimed["id"], claimed["token"], "w", T0)
    assert ledger.redeliver_unclaimed([]) == 0
    before = time.time()
    assert ledger.redeliver_unclaimed([(lost["id"], lost["token"]),
                                       (claimed["id"], claimed["token"]),
                                       (stale["id"], "old"), ("nope", "t")]) == 1
    got = stored(r, lost)
    assert got["state"] == "queued" and got["token"] is None
    assert ledger.events(lost["id"])[-1]["reason"] == "delivery_lost"
    assert set(zset(r, "dispatching")) == {claimed["id"], stale["id"]}
    assert zset(r, "due")[lost["id"]] >= before
    assert [d.job_id for d in ledger.maintain(time.time() + 1)] == [lost["id"]]


# -- workflows -----------------------------------------------------------------------------

def workflow(ledger, kind: str, n: int, body: bool = False) -> tuple[str, list[dict]]:
    wf = uuid.uuid4().hex
    recs = []
    for i in range(n + body):
        is_body = body and i == n
        waits = (kind == "chain" and i > 0) or is_body
        recs.append(job(wf=wf, wf_role="body" if is_body else (
            "header" if kind == "chord" else "member"), state="scheduled" if waits else "queued",
            waiting=waits or None, run_at=T0 + 5 if is_body else None))
    if kind == "chain":
        for a, b in zip(recs, recs[1:]):
            a["wf_next"] = b["id"]
    meta = {"id": wf, "kind": kind, "tenant": "acme", "state": "running",
            "created_at": repr(T0), "jobs": json.dumps([x["id"] for x in recs]), "pending": str(n)}
    if kind == "chord":
        meta["header"] = json.dumps([x["id"] for x in recs[:n]])
        meta["body"] = recs[n]["id"]
    ledger.create_many(recs, T0, meta)
    return wf, recs


def run_to(ledger, rec, outcome, a="", token=None, now=T0 + 1):
    token = token or rec["token"]
    assert ledger.claim(rec["id"], token, "w", now).action == "run"
    assert ledger.finish(rec["id"], token, outcome, a, now=now)


def test_chain_releases_the_next_job_with_the_result_and_ends_with_the_last(ledger, r):
    wf, (a, b) = workflow(ledger, "chain", 2)
    assert zset(r, "due") == {}
    run_to(ledger, a, "succeeded", '{"n": 1}')
    got = stored(r, b)
    assert got["upstream"] == {"n": 1} and got["waiting"] is False
    assert zset(r, "due") == {b["id"]: T0 + 1}
    assert ledger.load_workflow(wf)["state"] == "running"
    (d,) = ledger.maintain(T0 + 2)
    assert ledger.claim(b["id"], d.token, "w", T0 + 2).upstream == '{"n": 1}'
    ledger.finish(b["id"], d.token, "succeeded", "2", now=T0 + 3)
    assert ledger.load_workflow(wf)["state"] == "succeeded"
    assert 0 < r.ttl(NS + "wf:" + wf) <= TTL


@pytest.mark.parametrize("outcome, state, reason", [("failed", "failed", "upstream_failed"),
                                                    ("canceled", "canceled",
                                                     "upstream_canceled")])
def test_chain_end_without_success_cancels_every_later_job(ledger, r, outcome, state, reason):
    wf, (a, b, c) = workflow(ledger, "chain", 3)
    run_to(ledger, a, outcome, "requested" if outcome == "canceled" else "{}")
    for later in (b, c):
        got = stored(r, later)
        assert (got["state"], got["cancel_reason"]) == ("canceled", reason)
    assert ledger.load_workflow(wf)["state"] == state
    assert ledger.stats()["finished|t.echo|rq|canceled"] == 2


def test_chord_releases_the_body_with_the_header_results_in_order(ledger, r):
    wf, (h1, h2, body) = workflow(ledger, "chord", 2, body=True)
    run_to(ledger, h2, "succeeded", '"second"')
    assert zset(r, "due") == {} and ledger.load_workflow(wf)["pending"] == "1"
    run_to(ledger, h1, "succeeded", '"first"', now=T0 + 2)
    got = stored(r, body)
    assert got["upstream"] == ["first", "second"]
    assert zset(r, "due") == {body["id"]: T0 + 5}  # its own run_at is the earliest it starts
    (d,) = ledger.maintain(T0 + 5)
    run_to(ledger, body, "failed", "{}", token=d.token, now=T0 + 6)
    assert ledger.load_workflow(wf)["state"] == "failed"


def test_chord_header_failure_cancels_the_body(ledger, r):
    wf, (h1, h2, body) = workflow(ledger, "chord", 2, body=True)
    run_to(ledger, h1, "failed", "{}")
    got = stored(r, body)
    assert (got["state"], got["cancel_reason"]) == ("canceled", "upstream_failed")
    assert ledger.load_workflow(wf)["state"] == "failed"


def test_group_succeeds_when_every_member_did_and_fails_on_the_first_failure(ledger, r):
    wf, (a, b) = workflow(ledger, "group", 2)
    run_to(ledger, a, "succeeded", "1")
    assert ledger.load_workflow(wf)["state"] == "running"
    run_to(ledger, b, "succeeded", "2")
    assert ledger.load_workflow(wf)["state"] == "succeeded"
    wf2, (c, d) = workflow(ledger, "group", 2)
    run_to(ledger, c, "failed", "{}")
    assert ledger.load_workflow(wf2)["state"] == "failed"
    assert stored(r, d)["state"] == "queued"


def test_cancel_of_a_waiting_workflow_job_ends_the_workflow(ledger, r):
    wf, (a, b) = workflow(ledger, "chain", 2)
    assert ledger.cancel(a["id"], "requested", T0 + 1) == "canceled"
    assert stored(r, b)["cancel_reason"] == "upstream_canceled"
    assert ledger.load_workflow(wf)["state"] == "canceled"


# -- workers -------------------------------------------------------------------------------

def test_worker_heartbeat_announces_and_gone_removes_a_worker(ledger, r):
    ledger.worker_heartbeat("w1", {"queues": "default", "engine": "rq"}, ttl=10)
    (w,) = ledger.workers(10)
    assert w["id"] == "w1" and w["queues"] == "default" and float(w["seen_at"]) <= time.time()
    assert 0 < r.ttl(NS + "worker:w1") <= 11
    r.zadd(NS + "workers", {"ghost": time.time() - 60})
    ledger.worker_heartbeat("w2", {"queues": "q"}, ttl=10)
    assert "ghost" in zset(r, "workers") and "ghost" not in [w["id"] for w in ledger.workers(10)]
    ledger.worker_heartbeat("w2", {"queues": "q"}, ttl=10, prune=True)
    assert "ghost" not in zset(r, "workers")
    ledger.worker_gone("w1")
    assert [w["id"] for w in ledger.workers(10)] == ["w2"] and not r.exists(NS + "worker:w1")


def test_a_heartbeat_renews_the_record_and_writes_it_again_only_once_it_is_gone(ledger, r):
    """The info of a worker does not change: a beat renews its record's expiry and its
    place in the live set, and writes the info only where the record is not there."""
    ledger.worker_heartbeat("w1", {"queues": "default"}, ttl=10)
    r.hset(NS + "worker:w1", "queues", "changed by hand")
    r.expire(NS + "worker:w1", 3)
    r.config_resetstat()
    ledger.worker_heartbeat("w1", {"queues": "default"}, ttl=10)
    assert r.hget(NS + "worker:w1", "queues") == "changed by hand"
    assert r.ttl(NS + "worker:w1") > 3
    calls = {k: v["calls"] for k, v in r.info("commandstats").items()}
    assert "cmdstat_hset" not in calls and calls["cmdstat_evalsha"] == 1
    r.zadd(NS + "workers", {"w1": time.time() - 5})  # as if its last beat were 5 s ago
    (w,) = ledger.workers(10)
    assert float(w["seen_at"]) == zset(r, "workers")["w1"]
    ledger.worker_heartbeat("w1", {"queues": "default"}, ttl=10)
    (w,) = ledger.workers(10)
    assert float(w["seen_at"]) == zset(r, "workers")["w1"] > time.time() - 1
    r.delete(NS + "worker:w1")  # taken away (worker_gone, or it expired)
    ledger.worker_heartbeat("w1", {"queues": "default"}, ttl=10)
    assert r.hget(NS + "worker:w1", "queues") == "default"


def test_a_beat_rides_in_the_maintain_call_and_a_plain_beat_is_one_zadd(ledger, r):
    ledger.maintain(time.time(), beat=("w1", {"queues": "default"}, 10, False))
    assert r.hget(NS + "worker:w1", "queues") == "default" and 0 < r.ttl(NS + "worker:w1") <= 11
    (w,) = ledger.workers(10)
    r.config_resetstat()
    ledger.worker_seen("w1")  # between two full beats: the live set's score alone
    calls = {k: v["calls"] for k, v in r.info("commandstats").items()
             if k not in ("cmdstat_info", "cmdstat_config|resetstat")}
    assert calls == {"cmdstat_zadd": 1}
    assert zset(r, "workers")["w1"] > float(w["seen_at"])
    ledger.worker_gone("w1")
    ledger.worker_seen("w1")  # a worker taken off the list is not put back by it
    assert zset(r, "workers") == {}


def test_an_idle_maintain_call_reads_the_empty_deadline_sets_with_one_exists(ledger, r):
    ledger.maintain(T0)  # the script loaded
    r.config_resetstat()
    assert ledger.maintain(T0) == []
    calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in r.info("commandstats").items()
             if k not in ("cmdstat_info", "cmdstat_config|resetstat")}
    # before: a ZRANGE of each of the four sets
    assert calls == {"evalsha": 1, "exists": 1, "zrangebyscore": 1, "set": 1}, calls
    ledger.create_many([job(state="scheduled", run_at=T0 + 3)], T0)
    r.config_resetstat()
    ledger.maintain(T0)  # a set holds something: each is read
    assert r.info("commandstats")["cmdstat_zrange"]["calls"] == 4
    assert ledger.next_wake == T0 + 3


# -- the maintenance loop's deadlines ---------------------------------------------------

def test_maintain_returns_the_earliest_deadline_left_at_most_idle_seconds_on(ledger, r):
    assert ledger.maintain(T0) == [] and ledger.next_wake == T0 + ledger.s.idle_seconds
    ledger.create_many([job(state="scheduled", run_at=T0 + 3, expires_at=T0 + 2)], T0)
    ledger.maintain(T0)
    assert ledger.next_wake == T0 + 2  # the expiry comes first
    rec, _ = started(ledger, now=T0 + 0.5)  # its lease: T0 + 0.5 + LEASE, later than both
    ledger.maintain(T0 + 1)
    assert ledger.next_wake == T0 + 2
    assert float(r.get(NS + "wake_at")) == T0 + 2


def test_a_deadline_earlier_than_the_loops_know_wakes_one_and_a_later_one_does_not(ledger, r):
    ledger.maintain(T0)  # the loops now sleep until T0 + idle_seconds
    ledger.create_many([job(state="scheduled", run_at=T0 + ledger.s.idle_seconds + 5)], T0)
    assert r.llen(NS + "wake") == 0
    for delay in (4, 3):  # each earlier than the last: one wake element at most
        ledger.create_many([job(state="scheduled", run_at=T0 + delay)], T0)
    assert r.lrange(NS + "wake", 0, -1) == ["1"] and float(r.get(NS + "wake_at")) == T0 + 3
    waiter = redis.Redis(connection_pool=r.connection_pool)
    assert ledger.wait_for_deadline(0.05, waiter) is True
    assert ledger.wait_for_deadline(0.05, waiter) is False  # taken: the next wait sleeps
    rec, claim = started(ledger, now=T0)
    ledger.finish(rec["id"], rec["token"], "retry", '{"type": "T"}', repr(T0 + 2), now=T0 + 1)
    assert r.llen(NS + "wake") == 1  # a retry's backoff is a deadline too


def test_create_stores_every_value_exactly_as_sent(ledger, r):
    """The create script takes each record's fields as one JSON argument: whatever a
    value holds (quotes, escapes, NUL, newlines, non-ASCII, a float's last digits) is
    stored byte for byte, as a plain HSET of the same values would."""
    tricky = {"s": "\"quoted\" \\ back\\slash \x00 nul\nline\ttab é ☃ 😀 \u2028",
              "n": 12345678901234567890, "f": 0.1 + 0.2}
    rec = job(payload=tricky, created_at=T0 + 0.123456789, timeout=1e-7,
              idempotency_key="k-\u00e9-\"x\"")
    ledger.create_many([rec], T0)
    stored = r.hgetall(f"{NS}job:{rec['id']}")
    for field, value in rec.items():
        if field != "fingerprint":
            assert stored[field] == str(value), field
    assert json.loads(stored["payload"]) == tricky
    assert ledger.create_many([rec], T0) == [(False, rec["id"])]  # the key found again


def test_a_claim_takes_its_deliverys_note_in_hand_out_whatever_it_answers(ledger, r):
    """The worker notes a delivery in hand as it takes it (adapters/inhand.py); the claim
    takes that note out in its own script, run or drop, so the sweep finds only the
    notes of deliveries a dead worker took and never claimed."""
    key = "test:inhand"
    rec, other = job(), job()
    ledger.create_many([rec, other], T0)
    notes = {f"{rec['id']}-{rec['token']}": T0, f"{rec['id']}-old-token": T0,
             f"{other['id']}-{other['token']}": T0}
    r.zadd(NS + key, notes)
    assert ledger.claim(rec["id"], rec["token"], "w", T0, NS + key).action == "run"
    assert ledger.claim(rec["id"], "old-token", "w", T0, NS + key).reason == "stale"
    assert zset(r, key) == {f"{other['id']}-{other['token']}": T0}, "the other is not claimed"
    assert ledger.claim(other["id"], other["token"], "w", T0).action == "run"
    assert zset(r, key) == {f"{other['id']}-{other['token']}": T0}, "no key given: untouched"
