"""Adapter settings, read from the environment once and validated."""

from __future__ import annotations

import dataclasses
import os
import ssl
from typing import Mapping
from urllib.parse import parse_qs, unquote, urlparse

from .env import Env, redact_url
from .errors import ConfigurationError

__all__ = ["AdapterSettings", "SentinelURL", "is_sentinel"]

TLS_QUERY = ("ssl_cert_reqs", "ssl_ca_certs")
"""The query options of a ``rediss://`` URL that AdapterSettings takes over."""
_TLS_VERIFY = {"none": "none", "cert_none": "none", "optional": "optional",
               "cert_optional": "optional", "required": "required", "cert_required": "required"}


_REDIS_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
"""A ``REDIS_URL`` of a Redis Cluster: ``redis+cluster://[:password@]host:port,host:port``
(any of its nodes; the client learns the rest). The ledger alone may live there."""
CLUSTER_SHARDS = 16
"""``SWITCHYARD_LEDGER_SHARDS`` on a Redis Cluster when unset."""
_BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp", "unix")
SENTINEL_SCHEME = "redis+sentinel"


@dataclasses.dataclass(frozen=True)
class SentinelURL:
    """A ``redis+sentinel://[[user]:password@]host:port,host:port/<master>[/<db>]`` URL:
    the sentinels to ask, the name of the primary they watch, its database and the
    credentials of the primary (sentinels that need their own take
    ``REDIS_SENTINEL_PASSWORD``)."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str, name: str = "REDIS_URL") -> "SentinelURL":
        """The parts of ``url``; ``ConfigurationError`` saying what is wrong with it."""
        shown = redact_url(url)
        rest = url[len(SENTINEL_SCHEME) + 3:] if is_sentinel(url) else None
        if rest is None:
            raise ConfigurationError(f"{name}={shown!r} is not a {SENTINEL_SCHEME}:// URL")
        rest = rest.partition("?")[0]
        netloc, _, path = rest.partition("/")
        auth, _, hosts = netloc.rpartition("@")
        username = password = None
        if auth:
            user, colon, secret = auth.partition(":")
            username, password = unquote(user) or None, unquote(secret) if colon else None
        sentinels = []
        for host in hosts.split(","):
            hostname, colon, port = host.strip().rpartition(":")
            if not colon:
                hostname, port = port, "26379"
            if not hostname:
                raise ConfigurationError(f"{name}={shown!r}: a sentinel has no host ({host!r})")
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigurationError(f"{name}={shown!r}: sentinel {host!r} has a port that "
                                         "is not a number from 1 to 65535")
            sentinels.append((hostname.strip("[]"), int(port)))
        master, _, db = path.strip("/").partition("/")
        if not master:
            raise ConfigurationError(f"{name}={shown!r} names no primary: write the master name "
                                     f"the sentinels monitor after the hosts, "
                                     f"{SENTINEL_SCHEME}://host:26379,host:26379/mymaster")
        if db and not db.isdigit():
            raise ConfigurationError(f"{name}={shown!r}: the database after the master name "
                                     "must be a number")
        return cls(tuple(sentinels), master, int(db or 0), username, password)


def is_sentinel(url: str | None) -> bool:
    """True if ``url`` names a primary through its sentinels."""
    return bool(url) and url.startswith(SENTINEL_SCHEME + "://")


def is_redis_url(url: str | None) -> bool:
    """True if ``url`` names a Redis (a server, a Unix socket, or one through sentinels):
    an engine's broker that is Redis, not RabbitMQ."""
    return is_sentinel(url) or bool(url) and url.split(":", 1)[0] in _REDIS_SCHEMES


