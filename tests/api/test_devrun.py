"""``make run`` (``python service/devrun.py``) as a developer meets it: a real devrun
with its embedded Redis, its banner, a job through the API, and Ctrl-C."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys

from service.devrun import dev_command
from service.embedded_redis import free_port
from tests.harness import wait_until
from tests.processes import ROOT, Process


def devrun_env(port: int, **extra: str) -> dict[str, str]:
    """An environment as a developer's shell has it: no Redis, keys or webhook values."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SWITCHYARD_", "CELERY_", "QUEUE_", "API_KEYS", "REDIS_URL",
                                "WEBHOOK_", "HOOK_", "RATE_LIMIT"))}
    env.update({"PORT": str(port), "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


DEVRUN = [sys.executable, "service/devrun.py"]
"""What ``make run`` runs (the Makefile's run target), from the repository's root."""


def _as_a_terminal_starts_it() -> None:
    # A shell that is not interactive starts a command it runs in the background (`&`)
    # with SIGINT ignored, and an ignored signal stays ignored across exec: a suite run
    # that way handed devrun an ignored SIGINT, so a Ctrl-C before its first line (which
    # only the default action can answer) was lost. A terminal's job starts with the
    # default action: so does devrun here, whatever started the tests.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Devrun(Process):
    """A devrun subprocess in its own process group, its output in a file, with SIGINT
    as a terminal gives it (:func:`_as_a_terminal_starts_it`)."""

    preexec = staticmethod(_as_a_terminal_starts_it)

    def __init__(self, env: dict[str, str], log_path):
        super().__init__(DEVRUN, env, log_path)

    def output(self) -> str:
        return self.log(tail=None)

    def close(self) -> None:
        """Stop devrun the way a developer does, so it stops its processes: each of them
        runs in a process group of its own, which a kill of devrun's group would miss."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                pass
        self.stop(timeout=0)


def request(port: int, method: str, path: str, key: str, body: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Authorization": f"Bearer {key}",
                          "Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, json.loads(response.read() or b"null")


def wait_for_banner_key(devrun: Devrun, port: int) -> str:
    """The API key the banner prints, once the web process answers ``/healthz``."""
    def banner_and_answer():
        assert devrun.alive(), devrun.output()
        key = re.search(r"API key:\s+(sy_\S+)", devrun.output())
        if not key:
            return None
        try:
            status, _ = request(port, "GET", "/healthz", key.group(1))
        except OSError:
            return None
        return key.group(1) if status == 200 else None
    return wait_until(banner_and_answer, 60, 0.1, "devrun's web process to answer")


def wait_until_up(devrun: Devrun, port: int, key: str) -> None:
    """Until the worker has run a job and the scheduler's loop is running: both have their
    signal handlers by then. One stopped while it still starts dies of the SIGTERM
    (rc -15) instead of stopping cleanly."""
    status, job = request(port, "POST", "/v1/jobs", key,
                          {"type": "demo.echo", "payload": {"message": "up"}})
    assert status == 202, job

    def up():
        _, body = request(port, "GET", f"/v1/jobs/{job['id']}", key)
        return body["state"] == "succeeded" and "Registering birth" in devrun.output()
    wait_until(up, 60, 0.1, "the worker to run a job and the scheduler to start")


def test_commands_are_execed_and_the_web_process_binds_loopback():
    assert dev_command("web", "gunicorn wsgi:app --bind 0.0.0.0:$PORT") == (
        "exec gunicorn wsgi:app --bind 127.0.0.1:$PORT")
    assert dev_command("worker", "flask --app wsgi worker") == "exec flask --app wsgi worker"
    assert dev_command("worker", "exec flask --app wsgi worker") == "exec flask --app wsgi worker"


def test_make_run_banner_dev_values_a_job_and_a_clean_ctrl_c(tmp_path):
    port = free_port()
    devrun = Devrun(devrun_env(port), tmp_path / "devrun.log")
    try:
        key = wait_for_banner_key(devrun, port)
        out = devrun.output()
        assert "WEBHOOK_ALLOWED_HOSTS=127.0.0.1,localhost" in out
        assert re.search(r"WEBHOOK_SIGNING_SECRET=whsec_\S+", out), out
        assert re.search(r"HOOK_SECRETS=dev:whsec_\S+", out), out

        # the banner's curl: enqueue demo.echo, then poll it until the worker ran it
        status, job = request(port, "POST", "/v1/jobs", key,
                              {"type": "demo.echo", "payload": {"message": "hello"}})
        assert status == 202, job

        def ended():
            _, body = request(port, "GET", f"/v1/jobs/{job['id']}", key)
            return body if body["state"] in ("succeeded", "failed", "canceled") else None
        done = wait_until(ended, 60, 0.1, "the worker to run the job")
        assert done["state"] == "succeeded" and done["result"] == {"message": "hello"}
        # the operator key the banner prints reaches every tenant's jobs and the queues
        operator = re.search(r"operator:\s+(sy_\S+)", out).group(1)
        status, listed = request(port, "GET", "/v1/jobs", operator)
        assert status == 200 and job["id"] in [j["id"] for j in listed["items"]]
        status, queues = request(port, "GET", "/v1/queues", operator)
        assert status == 200 and queues["items"][0]["queued"] is not None, queues

        # Ctrl-C once everything is up, as a developer would after trying it
        wait_until_up(devrun, port, key)
        os.kill(devrun.proc.pid, signal.SIGINT)
        assert devrun.proc.wait(90) == 0, devrun.output()[-4000:]
        assert "rc=-15" not in devrun.output(), devrun.output()[-4000:]
        wait_until(devrun.group_gone, 30, 0.1, "every process of make run to stop")
    finally:
        devrun.close()


def test_a_taken_port_fails_with_one_line_naming_port_before_any_banner(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "service.devrun"], cwd=ROOT,
                              env=devrun_env(port), capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "Switchyard is starting" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"PORT={port}" in lines[0], done.stderr
