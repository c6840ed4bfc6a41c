"""The OpenAPI spec is the contract: schemathesis sends generated requests to every
operation, and every answer must pass every check schemathesis has."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
import schemathesis
import schemathesis.specs.openapi.checks  # noqa: F401 - registers the OpenAPI checks
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS

from service import create_app
from service.jobs import webhooks
from tests.api.conftest import ACME, API_KEYS, JOB_MODULES

MAX_EXAMPLES = 30
"""Generated requests per operation and phase: enough to walk every field, few enough
for `make test`."""

ALL_CHECKS = CHECKS.get_all()
"""Every check, as `--checks all` runs them; none is left out."""


def _spec() -> dict:
    # Building the app connects to nothing, so the spec is known at collection time.
    app = create_app({"REDIS_URL": "redis://127.0.0.1:9/0", "API_KEYS": API_KEYS,
                      "JOB_MODULES": JOB_MODULES})
    return app.test_client().get("/openapi.json").json


api_schema = schemathesis.openapi.from_dict(_spec())
# the API key is ours to send (headers=ACME), not a parameter to generate or break
api_schema.config.generation.update(with_security_parameters=False)
# The examples phase puts the `example` of every property into one body and ignores the
# spec's `not` and `maxProperties` (delay with run_at, chain with group): requests
# that break the spec yet are sent as valid ones. Coverage and fuzzing, which follow
# the whole schema, run; so does every check.
api_schema.config.phases.examples.enabled = False


@pytest.fixture
def seeded_app(make_app):
    """An rq app with one job, one workflow and one schedule of acme's, and a live
    worker's heartbeat (so /readyz answers ready, not its documented 503)."""
    app = make_app(RATE_LIMIT="1000000/minute")
    client = app.test_client()
    seed = client.post("/v1/jobs", headers=ACME,
                       json={"type": "demo.echo", "payload": {"message": "seed"}})
    seed_workflow = client.post("/v1/workflows", headers=ACME, json={
        "chain": [{"type": "demo.echo", "payload": {"message": "seed"}}]})
    seed_schedule = client.post("/v1/schedules", headers=ACME, json={
        "name": "seed", "every": 3600, "job": {"type": "demo.echo",
                                                "payload": {"message": "seed"}}})
    assert (seed.status_code, seed_workflow.status_code, seed_schedule.status_code) == (
        202, 202, 201)
    app.extensions["switchyard"].adapter.ledger.worker_heartbeat(
        "spec-test", {"backend": "rq", "queues": "default", "concurrency": "1"}, ttl=300)
    app.config["SEEDED"] = {"job_id": seed.json["id"], "workflow_id": seed_workflow.json["id"],
                            "name": "seed"}
    app.config["SEEDED_TURN"] = itertools.count()
    webhooks.set_resolver(lambda host, port: ["93.184.215.14"])  # a public address
    return app


def _within_the_world(value):
    """``value`` with what a spec cannot state put where the API documents it must be.

    No spec bounds a time relative to the time of the request, so every job's
    ``run_at`` moves to at most a year ahead and its ``expires_at`` after its start and
    within a year; a webhook's URL gets a host that resolves to a public address; a
    report's dates come in order; a cron expression is a valid one.
    """
    if isinstance(value, list):
        return [_within_the_world(v) for v in value]
    if not isinstance(value, dict):
        return value
    value = {k: _within_the_world(v) for k, v in value.items()}
    if value.get("type") == "webhook.deliver" and isinstance(value.get("payload"), dict):
        # the SSRF guard vets the URL's host by what DNS answers: no spec can say that
        value["payload"]["url"] = "https://hooks.example.com/in"
    period = value.get("period") if value.get("kind") == "activity" else None
    if isinstance(period, dict) and isinstance(period.get("start"), str) and isinstance(
            period.get("end"), str):
        # the spec says both are dates, not that one follows the other within a year
        start, end = sorted(dt.date.fromisoformat(period[k]) for k in ("start", "end"))
        value["period"] = {"start": start.isoformat(),
                           "end": min(end, start + dt.timedelta(days=365)).isoformat()}
    if isinstance(value.get("cron"), str):
        value["cron"] = "0 2 * * *"  # cron's grammar and calendar are past a pattern's reach
    options = value.get("options")
    if isinstance(options, dict):
        now = dt.datetime.now(dt.timezone.utc)
        latest = now + dt.timedelta(days=365)  # a year ahead, inside the API's 366 days
        start = now
        if isinstance(options.get("delay"), (int, float)):
            start = now + dt.timedelta(seconds=options["delay"])
        if isinstance(options.get("run_at"), str):
            start = min(dt.datetime.fromisoformat(options["run_at"]), latest)
            options["run_at"] = start.isoformat()
        if isinstance(options.get("expires_at"), str):
            expires = dt.datetime.fromisoformat(options["expires_at"])
            if not max(start, now) < expires <= latest:
                if max(start, now) < latest:
                    expires = max(start, now) + min(dt.timedelta(hours=1),
                                                    (latest - max(start, now)) / 2)
                    options["expires_at"] = expires.isoformat()
                else:  # nothing can expire after a start a year ahead
                    del options["expires_at"]
    return value


@api_schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_answer_passes_every_check(case, seeded_app):
    # The spec was read at collection time; this test's app (on this test's Redis)
    # answers, also the requests that checks such as ignored_auth send on their own.
    case.operation.app = case.operation.schema.app = seeded_app
    seeded = seeded_app.config["SEEDED"]
    if next(seeded_app.config["SEEDED_TURN"]) % 2:
        for param in set(case.path_parameters or {}) & set(seeded):
            case.path_parameters[param] = seeded[param]  # an id that exists, too
    if case.meta.generation.mode is GenerationMode.POSITIVE:
        case.body = _within_the_world(case.body)
    case.call_and_validate(headers=ACME, checks=ALL_CHECKS)
