"""``API_KEYS``: who may call, for which tenant, in which role.

Kept apart from :mod:`service.config` (which reads it at start-up) so the rule for a key
and its role is in one small place: the API's ``auth`` and the operator's page use it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

from adapters import ConfigurationError

__all__ = ["ApiKey", "OPERATOR_TENANT", "READ_ONLY_SUFFIX", "TENANT", "parse_api_keys"]

TENANT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""A tenant's name (and an inbound hook's ``HOOK_TENANT``)."""
_KEY = re.compile(r"[!-~]{8,256}")  # printable ASCII, no spaces, no commas (split on them)
_TENANT = TENANT


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
