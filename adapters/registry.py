"""The ``@job`` decorator and the registry of job definitions."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import re
from typing import Any, Callable

from .errors import ConfigurationError, UnknownJobType
from .payloads import check_payload

__all__ = ["job", "JobDefinition", "get_definition", "definitions", "load_job_modules",
           "parse_rate", "BUILTIN_PREFIX"]

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
          "h": 3600.0, "hour": 3600.0}
BUILTIN_PREFIX = "switchyard."
"""The names of Switchyard's own job types; no job module may take one."""
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")


def parse_rate(text: str) -> tuple[int, float]:
    """``"5/s"`` -> ``(5, 1.0)``; ``"10/2m"`` -> ``(10, 120.0)``."""
    match = _RATE.match(text or "")
    if not match or int(match.group(1)) < 1:
        raise ConfigurationError(f"rate limit {text!r} is not like '5/s', '100/m' or '10/2h'")
    count, multiple, unit = match.groups()
    return int(count), float(multiple or 1) * _UNITS[unit]


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobDefinition:
    """A registered job: the function and its defaults."""

    name: str
    """Registered name, e.g. ``email.send``."""
    func: Callable
    """``func(ctx, **payload) -> JSON``."""
    queue: str = "default"
    """Default named queue."""
    priority: str = "default"
    """Default priority."""
    max_retries: int = 0
    """Retries after the first attempt."""
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    """Only these exception types are retried; others fail at once. An exception with a
    ``retry_after`` attribute (seconds) delays its retry at least that long."""
    retry_backoff: float = 1.0
    """First retry delay in seconds; doubles each retry."""
    retry_backoff_max: float = 600.0
    """The longest retry delay."""
    retry_jitter: bool = True
    """Randomise each delay within [delay/2, delay] so retries do not stampede."""
    timeout: float | None = None
    """Hard time limit of one attempt; ``None`` takes the adapter's default."""
    rate_limit: tuple[int, float] | None = None
    """``(count, window seconds)`` across every worker."""
    schema: Any = None
    """Optional payload schema (anything with ``load(dict) -> dict``, e.g. a marshmallow
    ``Schema`` instance); the service validates payloads with it before enqueue."""
    description: str = ""
    """One line for the API docs; defaults to the function's docstring's first line."""
    examples: tuple[dict, ...] = ()
    """Example payloads, each valid for the job type (checked at registration):
    ``flask --app wsgi compare --jobs <module>`` runs each one on every engine."""
    builtin: bool = False
    """Switchyard's own (``switchyard.*``, e.g. the bulk operation): registered in every
    process by the adapters, enqueued only by Switchyard itself; left out of
    :func:`definitions`, so no caller can enqueue it and no spec lists it."""

    def retry_delay(self, retry_number: int, rand: Callable[[float, float], float]) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based)."""
        delay = min(self.retry_backoff_max, self.retry_backoff * (2 ** (retry_number - 1)))
        return rand(delay / 2, delay) if self.retry_jitter else delay


_registry: dict[str, JobDefinition] = {}


def job(name: str, *, queue: str = "default", priority: str = "default",
        max_retries: int = 0, retry_on: tuple[type[BaseException], ...] | None = None,
        retry_backoff: float = 1.0, retry_backoff_max: float = 600.0,
        retry_jitter: bool = True, timeout: float | None = None,
        rate_limit: str | None = None, schema: Any = None,
        examples: list[dict] | tuple[dict, ...] = (), builtin: bool = False):
    """Register ``func(ctx, **payload)`` as the job ``name``; returns the function unchanged."""
    if not _NAME.match(name):
        raise ConfigurationError(f"job name {name!r} must be letters, digits, '.', '_' or '-'")
    if builtin != name.startswith(BUILTIN_PREFIX):
        raise ConfigurationError(f"job {name!r}: the names {BUILTIN_PREFIX}* are Switchyard's own")
    if priority not in ("high", "default", "low"):
        raise ConfigurationError(f"priority {priority!r} must be high, default or low")

    def register(func: Callable) -> Callable:
        params = list(inspect.signature(func).parameters)
        if not params:
            raise ConfigurationError(f"job {name!r}: the function must take the context first")
        existing = _registry.get(name)
        if existing and (existing.func.__module__, existing.func.__qualname__) != (
                func.__module__, func.__qualname__):
            raise ConfigurationError(f"job {name!r} is already registered by "
                                     f"{existing.func.__module__}.{existing.func.__qualname__}")
        _check_examples(name, func, schema, examples)
        _registry[name] = JobDefinition(
            name=name, func=func, queue=queue, priority=priority, max_retries=max_retries,
            retry_on=tuple(retry_on) if retry_on is not None else (Exception,),
            retry_backoff=retry_backoff, retry_backoff_max=retry_backoff_max,
            retry_jitter=retry_jitter, timeout=timeout,
            rate_limit=parse_rate(rate_limit) if rate_limit else None,
            schema=schema, examples=tuple(dict(e) for e in examples),
            description=(inspect.getdoc(func) or "").split("\n")[0], builtin=builtin,
        )
        func.job_name = name
        return func

    return register


def _check_examples(name: str, func: Callable, schema: Any, examples: Any) -> None:
    """Each example must be a payload the job type accepts: ``ConfigurationError`` if not."""
    if isinstance(examples, (str, bytes, dict)) or not hasattr(examples, "__iter__"):
        raise ConfigurationError(f"job {name!r}: examples must be a list of payload dicts")
    probe = JobDefinition(name=name, func=func, schema=schema)
    for index, example in enumerate(examples):
        if not isinstance(example, dict):
            raise ConfigurationError(f"job {name!r}: example {index} is not a dict of payload "
                                     f"fields: {example!r}")
        problems = check_payload(probe, example)
        if problems:
            detail = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in problems.items())
            raise ConfigurationError(f"job {name!r}: example {index} is not a valid payload "
                                     f"({detail})")


def get_definition(name: str) -> JobDefinition:
    """The definition registered as ``name``; ``UnknownJobType`` otherwise."""
    try:
        return _registry[name]
    except KeyError:
        raise UnknownJobType(f"no job type {name!r} is registered") from None


def definitions() -> dict[str, JobDefinition]:
    """The job types callers may enqueue (a copy; Switchyard's built-in types left out)."""
    return {name: d for name, d in _registry.items() if not d.builtin}


def load_job_modules(modules: str | list[str] | None = None) -> list[str]:
    """Import the job modules named (comma-separated) or in ``JOB_MODULES``."""
    if modules is None:
        modules = os.environ.get("JOB_MODULES", "")
    if isinstance(modules, str):
        modules = [m.strip() for m in modules.split(",") if m.strip()]
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigurationError(f"JOB_MODULES names {module!r}, which cannot be "
                                     f"imported: {exc}") from exc
    return modules
