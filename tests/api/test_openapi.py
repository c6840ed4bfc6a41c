"""The OpenAPI spec is the contract: schemathesis sends generated requests, every answer must match."""

from __future__ import annotations

import collections

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service import create_app
from tests.api.conftest import ACME, API_KEYS, JOB_MODULES

MAX_EXAMPLES = 30
"""Generated requests per operation: enough to walk every field, few enough for `make test`."""

# Not positive_data_acceptance: a spec cannot say "expires_at after now" or "a cursor
# this API gave out", so some schema-valid requests are rightly refused with a 422.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection]


def _operations() -> list[tuple[str, str, bool]]:
    # Building the app connects to nothing, so the spec is known at collection time.
    app = create_app({"REDIS_URL": "redis://127.0.0.1:9/0", "API_KEYS": API_KEYS,
                      "JOB_MODULES": JOB_MODULES})
    spec = app.test_client().get("/openapi.json").json
    return [(method.upper(), path, bool(op.get("parameters") or op.get("requestBody")))
            for path, item in spec["paths"].items() for method, op in item.items()
            if method in ("get", "post", "put", "patch", "delete")]


def _cases() -> list:
    cases = []
    for method, path, has_inputs in _operations():
        cases.append(pytest.param(method, path, GenerationMode.POSITIVE,
                                  id=f"{method}-{path}-positive"))
        if has_inputs:  # a free-form id or no input at all: nothing to break
            cases.append(pytest.param(method, path, GenerationMode.NEGATIVE,
                                      id=f"{method}-{path}-negative"))
    return cases


@pytest.mark.parametrize("method, path, mode", _cases())
def test_every_answer_matches_the_spec(make_app, method, path, mode):
    app = make_app(RATE_LIMIT="1000000/minute")
    client = app.test_client()
    seed = client.post("/v1/jobs", headers=ACME,
                       json={"type": "demo.echo", "payload": {"message": "seed"}})
    assert seed.status_code == 202
    seed_workflow = client.post("/v1/workflows", headers=ACME, json={
        "chain": [{"type": "demo.echo", "payload": {"message": "seed"}}]})
    assert seed_workflow.status_code == 202
    seed_schedule = client.post("/v1/schedules", headers=ACME, json={
        "name": "seed", "every": 3600, "job": {"type": "demo.echo",
                                                "payload": {"message": "seed"}}})
    assert seed_schedule.status_code == 201
    existing = {"job_id": seed.json["id"], "workflow_id": seed_workflow.json["id"],
                "name": "seed"}
    api_schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    # the API key is ours to send (headers=ACME), not a parameter to generate or break
    api_schema.config.generation.update(with_security_parameters=False)
    operation = api_schema[path][method]
    checks = CHECKS
    if path == "/readyz":
        # 503 is its documented "not ready" (no worker runs here); the other checks hold it
        # to that documentation.
        checks = [c for c in CHECKS if c is not not_a_server_error]
    statuses: collections.Counter = collections.Counter()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def conforms(case):
        for param in set(case.path_parameters or {}) & set(existing):
            if statuses.total() % 2:
                case.path_parameters[param] = existing[param]  # an id that exists, too
        response = case.call_and_validate(headers=ACME, checks=checks)
        statuses[response.status_code] += 1

    conforms()
    assert all(code < 500 for code in statuses) or path == "/readyz", statuses
    if mode is GenerationMode.POSITIVE and method == "POST" and path in ("/v1/jobs",
                                                                         "/v1/jobs/batch",
                                                                         "/v1/workflows"):
        assert statuses[202], f"no generated job was accepted: {statuses}"
    if mode is GenerationMode.POSITIVE and method == "GET" and path in (
            "/v1/jobs/{job_id}", "/v1/workflows/{workflow_id}", "/v1/schedules/{name}"):
        assert statuses[200], f"the seeded resource was never read: {statuses}"
