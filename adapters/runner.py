"""What happens around every job on every engine.

The engines' task wrappers call :func:`execute` with the job id and the delivery
token they were handed; everything else -- claiming the job in the ledger (cancel,
expiry, rate limit, stale-delivery checks), the hard timeout, cancel of a running
job, progress, lease renewal, the retry policy and the final ledger write -- is here,
once. The loop every worker runs beside its engine is :mod:`adapters.maintenance`.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import logging
import math
import os
import random
import signal
import socket
import threading
import time
import traceback
from typing import Any, Callable, TypeVar

import redis

from .context import JobContext
from .errors import BackendUnavailable, JobCanceled, JobTimeout, UnknownJobType
from .registry import get_definition

log = logging.getLogger("switchyard.runner")

T = TypeVar("T")


__all__ = ["execute", "Outcome", "worker_name", "retry_after_hint", "ride_out"]


_name_of_pid: tuple[int, str] = (0, "")


def worker_name() -> str:
    """``host:pid`` of this process (worked out once per process: it is on every claim)."""
    global _name_of_pid
    pid = os.getpid()
    if _name_of_pid[0] != pid:
        _name_of_pid = (pid, f"{socket.gethostname()}:{pid}")
    return _name_of_pid[1]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How one delivery ended."""

    kind: str
    """``succeeded``, ``failed``, ``canceled``, ``retry``, ``deferred`` or ``dropped``."""
    detail: str = ""
    retry_at: float | None = None


class _Interrupter:
    """Raises JobTimeout or JobCanceled inside the thread running a job.

    In the main thread a SIGALRM timer gives a precise timeout that also breaks a
    blocking sleep or socket call; elsewhere the watcher thread raises the exception
    asynchronously at the deadline.
    """

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.reason: str | None = None
        self.thread_id = threading.get_ident()
        self.main = threading.current_thread() is threading.main_thread()
        self._armed = False
        self._old_handler = None
        self._old_timer = (0.0, 0.0)

    def _exception(self) -> type[BaseException]:
        return JobCanceled if self.reason == "cancel" else JobTimeout

    def _on_alarm(self, signum, frame):
        if not self._armed:
            return
        self.reason = self.reason or "timeout"
        self._armed = False
        raise self._exception()(self._message())

    def _message(self) -> str:
        if self.reason == "cancel":
            return "canceled while running"
        return f"exceeded its {self.timeout:g}s timeout"

    def __enter__(self):
        self._armed = True
        if self.main:
            self._old_handler = signal.signal(signal.SIGALRM, self._on_alarm)
            self._old_timer = signal.setitimer(signal.ITIMER_REAL, self.timeout)
            self._started = time.monotonic()
        return self

    def __exit__(self, *exc):
        self._armed = False
        if self.main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old_handler or signal.SIG_DFL)
            remaining = self._old_timer[0]
            if remaining:
                # Give back the engine's own alarm (RQ's death penalty), less our time.
                left = remaining - (time.monotonic() - self._started)
                signal.setitimer(signal.ITIMER_REAL, max(left, 0.001), self._old_timer[1])
        return False

    def fire(self, reason: str) -> None:
        """Interrupt the job from another thread."""
        if not self._armed:
            return
        self.reason = reason
        if self.main:
            signal.pthread_kill(self.thread_id, signal.SIGALRM)
        else:
            self._armed = False
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self.thread_id), ctypes.py_object(self._exception()))


