"""What the conformance suite does to an engine beyond the ``adapters.Engine`` contract.

Most cases need nothing but the contract: they enqueue through the client and start and
stop ``python -m adapters.worker --backend <engine>`` subprocesses. Three things are
engine-specific, and an engine author gives them in a subclass of :class:`EngineHooks`:

- ``worker_argv(engine, module, args)``: the command of a worker (or, with
  ``module="adapters.scheduler"``, a scheduler) process. The default runs the launcher
  with ``--backend`` set to the engine; it is stopped by SIGTERM to its process group
  (a warm shutdown) and SIGKILLed if it outlives the deadline. Override it only if the
  engine's worker is started some other way.
- ``inject_pickled(engine, queue, evil)``: push a message whose body is pickled
  ``evil`` straight into the broker, as a foreign producer would. Needed only by an
  engine that declares ``Capability.JSON_ONLY``.
- ``take_delivery_and_die(engine, enqueue)``: call ``enqueue()`` and leave its delivery
  taken from the broker by a worker that died before it claimed the job. Needed only by
  an engine that declares ``Capability.CRASH_RECOVERY``.

A capability the engine does not declare skips its cases ("X does not declare Y"); one
it declares but whose hook is missing fails them, naming the hook. The suite finds an
engine's hooks in this order: ``--engine-hooks pkg.mod:Hooks`` on the pytest command
line; the engine class's ``conformance_hooks`` attribute (a dotted path, so the engine
module need not import the tests); the hooks of the nearest base class in
:data:`BUILT_IN`; else :class:`EngineHooks`'s defaults.
"""

from __future__ import annotations

import signal
import sys
import uuid
from typing import TYPE_CHECKING, Any, Callable

from adapters import JobInfo

if TYPE_CHECKING:  # pragma: no cover
    from tests.harness import Engine

__all__ = ["EngineHooks", "RQHooks", "CeleryHooks", "DramatiqHooks", "BUILT_IN", "hooks_for"]


class EngineHooks:
    """The defaults: workers by the launcher; no raw broker access (see the module doc)."""

    def worker_argv(self, engine: "Engine", module: str, args: list[str]) -> list[str]:
        return [sys.executable, "-m", module, "--backend", engine.backend, *args]

    def inject_pickled(self, engine: "Engine", queue: str, evil: Any) -> None:
        raise NotImplementedError(
            f"{engine.adapter.name} declares json_only, but its conformance hooks "
            f"({type(self).__name__}) do not implement inject_pickled(engine, queue, evil)")

    def take_delivery_and_die(self, engine: "Engine", enqueue: Callable[[], JobInfo]) -> JobInfo:
        raise NotImplementedError(
            f"{engine.adapter.name} declares crash_recovery, but its conformance hooks "
            f"({type(self).__name__}) do not implement take_delivery_and_die(engine, enqueue)")


class RQHooks(EngineHooks):
    def inject_pickled(self, engine, queue, evil):
        from rq import Queue
        from rq.job import Job

        rq_engine = engine.adapter.engine
        job = Job.create("adapters.rq.perform", args=[evil, "token"],
                         connection=rq_engine.rq_redis)  # RQ's default serializer: pickle
        job.save()
        Queue(rq_engine._engine_name(queue, "default"),
              connection=rq_engine.rq_redis).push_job_id(job.id)

    def take_delivery_and_die(self, engine, enqueue):
        """A worker pops and runs in one process, so the pop is done here with the
        worker's own dequeue (which notes the delivery as in hand), and nothing claims it."""
        from adapters.rq import _Queue

        job = enqueue()
        _Queue.inhand_key = engine.adapter.engine.in_hand_key
        keys = [f"rq:queue:{n}" for n in engine.adapter.engine.worker_queue_names([job.queue])]
        popped = _Queue.lpop(keys, None, connection=engine.adapter.engine.rq_redis)
        assert popped and popped[1].decode().startswith(job.id), popped
        return job


