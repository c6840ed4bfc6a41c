"""A worker's log names each job twice, whatever the engine and its settings: once as it
starts (``job <id> (<type>) attempt <n> started``) and once as it ends (``job <id>
succeeded in <s>s``). The engines' own INFO lines of the same job (Celery's "Task
switchyard.run[...] received" and "succeeded in", RQ's "<queue>: <description> (<id>)"
and "Job OK") are not written: they told the same by the engine's ids (and dropping them
made an in-process Celery solo worker of no-op jobs some 7% faster)."""

from __future__ import annotations

import re

import pytest

from adapters import JobState
from tests.harness import Engine
import tests.conformance.jobs  # noqa: F401 - the job types enqueued here


@pytest.mark.parametrize("backend, concurrency, args", [
    ("rq", 1, ()),
    ("rq", 2, ()),
    ("rq", 1, ("--worker-class", "fork")),
    ("celery", 1, ("--pool", "solo")),
    ("celery", 2, ()),
    ("celery", 2, ("--pool", "threads")),
    ("dramatiq+redis", 1, ()),
], ids=["rq", "rq-pool", "rq-fork", "celery-solo", "celery-prefork", "celery-threads",
        "dramatiq"])
def test_each_job_is_logged_as_it_starts_and_as_it_ends(backend, concurrency, args, redis_url,
                                                         tmp_path, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    eng = Engine(backend, redis_url, None, tmp_path)
    try:
        worker = eng.start_worker(concurrency=concurrency, args=args)
        jobs = [eng.adapter.enqueue("t.echo", {"n": n}) for n in range(3)]
        for job in jobs:
            assert eng.wait_for(job.id).state is JobState.SUCCEEDED
        assert worker.stop() == 0
        log = worker.log()
        for job in jobs:
            lines = [line for line in log.splitlines() if job.id in line]
            assert len(lines) == 2, "\n".join(lines)
            assert re.search(rf"job {job.id} \(t\.echo\) attempt 1 started$", lines[0]), lines
            assert re.search(rf"job {job.id} succeeded in \d+\.\d+s$", lines[1]), lines
        # nor by another id: no line of the engine's own for a job that ran
        assert not re.search(r"Task switchyard\.run\[|: Job OK \(", log), log
    finally:
        eng.close()
