"""``bench.scaling``'s cluster figures: the ledger on a local Redis Cluster of three primaries.

One worker process (``-c 1``, as the Procfile starts it) of an engine that can use a
cluster (Celery by default; its broker a plain redis-server beside the cluster), on
loopback (``tests/cluster.py`` starts the nodes). Measured: no-op jobs/s; per primary,
the Redis commands a job costs there (``INFO commandstats`` of that node, the worker's
idle rate and the bench's own polls taken off), the ledger shards it owns and the keys
it holds; and the idle commands/s of the worker over the whole cluster (its maintenance
reads every shard's next deadline once a second and runs the maintain script where one
has come).
"""

from __future__ import annotations

import collections
import tempfile
import time
from pathlib import Path

import redis

from bench import measure
from bench.subjects import ROOT, Switchyard, WorkerSetting, worker_env
from bench.workers import WorkerProcess
from tests.cluster import LocalCluster
from tests.harness import wait_until

__all__ = ["bench_cluster"]

POLL = 0.2
"""Seconds between the bench's reads of the counters while jobs run (each read is one
HGETALL per shard, taken off the node that holds it)."""


class ClusterSwitchyard(Switchyard):
    """Switchyard with its ledger on a cluster and its engine's broker elsewhere."""

    def __init__(self, cluster_url: str, broker_url: str, engine: str):
        import bench.jobs  # noqa: F401 - registers bench.noop and bench.sleep
        from adapters import AdapterSettings, JobOptions, create_adapter

        self.redis_url = cluster_url
        self.engine = engine
        variable = {"celery": "CELERY_BROKER_URL", "dramatiq": "DRAMATIQ_BROKER_URL"}[engine]
        self.env = worker_env(cluster_url, JOB_MODULES="bench.jobs",
                              SWITCHYARD_QUEUE_PREFIX="bench.", **{variable: broker_url})
        self.settings = AdapterSettings.from_env(self.env)
        self.adapter = create_adapter(engine, self.settings)
        self.JobOptions = JobOptions
        self.poller = self.adapter.redis
        self.poll_commands: collections.Counter = collections.Counter()
        self.polls = 0

    def done_count(self) -> int:
        self.polls += 1
        stats = self.adapter.ledger.stats()  # every shard's, added up
        return int(sum(v for k, v in stats.items() if k.startswith("finished|")
                       or (k.startswith("ran|") and k.split("|")[3] != "retry")))


def _calls(node: redis.Redis) -> int:
    """Commands the node ran so far (scripts' own commands included), the bench's INFO not."""
    stats = node.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info",))


def bench_cluster(engine: str, plan, log_dir: Path, say) -> dict:
    root = Path(tempfile.mkdtemp(prefix="switchyard-scaling-cluster-"))
    cluster = LocalCluster(root)
    try:
        try:
            cluster.start()
        except (RuntimeError, AssertionError, OSError) as exc:
            return {"why": f"the local cluster did not come up ({str(exc).strip()[-300:]})"}
        return _measure(cluster, engine, plan, log_dir, say)
    finally:
        cluster.stop()


def _measure(cluster: LocalCluster, engine: str, plan, log_dir: Path, say) -> dict:
    subject = ClusterSwitchyard(cluster.url, cluster.broker(0), engine)
    ledger = subject.adapter.ledger
    nodes = {port: cluster.node(port) for port in cluster.ports}
    by_port = {n.port: n for n in ledger.r.get_primaries()}
    owner = {ns: ledger.r.get_node_from_key(ns).port for ns in ledger.shards.namespaces}
    shards_on = collections.Counter(owner.values())
    setting = WorkerSetting(engine, "default", "the Procfile's worker (defaults: -c 1)", 1, (), ())
    worker = WorkerProcess(subject.worker_argv(setting, "cluster0"), subject.worker_env(), ROOT,
                           log_dir / f"cluster-{engine}.log")
    row: dict = {"engine": engine, "nodes": len(nodes), "shards": ledger.shards.count,
                 "primaries": sorted(by_port)}
    try:
        wait_until(lambda: worker.check() or subject.adapter.workers(), 60, 0.05,
                   "the worker's heartbeat in the cluster's ledger")
        worker.pause()
        fastest = measure.throughput_run(subject, worker, "noop", plan.warmup_jobs)
        n = int(max(plan.min_jobs, min(plan.max_jobs, round(fastest * plan.throughput_seconds))))
        row["noop"] = {**measure.summary([measure.throughput_run(subject, worker, "noop", n)
                                          for _ in range(plan.runs)]), "jobs": n}
        say(f"cluster ({engine}): one worker {row['noop']['median']:.1f} no-op/s")

        worker.resume()
        time.sleep(0.5)  # settled from the resume
        before = {p: _calls(c) for p, c in nodes.items()}
        started = time.perf_counter()
        time.sleep(plan.idle_seconds)
        idle_for = time.perf_counter() - started
        idle = {p: (_calls(c) - before[p]) / idle_for for p, c in nodes.items()}

        jobs = int(max(plan.min_jobs, min(plan.command_jobs_max,
                                          round(fastest * plan.command_seconds))))
        base = subject.done_count()
        subject.polls = 0
        before = {p: _calls(c) for p, c in nodes.items()}
        started = time.perf_counter()
        for _ in range(jobs):
            subject.enqueue("noop")
        while subject.done_count() < base + jobs:
            worker.check()
            time.sleep(POLL)
        took = time.perf_counter() - started
        after = {p: _calls(c) for p, c in nodes.items()}
        worker.pause()
        per_node = {}
        for port in nodes:
            # each read of the counters was one HGETALL per shard, on the shard's node
            spent = after[port] - before[port] - idle[port] * took - subject.polls * shards_on[port]
            per_node[port] = {"commands_per_job": spent / jobs, "idle_per_s": idle[port],
                              "shards": shards_on[port], "keys": nodes[port].dbsize()}
        row["commands"] = {"jobs": jobs, "per_node": per_node,
                           "total": sum(v["commands_per_job"] for v in per_node.values()),
                           "idle_per_s": sum(idle.values())}
        say(f"cluster ({engine}): {row['commands']['total']:.1f} commands/job over "
            f"{len(nodes)} primaries")
    finally:
        worker.stop()
        subject.close()
    return row
