"""The bench's subjects enqueue where their workers read: every job a rate counts must
be waiting in the subject's own Redis database afterwards (a raw Dramatiq batch once went
to Dramatiq's global broker, a RabbitMQ on 127.0.0.1, and was timed as if it had not)."""

from __future__ import annotations

import pytest

from bench.subjects import SETTINGS, make_subject, readable_argv, worker_name

SUBJECTS = [("raw", "celery"), ("raw-bare", "celery"), ("switchyard", "celery"),
            ("raw", "rq"), ("switchyard", "rq"), ("raw", "dramatiq"), ("switchyard", "dramatiq")]


@pytest.mark.parametrize(("flavour", "engine"), SUBJECTS, ids=["-".join(s) for s in SUBJECTS])
def test_single_and_batch_enqueues_wait_in_the_subjects_own_database(redis_url, flavour, engine):
    subject = make_subject(flavour, engine, redis_url)
    try:
        for _ in range(3):
            subject.enqueue("noop")
        subject.enqueue_batch("noop", 5)
        assert subject.waiting() == 8
        assert subject.done_count() == 0  # no worker: nothing done
    finally:
        subject.close()


@pytest.mark.parametrize(("flavour", "engine"), SUBJECTS, ids=["-".join(s) for s in SUBJECTS])
def test_a_worker_command_is_recorded_without_paths_urls_or_generated_names(redis_url, flavour,
                                                                           engine):
    """The committed results (bench/results.json) hold the commands as a reader types them:
    no interpreter path of the machine that ran them, no Redis URL, no random worker name."""
    subject = make_subject(flavour, engine, redis_url)
    try:
        argv = subject.worker_argv(SETTINGS[0] if engine == "celery" else next(
            s for s in SETTINGS if s.engine == engine), worker_name(flavour.replace("-", "")))
    finally:
        subject.close()
    recorded = readable_argv(argv)
    assert recorded[0] == "python" or recorded[0].startswith("python3")
    assert not any("/" in word or redis_url in word for word in recorded), recorded
    assert readable_argv(recorded) == recorded  # the report reads old and new alike
