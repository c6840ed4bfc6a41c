"""The seam between Switchyard and kombu's Redis publish batch (see ``adapters/celery_seam.py``).

When Celery's broker is the ledger's own Redis, a job's record and its message commit
in one MULTI: kombu routes the message as usual and its final commands (LPUSH, the
queue's PEXPIRE) go into the client's transaction through a batch session of kombu's.
Here: the kombu internals that relies on still exist as used, the route is taken only
for the same server and database, and one enqueue is one transaction that leaves no
dispatch guard behind, with a message a Celery worker would take.
"""

from __future__ import annotations

import inspect
import json

import pytest
import redis
from kombu.messaging import Producer, _ProducerBatchState
from kombu.transport.redis import PublishBatch

import tests.conformance.jobs  # noqa: F401 - registers t.*
from adapters import AdapterSettings, JobOptions, Switchyard
from adapters.celery import CeleryEngine
from adapters.celery_seam import IntoTransaction, same_redis


def test_the_kombu_internals_used_are_there():
    assert list(inspect.signature(PublishBatch.__init__).parameters) == [
        "self", "channel", "max_size"]
    for name in ("publish", "flush", "discard", "close"):
        assert callable(getattr(PublishBatch, name)), name
    state = _ProducerBatchState(10)
    assert state.session is None and hasattr(state, "publish")
    assert "_batch_local" in inspect.getsource(Producer.__init__)


def test_the_transaction_session_has_what_kombus_batch_sets_up(redis_url):
    """Switchyard's session sets up kombu's batch state itself (kombu's __init__ makes a
    client and a pipeline only to have them replaced): the same attributes, or kombu
    has changed under it."""
    adapter = Switchyard(CeleryEngine, AdapterSettings.from_env({"REDIS_URL": redis_url}))
    try:
        with adapter.engine.app.producer_or_acquire() as producer:
            theirs = PublishBatch(producer.channel, 10)
            ours = IntoTransaction(producer.channel, adapter.redis.pipeline())
            assert set(vars(ours)) == set(vars(theirs))
            theirs.close()
            ours.close()
    finally:
        adapter.close()


@pytest.mark.parametrize("ledger, broker, same", [
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0", True),
    ("redis://127.0.0.1:6379", "redis://127.0.0.1/0", True),
    ("redis://h:1/2", "redis://h:1/3", False),
    ("redis://h:1/2", "redis://other:1/2", False),
    ("rediss://h:1/0?ssl_cert_reqs=required", "rediss://h:1/0", True),
])
def test_one_transaction_only_on_the_same_server_and_database(ledger, broker, same):
    assert same_redis(ledger, broker) is same


def _calls(client: redis.Redis, command: str) -> int:
    return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_job_and_its_message_commit_in_one_transaction(redis_url):
    adapter = Switchyard(CeleryEngine, AdapterSettings.from_env({"REDIS_URL": redis_url}))
    raw = redis.Redis.from_url(redis_url)
    try:
        assert adapter.engine.shares_ledger_redis
        adapter.enqueue("t.echo", {"x": 0})  # kombu declares the queue once, beforehand
        raw.config_resetstat()
        info = adapter.enqueue("t.echo", {"x": 1}, JobOptions(priority="high"))
        assert (_calls(raw, "multi"), _calls(raw, "exec")) == (1, 1)
        assert raw.zcard("sy:dispatching") == 0, "the one-transaction route takes no guard"
        assert adapter.get(info.id).state.value == "queued"
        queue = adapter.engine._queue("default").name
        # kombu's priority lists: high (0) is the queue's own key, default (3) is ":3"
        [high] = [json.loads(m) for m in raw.lrange(queue, 0, -1)]
        assert high["headers"]["task"] == "switchyard.run"
        assert high["headers"]["argsrepr"].startswith(f"['{info.id}'")
        assert raw.llen(f"{queue}:3") == 1
    finally:
        adapter.close()
        raw.close()


def test_an_expiring_queue_has_its_pexpire_in_the_transaction(redis_url):
    """SWITCHYARD_QUEUE_EXPIRES: kombu adds the queue's PEXPIRE to a publish only on a
    channel that declared the queue, so the first enqueue declares it and every one,
    first or not, leaves the queue's lists with a TTL. (A queue of its own: kombu's
    declaration cache, shared by every app on one broker URL in a process, knows a queue
    by its name, not its arguments.)"""
    adapter = Switchyard(CeleryEngine, AdapterSettings.from_env(
        {"REDIS_URL": redis_url, "SWITCHYARD_QUEUE_EXPIRES": "600"}))
    raw = redis.Redis.from_url(redis_url)
    try:
        queue = adapter.engine._queue("expiring").name
        for n in range(2):
            raw.delete(f"{queue}:3")
            adapter.enqueue("t.echo", {"x": n}, JobOptions(queue="expiring"))
            assert raw.llen(f"{queue}:3") == 1
            assert 0 < raw.pttl(f"{queue}:3") <= 600_000, n
    finally:
        adapter.close()
        raw.close()


def test_another_database_takes_the_guarded_route(redis_url):
    other = redis_url.rsplit("/", 1)[0] + "/5"
    adapter = Switchyard(CeleryEngine, AdapterSettings.from_env(
        {"REDIS_URL": redis_url, "CELERY_BROKER_URL": other}))
    broker = redis.Redis.from_url(other)
    try:
        assert not adapter.engine.shares_ledger_redis
        info = adapter.enqueue("t.echo", {"x": 1})
        assert adapter.get(info.id).state.value == "queued"
        assert broker.llen(adapter.engine._queue("default").name + ":3") == 1
    finally:
        broker.flushdb()
        broker.close()
        adapter.close()


def test_a_message_an_earlier_release_left_in_kombus_unacked_hash_is_delivered_again(redis_url):
    """Before kombu's ack emulation was turned off, a worker that died holding a message
    left it in kombu's ``unacked`` hash, which kombu now never reads: the maintenance
    loop delivers its job again and takes the message out."""
    adapter = Switchyard(CeleryEngine, AdapterSettings.from_env({"REDIS_URL": redis_url}))
    raw = redis.Redis.from_url(redis_url)
    try:
        info = adapter.enqueue("t.echo", {"x": 1})
        queue = adapter.engine._queue("default").name
        message = raw.rpop(f"{queue}:3")  # taken by that worker, as kombu's BRPOP did
        raw.hset("unacked", "tag-1", json.dumps([json.loads(message), queue, queue]))
        raw.zadd("unacked_index", {"tag-1": 1.0})  # long before a lease ago
        assert adapter.engine.recover_stranded() == 1
        assert raw.zcard("unacked_index") == 0 and not raw.hexists("unacked", "tag-1")
        record = adapter.ledger.current_tokens([info.id])
        assert record == [""], "the lost delivery is cancelled; the job is due again"
        assert raw.zscore("sy:due", info.id) is not None
    finally:
        adapter.close()
        raw.close()


def test_no_ack_emulation_on_a_redis_broker(redis_url):
    adapter = Switchyard(CeleryEngine, AdapterSettings.from_env({"REDIS_URL": redis_url}))
    try:
        assert adapter.engine.app.conf.broker_transport_options["ack_emulation"] is False
        with adapter.engine.app.connection_for_read() as conn:
            assert conn.default_channel.ack_emulation is False
    finally:
        adapter.close()
