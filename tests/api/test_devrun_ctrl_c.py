"""Ctrl-C in the first seconds of ``make run``: a clean stop (exit 0) and nothing left.

A terminal sends SIGINT to its whole foreground process group; here devrun runs in a
session of its own and the test signals that group, at moments from "at once" to "once
everything is up", while web, worker and scheduler may still be importing. Every process
of a run (devrun, its Procfile processes and theirs, the embedded Redis) carries a marker
in its environment, so the test finds them in /proc even once devrun is gone and they
have been re-parented.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid

import pytest

from service.supervisor import Supervisor as _Supervisor
from service.embedded_redis import answers_ping, free_port
from tests.api.test_devrun import DEVRUN, Devrun, devrun_env, request, wait_until_up
from tests.harness import ROOT, wait_until

MARK = "SWITCHYARD_DEVRUN_TEST_RUN"  # not one devrun_env strips: it is added after
EXIT_DEADLINE = 45  # the worker's grace is 30 s; nothing here has a job in hand


def marked(run: str, tmp: str) -> list[int]:
    """Every live process of the run ``run``: the marker in its environment, or (Redis,
    which writes its title over its environment) its working directory in ``tmp``, where
    the run makes its temporary directories. Zombies have neither."""
    needle = f"{MARK}={run}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if needle in environ or cwd.startswith(tmp):
            found.append(int(entry))
    return found


def describe(pids: list[int]) -> str:
    lines = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            lines.append(f"{pid}: {cmdline}")
        except OSError:
            pass
    return "\n".join(lines)


def answers(port: int) -> bool:
    return answers_ping(port, timeout=0.5)


def catches_sigterm(pid: int) -> bool:
    """Whether ``pid`` has a handler for SIGTERM (Python has none of its own)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def reach(devrun: Devrun, moment) -> None:
    """Wait for ``moment``: seconds after the start, or a point of devrun's start-up."""
    out = devrun.output
    if moment == "at once":  # the first moment devrun can see a signal at all
        wait_until(lambda: catches_sigterm(devrun.proc.pid), 10, 0.001, "devrun's handlers")
    elif isinstance(moment, float):
        start = devrun.started
        wait_until(lambda: time.monotonic() >= start + moment, moment + 1, 0.005, f"{moment}s")
    elif moment == "banner":
        wait_until(lambda: "Switchyard is starting" in out(), 60, 0.005, "the banner")
    elif moment == "spawned":  # the three processes started, each surely still importing
        wait_until(lambda: out().count("started (pid=") >= 3, 60, 0.005, "three processes")
    elif moment == "ready":
        def key_and_health():
            found = re.search(r"API key:\s+(sy_\S+)", out())
            if not found:
                return None
            try:
                return found.group(1) if request(devrun.port, "GET", "/healthz",
                                                 found.group(1))[0] == 200 else None
            except OSError:
                return None
        key = wait_until(key_and_health, 60, 0.1, "the web process to answer")
        wait_until_up(devrun, devrun.port, key)
    else:
        raise ValueError(moment)


MOMENTS = ["at once", 0.2, 0.5, 1.0, "banner", "spawned", 2.0, "ready"]


