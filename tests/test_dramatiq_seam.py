"""The seam between Switchyard and Dramatiq's Redis broker (see ``adapters/dramatiq.py``).

When Dramatiq's broker is the ledger's own Redis, a job's record and its message commit in
one MULTI, the message written as Dramatiq's enqueue script writes it. Here: that message,
its hash and its list are what Dramatiq itself writes, the route is taken only for the
same server and database, and an enqueue is one transaction with no dispatch guard.
"""

from __future__ import annotations

import dataclasses
import json

import redis

import tests.conformance.jobs  # noqa: F401 - registers t.*
from adapters import AdapterSettings, Switchyard
from adapters.dramatiq import DramatiqEngine
from adapters.ledger import Dispatch

# made anew for every message
_GENERATED = ("message_id", "message_timestamp")


def _stored(r: redis.Redis, prefix: str, queue: str) -> dict:
    [message_id] = r.lrange(f"{prefix}{queue}", 0, -1)
    message = json.loads(r.hget(f"{prefix}{queue}.msgs", message_id))
    assert message["options"].pop("redis_message_id") == message_id
    for name in _GENERATED:
        assert message.pop(name)
    message.pop("queue_name")
    return message


def test_the_message_written_is_the_one_dramatiq_writes(redis_url):
    adapter = Switchyard(DramatiqEngine, AdapterSettings.from_env({"REDIS_URL": redis_url}))
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        engine = adapter.engine
        assert engine.shares_ledger_redis
        prefix = f"{engine.broker.namespace}:"
        dispatch = Dispatch(job_id="a" * 32, token="b" * 12, queue="theirs", priority="default",
                            timeout=300.0, job_type="t.echo")
        engine.broker.enqueue(engine._message(
            dispatch.job_id, dispatch.token, engine.engine_name("theirs"),
            {"time_limit": engine.time_limit(dispatch) * 1000}))
        pipe = adapter.redis.pipeline(transaction=True)
        pipe.multi()
        engine.publish([dataclasses.replace(dispatch, queue="ours")], pipe)
        pipe.execute()
        assert _stored(r, prefix, engine.engine_name("ours")) == \
            _stored(r, prefix, engine.engine_name("theirs"))
    finally:
        r.close()
        adapter.close()


def test_another_database_takes_the_guarded_route(redis_url):
    other = redis_url.rsplit("/", 1)[0] + "/5"
    adapter = Switchyard(DramatiqEngine, AdapterSettings.from_env(
        {"REDIS_URL": redis_url, "DRAMATIQ_BROKER_URL": other}))
    try:
        assert not adapter.engine.shares_ledger_redis
        info = adapter.enqueue("t.echo", {"x": 1})
        assert adapter.get(info.id).state.value == "queued"
    finally:
        redis.Redis.from_url(other).flushdb()
        adapter.close()


def _calls(client: redis.Redis, command: str) -> int:
    return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_job_and_its_message_commit_in_one_transaction(redis_url):
    adapter = Switchyard(DramatiqEngine, AdapterSettings.from_env({"REDIS_URL": redis_url}))
    r = redis.Redis.from_url(redis_url)
    try:
        r.config_resetstat()
        info = adapter.enqueue("t.echo", {"x": 1})
        assert (_calls(r, "multi"), _calls(r, "exec")) == (1, 1)
        assert r.zcard("sy:dispatching") == 0, "the one-transaction route takes no guard"
        queue = f"{adapter.engine.broker.namespace}:{adapter.engine.engine_name('default')}"
        assert r.llen(queue) == 1
        assert adapter.get(info.id).state.value == "queued"
    finally:
        r.close()
        adapter.close()