class _Watcher:
    """One thread per process: renews leases and delivers cancels to running jobs."""

    def __init__(self):
        self._lock = threading.Lock()
        self._jobs: dict[int, tuple] = {}
        self._pid = None
        self._thread = None

    def watch(self, ledger, job_id, token, interrupter, ctx, every: float):
        with self._lock:
            if self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._jobs = {}
                self._thread = threading.Thread(target=self._run, args=(every,),
                                                name="switchyard-watcher", daemon=True)
                # Started with SIGTERM and SIGINT blocked: the kernel hands a signal sent
                # to the process to any thread that does not block it, and taken here it
                # would leave the main thread (the only one running Python's handlers)
                # asleep in the engine's blocking dequeue, deaf to a warm shutdown.
                previous = signal.pthread_sigmask(signal.SIG_BLOCK,
                                                  {signal.SIGTERM, signal.SIGINT})
                try:
                    self._thread.start()
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            self._jobs[interrupter.thread_id] = (ledger, job_id, token, interrupter, ctx,
                                                 time.monotonic())

    def unwatch(self, interrupter):
        with self._lock:
            self._jobs.pop(interrupter.thread_id, None)

    def _run(self, every: float):
        while True:
            time.sleep(every)
            with self._lock:
                jobs = list(self._jobs.values())
            now = time.monotonic()
            for ledger, job_id, token, interrupter, ctx, since in jobs:
                if now - since < every:
                    continue  # short jobs cost no heartbeat at all
                try:
                    state = ledger.heartbeat(job_id, token)
                except Exception:
                    log.warning("lease renewal of job %s failed", job_id, exc_info=True)
                    continue
                if state == "cancel":
                    ctx._canceled.set()
                    interrupter.fire("cancel")
                elif not interrupter.main and now >= interrupter.deadline:
                    interrupter.fire("timeout")


_watcher = _Watcher()


def _error(exc: BaseException) -> str:
    message = str(exc) or type(exc).__name__
    if isinstance(exc, SystemExit):
        message = f"the job called sys.exit({exc.code!r})"
    elif isinstance(exc, KeyboardInterrupt):
        message = "the job raised KeyboardInterrupt"
    return json.dumps({
        "type": type(exc).__name__,
        "message": message,
        "traceback": "".join(traceback.format_exception(exc))[-4000:],
    })


def retry_after_hint(error: BaseException) -> float | None:
    """The delay an exception asks for through a ``retry_after`` attribute, if any.

    A job that learns when to try again (an HTTP ``Retry-After``, an SMTP server's
    "try later in N seconds") raises an exception carrying ``retry_after`` seconds; the
    next attempt then waits at least that long, whatever the backoff says. The job
    caps the value: the runner takes it as given.
    """
    value = getattr(error, "retry_after", None)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _raised_by_engine(exc: BaseException, engine: Any) -> bool:
    """True if ``exc`` was raised by the engine's own code (a signal handler stopping the
    worker), False if the job raised it; what counts is the engine's declaration
    (``Engine.stop_exception_modules``, ``Engine.stop_handler_modules``)."""
    if type(exc).__module__.startswith(tuple(engine.stop_exception_modules)):
        return True
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "") if tb is not None else ""
    return f"{module}.".startswith(tuple(engine.stop_handler_modules))


def ride_out(what: str, call: Callable[[], T], patience: float) -> T:
    """``call()``, tried again while Redis does not answer, for up to ``patience`` seconds.

    A worker that cannot reach Redis for a few seconds (a restart, a failover) must not
    drop the delivery it holds or forget the end of a job it ran: the ledger is the only
    record of either. Past ``patience`` it raises ``BackendUnavailable``.
    """
    deadline = time.monotonic() + patience
    wait = 0.05
    warned = False
    while True:
        try:
            result = call()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() + wait > deadline:
                raise BackendUnavailable(f"{what}: Redis did not answer for {patience:g}s: "
                                         f"{exc}") from exc
            if not warned:
                log.warning("%s: Redis does not answer (%s); trying again for up to %gs",
                            what, exc, patience)
                warned = True
            time.sleep(wait)
            wait = min(wait * 2, 1.0)
            continue
        if warned:
            log.info("%s: Redis answers again", what)
        return result


