"""The fault suite: the Procfile stack on every engine leg, with faults injected.

Each case records its figures (jobs accepted, succeeded, lost, run twice, stuck, time
to recover, what each process did); with ``RELIABILITY_REPORT=path`` (``make chaos``)
the session writes them to that file as a table, straight from the run.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import time
from pathlib import Path

import pytest
import redis

from adapters import AdapterSettings, create_adapter
from tests.conftest import AMQP_URL
from tests.reliability.stack import PrivateRedis

FIGURES: list["Figures"] = []


@dataclasses.dataclass
class Figures:
    """What one fault did to one leg, as users would count it."""

    leg: str
    fault: str
    accepted: int = 0
    succeeded: int = 0
    failed_as_designed: int = 0
    lost: int = 0
    run_twice: int = 0
    run_after_success: int = 0
    stuck: int = 0
    recovered_in: float | None = None
    processes: list[str] = dataclasses.field(default_factory=list)
    passed: bool = False


def pytest_generate_tests(metafunc):
    if "leg" in metafunc.fixturenames:
        legs = metafunc.config._switchyard_legs
        if metafunc.function.__name__ == "test_broker_restarted":
            legs = [leg for leg in legs if leg.endswith("+amqp")]  # a broker apart from Redis
        metafunc.parametrize("leg", legs)


@pytest.fixture
def ledger_redis():
    """A Redis of this test's own, AOF on, that the test may stop and start."""
    server = PrivateRedis().start()
    yield server
    server.close()


@pytest.fixture
def observer(ledger_redis):
    """Reads the ledger (never through the stack under test)."""
    settings = AdapterSettings.from_env({"REDIS_URL": ledger_redis.url})
    adapter = create_adapter("inline", settings)
    client = redis.Redis.from_url(ledger_redis.url, decode_responses=True)
    yield Observer(adapter, client)
    adapter.close()
    client.close()


@dataclasses.dataclass
class Observer:
    adapter: object
    r: redis.Redis

    def tally(self, figures: Figures, ids: list[str], expected: dict[str, str] | None = None):
        """Count what became of ``ids`` (``expected``: id -> the final state it must reach
        when that is not ``succeeded``)."""
        expected = expected or {}
        records = self.adapter.ledger.load_many(ids)
        figures.accepted = len(ids)
        figures.succeeded = figures.lost = figures.stuck = 0
        figures.run_twice = figures.run_after_success = figures.failed_as_designed = 0
        for job_id, rec in zip(ids, records):
            if not rec:
                figures.lost += 1
                continue
            state = rec["state"]
            starts = [float(t) for t in self.r.lrange(f"chaos:starts:{job_id}", 0, -1)]
            if state == "succeeded":
                figures.succeeded += 1
                if any(t > float(rec["finished_at"]) for t in starts):
                    figures.run_after_success += 1
            elif state == expected.get(job_id):
                figures.failed_as_designed += 1
            elif state not in ("failed", "canceled"):
                figures.stuck += 1
            if state == "succeeded" and len(starts) > 1:
                figures.run_twice += 1
        return figures

    def all_ended(self, ids: list[str]) -> bool:
        return all(rec and rec["state"] in ("succeeded", "failed", "canceled")
                   for rec in self.adapter.ledger.load_many(ids))


@pytest.fixture
def figures(request, leg):
    """This case's figures; recorded whether it passes or not."""
    fault = request.node.originalname.removeprefix("test_").replace("_", " ")
    params = getattr(request.node, "callspec", None)
    how = params.params.get("how") if params else None
    if how:
        fault += f" ({how})"
    record = Figures(leg=leg, fault=fault)
    yield record
    FIGURES.append(record)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and "figures" in item.funcargs:
        item.funcargs["figures"].passed = report.passed


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("RELIABILITY_REPORT")
    if not path or not FIGURES:
        return
    Path(path).write_text(render(FIGURES, session.config._switchyard_legs))


def render(figures: list[Figures], legs: list[str]) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Reliability",
        "",
        f"Written by `make chaos` on {now} ({platform.node()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}); every figure is counted by "
        "`tests/reliability/` in this run, none is typed in. Legs: " + ", ".join(legs) +
        (f" (RabbitMQ: {AMQP_URL.split('@')[-1]})" if any("amqp" in leg for leg in legs) else "")
        + ".",
        "",
        "Each case starts the Procfile's `web`, `worker` and `scheduler` with the Procfile's "
        "own commands, each in a directory of its own with only the settings the README "
        "names (`REDIS_URL`, `QUEUE_BACKEND`, `CELERY_BROKER_URL`, `API_KEYS`, `JOB_MODULES`, "
        "`PORT`, and `SWITCHYARD_LEASE_SECONDS=5`), against a Redis of its own with AOF on; "
        "they share nothing else. Jobs are sent with `POST /v1/jobs` and counted from the "
        "ledger and from what each job logged when it ran.",
        "",
        "- **accepted**: answered 202; **succeeded**; **as designed**: jobs that must fail "
        "(a job that exits) and did, no more often than their policy says;",
        "- **lost**: accepted but gone; **run twice**: succeeded jobs that ran more than once "
        "(each a delivery cut short by the fault); **after success**: runs that started after "
        "the job had succeeded; **stuck**: not ended by the deadline;",
        "- **recovered in**: seconds from the end of the fault until every job had ended "
        "(or, for an outage, until the first job enqueued afterwards succeeded).",
        "",
        "| leg | fault | accepted | succeeded | as designed | lost | run twice | after success "
        "| stuck | recovered in | result |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in sorted(figures, key=lambda f: (f.leg, f.fault)):
        recovered = "" if f.recovered_in is None else f"{f.recovered_in:.1f} s"
        lines.append(f"| {f.leg} | {f.fault} | {f.accepted} | {f.succeeded} | "
                     f"{f.failed_as_designed} | {f.lost} | {f.run_twice} | {f.run_after_success} "
                     f"| {f.stuck} | {recovered} | {'pass' if f.passed else '**FAIL**'} |")
    lines += ["", "## What each process did", ""]
    for f in sorted(figures, key=lambda f: (f.leg, f.fault)):
        lines.append(f"- {f.leg}, {f.fault}: " + "; ".join(f.processes))
    return "\n".join(lines) + "\n"
