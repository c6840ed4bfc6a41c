"""Prometheus metrics read from the ledger's counters at scrape time.

The counters live in Redis (the ledger bumps them in the same scripts that change a
job's state), so every web process reports the same totals and nothing is lost when
a process restarts.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from adapters import Switchyard
from adapters.record import DURATION_BUCKETS

__all__ = ["LedgerCollector", "make_registry"]

log = logging.getLogger("switchyard.metrics")


# The ledger's bucket bounds, as its finish script writes them: every series exposes
# every bucket, hit or not.
BUCKETS = DURATION_BUCKETS


def _le_key(le: str) -> float:
    return float("inf") if le == "+Inf" else float(le)


class LedgerCollector(Collector):
    """Turns the client's ``queue_stats()`` into metric families."""

    def __init__(self, adapter: Switchyard):
        self.adapter = adapter

    def collect(self):
        enqueued = CounterMetricFamily("switchyard_jobs_enqueued", "Jobs enqueued",
                                       labels=["type", "backend"])
        finished = CounterMetricFamily("switchyard_jobs_finished",
                                       "Jobs that ended, by final state",
                                       labels=["type", "state", "backend"])
        depth = GaugeMetricFamily("switchyard_queue_depth",
                                  "Jobs waiting for their time (scheduled), waiting in a queue "
                                  "for a worker (queued, per queue) or running now",
                                  labels=["state", "backend", "queue"])
        oldest = GaugeMetricFamily("switchyard_queue_oldest_seconds",
                                   "Age of the oldest queued job of each queue (0 when empty)",
                                   labels=["queue", "backend"])
        paused = GaugeMetricFamily("switchyard_queue_paused",
                                   "1 while the queue is paused (its jobs wait), else 0",
                                   labels=["queue"])
        up = GaugeMetricFamily("switchyard_ledger_up", "1 if the ledger in Redis answered")
        try:
            queue_stats = self.adapter.queue_stats()
            stats, counts, backlog = queue_stats.counters, queue_stats.states, queue_stats.backlog
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail with Redis down
            log.warning("metrics: cannot read the ledger: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        buckets: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
        sums: dict[tuple[str, str], float] = {}
        ends: dict[tuple[str, str, str], float] = defaultdict(float)
        for key, value in stats.items():
            kind, _, rest = key.partition("|")
            parts = rest.split("|")
            if kind == "enqueued" and len(parts) == 2:
                enqueued.add_metric(parts, value)
            elif kind == "ran" and len(parts) == 4:
                # one attempt that ran: its duration bucket, and its end unless it retries
                job_type, backend, outcome, le = parts
                buckets[(job_type, backend)][le] += value
                if outcome != "retry":
                    ends[(job_type, outcome, backend)] += value
            elif kind == "finished" and len(parts) == 3:
                job_type, backend, state = parts
                ends[(job_type, state, backend)] += value
            elif kind == "duration" and len(parts) == 3:
                buckets[(parts[0], parts[1])][parts[2]] += value
            elif kind == "duration_sum" and len(parts) == 2:
                sums[(parts[0], parts[1])] = value
        for labels, value in sorted(ends.items()):
            finished.add_metric(list(labels), value)
        duration = HistogramMetricFamily("switchyard_job_duration_seconds",
                                         "Time one attempt of a job ran",
                                         labels=["type", "backend"])
        for labels in sorted(set(buckets) | set(sums)):
            per_bucket = buckets.get(labels, {})
            cumulative, running = [], 0.0
            for le in sorted(set(BUCKETS) | set(per_bucket) - {"+Inf"}, key=_le_key):
                running += per_bucket.get(le, 0.0)
                cumulative.append((floatToGoString(float(le)), running))
            cumulative.append(("+Inf", running + per_bucket.get("+Inf", 0.0)))
            duration.add_metric(list(labels), cumulative, sum_value=sums.get(labels, 0.0))
        for state, count in sorted(counts.items()):
            depth.add_metric([state, self.adapter.name, ""], count)
        now = time.time()
        for queue, (count, since) in backlog.items():
            depth.add_metric(["queued", self.adapter.name, queue], count)
            oldest.add_metric([queue, self.adapter.name],
                              max(0.0, now - since) if since is not None else 0.0)
        for queue in sorted(set(backlog) | set(queue_stats.paused)):
            paused.add_metric([queue], 1 if queue in queue_stats.paused else 0)
        yield from (enqueued, finished, duration, depth, oldest, paused, up)


def make_registry(adapter: Switchyard) -> CollectorRegistry:
    """A registry of the app's own (not the process-global one, so apps do not collide)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(adapter))
    return registry
