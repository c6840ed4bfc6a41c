"""Every setting of the service and of its jobs, read from the environment and validated.

One module for the service side (the adapters' own settings are
:class:`adapters.AdapterSettings`), read through the same :class:`adapters.env.Env`:

- :class:`Settings` is everything at once; :func:`check` is the start-up check the web
  app factory (and so ``flask --app wsgi worker`` and ``scheduler``) and ``make run``
  run, so a bad variable stops the process with one ``ConfigurationError`` line.
- the jobs' own groups (:func:`mail_settings`, :func:`webhook_settings`,
  :func:`hook_settings`, :func:`storage_dir`) are what running jobs read: each group is
  parsed on first use and cached per distinct value.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import logging
import os
import re
import socket
from email.utils import parseaddr
from pathlib import Path
from typing import Callable, Mapping, TypeVar
from urllib.parse import parse_qsl, unquote

from limits import parse_many

from adapters import AdapterSettings, ConfigurationError, resolve_engine
from adapters.env import Env, parse_bool

from service.apikeys import (OPERATOR_TENANT, READ_ONLY_SUFFIX, ApiKey, parse_api_keys,  # noqa: F401
                             session_secret)
from service.ssrf import AllowList

__all__ = [
    "Settings",
    "ApiKey",
    "OPERATOR_TENANT",
    "parse_api_keys",
    "DEFAULT_RATE_LIMIT",
    "check",
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
]

log = logging.getLogger("switchyard.config")
jobs_log = logging.getLogger("switchyard.jobs")

DEFAULT_RATE_LIMIT = "600/minute"
DEFAULT_MAX_CONTENT_LENGTH = 1024 * 1024
DEFAULT_JOB_MODULES = "service.jobs"

_SOURCE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


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


def env_seconds(key: str, default: float, env: Mapping | None = None) -> float:
    """A positive number of seconds from ``key`` (used for retry backoffs at import)."""
    return Env(env).number(key, default, 0.01, 86400.0)


_T = TypeVar("_T")


def _section(keys: tuple[str, ...]) -> Callable[[Callable[[Env], _T]], Callable[..., _T]]:
    """Make ``parse(Env)`` a reader of ``keys`` from an environment (``os.environ`` by
    default), parsed once per distinct set of values."""
    def wrap(parse: Callable[[Env], _T]) -> Callable[..., _T]:
        @functools.lru_cache(maxsize=16)
        def cached(values: tuple[str, ...]) -> _T:
            return parse(Env(dict(zip(keys, values))))

        @functools.wraps(parse)
        def read(env: Mapping | None = None) -> _T:
            env = os.environ if env is None else env
            return cached(tuple(env.get(k) or "" for k in keys))
        return read
    return wrap


# -- mail ------------------------------------------------------------------------------

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
        parts = Env({"SMTP_URL": url}).url("SMTP_URL", None, ("smtp", "smtps"),
                                           "smtp:// or smtps://")
        starttls = False
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key != "starttls":
                raise ConfigurationError(f"SMTP_URL: unknown option {key!r} (only starttls=1)")
            starttls = parse_bool(value, "SMTP_URL: starttls")
        if parts.scheme == "smtps" and starttls:
            raise ConfigurationError("SMTP_URL: smtps:// is TLS already; drop ?starttls=1")
        security = "smtps" if parts.scheme == "smtps" else ("starttls" if starttls else "none")
        default_port = {"smtps": 465, "starttls": 587, "none": 25}[security]
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if password is not None and not username:
            raise ConfigurationError("SMTP_URL has a password but no user name")
        return cls(parts.hostname, parts.port or default_port, security, username, password)

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


@_section(("SMTP_URL", "OUTBOX_DIR", "MAIL_FROM", "SMTP_TIMEOUT", "SMTP_HELO_NAME"))
def _mail(env: Env) -> MailSettings:
    smtp = SmtpServer.parse(env.text("SMTP_URL")) if env.raw("SMTP_URL") else None
    mail_from = env.text("MAIL_FROM", "Switchyard <switchyard@localhost>")
    address = parseaddr(mail_from)[1]
    if "@" not in address or any(c in mail_from for c in "\r\n"):
        raise ConfigurationError(f"MAIL_FROM={mail_from!r} is not an address like "
                                 "'Name <user@example.com>'")
    return MailSettings(
        smtp=smtp,
        outbox_dir=Path(env.text("OUTBOX_DIR", "var/outbox")),
        mail_from=mail_from,
        timeout=env.number("SMTP_TIMEOUT", 30.0, 0.1, 600.0),
        helo_name=env.text("SMTP_HELO_NAME") or socket.gethostname(),
    )


@functools.lru_cache(maxsize=16)
def _say_where_mail_goes(settings: MailSettings) -> None:
    """Log, once per distinct mail settings, where mail goes."""
    smtp = settings.smtp
    if smtp is None:
        jobs_log.warning("SMTP_URL is not set: mail is not sent but written as .eml files to %s",
                         settings.outbox_dir.resolve())
    else:
        jobs_log.info("mail goes out through %s", smtp.describe())
        if smtp.password is not None and smtp.security == "none":
            jobs_log.warning("SMTP_URL sends a password without TLS; use smtps:// or "
                             "?starttls=1")


def mail_settings(env: Mapping | None = None) -> MailSettings:
    """The mail settings; says once, in the log, where mail goes."""
    settings = _mail(env)
    _say_where_mail_goes(settings)
    return settings


def storage_dir(env: Mapping | None = None) -> Path | None:
    """``STORAGE_DIR``, made absolute against this process's working directory; ``None``
    (the default) keeps report files in Redis, where every process reaches them."""
    raw = Env(env).raw("STORAGE_DIR")
    return Path(os.path.abspath(raw)) if raw else None


# -- outbound webhooks -----------------------------------------------------------------

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


@_section(("WEBHOOK_SIGNING_SECRET", "WEBHOOK_ALLOWED_HOSTS", "WEBHOOK_TIMEOUT",
           "WEBHOOK_MAX_RESPONSE_BYTES", "WEBHOOK_RETRY_AFTER_MAX"))
def _webhooks(env: Env) -> WebhookSettings:
    secret = env.raw("WEBHOOK_SIGNING_SECRET")
    if secret:
        signing_key(secret, "WEBHOOK_SIGNING_SECRET")
    try:
        allow = AllowList.parse(env.items("WEBHOOK_ALLOWED_HOSTS"))
    except ValueError as exc:
        raise ConfigurationError(f"WEBHOOK_ALLOWED_HOSTS: {exc}") from None
    return WebhookSettings(
        signing_secret=secret,
        allow=allow,
        timeout=env.number("WEBHOOK_TIMEOUT", 10.0, 0.1, 300.0),
        max_response_bytes=env.integer("WEBHOOK_MAX_RESPONSE_BYTES", 65536, 0, 16 << 20),
        retry_after_max=env.number("WEBHOOK_RETRY_AFTER_MAX", 3600.0, 0.0, 7 * 86400.0),
    )


@functools.lru_cache(maxsize=16)
def _say_which_hosts_are_allowed(allow: AllowList) -> None:
    if allow.names or allow.networks:
        jobs_log.warning("WEBHOOK_ALLOWED_HOSTS lets webhooks reach non-public hosts: %s",
                         ", ".join(sorted(allow.names) + [str(n) for n in allow.networks]))


def webhook_settings(env: Mapping | None = None) -> WebhookSettings:
    """The outbound webhook settings; says once, in the log, which non-public hosts
    webhooks may reach."""
    settings = _webhooks(env)
    _say_which_hosts_are_allowed(settings.allow)
    return settings


# -- inbound hooks ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class HookSettings:
    """How inbound hooks (``POST /v1/hooks/{source}``) are verified and kept."""

    secrets: dict = dataclasses.field(repr=False)
    """``HOOK_SECRETS``: source -> tuple of ``whsec_`` secrets (several during a rotation)."""
    tenant: str
    """``HOOK_TENANT``: the tenant whose ``webhook.process`` jobs inbound hooks become."""
    record_ttl: int
    """``HOOK_RECORD_TTL`` seconds a received hook is kept for dedupe (default 7 days)."""


@_section(("HOOK_SECRETS", "HOOK_TENANT", "HOOK_RECORD_TTL"))
def hook_settings(env: Env) -> HookSettings:
    """The inbound hook settings."""
    secrets: dict[str, tuple[str, ...]] = {}
    for item in env.items("HOOK_SECRETS"):
        source, sep, secret = item.partition(":")
        source, secret = source.strip(), secret.strip()
        if not sep or not _SOURCE.fullmatch(source):
            raise ConfigurationError("HOOK_SECRETS must be 'source:whsec_...,source:whsec_...' "
                                     "with sources of letters, digits, '_', '-' or '.'")
        signing_key(secret, f"HOOK_SECRETS ({source})")
        secrets[source] = secrets.get(source, ()) + (secret,)
    tenant = env.text("HOOK_TENANT", "default")
    if not _SOURCE.fullmatch(tenant):
        raise ConfigurationError(f"HOOK_TENANT={tenant!r} must be 1-64 letters, digits, "
                                 "'_', '-' or '.'")
    return HookSettings(secrets=secrets, tenant=tenant,
                        record_ttl=env.integer("HOOK_RECORD_TTL", 7 * 86400, 60, 365 * 86400))


# -- everything ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the service reads from its environment; see the README for each."""

    backend: str
    """``QUEUE_BACKEND``: ``rq`` (default), ``celery``, ``inline`` or a dotted path."""
    adapter: AdapterSettings
    """``REDIS_URL``, ``CELERY_BROKER_URL`` and the ``SWITCHYARD_*`` adapter settings."""
    api_keys: tuple[ApiKey, ...]
    """``API_KEYS``: ``tenant:key,tenant:key``."""
    secret_key: str = dataclasses.field(repr=False)
    """``SECRET_KEY`` (signs the dashboard's sessions); unset, derived from ``API_KEYS``."""
    rate_limit: str
    """``RATE_LIMIT``: requests per API key, e.g. ``600/minute`` or ``10/second;600/minute``."""
    max_content_length: int
    """``MAX_CONTENT_LENGTH``: the largest request body in bytes (413 above it)."""
    job_modules: str
    """``JOB_MODULES``: comma-separated modules that register the job types."""
    mail: MailSettings
    """``SMTP_URL``, ``OUTBOX_DIR``, ``MAIL_FROM``, ``SMTP_TIMEOUT``, ``SMTP_HELO_NAME``."""
    storage_dir: Path | None
    """``STORAGE_DIR``."""
    webhooks: WebhookSettings
    """The ``WEBHOOK_*`` settings."""
    hooks: HookSettings
    """The ``HOOK_*`` settings."""
    retry_backoffs: dict = dataclasses.field(default_factory=dict)
    """``SMTP_RETRY_BACKOFF``, ``WEBHOOK_RETRY_BACKOFF``, ``HOOK_RETRY_BACKOFF`` by name."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Read and validate everything; the first problem raises ``ConfigurationError``.
        Logs nothing (:func:`check` does)."""
        env = os.environ if env is None else env
        read = Env(env)
        backend = read.text("QUEUE_BACKEND", "rq")
        resolve_engine(backend)  # an unknown alias fails here, with a "did you mean"
        adapter = AdapterSettings.from_env(env)
        rate_limit = read.text("RATE_LIMIT", DEFAULT_RATE_LIMIT)
        try:
            if not parse_many(rate_limit):
                raise ValueError("empty")
        except ValueError:
            raise ConfigurationError(f"RATE_LIMIT={rate_limit!r} is not like '600/minute' or "
                                     "'10/second;600/minute'") from None
        api_keys = parse_api_keys(read.text("API_KEYS"))
        return cls(
            backend=backend,
            adapter=adapter,
            api_keys=api_keys,
            secret_key=session_secret(read.raw("SECRET_KEY") or "", api_keys),
            rate_limit=rate_limit,
            max_content_length=read.integer("MAX_CONTENT_LENGTH", DEFAULT_MAX_CONTENT_LENGTH, 1),
            job_modules=read.text("JOB_MODULES", DEFAULT_JOB_MODULES),
            mail=_mail(env),
            storage_dir=storage_dir(env),
            webhooks=_webhooks(env),
            hooks=hook_settings(env),
            retry_backoffs={name: env_seconds(name, default, env) for name, default in
                            (("SMTP_RETRY_BACKOFF", 30.0), ("WEBHOOK_RETRY_BACKOFF", 5.0),
                             ("HOOK_RETRY_BACKOFF", 5.0))},
        )


def check(env: Mapping[str, str] | None = None) -> Settings:
    """The start-up check: every setting of the service and its jobs, validated (the
    first bad one raises ``ConfigurationError``), and a word in the log on where mail
    goes and which non-public hosts webhooks may reach."""
    settings = Settings.from_env(env)
    _say_where_mail_goes(settings.mail)
    _say_which_hosts_are_allowed(settings.webhooks.allow)
    return settings
