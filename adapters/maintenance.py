"""What runs beside every engine: the worker's maintenance loop and the scheduler's beat.

:class:`Maintenance` releases due jobs, re-delivers jobs whose worker died (and
deliveries a dead worker took but never claimed), expires stale ones, finishes an
interrupted resume of a paused queue and announces the worker; :class:`SchedulerBeat`
is what an engine's scheduler calls on each beat.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import threading
import time
from typing import Any, Iterator

import redis

from .connections import blocking_twin, disconnect
from .errors import BackendUnavailable
from .queues import RELEASE_BATCH
from .runner import worker_name
from .supervise import worker_pid

log = logging.getLogger("switchyard.runner")

__all__ = ["Maintenance", "SchedulerBeat", "run_beat", "fork_child", "as_thread",
           "BEAT_SECONDS"]

BEAT_SECONDS = 5.0
"""How often a worker announces itself (``workers()`` counts one seen within 15 s): its
score in the live set every beat, its record's expiry (five beats) every other one."""
PRUNE_EVERY = 12
"""Every how many of its beats a worker also drops silent workers from the live set (the
readers pass them over anyway: this only keeps the set small)."""


def fork_child(run, what: str) -> int:
    """Fork a process that runs ``run()`` and exits: 0 when it returns, 1 (logged) when it
    raises; never back into the parent's code. Returns the child's pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            run()
        except BaseException:  # noqa: BLE001
            log.exception("%s crashed", what)
            code = 1
        finally:
            os._exit(code)
    return pid


def _stop_with_parent() -> None:
    """Ask Linux for a SIGTERM when the parent dies (a SIGKILLed worker's loop then ends at
    once, not at its next wake); elsewhere the loop's parent check ends it within
    ``idle_seconds``."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def as_thread(loop: "Maintenance | None") -> Iterator[None]:
    """Run ``loop`` as a thread of this process for the block (``None``: no loop here),
    stopped however the block ends: an engine's one worker process that forks nothing."""
    if loop is None:
        yield
        return
    loop.start(in_thread=True)
    try:
        yield
    finally:
        loop.stop()


