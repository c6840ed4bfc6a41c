"""Every Redis connection Switchyard opens, TLS included, built from one AdapterSettings.

The ledger, RQ's queues and workers, Celery's Redis broker, the web's rate limiter and
the jobs' file store all connect through here, so a ``rediss://`` URL gets the same
certificate check everywhere: ``AdapterSettings.redis_tls_verify`` and
``redis_ca_file`` (``REDIS_TLS_VERIFY`` / ``REDIS_CA_FILE``, or the URL's own
``?ssl_cert_reqs=`` / ``?ssl_ca_certs=``). A plain ``redis://`` or ``unix://`` URL
gets no TLS options at all.

A ``redis+cluster://host:port,host:port`` ``REDIS_URL`` (``rediss+cluster://`` over TLS)
makes the ledger's client a ``redis.cluster.RedisCluster`` (:func:`redis_client`); every
other Redis (a broker, the file store's own URL) is a single server's.

A ``redis+sentinel://`` URL names sentinels and the primary they watch: every client
built here is then redis-py's Sentinel client of that primary, which asks the sentinels
where it is on each new connection and drops its connections when a failover moves it
(a connection error, or ``READONLY`` from a demoted primary), so the next command goes
to the new primary. TLS to sentinels is not supported.
"""

from __future__ import annotations

import inspect
import ssl
from urllib.parse import parse_qsl, quote, urlencode, urlparse, urlunparse

import redis
from redis.cluster import ClusterNode, RedisCluster
import redis.sentinel

from .errors import ConfigurationError
from .settings import CLUSTER_SCHEMES, AdapterSettings, SentinelURL, TLS_QUERY, is_sentinel

__all__ = ["QUIET_CLIENT", "same_redis", "redis_client", "redis_tls_options", "celery_broker_ssl",
           "check_tls", "strip_tls_query", "is_cluster", "blocking_twin", "disconnect",
           "celery_broker"]

_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}

# Connections skip CLIENT SETINFO: it only labels them in CLIENT LIST, and redis-py
# reads its package metadata from disk for it on every new connection -- once per job
# in a fork-per-job worker, whose work horse connects afresh.
QUIET_CLIENT = ({"driver_info": None}
                if "driver_info" in inspect.signature(redis.Redis.__init__).parameters
                else {"lib_name": None, "lib_version": None})


def strip_tls_query(url: str) -> str:
    """``url`` without the TLS options of its query (the settings carry them); a URL
    that is not Redis's (an AMQP broker) is left as it is."""
    parsed = urlparse(url)
    if not parsed.query or parsed.scheme not in ("redis", "rediss", "unix", *CLUSTER_SCHEMES):
        return url
    query = [(k, v) for k, v in parse_qsl(parsed.query, keep_blank_values=True)
             if k not in TLS_QUERY]
    return urlunparse(parsed._replace(query=urlencode(query)))


def _is_tls(url: str) -> bool:
    return urlparse(url).scheme in ("rediss", "rediss+cluster")


def redis_tls_options(settings: AdapterSettings, url: str) -> dict:
    """redis-py's TLS keyword arguments for ``url``: none unless it is ``rediss://``."""
    if not _is_tls(url):
        return {}
    verify = settings.redis_tls_verify
    return {
        "ssl_cert_reqs": verify,
        "ssl_ca_certs": settings.redis_ca_file,
        # a certificate that is not checked has no name worth checking either
        "ssl_check_hostname": verify == "required",
    }


