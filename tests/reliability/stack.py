"""The Procfile's processes as a platform runs them, each on a "machine" of its own.

Every process is started with the Procfile's own command line, in a directory of its
own that holds what a deploy puts there (the app's ``wsgi.py``, the team's own job
module) and nothing else, with only the settings the README tells a user to set.
They share nothing but Redis (and RabbitMQ on an amqp leg): a report, a log, a
temp file written by one is out of the others' reach, as on separate machines.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from honcho.environ import parse_procfile

from adapters import resolve_engine
from service.embedded_redis import answers_ping, find_redis_server, free_port
from tests.harness import ROOT, wait_until
from tests.processes import Process

API_KEY = "chaos-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
PROCFILE = parse_procfile((ROOT / "Procfile").read_text()).processes

# The team's own job module, deployed beside wsgi.py (JOB_MODULES names it).
CHAOS_JOBS = '''
"""Short jobs for the fault suite; every run is logged in Redis (keys chaos:*)."""
import os, sys, time
import redis

from adapters import resolve_engine
from adapters import job

_r = None

def r():
    global _r
    if _r is None or _r.connection_pool.pid != os.getpid():
        _r = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    return _r

@job("chaos.work", max_retries=0)
def work(ctx, n, seconds=0.02):
    """Log the run, sleep a little, return n."""
    r().rpush("chaos:starts:" + ctx.job_id, repr(time.time()))
    time.sleep(seconds)
    return n

@job("chaos.exit", max_retries=2, retry_backoff=0.1)
def leave(ctx, how):
    """Leave the way ``how`` says."""
    r().rpush("chaos:starts:" + ctx.job_id, repr(time.time()))
    if how == "sys.exit":
        sys.exit(3)
    if how == "KeyboardInterrupt":
        raise KeyboardInterrupt
    if how == "MemoryError":
        raise MemoryError("pretend the heap ran out")
    os._exit(7)
'''


class PrivateRedis:
    """A redis-server of the test's own with AOF on, that can be stopped and started again
    on the same port and data directory (the operator setup the README asks for)."""

    def __init__(self):
        self.binary = find_redis_server()
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="switchyard-chaos-redis-")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "PrivateRedis":
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--appendonly", "yes", "--save", "", "--maxmemory-policy", "noeviction",
             "--logfile", os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until(self._answers, 15, 0.02, "redis-server to answer")
        return self

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited: {Path(self.dir, 'redis.log').read_text()}")
        return answers_ping(self.port)

    def stop(self, how: str = "shutdown") -> None:
        """``shutdown`` (SHUTDOWN, as a restart by the operator) or ``kill`` (SIGKILL)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if how == "kill":
            self.proc.kill()
        else:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"SHUTDOWN\r\n")
        self.proc.wait(15)

    def close(self) -> None:
        self.stop("kill")
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRabbit:
    """A RabbitMQ node of the test's own (its own name, ports and data), whose app can be
    stopped and started, so the machine's RabbitMQ is never touched."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="switchyard-chaos-rabbit-")
        shutil.chown(self.dir, "rabbitmq", "rabbitmq")
        plugins = Path(self.dir, "plugins")
        plugins.write_text("[].")
        shutil.chown(plugins, "rabbitmq")
        self.port, self.dist_port = free_port(), free_port()
        self.node = f"sy-chaos-{os.getpid()}-{self.port}@localhost"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self, timeout: float = 60) -> "PrivateRabbit":
        env = {**os.environ, "RABBITMQ_NODENAME": self.node, "RABBITMQ_NODE_PORT": str(self.port),
               "RABBITMQ_DIST_PORT": str(self.dist_port),
               "RABBITMQ_MNESIA_BASE": f"{self.dir}/mnesia", "RABBITMQ_LOG_BASE": f"{self.dir}/log",
               "RABBITMQ_PID_FILE": f"{self.dir}/pid",
               "RABBITMQ_ENABLED_PLUGINS_FILE": f"{self.dir}/plugins",
               "RABBITMQ_FEATURE_FLAGS_FILE": f"{self.dir}/ff",
               "RABBITMQ_CONFIG_FILE": f"{self.dir}/none"}
        self.proc = subprocess.Popen(["rabbitmq-server"], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self.wait_open(timeout)
        return self

    def _open(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def wait_open(self, timeout: float = 60) -> None:
        wait_until(self._open, timeout, 0.2, "the RabbitMQ node's AMQP port")

    def ctl(self, *args: str) -> None:
        subprocess.run(["rabbitmqctl", "-n", self.node, *args], check=True, timeout=60,
                       capture_output=True)

    def close(self) -> None:
        try:
            self.ctl("stop")
        except Exception:  # noqa: BLE001 - it may be half up; kill what is left
            pass
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        subprocess.run(["pkill", "-9", "-f", self.node], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


class Dyno(Process):
    """One Procfile process, as a platform's dyno: its command, its own directory."""

    def __init__(self, kind: str, home: Path, env: dict[str, str], host=None):
        self.kind, self.home = kind, home
        self.starts = 0
        self.exits: list[int | None] = []
        # as a platform runs a Procfile line: a shell expands $PORT and execs the command
        argv = ["/bin/sh", "-c", f"exec {PROCFILE[kind]}"]
        # on a host of its own (tests/netns.py): the same command, in that host's namespace
        super().__init__(host.argv(argv) if host else argv, env, home / f"{kind}.log", cwd=home)

    def start(self) -> None:
        self.starts += 1
        super().start()

    def kill(self) -> int | None:
        """SIGKILL the whole process group, as an OOM kill or a lost machine."""
        code = super().kill()
        self.exits.append(code)
        return code

    def terminate(self, timeout: float = 30) -> int | None:
        """SIGTERM to the group, as a platform restart; SIGKILL after ``timeout``."""
        code = super().terminate(timeout)
        self.exits.append(code)
        return code

    def restart_after_kill(self) -> None:
        self.kill()
        self.start()

    def log(self, tail: int | None = 4000) -> str:
        return super().log(tail)

    def story(self) -> str:
        """What the process did, for the report."""
        exits = ", ".join("SIGKILL" if c == -9 else ("SIGTERM" if c == -15 else f"exit {c}")
                          for c in self.exits)
        state = "running" if self.alive() else f"stopped ({self.proc.returncode})"
        return f"{self.kind}: started {self.starts}x{', ' + exits if exits else ''}; {state}"