class CeleryHooks(EngineHooks):
    def inject_pickled(self, engine, queue, evil):
        celery = engine.adapter.engine
        kq = celery._queue(queue)
        task_id = str(uuid.uuid4())
        body = ((evil, "token"), {}, {"callbacks": None, "errbacks": None, "chain": None,
                                      "chord": None})
        headers = {"lang": "py", "task": "switchyard.run", "id": task_id,
                   "root_id": task_id, "parent_id": None, "group": None,
                   "argsrepr": "(evil)", "kwargsrepr": "{}", "origin": "test",
                   "retries": 0, "timelimit": [None, None], "eta": None, "expires": None}
        with celery.app.connection_for_write() as conn:
            conn.Producer().publish(body, exchange=kq.exchange, routing_key=kq.routing_key,
                                    serializer="pickle", headers=headers, declare=[kq],
                                    priority=celery._priorities["default"])

    def take_delivery_and_die(self, engine, enqueue):
        """A real worker whose pool children are stopped (SIGSTOP) takes the message from
        the broker -- it is handed over (noted in hand on Redis, an unacked delivery on
        RabbitMQ) but no child runs it -- and is then SIGKILLed."""
        import psutil

        from tests.harness import wait_until

        worker = engine.start_worker()
        main = psutil.Process(worker.proc.pid)
        # its one child is the pool's (with the maintenance loop as a thread)
        children = wait_until(
            lambda: len(main.children()) == 1 and main.children(), 30, 0.05,
            "the Celery worker's pool children")
        for child in children:
            child.send_signal(signal.SIGSTOP)
        job = enqueue()
        if engine.adapter.engine.redis_broker:
            wait_until(lambda: engine.redis.zcard(engine.adapter.engine._in_hand_key), 15, 0.02,
                       "the worker to take the message")
        else:
            wait_until(lambda: _amqp_unacked(engine, job.queue), 15, 0.05,
                       "the worker to take the message")
        worker.kill()
        engine.workers.remove(worker)
        return job


def _amqp_unacked(engine: "Engine", queue: str) -> bool:
    """True once RabbitMQ counts no ready message in ``queue`` (a consumer holds it)."""
    kq = engine.adapter.engine._queue(queue)
    with engine.adapter.engine.app.connection_for_write() as conn:
        _, ready, _ = conn.default_channel.queue_declare(kq.name, passive=True)
    return ready == 0


class DramatiqHooks(EngineHooks):
    def inject_pickled(self, engine, queue, evil):
        import pickle
        import time

        dq = engine.adapter.engine
        name = dq.engine_name(queue)
        body = pickle.dumps({"queue_name": name, "actor_name": "switchyard.run",
                             "args": (evil, "token"), "kwargs": {}, "options": {},
                             "message_id": str(uuid.uuid4()),
                             "message_timestamp": int(time.time() * 1000)})
        if dq.redis_broker:
            message_id = str(uuid.uuid4())
            client = dq.broker.client
            client.hset(f"{dq.broker.namespace}:{name}.msgs", message_id, body)
            client.rpush(f"{dq.broker.namespace}:{name}", message_id)
        else:
            dq.broker.declare_queue(name, ensure=True)
            dq.broker.channel.basic_publish(exchange="", routing_key=name, body=body)

    def take_delivery_and_die(self, engine, enqueue):
        """Redis: a broker of its own (its own worker id) fetches the message with
        Dramatiq's fetch, which holds it in that worker's acks set, and never beats again,
        as a worker SIGKILLed at that moment. RabbitMQ: a consumer takes it unacknowledged
        and its connection dies."""
        dq = engine.adapter.engine
        job = enqueue()
        name = dq.engine_name(job.queue)
        if dq.redis_broker:
            from dramatiq.brokers.redis import RedisBroker

            taker = RedisBroker(client=dq.broker.client, middleware=[],
                                namespace=dq.broker.namespace, maintenance_chance=0)
            fetched = taker.do_fetch(name, 1)
            assert fetched and job.id.encode() in fetched[0], fetched
        else:
            import pika

            conn = pika.BlockingConnection(dq.broker.parameters)
            method, _, body = conn.channel().basic_get(name, auto_ack=False)
            assert method is not None and job.id.encode() in body, body
            conn.close()
        return job


BUILT_IN: dict[str, type[EngineHooks]] = {
    "adapters.rq:RQEngine": RQHooks,
    "adapters.celery:CeleryEngine": CeleryHooks,
    "adapters.dramatiq:DramatiqEngine": DramatiqHooks,
}
"""The hooks of the engines in this repository, by engine class (``module:Class``)."""


def hooks_for(engine_class: type, override: str | None = None) -> EngineHooks:
    """The hooks for ``engine_class`` (see the module docstring for the order)."""
    path = override or getattr(engine_class, "conformance_hooks", None)
    if path:
        return _load(path)()
    for cls in engine_class.__mro__:
        found = BUILT_IN.get(f"{cls.__module__}:{cls.__qualname__}")
        if found:
            return found()
    return EngineHooks()


def _load(path: str) -> type[EngineHooks]:
    import importlib

    module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, EngineHooks)):
        raise TypeError(f"{path!r} is not a tests.conformance.hooks.EngineHooks subclass")
    return cls