def redis_client(settings: AdapterSettings, url: str | None = None, **options) -> redis.Redis:
    """A redis-py client of ``url`` (default: the ledger's), with the TLS of the settings.

    ``options`` are redis-py's own (timeouts, ``decode_responses``, ...): each caller
    keeps the ones its traffic needs, e.g. none for RQ's blocking pops.
    """
    url = url or settings.redis_url
    if url.split(":", 1)[0] in CLUSTER_SCHEMES:
        return _cluster_client(settings, url, **options)
    if is_sentinel(url):
        return _sentinel_client(settings, url, options)
    if options.get("health_check_interval") and "redis_connect_func" not in options and \
            hasattr(redis.connection.AbstractConnection, "on_connect_check_health"):
        options["redis_connect_func"] = _connect_without_a_health_check
    return redis.Redis.from_url(strip_tls_query(url), **redis_tls_options(settings, url),
                                **options)


def _connect_without_a_health_check(connection) -> None:
    """redis-py's handshake on a new connection, less the health-check PING it sends first
    when ``health_check_interval`` is set: a socket just opened needs no check, and a
    worker that forks a process per job (RQ's fork Worker) opens one per job."""
    connection.on_connect_check_health(check_health=False)


def _cluster_client(settings: AdapterSettings, url: str, **options) -> RedisCluster:
    """A ``RedisCluster`` started from the nodes the URL lists (its password, if any,
    is every node's)."""
    parsed = urlparse(url)
    tls = redis_tls_options(settings, url)
    nodes = [ClusterNode(host, port) for host, port in settings.cluster_nodes]
    options.pop("health_check_interval", None)  # each node's pool checks on its own use
    return RedisCluster(startup_nodes=nodes, username=parsed.username or None,
                        password=parsed.password or None, ssl=bool(tls), **tls, **options)


def is_cluster(client) -> bool:
    """True if ``client`` is a Redis Cluster's."""
    return isinstance(client, RedisCluster)


def blocking_twin(client, socket_timeout: float):
    """A client like ``client`` (same server or cluster, same options) of its own
    connections, whose socket timeout leaves room for a blocking wait."""
    if is_cluster(client):
        kwargs = dict(client.nodes_manager.connection_kwargs)
        kwargs["socket_timeout"] = socket_timeout
        for name in ("host", "port", "connection_pool", "retry"):
            kwargs.pop(name, None)
        return RedisCluster(startup_nodes=[ClusterNode(n.host, n.port) for n in
                                           client.nodes_manager.startup_nodes.values()],
                            **kwargs)
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "socket_timeout": socket_timeout}
    if isinstance(pool, redis.sentinel.SentinelConnectionPool):  # the same primary, found anew
        return redis.Redis(connection_pool=type(pool)(
            pool.service_name, pool.sentinel_manager, connection_class=pool.connection_class,
            **kwargs))
    return redis.Redis(connection_pool=type(pool)(connection_class=pool.connection_class,
                                                  **kwargs))


def disconnect(client, in_use: bool = False) -> None:
    """Close every connection of ``client`` (``in_use``: those in a call too, which ends
    a blocking wait at once)."""
    if is_cluster(client):
        for node in client.get_nodes():
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect(inuse_connections=in_use)
        return
    client.connection_pool.disconnect(inuse_connections=in_use)


def _sentinel_client(settings: AdapterSettings, url: str, options: dict) -> redis.Redis:
    where = SentinelURL.parse(url)
    auth = {k: v for k, v in (("username", where.username), ("password", where.password)) if v}
    # the sentinels answer a few short questions: the caller's timeouts, never none
    timeout = options.get("socket_timeout") or settings.redis_timeout
    sentinel_kwargs = {"socket_timeout": timeout,
                       "socket_connect_timeout": options.get("socket_connect_timeout") or timeout}
    if settings.sentinel_password:
        sentinel_kwargs["password"] = settings.sentinel_password
    sentinel = redis.sentinel.Sentinel(where.sentinels, sentinel_kwargs=sentinel_kwargs)
    return sentinel.master_for(where.master, db=where.db, **auth, **options)


