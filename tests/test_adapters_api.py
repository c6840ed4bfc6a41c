"""The adapters package's public surface, resolver, settings and capability guards."""

import ast
import time
import types
from pathlib import Path

import pytest

import adapters
from adapters import (
    AdapterSettings,
    Capability,
    ConfigurationError,
    InvalidJob,
    JobOptions,
    UnknownJobType,
    UnsupportedFeature,
    job,
)
from adapters.engine import Engine
from adapters.celery import CeleryEngine
from adapters.registry import parse_rate
from adapters.rq import RQEngine
import tests.conformance.jobs  # noqa: F401 - registers t.*

ADAPTERS_DIR = Path(adapters.__file__).parent


def test_public_surface_is_all_and_only_all():
    exported = {name for name in dir(adapters) if not name.startswith("_")
                and not isinstance(getattr(adapters, name), types.ModuleType)}
    assert set(adapters.__all__) == exported
    for name in adapters.__all__:
        assert getattr(adapters, name) is not None


def test_adapters_never_import_flask_or_service():
    for path in ADAPTERS_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                root = name.split(".")[0]
                assert root not in ("flask", "service"), f"{path.name} imports {name}"


def test_engine_glue_stays_inside_its_adapter():
    """Only adapters/celery.py and its seam with kombu, adapters/celery_seam.py, import
    celery/kombu; only adapters/rq.py and its glue, adapters/rq_glue.py and
    adapters/rq_queue.py, import rq or rq_scheduler."""
    allowed = {"celery": {"celery.py", "celery_seam.py"}, "kombu": {"celery.py", "celery_seam.py"}, "rq": {"rq.py", "rq_glue.py", "rq_queue.py"},
               "dramatiq": {"dramatiq.py", "dramatiq_wake.py"}, "pika": {"dramatiq.py"},
               "rq_scheduler": {"rq.py", "rq_glue.py", "rq_queue.py"}}
    for path in ADAPTERS_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                root = node.module.split(".")[0]
            elif isinstance(node, ast.Import):
                root = node.names[0].name.split(".")[0]
            else:
                continue
            if root in allowed:
                assert path.name in allowed[root], f"{path.name} imports {root}"


def test_both_engines_declare_every_capability():
    assert CeleryEngine.capabilities == frozenset(Capability)
    assert RQEngine.capabilities == frozenset(Capability)


def test_aliases_and_dotted_paths_resolve():
    assert adapters.resolve_engine("rq") is RQEngine
    assert adapters.resolve_engine("celery") is CeleryEngine
    assert adapters.resolve_engine("adapters.rq:RQEngine") is RQEngine
    assert adapters.resolve_engine("adapters.celery.CeleryEngine") is CeleryEngine


def test_unknown_alias_says_did_you_mean():
    with pytest.raises(ConfigurationError, match="did you mean 'celery'"):
        adapters.resolve_engine("celry")
    with pytest.raises(ConfigurationError, match="not an adapters.Engine"):
        adapters.resolve_engine("adapters.settings:AdapterSettings")


@pytest.mark.parametrize("env, message", [
    ({"REDIS_URL": "http://x"}, "REDIS_URL"),
    ({"CELERY_BROKER_URL": "sqs://x"}, "CELERY_BROKER_URL"),
    ({"SWITCHYARD_LEASE_SECONDS": "abc"}, "not a number"),
    ({"SWITCHYARD_LEASE_SECONDS": "1", "SWITCHYARD_WATCH_SECONDS": "0.6"}, "half"),
    ({"CELERY_VISIBILITY_TIMEOUT": "soon"}, "CELERY_VISIBILITY_TIMEOUT"),
])
def test_bad_settings_fail_with_one_clear_message(env, message):
    with pytest.raises(ConfigurationError, match=message):
        AdapterSettings.from_env(env)


def test_rate_limits_parse():
    assert parse_rate("5/s") == (5, 1.0)
    assert parse_rate("100/m") == (100, 60.0)
    assert parse_rate("10/2h") == (10, 7200.0)
    for bad in ("5", "0/s", "x/s", "5/fortnight"):
        with pytest.raises(ConfigurationError):
            parse_rate(bad)


def test_job_names_and_duplicates_are_checked():
    with pytest.raises(ConfigurationError):
        job("has space")(lambda ctx: None)
    with pytest.raises(ConfigurationError, match="already registered"):
        job("t.echo")(lambda ctx: None)


class _Bare(Engine):
    """An engine that declares nothing, to prove every guard speaks up."""

    name = "bare"
    capabilities = frozenset()

    def publish(self, deliveries, pipeline=None):
        raise AssertionError("a guarded call reached the engine")

    def run_worker(self, queues, concurrency=1, name=None):
        raise AssertionError("unused")


