"""A local Redis Cluster of three primaries (no replicas) and a plain redis-server beside
it, for ``tests/deploy/test_cluster.py`` and ``bench.scaling``.

``redis-server --cluster-enabled yes`` three times, joined by ``redis-cli --cluster
create ... --cluster-replicas 0``, then waited for until every node says
``cluster_state:ok``. ``CLUSTER_BASE_PORT=P`` puts the nodes on ``P..P+2`` (their
cluster bus on ``P+50..``) and the plain server on ``P+10``; unset, free ports are taken.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import redis

from service.embedded_redis import free_port
from tests.harness import wait_until

__all__ = ["LocalCluster"]


def _node_port() -> int:
    """A free port below 55535: redis-cli's ``--cluster create`` refuses a node whose
    port + 10000 (the default bus port) is not a port, whatever ``--cluster-port`` says."""
    while True:
        port = free_port()
        if port < 55535:
            return port


class LocalCluster:
    """Three cluster-enabled redis-servers, every slot assigned, and a plain one (the broker)."""

    def __init__(self, directory: Path):
        base = int(os.environ.get("CLUSTER_BASE_PORT") or 0)
        self.ports = [base + i for i in range(3)] if base else [_node_port() for _ in range(3)]
        self.bus = [base + 50 + i for i in range(3)] if base else [free_port() for _ in range(3)]
        self.broker_port = base + 10 if base else free_port()
        self.dir = directory
        self.procs: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:2])

    def broker(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.broker_port}/{db}"

    def _server(self, port: int, *extra: str) -> None:
        self.procs.append(subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir),
             "--maxmemory-policy", "noeviction", "--logfile", str(self.dir / f"{port}.log"),
             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True))

    def start(self) -> "LocalCluster":
        for port, bus in zip(self.ports, self.bus):
            self._server(port, "--cluster-enabled", "yes", "--cluster-port", str(bus),
                         "--cluster-config-file", str(self.dir / f"nodes-{port}.conf"))
        self._server(self.broker_port)
        for port in self.ports + [self.broker_port]:
            wait_until(lambda: self._ping(port), 15, 0.05, f"redis-server on {port}")
        made = subprocess.run(
            [shutil.which("redis-cli"), "--cluster", "create",
             *(f"127.0.0.1:{p}" for p in self.ports), "--cluster-replicas", "0",
             "--cluster-yes"], capture_output=True, text=True, timeout=60)
        if made.returncode != 0:
            raise RuntimeError(made.stdout[-2000:] + made.stderr[-2000:])
        wait_until(lambda: all(self.node(p).cluster("INFO")["cluster_state"] == "ok"
                               for p in self.ports), 30, 0.1, "cluster_state:ok on every node")
        return self

    def _ping(self, port: int) -> bool:
        try:
            return self.node(port).ping()
        except redis.RedisError:
            for proc in self.procs:
                if proc.poll() is not None:
                    log = self.dir / f"{port}.log"
                    raise RuntimeError(log.read_text()[-2000:] if log.exists() else "exited")
            return False

    @staticmethod
    def node(port: int) -> redis.Redis:
        return redis.Redis(port=port, decode_responses=True, socket_timeout=5)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
