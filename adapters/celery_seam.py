"""The seam between the Celery engine and kombu's Redis transport.

When Celery's broker is the ledger's own Redis, a job's record and its message are written
by one call of the ledger's create script (``adapters/riders.py``). The message is written as kombu's Redis transport would write it (Celery's
task protocol 2, in kombu's envelope, LPUSHed to the list of its queue and priority,
with the queue's PEXPIRE when queues expire), by :func:`redis_message` and
:func:`queue_key`: Celery's own publish (routing, option merging, signals, kombu's
producer) was most of a single enqueue's time. ``tests/test_celery_seam.py`` checks that
these give what Celery and kombu give, field by field, so a release that changes either
fails there first. Publishes that do not ride with the ledger's records go through
Celery (several at once in kombu's publish batch).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid

__all__ = ["PRIORITY_STEPS", "PUBLISH_BATCH", "SEP", "queue_key", "redis_message"]

PRIORITY_STEPS = (0, 3, 9)
"""kombu's ``priority_steps`` for the Redis broker (a list per step), as the engine sets them."""
SEP = ":"
"""kombu's ``sep`` between a queue's name and its step, as the engine sets it."""
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
_HOST = socket.gethostname()

PUBLISH_BATCH = 500
"""Messages a Redis publish batch buffers before it sends them (kombu's Producer.batch)."""


def queue_key(queue: str, priority: int) -> str:
    """The Redis list kombu's transport keeps a queue's messages of ``priority`` in."""
    step = max(p for p in PRIORITY_STEPS if p <= max(0, min(priority, 9)))
    return f"{queue}{SEP}{step}" if step else queue


def redis_message(task: str, args: list, queue: str, priority: int, time_limit: int,
                  reply_to: str) -> str:
    """The JSON kombu's Redis transport stores for Celery's ``apply_async(args, queue=...,
    priority=..., time_limit=...)`` of a task whose result is ignored (task protocol 2,
    JSON body, no eta, expiry, retries or workflow)."""
    task_id = str(uuid.uuid4())
    argsrepr = repr(args)
    body = json.dumps([args, {}, _EMBED])
    return json.dumps({
        "body": base64.b64encode(body.encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None,
            "expires": None, "group": None, "group_index": None, "retries": 0,
            "timelimit": [time_limit, None], "root_id": task_id, "parent_id": None,
            "argsrepr": argsrepr, "kwargsrepr": "{}", "origin": f"gen{os.getpid()}@{_HOST}",
            "ignore_result": True, "replaced_task_nesting": 0, "stamped_headers": None,
            "stamps": {}},
        "properties": {
            "correlation_id": task_id, "reply_to": reply_to, "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue}, "priority": priority,
            "body_encoding": "base64", "delivery_tag": str(uuid.uuid4())},
    })