def _redis_url(env: Env, default: str) -> str:
    """``REDIS_URL``, checked: its scheme, a port that is a number, a host, a numbered database
    (a cluster's: every ``host:port`` of its list, and database 0, the only one it has; a
    sentinel URL's: its sentinels, the primary's name and its database)."""
    raw = env.text("REDIS_URL", default)
    if raw.split(":", 1)[0] in CLUSTER_SCHEMES:
        _cluster_nodes(raw)
        return raw
    if is_sentinel(raw):
        SentinelURL.parse(raw)
        return raw
    parts = env.url("REDIS_URL", default, _REDIS_SCHEMES + CLUSTER_SCHEMES,
                    "redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://")
    db = parts.path.lstrip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise ConfigurationError(f"REDIS_URL={redact_url(env.text('REDIS_URL'))!r}: the "
                                 "database after the '/' must be a number")
    return env.text("REDIS_URL", default)


def _cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The ``(host, port)`` list of a ``redis+cluster://`` URL; ``ConfigurationError`` if
    one is not ``host:port`` or the URL names a database other than 0."""
    parsed = urlparse(url)
    hosts = parsed.netloc.rpartition("@")[2]
    nodes = []
    for item in filter(None, hosts.split(",")):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(f"REDIS_URL={redact_url(url)!r}: {item!r} is not "
                                     "host:port (a cluster URL lists its nodes so)")
        nodes.append((host.strip("[]"), int(port)))
    if not nodes:
        raise ConfigurationError(f"REDIS_URL={redact_url(url)!r} names no cluster node")
    if parsed.path.strip("/") not in ("", "0"):
        raise ConfigurationError(f"REDIS_URL={redact_url(url)!r}: a Redis Cluster has "
                                 "database 0 only")
    return nodes


def _tls(env: Env, urls: dict[str, str]) -> tuple[str, str | None]:
    """``(verify, CA file)`` from ``REDIS_TLS_VERIFY`` / ``REDIS_CA_FILE``, or else from the
    ``?ssl_cert_reqs=`` / ``?ssl_ca_certs=`` of the Redis URLs, which must agree."""
    given: dict[str, tuple[str, str]] = {}
    for source, key in (("REDIS_TLS_VERIFY", "ssl_cert_reqs"), ("REDIS_CA_FILE", "ssl_ca_certs")):
        if env.raw(source):
            given[key] = (source, env.raw(source))
            continue
        for name, url in urls.items():
            values = parse_qs(urlparse(url).query).get(key)
            if not values:
                continue
            if key in given and given[key][1] != values[-1]:
                raise ConfigurationError(f"{given[key][0]} says {key}={given[key][1]} but "
                                         f"{name} says {key}={values[-1]}; set {source} once "
                                         "for every Redis")
            given.setdefault(key, (f"{name}'s ?{key}", values[-1]))
    verify = "required"
    if "ssl_cert_reqs" in given:
        source, raw = given["ssl_cert_reqs"]
        verify = _TLS_VERIFY.get(raw.lower())
        if verify is None:
            raise ConfigurationError(f"{source}={raw!r} is not none, optional or required")
    ca_file = None
    if "ssl_ca_certs" in given:
        source, ca_file = given["ssl_ca_certs"]
        try:
            ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"{source}={ca_file!r} is not a readable file of PEM "
                                     f"certificates: {exc}") from None
    return verify, ca_file


@dataclasses.dataclass(frozen=True, kw_only=True)
class AdapterSettings:
    """Everything an adapter needs to know; see the README for each variable."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    """``REDIS_URL``: the ledger, and RQ's queues."""
    broker_url: str | None = None
    """``CELERY_BROKER_URL``: Celery's broker; defaults to ``redis_url``."""
    env: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False, compare=False)
    """The variables these settings were read from: an engine reads its own there
    (:attr:`adapters.engine.Engine.env`), never from ``os.environ``."""
    namespace: str = "sy:"
    """``SWITCHYARD_NAMESPACE``: prefix of every ledger key."""
    ledger_shards: int = 1
    """``SWITCHYARD_LEDGER_SHARDS``: hash-tagged namespaces the ledger's jobs spread over
    (``adapters/shards.py``); 1 (the namespace as it is) unless ``REDIS_URL`` is a
    cluster's, where it defaults to ``CLUSTER_SHARDS``."""
    queue_prefix: str = ""
    """``SWITCHYARD_QUEUE_PREFIX``: prefix of every engine queue name."""
    default_queue: str = "default"
    """The queue of jobs that name none."""
    default_timeout: float = 300.0
    """``SWITCHYARD_DEFAULT_TIMEOUT``: hard time limit of jobs that set none."""
    max_timeout: float = 3000.0
    """``SWITCHYARD_MAX_TIMEOUT``: the longest timeout a job may ask for."""
    timeout_grace: float = 10.0
    """``SWITCHYARD_TIMEOUT_GRACE``: the engine's own kill comes this much after ours."""
    lease_seconds: float = 30.0
    """``SWITCHYARD_LEASE_SECONDS``: a running job whose worker stops renewing its
    lease for this long is taken as lost and delivered again."""
    tick_seconds: float = 0.25
    """``SWITCHYARD_TICK_SECONDS``: the shortest pause between two maintenance runs of a
    worker while jobs fall due (a job due is released within it)."""
    idle_seconds: float = 10.0
    """``SWITCHYARD_IDLE_SECONDS``: the longest a worker's maintenance sleeps when no
    deadline is near (a deadline written meanwhile wakes it at once)."""
    watch_seconds: float = 0.5
    """``SWITCHYARD_WATCH_SECONDS``: how often a running job checks for cancel and renews its lease."""
    max_lost_deliveries: int = 3
    """``SWITCHYARD_MAX_LOST_DELIVERIES``: after this many worker deaths a job fails."""
    job_ttl: int = 7 * 24 * 3600
    """``SWITCHYARD_JOB_TTL``: seconds a finished job's record is kept."""
    idempotency_ttl: int = 24 * 3600
    """``SWITCHYARD_IDEMPOTENCY_TTL``: seconds an idempotency key is remembered."""
    redis_timeout: float = 5.0
    """``SWITCHYARD_REDIS_TIMEOUT``: socket timeout for Redis calls."""
    visibility_timeout: int = 3600
    """``CELERY_VISIBILITY_TIMEOUT``: kombu's Redis-broker redelivery time. Switchyard runs
    kombu's Redis transport without ack emulation (the ledger notes deliveries in hand and
    leases claimed jobs), so nothing of Switchyard's waits on it any more."""
    queue_expires: int | None = None
    """``SWITCHYARD_QUEUE_EXPIRES``: AMQP queues unused this long are deleted (off by default)."""
    redis_tls_verify: str = "required"
    """``REDIS_TLS_VERIFY`` (or a URL's ``?ssl_cert_reqs=``): ``required``, ``optional`` or
    ``none``, the certificate check of every ``rediss://`` connection."""
    redis_ca_file: str | None = None
    """``REDIS_CA_FILE`` (or a URL's ``?ssl_ca_certs=``): the CA certificates (PEM) that
    ``rediss://`` servers are checked against; the system's when unset."""
    sentinel_password: str | None = None
    """``REDIS_SENTINEL_PASSWORD``: the password of the sentinels themselves, when they
    have one (``requirepass`` in sentinel.conf); the primary's is the URL's."""
    scheduler_poll: float = 1.0
    """``SWITCHYARD_SCHEDULER_POLL``: seconds between the scheduler's beats."""
    schedule_catch_up: int = 1
    """``SWITCHYARD_SCHEDULE_CATCH_UP``: missed runs a scheduler fires after downtime."""

    @property
    def cluster(self) -> bool:
        """True if ``REDIS_URL`` is a Redis Cluster's (``redis+cluster://``)."""
        return self.redis_url.split(":", 1)[0] in CLUSTER_SCHEMES

    @property
    def cluster_nodes(self) -> list[tuple[str, int]]:
        """The ``(host, port)`` nodes a cluster ``REDIS_URL`` lists."""
        return _cluster_nodes(self.redis_url)

    @property
    def home_namespace(self) -> str:
        """Where the keys that belong to no job live (schedules, audit, workers, the jobs'
        stores): ``namespace`` itself, or shard 0's ``{namespace}{0}:`` when sharded."""
        return self.namespace if self.ledger_shards == 1 else f"{self.namespace}{{0}}:"

    @property
    def celery_broker_url(self) -> str:
        """The broker Celery connects to."""
        return self.broker_url or self.redis_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> "AdapterSettings":
        """Read and validate the ``SWITCHYARD_*``, ``REDIS_*`` and ``CELERY_*`` variables."""
        variables = dict(os.environ if env is None else env)
        env = Env(variables)
        redis_url = _redis_url(env, cls.redis_url)
        broker = env.raw("CELERY_BROKER_URL")
        if is_sentinel(broker):
            SentinelURL.parse(broker, "CELERY_BROKER_URL")
        else:
            env.url("CELERY_BROKER_URL", None, _BROKER_SCHEMES,
                    "redis://, redis+sentinel:// or amqp://", host=False)
        redis_broker = broker and urlparse(broker).scheme in ("redis", "rediss", "unix")
        tls_verify, ca_file = _tls(env, {"REDIS_URL": redis_url,
                                         **({"CELERY_BROKER_URL": broker} if redis_broker else {})})
        values = dict(
            env=variables,
            redis_url=redis_url,
            broker_url=broker,
            namespace=env.text("SWITCHYARD_NAMESPACE", cls.namespace),
            ledger_shards=env.integer(
                "SWITCHYARD_LEDGER_SHARDS",
                CLUSTER_SHARDS if redis_url.split(":", 1)[0] in CLUSTER_SCHEMES else 1, 1, 1024),
            queue_prefix=env.text("SWITCHYARD_QUEUE_PREFIX"),
            default_timeout=env.number("SWITCHYARD_DEFAULT_TIMEOUT", cls.default_timeout, 0.001),
            max_timeout=env.number("SWITCHYARD_MAX_TIMEOUT", cls.max_timeout, 0.001),
            timeout_grace=env.number("SWITCHYARD_TIMEOUT_GRACE", cls.timeout_grace, 0.0),
            lease_seconds=env.number("SWITCHYARD_LEASE_SECONDS", cls.lease_seconds, 0.5),
            tick_seconds=env.number("SWITCHYARD_TICK_SECONDS", cls.tick_seconds, 0.01),
            idle_seconds=env.number("SWITCHYARD_IDLE_SECONDS", cls.idle_seconds, 0.1, 300),
            watch_seconds=env.number("SWITCHYARD_WATCH_SECONDS", cls.watch_seconds, 0.01),
            max_lost_deliveries=env.integer("SWITCHYARD_MAX_LOST_DELIVERIES",
                                            cls.max_lost_deliveries, 1),
            job_ttl=env.integer("SWITCHYARD_JOB_TTL", cls.job_ttl, 1),
            idempotency_ttl=env.integer("SWITCHYARD_IDEMPOTENCY_TTL", cls.idempotency_ttl, 1),
            redis_timeout=env.number("SWITCHYARD_REDIS_TIMEOUT", cls.redis_timeout, 0.1),
            visibility_timeout=env.integer("CELERY_VISIBILITY_TIMEOUT", cls.visibility_timeout, 1),
            queue_expires=env.integer("SWITCHYARD_QUEUE_EXPIRES", None, 1),
            redis_tls_verify=tls_verify,
            redis_ca_file=ca_file,
            sentinel_password=env.raw("REDIS_SENTINEL_PASSWORD") or None,
            scheduler_poll=env.number("SWITCHYARD_SCHEDULER_POLL", cls.scheduler_poll, 0.0),
            schedule_catch_up=env.integer("SWITCHYARD_SCHEDULE_CATCH_UP", cls.schedule_catch_up, 0),
        )
        values.update(overrides)
        settings = cls(**values)
        if settings.ledger_shards > 1 and ("{" in settings.namespace or "}" in settings.namespace):
            raise ConfigurationError("SWITCHYARD_NAMESPACE must not hold '{' or '}': the "
                                     "ledger's shards put their hash tags after it")
        if settings.watch_seconds * 2 >= settings.lease_seconds:
            raise ConfigurationError("SWITCHYARD_WATCH_SECONDS must be under half of "
                                     "SWITCHYARD_LEASE_SECONDS, or live jobs lose their lease")
        return settings
