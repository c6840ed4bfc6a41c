"""Periodic schedules: once per tick with two schedulers, pause, catch-up, linked jobs."""

import time
from datetime import datetime

from adapters import Capability, JobState
from tests.conformance.conftest import needs
from tests.harness import wait_until


def _tick(job) -> float:
    """The tick a scheduled job was fired for (``links.tick`` is an ISO 8601 time)."""
    return datetime.fromisoformat(job.links["tick"]).timestamp()


def _fired(engine, name, tenant="acme"):
    items, _ = engine.adapter.list(tenant=tenant, limit=500)
    return [j for j in items if j.links.get("schedule") == name]


def test_every_second_fires_once_per_tick_with_two_schedulers(engine):
    needs(engine, Capability.SCHEDULES)
    engine.start_worker(concurrency=2)
    engine.start_scheduler()
    engine.start_scheduler()
    schedules = engine.adapter.schedules()
    created = schedules.create("acme", "heartbeat", "t.echo", {"from": "schedule"}, every=1)
    assert created.next_run_at.timestamp() > created.created_at.timestamp()
    wait_until(lambda: time.time() >= created.created_at.timestamp() + 5.5, timeout=10,
               message="five and a half seconds of schedule")
    observed = time.time() - created.created_at.timestamp()
    jobs = _fired(engine, "heartbeat")
    ticks = [_tick(j) for j in jobs]
    assert len(ticks) == len(set(ticks)), "a tick fired twice"
    assert int(observed) - 1 <= len(jobs) <= int(observed) + 1, (observed, ticks)
    for job in jobs:
        assert job.type == "t.echo" and job.payload == {"from": "schedule"}
        assert job.tenant == "acme"
    for job in jobs:
        assert engine.wait_for(job.id).state is JobState.SUCCEEDED
    info = schedules.get("acme", "heartbeat")
    assert abs(info.last_run_at.timestamp() - max(ticks)) < 1e-3  # datetime keeps microseconds
    assert info.last_job_id in {j.id for j in jobs}


def test_paused_schedule_fires_nothing_until_resumed(engine):
    needs(engine, Capability.SCHEDULES)
    engine.start_worker()
    engine.start_scheduler()
    schedules = engine.adapter.schedules()
    schedules.create("acme", "paused", "t.echo", {}, every=1, enabled=False)
    assert schedules.get("acme", "paused").next_run_at is None
    schedules.create("acme", "clock", "t.echo", {}, every=1)
    wait_until(lambda: len(_fired(engine, "clock")) >= 2, timeout=10,
               message="two runs of the enabled schedule")
    assert _fired(engine, "paused") == []
    resumed = schedules.update("acme", "paused", enabled=True)
    assert resumed.enabled and resumed.next_run_at is not None
    wait_until(lambda: _fired(engine, "paused"), timeout=10, message="the resumed schedule")


def test_scheduler_that_was_down_fires_one_catch_up_run_not_a_burst(engine):
    needs(engine, Capability.SCHEDULES)
    engine.start_worker()
    schedules = engine.adapter.schedules()
    created = schedules.create("acme", "missed", "t.echo", {}, every=1)
    start = created.created_at.timestamp()
    wait_until(lambda: time.time() >= start + 4.2, timeout=10,
               message="four missed ticks with no scheduler running")
    engine.start_scheduler(catch_up=1)
    first = wait_until(lambda: _fired(engine, "missed"), timeout=10, message="the catch-up run")
    first_beat = min(j.created_at.timestamp() for j in first)
    wait_until(lambda: time.time() >= first_beat + 1.5, timeout=5, message="a regular tick")
    ticks = sorted(_tick(j) for j in _fired(engine, "missed"))
    # four or more ticks passed while no scheduler ran; only the latest of them fires
    assert first_beat - start >= 4
    assert len([t for t in ticks if t <= first_beat]) == 1, (first_beat, ticks)
    assert len(ticks) >= 2  # and then it goes on as usual


def test_schedules_are_tenant_scoped_and_can_be_changed_and_removed(engine):
    needs(engine, Capability.SCHEDULES)
    schedules = engine.adapter.schedules()
    schedules.create("acme", "nightly", "t.echo", {"n": 1}, cron="30 2 * * *",
                     timezone_name="Europe/Berlin")
    assert [s.name for s in schedules.list("acme")] == ["nightly"]
    assert schedules.list("globex") == []
    changed = schedules.update("acme", "nightly", cron="0 3 * * *")
    assert changed.cron == "0 3 * * *"
    local = changed.next_run_at.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute) == (3, 0)
    schedules.delete("acme", "nightly")
    assert schedules.list("acme") == []
