"""A ``redis+sentinel://`` URL is parsed once, refused with one clear line when it
cannot work, and turned into each library's own spelling (redis-py, kombu, limits)."""

from __future__ import annotations

import pytest
import redis.sentinel

from adapters import AdapterSettings, ConfigurationError
from adapters.connections import blocking_twin, celery_broker, redis_client

URL = "redis+sentinel://:s3cret@127.0.0.1:26379,10.0.0.2:26380,sentinel3/mymaster/2"


def test_the_url_names_sentinels_primary_and_database():
    settings = AdapterSettings.from_env({"REDIS_URL": URL})
    client = redis_client(settings, socket_timeout=2.0, decode_responses=True)
    pool = client.connection_pool
    assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
    assert pool.service_name == "mymaster"
    assert pool.connection_kwargs["db"] == 2
    assert pool.connection_kwargs["password"] == "s3cret"
    assert pool.connection_kwargs["decode_responses"] is True
    assert [(c.connection_pool.connection_kwargs["host"], c.connection_pool.connection_kwargs["port"])
            for c in pool.sentinel_manager.sentinels] == [
        ("127.0.0.1", 26379), ("10.0.0.2", 26380), ("sentinel3", 26379)]
    twin = blocking_twin(client, 30)
    assert twin.connection_pool.service_name == "mymaster"
    assert twin.connection_pool.connection_kwargs["socket_timeout"] == 30


def test_celery_gets_its_own_spelling():
    settings = AdapterSettings.from_env({"REDIS_URL": URL, "REDIS_SENTINEL_PASSWORD": "sp"})
    broker, options = celery_broker(settings)
    assert broker == ("sentinel://:s3cret@127.0.0.1:26379/2;sentinel://:s3cret@10.0.0.2:26380/2;"
                      "sentinel://:s3cret@sentinel3:26379/2")
    assert options == {"master_name": "mymaster", "sentinel_kwargs": {"password": "sp"}}


@pytest.mark.parametrize("url, message", [
    ("redis+sentinel://127.0.0.1:26379", "names no primary"),
    ("redis+sentinel://127.0.0.1:26379/", "names no primary"),
    ("redis+sentinel://127.0.0.1:26379,h2:port/m", "not a number from 1 to 65535"),
    ("redis+sentinel://127.0.0.1:0/m", "not a number from 1 to 65535"),
    ("redis+sentinel://:26379/m", "has no host"),
    ("redis+sentinel://h1:26379,/m", "has no host"),
    ("redis+sentinel://h1:26379/m/zero", "must be a number"),
    ("redis+sentinel://:pw@h1:x/m", "***"),
])
def test_a_bad_url_is_one_line(url, message):
    for variable in ("REDIS_URL", "CELERY_BROKER_URL"):
        with pytest.raises(ConfigurationError) as caught:
            AdapterSettings.from_env({variable: url})
        assert message in str(caught.value) and variable in str(caught.value)
        assert "pw" not in str(caught.value).replace("***", "")
