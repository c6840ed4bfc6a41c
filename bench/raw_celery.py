"""The raw Celery baseline: a plain Celery app with the same settings as Switchyard's.

Only the layer differs: the same JSON-only serialisation, late acks, prefetch 1 and
Redis priority lists as ``adapters/celery.py``, plus Celery's Redis result backend so
that, as with Switchyard's ledger, a finished job's result can be read back.
The worker process loads it from :mod:`bench.raw_celery_worker`.
"""

from __future__ import annotations

import time

from celery import Celery
from kombu import Exchange, Queue

QUEUE = "bench"


def make_app(redis_url: str, results: bool = True) -> Celery:
    """A Celery app on ``redis_url``; ``results=False`` runs without a result backend."""
    app = Celery("bench_raw", broker=redis_url, backend=redis_url if results else None,
                 set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=not results,
        worker_prefetch_multiplier=1,
        task_queue_max_priority=9,
        task_default_priority=3,
        task_default_queue=QUEUE,
        task_queues=[Queue(QUEUE, Exchange(QUEUE, type="direct"), routing_key=QUEUE,
                           max_priority=9)],
        broker_connection_retry_on_startup=True,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        broker_transport_options={"visibility_timeout": 3600, "queue_order_strategy": "priority",
                                  "priority_steps": [0, 3, 9], "sep": ":"},
    )

    @app.task(name="bench.raw.noop", shared=False)
    def noop():
        return None

    @app.task(name="bench.raw.sleep", shared=False)
    def sleep(seconds=0.05):
        time.sleep(seconds)
        return None

    return app