class Maintenance:
    """The loop every worker runs beside its engine: a thread, or a process of its own.

    It releases due jobs, re-delivers jobs whose worker died, expires stale ones and
    announces the worker. It is a thread of a process that never forks: the worker's one
    process (RQ's one SimpleWorker, Celery solo or threads), or the first child of a pool
    (Celery prefork, Dramatiq's processes), whose replacement starts it again. Where the
    only process that could hold it forks (RQ's WorkerPool, a fork-per-job Worker) it is
    a process forked before the engine starts, while the launcher has no other thread: a
    child forked while another thread holds a lock (a connection pool's, a stream's)
    waits on that lock for ever. A thread saves a process's memory (a fork's resident
    pages count again).
    The thread takes no signal (they stay the main thread's, where jobs run and their
    SIGALRM timeouts land) and holds its own connection, which :meth:`stop` shuts to end
    a wait at once; a job that ends the process ends the thread too, and its lease
    recovers the job.
    """

    def __init__(self, adapter: Any, queues: list[str], concurrency: int,
                 name: str | None = None):
        self.adapter = adapter
        self.worker_id = name or worker_name()
        self.info = {"backend": adapter.name, "queues": ",".join(queues),
                     "concurrency": str(concurrency), "pid": str(worker_pid()),
                     "host": socket.gethostname(), "started_at": repr(time.time())}
        self._stop = threading.Event()
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        self._waiter: redis.Redis | None = None

    def start(self, in_thread: bool = False) -> None:
        """Fork the maintenance process (it ends with its parent), or with ``in_thread``
        start it as a daemon thread of this process."""
        if not in_thread:
            self._pid = fork_child(self._child, "worker maintenance")
            return
        self._thread = threading.Thread(target=self._in_thread, name="switchyard-maintenance",
                                        daemon=True)
        # The thread inherits the mask of the thread that starts it: every signal stays
        # the main thread's, so none cuts short this thread's wait instead of a job's call.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            self._thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def stop(self, timeout: float = 5.0, forget: bool = True) -> None:
        """Stop the maintenance loop and (``forget``) take the worker off the live list:
        not where the loop's process is being replaced while the worker lives on."""
        if self._thread is not None:
            self._stop_thread(timeout, forget)
            return
        pid, self._pid = self._pid, None
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
                time.sleep(0.05)
            else:
                if time.monotonic() >= deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass  # already gone (or reaped by the engine)

    def _stop_thread(self, timeout: float, forget: bool) -> None:
        thread, self._thread = self._thread, None
        self._stop.set()
        waiter = self._waiter
        if waiter is not None:  # out of the blocking wait at once: its socket is shut
            disconnect(waiter, in_use=True)
        thread.join(timeout)
        if forget:
            self.forget()

    @property
    def running_in_thread(self) -> bool:
        """True while the loop runs as a thread of this process."""
        return self._thread is not None

    def forget(self) -> None:
        """Take the worker off the live list (it is stopping); Redis may be away."""
        try:
            self.adapter.ledger.worker_gone(self.worker_id)
        except Exception:  # noqa: BLE001 - its entry then lapses on its own
            pass

    def _in_thread(self) -> None:
        try:
            self._loop(watch_parent=False)
        except BaseException:  # noqa: BLE001 - a thread's end is logged, never raised
            if not self._stop.is_set():
                log.exception("worker maintenance crashed")
        finally:
            if self._waiter is not None:
                disconnect(self._waiter)

    def _child(self) -> None:
        class Stop(BaseException):
            pass

        def request_stop(signum, frame):
            if not self._stop.is_set():
                self._stop.set()
                raise Stop  # out of the blocking wait at once, wherever the loop is

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        _stop_with_parent()
        try:
            self._loop()
        except Stop:
            pass
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:  # a fresh connection: a wait cut short leaves its reply unread
                disconnect(self.adapter.ledger.r)
                self.adapter.ledger.worker_gone(self.worker_id)
            except Exception:
                pass

    def _loop(self, watch_parent: bool = True) -> None:
        """Run the ledger's maintenance when a deadline comes (or is written nearer), and
        sleep in between: an idle worker costs a few Redis commands per ``BEAT_SECONDS``.

        Deadlines are the ledger's (jobs due, expiries, leases, dispatch guards); the
        maintain script returns the earliest one left and a script that writes an earlier
        one wakes a sleeping loop. Beside them: the worker's heartbeat (``BEAT_SECONDS``),
        and a sweep a few times per lease for deliveries a dead worker took but never
        claimed and for parked jobs a dead resume left. The loop wakes for a deadline or a
        beat; the sweep runs at the first wake once it is due, and wakes the loop itself
        only where it comes more often than the beat (a lease under 4 beats).
        """
        settings = self.adapter.settings
        parent = os.getppid() if watch_parent else None
        ledger = self.adapter.ledger
        # its own connection, with room for the longest wait
        waiter = self._waiter = blocking_twin(ledger.r, settings.idle_seconds + settings.redis_timeout)
        # A delivery a dead worker took but never claimed is looked for a few times per
        # lease: it is run again well within the lease time, like a job it had started.
        sweep_every = max(settings.tick_seconds, settings.lease_seconds / 4)
        # a sweep that comes less often than the beat waits for one (a beat late at most);
        # a more frequent one (a short lease) wakes the loop itself
        sweep_wakes = sweep_every < BEAT_SECONDS
        next_beat = next_run = 0.0
        beats = 0
        plain_last = True  # the first beat writes the record
        beat_due = False
        next_sweep = time.time() + sweep_every
        last_run = -math.inf
        down_since = None
        woken = True
        while not self._stop.is_set() and (parent is None or os.getppid() == parent):
            try:
                now = time.time()
                # a beat or a sweep due within a tick runs now, with the deadline that
                # woke the loop, instead of waking it again a few ms later
                soon = now + settings.tick_seconds
                sweep = soon >= next_sweep
                run = woken or now >= next_run
                beat = None
                if soon >= next_beat:
                    beat_due = True  # until written: a tick that fails beats again
                    beats += 1
                    next_beat = now + BEAT_SECONDS
                    # the record's expiry (five beats) at least every other beat, in the
                    # maintain call where one runs; the live set's score alone between
                    if run or plain_last:
                        beat = (self.worker_id, self.info, BEAT_SECONDS * 5,
                                beats % PRUNE_EVERY == 1)
                        if not run:
                            ledger.worker_heartbeat(*beat)
                    else:
                        ledger.worker_seen(self.worker_id)
                    plain_last = beat is None
                if run:
                    # two runs at least a tick apart, so a burst of deadlines is one run
                    self._stop.wait(max(0.0, last_run + settings.tick_seconds - time.time()))
                    # a sweep first finishes a resume cut short: the jobs it left parked
                    # on a queue no longer paused (ledger.maintain's unpark)
                    unpark = RELEASE_BATCH if sweep and not ledger.cluster else 0
                    while True:
                        published = self.adapter.dispatch_due(unpark=unpark, beat=beat)
                        beat = None
                        unpark = unpark if ledger.unparked >= RELEASE_BATCH else 0
                        if published < 100 and not unpark:
                            break
                    last_run = time.time()
                    next_run = ledger.next_wake
                if sweep:
                    next_sweep = now + sweep_every
                    if not run or ledger.cluster:  # the parked jobs in calls of their own
                        # (a cluster's run calls only the shards whose deadline has come)
                        while self.adapter.queues().release_parked() >= RELEASE_BATCH:
                            pass
                    recovered = self.adapter.recover_stranded()
                    if recovered:
                        log.warning("%d delivery(ies) taken by a worker that died before "
                                    "running them: delivered again", recovered)
                        next_run = 0.0
                beat_due = False
                if down_since is not None:
                    log.info("Redis answers again after %.1fs; maintenance carries on",
                             time.monotonic() - down_since)
                    down_since = None
                at = min(next_beat, next_sweep if sweep_wakes else math.inf)
                if next_run <= at + settings.tick_seconds:  # a beat a tick late joins the run
                    at = next_run
                wait = at - time.time()
                # at least 10 ms: Redis reads a blocking timeout that rounds to 0 as "for ever"
                woken = wait > 0 and not self._stop.is_set() and ledger.wait_for_deadline(
                    min(max(wait, 0.01), settings.idle_seconds), waiter)
            except Exception as exc:
                if self._stop.is_set():
                    break  # the wait cut short by stop()
                if beat_due:
                    next_beat, plain_last = 0.0, True
                if not isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
                    log.warning("maintenance tick failed", exc_info=True)
                    woken = True
                    self._stop.wait(settings.tick_seconds)
                    continue
                if down_since is None:  # once per outage, not four times a second
                    down_since = time.monotonic()
                    log.warning("Redis does not answer (%s); maintenance waits for it", exc)
                woken = True
                self._stop.wait(settings.tick_seconds)


