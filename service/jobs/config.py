"""Settings of the jobs (mail, report storage, outbound and inbound webhooks), from the environment.

Each group is parsed and validated on first use and cached per distinct value, so a
bad variable stops a worker (or the web process) at start-up with one clear
``ConfigurationError``. :func:`check` validates every group at once.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import logging
import math
import os
import re
import socket
from email.utils import parseaddr
from pathlib import Path
from typing import Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

from adapters import ConfigurationError

from service.ssrf import AllowList

__all__ = [
    "SmtpServer",
    "MailSettings",
    "WebhookSettings",
    "HookSettings",
    "mail_settings",
    "storage_dir",
    "webhook_settings",
    "hook_settings",
    "env_seconds",
    "signing_key",
    "check",
]

log = logging.getLogger("switchyard.jobs")

_SOURCE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _number(env: Mapping, key: str, default: float, minimum: float, maximum: float = math.inf) -> float:
    raw = env.get(key)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{key}={raw!r} is not a number") from None
    if not (minimum <= value <= maximum) or not math.isfinite(value):
        raise ConfigurationError(f"{key}={raw!r} must be between {minimum:g} and {maximum:g}")
    return value


def env_seconds(key: str, default: float, env: Mapping | None = None) -> float:
    """A positive number of seconds from ``key`` (used for retry backoffs at import)."""
    return _number(os.environ if env is None else env, key, default, 0.01, 86400.0)


def signing_key(value: str, name: str) -> str:
    """Check a Standard Webhooks secret (``whsec_`` + base64); returns it unchanged."""
    if not value.startswith("whsec_"):
        raise ConfigurationError(f"{name} must start with 'whsec_' (a Standard Webhooks secret)")
    body = value[len("whsec_"):]
    try:
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{name}: the part after 'whsec_' is not base64") from None
    if len(key) < 16:
        raise ConfigurationError(f"{name}: the secret must decode to at least 16 bytes "
                                 f"(it has {len(key)})")
    return value


@dataclasses.dataclass(frozen=True)
class SmtpServer:
    """Where and how to hand mail over, from ``SMTP_URL``."""

    host: str
    port: int
    security: str
    """``smtps`` (TLS from the first byte), ``starttls`` or ``none``."""
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> "SmtpServer":
        """``smtp://user:pass@host:port``, ``smtps://...`` or ``smtp://...?starttls=1``."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError(f"SMTP_URL cannot be parsed: {exc}") from None
        if parts.scheme not in ("smtp", "smtps"):
            raise ConfigurationError("SMTP_URL must start with smtp:// or smtps://")
        if not parts.hostname:
            raise ConfigurationError("SMTP_URL has no host")
        starttls = False
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key != "starttls":
                raise ConfigurationError(f"SMTP_URL: unknown option {key!r} (only starttls=1)")
            if value.lower() not in ("1", "true", "yes", "0", "false", "no"):
                raise ConfigurationError(f"SMTP_URL: starttls={value!r} is not 1 or 0")
            starttls = value.lower() in ("1", "true", "yes")
        if parts.scheme == "smtps" and starttls:
            raise ConfigurationError("SMTP_URL: smtps:// is TLS already; drop ?starttls=1")
        security = "smtps" if parts.scheme == "smtps" else ("starttls" if starttls else "none")
        default_port = {"smtps": 465, "starttls": 587, "none": 25}[security]
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if password is not None and not username:
            raise ConfigurationError("SMTP_URL has a password but no user name")
        return cls(parts.hostname, port or default_port, security, username, password)

    def describe(self) -> str:
        """The server without its password, for logs and errors."""
        who = f"{self.username}@" if self.username else ""
        how = {"smtps": "implicit TLS", "starttls": "STARTTLS", "none": "no TLS"}[self.security]
        return f"smtp://{who}{self.host}:{self.port} ({how})"


