"""``Schedules.run_now``: the schedule's job once, now, recorded as its last run."""

from __future__ import annotations

import pytest

from adapters import JobNotFound


def test_run_now_enqueues_once_and_records_the_run(adapter):
    store = adapter.schedules()
    created = store.create("acme", "hourly", "demo.echo", {"message": "tick"},
                           {"queue": "reports", "max_retries": 2}, every=3600)
    job = store.run_now("acme", "hourly")
    assert (job.type, job.payload, job.tenant) == ("demo.echo", {"message": "tick"}, "acme")
    assert (job.queue, job.max_retries) == ("reports", 2)
    assert job.links["schedule"] == "hourly" and job.links["run"] == "manual"
    after = store.get("acme", "hourly")
    assert after.last_job_id == job.id and after.last_run_at is not None
    assert after.next_run_at == created.next_run_at  # the regular run stays where it was
    second = store.run_now("acme", "hourly")
    assert second.id != job.id and store.get("acme", "hourly").last_job_id == second.id
    assert len(adapter.list(tenant="acme")[0]) == 2


def test_run_now_of_an_unknown_or_paused_schedule(adapter):
    store = adapter.schedules()
    with pytest.raises(JobNotFound):
        store.run_now("acme", "missing")
    store.create("acme", "paused", "demo.echo", {"message": "x"}, every=60, enabled=False)
    job = store.run_now("acme", "paused")  # a paused schedule can still be run by hand
    assert store.get("acme", "paused").last_job_id == job.id
    assert not store.get("acme", "paused").enabled
    assert store.tenants() == ["acme"]
