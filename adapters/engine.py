"""The engine contract: what a queue engine implements to run Switchyard's jobs.

Users and the service hold a :class:`~adapters.client.Switchyard` client; it validates
jobs, keeps the ledger (Switchyard's own record of every job, in Redis) and hands each
job's *deliveries* to an engine. An engine only moves deliveries and runs them:

    class MyEngine(Engine):
        name = "mine"                                  # the QUEUE_BACKEND alias
        capabilities = frozenset({Capability.DELAY, ...})  # what its legs prove
        shares_ledger_redis = False                    # True if its queues live in the
                                                       # ledger's own Redis (see publish)

        def publish(self, deliveries, pipeline=None):  # hand them to the broker
            for d in deliveries:
                broker.send("switchyard", [d.job_id, d.token], queue=d.queue,
                            priority=d.priority, time_limit=self.time_limit(d))

        def run_worker(self, queues, concurrency=1, name=None):
            with self.maintenance(queues, concurrency, name):   # releases due jobs,
                broker.worker(queues, concurrency).run()        # reaps lost ones

    # the engine's one task / actor / entry function, whatever calls it:
    def task(job_id, token):
        engine.run(job_id, token)                      # and nothing else

That is the whole of it:

- ``publish(deliveries, pipeline)``: each :class:`~adapters.ledger.Dispatch` names a
  job (``job_id``, ``token``, ``queue``, ``priority``, ``timeout``); send each to the
  named queue. Raise if the broker refuses: the client then removes the records and
  answers :class:`BackendUnavailable`, so nothing is half-written. With
  ``shares_ledger_redis = True``, ``pipeline`` takes the deliveries' writes as a
  redis-py pipeline takes them (``pipeline.rpush(key, ...)``; single-key writes only,
  their replies unseen): the client's :class:`~adapters.riders.Riders`, whose writes
  the ledger's create script runs after the records in the same call, or a MULTI on
  the ledger's Redis (:meth:`transaction` makes it); either way the records and their
  deliveries commit together. Otherwise ``pipeline`` is None
  and the client writes the records first under a dispatch guard, which it lifts once
  ``publish`` returns (a publisher that dies in between is covered by the maintenance
  loop, which publishes again when the guard runs out; the token makes a duplicate
  delivery harmless).
- ``run_worker(queues, concurrency, name)``: run the engine's own worker on
  ``queues`` until it is told to stop (SIGTERM: finish the job in hand, then exit 0),
  with :meth:`maintenance` beside it. Extra keyword options are the engine's own
  (``flask worker --pool``, ``--worker-class``).
- The task calls :meth:`run` and nothing else: claim, timeout, cancel, progress,
  retries and the ledger writes are shared. Give the engine's own time limit
  :meth:`time_limit` as a backstop, and turn its own retries off.
- Jobs run in the main thread of their process: the runner stops a job at its timeout
  or on cancel with SIGALRM, which only a main thread receives. A worker that takes
  messages on threads hands each delivery to its process's main thread (the Dramatiq
  engine shows how).
- Declared as data: ``name``; ``capabilities`` (a class attribute; set
  ``self.capabilities`` in ``__init__`` when it depends on the broker); ``brokers``
  (``("redis",)``, or ``("redis", "amqp")``); ``broker_variable`` (its own broker URL
  variable, read through ``self.env`` -- never ``os.environ`` -- and defaulting to
  ``REDIS_URL``); ``shares_ledger_redis``.
- ``forks_after_start(concurrency, **options)``: True (the default) if the worker
  forks after it starts (a pool of processes, a process per job, a replacement for a
  dead one): the maintenance loop is then a process forked before it. An engine that
  answers False for a setting (one process that forks nothing) gets the loop as a
  thread of that process instead, which costs no process's memory.
- ``needs_supervisor(concurrency, **options)``: True for a setting whose one process
  runs every job with nothing to replace it if a job ends it (``os._exit``): the
  launcher then runs it under a small parent that starts it again (False by default).
- Optional: ``run_scheduler`` (the default runs the engine-neutral beat, which fires
  the schedules kept in the ledger), ``recover_stranded`` (deliveries a dead worker took
  from the broker but never claimed; a broker that hands them back, as RabbitMQ does,
  needs nothing), ``in_hand_key`` (where those deliveries are noted, if in the ledger's
  Redis: the claim then takes each note out as it claims, so the sweep only ever reads
  the notes of deliveries that were never claimed), ``close``.

Then add the alias to :data:`adapters.resolve.ALIASES` and a leg to
``tests/conftest.py::engine_legs``: every conformance case runs on it, and each
declared capability must pass.
"""