@dataclasses.dataclass(frozen=True)
class MailSettings:
    """How ``email.send`` delivers."""

    smtp: SmtpServer | None
    """``SMTP_URL``; ``None`` writes ``.eml`` files to ``outbox_dir`` instead."""
    outbox_dir: Path
    """``OUTBOX_DIR`` (default ``var/outbox``)."""
    mail_from: str
    """``MAIL_FROM`` (default ``Switchyard <switchyard@localhost>``)."""
    timeout: float
    """``SMTP_TIMEOUT`` seconds for connecting and for each SMTP reply (default 30)."""
    helo_name: str
    """``SMTP_HELO_NAME``: the name given in EHLO (default: this host's name)."""

    @property
    def sender_address(self) -> str:
        return parseaddr(self.mail_from)[1]

    @property
    def message_id_domain(self) -> str:
        return self.sender_address.rsplit("@", 1)[-1] or "switchyard.invalid"


_MAIL_KEYS = ("SMTP_URL", "OUTBOX_DIR", "MAIL_FROM", "SMTP_TIMEOUT", "SMTP_HELO_NAME")


def mail_settings(env: Mapping | None = None) -> MailSettings:
    """The mail settings; says once, in the log, where mail goes."""
    env = os.environ if env is None else env
    return _mail(tuple(env.get(k) or "" for k in _MAIL_KEYS))


@functools.lru_cache(maxsize=16)
def _mail(values: tuple[str, ...]) -> MailSettings:
    env = dict(zip(_MAIL_KEYS, values))
    smtp = SmtpServer.parse(env["SMTP_URL"]) if env["SMTP_URL"] else None
    mail_from = env["MAIL_FROM"] or "Switchyard <switchyard@localhost>"
    address = parseaddr(mail_from)[1]
    if "@" not in address or any(c in mail_from for c in "\r\n"):
        raise ConfigurationError(f"MAIL_FROM={mail_from!r} is not an address like "
                                 "'Name <user@example.com>'")
    settings = MailSettings(
        smtp=smtp,
        outbox_dir=Path(env["OUTBOX_DIR"] or "var/outbox"),
        mail_from=mail_from,
        timeout=_number(env, "SMTP_TIMEOUT", 30.0, 0.1, 600.0),
        helo_name=env["SMTP_HELO_NAME"] or socket.gethostname(),
    )
    if smtp is None:
        log.warning("SMTP_URL is not set: mail is not sent but written as .eml files to %s",
                    settings.outbox_dir.resolve())
    else:
        log.info("mail goes out through %s", smtp.describe())
        if smtp.password is not None and smtp.security == "none":
            log.warning("SMTP_URL sends a password without TLS; use smtps:// or ?starttls=1")
    return settings


def storage_dir(env: Mapping | None = None) -> Path | None:
    """``STORAGE_DIR``, made absolute against this process's working directory; ``None``
    (the default) keeps report files in Redis, where every process reaches them."""
    env = os.environ if env is None else env
    raw = env.get("STORAGE_DIR")
    return Path(os.path.abspath(raw)) if raw else None


@dataclasses.dataclass(frozen=True)
class WebhookSettings:
    """How ``webhook.deliver`` signs and sends."""

    signing_secret: str | None = dataclasses.field(repr=False)
    """``WEBHOOK_SIGNING_SECRET`` (``whsec_`` + base64); deliveries fail without it."""
    allow: AllowList
    """``WEBHOOK_ALLOWED_HOSTS``: names, addresses or networks allowed though not public."""
    timeout: float
    """``WEBHOOK_TIMEOUT`` seconds to connect, and for the whole response (default 10)."""
    max_response_bytes: int
    """``WEBHOOK_MAX_RESPONSE_BYTES``: the most of a response body read (default 65536)."""
    retry_after_max: float
    """``WEBHOOK_RETRY_AFTER_MAX``: the longest ``Retry-After`` honoured (default 3600 s)."""


_WEBHOOK_KEYS = ("WEBHOOK_SIGNING_SECRET", "WEBHOOK_ALLOWED_HOSTS", "WEBHOOK_TIMEOUT",
                 "WEBHOOK_MAX_RESPONSE_BYTES", "WEBHOOK_RETRY_AFTER_MAX")


