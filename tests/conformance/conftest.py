"""The conformance suite runs every case on every leg; a case skips only by capability."""

from __future__ import annotations

import pytest

from adapters import Capability
from tests.conftest import AMQP_URL, inline_leg
from tests.harness import Engine
import tests.conformance.jobs  # noqa: F401 - the cases enqueue these job types


def pytest_generate_tests(metafunc):
    if "leg" in metafunc.fixturenames:
        metafunc.parametrize("leg", metafunc.config._switchyard_legs + inline_leg(metafunc.config))


@pytest.fixture
def engine(leg, redis_url, tmp_path, monkeypatch):
    """The engine of this leg, on a clean database, with no worker yet."""
    monkeypatch.setenv("REDIS_URL", redis_url)  # the test jobs log to it, inline ones too
    eng = Engine(leg, redis_url, AMQP_URL, tmp_path)
    yield eng
    eng.close()


def needs(engine: Engine, *capabilities: Capability) -> None:
    """Skip unless the adapter declares every capability (never skip by engine name)."""
    missing = [c.value for c in capabilities if not engine.supports(c)]
    if missing:
        pytest.skip(f"{engine.adapter.name} does not declare {', '.join(missing)}")
