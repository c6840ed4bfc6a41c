"""Jobs the conformance cases run; each records what it did in Redis (keys under ``test:``)."""

import os
import sys
import signal
import time

import redis

from adapters import job

_client = None


class TransientError(Exception):
    """Retried."""


class PermanentError(Exception):
    """Not in any retry_on list."""


def r() -> redis.Redis:
    global _client
    if _client is None or _client.connection_pool.pid != os.getpid():
        _client = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    return _client


@job("t.echo")
def echo(ctx, **payload):
    """Return the payload; log the run under test:runs:<id> and test:order."""
    r().rpush(f"test:runs:{ctx.job_id}", ctx.attempt)
    if "tag" in payload:
        r().rpush("test:order", payload["tag"])
    return {"echo": payload, "attempt": ctx.attempt}


@job("t.named", queue="alpha")
def named(ctx, tag):
    """A job whose definition names queue alpha."""
    r().rpush("test:order", tag)
    return tag


@job("t.flaky", max_retries=3, retry_on=(TransientError,), retry_backoff=0.3)
def flaky(ctx, fail_times):
    """Raise TransientError on the first ``fail_times`` attempts."""
    r().rpush(f"test:runs:{ctx.job_id}", repr(time.time()))
    if ctx.attempt <= fail_times:
        raise TransientError(f"attempt {ctx.attempt} failed on purpose")
    return ctx.attempt


@job("t.fatal", max_retries=3, retry_on=(TransientError,), retry_backoff=0.1)
def fatal(ctx):
    """Raise an error that is not in retry_on."""
    r().rpush(f"test:runs:{ctx.job_id}", ctx.attempt)
    raise PermanentError("not worth retrying")


@job("t.boom")
def boom(ctx, message="boom"):
    """Always raise ValueError."""
    raise ValueError(message)


@job("t.sleep")
def sleep(ctx, seconds, key=None):
    """Sleep in one blocking call; set ``key`` if it ever finishes."""
    r().rpush(f"test:runs:{ctx.job_id}", ctx.attempt)
    time.sleep(seconds)
    if key:
        r().set(key, "finished")
    return seconds


@job("t.progress")
def progress(ctx, gate):
    """Report 1/3, wait until the test opens ``gate``, then report 3/3."""
    ctx.progress(1, 3, "first third")
    deadline = time.monotonic() + 30
    while not r().exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError("gate never opened")
        time.sleep(0.02)
    ctx.progress(3, 3, "done")
    return "done"


@job("t.count")
def count(ctx, key):
    """Increment test:count:<key>."""
    return r().incr(f"test:count:{key}")


@job("t.switch")
def switch(ctx, flag):
    """Fail until the test sets ``flag``."""
    r().rpush(f"test:runs:{ctx.job_id}", ctx.attempt)
    if not r().exists(flag):
        raise RuntimeError("switch is off")
    return "on"


@job("t.rated", rate_limit="5/s")
def rated(ctx, i):
    """Rate-limited to 5 starts a second across all workers."""
    return i


@job("t.crash_once", timeout=60)
def crash_once(ctx, key):
    """On attempt 1 announce our pid and hang (the test kills the worker); later succeed."""
    if ctx.attempt == 1:
        r().set(key, os.getpid())
        time.sleep(60)
    return {"attempt": ctx.attempt}


@job("t.suicide")
def suicide(ctx):
    """Kill the process running it, every time."""
    r().rpush(f"test:runs:{ctx.job_id}", os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)


@job("t.add")
def add(ctx, n):
    """Add ``n`` to the upstream result (0 if none); log the run."""
    r().rpush(f"test:runs:{ctx.job_id}", ctx.attempt)
    return (ctx.upstream or 0) + n


@job("t.collect")
def collect(ctx):
    """Return what the chord's header produced, in order."""
    r().rpush(f"test:runs:{ctx.job_id}", ctx.attempt)
    return {"upstream": ctx.upstream, "workflow": ctx.links.get("workflow")}


@job("t.exits", max_retries=2, retry_backoff=0.1)
def exits(ctx, how):
    """Leave the way ``how`` says: sys.exit(3), KeyboardInterrupt, MemoryError or os._exit."""
    r().rpush(f"test:runs:{ctx.job_id}", ctx.attempt)
    if how == "sys.exit":
        sys.exit(3)
    if how == "KeyboardInterrupt":
        raise KeyboardInterrupt
    if how == "MemoryError":
        raise MemoryError("pretend the heap ran out")
    if how == "os._exit":
        os._exit(7)
    raise ValueError(f"unknown way out {how!r}")


@job("t.spawn")
def spawn(ctx, tag="child"):
    """Enqueue a t.echo child through ctx.enqueue; return its id and the adapter's name."""
    child = ctx.enqueue("t.echo", {"tag": tag})
    return {"child": child.id, "adapter": ctx.adapter.name}
