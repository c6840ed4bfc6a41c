"""Where the worker is one process that forks nothing, the maintenance loop is a thread
of it: under its supervisor (the launcher's small parent) the worker runs no second
process, the loop still releases delayed jobs and announces the worker, and SIGTERM
to the supervisor still stops the worker (exit 0) with the loop's wait in hand, taking
it off the live list."""

import psutil
import pytest

from adapters import JobOptions, JobState
from tests.harness import Engine, wait_until
import tests.conformance.jobs  # noqa: F401 - the job types enqueued here


@pytest.mark.parametrize("backend, args", [
    ("rq", ()),
    ("celery", ("--pool", "solo")),
    ("celery", ("--pool", "threads", "-c", "2")),
])
def test_one_process_runs_its_maintenance_as_a_thread(backend, args, redis_url, tmp_path,
                                                       monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    eng = Engine(backend, redis_url, None, tmp_path)
    try:
        # SWITCHYARD_IDLE_SECONDS long: the loop is asleep in its wait when SIGTERM comes
        worker = eng.start_worker(args=args, env={"SWITCHYARD_IDLE_SECONDS": "60"})
        [one] = psutil.Process(worker.proc.pid).children()
        assert "adapters.worker" in one.cmdline() and one.children(recursive=True) == []
        info = eng.adapter.enqueue("t.echo", {"tag": "later"}, JobOptions(delay=0.5))
        assert eng.wait_for(info.id, timeout=30).state is JobState.SUCCEEDED
        assert worker.stop(timeout=15) == 0, worker.log()
        assert not any(w.get("pid") == str(worker.proc.pid)
                       for w in eng.adapter.ledger.workers(ttl=30))
    finally:
        eng.close()


def test_a_prefork_worker_runs_its_maintenance_in_its_first_pool_child(redis_url, tmp_path,
                                                                        monkeypatch):
    """Celery's prefork pool: no process beside the pool's children (the loop is a thread
    of the first), delayed jobs are still released, a first child that dies is replaced
    with its loop, and the worker leaves the live list when it stops."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    eng = Engine("celery", redis_url, None, tmp_path)
    try:
        worker = eng.start_worker(concurrency=2)
        main = psutil.Process(worker.proc.pid)
        children = wait_until(lambda: len(main.children()) == 2 and main.children(), 30,
                              message="the pool's two children")
        assert all(c.children() == [] for c in children)
        info = eng.adapter.enqueue("t.echo", {"tag": "later"}, JobOptions(delay=0.5))
        assert eng.wait_for(info.id, timeout=30).state is JobState.SUCCEEDED
        for child in children:  # the pool replaces both, the first with its loop
            child.kill()
        wait_until(lambda: len(main.children()) == 2
                   and not {c.pid for c in main.children()} & {c.pid for c in children}, 30,
                   message="the pool to replace its children")
        later = eng.adapter.enqueue("t.echo", {"tag": "after"}, JobOptions(delay=0.5))
        assert eng.wait_for(later.id, timeout=30).state is JobState.SUCCEEDED
        assert len(main.children()) == 2
        assert worker.stop(timeout=20) == 0, worker.log()
        assert not any(w.get("pid") == str(worker.proc.pid)
                       for w in eng.adapter.ledger.workers(ttl=30))
    finally:
        eng.close()
