"""The Python API refuses what HTTP refuses, with InvalidJob naming the field, on every engine."""

from __future__ import annotations

import pytest

from adapters import Capability, IdempotencyKeyReused, InvalidJob, JobOptions, Priority
from tests.conftest import AMQP_URL, inline_leg
from tests.harness import Engine
import tests.conformance.jobs  # noqa: F401 - registers t.*


def pytest_generate_tests(metafunc):
    if "leg" in metafunc.fixturenames:
        metafunc.parametrize("leg", metafunc.config._switchyard_legs + inline_leg(metafunc.config))


@pytest.fixture
def engine(leg, redis_url, tmp_path, monkeypatch):
    """The engine of this leg on a clean database, with no worker."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    eng = Engine(leg, redis_url, AMQP_URL, tmp_path)
    yield eng
    eng.close()


def refused(engine, field: str, payload=None, options=None, job_type="t.echo") -> InvalidJob:
    with pytest.raises(InvalidJob) as err:
        engine.adapter.enqueue(job_type, {} if payload is None else payload, options)
    assert field in err.value.errors, err.value.errors
    assert engine.redis.dbsize() == 0, "a refused enqueue left something behind"
    return err.value


@pytest.mark.parametrize("priority", ["urgent", "HIGH", 101, 3.1, "", 0, True])
def test_an_invalid_priority_is_invalid_job(engine, priority):
    refused(engine, "options.priority", options=JobOptions(priority=priority))


def test_priority_enum_members_are_taken(engine):
    info = engine.adapter.enqueue("t.echo", {}, JobOptions(priority=Priority.DEFAULT))
    assert info.priority == "default"


@pytest.mark.parametrize("queue", ["", 0, "bad name!", "q" * 65])
def test_an_invalid_queue_is_invalid_job(engine, queue):
    refused(engine, "options.queue", options=JobOptions(queue=queue))


@pytest.mark.parametrize("payload, field", [
    ({1: 2}, "payload"),
    ({"a": {True: 1}}, "payload.a"),
    ({"a": [{None: 1}]}, "payload.a.0"),
    ({"s": "\ud800"}, "payload.s"),
    ({"\udc00": 1}, "payload.\\udc00"),
    ({"n": 10 ** 5000}, "payload.n"),
    ({"x": float("inf")}, "payload.x"),
    ({"o": object()}, "payload.o"),
])
def test_a_payload_json_cannot_carry_is_invalid_job(engine, payload, field):
    refused(engine, field, payload=payload)


def test_a_payload_nested_too_deep_is_invalid_job(engine):
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    # the payload is level 1, d's list 2: the 65th container is the 64th list
    error = refused(engine, "payload.d" + ".0" * 63, payload={"d": deep})
    assert "64 levels" in str(error.errors)


def test_lone_surrogates_in_keys_and_queues_are_invalid_job(engine):
    refused(engine, "options.idempotency_key", options=JobOptions(idempotency_key="k\ud800"))
    refused(engine, "options.queue", options=JobOptions(queue="q\ud800"))


def test_a_reused_idempotency_key_with_other_parameters_is_refused(engine):
    from adapters import IdempotencyKeyReused

    adapter = engine.adapter
    delay = None if engine.backend == "inline" else 30  # inline declares no delays
    first = adapter.enqueue("t.echo", {"a": 1, "b": 2}, JobOptions(idempotency_key="k", delay=delay))
    before = sorted(engine.redis.keys("*"))
    # the same request again (keys in another order, the delay as given) is the first job
    again = adapter.enqueue("t.echo", {"b": 2, "a": 1}, JobOptions(idempotency_key="k", delay=delay))
    assert again.id == first.id
    for job_type, payload, options in (
            ("t.echo", {"a": 1, "b": 3}, JobOptions(idempotency_key="k", delay=delay)),
            ("t.echo", {"a": 1, "b": 2}, JobOptions(idempotency_key="k", timeout=7)),
            ("t.echo", {"a": 1, "b": 2}, JobOptions(idempotency_key="k", delay=delay, max_retries=2)),
            ("t.named", {"tag": 1}, JobOptions(idempotency_key="k", delay=delay))):
        if engine.backend == "inline" and (options.max_retries or job_type == "t.named"):
            continue  # inline declares no retries or named queues
        with pytest.raises(IdempotencyKeyReused) as err:
            adapter.enqueue(job_type, payload, options)
        assert err.value.job_id == first.id
    # a batch with one reused key writes none of its jobs
    with pytest.raises(IdempotencyKeyReused) as err:
        adapter.enqueue_many([("t.echo", {"x": 1}, None),
                              ("t.echo", {"x": 2}, JobOptions(idempotency_key="fresh")),
                              ("t.echo", {}, JobOptions(idempotency_key="k"))])
    assert err.value.index == 2
    assert sorted(engine.redis.keys("*")) == before


def test_a_tick_fired_before_a_schedule_changed_is_not_an_error(engine):
    from adapters import Capability

    if not engine.supports(Capability.SCHEDULES):
        pytest.skip(f"{engine.adapter.name} does not declare schedules")
    schedules = engine.adapter.schedules()
    info = schedules.create("acme", "s", "t.echo", {"v": 2}, every=60)
    due = info.next_run_at.timestamp()
    # another scheduler fired this tick from the schedule as it was before a change
    first = engine.adapter.enqueue("t.echo", {"v": 1}, JobOptions(
        idempotency_key=f"schedule:s:{due:.3f}"), tenant="acme")
    assert schedules.tick(now=due + 0.01) == [first.id]
    assert schedules.get("acme", "s").last_job_id == first.id


def test_a_batch_of_one_names_its_errors_by_place_like_any_batch(engine):
    """``enqueue_many`` with one job is still a batch: ``jobs.0.<field>``, as HTTP shows it."""
    with pytest.raises(InvalidJob) as err:
        engine.adapter.enqueue_many([("t.echo", {}, JobOptions(queue="bad name!"))])
    assert list(err.value.errors) == ["jobs.0.options.queue"], err.value.errors
    with pytest.raises(InvalidJob) as err:
        engine.adapter.enqueue("t.echo", {}, JobOptions(queue="bad name!"))
    assert list(err.value.errors) == ["options.queue"], err.value.errors


def test_a_reused_key_in_a_batch_is_named_by_its_place_on_every_route(engine):
    """The key check runs in the ledger's script (guarded route) or under WATCH (one
    transaction): either way a batch names ``jobs.<i>.options.idempotency_key``."""
    if not engine.supports(Capability.IDEMPOTENCY):
        pytest.skip(f"{engine.adapter.name} does not declare idempotency")
    engine.adapter.enqueue("t.echo", {}, JobOptions(idempotency_key="k", timeout=5))
    with pytest.raises(IdempotencyKeyReused) as err:
        engine.adapter.enqueue_many([("t.echo", {}, JobOptions(idempotency_key="k", timeout=6))])
    assert list(err.value.errors) == ["jobs.0.options.idempotency_key"], err.value.errors
    with pytest.raises(IdempotencyKeyReused) as err:
        engine.adapter.enqueue("t.echo", {}, JobOptions(idempotency_key="k", timeout=6))
    assert list(err.value.errors) == ["options.idempotency_key"], err.value.errors
