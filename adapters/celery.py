"""The Celery adapter: one generic task runs every registered job."""

from __future__ import annotations

import logging
import math

from celery import Celery, signals
from kombu import Exchange, Queue

from .base import Capability, QueueAdapter
from .ledger import Dispatch
from .runner import Maintenance, execute

__all__ = ["CeleryAdapter"]

log = logging.getLogger("switchyard.celery")

TASK_NAME = "switchyard.run"
# kombu's Redis transport serves priority 0 first; AMQP serves the highest number first.
_REDIS_PRIORITY = {"high": 0, "default": 3, "low": 9}
_AMQP_PRIORITY = {"high": 9, "default": 5, "low": 0}


class CeleryAdapter(QueueAdapter):
    """Runs jobs on Celery, over Redis or RabbitMQ."""

    name = "celery"
    capabilities = frozenset(Capability)

    def __init__(self, settings=None):
        super().__init__(settings)
        broker = self.settings.celery_broker_url
        self.redis_broker = broker.split(":", 1)[0] in ("redis", "rediss", "unix")
        self._priorities = _REDIS_PRIORITY if self.redis_broker else _AMQP_PRIORITY
        self._queues: dict[str, Queue] = {}
        self.app = Celery("switchyard", broker=broker, set_as_current=False)
        self.app.conf.update(
            task_serializer="json",
            result_serializer="json",
            accept_content=["json"],
            task_acks_late=True,
            task_reject_on_worker_lost=True,
            task_ignore_result=True,
            worker_prefetch_multiplier=1,
            task_queue_max_priority=9,
            task_default_priority=self._priorities["default"],
            broker_connection_retry_on_startup=True,
            broker_connection_timeout=3,
            worker_cancel_long_running_tasks_on_connection_loss=False,
            worker_send_task_events=False,
            worker_hijack_root_logger=False,
            broker_transport_options={
                "visibility_timeout": self.settings.visibility_timeout,
                "queue_order_strategy": "priority",
                "priority_steps": [0, 3, 9],
                "sep": ":",
            } if self.redis_broker else {},
        )
        adapter = self

        @self.app.task(name=TASK_NAME, shared=False, ignore_result=True, acks_late=True,
                       reject_on_worker_lost=True)
        def run(job_id: str, token: str) -> None:
            execute(adapter, job_id, token)

        self._task = run

    def _queue(self, name: str) -> Queue:
        queue = self._queues.get(name)
        if queue is None:
            engine_name = self.settings.queue_prefix + name
            queue = Queue(engine_name, Exchange(engine_name, type="direct"),
                          routing_key=engine_name, max_priority=9,
                          expires=self.settings.queue_expires)
            self._queues[name] = queue
        return queue

    def _publish(self, dispatch: Dispatch) -> None:
        self._task.apply_async(
            args=[dispatch.job_id, dispatch.token],
            queue=self._queue(dispatch.queue),
            priority=self._priorities[dispatch.priority],
            time_limit=math.ceil(dispatch.timeout + self.settings.timeout_grace),
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2,
                          "interval_max": 0.5},
        )

    def run_worker(self, queues=None, concurrency=1, name=None, pool="prefork"):
        queues = queues or [self.settings.default_queue]
        self.app.conf.task_queues = [self._queue(q) for q in queues]
        maintenance = Maintenance(self, queues, concurrency, name)
        signals.worker_ready.connect(lambda **_: maintenance.start(), weak=False)
        signals.worker_shutting_down.connect(lambda **_: maintenance.stop(), weak=False)
        argv = ["worker", f"--concurrency={concurrency}", f"--pool={pool}",
                "--queues=" + ",".join(self._queue(q).name for q in queues),
                "--loglevel=INFO", "--without-gossip", "--without-mingle",
                f"--hostname={name or 'switchyard'}@%h"]
        log.info("starting the Celery worker: %s", " ".join(argv))
        self.app.worker_main(argv)
