"""report.generate on every engine: a real PDF, read back, with the right numbers in it."""

from __future__ import annotations

import io
import re
from datetime import date, datetime, time, timezone

import pytest
from marshmallow import ValidationError
from pypdf import PdfReader

from adapters import JobNotFound, JobOptions, JobState
from service.jobs._filestore import DirectoryFileStore
from service.jobs.reports import SCHEMA, ReportNotReady, report_file, report_name, resolve_period
from tests.jobs.servers import Reply

STATES = ("scheduled", "queued", "started", "retrying", "succeeded", "failed", "canceled")
TYPE_ROW = re.compile(r"^\s*(email\.send|webhook\.deliver|All types)\s+((?:\d+\s+){7}\d+)\s*$")
DAY_ROW = re.compile(r"^\s*(\d{4}-\d\d-\d\d)\s+(\S+)\s+((?:\d+\s+){7}\d+)\s*$")


def move_to(jobs, tenant: str, job_id: str, day: str) -> None:
    """Make a finished job look as if it had been created at noon on ``day`` (UTC)."""
    stamp = datetime.combine(date.fromisoformat(day), time(12), timezone.utc).timestamp()
    ns = jobs.adapter.settings.namespace
    jobs.engine.redis.hset(jobs.adapter.ledger.key(job_id), "created_at", repr(stamp))
    jobs.engine.redis.zadd(f"{ns}t:{tenant}", {job_id: stamp})


def run(jobs, tenant, job_type, payload, options=None, state=JobState.SUCCEEDED):
    info = jobs.adapter.enqueue(job_type, payload, options, tenant=tenant)
    if state is JobState.SCHEDULED:
        return info
    done = jobs.engine.wait_for(info.id, timeout=30)
    assert done.state is state, done.error
    return done


def counts(text: str) -> tuple[dict, dict]:
    per_type, per_day = {}, {}
    for line in text.splitlines():
        if m := TYPE_ROW.match(line):
            per_type[m.group(1)] = dict(zip(STATES + ("total",), map(int, m.group(2).split())))
        elif m := DAY_ROW.match(line):
            per_day[(m.group(1), m.group(2))] = dict(zip(STATES + ("total",),
                                                         map(int, m.group(3).split())))
    return per_type, per_day


def nonzero(row: dict) -> dict:
    return {k: v for k, v in row.items() if v}


