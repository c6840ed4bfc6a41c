"""The app built as Heroku's (and Dokku's) Python buildpack builds it, then run from its Procfile.

The buildpack copies the repository, makes a virtualenv, runs ``pip install -r
requirements.txt`` and nothing else (the app itself is not installed), then starts
the Procfile's commands in the checkout with the platform's variables. This does the
same in a temporary directory: the repository's tracked files, a fresh venv, the lock
(its hashes checked), and the ``web`` and ``worker`` commands with only ``PORT``,
``REDIS_URL`` and ``API_KEYS`` set, then sends a job through the HTTP API.

It needs the package index. Unreachable, the test skips, unless ``REQUIRE_BUILD=1``
(as CI sets) makes that a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from honcho.environ import parse_procfile

from service.embedded_redis import free_port
from tests.harness import ROOT, wait_until
from tests.processes import Process

API_KEY = "deploy-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}

pytestmark = pytest.mark.timeout(900)


# How this machine reaches the index (a proxy, the CA that proxy's certificates need):
# kept. Local wheel directories, extra indexes and constraints are not: they would stand
# in for the index the platform installs from.
_NETWORK = ("PIP_INDEX_URL", "PIP_CERT", "PIP_DEFAULT_TIMEOUT", "SSL_CERT_FILE", "SSL_CERT_DIR",
            "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy",
            "https_proxy", "no_proxy")


def pip_env(home: Path) -> dict[str, str]:
    """pip as the buildpack runs it: the package index and none of this machine's pip
    configuration files."""
    env = {k: os.environ[k] for k in _NETWORK if k in os.environ}
    env.update({"PATH": os.environ["PATH"], "HOME": str(home), "PIP_CONFIG_FILE": os.devnull,
                "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"})
    return env


def index_unreachable(python: Path, env: dict[str, str]) -> str | None:
    """None if pip reaches its package index, else why not."""
    try:
        probe = subprocess.run([str(python), "-m", "pip", "index", "versions", "pip",
                                "--timeout", "10", "--retries", "1"],
                               env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "pip did not reach the package index within 60 s"
    if probe.returncode != 0:
        lines = probe.stderr.strip().splitlines() or ["pip index failed"]
        return next((line for line in lines if "Could not fetch" in line), lines[-1])
    return None


def checkout(dest: Path) -> Path:
    """The repository's tracked files (as they are in the work tree) copied to ``dest``."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is not deployed
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def call(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     headers=AUTH,
                                     data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_a_buildpack_build_runs_the_procfile_and_a_job_succeeds(redis_url, tmp_path):
    app = checkout(tmp_path / "app")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = pip_env(tmp_path / "pip-home")
    why = index_unreachable(venv / "bin" / "python", env)
    if why is not None:
        if os.environ.get("REQUIRE_BUILD") == "1":
            pytest.fail(f"REQUIRE_BUILD=1 but the package index is unreachable: {why}")
        pytest.skip(f"the package index is unreachable ({why}); REQUIRE_BUILD=1 makes that an error")
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-r", "requirements.txt"],
                             cwd=app, env=env, capture_output=True, text=True, timeout=780)
    assert install.returncode == 0, f"pip install -r requirements.txt failed:\n{install.stderr[-4000:]}"
    assert "Hashes are required" not in install.stderr
    importable = subprocess.run([str(venv / "bin" / "python"), "-c", "import service"],
                                cwd=tmp_path, env=env, capture_output=True, text=True)
    assert importable.returncode != 0, "the app is installed in the venv; it must run from the checkout"

    processes = parse_procfile((app / "Procfile").read_text()).processes
    port = free_port()
    platform = {"PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin", "HOME": str(app),
                "PORT": str(port), "REDIS_URL": redis_url, "API_KEYS": f"deploy:{API_KEY}"}
    started = [Process(["/bin/sh", "-c", processes[name]], platform,
                       tmp_path / f"{name}.log", cwd=app) for name in ("web", "worker")]
    web, worker = started
    try:
        def web_answers():
            web.assert_alive("web")
            try:
                return call(port, "GET", "/readyz")[0] == 200
            except OSError:
                return False
        wait_until(web_answers, 60, 0.2, "the web process to be ready (a worker heartbeat)")

        status, created = call(port, "POST", "/v1/jobs",
                               {"type": "demo.echo", "payload": {"message": "deployed"}})
        assert status == 202, created

        def finished():
            worker.assert_alive("worker")
            job = call(port, "GET", f"/v1/jobs/{created['id']}")[1]
            return job if job["state"] in ("succeeded", "failed", "canceled") else None
        job = wait_until(finished, 60, 0.1, "the job to end")
        assert job["state"] == "succeeded", (job, worker.log())
        assert job["result"] == {"message": "deployed"}
    finally:
        for process in started:
            process.stop()
