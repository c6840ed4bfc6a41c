"""An engine's deliveries, written by the ledger's create script with the records.

When an engine keeps its queues in the ledger's own Redis (``shares_ledger_redis``), its
``publish(deliveries, pipeline)`` writes each message with plain write commands (RQ: the
job's HSET and the queue's RPUSH; Celery on Redis: kombu's LPUSH and PEXPIRE). The client
hands it a :class:`Riders` as ``pipeline``: it takes those commands as a pipeline would
(redis-py's own command methods build them) but sends nothing; the create script that
writes the records then runs them, in the same call. A record and its delivery are
one script call, so they commit together (Redis runs a script whole, with nothing in
between), and an enqueue is one client command where MULTI, the script, each write and
EXEC were several.

Only single-key writes ride (:data:`WRITES`); the key goes in the script's KEYS. Their
replies are not seen, as in a MULTI. See ``adapters/lua/create.lua``.
"""

from __future__ import annotations

from typing import Any

from redis.commands.core import CoreCommands

__all__ = ["Riders", "WRITES"]

WRITES = frozenset({"HSET", "RPUSH", "LPUSH", "SADD", "ZADD", "PEXPIRE", "EXPIRE", "XADD"})
"""What may ride; create.lua refuses anything else before it writes a thing."""


class Riders(CoreCommands):
    """Write commands, taken the way a redis-py pipeline takes them, kept for the
    create script: ``keys`` (one per command) and ``args`` (per command its name, its
    argument count, its arguments after the key)."""

    def __init__(self) -> None:
        self.keys: list = []
        self.args: list = []

    def execute_command(self, *args: Any, **options: Any) -> "Riders":
        name = str(args[0]).upper()
        if name not in WRITES or len(args) < 2:
            raise TypeError(f"{name} cannot ride with the ledger's create script: only "
                            f"single-key writes can ({', '.join(sorted(WRITES))})")
        self.keys.append(args[1])
        self.args += [name, len(args) - 2, *args[2:]]
        return self

    def __len__(self) -> int:
        return len(self.keys)