from __future__ import annotations

import abc
import contextlib
import math
from typing import Any, ClassVar, Iterator

from .env import Env
from .errors import ConfigurationError, UnsupportedFeature
from .ledger import Dispatch
from .maintenance import Maintenance, run_beat
from .runner import execute
from .connections import same_redis
from .settings import CLUSTER_SCHEMES, is_redis_url
from .types import Capability

__all__ = ["Engine", "Dispatch"]


class Engine(abc.ABC):
    """One queue engine behind the client; see the module docstring."""

    name: ClassVar[str] = "abstract"
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    shares_ledger_redis: ClassVar[bool] = False
    """True if deliveries are written to the ledger's own Redis, so :meth:`publish` can
    hand their writes to the ledger's create script (one call with the records)."""
    in_hand_key: str | None = None
    """The sorted set of the ledger's Redis in which the worker notes each delivery it
    takes (``<job id>-<token>``, see ``adapters/inhand.py``), or None: the claim of the
    delivery takes its note out in the same script."""
    runs_at_publish: ClassVar[bool] = False
    """True if :meth:`publish` runs the jobs before it returns (the inline engine)."""
    brokers: ClassVar[tuple[str, ...]] = ("redis",)
    """The brokers it runs on (``redis``, ``amqp``): the test legs are made from them."""
    stop_exception_modules: ClassVar[tuple[str, ...]] = ()
    """Modules (``"celery."``) whose ``SystemExit``/``KeyboardInterrupt`` subclasses mean
    the worker itself is stopping (a cold shutdown): the job is left to its lease, not
    failed. Anything else a job raises, ``sys.exit()`` included, fails the attempt."""
    stop_handler_modules: ClassVar[tuple[str, ...]] = ()
    """Modules (``"rq."``) whose signal handlers raise a plain ``SystemExit`` or
    ``KeyboardInterrupt`` to stop the worker: one raised there is the engine's."""
    broker_variable: ClassVar[str | None] = None
    """The variable naming its broker when that is not the ledger's ``REDIS_URL``
    (``CELERY_BROKER_URL``); tests, the fault suite and ``compare`` set it for an
    ``amqp`` leg."""

    def __init__(self, client: Any):
        """``client`` is the :class:`~adapters.client.Switchyard` this engine serves."""
        self.client = client
        self.settings = client.settings
        self.env = Env(self.settings.env)
        """The reader of the variables the settings came from, for the engine's own
        (``self.env.url("MY_BROKER_URL", ...)``): the same checks and messages as every
        other setting; a bad one raises ``ConfigurationError`` (launchers exit 3)."""

    def is_ledger_redis(self, url: str) -> bool:
        """True if the broker ``url`` is the ledger's own Redis server and database (and
        no cluster): the engine may then set ``shares_ledger_redis`` and have its
        deliveries ride in the ledger's create script (``adapters/riders.py``)."""
        return (is_redis_url(url) and not self.settings.cluster
                and same_redis(url, self.settings.redis_url))

    def refuse_cluster_broker(self, url: str | None) -> None:
        """``ConfigurationError`` if ``REDIS_URL`` is a Redis Cluster and ``url`` (the
        engine's broker; ``None``: the engine keeps its queues in ``REDIS_URL``) is that
        cluster too. A cluster holds the ledger only: an engine's own keys (kombu's,
        Dramatiq's, RQ's) and their transactions span slots."""
        if not self.settings.cluster or (url and url.split(":", 1)[0] not in CLUSTER_SCHEMES):
            return
        if self.broker_variable is None:
            raise ConfigurationError(
                f"REDIS_URL is a Redis Cluster, which holds Switchyard's ledger only; the "
                f"{self.name} engine keeps its queues in REDIS_URL and writes a job with its "
                "message in one script call, which a cluster cannot do across slots: use "
                "QUEUE_BACKEND=celery or dramatiq with a broker URL of their own, or a plain Redis")
        raise ConfigurationError(
            f"REDIS_URL is a Redis Cluster, which holds Switchyard's ledger only: set "
            f"{self.broker_variable} to the {self.name} broker (amqp:// for RabbitMQ, or a "
            "plain redis:// server), not to the cluster")

    @abc.abstractmethod
    def publish(self, deliveries: list[Dispatch], pipeline: Any = None
                ) -> None:
        """Hand the deliveries to the engine (in ``pipeline`` if given); raise on failure."""

    @abc.abstractmethod
    def run_worker(self, queues: list[str], concurrency: int = 1,
                   name: str | None = None) -> None:
        """Run the engine's own worker in this process until it is told to stop."""

    def run_scheduler(self, poll: float = 1.0, catch_up: int = 1,
                      name: str | None = None) -> None:
        """Fire the schedules kept in the ledger; by default with the engine-neutral beat."""
        if Capability.SCHEDULES not in self.capabilities:
            raise UnsupportedFeature(f"the {self.name} adapter does not support periodic schedules")
        run_beat(self.client, poll, catch_up, name)

    def forks_after_start(self, concurrency: int, **options: Any) -> bool:
        """True if ``run_worker(queues, concurrency, **options)`` forks after it starts;
        False only where it forks nothing, ever (see the module docstring)."""
        return True

    def needs_supervisor(self, concurrency: int, **options: Any) -> bool:
        """True if ``run_worker(queues, concurrency, **options)`` runs every job in this
        one process, with nothing to start another when a job takes it down (``os._exit``,
        a crash, the OOM killer). ``python -m adapters.worker`` then runs it under
        ``adapters/supervise.py``, a parent of a few MiB that does (its docstring says how);
        an engine whose worker replaces its own processes says False (the default)."""
        return False

    def recover_stranded(self) -> int:
        """Deliver again what a dead worker took from the broker but never claimed."""
        return 0

    def close(self) -> None:
        """Release the engine's own connections."""

    # -- what an engine is given ------------------------------------------------------
    def run(self, job_id: str, token: str) -> None:
        """Run one delivery under Switchyard's rules (the engine's task calls this)."""
        execute(self.client, job_id, token)

    def time_limit(self, delivery: Dispatch) -> int:
        """The engine's own hard time limit for a delivery: the job's, plus the grace."""
        return math.ceil(delivery.timeout + self.settings.timeout_grace)

    def transaction(self) -> Any:
        """A MULTI on the ledger's Redis (for ``shares_ledger_redis`` engines)."""
        return self.client.redis.pipeline(transaction=True)

    @contextlib.contextmanager
    def maintenance(self, queues: list[str], concurrency: int, name: str | None = None,
                    *, in_worker: bool = False, **options: Any) -> Iterator[Maintenance]:
        """The maintenance loop beside the worker, for as long as the block runs: a
        thread where :meth:`forks_after_start` says no fork follows, else a process.

        With ``in_worker`` the loop is the engine's to start, as a thread of one process
        it forks to run the jobs, where nothing forks again (``loop.start(in_thread=True)``
        there, ``loop.stop(forget=False)`` as that process ends): a replacement for a
        process a job ended starts one again. The worker leaves the live list when the
        block ends."""
        loop = Maintenance(self.client, queues, concurrency, name)
        if not in_worker:
            loop.start(in_thread=not self.forks_after_start(concurrency, **options))
        try:
            yield loop
        finally:
            if in_worker:
                loop.forget()
            else:
                loop.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
