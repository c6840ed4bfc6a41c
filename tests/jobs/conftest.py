"""The job tests run on every engine leg, each leg with real workers for the whole session.

Starting workers costs seconds, so each leg starts its workers once and every test
uses its own tenant, addresses and URL paths; the leg's Redis database is emptied
before and after. Three workers per leg differ only in their mail settings:

    queue default   SMTP over STARTTLS with AUTH (the aiosmtpd server on loopback)
    queue smtps     SMTP over implicit TLS with AUTH
    queue outbox    no SMTP_URL: mail goes to OUTBOX_DIR
"""

from __future__ import annotations

import dataclasses
import ssl
import uuid
from pathlib import Path

import pytest
import redis
import trustme

import service.jobs.email  # noqa: F401 - the tests enqueue these job types
import service.jobs.reports  # noqa: F401
import service.jobs.webhooks  # noqa: F401
import tests.jobs.support  # noqa: F401 - the scripted resolver and the "acme" hook handler
from tests.conftest import AMQP_URL
from tests.harness import Engine, WorkerProcess
from tests.jobs.servers import Receiver, SmtpServer

JOB_MODULES = "service.jobs.email,service.jobs.reports,service.jobs.webhooks,tests.jobs.support"
SIGNING_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 24 bytes, test only
HOOK_SECRET = "whsec_" + "c2VjcmV0LWZvci10aGUtYWNtZS1ob29rcw=="
OTHER_HOOK_SECRET = "whsec_" + "YW5vdGhlci1zb3VyY2VzLXNlY3JldC1rZXk="
MAIL_DOMAIN = "switchyard.test"
JOBS_DB = 5


def pytest_generate_tests(metafunc):
    if "leg" in metafunc.fixturenames:
        # session scope: each leg's workers start once and serve all of its tests
        metafunc.parametrize("leg", metafunc.config._switchyard_legs, scope="session")


@dataclasses.dataclass
class TestCA:
    """A throw-away certificate authority; workers trust it through SSL_CERT_FILE."""

    ca: trustme.CA
    ca_file: Path

    def server_context(self, *names: str) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*names).configure_cert(ctx)
        return ctx


@pytest.fixture(scope="session")
def tls(tmp_path_factory) -> TestCA:
    ca = trustme.CA()
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return TestCA(ca, ca_file)


@pytest.fixture(scope="session")
def smtp(tls):
    """The STARTTLS + AUTH server."""
    server = SmtpServer(tls.server_context("127.0.0.1", "localhost")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def smtps(tls):
    """The implicit-TLS + AUTH server."""
    server = SmtpServer(tls.server_context("127.0.0.1", "localhost"), implicit_tls=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def secure_receiver(tls):
    """An HTTPS receiver on 127.0.0.1 whose certificate names only *.rebind.test."""
    server = Receiver("127.0.0.1", tls=tls.server_context("*.rebind.test")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def receiver():
    """The webhook receiver on 127.0.0.1 (allowed by WEBHOOK_ALLOWED_HOSTS)."""
    server = Receiver("127.0.0.1").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def canary():
    """A receiver on 127.0.0.2, which no webhook may ever reach."""
    server = Receiver("127.0.0.2").start()
    yield server
    server.stop()


@dataclasses.dataclass
class Jobs:
    """One leg with its workers, and where its jobs leave their traces."""

    engine: Engine
    workers: dict[str, WorkerProcess]
    outbox: Path
    storage: Path
    env: dict[str, str]

    @property
    def adapter(self):
        return self.engine.adapter

    def tenant(self) -> str:
        return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def jobs(leg, redis_server, tmp_path_factory, tls, smtp, smtps, receiver, canary):
    """The leg's engine with three workers (see the module docstring)."""
    base = tmp_path_factory.mktemp(f"jobs-{leg.replace('+', '-')}")
    redis_url = redis_server.url.rsplit("/", 1)[0] + f"/{JOBS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    env = {
        "SMTP_URL": smtp.url(),
        "SSL_CERT_FILE": str(tls.ca_file),
        "MAIL_FROM": f"Switchyard Tests <noreply@{MAIL_DOMAIN}>",
        "SMTP_TIMEOUT": "10",
        "SMTP_RETRY_BACKOFF": "0.2",
        "OUTBOX_DIR": str(base / "outbox"),
        "STORAGE_DIR": str(base / "storage"),
        "WEBHOOK_SIGNING_SECRET": SIGNING_SECRET,
        "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "WEBHOOK_TIMEOUT": "3",
        "WEBHOOK_MAX_RESPONSE_BYTES": "2048",
        "WEBHOOK_RETRY_BACKOFF": "0.2",
        "HOOK_RETRY_BACKOFF": "0.2",
    }
    engine = Engine(leg, redis_url, AMQP_URL, base, job_modules=JOB_MODULES, extra_env=env)
    # The test process enqueues and validates too: same settings, same Redis.
    patch = pytest.MonkeyPatch()
    for key, value in engine.env().items():
        if key in env or key in ("REDIS_URL", "JOB_MODULES") or key.startswith("SWITCHYARD_"):
            patch.setenv(key, value)
    workers = {
        "default": engine.start_worker(["default"], wait=False),
        "smtps": engine.start_worker(["smtps"], wait=False, env={"SMTP_URL": smtps.url()}),
        "outbox": engine.start_worker(["outbox"], wait=False, env={"SMTP_URL": None}),
    }
    try:
        for worker in workers.values():
            worker.wait_ready(60)
        yield Jobs(engine, workers, base / "outbox", base / "storage", env)
    finally:
        engine.close()
        patch.undo()
        redis.Redis.from_url(redis_url).flushdb()
