"""webhook.deliver on every engine, against real HTTP receivers on loopback.

The receiver on 127.0.0.1 is allowed (WEBHOOK_ALLOWED_HOSTS); the canary on 127.0.0.2
is not, and no test may ever make it receive a request.
"""

from __future__ import annotations

import http.client
import json
import uuid

import pytest
from marshmallow import ValidationError
from standardwebhooks import Webhook, WebhookVerificationError

from adapters import InvalidJob, JobOptions, JobState
from service.jobs.webhooks import DELIVERY_SCHEMA
from service.ssrf import AllowList, check_url
from tests.jobs.conftest import SIGNING_SECRET
from tests.jobs.servers import Reply


@pytest.fixture
def path():
    return f"/hook-{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def no_canary_hits(canary):
    """Every test ends with the canary untouched."""
    yield
    hits = [h for h in canary.requests() if h.path != "/self-check"]
    assert hits == [], "a webhook reached the refused address 127.0.0.2"


def test_the_canary_is_really_listening(canary):
    """Zero hits mean something only if the canary answers when called."""
    conn = http.client.HTTPConnection(canary.host, canary.port, timeout=5)
    conn.request("GET", "/self-check")
    assert conn.getresponse().status == 200
    conn.close()
    assert [h.path for h in canary.requests()].count("/self-check") >= 1


def deliver(jobs, url: str, event: str = "invoice.paid", data=None):
    info = jobs.adapter.enqueue("webhook.deliver",
                                {"url": url, "event": event, "data": data or {"n": 1}},
                                tenant=jobs.tenant())
    return info, jobs.engine.wait_for(info.id, timeout=30)


def test_delivery_is_signed_per_standard_webhooks(jobs, receiver, path):
    info, done = deliver(jobs, receiver.url(path), data={"amount": 42, "currency": "EUR"})
    assert done.state is JobState.SUCCEEDED, done.error
    [hit] = receiver.requests(path)
    assert hit.headers["webhook-id"] == f"msg_{info.id}" == done.result["webhook_id"]
    assert hit.headers["content-type"] == "application/json"
    payload = Webhook(SIGNING_SECRET).verify(hit.body, hit.headers)
    assert payload["type"] == "invoice.paid" and payload["data"] == {"amount": 42, "currency": "EUR"}
    assert payload["timestamp"] == info.created_at.isoformat()
    assert done.result["status"] == 200 and done.result["response"] == "ok"
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==").verify(hit.body, hit.headers)


def test_503_and_429_are_retried_after_retry_after_with_one_webhook_id(jobs, receiver, path):
    receiver.script(path, Reply(503, {"Retry-After": "1"}, b"busy"),
                    Reply(429, {"Retry-After": "1"}, b"slow down"), Reply(200))
    info, done = deliver(jobs, receiver.url(path))
    assert done.state is JobState.SUCCEEDED, done.error
    assert done.attempts == 3
    hits = receiver.requests(path)
    assert len(hits) == 3
    assert {h.headers["webhook-id"] for h in hits} == {f"msg_{info.id}"}
    assert len({h.body for h in hits}) == 1, "every attempt sends the same body"
    for hit in hits:
        Webhook(SIGNING_SECRET).verify(hit.body, hit.headers)
    # the retries were scheduled no sooner than the receiver asked
    retries = [e for e in jobs.adapter.history(info.id) if e["state"] == "retrying"]
    assert len(retries) == 2
    assert all(e["run_at"] - e["at"] >= 1.0 for e in retries)
    assert all(b.at - a.at >= 1.0 for a, b in zip(hits, hits[1:]))


def test_410_fails_at_once_saying_the_endpoint_is_gone(jobs, receiver, path):
    receiver.script(path, Reply(410, body=b"no such subscription"))
    info, done = deliver(jobs, receiver.url(path))
    assert done.state is JobState.FAILED and done.attempts == 1
    assert done.error["type"] == "EndpointGone"
    assert "410" in done.error["message"] and "endpoint is gone" in done.error["message"]
    assert len(receiver.requests(path)) == 1


def test_other_4xx_fails_at_once_with_the_reply(jobs, receiver, path):
    receiver.script(path, Reply(422, body=b"unknown event type"))
    info, done = deliver(jobs, receiver.url(path))
    assert done.state is JobState.FAILED and done.attempts == 1
    assert done.error["type"] == "DeliveryFailed"
    assert "422" in done.error["message"] and "unknown event type" in done.error["message"]


def test_redirects_are_never_followed(jobs, receiver, canary, path):
    target = receiver.script(path + "-target", Reply(200))
    receiver.script(path, Reply(307, {"Location": receiver.url(target)}))
    canary_path = canary.script("/metadata", Reply(200))
    other = receiver.script(path + "-to-canary", Reply(302, {"Location": canary.url(canary_path)}))
    for url in (receiver.url(path), receiver.url(other)):
        info, done = deliver(jobs, url)
        assert done.state is JobState.FAILED and done.attempts == 1
        assert "redirects are not followed" in done.error["message"]
    assert receiver.requests(target) == []


