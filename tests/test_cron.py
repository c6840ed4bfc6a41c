"""Cron parsing and next-run computation, DST changes included."""

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from adapters import InvalidJob
from adapters.schedules import next_cron_time, validate_cron, validate_timezone

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def test_daily_local_time_keeps_its_wall_clock_across_dst():
    # New York leaves DST on 2026-11-01: 09:00 local is 13:00 UTC before, 14:00 after
    first = next_cron_time("0 9 * * *", NEW_YORK, utc(2026, 10, 31, 12, 0))
    assert first == utc(2026, 10, 31, 13, 0)
    second = next_cron_time("0 9 * * *", NEW_YORK, first)
    assert second == utc(2026, 11, 1, 14, 0)


def test_time_skipped_by_spring_forward_fires_right_after_the_gap():
    # Berlin: 2026-03-29 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day
    fire = next_cron_time("30 2 * * *", BERLIN, utc(2026, 3, 28, 12, 0))
    assert fire == utc(2026, 3, 29, 1, 0)  # 03:00 CEST, the first minute after the gap
    assert next_cron_time("30 2 * * *", BERLIN, fire) == utc(2026, 3, 30, 0, 30)


def test_time_repeated_by_fall_back_fires_once():
    # Berlin: 2026-10-25 03:00 CEST falls back to 02:00 CET; 02:30 happens twice
    fire = next_cron_time("30 2 * * *", BERLIN, utc(2026, 10, 24, 12, 0))
    assert fire == utc(2026, 10, 25, 0, 30)  # the first 02:30 (CEST)
    again = next_cron_time("30 2 * * *", BERLIN, fire)
    assert again == utc(2026, 10, 26, 1, 30)  # not 01:30 UTC on the 25th (the second 02:30)


def test_hourly_cron_across_fall_back_never_goes_backwards():
    t = utc(2026, 10, 24, 23, 30)
    seen = []
    for _ in range(6):
        t = next_cron_time("0 * * * *", BERLIN, t)
        seen.append(t)
    assert seen == sorted(seen) and len(set(seen)) == 6


@pytest.mark.parametrize("expr", ["* * * *", "61 * * * *", "* * * * * *", "bogus", ""])
def test_invalid_cron_is_refused_with_a_reason(expr):
    with pytest.raises(InvalidJob) as err:
        validate_cron(expr)
    assert err.value.errors["cron"]


def test_unknown_timezone_is_refused_with_a_reason():
    with pytest.raises(InvalidJob) as err:
        validate_timezone("Mars/Olympus")
    assert "Mars/Olympus" in err.value.errors["timezone"][0]
    assert validate_timezone("UTC") == ZoneInfo("UTC")
