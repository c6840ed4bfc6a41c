"""A Celery worker on a Redis broker notes each delivery it takes (adapters/inhand.py)
without waiting for Redis's answer: the note goes out, the claim follows at once, and the
answer is read before the next note. Against a private redis-server."""

from __future__ import annotations

import threading

import pytest
import redis

from adapters.inhand import Notes


@pytest.fixture
def r(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def test_a_note_does_not_wait_for_redis(r):
    notes = Notes(r)
    notes.note("inhand", "job1", "r1")  # the connection is made here, not while paused
    notes.flush()  # and its answer read: the note below has none to wait for
    r.execute_command("CLIENT", "PAUSE", "4000", "WRITE")
    try:
        sent = threading.Thread(target=notes.note, args=("inhand", "job2", "r1"), daemon=True)
        sent.start()
        # a note that waited for its answer would sit out the 4 s pause
        sent.join(2)
        assert not sent.is_alive(), "the note waited for Redis"
    finally:
        r.execute_command("CLIENT", "UNPAUSE")
    notes.flush()
    assert set(r.zrange("inhand", 0, -1)) == {"job1-r1", "job2-r1"}


def test_a_notes_error_comes_with_the_next_note_which_is_written_all_the_same(r):
    notes = Notes(r)
    r.set("wrong", "a string, not a sorted set")
    notes.note("wrong", "job1", "r1")  # sent; Redis answers WRONGTYPE
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        notes.note("inhand", "job2", "r1")
    notes.note("inhand", "job3", "r1")
    notes.flush()
    assert r.zrange("inhand", 0, -1) == ["job2-r1", "job3-r1"]


def test_notes_after_redis_drops_the_connection_reconnect(r):
    notes = Notes(r)
    notes.note("inhand", "job1", "r1")
    notes.flush()
    host, port = notes._connection._sock.getsockname()[:2]
    r.client_kill_filter(addr=f"{host}:{port}")  # the notes' connection only
    with pytest.raises(redis.ConnectionError):
        notes.note("inhand", "job2", "r1")
        notes.flush()
    notes.note("inhand", "job3", "r1")
    notes.flush()
    assert set(r.zrange("inhand", 0, -1)) == {"job1-r1", "job3-r1"}
