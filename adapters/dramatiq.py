"""The Dramatiq engine: one actor runs every registered job, over Redis or RabbitMQ.

``DRAMATIQ_BROKER_URL`` names the broker (``redis://``, ``rediss://``, ``unix://``,
``amqp://`` or ``amqps://``); it defaults to ``REDIS_URL``. Of Dramatiq's middleware
the broker carries only ``TimeLimit`` (the backstop, at :meth:`Engine.time_limit`) and
``CurrentMessage``: no ``Retries``, ``AgeLimit``, ``Callbacks``, ``Pipelines`` or
``ShutdownNotifications``, whose work (or harm) the ledger's policy replaces. Messages are JSON (Dramatiq's own encoder, set again in
the worker): one that is not never runs.

Each Switchyard queue is one Dramatiq queue, the queue prefix plus the name plus
``:q``. The suffix keeps every name clear of Dramatiq's own derived names (a user
queue ``x.DQ`` would otherwise be the delay queue of ``x``, and ``x.msgs`` the Redis
hash of ``x``'s messages), and of Celery's queues on a shared RabbitMQ.

``flask worker -c N`` forks N processes, each running Dramatiq's own ``Worker`` with
one worker thread and a prefetch of one message per queue; the thread hands each job
to its process's main thread, so the runner's timeout and cancel (a SIGALRM there)
break even a blocking call, which an exception raised into a thread cannot. A process
that dies (a job's ``os._exit``) is replaced. SIGTERM or SIGINT stop them warmly: the
jobs in hand finish, prefetched messages go back to the broker, the launcher exits 0.
Dramatiq's ``TimeLimit`` at the hard limit ends the process, as a lost worker.

Priorities: on RabbitMQ they are message priorities (``x-max-priority`` queues).
Dramatiq's Redis broker has none, so a Redis-broker engine does not declare
``PRIORITIES``. A Redis-broker worker keeps the messages it took in a set of its own
until it acknowledges them, and Dramatiq hands a dead worker's back only on a random
maintenance pass after a minute without its heartbeat; that pass is off here (it runs
KEYS on the ledger's Redis) and :meth:`DramatiqEngine.recover_stranded` does it
within a lease instead. RabbitMQ hands back a dead consumer's messages itself.

On Redis the broker is :class:`~adapters.dramatiq_wake.WakingRedisBroker`: each publish
posts a wake-up for its queue, an idle consumer waits for one (an XREAD) instead of
polling every ``_POLL_MS``, and there are no ``.DQ`` delay queues to poll either.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import threading
import time
from urllib.parse import urlunsplit

import dramatiq
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker
from dramatiq.common import xq_name
from dramatiq.middleware import CurrentMessage, TimeLimit, TimeLimitExceeded

from .connections import redis_client
from .dramatiq_wake import WakingRedisBroker
from .engine import Engine
from .env import Env, redact_url
from .errors import BackendUnavailable, ConfigurationError
from .ledger import Dispatch
from .maintenance import as_thread, fork_child
from .settings import SentinelURL, is_redis_url, is_sentinel
from .types import Capability

__all__ = ["DramatiqEngine", "ACTOR_NAME"]

log = logging.getLogger("switchyard.dramatiq")

ACTOR_NAME = "switchyard.run"
SUFFIX = ":q"
_AMQP_PRIORITY = {"high": 9, "default": 5, "low": 0}
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_POLL_MS = 100  # a busy consumer's wait before it looks again (Dramatiq's worker_timeout)
_FETCH_SECONDS = 8.0  # an idle Redis consumer's longest wait for a wake-up


class _Rabbitmq(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker whose queues expire unused, as Celery's do
    (``SWITCHYARD_QUEUE_EXPIRES``)."""

    expires_ms: int | None = None

    def _build_queue_arguments(self, queue_name):
        arguments = super()._build_queue_arguments(queue_name)
        if self.expires_ms:
            arguments["x-expires"] = self.expires_ms
        return arguments

    def _declare_xq_queue(self, queue_name):
        if not self.expires_ms:
            return super()._declare_xq_queue(queue_name)
        return self.channel.queue_declare(
            queue=xq_name(queue_name), durable=True,
            arguments={"x-message-ttl": DEAD_MESSAGE_TTL,
                       "x-expires": self.expires_ms})


