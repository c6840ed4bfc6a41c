"""API keys (``API_KEYS``) and what is derived from them: the key records, their roles,
and the dashboard's session secret when ``SECRET_KEY`` is unset.

A part of the settings (:mod:`service.config` reads and re-exports it): kept apart so
that the one settings module stays short enough to read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re

from adapters import ConfigurationError

__all__ = ["ApiKey", "match", "OPERATOR_TENANT", "READ_ONLY_SUFFIX", "parse_api_keys", "session_secret"]

_TENANT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_KEY = re.compile(r"[!-~]{8,256}")  # printable ASCII, no spaces, no commas (split on them)


@dataclasses.dataclass(frozen=True)
class ApiKey:
    """One API key: its tenant and the SHA-256 of the key (the key itself is not kept)."""

    tenant: str
    """The key's tenant; ``"*"`` for an operator's key, which sees every tenant's jobs."""
    digest: bytes
    """``sha256(key)``; compared in constant time with the digest of a presented key."""
    label: str
    """A short, non-secret name for the key in logs and rate-limit buckets."""
    read_only: bool = False
    """Given as ``tenant+read:key``: the key reads, and changes nothing."""

    @property
    def operator(self) -> bool:
        """A key of every tenant (``*:key``, or ``*+read:key`` to read only)."""
        return self.tenant == OPERATOR_TENANT

    @property
    def role(self) -> str:
        """``tenant``, ``tenant-read``, ``operator`` or ``operator-read`` (logs, audit, pages)."""
        return ("operator" if self.operator else "tenant") + ("-read" if self.read_only else "")


OPERATOR_TENANT = "*"
READ_ONLY_SUFFIX = "+read"


def parse_api_keys(raw: str) -> tuple[ApiKey, ...]:
    """``tenant:key,tenant:key`` -> keys; ``ConfigurationError`` on anything malformed.

    A tenant written ``acme+read`` gives a read-only key of ``acme``; the tenant ``*``
    gives an operator's key (every tenant), ``*+read`` a read-only one.
    """
    keys: list[ApiKey] = []
    seen: dict[bytes, str] = {}
    for position, item in enumerate((raw or "").split(","), start=1):
        item = item.strip()
        if not item:
            continue
        tenant, sep, key = item.partition(":")
        read_only = tenant.endswith(READ_ONLY_SUFFIX)
        if read_only:
            tenant = tenant[:-len(READ_ONLY_SUFFIX)]
        if not sep or not (tenant == OPERATOR_TENANT or _TENANT.fullmatch(tenant)):
            raise ConfigurationError(
                f"API_KEYS entry {position} is not 'tenant:key' (tenant: 1-64 letters, digits, "
                "'_', '-' or '.'; '*' for an operator; '+read' after it for a read-only key)")
        if not _KEY.fullmatch(key):
            raise ConfigurationError(
                f"API_KEYS entry {position} (tenant {tenant!r}): the key must be 8-256 printable "
                "characters without spaces or commas")
        digest = hashlib.sha256(key.encode()).digest()
        given = tenant + (READ_ONLY_SUFFIX if read_only else "")
        if digest in seen and seen[digest] != given:
            raise ConfigurationError(
                f"API_KEYS entry {position}: the same key is given to tenants {seen[digest]!r} "
                f"and {given!r}; a key belongs to one tenant, with one role")
        seen[digest] = given
        keys.append(ApiKey(tenant=tenant, digest=digest, read_only=read_only,
                           label=f"{'operator' if tenant == OPERATOR_TENANT else tenant}"
                                 f"/{digest.hex()[:12]}"))
    return tuple(keys)


MIN_SECRET_KEY = 32


def session_secret(given: str, keys: tuple[ApiKey, ...]) -> str:
    """The key that signs the dashboard's session cookies.

    ``SECRET_KEY`` when set (at least 32 characters). Unset, it is derived from the
    configured keys' digests with HMAC, so every web process and machine given the same
    ``API_KEYS`` agrees on it without sharing another secret; changing ``API_KEYS``
    then signs every session out. The digests are secret (a key's digest is not its
    key, but it is never shown), so the derived value is as secret as they are.
    """
    if given:
        if len(given) < MIN_SECRET_KEY:
            raise ConfigurationError(f"SECRET_KEY must be at least {MIN_SECRET_KEY} characters "
                                     f"(it has {len(given)}); e.g. python -c 'import secrets; "
                                     "print(secrets.token_urlsafe(32))'")
        return given
    material = b"".join(sorted(k.digest for k in keys))
    return hmac.new(b"switchyard dashboard session v1", material, hashlib.sha256).hexdigest()


def match(presented: str, keys: tuple[ApiKey, ...]) -> ApiKey | None:
    """The key whose digest equals the presented key's, compared in constant time.

    Every configured key is compared, match or not, so the time taken does not tell
    how many keys exist before the matching one.
    """
    digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
    found = None
    for key in keys:
        if hmac.compare_digest(digest, key.digest):
            found = key
    return found
