"""email.send on every engine, against a real SMTP server on loopback."""

from __future__ import annotations

import uuid
from email import message_from_bytes, policy

import pytest
from marshmallow import ValidationError

from adapters import JobOptions, JobState
from service import config
from service.jobs.email import SCHEMA, PermanentMailError, TemporaryMailError, build_message, send_smtp
from service.embedded_redis import free_port
from tests.jobs.conftest import MAIL_DOMAIN


def _address(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"


def test_mail_is_delivered_over_starttls_with_auth_content_and_headers(jobs, smtp):
    to = [_address(), _address()]
    reply_to = _address("replies")
    info = jobs.adapter.enqueue("email.send", {
        "to": to, "subject": "Your report — ready", "text": "Plain body\nline two",
        "html": "<p>HTML <b>body</b></p>", "reply_to": reply_to}, tenant=jobs.tenant())
    done = jobs.engine.wait_for(info.id)
    assert done.state is JobState.SUCCEEDED, done.error
    message_id = f"<{info.id}@{MAIL_DOMAIN}>"
    assert done.result["message_id"] == message_id
    assert done.result["accepted"] == to and done.result["refused"] == {}
    [mail] = smtp.handler.find(message_id)
    assert mail["login"] == "mailer" and mail["tls"] is True
    assert mail["rcpt_tos"] == to and mail["mail_from"] == f"noreply@{MAIL_DOMAIN}"
    msg = mail["message"]
    assert msg["Subject"] == "Your report — ready"
    assert msg["From"] == f"Switchyard Tests <noreply@{MAIL_DOMAIN}>"
    assert [a.addr_spec for a in msg["To"].addresses] == to
    assert msg["Reply-To"] == reply_to
    assert msg.get_body(("plain",)).get_content().splitlines() == ["Plain body", "line two"]
    assert msg.get_body(("html",)).get_content().strip() == "<p>HTML <b>body</b></p>"


def test_a_421_is_retried_and_the_retry_sends_the_same_message_id(jobs, smtp):
    to = _address("greylist")
    info = jobs.adapter.enqueue("email.send", {"to": to, "subject": "s", "text": "t"},
                                tenant=jobs.tenant())
    done = jobs.engine.wait_for(info.id)
    assert done.state is JobState.SUCCEEDED, done.error
    assert done.attempts == 2
    assert "retrying" in jobs.engine.states(info.id)
    assert smtp.handler.rcpt_tries[to] == 2
    [mail] = smtp.handler.find(f"<{info.id}@{MAIL_DOMAIN}>")
    assert mail["rcpt_tos"] == [to]


def test_a_550_fails_at_once_with_the_servers_reply(jobs, smtp):
    to = _address("reject")
    info = jobs.adapter.enqueue("email.send", {"to": to, "subject": "s", "text": "t"},
                                tenant=jobs.tenant())
    done = jobs.engine.wait_for(info.id)
    assert done.state is JobState.FAILED
    assert done.attempts == 1 and "retrying" not in jobs.engine.states(info.id)
    assert done.error["type"] == "PermanentMailError"
    assert "550 5.1.1" in done.error["message"] and "mailbox unavailable" in done.error["message"]
    assert smtp.handler.rcpt_tries[to] == 1
    assert smtp.handler.find(f"<{info.id}@{MAIL_DOMAIN}>") == []


def test_a_partly_refused_message_succeeds_for_the_accepted_and_lists_the_refused(jobs, smtp):
    good, bad = _address(), _address("reject")
    info = jobs.adapter.enqueue("email.send", {"to": [good, bad], "subject": "s", "text": "t"},
                                tenant=jobs.tenant())
    done = jobs.engine.wait_for(info.id)
    assert done.state is JobState.SUCCEEDED and done.attempts == 1
    assert done.result["accepted"] == [good]
    assert list(done.result["refused"]) == [bad] and done.result["refused"][bad].startswith("550")
    [mail] = smtp.handler.find(f"<{info.id}@{MAIL_DOMAIN}>")
    assert mail["rcpt_tos"] == [good]


def test_mail_goes_over_smtps(jobs, smtps):
    to = _address()
    info = jobs.adapter.enqueue("email.send", {"to": to, "subject": "over TLS", "text": "t"},
                                JobOptions(queue="smtps"), tenant=jobs.tenant())
    done = jobs.engine.wait_for(info.id)
    assert done.state is JobState.SUCCEEDED, done.error
    [mail] = smtps.handler.find(f"<{info.id}@{MAIL_DOMAIN}>")
    assert mail["tls"] is True and mail["login"] == "mailer" and mail["rcpt_tos"] == [to]


def test_without_smtp_url_mail_is_written_to_the_outbox_and_the_log_says_so(jobs, smtp):
    to = _address()
    info = jobs.adapter.enqueue("email.send", {"to": to, "subject": "kept", "text": "local"},
                                JobOptions(queue="outbox"), tenant=jobs.tenant())
    done = jobs.engine.wait_for(info.id)
    assert done.state is JobState.SUCCEEDED, done.error
    path = jobs.outbox / f"{info.id}.eml"
    assert done.result["transport"] == "outbox" and done.result["path"] == path.name
    msg = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert msg["Message-ID"] == f"<{info.id}@{MAIL_DOMAIN}>"
    assert msg["To"] == to and msg.get_content().strip() == "local"
    assert smtp.handler.find(msg["Message-ID"]) == []
    assert "SMTP_URL is not set" in jobs.workers["outbox"].log()
    assert "SMTP_URL is not set" not in jobs.workers["default"].log()


def test_an_invalid_payload_is_refused_by_the_schema():
    with pytest.raises(ValidationError) as exc:
        SCHEMA.load({"to": ["ok@example.com", "not an address"], "subject": "a\r\nBcc: x@y.z",
                     "text": "t", "extra": 1})
    errors = exc.value.messages
    assert set(errors) == {"to", "subject", "extra"}
    assert 1 in errors["to"]
    assert SCHEMA.load({"to": "a@example.com", "subject": "s", "text": "t"})["to"] == ["a@example.com"]


def _settings(url: str) -> config.MailSettings:
    return config.mail_settings({"SMTP_URL": url, "MAIL_FROM": f"t <t@{MAIL_DOMAIN}>",
                                 "SMTP_TIMEOUT": "5"})


def _message() -> tuple:
    settings = _settings("smtp://127.0.0.1:1")
    return build_message(uuid.uuid4().hex, {"to": ["a@example.com"], "subject": "s",
                                            "text": "t"}, settings), ["a@example.com"]


def test_wrong_credentials_are_a_permanent_failure_with_the_reply(smtp, tls, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))  # trust the test CA for STARTTLS
    msg, rcpt = _message()
    with pytest.raises(PermanentMailError, match="535"):
        send_smtp(msg, rcpt, _settings(smtp.url(password="wrong")))


def test_a_refused_connection_is_temporary():
    msg, rcpt = _message()
    with pytest.raises(TemporaryMailError, match="ConnectionRefusedError"):
        send_smtp(msg, rcpt, _settings(f"smtp://127.0.0.1:{free_port()}"))


def test_the_message_id_is_the_same_for_every_build_of_one_job():
    settings = _settings("smtp://127.0.0.1:1")
    data = {"to": ["a@example.com"], "subject": "s", "text": "t"}
    first, second = (build_message("abc123", data, settings) for _ in range(2))
    assert first["Message-ID"] == second["Message-ID"] == f"<abc123@{MAIL_DOMAIN}>"
