"""Several "hosts" on one machine that share only a network: Linux network namespaces.

Each host is a network namespace of its own (``ip netns``) with its own loopback and
one address on a private /24, joined to the others by veth pairs on a bridge in the
root namespace, which holds the subnet's first address: the test or bench process
(root namespace) reaches every host over the bridge, the hosts reach each other, and
nothing one host binds on 127.0.0.1 is reachable from another. A process is put on a
host by prefixing its command with :meth:`Host.argv` (``ip netns exec <name>``).

Creating namespaces needs root and iproute2; :func:`unavailable` says why not, for a
skip. Everything is named ``sy-<8 hex>-<host>`` (the bridge and veths ``sy<8 hex>...``,
as interface names hold 15 characters at most), so concurrent runs never collide, and
:meth:`Network.close` removes it all -- after SIGKILLing every process still in a
namespace (``ip netns pids``), whoever started it.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import uuid

__all__ = ["Host", "Network", "unavailable"]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=check)


def unavailable() -> str | None:
    """None when namespaces can be made here, else the reason (for a skip)."""
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not on PATH"
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    probe = f"sy-probe-{uuid.uuid4().hex[:8]}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    _ip("netns", "delete", probe, check=False)
    return None


class Host:
    """One namespace: its name, its address on the bridge."""

    def __init__(self, role: str, namespace: str, address: str):
        self.role, self.namespace, self.address = role, namespace, address

    def argv(self, command: list[str]) -> list[str]:
        """``command`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.namespace, *command]

    def pids(self) -> list[int]:
        out = _ip("netns", "pids", self.namespace, check=False).stdout
        return [int(p) for p in out.split()]

    def run(self, command: list[str], timeout: float = 20) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(command), capture_output=True, text=True, timeout=timeout)


class Network:
    """A bridge and one namespace per role, e.g. ``Network(["redis", "web", "worker"])``;
    ``net["web"].address`` is that host's address. Use as a context manager, or call
    :meth:`close` (it is safe on a half-built network)."""

    def __init__(self, roles: list[str] | tuple[str, ...]):
        self.tag = uuid.uuid4().hex[:8]
        self.bridge = f"sy{self.tag}br"
        self.hosts: dict[str, Host] = {}
        self._veths: list[str] = []
        self.subnet = ""
        try:
            self._build(list(roles))
        except BaseException:
            self.close()
            raise

    def _free_subnet(self) -> str:
        """A 10.213.x.0/24 that no route of this machine covers yet."""
        taken = _ip("-4", "route", "show").stdout + _ip("-4", "addr", "show").stdout
        for _ in range(50):
            prefix = f"10.213.{random.randrange(1, 255)}"
            if f"{prefix}." not in taken:
                return prefix
        raise RuntimeError("no free 10.213.x.0/24 subnet left")

    def _build(self, roles: list[str]) -> None:
        prefix = self._free_subnet()
        self.subnet = f"{prefix}.0/24"
        self.gateway = f"{prefix}.1"
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for index, role in enumerate(roles):
            namespace = f"sy-{self.tag}-{role}"
            address = f"{prefix}.{index + 2}"
            outer, inner = f"sy{self.tag}v{index}", f"sy{self.tag}p{index}"
            _ip("netns", "add", namespace)
            self.hosts[role] = Host(role, namespace, address)
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            self._veths.append(outer)
            _ip("link", "set", outer, "master", self.bridge)
            _ip("link", "set", outer, "up")
            _ip("link", "set", inner, "netns", namespace)
            for args in (("link", "set", "lo", "up"),
                         ("link", "set", inner, "name", "eth0"),
                         ("addr", "add", f"{address}/24", "dev", "eth0"),
                         ("link", "set", "eth0", "up")):
                _ip("-n", namespace, *args)

    def __getitem__(self, role: str) -> Host:
        return self.hosts[role]

    def __enter__(self) -> "Network":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """SIGKILL what still runs in each namespace, then delete namespaces, veths, bridge."""
        for host in self.hosts.values():
            for pid in host.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for host in self.hosts.values():
            _ip("netns", "delete", host.namespace, check=False)  # takes its veth end along
        for veth in self._veths:
            _ip("link", "delete", veth, check=False)
        _ip("link", "delete", self.bridge, check=False)
        self.hosts.clear()
        self._veths.clear()
