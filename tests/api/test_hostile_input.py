"""Valid JSON that Python's parser or Redis cannot take is a 422 naming the field, never a 500."""

from __future__ import annotations

import pytest

from tests.api.conftest import ACME
from tests.api.test_errors import assert_problem

DEEP = 100_000
ECHO = {"type": "demo.echo", "payload": {"message": "m"}}


def nested(depth: int, leaf="x") -> str:
    return "[" * depth + f'"{leaf}"' + "]" * depth


def ledger_keys(client) -> list[str]:
    """Every key but the rate limiter's (it counts refused calls too, by design)."""
    adapter = client.application.extensions["switchyard"].adapter
    return [k for k in adapter.redis.keys("*")
            if not k.startswith(f"{adapter.settings.namespace}limits")]


def post_raw(client, path: str, body: str, method: str = "POST"):
    return client.open(path, method=method, data=body.encode("utf-8"),
                       headers={**ACME, "Content-Type": "application/json"})


DEPTH_MESSAGE = "nests deeper than 64 levels of arrays and objects"


@pytest.mark.parametrize("depth", [DEEP, 200])
def test_a_deeply_nested_payload_is_422_naming_where(client, depth):
    body = '{"type": "demo.echo", "payload": {"message": "m", "data": ' + nested(depth) + "}}"
    problem = assert_problem(post_raw(client, "/v1/jobs", body), 422)
    [(field, messages)] = problem["errors"].items()
    # the body is level 1, payload 2, data's array 3: the 65th container is the 63rd array
    assert field == "payload.data" + ".0" * 62
    assert messages == [DEPTH_MESSAGE]
    assert ledger_keys(client) == []


def test_nesting_up_to_the_limit_is_taken(client):
    body = '{"type": "demo.echo", "payload": {"message": "m", "data": {"a": ' + nested(61) + "}}}"
    response = post_raw(client, "/v1/jobs", body)
    assert response.status_code == 202, response.json


@pytest.mark.parametrize("path, body, field", [
    ("/v1/jobs/batch", '{"jobs": [{"type": "demo.echo", "payload": {"message": "m", "d": %s}}]}',
     "jobs.0.payload.d"),
    ("/v1/workflows", '{"chain": [{"type": "demo.echo", "payload": {"message": "m", "d": %s}}]}',
     "chain.0.payload.d"),
    ("/v1/schedules", '{"name": "s", "every": 60, "job": {"type": "demo.echo", '
                      '"payload": {"message": "m", "d": %s}}}', "job.payload.d"),
    ("/v1/jobs", '%s', ""),
])
def test_every_json_body_has_the_depth_limit(client, path, body, field):
    problem = assert_problem(post_raw(client, path, body % nested(DEEP)), 422)
    [name] = problem["errors"]
    assert name.startswith(field) and problem["errors"][name] == [DEPTH_MESSAGE]
    assert ledger_keys(client) == []


def test_a_huge_integer_is_422_naming_it(client):
    body = '{"type": "demo.echo", "payload": {"message": "m", "data": {"n": [1, ' + "7" * 5000 + "]}}}"
    assert_problem(post_raw(client, "/v1/jobs", body), 422,
                   {"payload.data.n.1": ["is an integer of more than 4300 digits"]})
    body = '{"type": "demo.echo", "payload": {"message": "m"}, "options": {"max_retries": -' \
           + "9" * 5000 + "}}"
    assert_problem(post_raw(client, "/v1/jobs", body), 422,
                   {"options.max_retries": ["is an integer of more than 4300 digits"]})
    assert ledger_keys(client) == []


def test_a_float_out_of_range_is_422_naming_it(client):
    body = '{"type": "demo.echo", "payload": {"message": "m", "data": {"x": 1e999}}}'
    assert_problem(post_raw(client, "/v1/jobs", body), 422,
                   {"payload.data.x": ["is not a finite number"]})
    assert ledger_keys(client) == []


