"""Loaded by the test workers (JOB_MODULES) and the tests: a scripted resolver and a hook handler.

Names under ``.rebind.test`` resolve by script, and every lookup is counted in Redis
(``test:resolve:<host>``), so a test can prove a delivery looked a name up once:

    pin-*.rebind.test    127.0.0.1 the first time, 127.0.0.2 (the canary) after that
    flip-*.rebind.test   always 127.0.0.2 (the canary)
    tls-*.rebind.test    always 127.0.0.1 (the HTTPS receiver)

Every other name goes to the system resolver.
"""

import os

import redis

from service.jobs import webhooks
from service.ssrf import system_resolve

_client = None


def r() -> redis.Redis:
    global _client
    if _client is None or _client.connection_pool.pid != os.getpid():
        _client = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    return _client


def scripted_resolve(host: str, port: int) -> list[str]:
    """Answer ``*.rebind.test`` by script; anything else through the system."""
    if not host.endswith(".rebind.test"):
        return system_resolve(host, port)
    calls = r().incr(f"test:resolve:{host}")
    if host.startswith("pin-"):
        return ["127.0.0.1"] if calls == 1 else ["127.0.0.2"]
    if host.startswith("flip-"):
        return ["127.0.0.2"]
    if host.startswith("tls-"):
        return ["127.0.0.1"]
    raise OSError(f"no such test name {host}")


webhooks.set_resolver(scripted_resolve)


@webhooks.hook_handler("acme")
def handle_acme(ctx, event):
    """Count each run per webhook id under test:acme:<id>, and echo the event type."""
    runs = r().incr(f"test:acme:{event.webhook_id}")
    return {"runs": runs, "type": (event.payload or {}).get("type"), "tenant": event.tenant}
