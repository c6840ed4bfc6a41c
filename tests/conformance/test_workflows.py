"""Workflows: chain, group and chord, with failure and cancel paths; no chord hangs."""

from adapters import Capability, JobOptions, JobState, WorkflowState
from tests.conformance.conftest import needs
from tests.harness import never_started, wait_until


def _wait_workflow(engine, workflow_id, timeout=30.0):
    def ended():
        info = engine.adapter.get_workflow(workflow_id)
        return info if info.state is not WorkflowState.RUNNING and all(
            j.state.ended for j in info.jobs) else None
    return wait_until(ended, timeout, 0.05, f"workflow {workflow_id} to end")


def test_chain_runs_in_order_passing_results(engine):
    needs(engine, Capability.WORKFLOWS)
    engine.start_worker(concurrency=2)
    wf = engine.adapter.enqueue_workflow("chain", [("t.add", {"n": 1}, None),
                                                   ("t.add", {"n": 2}, None),
                                                   ("t.add", {"n": 3}, None)], tenant="acme")
    assert wf.kind == "chain" and len(wf.jobs) == 3
    done = _wait_workflow(engine, wf.id)
    assert done.state is WorkflowState.SUCCEEDED
    assert [j.result for j in done.jobs] == [1, 3, 6]
    for before, after in zip(done.jobs, done.jobs[1:]):
        assert after.started_at >= before.finished_at
    assert all(j.links == {"workflow": wf.id} for j in done.jobs)
    assert engine.adapter.get_workflow(wf.id, tenant="acme").id == wf.id


def test_chain_failure_cancels_the_rest(engine):
    needs(engine, Capability.WORKFLOWS)
    engine.start_worker()
    wf = engine.adapter.enqueue_workflow("chain", [("t.add", {"n": 1}, None),
                                                   ("t.boom", {}, None),
                                                   ("t.add", {"n": 5}, None)])
    done = _wait_workflow(engine, wf.id)
    assert done.state is WorkflowState.FAILED
    first, failed, rest = done.jobs
    assert first.state is JobState.SUCCEEDED and failed.state is JobState.FAILED
    assert rest.state is JobState.CANCELED and rest.cancel_reason == "upstream_failed"
    assert never_started(rest)


def test_group_succeeds_when_all_do_and_fails_when_one_fails(engine):
    needs(engine, Capability.WORKFLOWS)
    engine.start_worker(concurrency=2)
    ok = engine.adapter.enqueue_workflow("group", [("t.add", {"n": i}, None) for i in range(4)])
    bad = engine.adapter.enqueue_workflow("group", [("t.add", {"n": 1}, None),
                                                    ("t.boom", {}, None),
                                                    ("t.add", {"n": 2}, None)])
    done = _wait_workflow(engine, ok.id)
    assert done.state is WorkflowState.SUCCEEDED
    assert sorted(j.result for j in done.jobs) == [0, 1, 2, 3]
    failed = _wait_workflow(engine, bad.id)
    assert failed.state is WorkflowState.FAILED
    assert [j.state for j in failed.jobs] == [JobState.SUCCEEDED, JobState.FAILED,
                                              JobState.SUCCEEDED]


def test_chord_body_runs_once_after_every_header_job_with_results_in_order(engine):
    needs(engine, Capability.WORKFLOWS, Capability.RETRIES)
    engine.start_worker(concurrency=2)
    wf = engine.adapter.enqueue_workflow(
        "chord", [("t.add", {"n": 10}, None), ("t.flaky", {"fail_times": 1}, None),
                  ("t.add", {"n": 30}, None)],
        body=("t.collect", {}, None))
    done = _wait_workflow(engine, wf.id)
    assert done.state is WorkflowState.SUCCEEDED
    *header, body = done.jobs
    assert body.result == {"upstream": [10, 2, 30], "workflow": wf.id}
    assert body.started_at >= max(h.finished_at for h in header)
    assert engine.redis.llen(f"test:runs:{body.id}") == 1


def test_chord_with_a_failed_header_job_cancels_its_body_instead_of_hanging(engine):
    needs(engine, Capability.WORKFLOWS)
    engine.start_worker(concurrency=2)
    wf = engine.adapter.enqueue_workflow(
        "chord", [("t.add", {"n": 1}, None), ("t.boom", {}, None)], body=("t.collect", {}, None))
    done = _wait_workflow(engine, wf.id)
    assert done.state is WorkflowState.FAILED
    body = done.jobs[-1]
    assert body.state is JobState.CANCELED and body.cancel_reason == "upstream_failed"
    assert never_started(body)


def test_cancel_workflow_cancels_every_job_not_yet_ended(engine):
    needs(engine, Capability.WORKFLOWS, Capability.CANCEL_RUNNING)
    engine.start_worker()
    wf = engine.adapter.enqueue_workflow("chain", [("t.sleep", {"seconds": 30, "key": "test:slept"}, None),
                                                   ("t.add", {"n": 1}, None),
                                                   ("t.add", {"n": 2}, None)])
    engine.wait_for(wf.jobs[0].id, states={JobState.STARTED})
    engine.adapter.cancel_workflow(wf.id)
    done = _wait_workflow(engine, wf.id, timeout=15)
    assert done.state is WorkflowState.CANCELED
    assert all(j.state is JobState.CANCELED for j in done.jobs)
    assert all(never_started(j) for j in done.jobs[1:])
    assert not engine.redis.exists("test:slept")


def test_a_waiting_jobs_delay_is_the_earliest_it_starts_once_released(engine):
    needs(engine, Capability.WORKFLOWS, Capability.DELAY)
    engine.start_worker()
    wf = engine.adapter.enqueue_workflow("chain", [("t.add", {"n": 1}, None),
                                                   ("t.add", {"n": 2}, JobOptions(delay=1.5))])
    waiting = wf.jobs[1]
    assert waiting.state is JobState.SCHEDULED and waiting.run_at is not None
    done = _wait_workflow(engine, wf.id)
    assert done.state is WorkflowState.SUCCEEDED and [j.result for j in done.jobs] == [1, 3]
    assert done.jobs[1].started_at >= waiting.run_at
