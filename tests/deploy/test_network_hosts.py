"""Hosts that share only the network: web, worker and scheduler each on a host of its own.

Four network namespaces (tests/netns.py) stand in for four machines on one LAN: Redis
on one, bound to that host's address with a password (``requirepass``, in
``REDIS_URL`` as a user writes it), and the Procfile's ``web``, ``worker`` and
``scheduler`` on the other three, each started with the Procfile's own command in a
directory of its own (the fault suite's :class:`~tests.reliability.stack.Stack`) with
only ``REDIS_URL``, ``API_KEYS``, ``PORT`` and ``QUEUE_BACKEND`` set. Each namespace
has a loopback of its own, so nothing reaches another process through 127.0.0.1 (the
test shows Redis is not there from the worker's host), and each process writes only in
its own directory. The test, in the root namespace, talks to web over the bridge:
jobs run (on the worker's host, by its pid), a delayed job waits and runs, an
``every: 1`` schedule fires, ``/readyz`` sees the worker.

It needs root and iproute2 (CI runs as root); elsewhere it skips and says why. A leg
whose broker is not Redis would need that broker on a host of its own too: skipped.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
import redis

from adapters import AdapterSettings, create_adapter
from service.embedded_redis import find_redis_server
from tests.harness import wait_until
from tests.netns import Network, unavailable
from tests.processes import Process
from tests.reliability.stack import Stack

REDIS_PORT = 6379  # the host's own port space: the machine's 6379 is another host's
ROLES = ("redis", "web", "worker", "sched")


def pytest_generate_tests(metafunc):
    if "leg" in metafunc.fixturenames:
        params = [pytest.param(leg, marks=() if not leg.endswith("+amqp") else pytest.mark.skip(
            reason=f"{leg}: RabbitMQ would need a host of its own; this test runs Redis only"))
            for leg in metafunc.config._switchyard_legs]
        metafunc.parametrize("leg", params)


@pytest.fixture
def network(request):
    why = unavailable()
    if why:
        pytest.skip(f"hosts on a shared network: {why}")
    net = Network(ROLES)
    request.addfinalizer(net.close)  # runs even if a later fixture or the test fails
    return net


@pytest.fixture
def redis_host(network, tmp_path, request):
    """redis-server on the redis host, at its bridge address only, with a password."""
    host = network["redis"]
    password = uuid.uuid4().hex
    directory = tmp_path / "redis"
    directory.mkdir()
    server = Process(host.argv([find_redis_server(), "--bind", host.address,
                                "--port", str(REDIS_PORT), "--requirepass", password,
                                "--save", "", "--appendonly", "no", "--dir", str(directory),
                                "--maxmemory-policy", "noeviction"]),
                     {"PATH": "/usr/sbin:/usr/bin:/bin"}, directory / "redis.log")
    request.addfinalizer(server.stop)
    url = f"redis://:{password}@{host.address}:{REDIS_PORT}/0"
    client = redis.Redis.from_url(url, socket_timeout=1)

    def answers():
        server.assert_alive("redis-server")
        try:
            return client.ping()
        except redis.ConnectionError:
            return False
    wait_until(answers, 15, 0.05, "redis-server on its host to answer")
    client.close()
    return url


def _reach(host, address: str) -> str:
    """From ``host``: ``open`` if a TCP connection to ``address``:6379 is accepted, else
    the error's name."""
    probe = ("import socket, sys\n"
             "try:\n"
             f"    socket.create_connection((sys.argv[1], {REDIS_PORT}), 2).close(); print('open')\n"
             "except OSError as exc:\n"
             "    print(type(exc).__name__)\n")
    return host.run([sys.executable, "-c", probe, address]).stdout.strip()


def test_web_worker_scheduler_on_hosts_that_share_only_the_network(leg, network, redis_host,
                                                                      tmp_path, request):
    backend = leg.split("+")[0]
    redis_address = network["redis"].address
    # nothing listens on any app host's loopback: Redis is reachable only over the network
    for role in ("web", "worker", "sched"):
        assert _reach(network[role], "127.0.0.1") == "ConnectionRefusedError", role
        assert _reach(network[role], redis_address) == "open", role

    stack = Stack(backend, redis_host, tmp_path / "stack", settings={},
                  hosts={"web": network["web"], "worker": network["worker"],
                         "scheduler": network["sched"]})
    request.addfinalizer(stack.close)
    assert stack.address == network["web"].address
    for kind, role in (("web", "web"), ("worker", "worker"), ("scheduler", "sched")):
        assert stack[kind].proc.pid in network[role].pids(), f"{kind} is not on its host"
    stack.wait_for_worker()

    status, _, body = stack.get("/readyz")
    assert status == 200 and body["workers"] >= 1, body

    status, _, now = stack.post_job("demo.echo", {"message": "over the bridge"})
    assert status == 202, now
    status, _, later = stack.post_job("demo.echo", {"message": "later"}, {"delay": 1})
    assert status == 202 and later["state"] == "scheduled", later
    status, _, schedule = stack.request("POST", "/v1/schedules", {
        "name": "tick", "every": 1, "job": {"type": "demo.echo", "payload": {"message": "tick"}}})
    assert status == 201, schedule

    def ended(job_id):
        def check():
            status, _, job = stack.get(f"/v1/jobs/{job_id}")
            return job if status == 200 and job["state"] in ("succeeded", "failed") else None
        return check

    try:
        done = wait_until(ended(now["id"]), 60, 0.1, "the job to end")
        delayed = wait_until(ended(later["id"]), 60, 0.1, "the delayed job to end")
        fired = wait_until(lambda: (s := stack.get("/v1/schedules/tick")[2]) and s["last_job_id"],
                           60, 0.1, "the schedule to fire")
        ticked = wait_until(ended(fired), 60, 0.1, "the scheduled job to end")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n" + "\n".join(f"--- {p.kind}\n{p.log()}"
                                                    for p in stack.processes.values())) from None
    assert (done["state"], done["result"]) == ("succeeded", {"message": "over the bridge"})
    assert (delayed["state"], delayed["result"]) == ("succeeded", {"message": "later"})
    assert delayed["started_at"] >= delayed["run_at"], delayed
    assert (ticked["state"], ticked["result"]) == ("succeeded", {"message": "tick"})

    # the jobs ran on the worker's host: the pid each record names is in that namespace
    adapter = create_adapter("inline", AdapterSettings.from_env({"REDIS_URL": redis_host}))
    try:
        records = adapter.ledger.load_many([now["id"], later["id"], fired])
    finally:
        adapter.close()
    worker_pids = set(network["worker"].pids())
    for record in records:
        assert int(record["worker"].rsplit(":", 1)[1]) in worker_pids, record["worker"]

    # the scheduler keeps firing (every second), from its own host
    first = stack.get("/v1/schedules/tick")[2]["last_run_at"]
    wait_until(lambda: stack.get("/v1/schedules/tick")[2]["last_run_at"] != first, 30, 0.1,
               "a second run of the schedule")


def test_network_is_removed_with_its_processes():
    """close() leaves no namespace, interface or process behind, even with one running."""
    why = unavailable()
    if why:
        pytest.skip(f"hosts on a shared network: {why}")
    net = Network(("a", "b"))
    names = [h.namespace for h in net.hosts.values()]
    sleeper = subprocess.Popen(net["a"].argv(["sleep", "300"]))
    wait_until(lambda: sleeper.pid in net["a"].pids(), 10, 0.05, "the process in its namespace")
    tag = net.tag
    net.close()
    assert sleeper.wait(10) == -9
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert not any(name in listed for name in names), listed
    assert f"sy{tag}" not in links, links
