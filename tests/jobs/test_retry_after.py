"""The runner waits at least as long as a failed job's ``retry_after`` asks."""

from __future__ import annotations

from adapters import AdapterSettings, JobState, create_adapter, job
from adapters.runner import retry_after_hint


class SlowDown(Exception):
    """Carries the delay the job was told to wait."""

    def __init__(self, retry_after):
        super().__init__("slow down")
        self.retry_after = retry_after


@job("t.asks_to_wait", max_retries=1, retry_on=(SlowDown,), retry_backoff=0.01, retry_jitter=False)
def asks_to_wait(ctx, wait):
    """Fail the first attempt asking for ``wait`` seconds; succeed the second."""
    if ctx.attempt == 1:
        raise SlowDown(wait)
    return {"attempt": ctx.attempt}


def test_a_retry_is_scheduled_no_sooner_than_the_job_asked(redis_url):
    adapter = create_adapter("inline", AdapterSettings.from_env({"REDIS_URL": redis_url}))
    info = adapter.enqueue("t.asks_to_wait", {"wait": 0.5})  # the inline adapter runs it now
    done = adapter.get(info.id)
    assert done.state is JobState.SUCCEEDED and done.attempts == 2
    [retry] = [e for e in adapter.history(info.id) if e["state"] == "retrying"]
    assert retry["run_at"] - retry["at"] >= 0.5  # the backoff alone would be 0.01 s
    adapter.close()


def test_only_sane_hints_count():
    assert retry_after_hint(SlowDown(3)) == 3.0
    for bad in (None, -1, float("nan"), float("inf"), "10", True):
        assert retry_after_hint(SlowDown(bad)) is None
    assert retry_after_hint(ValueError("no hint")) is None
