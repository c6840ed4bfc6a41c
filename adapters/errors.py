"""Every exception Switchyard's adapters raise, under one root.

    SwitchyardError            base class; catch this to catch them all, never raise it
    ├── ConfigurationError     a setting or an engine alias that cannot work
    ├── InvalidJob             a type, payload or option a job cannot be enqueued with
    │   └── UnknownJobType     no @job is registered under that name
    ├── UnsupportedFeature     the adapter does not declare the capability asked for
    ├── JobNotFound            no such job (or not the caller's tenant's)
    ├── InvalidState           the job is in a state that forbids the operation
    │   └── IdempotencyKeyReused   the idempotency key names a job enqueued with other parameters
    ├── BackendUnavailable     Redis or the broker cannot be reached; nothing was written
    ├── WaitTimeout            wait() or wait_for_workers() ran out of time (a TimeoutError too)
    └── JobInterrupted         raised inside a running job by the runner
        ├── JobTimeout         the job ran past its hard timeout
        └── JobCanceled        the job was canceled while it ran
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import redis

__all__ = [
    "unavailable",
    "SwitchyardError",
    "ConfigurationError",
    "UnknownJobType",
    "InvalidJob",
    "UnsupportedFeature",
    "JobNotFound",
    "InvalidState",
    "IdempotencyKeyReused",
    "BackendUnavailable",
    "WaitTimeout",
    "JobInterrupted",
    "JobTimeout",
    "JobCanceled",
]


class SwitchyardError(Exception):
    """Base class of every Switchyard error. Do not raise directly."""


class ConfigurationError(SwitchyardError):
    """A setting, alias or dotted path that cannot be used."""


class InvalidJob(SwitchyardError):
    """A job type, payload or option the job cannot be enqueued with.

    ``errors`` maps a field name, as the REST API names it (``type``, ``payload.to``,
    ``options.queue``, ``jobs.3.options.delay``), to a list of messages.
    """

    def __init__(self, message: str, errors: dict | None = None):
        super().__init__(message)
        self.errors = errors or {}


class UnknownJobType(InvalidJob):
    """No job definition is registered under the requested name (field ``type``)."""


class UnsupportedFeature(SwitchyardError):
    """The adapter does not declare the capability the call needs."""


class JobNotFound(SwitchyardError):
    """No job has this id for this tenant."""


class InvalidState(SwitchyardError):
    """The job's state forbids the operation (e.g. canceling a finished job)."""

    def __init__(self, message: str, state: str | None = None):
        super().__init__(message)
        self.state = state


class IdempotencyKeyReused(InvalidState):
    """An ``idempotency_key`` already names a job enqueued with a different type, payload or
    options; nothing was written. ``job_id`` is that job, ``index`` the refused job's place
    in the call (0 for a single enqueue); ``errors`` names the field as the REST API
    does (``options.idempotency_key``, or ``jobs.<index>.options.idempotency_key`` in a
    batch)."""

    def __init__(self, message: str, job_id: str, index: int = 0, batch: bool = False):
        super().__init__(message, state="idempotency_key_in_use")
        self.job_id = job_id
        self.index = index
        field = f"jobs.{index}.options.idempotency_key" if batch else "options.idempotency_key"
        self.errors = {field: [f"is in use by job {job_id}, enqueued with other parameters"]}


class BackendUnavailable(SwitchyardError):
    """Redis or the broker could not be reached; the operation left nothing behind."""


class WaitTimeout(SwitchyardError, TimeoutError):
    """``wait`` or ``wait_for_workers`` gave up at its timeout; nothing was changed."""


class JobInterrupted(SwitchyardError):
    """Raised inside a running job by the runner. Do not raise directly."""


class JobTimeout(JobInterrupted):
    """The job ran past its hard timeout."""


class JobCanceled(JobInterrupted):
    """The job was canceled while it was running."""


@contextlib.contextmanager
def unavailable(what: str) -> Iterator[None]:
    """Translate a Redis error inside the block into ``BackendUnavailable("<what>: ...")``:
    the one place the adapters turn a driver's error into Switchyard's."""
    try:
        yield
    except redis.RedisError as exc:
        raise BackendUnavailable(f"{what}: {exc}") from exc
