"""The seam between Switchyard and kombu's Redis transport (see ``adapters/celery_seam.py``).

When Celery's broker is the ledger's own Redis, a job's record and its message commit
in one MULTI, the message written as kombu's Redis transport writes Celery's. Here: that
message, its list and the queue's PEXPIRE are what Celery and kombu themselves write
(captured from kombu's own publish batch), the route is taken only for the same server
and database, and one enqueue is one transaction that leaves no dispatch guard behind,
with a message a Celery worker takes.
"""

from __future__ import annotations

import json

import pytest
import redis
from kombu.messaging import _ProducerBatchState
from kombu.transport.redis import PublishBatch

import tests.conformance.jobs  # noqa: F401 - registers t.*
from adapters import AdapterSettings, JobOptions, Switchyard
from adapters.celery import TASK_NAME, CeleryEngine
from adapters.connections import same_redis
from adapters.ledger import Dispatch

# made anew for every message, or of the process that sends it
_GENERATED = {"id", "root_id", "correlation_id", "delivery_tag", "origin", "reply_to"}


def _celerys_own(engine: CeleryEngine, dispatch: Dispatch) -> list[tuple[str, tuple]]:
    """The Redis commands Celery and kombu send for the delivery (Celery's apply_async,
    kombu's routing), captured from kombu's publish batch before it sends them."""
    with engine.app.producer_or_acquire() as producer:
        batch = PublishBatch(producer.channel, 100)
        state = _ProducerBatchState(100)
        state.session = batch
        producer._batch_local.current = state
        try:
            engine._task.apply_async(
                args=[dispatch.job_id, dispatch.token], producer=producer,
                queue=engine._queue(dispatch.queue),
                priority=engine._priorities[dispatch.priority],
                time_limit=engine.time_limit(dispatch))
            return [(c[0][0].lower() if isinstance(c[0][0], str) else c[0][0].decode().lower(),
                     c[0][1:]) for c in batch.pipeline.command_stack]
        finally:
            producer._batch_local.current = None
            batch.discard()
            batch.close()


def _ours(adapter: Switchyard, dispatch: Dispatch) -> list[tuple[str, tuple]]:
    pipe = adapter.redis.pipeline(transaction=True)
    pipe.multi()
    adapter.engine.publish([dispatch], pipe)
    commands = [(c[0][0].lower(), c[0][1:]) for c in pipe.command_stack]
    pipe.reset()
    return commands


def _comparable(message: str) -> dict:
    m = json.loads(message)
    for part in (m["headers"], m["properties"]):
        for name in _GENERATED & set(part):
            assert part[name], name
            part[name] = "<generated>"
    return m


@pytest.mark.parametrize("priority", ["high", "default", "low"])
@pytest.mark.parametrize("expires", [None, "600"])
def test_the_message_written_is_the_one_celery_and_kombu_write(redis_url, priority, expires):
    env = {"REDIS_URL": redis_url, **({"SWITCHYARD_QUEUE_EXPIRES": expires} if expires else {})}
    adapter = Switchyard(CeleryEngine, AdapterSettings.from_env(env))
    try:
        assert adapter.engine.shares_ledger_redis
        queue = f"seam{priority}{expires or ''}"  # kombu's declaration cache knows names
        dispatch = Dispatch(job_id="a" * 32, token="b" * 12, queue=queue, priority=priority,
                            timeout=300.0, job_type="t.echo")
        theirs, ours = _celerys_own(adapter.engine, dispatch), _ours(adapter, dispatch)
        assert [name for name, _ in ours] == [name for name, _ in theirs]
        (_, (their_key, their_message)), (_, (our_key, our_message)) = theirs[0], ours[0]
        assert our_key == their_key
        assert _comparable(our_message) == _comparable(their_message)
        assert json.loads(our_message)["headers"]["task"] == TASK_NAME
        assert ours[1:] == [(n, tuple(int(a) if str(a).isdigit() else a for a in args))
                            for n, args in theirs[1:]], "the queue's PEXPIREs"
        if expires:
            assert len(ours) == 4  # one per kombu priority list
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


def test_a_job_and_its_message_commit_in_one_script_call(redis_url):
    """The record and kombu's LPUSH are written by the ledger's create script, in one
    call (adapters/riders.py): one client command, where MULTI, the script, the LPUSH
    and EXEC were four."""
    adapter = Switchyard(CeleryEngine, AdapterSettings.from_env({"REDIS_URL": redis_url}))
    raw = redis.Redis.from_url(redis_url)
    try:
        assert adapter.engine.shares_ledger_redis
        adapter.enqueue("t.echo", {"x": 0})  # kombu declares the queue once, beforehand
        raw.config_resetstat()
        info = adapter.enqueue("t.echo", {"x": 1}, JobOptions(priority="high"))
        assert (_calls(raw, "evalsha"), _calls(raw, "multi"), _calls(raw, "exec")) == (1, 0, 0)
        assert raw.zcard("sy:dispatching") == 0, "the one-call route takes no guard"
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


def test_a_delivery_popped_and_lost_before_its_note_runs_within_a_few_leases(redis_url, tmp_path,
                                                                             monkeypatch):
    """The instant between kombu's BRPOP and the worker's note in hand: a worker SIGKILLed
    there leaves a queued job whose message is nowhere and which nothing noted. Popped
    here by hand (as that BRPOP did), with no worker: a worker's sweep finds the job
    queued for longer than a lease with its queue's lists empty and delivers it again."""
    from adapters import JobState
    from tests.harness import Engine

    monkeypatch.setenv("REDIS_URL", redis_url)
    eng = Engine("celery", redis_url, None, tmp_path)
    try:
        info = eng.adapter.enqueue("t.echo", {"tag": "lost"})
        queue = eng.adapter.engine._queue("default").name
        assert eng.redis.rpop(f"{queue}:3"), "the message, taken as a BRPOP takes it"
        assert eng.redis.zcard(eng.adapter.engine._in_hand_key) == 0
        eng.start_worker()
        done = eng.wait_for(info.id, timeout=eng.settings.lease_seconds * 6 + 20)
        assert done.state is JobState.SUCCEEDED and done.attempts == 1
        assert any(e.get("reason") == "delivery_lost" for e in eng.adapter.history(info.id))
    finally:
        eng.close()
