"""The record of every inbound hook in Redis: what arrived, which job handles it, when it was done.

Keys (``ns`` is the ledger's namespace; the tenant is URL-quoted so no name can
stand for another):

    {ns}hook:{tenant}:{source}:{webhook id}   hash: the hook (see :func:`public_view`)
    {ns}hooks:events:{tenant}:{source}         list: what the default handler recorded, newest first
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from urllib.parse import quote

import redis

__all__ = ["HookStore", "public_view", "EVENT_LOG_CAP"]

EVENT_LOG_CAP = 1000

# KEYS: hook; ARGV: ttl, field, value, ...  -> {} if created, else the stored hash (flat)
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HGETALL', KEYS[1]) end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return {}
"""

# KEYS: hook, events; ARGV: now, entry, cap -> 1 recorded now, 0 recorded before, -1 no hook
_RECORD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HSETNX', KEYS[1], 'recorded_at', ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
return 1
"""


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _iso(value: str | None) -> str | None:
    if not value:
        return None
    return datetime.fromtimestamp(float(value), timezone.utc).isoformat()


def public_view(record: dict) -> dict:
    """What the API shows of a stored hook (not its body)."""
    return {
        "source": record.get("source"),
        "webhook_id": record.get("webhook_id"),
        "received_at": _iso(record.get("received_at")),
        "job_id": record.get("job_id") or None,
        "processed_at": _iso(record.get("processed_at")),
    }


class HookStore:
    """Reads and writes hook records; each write that must be atomic is one script."""

    def __init__(self, client: redis.Redis, namespace: str):
        self.r = client
        self.ns = namespace
        self._claim = client.register_script(_CLAIM)
        self._record = client.register_script(_RECORD)

    def key(self, tenant: str, source: str, webhook_id: str) -> str:
        return f"{self.ns}hook:{quote(tenant, safe='')}:{source}:{webhook_id}"

    def events_key(self, tenant: str, source: str) -> str:
        return f"{self.ns}hooks:events:{quote(tenant, safe='')}:{source}"

    def claim(self, tenant: str, source: str, webhook_id: str, fields: dict[str, str],
              ttl: int) -> tuple[bool, dict]:
        """Store the hook unless it is there already: ``(created, record)``."""
        argv: list = [ttl]
        for k, v in fields.items():
            argv += [k, v]
        flat = self._claim(keys=[self.key(tenant, source, webhook_id)], args=argv)
        if not flat:
            return True, dict(fields)
        flat = [_text(x) for x in flat]
        return False, dict(zip(flat[::2], flat[1::2]))

    def attach_job(self, tenant: str, source: str, webhook_id: str, job_id: str) -> None:
        """Remember which job processes the hook."""
        self.r.hset(self.key(tenant, source, webhook_id), "job_id", job_id)

    def load(self, tenant: str, source: str, webhook_id: str) -> dict | None:
        raw = self.r.hgetall(self.key(tenant, source, webhook_id))
        return {_text(k): _text(v) for k, v in raw.items()} or None

    def mark_processed(self, tenant: str, source: str, webhook_id: str, job_id: str) -> bool:
        """Mark the hook processed (the first time only); False if it already was."""
        key = self.key(tenant, source, webhook_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.hsetnx(key, "processed_at", repr(time.time()))
        pipe.hsetnx(key, "processed_by", job_id)
        first, _ = pipe.execute()
        return bool(first)

    def record_event(self, tenant: str, source: str, webhook_id: str, entry: dict) -> int:
        """Append ``entry`` to the source's event log once per hook: 1 now, 0 before, -1 no hook."""
        return int(self._record(keys=[self.key(tenant, source, webhook_id),
                                      self.events_key(tenant, source)],
                                args=[repr(time.time()), json.dumps(entry), EVENT_LOG_CAP]))

    def events(self, tenant: str, source: str, limit: int = 100) -> list[dict]:
        """The newest entries of the source's event log."""
        return [json.loads(_text(e)) for e in self.r.lrange(self.events_key(tenant, source),
                                                            0, limit - 1)]
