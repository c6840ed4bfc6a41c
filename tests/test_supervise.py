"""adapters/supervise.py, the small parent of a worker that is one process: it starts the
worker again when it dies (a job's os._exit), stops for good on a clean exit or a
configuration error, passes SIGTERM on as the warm shutdown, and its worker does not
outlive it. The worker here is a tiny script, so each rule is seen on its own; the
conformance suite's os._exit case runs it under real RQ and Celery workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil

from tests.harness import ROOT, wait_until

from adapters.engine import Engine
from adapters.supervise import command

# Counts its starts in a file; dies with os._exit(7) until the `deaths`-th start, then
# runs until SIGTERM (exit 0) or exits with `final`.
WORKER = textwrap.dedent("""
    import os, signal, sys, time
    sys.path.insert(0, {root!r})
    from adapters.supervise import stop_with_supervisor
    starts, deaths, final = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(starts, "a") as f:
        f.write(f"{{os.getpid()}}\\n")
    n = len(open(starts).read().split())
    if n <= deaths:
        os._exit(7)
    if final != "run":
        sys.exit(int(final))
    stop_with_supervisor()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    open(starts + ".ready", "w").close()
    while True:
        signal.pause()
""")


def _supervise(tmp_path, deaths: int, final: str = "run") -> tuple[subprocess.Popen, str]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(root=str(ROOT)))
    starts = tmp_path / "starts"
    proc = subprocess.Popen(command([sys.executable, str(script), str(starts), str(deaths),
                                     final]), stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    return proc, str(starts)


def _starts(path: str) -> list[int]:
    try:
        return [int(p) for p in open(path).read().split()]
    except FileNotFoundError:
        return []


def test_a_worker_that_dies_is_started_again_and_sigterm_stops_it_warm(tmp_path):
    proc, starts = _supervise(tmp_path, deaths=2)
    try:
        pids = wait_until(lambda: len(_starts(starts)) == 3 and _starts(starts), 20,
                          message="a third start")
        worker = psutil.Process(pids[-1])
        assert worker.ppid() == proc.pid
        wait_until(lambda: os.path.exists(starts + ".ready"), 10, message="it to be ready")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert not worker.is_running()
    finally:
        proc.kill()
        stderr = proc.communicate()[1]
    assert stderr.count("ended (exit code 7); starting another") == 2, stderr
    assert "SIGTERM: stopping worker process" in stderr


def test_a_clean_exit_or_a_configuration_error_is_final(tmp_path):
    for final, code in (("0", 0), ("3", 3)):
        run = tmp_path / final
        run.mkdir()
        proc, starts = _supervise(run, deaths=0, final=final)
        assert proc.wait(15) == code
        assert len(_starts(starts)) == 1
        proc.communicate()


def test_the_worker_does_not_outlive_a_killed_supervisor(tmp_path):
    proc, starts = _supervise(tmp_path, deaths=0)
    try:
        [pid] = wait_until(lambda: _starts(starts), 10, message="the worker to start")
        worker = psutil.Process(pid)
        wait_until(lambda: os.path.exists(starts + ".ready"), 10, message="it to be ready")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        wait_until(lambda: not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE,
                   10, message="the orphaned worker to stop")
    finally:
        proc.kill()
        proc.communicate()


def test_a_worker_a_signal_ends_while_stopping_ends_the_supervisor_by_that_signal(tmp_path):
    """SIGTERM before the worker has a handler: it dies by the signal, and so does the
    supervisor, as a worker without one would have (a platform reads -15, not 143)."""
    script = tmp_path / "bare.py"
    script.write_text("import os, signal, sys\nopen(sys.argv[1], 'w').close()\nsignal.pause()\n")
    ready = tmp_path / "ready"
    proc = subprocess.Popen(command([sys.executable, str(script), str(ready)]),
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_until(ready.exists, 10, message="the worker to start")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.communicate()


class StopSignalAtExitEngine(Engine):
    """An engine whose worker returns at once and leaves a SIGTERM to land while the
    process exits, as the second of a group's and a supervisor's SIGTERMs can: a
    non-daemon thread, which the exit waits for, sends it once the main thread has ended."""

    name = "stop-at-exit"

    def publish(self, deliveries, pipeline=None):
        raise NotImplementedError

    def run_worker(self, queues, concurrency=1, name=None):
        def at_exit():
            deadline = time.monotonic() + 30
            while threading.main_thread().is_alive() and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=at_exit).start()


def test_a_stop_signal_that_lands_as_the_worker_exits_leaves_a_clean_exit(redis_url):
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "adapters.worker", "--backend",
                          f"{__name__}:StopSignalAtExitEngine"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr  # before: -15, the warm stop ended by SIGTERM