# the fault suite's settings beyond the essential ones (all documented knobs)
CHAOS_SETTINGS = {
    "JOB_MODULES": "service.jobs,chaosjobs",
    # a lost worker's job comes back in 5 s, not 30 s
    "SWITCHYARD_LEASE_SECONDS": "5",
}


class Stack:
    """web, worker and scheduler from the Procfile, each in a directory of its own.

    ``settings`` are added to the essential ones (``PORT``, ``REDIS_URL``,
    ``QUEUE_BACKEND``, ``API_KEYS``). ``hosts`` (kind -> a :class:`tests.netns.Host`) puts
    each process on a host of its own that shares only the network; the web process is
    then reached at its host's address, not on loopback.
    """

    def __init__(self, backend: str, redis_url: str, base: Path, broker_url: str | None = None,
                 kinds: tuple[str, ...] = ("web", "worker", "scheduler"),
                 settings: dict[str, str] | None = None, hosts: dict | None = None):
        self.port = free_port()
        self.base = base
        hosts = hosts or {}
        self.address = hosts["web"].address if "web" in hosts else "127.0.0.1"
        self.env = {
            "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
            "HOME": str(base),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "PORT": str(self.port),
            "REDIS_URL": redis_url,
            "QUEUE_BACKEND": backend,
            "API_KEYS": f"chaos:{API_KEY}",
            **(CHAOS_SETTINGS if settings is None else settings),
            "PYTHONUNBUFFERED": "1",
            # the code under test, also from a checkout other than the one installed
            "PYTHONPATH": str(ROOT),
        }
        if broker_url:
            self.env[resolve_engine(backend).broker_variable] = broker_url
        self.processes: dict[str, Dyno] = {}
        for kind in kinds:
            home = base / kind
            home.mkdir(parents=True)
            for name in ("wsgi.py", "gunicorn.conf.py"):  # what a deploy puts beside the code
                shutil.copy(ROOT / name, home / name)
            (home / "chaosjobs.py").write_text(CHAOS_JOBS)
            self.processes[kind] = Dyno(kind, home, self.env, hosts.get(kind))
        if "web" in kinds:
            wait_until(lambda: self._check() and self.get("/healthz")[0] == 200, 60, 0.1,
                       "web to answer")

    def __getitem__(self, kind: str) -> Dyno:
        return self.processes[kind]

    def _check(self) -> bool:
        for process in self.processes.values():
            if process.starts and process.proc.poll() is not None and process.kind == "web":
                raise AssertionError(f"web exited:\n{process.log()}")
        return True

    # -- HTTP, as a client would ---------------------------------------------------------
    def request(self, method: str, path: str, body=None) -> tuple[int, dict, object]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://{self.address}:{self.port}{path}", data=data,
                                     method=method,
                                     headers={**AUTH, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=15) as response:
                status, headers, raw = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            status, headers, raw = exc.code, dict(exc.headers), exc.read()
        except OSError:
            return 0, {}, None
        try:
            return status, headers, json.loads(raw) if raw else None
        except ValueError:
            return status, headers, raw

    def get(self, path: str):
        return self.request("GET", path)

    def post_job(self, job_type: str, payload: dict, options: dict | None = None):
        return self.request("POST", "/v1/jobs", {"type": job_type, "payload": payload,
                                                 "options": options or {}})

    def wait_for_worker(self, timeout: float = 60) -> None:
        def ready():
            status, _, body = self.get("/readyz")
            return status == 200 and body["workers"] >= 1
        wait_until(ready, timeout, 0.1, "a live worker (/readyz)")

    def stories(self) -> list[str]:
        return [p.story() for p in self.processes.values()]

    def close(self) -> None:
        for process in self.processes.values():  # all at once, then wait for each
            if process.alive():
                process.signal(signal.SIGTERM)
        for process in self.processes.values():
            process.stop(timeout=20, signalled=True)


def time_of(fn, timeout: float, message: str) -> float:
    """Seconds until ``fn()`` is truthy (fails at ``timeout``)."""
    started = time.monotonic()
    wait_until(fn, timeout, 0.05, message)
    return time.monotonic() - started
