"""Dramatiq on Redis waits for work instead of polling (``adapters/dramatiq_wake.py``).

Against a private redis-server and real worker processes: an idle worker's consumers
wait in XREAD on their queue's wake-up stream, so Redis runs a handful of commands per
wait where Dramatiq's own consumer ran its fetch script every 100 ms for each queue and
its delay queue; a job enqueued meanwhile wakes them; a warm stop does not sit out a
wait. In-process: what a publish sends, and that the messages it writes are Dramatiq's
own (a plain RedisBroker fetches them).
"""

from __future__ import annotations

import contextlib
import threading

import psutil

import pytest
from dramatiq.brokers.redis import RedisBroker

from adapters import JobOptions, JobState
from adapters.dramatiq_wake import WakingRedisBroker
from adapters.ledger import Dispatch
from tests.harness import Engine, wait_until
import tests.conformance.jobs  # noqa: F401 - the job types enqueued here

LONG_LEASE = {"SWITCHYARD_LEASE_SECONDS": "30"}  # waits of 8 s: longer than any deadline here


@pytest.fixture
def eng(redis_url, tmp_path, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)  # the test jobs log to it
    engine = Engine("dramatiq+redis", redis_url, None, tmp_path)
    yield engine
    engine.close()


def _calls(eng: Engine) -> dict[str, int]:
    """Redis's own count of each command run so far, those inside scripts included,
    less this test's questions (INFO, CLIENT LIST)."""
    return {name.removeprefix("cmdstat_"): stats["calls"]
            for name, stats in eng.redis.info("commandstats").items()
            if not name.startswith(("cmdstat_info", "cmdstat_client"))}


def _waiting(eng: Engine, owner=None) -> int:
    """Connections of ``owner`` blocked in XREAD: a worker's processes, or with no worker,
    this one. Only theirs: the suite's Redis is shared by the tests of a pytest process, and
    a connection another test left would be counted too."""
    return _blocked_in_xread(eng, _ports(owner))


def _ports(owner=None) -> set[int]:
    """The local ports of the TCP connections of ``owner`` (see :func:`_waiting`)."""
    procs = [psutil.Process()] if owner is None else _tree(owner.proc.pid)
    ports = set()
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            ports.update(c.laddr.port for c in proc.net_connections("tcp") if c.laddr)
    return ports


def _blocked_in_xread(eng: Engine, ports: set[int]) -> int:
    return sum(1 for c in eng.redis.client_list()
               if c.get("cmd") == "xread" and "b" in c["flags"]
               and int(c["addr"].rsplit(":", 1)[1]) in ports)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _ran_one_job(eng: Engine, worker) -> None:
    job = eng.adapter.enqueue("t.echo", {"warm": "up"})
    assert eng.wait_for(job.id).state is JobState.SUCCEEDED
    worker.assert_alive("worker")


def test_an_idle_worker_waits_in_xread_and_costs_a_few_commands_per_wait(eng):
    worker = eng.start_worker(queues=("default", "alpha"), concurrency=2)
    _ran_one_job(eng, worker)
    # one consumer per queue in each process, and none for Dramatiq's .DQ delay queues
    wait_until(lambda: _waiting(eng, worker) == 4, 15, 0.02, "4 consumers waiting in XREAD")
    before = _calls(eng)
    # an idle stretch counted in waits, not seconds: 40 of them end (each at its timeout,
    # a third of the 2 s test lease); in as long, Dramatiq's own consumer ran its fetch
    # script about 9 times for the queue, as many for its delay queue (3 commands each)
    wait_until(lambda: _calls(eng).get("xread", 0) - before.get("xread", 0) >= 40, 60, 0.05,
               "40 waits on the wake-up streams")
    after = _calls(eng)
    worker.assert_alive("worker")
    ran = {name: n - before.get(name, 0) for name, n in after.items() if n > before.get(name, 0)}
    waits = ran["xread"]
    # per wait: the wait, then one fetch (EVALSHA, its ZADD heartbeat and LPOP, the one
    # LPOP of an idle worker); the maintenance loop's ticks and heartbeats come on top,
    # by the second (more of them per wait on a loaded machine, where waits come slower).
    # Before: the 0.67 s of one wait held about 50 commands of each queue's consumers.
    assert ran.get("lpop", 0) <= 2 * waits, ran
    assert sum(ran.values()) <= 20 * waits, ran
    assert _waiting(eng, worker) == 4


