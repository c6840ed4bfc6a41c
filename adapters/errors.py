"""Every exception Switchyard's adapters raise, under one root.

    SwitchyardError            base class; catch this to catch them all, never raise it
    ├── ConfigurationError     a setting or an engine alias that cannot work
    ├── UnknownJobType         no @job is registered under that name
    ├── InvalidJob             a payload or option that a job cannot be enqueued with
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

__all__ = [
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


class UnknownJobType(SwitchyardError):
    """No job definition is registered under the requested name."""


class InvalidJob(SwitchyardError):
    """A payload or option the job cannot be enqueued with.

    ``errors`` maps a field name to a list of messages, like marshmallow does.
    """

    def __init__(self, message: str, errors: dict | None = None):
        super().__init__(message)
        self.errors = errors or {}


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
    in the call (0 for a single enqueue)."""

    def __init__(self, message: str, job_id: str, index: int = 0):
        super().__init__(message, state="idempotency_key_in_use")
        self.job_id = job_id
        self.index = index


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