def test_a_slow_receiver_times_out_and_is_retried(jobs, receiver, path):
    receiver.script(path, Reply(200, delay=5), Reply(200))  # WEBHOOK_TIMEOUT is 3 s
    info, done = deliver(jobs, receiver.url(path))
    assert done.state is JobState.SUCCEEDED, done.error
    assert done.attempts == 2
    history = jobs.adapter.history(info.id)
    assert [e["state"] for e in history].count("retrying") == 1
    assert len(receiver.requests(path)) == 2


def test_the_response_body_is_read_up_to_the_cap(jobs, receiver, path):
    receiver.script(path, Reply(200, body=b"x" * 200_000))  # WEBHOOK_MAX_RESPONSE_BYTES is 2048
    info, done = deliver(jobs, receiver.url(path))
    assert done.state is JobState.SUCCEEDED, done.error
    assert done.result["truncated"] is True and done.result["response"] == "x" * 1000


def test_https_goes_to_the_vetted_address_with_the_name_in_sni_and_checks_the_certificate(
        jobs, secure_receiver, path):
    host = f"tls-{uuid.uuid4().hex[:8]}.rebind.test"
    info, done = deliver(jobs, secure_receiver.url(path, host=host))
    assert done.state is JobState.SUCCEEDED, done.error
    [hit] = secure_receiver.requests(path)
    assert hit.headers["host"] == f"{host}:{secure_receiver.port}"
    assert host in secure_receiver.server_names
    Webhook(SIGNING_SECRET).verify(hit.body, hit.headers)
    # the same server by its address: the certificate does not name 127.0.0.1
    info = jobs.adapter.enqueue("webhook.deliver", {"url": secure_receiver.url(path + "-ip"),
                                                    "event": "e", "data": None},
                                JobOptions(max_retries=0), tenant=jobs.tenant())
    done = jobs.engine.wait_for(info.id)
    assert done.state is JobState.FAILED and "CERTIFICATE_VERIFY_FAILED" in done.error["message"]
    assert secure_receiver.requests(path + "-ip") == []


REFUSED = [
    "http://127.0.0.2:{port}/direct",
    "http://2130706434:{port}/decimal",
    "http://0x7f.0.0.2:{port}/hex",
    "http://0177.0.0.02:{port}/octal",
    "http://127.2:{port}/short",
    "http://[::ffff:127.0.0.2]:{port}/mapped",
    "http://localhost:{port}/name",
]


def test_refused_addresses_are_refused_at_enqueue_from_python_too(jobs, canary):
    """The Python API validates a payload as the REST API does (one validation path):
    a refused address never becomes a job, and the canary gets nothing. The job's own
    check at send time is what the DNS cases below reach."""
    for template in REFUSED:
        url = template.format(port=canary.port)
        with pytest.raises(ValidationError):
            DELIVERY_SCHEMA.load({"url": url, "event": "e", "data": None})
        with pytest.raises(InvalidJob) as err:
            deliver(jobs, url)
        assert "payload.url" in err.value.errors, (url, err.value.errors)
    assert jobs.adapter.list(tenant=jobs.tenant())[0] == []


def test_dns_rebinding_cannot_move_the_request_after_the_check(jobs, receiver, path):
    host = f"pin-{uuid.uuid4().hex[:8]}.rebind.test"  # 127.0.0.1 once, then the canary
    info, done = deliver(jobs, f"http://{host}:{receiver.port}{path}")
    assert done.state is JobState.SUCCEEDED, done.error
    [hit] = receiver.requests(path)
    assert hit.headers["host"] == f"{host}:{receiver.port}"
    assert done.result["address"] == "127.0.0.1"
    assert jobs.engine.redis.get(f"test:resolve:{host}") == "1", "the name was looked up again"


def test_a_public_answer_at_enqueue_then_loopback_at_send_is_refused(jobs, canary):
    host = f"flip-{uuid.uuid4().hex[:8]}.rebind.test"
    url = f"http://{host}:{canary.port}/flip"
    vetted = check_url(url, allow=AllowList.parse("127.0.0.1"),
                       resolve=lambda h, p: ["93.184.216.34"])  # what the API saw
    assert vetted.addresses == ("93.184.216.34",)
    info, done = deliver(jobs, url)  # the worker's resolver now answers 127.0.0.2
    assert done.state is JobState.FAILED and done.attempts == 1
    assert done.error["type"] == "UnsafeURL" and "127.0.0.2" in done.error["message"]


def test_the_schema_refuses_bad_events_and_unsafe_urls(monkeypatch):
    monkeypatch.setenv("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1")
    with pytest.raises(ValidationError) as exc:
        DELIVERY_SCHEMA.load({"url": "http://169.254.169.254/latest/meta-data", "event": "a b"})
    assert set(exc.value.messages) == {"url", "event", "data"}
    assert "link-local" in exc.value.messages["url"][0]
    loaded = DELIVERY_SCHEMA.load({"url": "http://127.0.0.1:9/x", "event": "a.b", "data": [1]})
    assert json.dumps(loaded) == '{"url": "http://127.0.0.1:9/x", "event": "a.b", "data": [1]}'