def test_activity_report_counts_the_tenants_jobs_per_day_type_and_state(jobs, receiver):
    tenant, other = jobs.tenant(), jobs.tenant()
    mail = {"to": "someone@example.com", "subject": "s", "text": "t"}
    outbox = JobOptions(queue="outbox")
    ok = receiver.script(f"/report-{tenant}-ok", Reply(200))
    missing = receiver.script(f"/report-{tenant}-404", Reply(404))
    day1, day2, day3, before = "2025-03-08", "2025-03-09", "2025-03-10", "2025-03-01"
    plan = [  # (day, type, payload, options, state)
        *[(day3, "email.send", mail, outbox, JobState.SUCCEEDED)] * 3,
        (day3, "email.send", {**mail, "to": "reject-1@example.com"}, None, JobState.FAILED),
        (day3, "email.send", mail, JobOptions(queue="outbox", delay=3600), JobState.SCHEDULED),
        *[(day3, "webhook.deliver", {"url": receiver.url(ok), "event": "e", "data": 1}, None,
           JobState.SUCCEEDED)] * 2,
        (day2, "email.send", mail, outbox, JobState.SUCCEEDED),
        *[(day1, "webhook.deliver", {"url": receiver.url(missing), "event": "e", "data": 2}, None,
           JobState.FAILED)] * 2,
        (before, "email.send", mail, outbox, JobState.SUCCEEDED),  # outside the period
    ]
    plan += [(day3, "email.send", mail, outbox, JobState.SUCCEEDED, other)] * 2  # never shown
    enqueued = [(jobs.adapter.enqueue(job_type, payload, options, tenant=owner), day, state)
                for day, job_type, payload, options, state, *who in plan
                for owner in [who[0] if who else tenant]]
    for info, day, state in enqueued:
        if state is not JobState.SCHEDULED:
            done = jobs.engine.wait_for(info.id, timeout=30)
            assert done.state is state, (info.type, done.error)
        move_to(jobs, info.tenant, info.id, day)

    report = run(jobs, tenant, "report.generate",
                 {"kind": "activity", "period": {"start": day1, "end": day3}})
    assert report.result["jobs"] == 10
    assert report.result["period"] == {"start": day1, "end": day3}
    assert report.progress == {"current": 4, "total": 4, "message": "done"}

    store = DirectoryFileStore(jobs.storage)
    data = report_file(jobs.adapter, tenant, report.id, store=store)
    path = store.path(tenant, report_name(report.id))
    assert path.read_bytes() == data and path.parent.name == tenant
    pdf = PdfReader(io.BytesIO(data))
    assert len(pdf.pages) == report.result["pages"] >= 1
    text = "\n".join(page.extract_text(extraction_mode="layout") for page in pdf.pages)
    assert "Activity report" in text and f"Tenant {tenant}" in text
    assert "Jobs created per day, by state" in text  # the chart, with its day labels
    assert all(label in text for label in ("03-08", "03-09", "03-10"))
    per_type, per_day = counts(text)
    assert nonzero(per_type["email.send"]) == {"scheduled": 1, "succeeded": 4, "failed": 1,
                                               "total": 6}
    assert nonzero(per_type["webhook.deliver"]) == {"succeeded": 2, "failed": 2, "total": 4}
    assert nonzero(per_type["All types"]) == {"scheduled": 1, "succeeded": 6, "failed": 3,
                                              "total": 10}
    assert {k: nonzero(v) for k, v in per_day.items()} == {
        (day1, "webhook.deliver"): {"failed": 2, "total": 2},
        (day2, "email.send"): {"succeeded": 1, "total": 1},
        (day3, "email.send"): {"scheduled": 1, "succeeded": 3, "failed": 1, "total": 5},
        (day3, "webhook.deliver"): {"succeeded": 2, "total": 2},
    }


def test_report_file_is_for_its_tenant_only_and_not_ready_until_it_succeeds(jobs):
    tenant = jobs.tenant()
    later = jobs.adapter.enqueue("report.generate", {"kind": "activity", "period": "1d"},
                                 JobOptions(delay=3600), tenant=tenant)
    with pytest.raises(ReportNotReady) as exc:
        report_file(jobs.adapter, tenant, later.id, store=DirectoryFileStore(jobs.storage))
    assert exc.value.state == "scheduled"

    done = run(jobs, tenant, "report.generate", {"kind": "activity"})
    data = report_file(jobs.adapter, tenant, done.id, store=DirectoryFileStore(jobs.storage))
    assert data.startswith(b"%PDF-")
    with pytest.raises(JobNotFound):
        report_file(jobs.adapter, jobs.tenant(), done.id, store=DirectoryFileStore(jobs.storage))
    with pytest.raises(JobNotFound):
        report_file(jobs.adapter, tenant, "0" * 32, store=DirectoryFileStore(jobs.storage))
    mail = run(jobs, tenant, "email.send", {"to": "a@example.com", "subject": "s", "text": "t"},
               JobOptions(queue="outbox"))
    with pytest.raises(JobNotFound):
        report_file(jobs.adapter, tenant, mail.id, store=DirectoryFileStore(jobs.storage))


def test_periods_are_validated():
    today = date(2026, 3, 10)
    assert resolve_period("7d", today) == (date(2026, 3, 4), today)
    assert resolve_period({"start": "2026-01-01", "end": "2026-01-31"}, today) == (
        date(2026, 1, 1), date(2026, 1, 31))
    for bad in ("0d", "367d", "7", "week", {"start": "2026-02-01", "end": "2026-01-01"},
                {"start": "2024-01-01", "end": "2026-01-01"}, {"start": "x", "end": "y"}):
        with pytest.raises(ValidationError) as exc:
            SCHEMA.load({"kind": "activity", "period": bad})
        assert list(exc.value.messages) == ["period"]
    with pytest.raises(ValidationError):
        SCHEMA.load({"kind": "revenue"})
    assert SCHEMA.load({"kind": "activity"}) == {"kind": "activity", "period": "7d"}
