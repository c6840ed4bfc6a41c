"""Settings of the service, read from the environment once and validated at start-up."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
from typing import Mapping
from urllib.parse import urlparse

from limits import parse_many

from adapters import AdapterSettings, ConfigurationError, resolve_engine

__all__ = ["Settings", "ApiKey", "parse_api_keys", "DEFAULT_RATE_LIMIT"]

log = logging.getLogger("switchyard.config")

DEFAULT_RATE_LIMIT = "600/minute"
DEFAULT_MAX_CONTENT_LENGTH = 1024 * 1024
DEFAULT_JOB_MODULES = "service.jobs"

_TENANT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_KEY = re.compile(r"[!-~]{8,256}")  # printable ASCII, no spaces, no commas (split on them)


@dataclasses.dataclass(frozen=True)
class ApiKey:
    """One API key: its tenant and the SHA-256 of the key (the key itself is not kept)."""

    tenant: str
    digest: bytes
    """``sha256(key)``; compared in constant time with the digest of a presented key."""
    label: str
    """A short, non-secret name for the key in logs and rate-limit buckets."""


def parse_api_keys(raw: str) -> tuple[ApiKey, ...]:
    """``tenant:key,tenant:key`` -> keys; ``ConfigurationError`` on anything malformed."""
    keys: list[ApiKey] = []
    seen: dict[bytes, str] = {}
    for position, item in enumerate((raw or "").split(","), start=1):
        item = item.strip()
        if not item:
            continue
        tenant, sep, key = item.partition(":")
        if not sep or not _TENANT.fullmatch(tenant):
            raise ConfigurationError(
                f"API_KEYS entry {position} is not 'tenant:key' (tenant: 1-64 letters, digits, "
                "'_', '-' or '.')")
        if not _KEY.fullmatch(key):
            raise ConfigurationError(
                f"API_KEYS entry {position} (tenant {tenant!r}): the key must be 8-256 printable "
                "characters without spaces or commas")
        digest = hashlib.sha256(key.encode()).digest()
        if digest in seen and seen[digest] != tenant:
            raise ConfigurationError(
                f"API_KEYS entry {position}: the same key is given to tenants {seen[digest]!r} "
                f"and {tenant!r}; a key belongs to one tenant")
        seen[digest] = tenant
        keys.append(ApiKey(tenant=tenant, digest=digest, label=f"{tenant}/{digest.hex()[:12]}"))
    return tuple(keys)


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a whole number") from None
    if value < 1:
        raise ConfigurationError(f"{name}={raw!r} must be at least 1")
    return value


def _check_redis_url(url: str, name: str) -> None:
    parsed = urlparse(url)
    try:
        parsed.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ConfigurationError(f"{name}={url!r} has a port that is not a number") from None
    if parsed.scheme in ("redis", "rediss") and not parsed.hostname:
        raise ConfigurationError(f"{name}={url!r} names no host")
    db = parsed.path.lstrip("/")
    if parsed.scheme in ("redis", "rediss") and db and not db.isdigit():
        raise ConfigurationError(f"{name}={url!r}: the database after the '/' must be a number")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the service reads from its environment; see docs/api.md for each."""

    backend: str
    """``QUEUE_BACKEND``: ``rq`` (default), ``celery``, ``inline`` or a dotted path."""
    adapter: AdapterSettings
    """``REDIS_URL``, ``CELERY_BROKER_URL`` and the ``SWITCHYARD_*`` adapter settings."""
    api_keys: tuple[ApiKey, ...]
    """``API_KEYS``: ``tenant:key,tenant:key``."""
    rate_limit: str
    """``RATE_LIMIT``: requests per API key, e.g. ``600/minute`` or ``10/second;600/minute``."""
    max_content_length: int
    """``MAX_CONTENT_LENGTH``: the largest request body in bytes (413 above it)."""
    job_modules: str
    """``JOB_MODULES``: comma-separated modules that register the job types."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Read and validate everything; the first problem raises ``ConfigurationError``."""
        env = os.environ if env is None else env
        backend = env.get("QUEUE_BACKEND") or "rq"
        resolve_engine(backend)  # an unknown alias fails here, with a "did you mean"
        adapter = AdapterSettings.from_env(dict(env))
        _check_redis_url(adapter.redis_url, "REDIS_URL")
        rate_limit = env.get("RATE_LIMIT") or DEFAULT_RATE_LIMIT
        try:
            if not parse_many(rate_limit):
                raise ValueError("empty")
        except ValueError:
            raise ConfigurationError(f"RATE_LIMIT={rate_limit!r} is not like '600/minute' or "
                                     "'10/second;600/minute'") from None
        keys = parse_api_keys(env.get("API_KEYS", ""))
        return cls(
            backend=backend,
            adapter=adapter,
            api_keys=keys,
            rate_limit=rate_limit,
            max_content_length=_positive_int(env, "MAX_CONTENT_LENGTH", DEFAULT_MAX_CONTENT_LENGTH),
            job_modules=env.get("JOB_MODULES") or DEFAULT_JOB_MODULES,
        )
