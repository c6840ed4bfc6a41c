"""Fixtures of the API tests: an app on the session's Redis, keys of two tenants, engines."""

from __future__ import annotations

import os
import sys

import pytest

from adapters import ALIASES, resolve_engine
from service import create_app
from service.embedded_redis import free_port
from tests.conftest import AMQP_URL
from tests.harness import ROOT, Engine, wait_until
from tests.processes import Process

JOB_MODULES = "service.jobs,tests.api.jobs"
ACME_KEY = "acme-key-0123456789abcdef"
GLOBEX_KEY = "globex-key-0123456789abcdef"
API_KEYS = f"acme:{ACME_KEY},globex:{GLOBEX_KEY}"
ACME = {"Authorization": f"Bearer {ACME_KEY}"}
GLOBEX = {"Authorization": f"Bearer {GLOBEX_KEY}"}


def app_config(env: dict[str, str], **overrides) -> dict:
    """A test_config for create_app from an engine's environment."""
    brokers = tuple(cls.broker_variable for cls in map(resolve_engine, ALIASES)
                    if cls.broker_variable)  # each engine's own broker variable
    keys = ("REDIS_URL", "JOB_MODULES", *brokers) + tuple(
        k for k in env if k.startswith("SWITCHYARD_"))
    config = {k: env[k] for k in keys if k in env}
    config.update({"API_KEYS": API_KEYS, "JOB_MODULES": JOB_MODULES, "TESTING": True})
    config.update(overrides)
    return config


@pytest.fixture(autouse=True)
def no_dns_for_webhook_urls():
    """Should a webhook.deliver be sent from this process, answer every name with loopback
    (which the SSRF guard refuses) so no test asks a real resolver."""
    from service.jobs import webhooks

    webhooks.set_resolver(lambda host, port: ["127.0.0.1"])
    yield
    webhooks.set_resolver(None)


@pytest.fixture
def make_app(redis_url, monkeypatch):
    """``make_app(**overrides)``: an app on a clean database (rq unless QUEUE_BACKEND says)."""
    monkeypatch.setenv("REDIS_URL", redis_url)  # the test jobs log to it
    apps = []

    def make(**overrides):
        config = {"REDIS_URL": redis_url, "API_KEYS": API_KEYS, "JOB_MODULES": JOB_MODULES,
                  "QUEUE_BACKEND": "rq", "TESTING": True, **overrides}
        app = create_app(config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["switchyard"].adapter.close()


@pytest.fixture
def client(make_app):
    """A test client of an rq app with no worker: jobs stay queued."""
    return make_app().test_client()


def pytest_generate_tests(metafunc):
    if "api_leg" in metafunc.fixturenames:
        metafunc.parametrize("api_leg", metafunc.config._switchyard_legs)


@pytest.fixture
def api_engine(api_leg, redis_url, tmp_path, monkeypatch):
    """A real engine of this leg whose workers load the service's job modules."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    engine = Engine(api_leg, redis_url, AMQP_URL, tmp_path, job_modules=JOB_MODULES)
    yield engine
    engine.close()


@pytest.fixture
def engine_client(api_engine):
    """A test client of an app on the same engine, prefix and broker as ``api_engine``."""
    env = api_engine.env()
    app = create_app(app_config(env, QUEUE_BACKEND=api_engine.backend))
    yield app.test_client()
    app.extensions["switchyard"].adapter.close()


def service_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a service subprocess on ``redis_url``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SWITCHYARD_", "CELERY_", "QUEUE_", "API_KEYS", "RATE_LIMIT"))}
    env.update({"REDIS_URL": redis_url, "API_KEYS": API_KEYS, "JOB_MODULES": JOB_MODULES,
                "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
                "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]})
    env.update(extra)
    return env


def gunicorn_argv(port: int, workers: int = 1) -> list[str]:
    """The Procfile's web command, on a loopback port of the test's own."""
    argv = [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers)]
    from gunicorn.config import KNOWN_SETTINGS

    if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS):
        argv.append("--no-control-socket")  # several gunicorns may run on this machine
    return argv


def wait_answering(server: Process, port: int, timeout: float = 30) -> None:
    """Until the gunicorn ``server`` on ``port`` answers ``/healthz`` (it must stay alive)."""
    import http.client

    def answers():
        server.assert_alive("gunicorn")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False
    wait_until(answers, timeout, 0.1, "gunicorn to answer")


@pytest.fixture
def gunicorn(redis_url, tmp_path):
    """``gunicorn(**env) -> base URL``: the web process, ready to answer."""
    servers = []

    def start(**extra):
        port = free_port()
        server = Process(gunicorn_argv(port), service_env(redis_url, **extra),
                         tmp_path / f"gunicorn-{port}.log")
        servers.append(server)
        wait_answering(server, port)
        return port

    yield start
    for server in servers:
        server.stop()
