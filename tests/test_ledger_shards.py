"""A ledger of several shards on one plain Redis (``SWITCHYARD_LEDGER_SHARDS=4``): where
each job lands, and the reads that merge the shards. The cluster itself is
``tests/deploy/test_cluster.py``; here the same code runs on the session's redis-server,
with the RQ engine and no worker (jobs are written, not run): its one-transaction route
writes several shards' keys in one MULTI, as a single server allows."""

from __future__ import annotations

import pytest

import tests.deploy.cluster_jobs  # noqa: F401 - registers c.*
from adapters import (AdapterSettings, ConfigurationError, JobFilter, JobOptions, JobState,
                      UnsupportedFeature, create_adapter)
from adapters.shards import Shards


@pytest.fixture
def client(redis_url):
    adapter = create_adapter("rq", AdapterSettings.from_env(
        {"REDIS_URL": redis_url, "SWITCHYARD_LEDGER_SHARDS": "4"}))
    yield adapter
    adapter.close()


def test_one_shard_is_the_namespace_as_it_is():
    shards = Shards("sy:")
    assert shards.namespaces == ("sy:",) and shards.ns("any") == "sy:"
    assert Shards("sy:", 3).namespaces == ("sy:{0}:", "sy:{1}:", "sy:{2}:")
    four = Shards("sy:", 4)
    ids = [four.new_id(0), four.new_id(1)]
    assert [four.of(i) for i in ids] == [0, 1]
    with pytest.raises(ValueError, match="in 2 shards"):  # one script cannot write them
        four.one_shard([{"id": i} for i in ids])
    settings = AdapterSettings.from_env({})
    assert (settings.ledger_shards, settings.home_namespace, settings.cluster) == (1, "sy:", False)
    cluster = AdapterSettings.from_env({"REDIS_URL": "redis+cluster://a:7000,b:7001"})
    assert (cluster.ledger_shards, cluster.home_namespace, cluster.cluster_nodes) == (
        16, "sy:{0}:", [("a", 7000), ("b", 7001)])
    with pytest.raises(ConfigurationError, match="is not host:port"):
        AdapterSettings.from_env({"REDIS_URL": "redis+cluster://a:7000,b"})
    with pytest.raises(ConfigurationError, match="must not hold"):
        AdapterSettings.from_env({"SWITCHYARD_NAMESPACE": "x{1}:", "SWITCHYARD_LEDGER_SHARDS": "2"})


def test_jobs_land_where_the_keys_they_share_are(client):
    shards = client.ledger.shards
    keyed = [client.enqueue("c.echo", {"i": i}, JobOptions(idempotency_key=f"k{i}"),
                            tenant="acme") for i in range(3)]
    assert {shards.of(j.id) for j in keyed} == {shards.of_name("idem", "acme")}
    assert client.search().by_idempotency_key("acme", "k1").id == keyed[1].id
    rated = [client.enqueue("c.rated", {"i": i}) for i in range(3)]
    assert {shards.of(j.id) for j in rated} == {shards.of_name("rl", "c.rated")}
    chain = client.enqueue_workflow("chain", [("c.echo", {"n": 1}, None), ("c.echo", {"n": 2}, None)])
    assert {shards.of(j.id) for j in chain.jobs} == {shards.of(chain.id)}
    batch = client.enqueue_many([("c.echo", {"b": i}, None) for i in range(5)])
    assert len({shards.of(j.id) for j in batch}) == 1  # one write, one shard
    failed = client.cancel(client.enqueue("c.echo", {"x": 1}).id)
    replay = client.retry(failed.id)
    assert shards.of(replay.id) == shards.of(failed.id)
    assert client.get(failed.id).retried_as == (replay.id,)
    # a keyed job of a rate-limited type: two rules, here two shards, one script: refused
    assert shards.of_name("idem", "default") != shards.of_name("rl", "c.rated")
    with pytest.raises(UnsupportedFeature, match="different shards"):
        client.enqueue("c.rated", {"i": 9}, JobOptions(idempotency_key="r9"))


def test_reads_over_many_jobs_merge_every_shard_in_order(client):
    ids = {client.enqueue("c.echo", {"i": i}, tenant="acme").id for i in range(25)}
    ids |= {j.id for j in client.enqueue_many([("c.echo", {"b": i}, None) for i in range(6)],
                                              tenant="acme")}
    assert len({client.ledger.shards.of(i) for i in ids}) > 1
    for read in (lambda c: client.list(tenant="acme", limit=4, cursor=c),
                 lambda c: client.search().page(JobFilter(tenant="acme", state="queued"),
                                                limit=4, cursor=c)):
        seen, cursor = [], None
        while True:
            items, cursor = read(cursor)
            seen += items
            if cursor is None:
                break
        assert sorted(j.id for j in seen) == sorted(ids)
        order = [(j.created_at, j.id) for j in seen]
        assert order == sorted(order, reverse=True)
    counts = client.search().counts("acme")
    assert (counts["total"], counts["queued"]) == (len(ids), len(ids))
    assert sum(1 for _ in client.created_between("acme", 0, 2**40)) == len(ids)
    assert client.ledger.tenants() == ["acme"]
    stats = client.queue_stats()
    assert sum(v for k, v in stats.counters.items() if k.startswith("enqueued|")) == len(ids)
    assert stats.backlog["default"][0] == len(ids) == client.queues().get("default").queued
    for job_id in list(ids)[:3]:
        client.cancel(job_id)
    assert client.search().counts("acme")["canceled"] == 3


def test_a_pause_holds_on_every_shard(client):
    client.queues().pause("default")
    assert set(client.queues().paused()) == {"default"}
    for ns in client.ledger.shards.namespaces:
        assert client.redis.hexists(f"{ns}paused", "default")
    client.queues().resume("default")
    assert not any(client.redis.hexists(f"{ns}paused", "default")
                   for ns in client.ledger.shards.namespaces)
    assert client.enqueue("c.echo", {}).state is JobState.QUEUED
