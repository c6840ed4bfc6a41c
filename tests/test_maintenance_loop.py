"""What an idle maintenance loop costs Redis, counted in its beats (``BEAT_SECONDS``
shortened to 0.4 s here), not in seconds: it wakes once a beat and never for its sweep
alone, carries its record's expiry in the maintain call every other beat, and finds
the deadline sets empty with one EXISTS."""

from __future__ import annotations

import pytest

from adapters import maintenance
from adapters.maintenance import Maintenance
from service.embedded_redis import EmbeddedRedis
from tests.harness import Engine, wait_until


def _calls(r) -> dict[str, int]:
    """Redis's own count of each command run so far, those inside scripts included,
    less this test's questions (INFO, ZRANGEBYSCORE of the live set, HGETALL of records)."""
    return {name.removeprefix("cmdstat_"): stats["calls"]
            for name, stats in r.info("commandstats").items()
            if not name.startswith(("cmdstat_info", "cmdstat_client"))}


@pytest.fixture
def eng(tmp_path, monkeypatch):
    monkeypatch.setattr(maintenance, "BEAT_SECONDS", 0.4)
    # a server of its own: the counts are the whole server's, and a process another test
    # left stopping must not add to them
    with EmbeddedRedis() as server:
        # as the defaults are (a beat 5 s, idle_seconds 10, a lease 30 s): a run every
        # other beat, and a sweep (a lease / 4) at most as often, riding the run's call
        engine = Engine("rq", server.url, None, tmp_path, extra_env={
            "SWITCHYARD_IDLE_SECONDS": "0.8", "SWITCHYARD_LEASE_SECONDS": "2.4"})
        yield engine
        engine.close()


def test_an_idle_loop_wakes_once_a_beat_and_maintains_with_the_beat_in_one_call(eng):
    r = eng.redis
    loop = Maintenance(eng.adapter, ["default"], 1, name="idle-loop")
    loop.start(in_thread=True)
    try:
        wait_until(lambda: r.zscore(f"{eng.settings.namespace}workers", "idle-loop"), 10,
                   0.02, "the loop's first beat")
        before = _calls(r)
        # 12 beats, each a ZADD of the live set (in the maintain call, or alone)
        wait_until(lambda: _calls(r).get("zadd", 0) - before.get("zadd", 0) >= 12, 30, 0.05,
                   "12 beats")
        after = _calls(r)
    finally:
        loop.stop()
    ran = {name: n - before.get(name, 0) for name, n in after.items() if n > before.get(name, 0)}
    beats = ran["zadd"]
    assert "zrange" not in ran, ran  # the four deadline sets read as empty with one EXISTS
    assert ran["exists"] <= beats // 2 + 1, ran  # one maintain run per idle_seconds
    # one wake a beat: none for the sweep, none a few ms after a beat for the run
    assert ran["blpop"] <= beats + 1, ran
    # one script call per run, the beat's record expiry and the sweep's parked jobs in it
    assert ran["evalsha"] <= beats // 2 + 1, ran
    assert ran["smembers"] >= 3, ran  # the sweep ran (0.6 s: at every run)
    # before: the beat's own script every beat, four ZRANGEs a run, the sweep's own
    # script and wake: about 10 commands a beat (now 5 or 6)
    assert sum(ran.values()) <= 7 * beats, ran
