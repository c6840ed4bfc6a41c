"""The Celery engine: one generic task runs every registered job."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import signal
import threading
import time


import redis
from billiard.process import current_process
from celery import Celery, beat, signals
from celery.exceptions import Reject
from kombu import Exchange, Queue

from . import inhand
from .connections import celery_broker, celery_broker_ssl, redis_client
from .settings import is_redis_url
from .engine import Engine
from .errors import BackendUnavailable
from .celery_seam import PRIORITY_STEPS, PUBLISH_BATCH, SEP, queue_key, redis_message
from .ledger import Dispatch
from .maintenance import SchedulerBeat
from .types import Capability

__all__ = ["CeleryEngine"]

log = logging.getLogger("switchyard.celery")

TASK_NAME = "switchyard.run"
BRPOP_SECONDS = 5
# kombu's Redis transport serves priority 0 first; AMQP serves the highest number first.
_REDIS_PRIORITY = {"high": 0, "default": 3, "low": 9}
_AMQP_PRIORITY = {"high": 9, "default": 5, "low": 0}


_job_in_hand = False
"""True while this pool child runs a job."""
_pool_child = {"pid": None, "guarded": False, "previous": None}


def _on_sigterm_in_pool_child(signum, frame) -> None:
    """SIGTERM reaches a prefork child with a job in hand: let the job finish.

    Heroku, honcho and `docker stop` send SIGTERM to the whole process group. The main
    process answers with a warm shutdown (children finish the job in hand, then exit),
    but a child's own SIGTERM handler would end it mid-job first. So a busy child goes
    on and its parent stops it once the job is done; an idle one exits at once, as
    before. A hard time limit still ends a busy child: billiard follows with SIGKILL.
    """
    if _job_in_hand:
        return
    previous = _pool_child["previous"]
    if callable(previous):
        previous(signum, frame)
    else:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _delivery_of(raw: bytes | None) -> tuple[str, str] | None:
    """``(job id, token)`` of a message kombu holds in its ``unacked`` hash, if it is one
    of Switchyard's."""
    if raw is None:
        return None
    try:
        message = json.loads(raw)[0]
        if message.get("headers", {}).get("task") != TASK_NAME:
            return None
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0]), str(args[1])
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


def _mark_pool_child(**_) -> None:
    _pool_child.update(pid=os.getpid(), guarded=False, previous=None)


def _guard_sigterm() -> None:
    # Installed at the first job: billiard sets the child's own SIGTERM handler after
    # worker_process_init, and would replace ours.
    if _pool_child["pid"] != os.getpid() or _pool_child["guarded"]:
        return
    if threading.current_thread() is threading.main_thread():
        _pool_child["previous"] = signal.signal(signal.SIGTERM, _on_sigterm_in_pool_child)
    _pool_child["guarded"] = True


