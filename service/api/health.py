"""Liveness, readiness and Prometheus metrics; no API key needed."""

from __future__ import annotations

import time

import flask
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from adapters import BackendUnavailable

from ..extensions import current
from ..schemas import HealthSchema, ReadySchema
from . import Blueprint

__all__ = ["blp", "WORKER_TTL", "readiness"]

blp = Blueprint("health", __name__, description="Is the service up, and can it run jobs?")

WORKER_TTL = 15.0
"""A worker counts as live if it heartbeated within this many seconds (it beats every 1-5 s)."""


def readiness() -> tuple[dict, bool]:
    """The readiness report and whether the service can run jobs."""
    adapter = current().adapter
    checks, warnings, workers = {}, [], 0
    live: list = []  # stays empty if the heartbeats cannot be read
    try:
        adapter.ping()
        checks["redis"] = {"ok": True, "detail": "Redis answers"}
    except BackendUnavailable as exc:
        checks["redis"] = {"ok": False, "detail": str(exc)}
    if checks["redis"]["ok"]:
        try:
            live = [w for w in adapter.workers(within=WORKER_TTL)
                    if w.concurrency > 0]  # the scheduler beats with 0
            workers = len(live)
            checks["workers"] = {
                "ok": workers > 0,
                "detail": f"{workers} live worker(s)" if workers else
                          f"no worker heartbeat in the last {WORKER_TTL:g}s: start one with "
                          "`flask --app wsgi worker`"}
        except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
            checks["workers"] = {"ok": False, "detail": f"cannot read worker heartbeats: {exc}"}
        try:
            checks["queues"] = _queues_check(adapter, live, warnings)
        except Exception as exc:  # noqa: BLE001
            checks["queues"] = {"ok": False, "detail": f"cannot read the queues: {exc}"}
        try:
            policy = adapter.memory_policy()
            ok = policy == "noeviction"
            checks["maxmemory_policy"] = {"ok": ok, "detail": policy}
            if not ok:
                warnings.append(f"Redis maxmemory-policy is {policy!r}: under memory pressure "
                                "Redis may evict job records and queued jobs; set it to "
                                "noeviction")
        except Exception as exc:  # noqa: BLE001 - managed Redis often forbids CONFIG
            checks["maxmemory_policy"] = {"ok": False, "detail": f"cannot read it: {exc}"}
            warnings.append("could not read Redis maxmemory-policy; make sure it is noeviction")
    else:
        checks["workers"] = {"ok": False, "detail": "not checked: Redis is unreachable"}
    ready = checks["redis"]["ok"] and checks["workers"]["ok"]
    body = {"status": "ready" if ready else "not ready", "backend": adapter.name,
            "workers": workers, "checks": checks, "warnings": warnings}
    return body, ready


def _queues_check(adapter, live: list, warnings: list[str]) -> dict:
    """Each queue's backlog, and a warning for one that has jobs but no live worker."""
    listened = {q for w in live for q in w.queues}
    now, backlog, orphans = time.time(), {}, []
    for queue, (count, since) in adapter.queue_stats().backlog.items():
        age = round(max(0.0, now - since), 3) if since is not None else None
        backlog[queue] = {"queued": count, "oldest_age_seconds": age,
                          "workers": queue in listened}
        if count and queue not in listened:
            orphans.append(queue)
            warnings.append(f"queue {queue!r} has {count} queued job(s), the oldest "
                            f"{age:.0f}s old, and no live worker listens to it: start one "
                            f"with `flask --app wsgi worker -Q {queue}`")
    detail = (f"queued jobs but no live worker on: {', '.join(orphans)}" if orphans else
              "every queue with queued jobs has a live worker")
    return {"ok": not orphans, "detail": detail, "backlog": backlog}


@blp.route("/healthz")
@blp.doc(security=[])
@blp.response(200, HealthSchema)
def healthz():
    """Liveness: the process is up (touches nothing else)."""
    return {"status": "ok"}


@blp.route("/readyz")
@blp.doc(security=[])
@blp.response(200, ReadySchema, description="Ready: Redis answers and a worker is live")
@blp.alt_response(503, schema=ReadySchema, description="Not ready; see checks")
def readyz():
    """Readiness: Redis reachable, at least one live worker, and Redis' eviction policy."""
    body, ready = readiness()
    return body, 200 if ready else 503


@blp.route("/metrics")
@blp.doc(security=[])
@blp.response(200, content_type="text/plain", description="Prometheus text exposition")
def metrics():
    """Prometheus metrics: jobs enqueued and finished, job durations, jobs waiting."""
    registry = flask.current_app.extensions["switchyard_metrics"]
    # CONTENT_TYPE_LATEST carries its charset: as mimetype, Flask would add a second one
    return flask.Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
