"""``report.generate``: a PDF report of the tenant's jobs, kept in the file store.

The ``activity`` report counts the tenant's jobs per type and state for each UTC day
of the period, read from the ledger, and draws them as a chart and two tables.
:func:`report_file` is what ``GET /v1/reports/{id}/file`` calls to read the PDF, which
the worker put in the file store (:mod:`._filestore`: Redis by default, so a ``web``
process on another machine reads it; ``STORAGE_DIR`` for a shared directory).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from marshmallow import Schema, ValidationError, fields, validate

from adapters import InvalidState, JobContext, JobNotFound, JobState, Switchyard, job

from ._filestore import FileStore, file_store
from ._report_pdf import STATES, render_activity

__all__ = ["ReportSchema", "ReportNotReady", "ReportFileMissing", "generate_report",
           "collect_activity", "resolve_period", "report_name", "report_file", "JOB_TYPE"]

JOB_TYPE = "report.generate"
MAX_DAYS = 366
_LAST_DAYS = re.compile(r"^([1-9][0-9]{0,2})d$")


class ReportNotReady(InvalidState):
    """The report job has not succeeded (yet): there is no file to give."""


class ReportFileMissing(JobNotFound):
    """The report succeeded but its file is no longer in ``STORAGE_DIR``."""


def resolve_period(period, today: date) -> tuple[date, date]:
    """``"7d"`` (the last 7 UTC days, today included) or ``{"start", "end"}`` (inclusive
    ISO dates) -> ``(first day, last day)``; raises ``ValueError``."""
    if isinstance(period, str):
        match = _LAST_DAYS.match(period)
        if not match or int(match.group(1)) > MAX_DAYS:
            raise ValueError(f"must be like '7d' (1 to {MAX_DAYS} days) or "
                             "{'start': 'YYYY-MM-DD', 'end': 'YYYY-MM-DD'}")
        return today - timedelta(days=int(match.group(1)) - 1), today
    if isinstance(period, dict) and set(period) == {"start", "end"}:
        try:
            start, end = date.fromisoformat(period["start"]), date.fromisoformat(period["end"])
        except (TypeError, ValueError):
            raise ValueError("start and end must be dates like 2026-01-31") from None
        if end < start:
            raise ValueError("end is before start")
        if end >= date.max:  # the day after the period must be a date too: it bounds the count
            raise ValueError(f"end must be before {date.max.isoformat()}")
        if (end - start).days + 1 > MAX_DAYS:
            raise ValueError(f"a period covers at most {MAX_DAYS} days")
        return start, end
    raise ValueError("must be like '7d' or {'start': 'YYYY-MM-DD', 'end': 'YYYY-MM-DD'}")


class Period(fields.Field):
    """``"7d"`` or ``{"start": "2026-10-01", "end": "2026-10-31"}``; loads unchanged."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            resolve_period(value, datetime.now(timezone.utc).date())
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        return value


class ReportSchema(Schema):
    """The payload of ``report.generate``."""

    kind = fields.String(required=True, validate=validate.OneOf(["activity"]))
    period = Period(load_default="7d", metadata={
        "description": "'7d' or {start, end} dates (end not before start, at most "
                       f"{MAX_DAYS} days)",
        "oneOf": [{"type": "string", "pattern": r"^([1-9]|[1-9][0-9]|[12][0-9]{2}|3[0-5][0-9]|36[0-6])d$"},
                  {"type": "object", "required": ["start", "end"], "additionalProperties": False,
                   "properties": {"start": {"type": "string", "format": "date"},
                                  "end": {"type": "string", "format": "date"}}}]})


SCHEMA = ReportSchema()