def execute(adapter: Any, job_id: str, token: str) -> Outcome:
    """Run one delivery of a job under Switchyard's rules; never raises for job errors."""
    ledger = adapter.process_ledger()
    settings = adapter.settings
    patience = settings.lease_seconds
    in_hand_key = getattr(adapter.engine, "in_hand_key", None)
    claim = ride_out(f"claim of job {job_id}", lambda: ledger.claim(
        job_id, token, worker_name(), time.time(), in_hand_key), patience)
    if claim.action == "drop":
        log.info("job %s: delivery dropped (%s)", job_id, claim.reason)
        return Outcome("dropped", claim.reason)
    if claim.action == "defer":
        log.info("job %s: rate limited, deferred to %s", job_id, claim.reason)
        return Outcome("deferred", retry_at=float(claim.reason))

    links = json.loads(claim.links) if claim.links else {}
    ctx = JobContext(job_id=job_id, job_type=claim.job_type, attempt=claim.attempt,
                     tenant=claim.tenant, queue=claim.queue, links=links,
                     upstream=json.loads(claim.upstream) if claim.upstream else None,
                     adapter=adapter, _ledger=ledger, _token=token)
    log.info("job %s (%s) attempt %d started", job_id, claim.job_type, claim.attempt)
    started = time.monotonic()
    try:
        definition = get_definition(claim.job_type)
    except UnknownJobType as exc:
        ledger.finish(job_id, token, "failed", _error(exc))
        log.error("job %s: %s (is it in JOB_MODULES?)", job_id, exc)
        return Outcome("failed", str(exc))

    interrupter = _Interrupter(claim.timeout)
    result = error = None
    try:
        _watcher.watch(ledger, job_id, token, interrupter, ctx, settings.watch_seconds)
        try:
            with interrupter:
                result = definition.func(ctx, **json.loads(claim.payload))
        finally:
            _watcher.unwatch(interrupter)
    except BaseException as exc:  # noqa: BLE001 - the job's own errors are data here
        if (isinstance(exc, (KeyboardInterrupt, SystemExit)) and interrupter.reason is None
                and _raised_by_engine(exc, adapter.engine)):
            # The worker itself is stopping (a cold shutdown): the lease brings the job
            # back on another worker, so nothing is written here.
            raise
        # Anything else a job raises -- sys.exit(), KeyboardInterrupt, MemoryError -- is
        # the failure of this attempt, decided by the job's retry policy like any other.
        error = exc

    elapsed = time.monotonic() - started

    def finish(outcome: str, a: str = "", b: str = "", now: float | None = None) -> None:
        ride_out(f"end of job {job_id}", lambda: ledger.finish(job_id, token, outcome, a, b,
                                                               now=now), patience)

    if interrupter.reason == "cancel":
        finish("canceled", "requested", _error(error or JobCanceled("canceled while running")))
        log.info("job %s canceled while running after %.3fs", job_id, elapsed)
        return Outcome("canceled")
    if interrupter.reason == "timeout" and not isinstance(error, JobTimeout):
        error = JobTimeout(f"exceeded its {claim.timeout:g}s timeout")

    if error is None:
        try:
            encoded = json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as exc:
            error = TypeError(f"the job returned a value that is not JSON: {exc}")
        else:
            finish("succeeded", encoded)
            log.info("job %s succeeded in %.3fs", job_id, elapsed)
            return Outcome("succeeded")

    retryable = isinstance(error, definition.retry_on) or (
        isinstance(error, JobTimeout) and Exception in definition.retry_on)
    if retryable and claim.attempt <= claim.max_retries:
        delay = definition.retry_delay(claim.attempt, random.uniform)
        hinted = retry_after_hint(error)
        if hinted is not None:
            delay = max(delay, hinted)
        now = time.time()
        retry_at = now + delay
        finish("retry", _error(error), repr(retry_at), now=now)
        log.warning("job %s attempt %d failed (%s: %s); retry in %.2fs", job_id,
                    claim.attempt, type(error).__name__, error, delay)
        return Outcome("retry", type(error).__name__, retry_at)
    finish("failed", _error(error))
    log.error("job %s failed on attempt %d: %s: %s", job_id, claim.attempt,
              type(error).__name__, error)
    return Outcome("failed", type(error).__name__)
