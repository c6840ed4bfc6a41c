"""Session-wide real servers: a private redis-server, and RabbitMQ when reachable."""

from __future__ import annotations

import collections
import os
import socket
from urllib.parse import urlparse

import pytest
import redis

from service.embedded_redis import EmbeddedRedis
from tests.harness import CUSTOM_BACKENDS, ENGINE_LEGS, HOOKS_OVERRIDE

AMQP_URL = os.environ.get("CELERY_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
LEGS_RAN: collections.Counter = collections.Counter()


def amqp_reachable(url: str = AMQP_URL) -> str | None:
    """None if RabbitMQ answers an AMQP handshake at ``url``, else why not."""
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 5672), 2).close()
        from kombu import Connection

        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"{type(exc).__name__}: {exc}"
    return None


AMQP_LEGS = tuple(leg for leg in ENGINE_LEGS if leg.endswith("+amqp"))
ALL_LEGS = (*ENGINE_LEGS, "inline")


def selected_legs() -> list[str] | None:
    """The legs ``SWITCHYARD_LEGS`` names (comma-separated), or None when it is unset."""
    raw = os.environ.get("SWITCHYARD_LEGS", "")
    names = [name.strip() for name in raw.split(",") if name.strip()]
    if not names:
        return None
    known = (*ALL_LEGS, *CUSTOM_BACKENDS)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise pytest.UsageError(f"SWITCHYARD_LEGS names {', '.join(unknown)}: "
                                f"the legs are {', '.join(known)}")
    return names


def engine_legs() -> list[str]:
    """The engine legs to run: those ``SWITCHYARD_LEGS`` names, else every one that can."""
    selected = selected_legs()
    if selected is not None:
        legs = [leg for leg in (*ENGINE_LEGS, *CUSTOM_BACKENDS) if leg in selected]
        amqp = [leg for leg in legs if leg in AMQP_LEGS]
        if amqp and (why := amqp_reachable()) is not None:
            raise pytest.UsageError(f"SWITCHYARD_LEGS names {', '.join(amqp)} but RabbitMQ at "
                                    f"{AMQP_URL} is unreachable: {why}")
        return legs
    legs = [leg for leg in ENGINE_LEGS if leg not in AMQP_LEGS]
    why = amqp_reachable()
    if why is None:
        legs += AMQP_LEGS
    elif os.environ.get("REQUIRE_AMQP") == "1":
        raise pytest.UsageError(f"REQUIRE_AMQP=1 but RabbitMQ at {AMQP_URL} is unreachable: {why}")
    return legs + list(CUSTOM_BACKENDS)


def pytest_addoption(parser):
    group = parser.getgroup("switchyard")
    group.addoption("--engine", default=None, metavar="pkg.mod:Engine",
                    help="add the leg 'custom': every case on this adapters.Engine subclass, "
                         "Redis as its broker (SWITCHYARD_LEGS=custom runs it alone)")
    group.addoption("--engine-hooks", default=None, metavar="pkg.mod:Hooks",
                    help="the custom leg's conformance hooks (tests.conformance.hooks."
                         "EngineHooks subclass; default: found from the engine class)")


def inline_leg(config) -> list[str]:
    """``["inline"]`` unless ``SWITCHYARD_LEGS`` leaves it out: for the suites that run it."""
    return ["inline"] if config._switchyard_inline else []


def pytest_configure(config):
    CUSTOM_BACKENDS.clear()
    HOOKS_OVERRIDE.clear()
    if config.getoption("engine", None):
        from adapters import ConfigurationError, resolve_engine

        try:
            resolve_engine(config.getoption("engine"))
        except ConfigurationError as exc:
            raise pytest.UsageError(f"--engine: {exc}") from None
        CUSTOM_BACKENDS["custom"] = config.getoption("engine")
        if config.getoption("engine_hooks", None):
            HOOKS_OVERRIDE["custom"] = config.getoption("engine_hooks")
    config._switchyard_legs = engine_legs()
    selected = selected_legs()
    config._switchyard_inline = selected is None or "inline" in selected


def pytest_report_header(config):
    legs = config._switchyard_legs + inline_leg(config)
    if selected_legs() is not None:
        missing = " (chosen by SWITCHYARD_LEGS)"
    elif any(leg in AMQP_LEGS for leg in legs):
        missing = ""
    else:
        missing = f" ({', '.join(AMQP_LEGS)}: RabbitMQ unreachable at {AMQP_URL})"
    return f"switchyard engine legs: {', '.join(legs)}{missing}"


@pytest.fixture(scope="session")
def redis_server():
    """A private redis-server on a free loopback port for the whole session."""
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server):
    """The private server's URL, with a database emptied before and after the test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield redis_server.url
    client.flushdb()
    client.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    leg = getattr(item, "callspec", None) and item.callspec.params.get("leg")
    if leg:  # carried on the report, so a run spread over pytest-xdist workers counts it too
        report.user_properties.append(("leg", leg))


def pytest_runtest_logreport(report):
    if report.when == "call":
        for name, value in report.user_properties:
            if name == "leg":
                LEGS_RAN[(value, report.outcome)] += 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not LEGS_RAN:
        return
    terminalreporter.section("engine legs")
    for leg in sorted({leg for leg, _ in LEGS_RAN}):
        counts = ", ".join(f"{n} {outcome}" for (l, outcome), n in sorted(LEGS_RAN.items())
                           if l == leg)
        terminalreporter.write_line(f"{leg}: {counts}")
    if selected_legs() is not None:
        left_out = [leg for leg in (*ALL_LEGS, *CUSTOM_BACKENDS) if leg not in config._switchyard_legs + inline_leg(config)]
        if left_out:
            terminalreporter.write_line(f"{', '.join(left_out)}: not run (not in SWITCHYARD_LEGS)")
    elif not any(leg in AMQP_LEGS for leg in config._switchyard_legs):
        terminalreporter.write_line(f"{', '.join(AMQP_LEGS)}: not run (RabbitMQ unreachable at "
                                    f"{AMQP_URL}; REQUIRE_AMQP=1 makes that an error)")
