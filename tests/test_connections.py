"""The ledger's Redis connections: what a new one costs the server."""

import redis

from adapters.connections import QUIET_CLIENT, redis_client
from adapters.settings import AdapterSettings


def _calls(client: redis.Redis) -> dict[str, int]:
    return {name[len("cmdstat_"):]: stat["calls"]
            for name, stat in client.info("commandstats").items()
            if not name.startswith("cmdstat_config")}


def test_a_new_connection_sends_no_health_check_ping(redis_url):
    """redis-py pings a connection it has just opened when health checks are on; a
    worker that forks a process per job opens one a job, so that PING is skipped -- and
    later ones, on a connection idle past the interval, still come."""
    settings = AdapterSettings.from_env({"REDIS_URL": redis_url})
    server = redis.Redis.from_url(redis_url)
    client = redis_client(settings, health_check_interval=30, **QUIET_CLIENT)
    try:
        server.config_resetstat()
        client.get("x")
        assert "ping" not in _calls(server)
        pool = client.connection_pool
        connection = pool.get_connection()
        connection.next_health_check = 0  # as if idle past the interval
        pool.release(connection)
        client.get("x")
        assert _calls(server).get("ping") == 1
    finally:
        client.close()
        server.close()
