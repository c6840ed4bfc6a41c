"""Dramatiq's Redis broker, with consumers that wait for a wake-up instead of polling.

Dramatiq's own Redis consumer runs its fetch script every ``worker_timeout`` ms while its
queue is empty, for every queue and its ``.DQ`` delay queue: some 80 Redis commands a
second per idle worker process at Switchyard's 100 ms. Here:

- every enqueue also posts a wake-up for its queue, ``XADD <namespace>:<queue>.wake
  MAXLEN 1 * n 1`` (a stream that never holds more than its last entry), in the script
  that writes the message (:data:`_ENQUEUE`, Dramatiq's HSET and RPUSH, then the XADD):
  one client command, as Dramatiq's own enqueue. A batch
  (:meth:`WakingRedisBroker.batch`) is one such call per queue, all in one pipeline.
  Messages Dramatiq puts back at a worker's stop (``requeue``) post a wake-up too.
- a consumer that finds its queue empty, and has room for a message, blocks in ``XREAD
  BLOCK <beat> STREAMS <wake key> <last id it saw>`` (from ``0-0``): a wake-up posted
  between its empty fetch and its XREAD has a newer id, so the XREAD returns at once and
  none is lost. It fetches again when woken, and at the latest after ``beat_seconds``,
  for messages that came without a wake-up (one pushed by other code). The wait is on a
  connection of its own with a socket timeout just past the block.
- a busy consumer (its prefetch held) waits until one of its messages is acked or
  nacked, and fetches again at once: Dramatiq's own sleeps (5 ms, doubling up to
  ``worker_timeout``) paced a worker of short jobs at one fetch per sleep (some 130
  no-op jobs a second per process) and left a thread of long jobs idle until the sleep
  ended. It waits ``worker_timeout`` at most, and does not touch Redis but to keep the worker's
  heartbeat in ``__heartbeats__`` fresh, one ZADD per ``beat_seconds`` for the whole
  process, and only when nothing else beat meanwhile (every fetch and ack beats too). The
  heartbeat is what ``DramatiqEngine.recover_stranded`` reads to tell a live worker's
  messages from a dead one's, so ``beat_seconds`` is a third of a lease at most; before,
  the ``.DQ`` consumer's polling kept it fresh.
- no ``.DQ`` delay queues, so no consumer for them: Switchyard never delays a Dramatiq
  message (the ledger holds delayed jobs), and an enqueue with a delay is refused.
- :meth:`WakingRedisBroker.stop_waiting`, at the start of a warm stop, stops every
  consumer fetching and posts a wake-up to each queue consumed, so no consumer sits out
  its block (the other workers of those queues look once, find nothing and wait again).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import compute_backoff, current_millis
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

from .connections import blocking_twin

__all__ = ["WakingRedisBroker", "WAKE_SUFFIX"]

log = logging.getLogger("switchyard.dramatiq")

WAKE_SUFFIX = ".wake"  # after Dramatiq's own ".msgs", ".DQ", ".XQ": a queue's own key
_WAKE_FIELDS = {"n": 1}
_CHUNK = 200  # messages per script call (Lua's unpack has a limit)

# What Dramatiq's dispatch script does to enqueue (HSET the message into <queue>.msgs,
# RPUSH its id onto <queue>), for several messages of one queue, then the wake-up. It
# leaves out the dispatch script's heartbeat of the publisher, which is no worker.
_ENQUEUE = """
-- keys: the queue's list, its messages hash, its wake-up stream; argv: id, data, ...
redis.call("hset", KEYS[2], unpack(ARGV))
local ids = {}
for i = 1, #ARGV, 2 do
    ids[#ids + 1] = ARGV[i]
end
redis.call("rpush", KEYS[1], unpack(ids))
redis.call("xadd", KEYS[3], "MAXLEN", "1", "*", "n", "1")
"""


def _by_queue(items: list[tuple[str, str, bytes]]) -> dict[str, list[tuple[str, bytes]]]:
    """``(queue, message id, data)`` items as ``{queue: [(message id, data), ...]}``, in order."""
    grouped: dict[str, list[tuple[str, bytes]]] = {}
    for queue_name, message_id, data in items:
        grouped.setdefault(queue_name, []).append((message_id, data))
    return grouped


class WakingRedisBroker(RedisBroker):
    """A ``RedisBroker`` whose consumers wait on their queue's wake-up stream."""

    def __init__(self, *, beat_seconds: float, wait_margin: float, **options):
        super().__init__(**options)
        self.beat_seconds = beat_seconds  # longest wait between two fetches, or heartbeats
        self.wait_margin = wait_margin  # the socket's time on top of a blocking wait
        self.stopping = threading.Event()
        self.beaten = 0.0  # time.monotonic() of this process's last heartbeat
        self._consumed: set[str] = set()
        self._waiter: redis.Redis | None = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._enqueue = self.client.register_script(_ENQUEUE)

    def wake_key(self, queue_name: str) -> str:
        return f"{self.namespace}:{queue_name}{WAKE_SUFFIX}"

    # -- queues without delay queues ------------------------------------------------------
    def declare_queue(self, queue_name: str) -> None:
        if queue_name not in self.queues:
            self.emit_before("declare_queue", queue_name)
            self.queues.add(queue_name)
            self.emit_after("declare_queue", queue_name)

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        if delay is not None:
            raise ValueError("this broker keeps no delay queues (the ledger delays jobs)")
        return super().enqueue(message)

    # -- the publishing side: each message, then its queue's wake-up ----------------------
    def do_enqueue(self, queue_name: str, message_id: str, data: bytes) -> None:
        pending = getattr(self._local, "pending", None)
        if pending is None:
            self._send([(queue_name, message_id, data)])
        else:
            pending.append((queue_name, message_id, data))

    @contextlib.contextmanager
    def batch(self):
        """Every ``enqueue`` of this thread inside goes out on leaving: the messages, then
        one wake-up per queue, in one round trip (nothing goes if the block raises)."""
        if getattr(self._local, "pending", None) is not None:
            yield  # inside an outer batch: that one sends
            return
        self._local.pending = pending = []
        try:
            yield
        finally:
            self._local.pending = None
        self._send(pending)

    @contextlib.contextmanager
    def into(self, pipeline):
        """Every ``enqueue`` of this thread inside is written into ``pipeline`` on
        leaving, as :data:`_ENQUEUE` writes it (per queue: the HSET, the RPUSH, the
        wake-up): the client's riders, which the ledger's create script runs with the
        records when this broker is the ledger's Redis (``adapters/riders.py``)."""
        if getattr(self._local, "pending", None) is not None:
            raise RuntimeError("an enqueue into a pipeline inside a batch")
        self._local.pending = pending = []
        try:
            yield
        finally:
            self._local.pending = None
        for queue_name, items in _by_queue(pending).items():
            pipeline.hset(f"{self.namespace}:{queue_name}.msgs",
                          mapping={message_id: data for message_id, data in items})
            pipeline.rpush(f"{self.namespace}:{queue_name}", *(i for i, _ in items))
            pipeline.xadd(self.wake_key(queue_name), _WAKE_FIELDS, maxlen=1,
                          approximate=False)

    def _send(self, items: list[tuple[str, str, bytes]]) -> None:
        """One script call per queue (and chunk): its messages, then its wake-up."""
        calls = []
        for queue_name, messages in _by_queue(items).items():
            args = [part for message in messages for part in message]
            keys = [f"{self.namespace}:{queue_name}", f"{self.namespace}:{queue_name}.msgs",
                    self.wake_key(queue_name)]
            calls += [(keys, args[i:i + 2 * _CHUNK]) for i in range(0, len(args), 2 * _CHUNK)]
        if len(calls) == 1:  # the script object loads the script if Redis lacks it
            self._enqueue(keys=calls[0][0], args=calls[0][1])
            return
        pipe = self.client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.evalsha(self._enqueue.sha, len(keys), *keys, *args)
        replies = pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception) and not isinstance(
                    reply, redis.exceptions.NoScriptError):
                raise reply
        for (keys, args), reply in zip(calls, replies):
            if isinstance(reply, redis.exceptions.NoScriptError):  # it did nothing
                self._enqueue(keys=keys, args=args)

    def wake(self, *queue_names: str) -> None:
        """Post a wake-up for each of ``queue_names``."""
        pipe = self.client.pipeline(transaction=False)
        for queue_name in queue_names:
            pipe.xadd(self.wake_key(queue_name), _WAKE_FIELDS, maxlen=1, approximate=False)
        pipe.execute()

    # -- the consuming side ---------------------------------------------------------------
    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000):
        self._consumed.add(queue_name)
        return _WakingConsumer(self, queue_name, prefetch, timeout)

    def _dispatch(self, command):
        dispatch = super()._dispatch(command)

        def beating(*args):  # every call of the dispatch script is a heartbeat
            reply = dispatch(*args)
            self.beaten = time.monotonic()
            return reply

        return beating

    def keep_alive(self) -> None:
        """This process's heartbeat, if nothing has beaten for ``beat_seconds``."""
        if time.monotonic() - self.beaten >= self.beat_seconds:
            self.client.zadd(f"{self.namespace}:__heartbeats__",
                             {self.broker_id: current_millis()})
            self.beaten = time.monotonic()

    def waiter(self) -> redis.Redis:
        """The client of the consumers' blocking waits (connections of their own)."""
        with self._lock:
            if self._waiter is None:
                self._waiter = blocking_twin(self.client, self.beat_seconds + self.wait_margin)
            return self._waiter

    def stop_waiting(self) -> None:
        """A warm stop begins: no consumer fetches again, none stays blocked. The
        wake-ups go from a thread of their own: a Redis that does not answer delays no
        stop (its consumers are then in no wait)."""
        self.stopping.set()
        if self._consumed:
            threading.Thread(target=self._wake_consumed, name="wake-consumers",
                             daemon=True).start()

    def _wake_consumed(self) -> None:
        try:
            self.wake(*sorted(self._consumed))
        except Exception as exc:  # noqa: BLE001 - logged; the stop goes on regardless
            log.warning("could not wake this worker's consumers (%s)", exc)

    def close(self) -> None:
        super().close()
        if self._waiter is not None:
            self._waiter.close()


