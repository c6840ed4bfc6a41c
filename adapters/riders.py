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
    argument count, its arguments after the key; and the templates of
    :meth:`hset_shared`, which have no key)."""

    def __init__(self) -> None:
        self.keys: list = []
        self.args: list = []
        self._shared: dict[int, tuple[int, dict]] = {}  # id -> (template number, dict)
        self._templates = 0

    def execute_command(self, *args: Any, **options: Any) -> "Riders":
        name = str(args[0]).upper()
        if name not in WRITES or len(args) < 2:
            raise TypeError(f"{name} cannot ride with the ledger's create script: only "
                            f"single-key writes can ({', '.join(sorted(WRITES))})")
        self.keys.append(args[1])
        self.args += [name, len(args) - 2, *args[2:]]
        return self

    def hset_shared(self, name: Any, shared: dict, mapping: dict) -> "Riders":
        """``HSET name`` of ``shared`` and ``mapping`` together, where ``shared`` is the
        same dict for many of the call's hashes (an engine's fixed fields, not changed
        meanwhile): its fields go once per call, as a template (``=``) the script copies
        into each such HSET (``HSET=``), so a batch sends a few arguments a hash, not
        every field's."""
        known = self._shared.get(id(shared))  # the same dict: the same template
        if known is None or known[1] is not shared:
            flat = [x for pair in shared.items() for x in pair]
            self._templates += 1
            known = self._shared[id(shared)] = (self._templates, shared)
            self.args += ["=", len(flat), *flat]
        index = known[0]
        own = [x for pair in mapping.items() for x in pair]
        self.keys.append(name)
        self.args += ["HSET=", len(own) + 1, index, *own]
        return self

    def __len__(self) -> int:
        return len(self.keys)