def collect_activity(adapter: Switchyard, tenant: str, start: date, end: date, *,
                     skip: str | None = None, progress=None) -> dict[tuple[str, str, str], int]:
    """``{(day, type, state): count}`` of the tenant's jobs created in the period."""
    since = datetime.combine(start, time(), timezone.utc).timestamp()
    until = datetime.combine(end + timedelta(days=1), time(), timezone.utc).timestamp()
    counts: dict[tuple[str, str, str], int] = {}
    seen = 0
    for rec in adapter.created_between(tenant, since, until):
        if rec["id"] == skip or not rec.get("created_at"):
            continue
        day = datetime.fromtimestamp(float(rec["created_at"]), timezone.utc).date().isoformat()
        key = (day, rec["type"] or "?", rec["state"] or "?")
        counts[key] = counts.get(key, 0) + 1
        seen += 1
        if progress and seen % 1000 == 0:
            progress(seen)
    return counts


def report_name(job_id: str) -> str:
    """The report's file name in the store."""
    return f"{job_id}.pdf"


@job(JOB_TYPE, max_retries=2, retry_on=(OSError,), timeout=600, schema=SCHEMA)
def generate_report(ctx: JobContext, **payload) -> dict:
    """Build a PDF report (kind "activity") of the tenant's jobs over a period."""
    data = SCHEMA.load(payload)
    start, end = resolve_period(data["period"], datetime.now(timezone.utc).date())
    ctx.progress(0, 4, "reading the ledger")
    counts = collect_activity(ctx.adapter, ctx.tenant, start, end, skip=ctx.job_id,
                              progress=lambda n: ctx.progress(0, 4, f"read {n} jobs"))
    total = sum(counts.values())
    ctx.progress(1, 4, f"counted {total} jobs")

    days = [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    per_type: dict[str, dict[str, int]] = {}
    per_day: dict[str, dict[str, int]] = {}
    per_day_type: dict[tuple[str, str], dict[str, int]] = {}
    for (day, job_type, state), n in counts.items():
        for table, key in ((per_type, job_type), (per_day, day), (per_day_type, (day, job_type))):
            bucket = table.setdefault(key, {})
            bucket[state] = bucket.get(state, 0) + n
    ctx.progress(2, 4, "drawing the chart and tables")

    pages: list[int] = []
    with tempfile.TemporaryDirectory(prefix="switchyard-report-") as tmp:
        pdf = Path(tmp) / report_name(ctx.job_id)
        pages.append(render_activity(
            pdf, tenant=ctx.tenant, start=start.isoformat(), end=end.isoformat(), days=days,
            per_type=per_type, per_day=per_day, per_day_type=per_day_type, job_id=ctx.job_id))
        content = pdf.read_bytes()
    file_store().put(ctx.tenant, report_name(ctx.job_id), content)
    ctx.progress(3, 4, "stored the PDF")
    digest = hashlib.sha256(content).hexdigest()
    ctx.progress(4, 4, "done")
    return {
        "kind": data["kind"],
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "jobs": total,
        "by_state": {s: sum(c.get(s, 0) for c in per_type.values()) for s in STATES
                     if any(s in c for c in per_type.values())},
        "pages": pages[0] if pages else 0,
        "bytes": len(content),
        "sha256": digest,
        "file": f"/v1/reports/{ctx.job_id}/file",
    }


def report_file(adapter: Switchyard, tenant: str, job_id: str,
                store: FileStore | None = None) -> bytes:
    """The PDF of a succeeded report job of ``tenant``.

    Raises ``JobNotFound`` for an unknown id, another tenant's job or a job that is
    not a report; ``ReportNotReady`` (an ``InvalidState``, with ``.state``) while the
    job has not succeeded; ``ReportFileMissing`` (a ``JobNotFound``) if the file is gone.
    """
    info = adapter.get(job_id, tenant=tenant)
    if info.type != JOB_TYPE:
        raise JobNotFound(f"no report {job_id!r}")
    if info.state is not JobState.SUCCEEDED:
        hint = "it never will be" if info.state.ended else "try again when it has succeeded"
        raise ReportNotReady(f"report {job_id} is {info.state.value}; {hint}",
                             state=info.state.value)
    data = (store or file_store()).get(info.tenant, report_name(info.id))
    if data is None:
        raise ReportFileMissing(f"the file of report {job_id} is no longer stored")
    return data
