"""The Procfile's processes as they run in production: gunicorn, `flask worker`, `flask scheduler`."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import sys
import uuid

import pytest

import service.jobs  # noqa: F401 - the tests enqueue demo jobs from this process
from adapters import JobState, create_adapter
from service.embedded_redis import free_port
from tests.api.conftest import ACME, gunicorn_argv, service_env
from tests.harness import FAST_SETTINGS, ROOT, WORKER_ENGINES, wait_until
from tests.processes import Process


def _chunked_post(port: int, body: bytes, chunk: int = 256) -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    pieces = (body[i:i + chunk] for i in range(0, len(body), chunk))
    conn.request("POST", "/v1/jobs", body=pieces, encode_chunked=True,
                 headers={**ACME, "Content-Type": "application/json",
                          "Transfer-Encoding": "chunked"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.headers), json.loads(data)


def test_chunked_body_over_the_limit_is_413_on_gunicorn(gunicorn):
    port = gunicorn(MAX_CONTENT_LENGTH="2048")
    small = json.dumps({"type": "demo.echo", "payload": {"message": "chunked"}}).encode()
    status, headers, body = _chunked_post(port, small)
    assert status == 202, body  # a chunked body under the limit is read, not dropped
    assert body["payload"] == {"message": "chunked"}

    big = json.dumps({"type": "demo.echo", "payload": {"message": "x" * 10_000}}).encode()
    status, headers, body = _chunked_post(port, big)
    assert status == 413
    assert headers["Content-Type"] == "application/problem+json"
    assert body["status"] == 413 and body["type"] == "urn:switchyard:problem:content-too-large"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/v1/jobs", headers=ACME)
    items = json.loads(conn.getresponse().read())["items"]
    assert [i["payload"] for i in items] == [{"message": "chunked"}]


def _flask(command: list[str], env: dict, log_path) -> Process:
    return Process([sys.executable, "-m", "flask", "--app", "wsgi", *command], env, log_path)


@pytest.mark.parametrize("backend", WORKER_ENGINES)
def test_worker_finishes_the_job_in_hand_on_sigterm(backend, redis_url, tmp_path):
    prefix = f"t{uuid.uuid4().hex[:8]}."
    env = service_env(redis_url, QUEUE_BACKEND=backend, SWITCHYARD_QUEUE_PREFIX=prefix,
                      **FAST_SETTINGS)
    adapter = create_adapter(backend, _settings(env))
    worker = _flask(["worker", "-c", "1", "-n", "sigterm-test"], env, tmp_path / "worker.log")
    try:
        wait_until(lambda: worker.assert_alive() and adapter.ledger.workers(30), 30, 0.05,
                   "the worker to come up")
        job = adapter.enqueue("demo.sleep", {"seconds": 2, "steps": 20})
        wait_until(lambda: worker.assert_alive() and adapter.get(job.id).progress, 30, 0.05,
                   "the job to report progress")
        # Heroku and honcho signal the whole process group, children included
        assert worker.terminate(30) == 0, worker.log()
        done = adapter.get(job.id)
        assert done.state is JobState.SUCCEEDED, (done, worker.log())
        assert done.attempts == 1 and done.lost_deliveries == 0
        assert adapter.ledger.workers(30) == []
    finally:
        worker.stop()
        adapter.close()


@pytest.mark.parametrize("backend", WORKER_ENGINES)
def test_idle_worker_stops_at_once_on_sigterm(backend, redis_url, tmp_path):
    env = service_env(redis_url, QUEUE_BACKEND=backend, **FAST_SETTINGS)
    adapter = create_adapter(backend, _settings(env))
    worker = _flask(["worker", "-c", "2"], env, tmp_path / "worker.log")
    try:
        job = adapter.enqueue("demo.echo", {"message": "warm-up"})
        wait_until(lambda: worker.assert_alive() and adapter.get(job.id).state.ended, 30, 0.05,
                   "the worker to run a job")  # so it is up and idle, not still starting
        assert worker.terminate(10) == 0, worker.log()
    finally:
        worker.stop()
        adapter.close()


@pytest.mark.parametrize("backend", WORKER_ENGINES)
def test_scheduler_fires_schedules_and_stops_on_sigterm(backend, redis_url, tmp_path):
    env = service_env(redis_url, QUEUE_BACKEND=backend, **FAST_SETTINGS)
    adapter = create_adapter(backend, _settings(env))
    scheduler = _flask(["scheduler", "--poll", "0.1"], env, tmp_path / "scheduler.log")
    try:
        beat = wait_until(lambda: scheduler.assert_alive() and adapter.ledger.workers(30), 30, 0.05,
                          "the scheduler's heartbeat")
        assert beat[0]["role"] == "scheduler"
        adapter.schedules().create("acme", "tick", "demo.echo", {"message": "tick"}, every=1)
        fired = wait_until(lambda: scheduler.assert_alive() and adapter.list(tenant="acme")[0],
                           15, 0.05, "the schedule to fire")
        assert fired[0].type == "demo.echo" and fired[0].payload == {"message": "tick"}
        wait_until(lambda: adapter.schedules().get("acme", "tick").last_job_id, 15, 0.05,
                   "the beat that fired it to finish")
        assert scheduler.terminate(15) == 0, scheduler.log()
        assert adapter.ledger.workers(30) == []
    finally:
        scheduler.stop()
        adapter.close()


def test_keys_prints_a_fresh_key(redis_url):
    env = service_env(redis_url)
    keys = [subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "keys", *extra],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                           check=True).stdout.strip() for extra in ([], ["--tenant", "acme"])]
    assert re.fullmatch(r"sy_[A-Za-z0-9_-]{43}", keys[0])
    assert re.fullmatch(r"acme:sy_[A-Za-z0-9_-]{43}", keys[1])


def _settings(env: dict):
    from adapters import AdapterSettings

    return AdapterSettings.from_env(env)


def _app_dir(path) -> str:
    """A directory of its own for one process, as on a machine of its own: the app's
    ``wsgi.py`` and ``gunicorn.conf.py``, nothing else (the packages come from the installed code)."""
    path.mkdir()
    for name in ("wsgi.py", "gunicorn.conf.py"):
        shutil.copy(ROOT / name, path / name)
    return path


@pytest.mark.parametrize("backend", WORKER_ENGINES)
def test_a_report_made_by_a_worker_elsewhere_downloads_from_web(backend, redis_url, tmp_path):
    """web and worker share only Redis: no directory, no STORAGE_DIR."""
    env = service_env(redis_url, QUEUE_BACKEND=backend, RATE_LIMIT="6000/minute")
    env.pop("STORAGE_DIR", None)
    port = free_port()
    web = Process(gunicorn_argv(port), env, tmp_path / "web.log", cwd=_app_dir(tmp_path / "web"))
    worker = Process([sys.executable, "-m", "flask", "--app", "wsgi", "worker"], env,
                     tmp_path / "worker.log", cwd=_app_dir(tmp_path / "worker"))
    try:
        def call(method, path, body=None):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request(method, path, body=json.dumps(body) if body else None,
                         headers={**ACME, "Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, response.getheader("Content-Type"), response.read()

        def up():
            web.assert_alive("web") and worker.assert_alive("the worker")
            try:
                return call("GET", "/healthz")[0] == 200
            except OSError:
                return False
        wait_until(up, 30, 0.1, "gunicorn to answer")
        status, _, body = call("POST", "/v1/jobs", {"type": "report.generate",
                                                    "payload": {"kind": "activity"}})
        assert status == 202, body
        job_id = json.loads(body)["id"]

        def ended():
            worker.assert_alive("the worker")
            state = json.loads(call("GET", f"/v1/jobs/{job_id}")[2])["state"]
            return state if state in ("succeeded", "failed") else None
        assert wait_until(ended, 60, 0.1, "the report to be made") == "succeeded"
        status, content_type, pdf = call("GET", f"/v1/reports/{job_id}/file")
        assert status == 200, pdf
        assert content_type == "application/pdf" and pdf.startswith(b"%PDF-")
        assert not list(tmp_path.glob("*/var")), "a process wrote to its own disk"
    finally:
        web.stop()
        worker.stop()


def _raw_request(port: int, request: bytes) -> tuple[int, dict, bytes]:
    """Send bytes as they are (http.client would refuse to send the malformed ones)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /v1/jobs?q=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
    (b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120))
     + b"\r\n", 431),
    (b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400),
    (b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400),
    (b"GET /v1/jobs HTTP/9.9\r\nHost: x\r\n\r\n", 400),
])
def test_gunicorns_own_error_answers_are_problems(gunicorn, request_bytes, status):
    port = gunicorn()
    got, headers, body = _raw_request(port, request_bytes)
    assert got == status, body
    assert headers["content-type"] == "application/problem+json"
    assert int(headers["content-length"]) == len(body)
    problem = json.loads(body)
    assert set(problem) == {"type", "title", "status", "detail", "errors"}
    assert problem["status"] == status and problem["errors"] == {}
    assert problem["type"].startswith("urn:switchyard:problem:")
