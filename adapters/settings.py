"""Adapter settings, read from the environment once and validated."""

from __future__ import annotations

import dataclasses
import os
import ssl
from urllib.parse import parse_qs, urlparse

from .errors import ConfigurationError

__all__ = ["AdapterSettings"]

TLS_QUERY = ("ssl_cert_reqs", "ssl_ca_certs")
"""The query options of a ``rediss://`` URL that AdapterSettings takes over."""
_TLS_VERIFY = {"none": "none", "cert_none": "none", "optional": "optional",
               "cert_optional": "optional", "required": "required", "cert_required": "required"}


def _float(env: dict, key: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(key)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{key}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigurationError(f"{key}={raw!r} must be >= {minimum}")
    return value


def _int(env: dict, key: str, default: int, minimum: int = 0) -> int:
    return int(_float(env, key, default, minimum))


def _tls(env: dict, urls: dict[str, str]) -> tuple[str, str | None]:
    """``(verify, CA file)`` from ``REDIS_TLS_VERIFY`` / ``REDIS_CA_FILE``, or else from the
    ``?ssl_cert_reqs=`` / ``?ssl_ca_certs=`` of the Redis URLs, which must agree."""
    given: dict[str, tuple[str, str]] = {}
    for source, key in (("REDIS_TLS_VERIFY", "ssl_cert_reqs"), ("REDIS_CA_FILE", "ssl_ca_certs")):
        if env.get(source):
            given[key] = (source, env[source])
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
    namespace: str = "sy:"
    """``SWITCHYARD_NAMESPACE``: prefix of every ledger key."""
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
    """``SWITCHYARD_TICK_SECONDS``: how often a worker releases due jobs and reaps lost ones."""
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
    """``CELERY_VISIBILITY_TIMEOUT``: Redis-broker redelivery time; must exceed every timeout."""
    queue_expires: int | None = None
    """``SWITCHYARD_QUEUE_EXPIRES``: AMQP queues unused this long are deleted (off by default)."""
    redis_tls_verify: str = "required"
    """``REDIS_TLS_VERIFY`` (or a URL's ``?ssl_cert_reqs=``): ``required``, ``optional`` or
    ``none``, the certificate check of every ``rediss://`` connection."""
    redis_ca_file: str | None = None
    """``REDIS_CA_FILE`` (or a URL's ``?ssl_ca_certs=``): the CA certificates (PEM) that
    ``rediss://`` servers are checked against; the system's when unset."""

    @property
    def celery_broker_url(self) -> str:
        """The broker Celery connects to."""
        return self.broker_url or self.redis_url

    @classmethod
    def from_env(cls, env: dict | None = None, **overrides) -> "AdapterSettings":
        """Read and validate the ``SWITCHYARD_*``, ``REDIS_URL`` and ``CELERY_*`` variables."""
        env = os.environ if env is None else env
        redis_url = env.get("REDIS_URL") or cls.redis_url
        if urlparse(redis_url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigurationError(f"REDIS_URL={redis_url!r} is not a redis://, rediss:// "
                                     "or unix:// URL")
        broker = env.get("CELERY_BROKER_URL") or None
        if broker and urlparse(broker).scheme not in ("redis", "rediss", "amqp", "amqps",
                                                       "pyamqp", "unix"):
            raise ConfigurationError(f"CELERY_BROKER_URL={broker!r} is not a redis:// or "
                                     "amqp:// URL")
        expires = env.get("SWITCHYARD_QUEUE_EXPIRES")
        redis_broker = broker and urlparse(broker).scheme in ("redis", "rediss", "unix")
        tls_verify, ca_file = _tls(env, {"REDIS_URL": redis_url,
                                         **({"CELERY_BROKER_URL": broker} if redis_broker else {})})
        values = dict(
            redis_url=redis_url,
            broker_url=broker,
            namespace=env.get("SWITCHYARD_NAMESPACE") or cls.namespace,
            queue_prefix=env.get("SWITCHYARD_QUEUE_PREFIX", ""),
            default_timeout=_float(env, "SWITCHYARD_DEFAULT_TIMEOUT", cls.default_timeout, 0.001),
            max_timeout=_float(env, "SWITCHYARD_MAX_TIMEOUT", cls.max_timeout, 0.001),
            timeout_grace=_float(env, "SWITCHYARD_TIMEOUT_GRACE", cls.timeout_grace, 0.0),
            lease_seconds=_float(env, "SWITCHYARD_LEASE_SECONDS", cls.lease_seconds, 0.5),
            tick_seconds=_float(env, "SWITCHYARD_TICK_SECONDS", cls.tick_seconds, 0.01),
            watch_seconds=_float(env, "SWITCHYARD_WATCH_SECONDS", cls.watch_seconds, 0.01),
            max_lost_deliveries=_int(env, "SWITCHYARD_MAX_LOST_DELIVERIES",
                                     cls.max_lost_deliveries, 1),
            job_ttl=_int(env, "SWITCHYARD_JOB_TTL", cls.job_ttl, 1),
            idempotency_ttl=_int(env, "SWITCHYARD_IDEMPOTENCY_TTL", cls.idempotency_ttl, 1),
            redis_timeout=_float(env, "SWITCHYARD_REDIS_TIMEOUT", cls.redis_timeout, 0.1),
            visibility_timeout=_int(env, "CELERY_VISIBILITY_TIMEOUT", cls.visibility_timeout, 1),
            queue_expires=int(expires) if expires else None,
            redis_tls_verify=tls_verify,
            redis_ca_file=ca_file,
        )
        values.update(overrides)
        settings = cls(**values)
        if settings.watch_seconds * 2 >= settings.lease_seconds:
            raise ConfigurationError("SWITCHYARD_WATCH_SECONDS must be under half of "
                                     "SWITCHYARD_LEASE_SECONDS, or live jobs lose their lease")
        if settings.max_timeout + settings.timeout_grace >= settings.visibility_timeout:
            raise ConfigurationError("CELERY_VISIBILITY_TIMEOUT must exceed SWITCHYARD_MAX_TIMEOUT "
                                     "+ SWITCHYARD_TIMEOUT_GRACE")
        return settings