class _WakingConsumer(_RedisConsumer):
    """Dramatiq's Redis consumer, but an empty queue is waited on, not polled."""

    def __init__(self, broker: WakingRedisBroker, queue_name, prefetch, timeout):
        super().__init__(broker, queue_name, prefetch, timeout)
        self.wake_key = broker.wake_key(queue_name)
        self.seen: bytes | str = "0-0"  # the last wake-up id read
        self.settled = threading.Event()  # set by each ack or nack: room to fetch again

    def ack(self, message) -> None:
        try:
            super().ack(message)
        finally:  # after Dramatiq's consumer dropped it from what it holds
            self.settled.set()

    def nack(self, message) -> None:
        try:
            super().nack(message)
        finally:
            self.settled.set()

    def requeue(self, messages) -> None:
        messages = list(messages)
        super().requeue(messages)
        if messages:  # back on the queue: any other worker may take them now
            self.broker.wake(self.queue_name)

    def __next__(self):
        broker = self.broker
        try:
            while True:
                if self.message_cache:
                    data = self.message_cache.pop(0)
                    if data is None:  # an id whose message is gone (Dramatiq's #266)
                        self.logger.warning("a message of queue %r is gone", self.queue_name)
                        continue
                    self.misses = 0
                    message = Message.decode(data)
                    self.queued_message_ids.add(message.message_id)
                    return MessageProxy(message)
                if broker.stopping.is_set():
                    broker.keep_alive()  # what it holds must not look like a dead worker's
                    # Dramatiq's own wait: from 5 ms, doubling up to worker_timeout
                    self.misses, backoff_ms = compute_backoff(self.misses,
                                                              max_backoff=self.timeout)
                    time.sleep(backoff_ms / 1000)
                    return None
                if self.prefetch - self.outstanding_message_count <= 0:
                    broker.keep_alive()
                    self.settled.clear()
                    if self.prefetch - self.outstanding_message_count <= 0:  # none settled
                        self.settled.wait(self.timeout / 1000)  # since the first look
                    return None  # Dramatiq's consumer thread looks at its state, then here
                room = self.prefetch - self.outstanding_message_count
                self.message_cache = broker.do_fetch(self.queue_name, room)
                if not self.message_cache:
                    self._wait()
                    return None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise ConnectionClosed(exc) from None

    def _wait(self) -> None:
        """Until a wake-up newer than the last one seen, or ``beat_seconds``."""
        broker = self.broker
        reply = broker.waiter().xread({self.wake_key: self.seen}, count=1,
                                      block=max(1, int(broker.beat_seconds * 1000)))
        if isinstance(reply, dict):  # RESP3
            reply = list(reply.items())
        if reply:
            self.seen = reply[0][1][-1][0]