def test_a_job_enqueued_while_the_consumers_wait_wakes_them(eng):
    worker = eng.start_worker(queues=("default", "alpha"), env=LONG_LEASE)
    _ran_one_job(eng, worker)
    wait_until(lambda: _waiting(eng, worker) == 2, 15, 0.02, "2 consumers waiting in XREAD")
    jobs = [eng.adapter.enqueue("t.echo", {"n": 1}),
            eng.adapter.enqueue("t.named", {"tag": "a"})]
    for job in jobs:
        assert eng.wait_for(job.id, timeout=20).state is JobState.SUCCEEDED
    wait_until(lambda: _waiting(eng, worker) == 2, 15, 0.02, "the consumers waiting again")


def test_an_idle_worker_stops_warm_without_sitting_out_its_wait(eng):
    worker = eng.start_worker(queues=("default", "alpha"), concurrency=2, env=LONG_LEASE)
    _ran_one_job(eng, worker)
    wait_until(lambda: _waiting(eng, worker) == 4, 15, 0.02, "4 consumers waiting in XREAD")
    ports = _ports(worker)
    assert _blocked_in_xread(eng, ports) == 4  # the ports the check below looks at hold them
    # each wait just begun lasts 8 s unless the stop path wakes it
    assert worker.terminate(6) == 0, worker.log()
    assert _blocked_in_xread(eng, ports) == 0


@pytest.mark.parametrize("route", ["with the records", "on its own"])
def test_a_publish_writes_each_queue_s_messages_then_one_wake_up(eng, route):
    """With the records: the broker is the ledger's Redis, so the messages ride in the
    create script (adapters/riders.py), one client command. On its own (a broker on
    another Redis): the enqueue script, one call per queue in one pipeline, loaded
    again if Redis lost it."""
    engine = eng.adapter.engine
    assert isinstance(engine.broker, WakingRedisBroker) and engine.shares_ledger_redis
    first = eng.adapter.enqueue("t.echo", {"n": -1})
    eng.redis.script_flush()  # the next call finds its script unloaded
    before = _calls(eng)
    batch = [("t.echo", {"n": n}, None) for n in range(5)] + [
        ("t.echo", {"n": 9}, JobOptions(queue="alpha"))]
    if route == "with the records":
        jobs = eng.adapter.enqueue_many(batch)
    else:
        jobs = [eng.adapter.enqueue(*spec) for spec in batch]  # their records
        deliveries = [Dispatch.from_record(eng.adapter.ledger.load(j.id)) for j in jobs]
        for key in engine.broker.client.scan_iter(f"{engine.broker.namespace}:*"):
            engine.broker.client.delete(key)  # only the publish below writes messages
        eng.redis.script_flush()
        before = _calls(eng)
        engine.publish(deliveries)
    ran = {name: n - before.get(name, 0) for name, n in _calls(eng).items()}
    # per queue: its messages (one HSET, one RPUSH), then its wake-up
    assert (ran.get("xadd"), ran.get("rpush")) == (2, 2), ran  # default and alpha
    if route == "with the records":
        assert ran.get("evalsha") == 2 and not ran.get("multi"), ran  # NOSCRIPT, then it
        assert eng.redis.zcard(eng.adapter.ledger.ns + "dispatching") == 0  # no guard
    for queue in ("default", "alpha"):
        assert eng.redis.xlen(engine.broker.wake_key(engine.engine_name(queue))) == 1
    # Dramatiq's own broker takes what was written as its own messages
    plain = RedisBroker(client=engine.broker.client, middleware=[],
                        namespace=engine.broker.namespace, maintenance_chance=0)
    fetched = plain.do_fetch(engine.engine_name("default"), 10)
    published = [first, *jobs[:5]] if route == "with the records" else jobs[:5]
    assert all(any(job.id.encode() in data for data in fetched)
               for job in published), fetched


