"""A parent of a few MiB that keeps one worker process running.

    python -I adapters/supervise.py COMMAND [ARG...]

Run by path, never imported (``python -m adapters.supervise`` would import the package,
and the point is to hold none of it), and isolated (``-I``): run by path, Python would put
``adapters/`` first on ``sys.path``, where ``types.py`` hides the standard library's.
:func:`command` spells the call. :mod:`adapters.worker` execs it when the engine's
worker, with the options given, runs every job in its one process with nothing to start
another when a job takes that process down (``os._exit``, a crash in a C extension, the
kernel's OOM killer) -- RQ's one SimpleWorker, Celery's solo and threads pools. Such a
worker is the whole worker, so the platform would see it die; under this parent it is
started again, as RQ's WorkerPool or Celery's prefork pool replace a child.

* SIGTERM, SIGINT and SIGQUIT reach the worker as SIGTERM, the warm shutdown of every
  engine: where the platform (or a terminal's Ctrl-C) signals the whole process group, the
  worker takes the second one as the same request. The parent then waits for the worker
  and ends as it did: with its exit code, or by the signal that ended it.
* A worker that ends on its own with 0 (its work done) ends the parent too, as does one
  that exits 2 or 3 (a usage or configuration error: starting it again cannot cure that).
  Any other end starts it again, at once if it ran for a while, else after a pause that
  doubles up to 15 s, so a worker that cannot start does not spin.
* The worker is told the parent's pid (``SWITCHYARD_SUPERVISOR``) and asks Linux for a
  SIGTERM when the parent dies, so a SIGKILLed parent leaves no worker behind.

Standard library only, and only its lightest modules.
"""

import os
import signal
import sys
import time

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}
FINAL_CODES = {0, 2, 3}
"""A worker that exits with one of these is not started again."""
STEADY_SECONDS = 10.0
"""A worker that ran this long is started again at once."""
MAX_PAUSE = 15.0


def command(argv: list[str]) -> list[str]:
    """The command that runs ``argv`` under this supervisor."""
    return [sys.executable, "-I", os.path.abspath(__file__), *argv]


def _say(level: str, message: str) -> None:
    # the worker's own log format (adapters.worker), so one log reads as one
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{int(now % 1 * 1000):03d}"
    print(f"{stamp} {level} switchyard.supervisor[{os.getpid()}]: {message}",
          file=sys.stderr, flush=True)


def _spawn(argv: list[str]) -> int:
    env = dict(os.environ, SWITCHYARD_SUPERVISOR=str(os.getpid()))
    # the child starts with every signal unblocked, whatever this parent blocks
    return os.posix_spawn(argv[0], argv, env, setsigmask=())


def supervise(argv: list[str]) -> int:
    """Run ``argv`` until it ends for good (see the module docstring); its exit code."""
    waited = STOP_SIGNALS | {signal.SIGCHLD}
    # Signals are taken synchronously (sigwaitinfo), so none can arrive between a check
    # and a wait: the loop is the only place they are handled.
    signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    stopping = False
    pause = 0.0
    while True:
        started = time.monotonic()
        pid = _spawn(argv)
        while True:
            info = signal.sigwaitinfo(waited)
            if info.si_signo in STOP_SIGNALS:
                if not stopping:
                    _say("INFO", f"{signal.Signals(info.si_signo).name}: stopping worker "
                                 f"process {pid}")
                stopping = True
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                continue
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
        code = os.waitstatus_to_exitcode(status)
        exit_code = code if code >= 0 else 128 - code
        if stopping and code < 0:
            _die_by(-code)  # as the worker did, so the platform sees what it would have
        if stopping or code in FINAL_CODES:
            return exit_code
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        pause = 0.0 if time.monotonic() - started >= STEADY_SECONDS else min(
            max(pause * 2, 0.5), MAX_PAUSE)
        _say("WARNING", f"worker process {pid} ended ({how}); starting another"
                        + (f" in {pause:.1f}s" if pause else ""))
        if pause and signal.sigtimedwait(STOP_SIGNALS, pause) is not None:
            return exit_code


def _die_by(signum: int) -> None:
    """End this process by ``signum``, its default action (returns if that is to go on)."""
    signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    os.kill(os.getpid(), signum)


def stop_with_supervisor() -> None:
    """In a worker started by :func:`supervise`: ask for a SIGTERM when the supervisor
    dies, and stop at once if it already has (Linux; elsewhere nothing)."""
    if not supervised():
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if not supervised():  # it died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


def worker_pid() -> int:
    """The pid that stands for this worker (the one to signal): the supervisor's where
    one started it, else this process's own."""
    return os.getppid() if supervised() else os.getpid()


def supervised() -> bool:
    """True in the worker that :func:`supervise` started (not in a process of its own)."""
    return os.environ.get("SWITCHYARD_SUPERVISOR") == str(os.getppid())


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        sys.exit(2)
    sys.exit(supervise(sys.argv[1:]))