class SchedulerBeat:
    """What an engine's scheduler does on each beat: fire due schedules, say it is alive."""

    def __init__(self, adapter: Any, poll: float, catch_up: int,
                 name: str | None = None):
        self.adapter = adapter
        self.poll = poll
        self.schedules = adapter.schedules(catch_up=catch_up)
        self.name = name or f"scheduler-{worker_name()}"
        self.info = {"backend": adapter.name, "role": "scheduler", "pid": str(worker_pid()),
                     "host": socket.gethostname(), "started_at": repr(time.time())}
        self._last_beat = 0.0
        self._beats = 0
        self._down_since: float | None = None

    def __call__(self) -> float:
        """Fire what is due; returns the seconds to wait before the next beat."""
        try:
            if time.monotonic() - self._last_beat >= 1.0:
                self._beats += 1
                self.adapter.ledger.worker_heartbeat(self.name, self.info, ttl=10,
                                                     prune=self._beats % 60 == 1)
                self._last_beat = time.monotonic()
            fired = self.schedules.tick()
            if fired:
                log.info("scheduler fired %d job(s)", len(fired))
            wait = self.schedules.seconds_to_next()
        except Exception as exc:
            if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, BackendUnavailable)):
                if self._down_since is None:  # once per outage
                    self._down_since = time.monotonic()
                    log.warning("Redis does not answer (%s); schedules fire again once it "
                                "does", exc)
            else:
                log.warning("scheduler beat failed", exc_info=True)
            return self.poll
        if self._down_since is not None:
            log.info("Redis answers again after %.1fs; schedules fire again",
                     time.monotonic() - self._down_since)
            self._down_since = None
        return self.poll if wait is None else min(self.poll, max(wait, 0.01))

    def stop(self) -> None:
        try:
            self.adapter.ledger.worker_gone(self.name)
        except Exception:
            pass


def run_beat(client: Any, poll: float, catch_up: int, name: str | None = None) -> None:
    """The engine-neutral scheduler process: a :class:`SchedulerBeat` in a loop of its
    own until SIGTERM or SIGINT (for an engine that has no scheduler of its own)."""
    stop = threading.Event()

    def request_stop(signum, frame):
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    beat = SchedulerBeat(client, poll, catch_up, name)
    log.info("starting the %s scheduler over Switchyard's schedules (poll %.2fs)",
             client.name, poll)
    try:
        while not stop.is_set():
            stop.wait(beat())
    finally:
        beat.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
