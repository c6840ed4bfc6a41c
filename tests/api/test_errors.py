"""Every error is application/problem+json with one shape, field errors where they apply."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.api.conftest import ACME

PROBLEM_KEYS = {"type", "title", "status", "detail", "errors"}
SOON = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).isoformat()


def assert_problem(response, status: int, errors: dict | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    body = response.json
    assert set(body) == PROBLEM_KEYS
    assert body["status"] == status
    assert body["type"].startswith("urn:switchyard:problem:")
    assert isinstance(body["title"], str) and isinstance(body["detail"], str)
    if errors is not None:
        assert body["errors"] == errors
    return body


def post_job(client, body):
    return client.post("/v1/jobs", headers=ACME, json=body)


def test_400_body_that_is_not_json(client):
    response = client.post("/v1/jobs", headers={**ACME, "Content-Type": "application/json"},
                           data=b'{"type": "demo.echo",')
    assert_problem(response, 400)


def test_404_unknown_route_and_unknown_job(client):
    assert_problem(client.get("/nowhere"), 404, {})
    assert_problem(client.get("/v1/nowhere", headers=ACME), 404, {})
    body = assert_problem(client.get("/v1/jobs/" + "f" * 32, headers=ACME), 404, {})
    assert body["type"] == "urn:switchyard:problem:not-found"


def test_405_wrong_method_lists_the_allowed_ones(client):
    response = client.delete("/v1/jobs", headers=ACME)
    assert_problem(response, 405, {})
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_409_cancel_of_an_ended_job(client):
    job = post_job(client, {"type": "demo.echo", "payload": {"message": "x"}}).json
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=ACME).status_code == 202
    body = assert_problem(client.post(f"/v1/jobs/{job['id']}/cancel", headers=ACME), 409,
                          {"state": ["is canceled"]})
    assert "already ended" in body["detail"]


def test_413_body_over_the_limit(make_app):
    client = make_app(MAX_CONTENT_LENGTH="512").test_client()
    big = {"type": "demo.echo", "payload": {"message": "x" * 1000}}
    assert_problem(client.post("/v1/jobs", headers=ACME, json=big), 413, {})
    assert client.get("/v1/jobs", headers=ACME).json["items"] == []


@pytest.mark.parametrize("body, errors", [
    ({}, {"type": ["Missing data for required field."]}),
    ({"type": "demo.echo", "payload": {}},
     {"payload.message": ["Missing data for required field."]}),
    ({"type": "demo.echo", "payload": {"message": 5, "extra": 1}},
     {"payload.message": ["Not a valid string."], "payload.extra": ["Unknown field."]}),
    ({"type": "demo.sleep", "payload": {"seconds": -1}},
     {"payload.seconds": ["Must be greater than or equal to 0 and less than or equal to 3600."]}),
    ({"type": "demo.echo", "payload": {"message": "x"}, "color": "red"},
     {"color": ["Unknown field."]}),
    ({"type": "demo.echo", "payload": "text"}, {"payload": ["Not a valid mapping type."]}),
    ({"type": "demo.echo", "payload": {"message": "x"},
      "options": {"priority": "urgent", "max_retries": -1, "delay": 5,
                  "run_at": SOON, "queue": "no spaces"}},
     {"options.priority": ["Must be one of: high, default, low."],
      "options.max_retries": ["Must be greater than or equal to 0 and less than or equal to 100."],
      "options.queue": ["must be 1-64 letters, digits, '_', '-' or '.'"]}),
    ({"type": "demo.echo", "payload": {"message": "x"},
      "options": {"delay": 5, "run_at": SOON}},
     {"options.delay": ["give delay or run_at, not both"]}),
    ({"type": "demo.echo", "payload": {"message": "x"}, "options": {"delay": 10 ** 9}},
     {"options.delay": ["Must be greater than or equal to 0 and less than or equal to 31622400.0."]}),
    ({"type": "demo.echo", "payload": {"message": "x"},
      "options": {"run_at": "2030-01-01T00:00:00"}},
     {"options.run_at": ["Not a valid aware datetime."]}),
    ({"type": "demo.echo", "payload": {"message": "x"},
      "options": {"expires_at": "2001-01-01T00:00:00+00:00"}},
     {"options.expires_at": ["must be after now and after run_at"]}),
    ({"type": "demo.echo", "payload": {"message": "x"}, "options": {"timeout": 10 ** 9}},
     {"options.timeout": ["must be > 0 and <= 3000.0"]}),
    ({"type": "api.untyped", "payload": {"count": 2}},
     {"payload": ["missing a required argument: 'name'"]}),
    ({"type": "api.untyped", "payload": {"name": "n", "color": "red"}},
     {"payload": ["got an unexpected keyword argument 'color'"]}),
])
def test_422_field_errors(client, body, errors):
    assert_problem(post_job(client, body), 422, errors)
    assert client.get("/v1/jobs", headers=ACME).json["items"] == []


def test_422_unknown_type_names_the_known_ones(client):
    body = assert_problem(post_job(client, {"type": "no.such", "payload": {}}), 422)
    [message] = body["errors"]["type"]
    assert "'no.such'" in message and "demo.echo" in message and "demo.sleep" in message


def test_422_batch_names_each_bad_job_and_enqueues_none(client):
    jobs = [{"type": "demo.echo", "payload": {"message": "ok"}},
            {"type": "demo.echo", "payload": {}},
            {"type": "nope"},
            {"type": "demo.sleep", "payload": {"seconds": "soon"}}]
    body = assert_problem(client.post("/v1/jobs/batch", headers=ACME, json={"jobs": jobs}), 422)
    assert set(body["errors"]) == {"jobs.1.payload.message", "jobs.2.type",
                                   "jobs.3.payload.seconds"}
    assert client.get("/v1/jobs", headers=ACME).json["items"] == []


def test_422_batch_size(client):
    assert_problem(client.post("/v1/jobs/batch", headers=ACME, json={"jobs": []}), 422,
                   {"jobs": ["Length must be between 1 and 500."]})
    many = [{"type": "demo.echo", "payload": {"message": "m"}}] * 501
    assert_problem(client.post("/v1/jobs/batch", headers=ACME, json={"jobs": many}), 422,
                   {"jobs": ["Length must be between 1 and 500."]})


def test_422_list_query(client):
    assert_problem(client.get("/v1/jobs?state=done&limit=0", headers=ACME), 422)
    body = assert_problem(client.get("/v1/jobs?cursor=bm90LWEtY3Vyc29y", headers=ACME), 422)
    assert body["errors"] == {"cursor": ["is not a next_cursor of this API"]}


def test_500_is_a_problem_too_and_hides_the_exception(make_app, caplog):
    app = make_app()

    def explode():
        raise RuntimeError("secret internals")
    app.add_url_rule("/v1/explode", "explode", explode)
    response = app.test_client().get("/v1/explode", headers=ACME)
    body = assert_problem(response, 500, {})
    assert "secret" not in response.get_data(as_text=True)
    assert "an unexpected error" in body["detail"]
    assert "secret internals" in caplog.text  # but the log has it


def test_argument_schemas_are_made_once_not_per_request(client, monkeypatch):
    """webargs makes an instance of a schema class for every request it parses, and
    marshmallow deep-copies the declared fields each time; the Blueprint hands it one
    instance instead (service/api/__init__.py)."""
    import marshmallow

    made = []
    init = marshmallow.Schema.__init__

    def counting(self, *args, **kwargs):
        made.append(type(self).__name__)
        init(self, *args, **kwargs)

    def calls():
        answer = client.post("/v1/jobs?wait=0", headers=ACME,
                             json={"type": "demo.echo", "payload": {"message": "m"}})
        assert answer.status_code == 202, answer.json
        assert client.get(f"/v1/jobs/{answer.json['id']}", headers=ACME).status_code == 200

    calls()  # the first dump makes the nested schemas of the answer, once
    monkeypatch.setattr(marshmallow.Schema, "__init__", counting)
    calls()
    calls()
    assert made == [], made  # before: JobRequestSchema and WaitQuerySchema, each call
