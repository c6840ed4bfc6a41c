"""Job settings from the environment: parsed, validated, explained."""

from __future__ import annotations

import logging

import pytest

from adapters import ConfigurationError
from service import config
from service.jobs.webhooks import parse_retry_after
from tests.jobs.conftest import HOOK_SECRET, OTHER_HOOK_SECRET, SIGNING_SECRET


@pytest.mark.parametrize("url, expected", [
    ("smtp://mail.example.com", ("mail.example.com", 25, "none", None, None)),
    ("smtp://u:sekrit@mail.example.com:2525", ("mail.example.com", 2525, "none", "u", "sekrit")),
    ("smtp://u%40x:sekrit%3Aw@mail.example.com?starttls=1",
     ("mail.example.com", 587, "starttls", "u@x", "sekrit:w")),
    ("smtps://apikey:sekrit@smtp.example.com", ("smtp.example.com", 465, "smtps", "apikey", "sekrit")),
])
def test_smtp_urls(url, expected):
    server = config.SmtpServer.parse(url)
    assert (server.host, server.port, server.security, server.username, server.password) == expected
    assert "sekrit" not in repr(server) and "sekrit" not in server.describe()


@pytest.mark.parametrize("url, problem", [
    ("http://mail.example.com", "smtp:// or smtps://"),
    ("smtp://", "no host"),
    ("smtp://h?tls=1", "unknown option"),
    ("smtp://h?starttls=maybe", "not 1 or 0"),
    ("smtps://h?starttls=1", "TLS already"),
    ("smtp://:pw@h", "no user name"),
    ("smtp://h:notaport", "cannot be parsed"),
])
def test_bad_smtp_urls_say_what_is_wrong(url, problem):
    with pytest.raises(ConfigurationError, match=problem):
        config.SmtpServer.parse(url)


def test_mail_settings_say_once_that_mail_goes_to_the_outbox(caplog, tmp_path):
    env = {"OUTBOX_DIR": str(tmp_path / "unique-outbox")}
    with caplog.at_level(logging.INFO, logger="switchyard.jobs"):
        first = config.mail_settings(env)
        config.mail_settings(env)
    assert first.smtp is None and first.outbox_dir == tmp_path / "unique-outbox"
    notes = [r.getMessage() for r in caplog.records if "SMTP_URL is not set" in r.getMessage()]
    assert len(notes) == 1 and str(tmp_path / "unique-outbox") in notes[0]
    with pytest.raises(ConfigurationError, match="MAIL_FROM"):
        config.mail_settings({"MAIL_FROM": "nobody"})
    with pytest.raises(ConfigurationError, match="SMTP_TIMEOUT"):
        config.mail_settings({"SMTP_TIMEOUT": "soon"})


def test_webhook_settings():
    settings = config.webhook_settings({"WEBHOOK_SIGNING_SECRET": SIGNING_SECRET,
                                        "WEBHOOK_ALLOWED_HOSTS": "hooks.internal,10.0.0.0/8"})
    assert settings.allow.allows_name("hooks.internal") and settings.timeout == 10.0
    assert SIGNING_SECRET not in repr(settings)
    for secret, problem in (("abc", "whsec_"), ("whsec_!!!", "not base64"), ("whsec_YWJj", "16 bytes")):
        with pytest.raises(ConfigurationError, match=problem):
            config.webhook_settings({"WEBHOOK_SIGNING_SECRET": secret})
    with pytest.raises(ConfigurationError, match="WEBHOOK_ALLOWED_HOSTS"):
        config.webhook_settings({"WEBHOOK_ALLOWED_HOSTS": "not a host!"})
    with pytest.raises(ConfigurationError, match="WEBHOOK_MAX_RESPONSE_BYTES"):
        config.webhook_settings({"WEBHOOK_MAX_RESPONSE_BYTES": "-1"})


def test_hook_secrets_per_source_with_rotation():
    settings = config.hook_settings({"HOOK_SECRETS": f" acme:{HOOK_SECRET}, billing:{OTHER_HOOK_SECRET},"
                                                     f"acme:{OTHER_HOOK_SECRET}"})
    assert settings.secrets == {"acme": (HOOK_SECRET, OTHER_HOOK_SECRET), "billing": (OTHER_HOOK_SECRET,)}
    assert settings.tenant == "default"
    for bad in ("acme", "ac me:" + HOOK_SECRET, "acme:secret"):
        with pytest.raises(ConfigurationError, match="HOOK_SECRETS"):
            config.hook_settings({"HOOK_SECRETS": bad})
    with pytest.raises(ConfigurationError, match="HOOK_TENANT"):
        config.hook_settings({"HOOK_TENANT": "a:b"})


def test_check_reports_the_first_bad_setting():
    config.check({})
    with pytest.raises(ConfigurationError, match="SMTP_URL"):
        config.check({"SMTP_URL": "mail.example.com"})


def test_retry_after_header_values():
    from datetime import datetime, timezone

    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("120", 3600, now) == 120.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", 3600, now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", 3600, now) == 0.0
    assert parse_retry_after("999999", 3600, now) == 3600.0
    assert parse_retry_after("soon", 3600, now) is None
    assert parse_retry_after("-5", 3600, now) is None
    assert parse_retry_after(None, 3600, now) is None