def broker_url(settings, env: Env | None = None) -> str:
    """``DRAMATIQ_BROKER_URL`` (checked), else the ledger's ``REDIS_URL``. An AMQP URL
    ending in ``//`` (kombu's way of naming the vhost ``/``) is given to pika as ``/%2F``."""
    env = env or Env()
    if is_sentinel(env.raw("DRAMATIQ_BROKER_URL")):
        SentinelURL.parse(env.raw("DRAMATIQ_BROKER_URL"), "DRAMATIQ_BROKER_URL")
        return env.raw("DRAMATIQ_BROKER_URL")
    parts = env.url("DRAMATIQ_BROKER_URL", None, (*_REDIS_SCHEMES, "amqp", "amqps"),
                    "redis:// or amqp://", host=False)
    if parts is not None and parts.scheme.startswith("amqp") and parts.path == "//":
        return urlunsplit(parts._replace(path="/%2F"))
    return env.text("DRAMATIQ_BROKER_URL", settings.redis_url)


class DramatiqEngine(Engine):
    """Runs jobs on Dramatiq; see the module docstring."""

    name = "dramatiq"
    capabilities = frozenset(Capability) - {Capability.PRIORITIES}
    brokers = ("redis", "amqp")
    broker_variable = "DRAMATIQ_BROKER_URL"
    stop_exception_modules = stop_handler_modules = ("dramatiq.",)

    def __init__(self, client):
        super().__init__(client)
        self.refuse_cluster_broker(self.env.raw("DRAMATIQ_BROKER_URL"))
        url = broker_url(self.settings, self.env)
        self.redis_broker = is_redis_url(url)
        # a job's record and its messages in one script call when the broker is the
        # ledger's Redis (adapters/riders.py); else under the client's dispatch guard
        self.shares_ledger_redis = self.is_ledger_redis(url)
        middleware = [TimeLimit(), CurrentMessage()]
        try:
            if self.redis_broker:
                self.broker = WakingRedisBroker(
                    client=redis_client(self.settings, url,
                                        socket_connect_timeout=self.settings.redis_timeout),
                    namespace=f"{self.settings.namespace}dramatiq", middleware=middleware,
                    maintenance_chance=0, wait_margin=self.settings.redis_timeout,
                    # a live worker's heartbeat never looks a lease old to recover_stranded
                    beat_seconds=min(_FETCH_SECONDS, self.settings.lease_seconds / 3))
            else:
                self.broker = _Rabbitmq(url=url, middleware=middleware, max_priority=9,
                                        confirm_delivery=True)
                self.broker.expires_ms = (self.settings.queue_expires or 0) * 1000 or None
                self.capabilities = type(self).capabilities | {Capability.PRIORITIES}
                logging.getLogger("pika").setLevel(logging.WARNING)  # INFO: every connection
        except ValueError as exc:
            raise ConfigurationError(f"DRAMATIQ_BROKER_URL={redact_url(url)!r} cannot be "
                                     f"used: {exc}") from None
        self._served: list[str] = []
        self._handoff: queue.Queue | None = None
        self._loop = None  # the maintenance loop the first worker process runs as a thread
        self._index = 0  # which of the launcher's worker processes this one is
        engine = self

        def run(job_id: str, token: str) -> None:
            try:
                engine._in_main_thread(job_id, token)
            except BackendUnavailable:
                # Redis stayed away longer than a lease while this worker held the
                # message: hand the delivery back to the broker rather than drop it.
                engine._hand_back(CurrentMessage.get_current_message())

        self.actor = dramatiq.Actor(run, broker=self.broker, actor_name=ACTOR_NAME,
                                    queue_name=self.engine_name(self.settings.default_queue),
                                    priority=0, options={})

    def engine_name(self, queue: str) -> str:
        return self.settings.queue_prefix + queue + SUFFIX

    def _message(self, job_id: str, token: str, queue_name: str, options: dict):
        return dramatiq.Message(queue_name=queue_name, actor_name=ACTOR_NAME,
                                args=(job_id, token), kwargs={}, options=options)

    def publish(self, deliveries: list[Dispatch], pipeline=None) -> None:
        # Redis: the messages and a wake-up per queue go in one round trip; into the
        # client's riders when the broker is the ledger's Redis (shares_ledger_redis)
        if pipeline is not None:
            writing = self.broker.into(pipeline)
        else:
            writing = self.broker.batch() if self.redis_broker else contextlib.nullcontext()
        with writing:
            for d in deliveries:
                options = {"time_limit": self.time_limit(d) * 1000}
                if not self.redis_broker:
                    options["broker_priority"] = _AMQP_PRIORITY[d.priority]
                self.broker.enqueue(self._message(d.job_id, d.token,
                                                  self.engine_name(d.queue), options))

    def _hand_back(self, message) -> None:
        options = {k: v for k, v in message.options.items() if k != "redis_message_id"}
        again = self._message(*message.args, message.queue_name, options)
        while True:
            try:
                self.broker.enqueue(again)
                return
            except Exception as exc:  # noqa: BLE001 - the broker is down too: wait for it
                log.warning("could not hand delivery %s back (%s); trying again", message.args, exc)
                time.sleep(1.0)

    # -- Redis broker: messages a dead worker took --------------------------------------
    def _key(self, *parts: str) -> str:
        return f"{self.broker.namespace}:" + "".join(parts)

    def recover_stranded(self) -> int:
        """Messages held by a Redis-broker worker whose heartbeat is older than a lease:
        those whose job never claimed them are delivered again; all are dropped from the
        broker (a claimed one is the ledger's lease to reap, a stale one would only be
        dropped by its token, one that is not JSON would never run)."""
        if not self.redis_broker:
            return 0
        r = self.broker.client
        beats = self._key("__heartbeats__")
        dead = [b.decode() for b in r.zrangebyscore(
            beats, "-inf", time.time() * 1000 - self.settings.lease_seconds * 1000,
            start=0, num=100)]
        if not dead:  # the usual answer: no queue to read
            return 0
        queues = sorted(q.decode() for q in r.smembers(self._key("__queues__")))
        if not queues:
            return 0
        pipe = r.pipeline(transaction=False)
        pairs = [(w, q) for w in dead for q in queues]
        for w, q in pairs:
            pipe.smembers(self._key("__acks__.", w, ".", q))
        held = [(w, q, sorted(ids)) for (w, q), ids in zip(pairs, pipe.execute()) if ids]
        for _, q, ids in held:
            pipe.hmget(self._key(q, ".msgs"), ids)
        deliveries = []
        for raw in (data for datas in (pipe.execute() if held else []) for data in datas):
            try:
                args = json.loads(raw)["args"]
                deliveries.append((str(args[0]), str(args[1])))
            except (TypeError, ValueError, KeyError, IndexError, UnicodeDecodeError):
                pass  # gone already, or not one of Switchyard's
        recovered = self.client.ledger.redeliver_unclaimed(deliveries)
        for w, q, ids in held:
            pipe.srem(self._key("__acks__.", w, ".", q), *ids)
            pipe.hdel(self._key(q, ".msgs"), *ids)
        busy = {w for w, _, _ in held}
        if any(w not in busy for w in dead):
            pipe.zrem(beats, *[w for w in dead if w not in busy])  # nothing held: forget it
        pipe.execute()
        return recovered

    # -- the worker ---------------------------------------------------------------------
    def run_worker(self, queues, concurrency=1, name=None):
        """``concurrency`` processes, each one Dramatiq Worker of one thread, until
        SIGTERM/SIGINT; a process that dies (a job's ``os._exit``) is replaced."""
        self._served = [self.engine_name(q) for q in queues]
        if self.redis_broker:  # where recover_stranded looks, whichever worker runs it
            self.broker.client.sadd(self._key("__queues__"), *self._served)
        stop = threading.Event()
        # The loop is a thread of the first worker process, which forks nothing (this
        # launcher, which replaces a process a job ended, forks only from its main
        # thread): no process of its own, which would cost a copy of the worker's memory.
        with self.maintenance(queues, concurrency, name, in_worker=True) as loop:
            self._loop = loop
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
            log.info("starting %d Dramatiq worker process(es) on %s", concurrency,
                     ", ".join(self._served))
            children = {self._fork(index): index for index in range(concurrency)}
            told = False
            while children:
                for pid in list(children):
                    try:
                        done, status = os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:
                        done, status = pid, 0
                    if done:
                        index = children.pop(pid)
                        if not stop.is_set():
                            log.warning("worker process %d ended (status %d); starting "
                                        "another", pid, status)
                            children[self._fork(index)] = index
                if stop.is_set() and not told:
                    told = True
                    for pid in children:  # a warm stop, if the signal did not reach them
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGTERM)
                time.sleep(0.1)
        self.close()

    def _fork(self, index: int) -> int:
        self._index = index  # the child's place: the first runs the maintenance loop
        return fork_child(self._child, "Dramatiq worker process")

    def _child(self) -> None:
        """Dramatiq's Worker (one thread) hands each job to this process's main thread,
        where the runner's SIGALRM timeout and cancel break even a blocking call."""
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        dramatiq.set_encoder(dramatiq.JSONEncoder())
        self._handoff = queue.Queue()
        self.broker.emit_after("process_boot")
        for name in self._served:
            self.broker.declare_queue(name)
        worker = dramatiq.Worker(self.broker, queues=set(self._served), worker_threads=1,
                                 worker_timeout=_POLL_MS)
        worker.queue_prefetch = 1
        worker.start()
        limit = int((self.settings.max_timeout + self.settings.timeout_grace) * 1000)
        stopper = threading.Thread(target=self._stop_worker, args=(worker, limit))
        with as_thread(self._loop if self._index == 0 else None):
            while not stopper.ident or stopper.is_alive():
                if stop.is_set() and not stopper.ident:
                    stopper.start()  # the job in hand finishes; prefetched ones go back
                try:
                    job_id, token, done, box = self._handoff.get(timeout=0.2)
                except queue.Empty:
                    continue
                try:
                    self.run(job_id, token)
                except BaseException as exc:  # noqa: BLE001 - handed to the worker thread
                    box.append(exc)
                done.set()
        self.close()

    def _stop_worker(self, worker, limit: int) -> None:
        if self.redis_broker:  # no consumer fetches again, or sits out its wait
            self.broker.stop_waiting()
        worker.stop(timeout=limit)

    def _in_main_thread(self, job_id: str, token: str) -> None:
        if self._handoff is None:  # not in one of run_worker's processes
            self.run(job_id, token)
            return
        done, box = threading.Event(), []
        self._handoff.put((job_id, token, done, box))
        try:
            while not done.wait(0.5):
                pass
        except TimeLimitExceeded:
            # the backstop: the runner could not stop the job; end the process, as a
            # hard time limit does (the ledger sees a lost delivery), and a new one starts
            log.critical("job %s outlived its hard time limit; ending this process", job_id)
            os._exit(70)
        if box:
            raise box[0]

    def close(self) -> None:
        self.broker.close()
        if self.redis_broker:
            self.broker.client.close()