@pytest.mark.parametrize("path, body, field", [
    ("/v1/jobs", '{"type": "demo.echo", "payload": {"message": "m"}, '
                 '"options": {"idempotency_key": "k\\ud800"}}', "options.idempotency_key"),
    ("/v1/jobs", '{"type": "demo.echo", "payload": {"message": "\\udfff"}}', "payload.message"),
    ("/v1/jobs", '{"type": "demo.echo\\ud800", "payload": {"message": "m"}}', "type"),
    ("/v1/jobs", '{"type": "demo.echo", "payload": {"message": "m", "data": {"\\ud800": 1}}}',
     "payload.data.\\ud800"),
    ("/v1/jobs", '{"type": "demo.echo", "payload": {"message": "m"}, '
                 '"options": {"queue": "q\\ud800"}}', "options.queue"),
    ("/v1/jobs/batch", '{"jobs": [{"type": "demo.echo", "payload": {"message": "m"}}, '
                       '{"type": "demo.echo", "payload": {"message": "m"}, '
                       '"options": {"idempotency_key": "\\ud800"}}]}', "jobs.1.options.idempotency_key"),
    ("/v1/schedules", '{"name": "s\\ud800", "every": 60, "job": {"type": "demo.echo", '
                      '"payload": {"message": "m"}}}', "name"),
    ("/v1/schedules", '{"name": "s", "every": 60, "timezone": "Europe/Berlin\\ud800", '
                      '"job": {"type": "demo.echo", "payload": {"message": "m"}}}', "timezone"),
    ("/v1/schedules", '{"name": "s", "cron": "* * * * *\\ud800", '
                      '"job": {"type": "demo.echo", "payload": {"message": "m"}}}', "cron"),
])
def test_a_lone_surrogate_is_422_naming_the_field(client, path, body, field):
    problem = assert_problem(post_raw(client, path, body), 422)
    assert list(problem["errors"]) == [field]
    assert "lone surrogate" in problem["errors"][field][0]
    assert ledger_keys(client) == []


def test_a_surrogate_pair_is_text_and_taken(client):
    body = '{"type": "demo.echo", "payload": {"message": "\\ud83d\\ude00"}}'
    response = post_raw(client, "/v1/jobs", body)
    assert response.status_code == 202 and response.json["payload"] == {"message": "\U0001F600"}


def test_query_strings_and_paths_cannot_carry_surrogates(client):
    # werkzeug keeps an invalid UTF-8 escape as its literal text (or U+FFFD in a path)
    response = client.get("/v1/jobs?type=%ED%A0%80", headers=ACME)
    assert response.status_code == 200 and response.json["items"] == []
    assert_problem(client.get("/v1/schedules/%ED%A0%80", headers=ACME), 404)
    assert ledger_keys(client) == []


def test_a_signed_hook_body_out_of_limits_is_422_and_stored_nowhere(make_app, monkeypatch):
    from tests.api.test_hooks_reports import SECRET, _signed

    monkeypatch.setenv("HOOK_SECRETS", f"shop:{SECRET}")
    client = make_app().test_client()
    for body, field in ((nested(DEEP), "0" + ".0" * 63), ('{"n": ' + "1" * 5000 + "}", "n"),
                        ('{"type": "\\ud800"}', "type")):
        response = client.post("/v1/hooks/shop", data=body, headers=_signed(body, "msg_1"))
        assert field in assert_problem(response, 422)["errors"]
    assert ledger_keys(client) == []
    body = "not JSON at all"  # still taken: the handler sees payload None
    assert client.post("/v1/hooks/shop", data=body,
                       headers=_signed(body, "msg_2")).status_code == 202


def test_a_reused_idempotency_key_with_another_payload_is_409(client):
    job = {"type": "demo.echo", "payload": {"message": "one"},
           "options": {"idempotency_key": "order-42"}}
    first = client.post("/v1/jobs", headers=ACME, json=job)
    assert first.status_code == 202
    assert client.post("/v1/jobs", headers=ACME, json=job).json["id"] == first.json["id"]
    before = sorted(ledger_keys(client))
    other = {**job, "payload": {"message": "two"}}
    problem = assert_problem(client.post("/v1/jobs", headers=ACME, json=other), 409)
    assert list(problem["errors"]) == ["options.idempotency_key"]
    assert first.json["id"] in problem["errors"]["options.idempotency_key"][0]
    batch = {"jobs": [ECHO, {**job, "options": {"idempotency_key": "order-42", "priority": "high"}}]}
    assert_problem(client.post("/v1/jobs/batch", headers=ACME, json=batch), 409,
                   {"jobs.1.options.idempotency_key": [
                       f"is in use by job {first.json['id']}, enqueued with other parameters"]})
    assert sorted(ledger_keys(client)) == before


