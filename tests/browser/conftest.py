"""The browser tests' stack: the Procfile's web command (gunicorn), a real worker and
scheduler of one engine leg, and Debian's Chromium driven by Playwright.

A machine without Chromium or Playwright skips these tests with the reason, unless
``REQUIRE_BROWSER=1`` (CI), which makes that an error. Playwright's own browser
downloads are never used: the browser is the system's ``chromium``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from adapters import load_job_modules
from service.embedded_redis import free_port
from tests.api.conftest import API_KEYS, JOB_MODULES, gunicorn_argv, wait_answering
from tests.harness import ROOT, Engine
from tests.conftest import AMQP_URL
from tests.processes import Process

OPERATOR_KEY = "operator-key-0123456789abcdef"
KEYS = f"{API_KEYS},*:{OPERATOR_KEY}"
SCREENSHOTS = ROOT / "var" / "screenshots"


def chromium_path() -> str | None:
    """``CHROMIUM`` if set, else the ``chromium`` on PATH (Debian's package)."""
    given = os.environ.get("CHROMIUM")
    if given:
        return given if os.access(given, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[test]')"
    if chromium_path() is None:
        return "no Chromium on PATH (apt-get install chromium)"
    return None


def pytest_generate_tests(metafunc):
    if "browser_leg" in metafunc.fixturenames:
        metafunc.parametrize("browser_leg", metafunc.config._switchyard_legs, scope="module")


@pytest.fixture(scope="session")
def browser():
    why = browser_missing()
    if why is not None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but the browser tests cannot run: {why}",
                        pytrace=False)
        print(f"\nbrowser tests skipped: {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path())
        yield browser
        browser.close()


class Stack:
    """gunicorn + worker + scheduler on one leg, and the adapter they share."""

    def __init__(self, leg: str, redis_url: str, log_dir: Path):
        self.redis_url = redis_url
        _flush(redis_url)
        load_job_modules(JOB_MODULES)  # this process enqueues them too
        self.engine = Engine(leg, redis_url, AMQP_URL, log_dir, job_modules=JOB_MODULES)
        self.adapter = self.engine.adapter
        self.engine.start_worker(queues=("default", "slow"), concurrency=2)
        self.engine.start_scheduler()
        port = free_port()
        env = {**self.engine.env(), "API_KEYS": KEYS, "QUEUE_BACKEND": self.engine.backend,
               "RATE_LIMIT": "6000/minute"}
        self.web = Process(gunicorn_argv(port), env, log_dir / f"web-{leg}.log")
        self.url = f"http://127.0.0.1:{port}"
        wait_answering(self.web, port)

    def close(self):
        self.web.stop()
        self.engine.close()
        _flush(self.redis_url)


def _flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def stack(browser, browser_leg, redis_server, tmp_path_factory):
    """One stack per leg for the module (its own key prefix: no flush needed)."""
    stack = Stack(browser_leg, redis_server.url, tmp_path_factory.mktemp("browser"))
    yield stack
    stack.close()


@pytest.fixture
def page(browser, stack):
    """A fresh browser context (no cookies) at 1280x800."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    context.close()


def sign_in(page, base: str, key: str) -> None:
    page.goto(f"{base}/")
    page.fill("input[name=api_key]", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