class CeleryEngine(Engine):
    """Runs jobs on Celery, over Redis or RabbitMQ."""

    name = "celery"
    capabilities = frozenset(Capability)
    brokers = ("redis", "amqp")
    broker_variable = "CELERY_BROKER_URL"
    # Celery's WorkerShutdown/WorkerTerminate; billiard's pool replaces sys.exit with a
    # wrapper of its own, so a job's sys.exit() ends in billiard's code: no handler list
    stop_exception_modules = ("celery.", "billiard.")

    def __init__(self, client):
        super().__init__(client)
        self.refuse_cluster_broker(self.settings.broker_url)
        broker = self.settings.celery_broker_url
        self.redis_broker = is_redis_url(broker)
        self._priorities = _REDIS_PRIORITY if self.redis_broker else _AMQP_PRIORITY
        # a Redis broker forgets a message once handed out: the worker notes it in hand
        self.in_hand_key = self._in_hand_key if self.redis_broker else None
        self._queues: dict[str, Queue] = {}
        self._broker_redis = None
        # One script call for a job and its message when the broker is the ledger's Redis.
        self.shares_ledger_redis = self.is_ledger_redis(broker)
        kombu_broker, sentinel_options = celery_broker(self.settings)
        self.app = Celery("switchyard", broker=kombu_broker, set_as_current=False)
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
                # kombu's ack emulation (an "unacked" hash and index, written when a
                # message is taken and again when it is acknowledged: 8 commands a job)
                # guards what the ledger guards already: a delivery a dead worker took is
                # noted in hand (_note_received) and a claimed job has its lease.
                "ack_emulation": False,
                # the server-side timeout of the worker's BRPOP (kombu's brpop_timeout,
                # 1 s by default): a message wakes it at once whatever the timeout, so an
                # idle worker re-sends it every 5 s instead of every second
                "polling_interval": BRPOP_SECONDS,
                "visibility_timeout": self.settings.visibility_timeout,
                "queue_order_strategy": "priority",
                "priority_steps": list(PRIORITY_STEPS),
                "sep": SEP,
                **sentinel_options,
            } if self.redis_broker else {},
        )
        broker_ssl = celery_broker_ssl(self.settings)
        if broker_ssl is not None:
            # a rediss:// broker is checked like every other Redis (kombu's own default for
            # one is no check at all); results are ignored, so no backend needs TLS options
            self.app.conf.broker_use_ssl = broker_ssl
        engine = self

        @self.app.task(name=TASK_NAME, shared=False, ignore_result=True, acks_late=True,
                       reject_on_worker_lost=True)
        def run(job_id: str, token: str) -> None:
            global _job_in_hand
            _guard_sigterm()
            _job_in_hand = True
            try:
                engine.run(job_id, token)
            except BackendUnavailable as exc:
                # Redis stayed away longer than a lease while this worker held the message
                # (a RabbitMQ broker hands messages out with the ledger down): give it
                # back to the broker, which delivers it again, rather than acknowledge it.
                raise Reject(str(exc), requeue=True) from exc
            finally:
                _job_in_hand = False

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

    def _send(self, dispatch: Dispatch, producer=None) -> None:
        args = [dispatch.job_id, dispatch.token]
        self._task.apply_async(
            args=args,
            argsrepr=repr(args),  # what Celery's saferepr of two strings gives, for less
            producer=producer,
            queue=self._queue(dispatch.queue),
            priority=self._priorities[dispatch.priority],
            time_limit=self.time_limit(dispatch),
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2,
                          "interval_max": 0.5},
        )

    def publish(self, deliveries: list[Dispatch], pipeline=None) -> None:
        """Publish through one producer; on Redis, kombu's publish batch sends every
        message of the call in one pipeline (one round trip) instead of one each. When
        the broker is the ledger's own Redis, ``pipeline`` takes the writes of the
        client's one call (its riders, or a MULTI) and each message is written into it
        as kombu's transport writes it (its LPUSH, and the queue's PEXPIRE), so the
        job's record and its message commit together."""
        if pipeline is not None:
            self._publish_into(deliveries, pipeline)
            return
        if len(deliveries) == 1:
            self._send(deliveries[0])
            return
        with self.app.producer_or_acquire() as producer:
            with producer.batch(max_size=PUBLISH_BATCH) if hasattr(producer, "batch") \
                    else contextlib.nullcontext():
                for dispatch in deliveries:
                    self._send(dispatch, producer)

    def _publish_into(self, deliveries: list[Dispatch], pipeline) -> None:
        # Each message as kombu's Redis transport writes Celery's (adapters/celery_seam.py),
        # taken by the client's pipeline or riders, which the client runs.
        reply_to = self.app.thread_oid
        expires = self.settings.queue_expires
        for d in deliveries:
            queue = self.settings.queue_prefix + d.queue
            priority = self._priorities[d.priority]
            pipeline.lpush(queue_key(queue, priority), redis_message(
                TASK_NAME, [d.job_id, d.token], queue, priority, self.time_limit(d), reply_to))
            if expires:
                for step in PRIORITY_STEPS:
                    pipeline.pexpire(queue_key(queue, step), int(expires * 1000))

    @property
    def _in_hand_key(self) -> str:
        return f"{self.settings.namespace}celery:inhand"

    def _note_received(self, sender=None, request=None, **_) -> None:
        """In the worker's main process, as a message of ours arrives from a Redis broker
        (which forgets it once handed out): note the delivery in hand, so a worker killed
        before its pool claims the job does not strand it."""
        if request is None or request.name != TASK_NAME:
            return
        try:
            job_id, token = request.args[:2]
            self._notes().note(self._in_hand_key, str(job_id), str(token))
        except (ValueError, TypeError):
            return  # not a delivery of ours: nothing to note
        except redis.RedisError as exc:
            # the ledger is away; the claim that follows waits for it, and until then the
            # message is in this process as it would be in kombu's own note
            log.warning("could not note a delivery in hand: %s", exc)

    _notes_of: tuple[int, inhand.Notes] | None = None

    def _notes(self) -> inhand.Notes:
        """This process's in-hand notes, written without a round trip each (see
        :class:`adapters.inhand.Notes`)."""
        if self._notes_of is None or self._notes_of[0] != os.getpid():
            self._notes_of = (os.getpid(), inhand.Notes(self.client.ledger.r))
        return self._notes_of[1]

    def recover_stranded(self) -> int:
        """Deliveries a worker took from a Redis broker and died with before claiming: the
        notes of _note_received older than a lease whose job was never claimed are
        delivered again. RabbitMQ hands back a dead consumer's messages itself."""
        if not self.redis_broker:
            return 0
        return (inhand.recover(self.client.ledger, self._in_hand_key) + self._recover_unacked()
                + self._recover_popped_unnoted())

    def _recover_popped_unnoted(self) -> int:
        """Deliveries a worker popped and died with before noting them (the instant
        between kombu's BRPOP and the note): see :func:`adapters.inhand.recover_unnoted`."""
        def lists_empty(queue: str) -> bool:
            name = self.settings.queue_prefix + queue
            pipe = self._broker_client().pipeline(transaction=False)
            for step in PRIORITY_STEPS:
                pipe.llen(queue_key(name, step))
            return not any(pipe.execute())
        return inhand.recover_unnoted(self.client.ledger, self._in_hand_key, lists_empty)

    def _recover_unacked(self) -> int:
        """Messages a worker of an earlier release (with kombu's ack emulation on) held in
        kombu's ``unacked`` hash: kombu gives them back only after its visibility timeout
        (an hour), and with ack emulation off not at all. Those held longer than a lease
        whose job was never claimed are delivered again now, and every one that is not
        its job's current delivery is taken out; the rest belong to running jobs."""
        client = self._broker_client()
        tags = client.zrangebyscore("unacked_index", "-inf",
                                    time.time() - self.settings.lease_seconds, start=0, num=500)
        if not tags:
            return 0
        deliveries, ours = [], []
        for tag, raw in zip(tags, client.hmget("unacked", tags)):
            delivery = _delivery_of(raw)
            if delivery is not None:
                deliveries.append(delivery)
                ours.append(tag)
        ledger = self.client.ledger
        recovered = ledger.redeliver_unclaimed(deliveries)
        tokens = ledger.current_tokens([job_id for job_id, _ in deliveries])
        stale = [tag for tag, (_, token), now_token in zip(ours, deliveries, tokens)
                 if token != now_token]
        if stale:
            pipe = client.pipeline(transaction=False)
            pipe.zrem("unacked_index", *stale)
            pipe.hdel("unacked", *stale)
            pipe.execute()
        return recovered

    def _broker_client(self):
        if self._broker_redis is None:
            self._broker_redis = redis_client(
                self.settings, self.settings.celery_broker_url,
                socket_connect_timeout=self.settings.redis_timeout,
                socket_timeout=self.settings.redis_timeout)
        return self._broker_redis

    def forks_after_start(self, concurrency, pool="prefork", **options):
        """Only the prefork pool forks: solo and threads run jobs in the launcher."""
        return pool == "prefork"

    def needs_supervisor(self, concurrency, pool="prefork", **options):
        """Solo and threads run the jobs in the launcher, which a job's ``os._exit``
        ends; prefork replaces a child that dies."""
        return pool != "prefork"

    def run_worker(self, queues, concurrency=1, name=None, pool="prefork"):
        self.app.conf.task_queues = [self._queue(q) for q in queues]
        # The runner logs each job as it starts and ends (its id, type, attempt, outcome
        # and time); Celery's INFO lines of the same task ("received", "succeeded in")
        # name only switchyard.run and a task id, and each costs a job as much. Their
        # warnings and errors stay. Set before the worker reads the levels, once.
        for logger in ("celery.worker.strategy", "celery.app.trace"):
            logging.getLogger(logger).setLevel(logging.WARNING)
        signals.worker_process_init.connect(_mark_pool_child, weak=False)
        prefork = pool == "prefork"
        if prefork:
            # The loop is a thread of the pool's first child, which forks nothing (a
            # process of its own would cost a copy of the worker's memory); its
            # replacement, should it die, starts another.
            signals.worker_process_init.connect(self._loop_in_first_child, weak=False)
            signals.worker_process_shutdown.connect(self._end_loop_in_child, weak=False)
        if self.redis_broker:
            signals.task_received.connect(self._note_received, weak=False)
        argv = ["worker", f"--concurrency={concurrency}", f"--pool={pool}",
                "--queues=" + ",".join(self._queue(q).name for q in queues),
                # Celery's event heartbeats (a PUBLISH every 2 s) only feed event
                # monitors; Switchyard's maintenance loop announces the worker
                "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
                f"--hostname={name or 'switchyard'}@%h"]
        with self.maintenance(queues, concurrency, name, pool=pool, in_worker=prefork) as loop:
            self._loop = loop
            log.info("starting the Celery worker: %s", " ".join(argv))
            self.app.worker_main(argv)

    _loop = None

    def _loop_in_first_child(self, **_) -> None:
        if self._loop is not None and getattr(current_process(), "index", None) == 0:
            self._loop.start(in_thread=True)

    def _end_loop_in_child(self, **_) -> None:
        if self._loop is not None and self._loop.running_in_thread:
            self._loop.stop(forget=False)  # the worker lives on; its launcher forgets it

    def run_scheduler(self, poll=1.0, catch_up=1, name=None):
        """Run Celery beat with a scheduler class that fires Switchyard's schedules."""
        switchyard_beat = SchedulerBeat(self.client, poll, catch_up, name)

        class LedgerScheduler(beat.Scheduler):
            """Celery beat's scheduler, reading the schedules Switchyard keeps in Redis."""

            def setup_schedule(self):
                pass  # no static beat_schedule: every schedule lives in Redis

            def tick(self, *args, **kwargs):
                return switchyard_beat()

        log.info("starting Celery beat over Switchyard's schedules (poll %.2fs)", poll)
        try:
            self.app.Beat(scheduler=LedgerScheduler, max_interval=poll, loglevel="INFO",
                          schedule="").run()
        finally:
            switchyard_beat.stop()
