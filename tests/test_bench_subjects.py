"""The bench's subjects enqueue where their workers read: every job a rate counts must
be waiting in the subject's own Redis database afterwards (a raw Dramatiq batch once went
to Dramatiq's global broker, a RabbitMQ on 127.0.0.1, and was timed as if it had not)."""

from __future__ import annotations

import pytest

from bench.subjects import make_subject

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
