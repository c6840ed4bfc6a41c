"""Property: no JSON body, however hostile, makes any endpoint answer 5xx or a refusal write.

Each example takes a valid request of one endpoint and puts a generated value in one of
its places (a payload field, an option, the type, a schedule's name, cron or zone, the
whole body): nested up to thousands of levels, integers of thousands of digits, NaN and
infinities, lone surrogates, control characters and Unicode line breaks, wrong types.
The answer must be below 500, a refusal must be problem+json, and a refused request
must leave Redis exactly as it found it.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.api.conftest import ACME
from tests.api.test_hooks_reports import SECRET, _signed

DEEP_MARK = "\x00deep\x00"
ODD_TEXT = ["\ud800", "a\udfff", "\udc80\ud800", "\x00", "\x85", "\u2028", "\u2029", "\x0b",
            ".", "..", "", " ", "\ufeff", "\U0001F600", "a\n", "%2e%2e", "*/99999999999 * * * *",
            "9999-12-31", "Europe/Berlin", "../../etc/passwd", "demo.echo", "default"]
ODD_INTS = [2 ** 63, -(2 ** 64), 0, -1, 101, 10 ** 30]

text = st.one_of(st.text(st.characters(exclude_categories=()), max_size=12),
                 st.sampled_from(ODD_TEXT))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from(ODD_INTS),
                    st.floats(allow_nan=True, allow_infinity=True), text)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(text, inner, max_size=3), max_leaves=12)
# Written as raw JSON text when the body is encoded (hypothesis cannot even repr them):
# ("deep", n) is n nested arrays, ("digits", n) an integer literal of n digits.
raw = st.one_of(st.integers(60, 5000).map(lambda n: (DEEP_MARK, "deep", n)),
                st.sampled_from([4299, 4300, 4301, 5000, 20000]).map(
                    lambda n: (DEEP_MARK, "digits", n)))
hostile = st.one_of(values, raw, st.lists(raw, min_size=1, max_size=2))

ECHO = {"type": "demo.echo", "payload": {"message": "m"}}
ENDPOINTS = {
    "/v1/jobs": (ECHO, [("type",), ("payload",), ("payload", "message"), ("payload", "data"),
                        ("options",), ("options", "queue"), ("options", "priority"),
                        ("options", "idempotency_key"), ("options", "delay"),
                        ("options", "run_at"), ("options", "max_retries"),
                        ("options", "timeout"), ()]),
    "/v1/jobs/batch": ({"jobs": [ECHO, ECHO]}, [("jobs",), ("jobs", 1), ("jobs", 1, "payload"),
                                                ("jobs", 0, "options", "idempotency_key")]),
    "/v1/workflows": ({"chain": [ECHO, ECHO]}, [("chain",), ("chain", 1, "payload", "data"),
                                                ("chain", 0, "type")]),
    "/v1/schedules": ({"name": "s", "cron": "0 2 * * *", "timezone": "UTC", "job": ECHO},
                      [("name",), ("cron",), ("timezone",), ("every",), ("job",),
                       ("job", "payload", "data"), ("job", "options", "priority")]),
    "PATCH /v1/schedules/existing": ({"enabled": True}, [("cron",), ("timezone",), ("every",),
                                                         ("job",), ("enabled",)]),
    "/v1/hooks/shop": ({"type": "order.paid"}, [("type",), ("data",), ()]),
    "email.send": ({"type": "email.send", "payload": {"to": "a@example.com", "subject": "s",
                                                      "text": "t"}},
                   [("payload", "subject"), ("payload", "to"), ("payload", "reply_to")]),
    "report.generate": ({"type": "report.generate", "payload": {"kind": "activity"}},
                        [("payload", "period"), ("payload", "period", "start"),
                         ("payload", "period", "end")]),
}


def place(body, path, value):
    """``body`` with ``value`` at ``path`` (the whole body for an empty path)."""
    if not path:
        return value
    body = json.loads(json.dumps(body))
    node = body
    for key in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(key, {})
        else:
            node = node[key]
    node[path[-1]] = value
    return body


def encode(body) -> bytes:
    texts: list[str] = []

    def swap(value):
        if isinstance(value, tuple) and len(value) == 3 and value[0] == DEEP_MARK:
            kind, n = value[1], value[2]
            texts.append("[" * n + "1" + "]" * n if kind == "deep" else "-" + "7" * n)
            return f"{DEEP_MARK}{len(texts) - 1}"
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    text = json.dumps(swap(body), allow_nan=True)
    for index, raw_text in enumerate(texts):
        text = text.replace(json.dumps(f"{DEEP_MARK}{index}"), raw_text, 1)
    return text.encode("utf-8")


def snapshot(redis) -> dict:
    return {key: redis.dump(key) for key in redis.keys("*")}


@pytest.fixture
def fuzz_client(make_app, monkeypatch):
    monkeypatch.setenv("HOOK_SECRETS", f"shop:{SECRET}")
    monkeypatch.setenv("HOOK_TENANT", "acme")
    app = make_app(RATELIMIT_ENABLED=False)
    return app.test_client(), app.extensions["switchyard"].adapter


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_no_body_gives_a_5xx_or_a_refusal_that_writes(fuzz_client, endpoint, data):
    client, adapter = fuzz_client
    template, places = ENDPOINTS[endpoint]
    path = data.draw(st.sampled_from(places), "path")
    value = data.draw(hostile, "value")
    body = encode(place(template, path, value))
    adapter.redis.flushdb()
    method, _, url = endpoint.rpartition(" ")
    if not url.startswith("/"):
        method, url = "POST", "/v1/jobs"
    if url.endswith("/existing"):
        adapter.schedules().create("acme", "existing", "demo.echo", {"message": "m"}, every=60)
    headers = {**ACME, "Content-Type": "application/json"}
    if url.startswith("/v1/hooks/"):
        headers = _signed(body.decode(), f"msg_{len(body)}_{hash(body) & 0xffff}")
    before = snapshot(adapter.redis)
    response = client.open(url, method=method or "POST", data=body, headers=headers)
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400:
        assert response.content_type == "application/problem+json"
        assert snapshot(adapter.redis) == before, response.json


# -- accepted at the door means it runs: what enqueue lets in, the job can use ------------

HEADER_TEXT = st.one_of(text, st.text(st.characters(exclude_categories=("Cs",)), max_size=20))
FUZZ = settings(max_examples=80, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(field=st.sampled_from(["subject", "to", "reply_to"]), value=HEADER_TEXT)
def test_an_email_taken_at_enqueue_can_be_written(fuzz_client, field, value):
    from email import message_from_bytes
    from email.policy import SMTP as SMTP_POLICY

    from service import config
    from service.jobs.email import SCHEMA, build_message

    client, adapter = fuzz_client
    payload = {"to": "ada@example.com", "subject": "s", "text": "t",
               "reply_to": "help@example.com"}
    payload[field] = value if field == "subject" else f'"{value}"@example.com'
    response = client.post("/v1/jobs", headers=ACME, json={"type": "email.send",
                                                             "payload": payload})
    assert response.status_code in (202, 422), response.json
    if response.status_code == 202:
        msg = build_message(response.json["id"], SCHEMA.load(payload), config.mail_settings())
        written = message_from_bytes(msg.as_bytes(policy=SMTP_POLICY))
        assert set(written.keys()) == set(msg.keys())  # no header split into two


@FUZZ
@given(start=st.one_of(st.dates(), st.dates(min_value=dt.date(9999, 1, 1)),
                       st.dates(max_value=dt.date(1, 12, 31))),
       days=st.integers(0, 400))
def test_a_report_period_taken_at_enqueue_can_be_counted(fuzz_client, start, days):
    from service.jobs.reports import collect_activity

    client, adapter = fuzz_client
    end = start + dt.timedelta(days=min(days, (dt.date.max - start).days))
    period = {"start": start.isoformat(), "end": end.isoformat()}
    response = client.post("/v1/jobs", headers=ACME, json={
        "type": "report.generate", "payload": {"kind": "activity", "period": period}})
    assert response.status_code in (202, 422), response.json
    if response.status_code == 202:
        collect_activity(adapter, "acme", start, end)


CRON_FIELD = st.one_of(st.sampled_from(["*", "0", "5", "1-5", "*/2", "*/60", "*/99999999999",
                                        "1,2", "0-59/7", "*/0", "7", "31", "12", "L", "?"]),
                       st.from_regex(r"\A(\*|[0-9]{1,3})(/[0-9]{1,12})?\Z"))


@FUZZ
@given(fields=st.lists(CRON_FIELD, min_size=5, max_size=5),
       zone=st.sampled_from(["UTC", "Europe/Berlin", "America/Sao_Paulo", "Pacific/Kiritimati"]))
def test_a_cron_taken_at_create_keeps_firing(fuzz_client, fields, zone):
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    from adapters.schedules import next_cron_time

    client, adapter = fuzz_client
    adapter.redis.flushdb()
    cron = " ".join(fields)
    response = client.post("/v1/schedules", headers=ACME, json={
        "name": "c", "cron": cron, "timezone": zone, "job": ECHO})
    assert response.status_code in (201, 422), response.json
    if response.status_code == 201:
        after = datetime.now(timezone.utc)
        for _ in range(3):
            after = next_cron_time(cron, ZoneInfo(zone), after)


@FUZZ
@given(name=st.one_of(st.from_regex(r"\A[A-Za-z0-9_.-]{1,100}\Z"),
                      st.sampled_from([".", "..", "...", ".a", "a.", "-", "_"]), text))
def test_a_schedule_name_taken_at_create_is_its_url(fuzz_client, name):
    client, adapter = fuzz_client
    adapter.redis.flushdb()
    response = client.post("/v1/schedules", headers=ACME,
                           json={"name": name, "every": 60, "job": ECHO})
    assert response.status_code in (201, 422), response.json
    if response.status_code == 201:
        # as any HTTP client sends it: dot segments removed (RFC 3986, 5.2.4)
        url = urllib.parse.urljoin("http://host/", response.headers["Location"])
        again = client.get(urllib.parse.urlsplit(url).path, headers=ACME)
        assert again.status_code == 200 and again.json["name"] == name
