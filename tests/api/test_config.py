"""Settings are validated once at start-up; a bad one stops the process with one clear line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from adapters import ConfigurationError
from service.config import DEFAULT_RATE_LIMIT, Settings
from tests.api.conftest import gunicorn_argv, service_env
from tests.harness import ROOT
from service.embedded_redis import free_port


@pytest.mark.parametrize("env, message", [
    ({"QUEUE_BACKEND": "celry"}, "unknown queue backend 'celry'; did you mean 'celery'?"),
    ({"REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL='http://127.0.0.1:6379' is not a redis://"),
    ({"REDIS_URL": "redis://127.0.0.1:port/0"}, "has a port that is not a number"),
    ({"REDIS_URL": "redis://127.0.0.1:6379/zero"}, "the database after the '/' must be a number"),
    ({"API_KEYS": "just-a-key-without-tenant"}, "API_KEYS entry 1 is not 'tenant:key'"),
    ({"API_KEYS": "acme:short"}, "API_KEYS entry 1 (tenant 'acme'): the key must be 8-256"),
    ({"API_KEYS": "a:same-key-123,b:same-key-123"}, "the same key is given to tenants 'a' and 'b'"),
    ({"RATE_LIMIT": "lots"}, "RATE_LIMIT='lots' is not like"),
    ({"MAX_CONTENT_LENGTH": "1MB"}, "MAX_CONTENT_LENGTH='1MB' is not a whole number"),
    # the jobs' settings and every engine setting are part of the one check
    ({"SMTP_URL": "mail.example.com"}, "SMTP_URL='mail.example.com' is not a smtp:// or smtps://"),
    ({"HOOK_SECRETS": "acme"}, "HOOK_SECRETS must be 'source:whsec_..."),
    ({"WEBHOOK_TIMEOUT": "never"}, "WEBHOOK_TIMEOUT='never' is not a number"),
    ({"SMTP_RETRY_BACKOFF": "0"}, "SMTP_RETRY_BACKOFF='0' must be between 0.01 and 86400"),
    ({"SWITCHYARD_SCHEDULER_POLL": "often"}, "SWITCHYARD_SCHEDULER_POLL='often' is not a number"),
])
def test_bad_settings_are_refused_with_a_clear_message(env, message):
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_defaults():
    settings = Settings.from_env({})
    assert settings.backend == "rq"
    assert settings.rate_limit == DEFAULT_RATE_LIMIT
    assert settings.max_content_length == 1024 * 1024
    assert settings.job_modules == "service.jobs"
    assert settings.api_keys == ()


def test_api_keys_are_kept_as_digests_only():
    settings = Settings.from_env({"API_KEYS": " acme:k-0123456789 , globex:k-9876543210 ,"})
    assert [k.tenant for k in settings.api_keys] == ["acme", "globex"]
    assert all("k-0123456789" not in repr(k) for k in settings.api_keys)


def _last_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "switchyard:" in line]


_BAD_API_KEYS = ({"API_KEYS": "acme"}, "API_KEYS entry 1 is not 'tenant:key' (tenant: 1-64 "
                                        "letters, digits, '_', '-' or '.'; '*' for an operator; '+read' "
                                        "after it for a read-only key)")


@pytest.mark.parametrize("command, env, line", [
    ("worker", *_BAD_API_KEYS),
    ("scheduler", *_BAD_API_KEYS),
    # a job setting stops them too, whatever JOB_MODULES loads, and never shows a password
    ("worker", {"JOB_MODULES": "tests.api.jobs", "SMTP_URL": "smtp://u:s3cret@h:x"},
     "SMTP_URL='smtp://u:***@h:x' cannot be parsed: it has a port that is not a number"),
])
def test_flask_commands_stop_with_one_line_on_bad_config(redis_url, command, env, line):
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", command], cwd=ROOT,
                          env=service_env(redis_url, **env), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 3
    assert _last_lines(done.stderr) == [f"switchyard: configuration error: {line}"]
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr


def test_gunicorn_stops_instead_of_respawning_on_bad_config(redis_url):
    env = service_env(redis_url, QUEUE_BACKEND="rqq")
    done = subprocess.run(gunicorn_argv(free_port()), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert _last_lines(done.stderr) == [
        "switchyard: configuration error: unknown queue backend 'rqq'; did you mean 'rq'? "
        "(choose one of celery, dramatiq, inline, rq or give a dotted path)"]
    assert "Traceback" not in done.stderr


def test_the_app_checks_the_job_settings_whatever_job_modules_it_loads(redis_url):
    from service import create_app

    with pytest.raises(ConfigurationError, match="HOOK_TENANT"):
        create_app({"REDIS_URL": redis_url, "JOB_MODULES": "tests.api.jobs",
                    "HOOK_TENANT": "not a tenant"})


def test_reading_the_settings_logs_nothing_the_start_up_check_says_where_mail_goes(caplog, tmp_path):
    from service import config

    env = {"OUTBOX_DIR": str(tmp_path / "check-outbox")}
    with caplog.at_level("INFO", logger="switchyard.jobs"):
        Settings.from_env(env)
        assert not [r for r in caplog.records if "SMTP_URL is not set" in r.getMessage()]
        assert config.check(env).mail.outbox_dir == tmp_path / "check-outbox"
    assert [r for r in caplog.records if "SMTP_URL is not set" in r.getMessage()]