def test_a_waiting_consumer_returns_when_a_message_comes(eng):
    engine = eng.adapter.engine
    broker = WakingRedisBroker(client=engine.broker.client, middleware=[],
                               namespace=engine.broker.namespace, maintenance_chance=0,
                               beat_seconds=60, wait_margin=5)
    name = engine.engine_name("default")
    consumer = broker.consume(name, prefetch=1, timeout=100)
    got = []
    waiter = threading.Thread(target=lambda: got.append(next(consumer)), daemon=True)
    waiter.start()
    try:
        wait_until(lambda: _waiting(eng) == 1, 15, 0.02, "the consumer waiting in XREAD")
        job = eng.adapter.enqueue("t.echo", {"n": 1})
        waiter.join(15)  # a wait of 60 s, unless the wake-up ends it
        assert not waiter.is_alive() and got == [None]
        message = next(consumer)
        assert message is not None and message.args[0] == job.id
        consumer.ack(message)
    finally:
        broker.close()  # a wait left behind would block on the suite's Redis for 60 s


def test_a_busy_consumer_looks_again_when_its_message_is_acked(eng):
    """A consumer whose prefetch is held waits for an ack (or nack), then fetches at
    once: Dramatiq's own consumer slept 5 ms, 10, 20, ... up to worker_timeout, one
    fetch per sleep, pacing a process of no-op jobs at some 130 a second."""
    engine = eng.adapter.engine
    broker = WakingRedisBroker(client=engine.broker.client, middleware=[],
                               namespace=engine.broker.namespace, maintenance_chance=0,
                               beat_seconds=60, wait_margin=5)
    name = engine.engine_name("default")
    consumer = broker.consume(name, prefetch=1, timeout=60_000)  # its longest wait: 60 s
    first, second = (eng.adapter.enqueue("t.echo", {"n": n}) for n in (1, 2))
    held = next(consumer)
    assert held is not None and held.args[0] == first.id

    for settle in (consumer.ack, consumer.nack):
        looked = threading.Event()
        waiter = threading.Thread(target=lambda: (next(consumer), looked.set()), daemon=True)
        waiter.start()
        # its prefetch held, it waits; before, it came back after a 5 ms sleep
        assert not looked.wait(0.5), "a busy consumer came back with nothing settled"
        settle(held)
        waiter.join(15)  # a wait of 60 s, unless the ack ends it
        assert not waiter.is_alive() and looked.is_set()
        if settle == consumer.ack:  # it has room again: it fetches the next message
            held = next(consumer)
            assert held is not None and held.args[0] == second.id
    broker.close()


def test_no_delay_queues_and_no_delayed_enqueue(eng):
    broker = eng.adapter.engine.broker
    assert broker.get_declared_delay_queues() == set()
    with pytest.raises(ValueError, match="delay"):
        broker.enqueue(eng.adapter.engine._message("j", "t", "x:q", {}), delay=1000)


def test_the_dramatiq_internals_the_broker_builds_on_are_still_there():
    """Without Redis: a Dramatiq release that reshapes what the broker and its consumer
    take over (the consumer's state, the enqueue's call of ``do_enqueue``, what the
    dispatch script's enqueue writes) fails here by name."""
    import inspect
    from pathlib import Path

    import dramatiq.brokers.redis as redis_broker
    from dramatiq.brokers.redis import _RedisConsumer

    assert list(inspect.signature(_RedisConsumer.__init__).parameters) == [
        "self", "broker", "queue_name", "prefetch", "timeout"]
    consumer = _RedisConsumer(None, "q", 1, 100)
    assert (consumer.message_cache, consumer.queued_message_ids,
            consumer.outstanding_message_count) == ([], set(), 0)
    for name in ("_dispatch", "declare_queue"):
        assert callable(getattr(RedisBroker, name)), name
    assert "self.do_enqueue(queue_name, " in inspect.getsource(RedisBroker.enqueue)
    script = (Path(redis_broker.__file__).parent / "redis" / "dispatch.lua").read_text()
    # what the enqueue script does in Dramatiq's stead, on the same keys
    enqueue = script[script.index('if command == "enqueue"'):script.index('elseif command == "fetch"')]
    assert ('redis.call("hset", queue_messages, message_id, message_data)\n'
            '    redis.call("rpush", queue_full_name, message_id)') in enqueue, enqueue
    assert 'local queue_full_name = namespace .. ":" .. queue_name' in script
    assert 'local queue_messages = queue_full_name .. ".msgs"' in script
