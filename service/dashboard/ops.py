"""The process-wide pages (queues, workers, audit, charts: an operator's) and the
tenant-scoped ones that are not about single jobs (schedules, workflows)."""

from __future__ import annotations

import re
import time

import flask
from werkzeug.exceptions import NotFound

from adapters import InvalidJob, InvalidState, JobNotFound, UnsupportedFeature

from ..extensions import current
from . import bp, data, key, require_operator, scope

_QUEUE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SCHEDULE = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_TENANT = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _client():
    return current().adapter


def _confirm(title: str, detail: str, action_url: str, back: str, button: str):
    return flask.render_template("dashboard/confirm.html", title=title, detail=detail,
                                 action_url=action_url, back=back, button=button, fields={})


# -- queues -----------------------------------------------------------------------------

@bp.route("/ui/queues")
def queues():
    require_operator()
    client = _client()
    return flask.render_template("dashboard/queues.html", queues=data.queue_rows(client),
                                 states=client.queue_stats().states)


@bp.route("/ui/queues/<queue>/<action>", methods=["GET", "POST"])
def queue_action(queue: str, action: str):
    require_operator()
    client = _client()
    if action not in ("pause", "resume") or not _QUEUE.fullmatch(queue) or \
            not data.features(client)["queues"]:
        raise NotFound()
    url = flask.url_for("dashboard.queue_action", queue=queue, action=action)
    if flask.request.method == "GET":
        what = ("Its queued jobs wait (none starts) until it is resumed; running jobs "
                "finish." if action == "pause" else "Its waiting jobs are released to run.")
        return _confirm(f"{action.capitalize()} queue {queue}?", what, url,
                        flask.url_for("dashboard.queues"), action.capitalize())
    store = client.queues()
    try:
        store.pause(queue, by=key().label) if action == "pause" else store.resume(queue)
        data.audit(client, key(), f"queue.{action}", queue)
        flask.flash(f"Queue {queue}: {action}d.")
    except (InvalidJob, InvalidState) as exc:
        flask.flash(f"Not done: {exc}", "error")
    return flask.redirect(flask.url_for("dashboard.queues"))


# -- workers ----------------------------------------------------------------------------

@bp.route("/ui/workers")
def workers():
    require_operator()
    client = _client()
    return flask.render_template("dashboard/workers.html", workers=client.workers(),
                                 in_hand=data.in_hand(client), now=time.time())


# -- schedules --------------------------------------------------------------------------

def _schedule(tenant: str, name: str):
    if not _TENANT.fullmatch(tenant) or not _SCHEDULE.fullmatch(name) or \
            (scope() is not None and tenant != scope()):
        raise NotFound()
    return _client().schedules().get(tenant, name)


@bp.route("/ui/schedules")
def schedules():
    client = _client()
    try:
        items = data.schedules(client, scope())
    except UnsupportedFeature as exc:
        items, flask.g.note = [], str(exc)
    return flask.render_template("dashboard/schedules.html", schedules=items,
                                 note=flask.g.get("note"))


SCHEDULE_ACTIONS = {"pause": "Pause", "resume": "Resume", "run": "Run now"}


@bp.route("/ui/schedules/<tenant>/<name>/<action>", methods=["GET", "POST"])
def schedule_action(tenant: str, name: str, action: str):
    if action not in SCHEDULE_ACTIONS:
        raise NotFound()
    info = _schedule(tenant, name)
    url = flask.url_for("dashboard.schedule_action", tenant=tenant, name=name, action=action)
    back = flask.url_for("dashboard.schedules")
    if flask.request.method == "GET":
        detail = {"pause": "It fires no job until it is resumed.",
                  "resume": "It fires again from its next time on.",
                  "run": f"One {info.job_type} job is enqueued now, recorded as the "
                         "schedule's last run; its next regular run stays as it is."}[action]
        return _confirm(f"{SCHEDULE_ACTIONS[action]}: schedule {tenant}/{name}?", detail, url,
                        back, SCHEDULE_ACTIONS[action])
    client = _client()
    store = client.schedules()
    try:
        if action == "run":
            job = store.run_now(tenant, name)
            data.audit(client, key(), "schedule.run", f"{tenant}/{name}",
                       detail=f"job {job.id}")
            flask.flash(f"Schedule {name} ran now: job {job.id}.")
            return flask.redirect(flask.url_for("dashboard.job", job_id=job.id))
        store.update(tenant, name, enabled=action == "resume")
        data.audit(client, key(), f"schedule.{action}", f"{tenant}/{name}")
        flask.flash(f"Schedule {name}: {action}d.")
    except (InvalidJob, InvalidState, JobNotFound) as exc:
        flask.flash(f"Not done: {exc}", "error")
    return flask.redirect(back)


# -- workflows --------------------------------------------------------------------------

@bp.route("/ui/workflows")
def workflows():
    """Open a workflow by its id (jobs link to theirs)."""
    wanted = (flask.request.args.get("id") or "").strip()
    if wanted:
        return flask.redirect(flask.url_for("dashboard.workflow", workflow_id=wanted[:200]))
    return flask.render_template("dashboard/workflow.html", workflow=None)


@bp.route("/ui/workflows/<workflow_id>")
def workflow(workflow_id: str):
    if len(workflow_id) > 200:
        raise NotFound()
    return flask.render_template("dashboard/workflow.html",
                                 workflow=_client().get_workflow(workflow_id, tenant=scope()))


# -- audit and charts -------------------------------------------------------------------

@bp.route("/ui/audit")
def audit():
    require_operator()
    before = (flask.request.args.get("before") or "").strip()[:100] or None
    try:
        entries = data.audit_entries(_client(), 100, before, None)
    except ValueError:
        flask.flash("That is not a page of the audit log; here is the newest.", "error")
        entries = data.audit_entries(_client(), 100, None, None)
    return flask.render_template("dashboard/audit.html", entries=entries)


@bp.route("/ui/charts")
def charts():
    require_operator()
    return flask.render_template("dashboard/charts.html")


@bp.route("/ui/api/minutes")
def minutes():
    """Per-minute finished, failed and run-time p50/p95 over the last 24 hours."""
    require_operator()
    client = _client()
    now = time.time()
    return {"available": True, "rows": client.search().minutes(now - 86400, now)}


@bp.route("/ui/api/counts")
def counts():
    """What the jobs page polls: jobs per state."""
    tenant = scope()
    if tenant is None:
        tenant = data.Filters.parse(flask.request.args, None).tenant
    return {"counts": data.counts(_client(), tenant)}