def celery_broker(settings: AdapterSettings) -> tuple[str, dict]:
    """Celery's broker URL and the transport options that come from it: a
    ``redis+sentinel://`` URL becomes kombu's own spelling, ``sentinel://h1:p1;sentinel://
    h2:p2/<db>`` with the ``master_name`` (and the sentinels' password) as options."""
    url = settings.celery_broker_url
    if not is_sentinel(url):
        return strip_tls_query(url), {}
    where = SentinelURL.parse(url, "CELERY_BROKER_URL")
    auth = ""
    if where.username or where.password:
        auth = quote(where.username or "", safe="") + (
            ":" + quote(where.password, safe="") if where.password else "") + "@"
    broker = ";".join(f"sentinel://{auth}{host}:{port}/{where.db}" for host, port in where.sentinels)
    options = {"master_name": where.master}
    if settings.sentinel_password:
        options["sentinel_kwargs"] = {"password": settings.sentinel_password}
    return broker, options


def celery_broker_ssl(settings: AdapterSettings) -> dict | None:
    """Celery's ``broker_use_ssl`` for a ``rediss://`` broker, else ``None``.

    Without it kombu connects to a ``rediss://`` broker with no certificate check at all
    (and says so in a warning); with it the broker is checked like every other Redis.
    """
    url = settings.celery_broker_url
    if not _is_tls(url):
        return None
    options = redis_tls_options(settings, url)
    options["ssl_cert_reqs"] = _CERT_REQS[options["ssl_cert_reqs"]]
    return options


def _lasting_tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind ``exc`` if it is one that retrying cannot cure: a certificate
    that does not verify, or a server that does not speak TLS at all."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ssl.SSLCertVerificationError) or (
                isinstance(exc, ssl.SSLError) and exc.reason == "WRONG_VERSION_NUMBER"):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def check_tls(settings: AdapterSettings, timeout: float = 5.0) -> None:
    """Raise ``ConfigurationError`` if a ``rediss://`` Redis of the settings fails the TLS
    handshake (a certificate that does not verify, a server that speaks no TLS).

    Such a failure never heals by waiting, unlike a Redis that is down, which every
    process rides out: so it stops start-up with the reason instead of retrying for
    ever. Plain URLs are not contacted at all.
    """
    urls = [settings.redis_url]
    if settings.celery_broker_url != settings.redis_url:
        urls.append(settings.celery_broker_url)
    for url in filter(_is_tls, urls):
        client = redis_client(settings, url, socket_connect_timeout=timeout,
                              socket_timeout=timeout)
        try:
            client.ping()
        except redis.RedisError as exc:
            failure = _lasting_tls_failure(exc)
            if failure is None:
                continue  # down, unreachable, a handshake cut short: waited for, as over redis://
            where = urlparse(url)
            if isinstance(failure, ssl.SSLCertVerificationError):
                why = (f"its certificate did not verify ({failure.verify_message}); set "
                       "REDIS_CA_FILE to the CA that signed it, or REDIS_TLS_VERIFY=none (or "
                       "?ssl_cert_reqs=none) for a managed Redis whose certificate is self-signed")
            else:
                why = f"it does not speak TLS ({failure.reason}); is this its TLS port?"
            raise ConfigurationError(
                f"TLS to Redis at {where.hostname}:{where.port or 6379} failed: {why}") from exc
        finally:
            client.close()


def same_redis(a: str, b: str) -> bool:
    """True if two Redis URLs name the same server and database (an engine whose broker
    is the ledger's Redis writes its deliveries with the records: adapters/riders.py)."""
    def where(url: str):
        if is_sentinel(url):
            parts = SentinelURL.parse(url)
            return ("sentinel", frozenset(parts.sentinels), parts.master, str(parts.db))
        parsed = urlparse(strip_tls_query(url))
        query = dict(parse_qsl(parsed.query))
        if parsed.scheme == "unix":
            return ("unix", parsed.path, query.get("db", "0"))
        return ("tcp", parsed.hostname or "localhost", parsed.port or 6379,
                (parsed.path or "/0").strip("/") or query.get("db", "0"))

    return where(a) == where(b)
