"""The jobs pages: the list (filters, find, counts, paging), one job (its record, live
progress, every attempt), failures grouped, and the actions on one job or a filter."""

from __future__ import annotations

import time

import flask
from werkzeug.exceptions import NotFound

from adapters import InvalidState, JobNotFound, UnsupportedFeature

from ..extensions import current
from . import bp, data, key, scope

ACTIONS = {"retry": "Retry", "cancel": "Cancel"}
BULK_ACTIONS = {"retry": "Retry", "cancel": "Cancel", "delete": "Delete"}


def _client():
    return current().adapter


@bp.route("/")
def jobs():
    """Jobs newest first, filtered; ``q`` finds one by id or idempotency key."""
    client = _client()
    args = flask.request.args
    text = (args.get("q") or "").strip()
    if text:
        found = data.find(client, scope(), text)
        if found is not None:
            return flask.redirect(flask.url_for("dashboard.job", job_id=found.id))
    f = data.Filters.parse(args, scope())
    items, next_cursor, note = data.page(client, f)
    return flask.render_template(
        "dashboard/jobs.html", jobs=items, filters=f, note=note, find=text,
        not_found=bool(text), counts=data.counts(client, f.tenant),
        states=data.STATES, next_query=f.query(cursor=next_cursor) if next_cursor else None,
        first_query=f.query(cursor=None) if f.cursor else None)


def _job(job_id: str):
    if len(job_id) > 200:
        raise NotFound()
    return _client().get(job_id, tenant=scope())


def _attempts(history: list[dict]) -> list[dict]:
    """The history as attempts: when each started and ended, and how."""
    attempts, current_attempt = [], None
    for event in history:
        if event.get("state") == "started":
            current_attempt = {"number": event.get("attempt"), "start": event.get("at"),
                               "end": None, "outcome": "running"}
            attempts.append(current_attempt)
        elif current_attempt is not None and current_attempt["end"] is None and \
                event.get("state") not in ("queued", "scheduled"):
            current_attempt["end"] = event.get("at")
            current_attempt["outcome"] = event.get("state")
    return attempts


@bp.route("/ui/jobs/<job_id>")
def job(job_id: str):
    info = _job(job_id)
    history = _client().history(info.id)
    return flask.render_template("dashboard/job.html", job=info, history=history,
                                 attempts=_attempts(history), actions=ACTIONS)


@bp.route("/ui/api/jobs/<job_id>")
def job_json(job_id: str):
    """What the job page polls: state, progress, attempts."""
    info = _job(job_id)
    return {"id": info.id, "state": info.state.value, "ended": info.state.ended,
            "progress": info.progress, "attempts": info.attempts}


@bp.route("/ui/jobs/<job_id>/<action>", methods=["GET", "POST"])
def job_action(job_id: str, action: str):
    """GET: what the action will do, and a confirm button; POST: do it."""
    if action not in ACTIONS:
        raise NotFound()
    info = _job(job_id)
    if flask.request.method == "GET":
        return flask.render_template(
            "dashboard/confirm.html", title=f"{ACTIONS[action]} job {info.id}?",
            detail=f"{info.type} on queue {info.queue}, now {info.state.value}"
                   + (" (a retry is a new job with the same type and payload)"
                      if action == "retry" else ""),
            action_url=flask.url_for("dashboard.job_action", job_id=info.id, action=action),
            back=flask.url_for("dashboard.job", job_id=info.id), button=ACTIONS[action],
            fields={})
    client = _client()
    try:
        if action == "retry":
            new = client.retry(info.id, tenant=scope())
            data.audit(client, key(), "job.retry", info.id, detail=f"new job {new.id}")
            flask.flash(f"Retried as job {new.id}.")
            return flask.redirect(flask.url_for("dashboard.job", job_id=new.id))
        client.cancel(info.id, tenant=scope(), reason="canceled from the dashboard")
        data.audit(client, key(), "job.cancel", info.id)
        flask.flash("Canceled.")
    except (InvalidState, UnsupportedFeature, JobNotFound) as exc:
        flask.flash(f"Not done: {exc}", "error")
    return flask.redirect(flask.url_for("dashboard.job", job_id=info.id))


@bp.route("/ui/failures")
def failures():
    """Failed jobs grouped by type and error type, each with its bulk retry."""
    client = _client()
    tenant = scope() if scope() is not None else data.Filters.parse(
        flask.request.args, None).tenant
    grouped = data.failure_groups(client, tenant)
    return flask.render_template("dashboard/failures.html", grouped=grouped, recent=None,
                                 tenant=tenant, age=max(0.0, time.time() - grouped["as_of"]))


@bp.route("/ui/bulk", methods=["GET", "POST"])
def bulk():
    """A bulk action over a filter: GET shows the filter and a confirm; POST starts it."""
    client = _client()
    values = flask.request.values
    action = values.get("action", "")
    if action not in BULK_ACTIONS:
        raise NotFound()
    f = data.Filters.parse(values, scope())
    if f.problems:
        flask.flash("Not a valid filter: " + "; ".join(f.problems), "error")
        return flask.redirect(flask.url_for("dashboard.jobs"))
    if f.payload:  # a bulk action would not apply it: it must not act on more than is shown
        flask.flash("Bulk actions filter by tenant, state, type, queue and time: clear the "
                    "payload filter first.", "error")
        return flask.redirect(flask.url_for("dashboard.jobs", **f.query(cursor=None)))
    fields = {**f.query(cursor=None), "action": action}
    if flask.request.method == "GET":
        described = ", ".join(f"{k}={v}" for k, v in f.query(cursor=None).items()) or \
            "every job"
        return flask.render_template(
            "dashboard/confirm.html", title=f"{BULK_ACTIONS[action]} every job matching?",
            detail=f"Filter: {described}. This runs as one operation over all matching jobs.",
            action_url=flask.url_for("dashboard.bulk"), back=flask.url_for(
                "dashboard.jobs", **f.query(cursor=None)), button=BULK_ACTIONS[action],
            fields=fields)
    try:
        operation = data.bulk_start(client, action, f, key())
    except (InvalidState, UnsupportedFeature, ValueError) as exc:
        flask.flash(f"Not started: {exc}", "error")
        return flask.redirect(flask.url_for("dashboard.jobs", **f.query(cursor=None)))
    flask.flash(f"Bulk {action} started as job {operation.id}.")
    return flask.redirect(flask.url_for("dashboard.job", job_id=operation.id))