def run_and_stop(tmp_path, target: str, signum: int, moment) -> tuple[object, str, str]:
    """Start make run's command, signal it at ``moment``; return its exit status (or why
    there is none), what of it is left running, and its output. Kills what is left."""
    run = uuid.uuid4().hex
    port = free_port()
    tmp = tmp_path / "tmp"  # the embedded Redis's directory is made in it
    tmp.mkdir()
    devrun = Devrun(devrun_env(port, **{MARK: run, "TMPDIR": str(tmp)}), tmp_path / "devrun.log")
    devrun.port = port
    devrun.started = time.monotonic()
    try:
        reach(devrun, moment)
        if target == "group":
            os.killpg(devrun.proc.pid, signum)
        else:
            os.kill(devrun.proc.pid, signum)
        try:
            rc = devrun.proc.wait(EXIT_DEADLINE)
        except subprocess.TimeoutExpired:
            rc = f"still running after {EXIT_DEADLINE}s"
        try:  # a process killed a moment ago may still be being reaped
            wait_until(lambda: not marked(run, str(tmp)), 5, 0.05, "every process of the run to go")
            left = ""
        except AssertionError:
            left = describe(marked(run, str(tmp))) or "(gone just now)"
        out = devrun.output()
        redis_port = re.search(r"Redis:\s+embedded, redis://127\.0\.0\.1:(\d+)/", out)
        if redis_port and answers(int(redis_port.group(1))):
            left += f"\nthe embedded Redis on port {redis_port.group(1)}"
        return rc, left, out
    finally:
        devrun.close()
        for pid in marked(run, str(tmp)):  # a failed run must not leave its processes behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.parametrize("how", [
    *[("group", signal.SIGINT, m) for m in MOMENTS],  # Ctrl-C in the terminal
    ("devrun", signal.SIGTERM, "spawned"),  # kill PID, systemd, an IDE's stop button
    ("devrun", signal.SIGHUP, "spawned"),  # the terminal closed
], ids=lambda how: f"{how[0]}-{signal.Signals(how[1]).name}-{how[2]}")
def test_a_stop_at_any_moment_is_clean_and_leaves_nothing(tmp_path, how):
    rc, left, out = run_and_stop(tmp_path, *how)
    assert rc == 0 and not left, f"exit status {rc}; left running:\n{left}\n{out[-5000:]}"


def test_a_ctrl_c_before_python_is_up_leaves_nothing(tmp_path):
    """Before devrun's first line (the interpreter still starting, some 30 ms) nothing can
    handle the signal: devrun dies of it. It has started nothing yet, so nothing is left."""
    rc, left, out = run_and_stop(tmp_path, "group", signal.SIGINT, 0.0)
    assert rc in (0, -signal.SIGINT) and not left, f"exit status {rc}; left:\n{left}\n{out}"


STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
# a child that leaves the group, as RQ's work horse does: only its ancestry names it
child = subprocess.Popen([sys.executable, "-c", "import os, time; os.setsid(); time.sleep(600)"])
print("child", child.pid, flush=True)
time.sleep(600)
"""
LEAVER = """
import os, signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); "
    "time.sleep(600)"], stdout=subprocess.PIPE)
child.stdout.readline()  # its SIGTERM is ignored by now
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # exits without it
print("child", child.pid, flush=True)
time.sleep(600)
"""
POLITE = """
import os, signal, time
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
print("child none", flush=True)
time.sleep(600)
"""


def test_what_does_not_stop_is_killed_at_the_deadline_with_all_it_started(tmp_path):
    """devrun's supervisor on real processes: one ignores SIGTERM and has a child in a
    session of its own, one exits leaving a child that ignores SIGTERM in its group."""
    out = io.StringIO()
    supervisor = _Supervisor(out, dict(os.environ), str(tmp_path))
    for name, code in (("stubborn", STUBBORN), ("leaver", LEAVER), ("polite", POLITE)):
        supervisor.add(name, f"exec {shlex.quote(sys.executable)} -c {shlex.quote(code)}")
    pids: list[int] = []
    try:
        for process in supervisor.processes:
            supervisor.start(process)

        def children():
            supervisor.pump(0.05)
            found = re.findall(r"\| child (\d+|none)$", out.getvalue(), re.M)
            return found if len(found) == 3 else None
        pids += [int(pid) for pid in wait_until(children, 30, 0, "the processes to start")
                 if pid != "none"]
        pids += [p.pid for p in supervisor.processes]
        started = time.monotonic()
        supervisor.stop(grace=1)
        assert time.monotonic() - started < 10, out.getvalue()
        # stop() returns once they are gone; a SIGKILLed orphan is reaped by init
        wait_until(lambda: not [pid for pid in pids if alive(pid)], 5, 0.05, "every process")
        stubborn, leaver, polite = supervisor.processes
        assert stubborn.returncode == -signal.SIGKILL and not stubborn.stopped_cleanly()
        assert leaver.returncode == 0 and polite.returncode == 0, out.getvalue()
        assert "killing what leaver left running" in out.getvalue(), out.getvalue()
    finally:  # a failure must not leave them to the machine
        for process in supervisor.processes:
            if process.popen and process.popen.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:][:1] != b"Z"


def test_these_tests_run_what_make_run_runs():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^run:.*\n\t(.+)$", makefile, re.M).group(1)
    assert recipe.replace("$(BIN)/python", sys.executable).split() == DEVRUN