@pytest.fixture
def bare(redis_url):
    adapter = adapters.Switchyard(_Bare, AdapterSettings.from_env({"REDIS_URL": redis_url}))
    yield adapter
    adapter.close()


GUARDED = {
    Capability.DELAY: lambda a: a.enqueue("t.echo", {}, JobOptions(delay=5)),
    Capability.EXPIRY: lambda a: a.enqueue("t.echo", {}, JobOptions(expires_at=time.time() + 60)),
    Capability.RETRIES: lambda a: a.enqueue("t.flaky", {"fail_times": 1}),
    Capability.IDEMPOTENCY: lambda a: a.enqueue("t.echo", {}, JobOptions(idempotency_key="k")),
    Capability.QUEUES: lambda a: a.enqueue("t.echo", {}, JobOptions(queue="alpha")),
    Capability.PRIORITIES: lambda a: a.enqueue("t.echo", {}, JobOptions(priority="high")),
    Capability.RATE_LIMIT: lambda a: a.enqueue("t.rated", {"i": 1}),
    Capability.RETRY_FAILED: lambda a: a.retry("0" * 32),
    Capability.WORKFLOWS: lambda a: a.enqueue_workflow("chain", [("t.echo", {}, None)]),
    Capability.SCHEDULES: lambda a: a.schedules().create("acme", "s", "t.echo", every=5),
}


@pytest.mark.parametrize("capability", list(GUARDED), ids=lambda c: c.value)
def test_undeclared_capability_fails_with_a_clear_error(bare, capability):
    with pytest.raises(UnsupportedFeature, match=f"bare adapter does not support"):
        GUARDED[capability](bare)
    assert bare.redis.dbsize() == 0, "a refused enqueue left something behind"


def test_bad_job_input_is_refused_before_anything_is_written(bare):
    with pytest.raises(UnknownJobType):
        bare.enqueue("no.such.job", {})
    with pytest.raises(InvalidJob) as err:
        bare.enqueue("t.echo", {"x": object()})
    assert "payload.x" in err.value.errors
    with pytest.raises(InvalidJob):
        bare.enqueue("t.echo", {"x": float("nan")})
    with pytest.raises(InvalidJob) as err:
        bare.enqueue("t.echo", {}, JobOptions(timeout=-1))
    assert "options.timeout" in err.value.errors
    with pytest.raises(InvalidJob):
        bare.enqueue("t.echo", {}, JobOptions(queue="bad name!"))
    assert bare.redis.dbsize() == 0


def test_unreachable_broker_is_backend_unavailable_and_leaves_no_record(redis_url):
    from adapters import BackendUnavailable

    settings = AdapterSettings.from_env({"REDIS_URL": redis_url,
                                         "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//"})
    adapter = adapters.Switchyard(CeleryEngine, settings)
    try:
        with pytest.raises(BackendUnavailable):
            adapter.enqueue("t.echo", {}, JobOptions(idempotency_key="once"))
        assert not adapter.redis.keys("sy:job:*")
        assert not adapter.redis.keys("sy:idem:*")
        assert adapter.redis.zcard("sy:dispatching") == 0
    finally:
        adapter.close()


def test_unreachable_redis_is_backend_unavailable():
    from adapters import BackendUnavailable
    from service.embedded_redis import free_port

    settings = AdapterSettings.from_env({"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                                         "SWITCHYARD_REDIS_TIMEOUT": "0.5"})
    adapter = adapters.Switchyard(RQEngine, settings)
    with pytest.raises(BackendUnavailable):
        adapter.enqueue("t.echo", {})
    with pytest.raises(BackendUnavailable):
        adapter.get("x")


def test_jobs_due_together_are_released_high_first(redis_url):
    adapter = adapters.Switchyard(RQEngine, AdapterSettings.from_env({"REDIS_URL": redis_url}))
    try:
        run_at = time.time() + 60
        adapter.enqueue_many([("t.echo", {}, JobOptions(run_at=run_at, priority=p))
                              for p in ["low", "default", "high"] * 4])
        released = adapter.ledger.maintain(run_at + 1)  # as a worker will, a minute on
        assert [d.priority for d in released] == ["high"] * 4 + ["default"] * 4 + ["low"] * 4
    finally:
        adapter.close()


def test_no_user_queue_is_another_queues_priority_on_rq():
    adapter = adapters.Switchyard(RQEngine, AdapterSettings.from_env(
        {"REDIS_URL": "redis://127.0.0.1:9/0"}))
    names = {q: set(adapter.engine.worker_queue_names([q])) for q in
             ("default", "default.high", "default.low", "default-high")}
    assert all(a is b or not (names[a] & names[b]) for a in names for b in names)
