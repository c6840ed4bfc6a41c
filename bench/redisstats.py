"""Counting the Redis commands a job costs.

``INFO commandstats`` counts every command Redis ran, including the ones a Lua script
ran through ``redis.call``; ``MONITOR`` shows those as coming from ``lua``. So the
total per job comes from commandstats deltas, and the part that ran inside scripts
from MONITOR: "client commands" (what clients sent, each command of a pipeline
counted once, scripts counted as their one EVALSHA) is the total less that part.
"""

from __future__ import annotations

import collections
import dataclasses
import socket
import threading
import time
import uuid

import redis

__all__ = ["CommandCounter", "Tally"]

# The bench's own bookkeeping, never charged to an engine.
OWN_COMMANDS = {"info", "echo", "monitor"}


@dataclasses.dataclass
class Tally:
    """Commands by name: ``total`` (commandstats) and ``in_scripts`` (MONITOR's lua lines)."""

    total: collections.Counter
    in_scripts: collections.Counter

    def __sub__(self, other: "Tally") -> "Tally":
        return Tally(_minus(self.total, other.total), _minus(self.in_scripts, other.in_scripts))

    def scaled(self, factor: float) -> "Tally":
        return Tally(collections.Counter({k: v * factor for k, v in self.total.items()}),
                     collections.Counter({k: v * factor for k, v in self.in_scripts.items()}))

    def without(self, commands: collections.Counter) -> "Tally":
        """Less commands the bench itself sent (they never run inside scripts)."""
        return Tally(_minus(self.total, commands), self.in_scripts.copy())

    @property
    def total_count(self) -> float:
        return sum(self.total.values())

    @property
    def script_count(self) -> float:
        return sum(self.in_scripts.values())

    @property
    def client_count(self) -> float:
        return self.total_count - self.script_count


def _minus(a: collections.Counter, b: collections.Counter) -> collections.Counter:
    out = collections.Counter()
    for key in set(a) | set(b):
        value = a.get(key, 0) - b.get(key, 0)
        if value:
            out[key] = value
    return out


class CommandCounter:
    """Snapshots of what Redis ran, taken at exact points of its command stream.

    A MONITOR connection reads the stream in a thread; :meth:`mark` sends an ECHO with
    a fresh token and waits until the monitor has seen it, so the script counts of a
    snapshot stop exactly there.
    """

    def __init__(self, host: str, port: int):
        self.client = redis.Redis(host=host, port=port, decode_responses=True)
        self._sock = socket.create_connection((host, port))
        self._sock.sendall(b"MONITOR\r\n")
        self._lock = threading.Lock()
        self._in_scripts: collections.Counter = collections.Counter()
        self._seen_tokens: dict[str, collections.Counter] = {}
        self._cond = threading.Condition(self._lock)
        self._marks = 0
        self._thread = threading.Thread(target=self._read, name="bench-monitor", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        stream = self._sock.makefile("rb")
        try:
            self._consume(stream)
        except OSError:  # close() shut the socket; a remote server may answer with a reset
            pass

    def _consume(self, stream) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace")
            if "] \"" not in line:
                continue
            source, _, rest = line.partition("] \"")
            name = rest.split("\"", 1)[0].lower()
            with self._cond:
                if source.endswith(" lua"):
                    self._in_scripts[name] += 1
                elif name == "echo" and "bench-mark-" in rest:
                    token = rest.split("\"")[2]
                    self._seen_tokens[token] = self._in_scripts.copy()
                    self._cond.notify_all()

    def mark(self, timeout: float = 10.0) -> Tally:
        """Everything Redis has run so far, as one consistent snapshot."""
        token = f"bench-mark-{uuid.uuid4().hex}"
        # One transaction, so no other client's command can fall between the marker the
        # monitor sees and the counters INFO reads.
        pipe = self.client.pipeline(transaction=True)
        pipe.echo(token)
        pipe.info("commandstats")
        stats = pipe.execute()[1]
        self._marks += 1
        deadline = time.monotonic() + timeout
        with self._cond:
            while token not in self._seen_tokens:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("MONITOR did not deliver the bench's marker")
                self._cond.wait(left)
            in_scripts = self._seen_tokens.pop(token)
        total = collections.Counter()
        for key, value in stats.items():
            name = key.removeprefix("cmdstat_").lower()
            if name not in OWN_COMMANDS:
                total[name] = int(value["calls"])
        # This transaction's MULTI is counted by now, its EXEC only after INFO ran.
        total["multi"] -= self._marks
        total["exec"] -= self._marks - 1
        return Tally(total, in_scripts)

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self.client.close()