def webhook_settings(env: Mapping | None = None) -> WebhookSettings:
    """The outbound webhook settings."""
    env = os.environ if env is None else env
    return _webhooks(tuple(env.get(k) or "" for k in _WEBHOOK_KEYS))


@functools.lru_cache(maxsize=16)
def _webhooks(values: tuple[str, ...]) -> WebhookSettings:
    env = dict(zip(_WEBHOOK_KEYS, values))
    secret = env["WEBHOOK_SIGNING_SECRET"] or None
    if secret:
        signing_key(secret, "WEBHOOK_SIGNING_SECRET")
    try:
        allow = AllowList.parse(env["WEBHOOK_ALLOWED_HOSTS"])
    except ValueError as exc:
        raise ConfigurationError(f"WEBHOOK_ALLOWED_HOSTS: {exc}") from None
    if allow.names or allow.networks:
        log.warning("WEBHOOK_ALLOWED_HOSTS lets webhooks reach non-public hosts: %s",
                    ", ".join(sorted(allow.names) + [str(n) for n in allow.networks]))
    return WebhookSettings(
        signing_secret=secret,
        allow=allow,
        timeout=_number(env, "WEBHOOK_TIMEOUT", 10.0, 0.1, 300.0),
        max_response_bytes=int(_number(env, "WEBHOOK_MAX_RESPONSE_BYTES", 65536, 0, 16 << 20)),
        retry_after_max=_number(env, "WEBHOOK_RETRY_AFTER_MAX", 3600.0, 0.0, 7 * 86400.0),
    )


@dataclasses.dataclass(frozen=True)
class HookSettings:
    """How inbound hooks (``POST /v1/hooks/{source}``) are verified and kept."""

    secrets: dict = dataclasses.field(repr=False)
    """``HOOK_SECRETS``: source -> tuple of ``whsec_`` secrets (several during a rotation)."""
    tenant: str
    """``HOOK_TENANT``: the tenant whose ``webhook.process`` jobs inbound hooks become."""
    record_ttl: int
    """``HOOK_RECORD_TTL`` seconds a received hook is kept for dedupe (default 7 days)."""


_HOOK_KEYS = ("HOOK_SECRETS", "HOOK_TENANT", "HOOK_RECORD_TTL")


def hook_settings(env: Mapping | None = None) -> HookSettings:
    """The inbound hook settings."""
    env = os.environ if env is None else env
    return _hooks(tuple(env.get(k) or "" for k in _HOOK_KEYS))


@functools.lru_cache(maxsize=16)
def _hooks(values: tuple[str, ...]) -> HookSettings:
    env = dict(zip(_HOOK_KEYS, values))
    secrets: dict[str, tuple[str, ...]] = {}
    for item in env["HOOK_SECRETS"].split(","):
        item = item.strip()
        if not item:
            continue
        source, sep, secret = item.partition(":")
        source, secret = source.strip(), secret.strip()
        if not sep or not _SOURCE.fullmatch(source):
            raise ConfigurationError("HOOK_SECRETS must be 'source:whsec_...,source:whsec_...' "
                                     "with sources of letters, digits, '_', '-' or '.'")
        signing_key(secret, f"HOOK_SECRETS ({source})")
        secrets[source] = secrets.get(source, ()) + (secret,)
    settings = HookSettings(
        secrets=secrets,
        tenant=env["HOOK_TENANT"] or "default",
        record_ttl=int(_number(env, "HOOK_RECORD_TTL", 7 * 86400, 60, 365 * 86400)),
    )
    if not _SOURCE.fullmatch(settings.tenant):
        raise ConfigurationError(f"HOOK_TENANT={settings.tenant!r} must be 1-64 letters, digits, "
                                 "'_', '-' or '.'")
    return settings


def check(env: Mapping | None = None) -> None:
    """Validate every job setting now; raises ``ConfigurationError`` on the first bad one."""
    mail_settings(env)
    webhook_settings(env)
    hook_settings(env)
    storage_dir(env)