@pytest.mark.parametrize("payload, field", [
    ({"subject": "a\x85b"}, "payload.subject"),
    ({"subject": "a\u2028b"}, "payload.subject"),
    ({"subject": "a\u2029b"}, "payload.subject"),
    ({"subject": "a\x00b"}, "payload.subject"),
    ({"subject": "a\x0bb"}, "payload.subject"),
    ({"to": "x\x85@example.com"}, "payload.to.0"),
    ({"to": ["ok@example.com", '"a\x01b"@example.com']}, "payload.to.1"),
    ({"reply_to": '"r\u2028"@example.com'}, "payload.reply_to"),
])
def test_an_email_header_that_cannot_be_sent_is_422_at_enqueue(client, payload, field):
    email = {"to": "ada@example.com", "subject": "s", "text": "t", **payload}
    problem = assert_problem(client.post("/v1/jobs", headers=ACME,
                                         json={"type": "email.send", "payload": email}), 422)
    assert field in problem["errors"], problem["errors"]
    assert ledger_keys(client) == []


def test_an_email_subject_may_hold_a_tab_and_any_text(client):
    email = {"to": "ada@example.com", "subject": "Ready:\tü 😀", "text": "t"}
    assert client.post("/v1/jobs", headers=ACME,
                       json={"type": "email.send", "payload": email}).status_code == 202


@pytest.mark.parametrize("period", [{"start": "9999-12-30", "end": "9999-12-31"},
                                    {"start": "9999-12-31", "end": "9999-12-31"}])
def test_a_report_period_at_the_end_of_time_is_422_at_enqueue(client, period):
    job = {"type": "report.generate", "payload": {"kind": "activity", "period": period}}
    problem = assert_problem(client.post("/v1/jobs", headers=ACME, json=job), 422)
    assert list(problem["errors"]) == ["payload.period"]
    assert ledger_keys(client) == []


def test_a_report_period_as_late_as_can_be_counted_is_taken(client):
    period = {"start": "9999-12-29", "end": "9999-12-30"}
    job = {"type": "report.generate", "payload": {"kind": "activity", "period": period}}
    assert client.post("/v1/jobs", headers=ACME, json=job).status_code == 202


@pytest.mark.parametrize("cron", ["*/99999999999 * * * *", "*/61 * * * *", "0 */25 * * *",
                                  "0 0 */32 * *", "0 0 1 */13 *", "0 0 * * */8", "*/0 * * * *"])
def test_a_cron_step_beyond_its_field_is_422_at_create(client, cron):
    schedule = {"name": "s", "cron": cron, "job": ECHO}
    assert_problem(client.post("/v1/schedules", headers=ACME, json=schedule), 422)
    assert ledger_keys(client) == []


def test_cron_steps_within_their_fields_are_taken(client):
    schedule = {"name": "s", "cron": "*/60 */24 */31 */12 */7", "job": ECHO}
    assert client.post("/v1/schedules", headers=ACME, json=schedule).status_code == 201


@pytest.mark.parametrize("name", [".", ".."])
def test_a_schedule_name_its_url_would_lose_is_422(client, name):
    schedule = {"name": name, "every": 60, "job": ECHO}
    assert_problem(client.post("/v1/schedules", headers=ACME, json=schedule), 422,
                   {"name": ["'.' and '..' are not names: a URL drops them"]})
    assert ledger_keys(client) == []


def test_a_schedule_name_or_queue_with_a_final_newline_is_422(client):
    assert_problem(client.post("/v1/schedules", headers=ACME,
                               json={"name": "s\n", "every": 60, "job": ECHO}), 422)
    assert_problem(client.post("/v1/jobs", headers=ACME,
                               json={**ECHO, "options": {"queue": "q\n"}}), 422)
    assert ledger_keys(client) == []


def test_a_long_integer_before_deep_nesting_is_422_too(client):
    # found by tests/api/test_fuzz_bodies.py: the second parse, which finds the integer,
    # hit the depth the first one never reached
    body = '{"type": "demo.echo", "payload": {"message": "m", "d": [-' + "7" * 4301 + ", " \
        + nested(2000) + "]}}"
    problem = assert_problem(post_raw(client, "/v1/jobs", body), 422)
    assert list(problem["errors"]) == ["payload.d.1" + ".0" * 61]
    assert ledger_keys(client) == []
