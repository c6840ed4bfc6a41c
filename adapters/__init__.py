"""Switchyard's queue engines behind one small interface; knows nothing of Flask."""

from .base import (
    Capability,
    Dispatch,
    JobInfo,
    JobOptions,
    JobState,
    Priority,
    QueueAdapter,
    WorkerInfo,
    WorkflowInfo,
    WorkflowState,
)
from .context import JobContext
from .errors import (
    BackendUnavailable,
    ConfigurationError,
    IdempotencyKeyReused,
    InvalidJob,
    InvalidState,
    JobCanceled,
    JobInterrupted,
    JobNotFound,
    JobTimeout,
    SwitchyardError,
    UnknownJobType,
    UnsupportedFeature,
    WaitTimeout,
)
from .registry import JobDefinition, definitions, get_definition, job, load_job_modules
from .resolve import ALIASES, create_adapter, resolve_adapter
from .settings import AdapterSettings

__all__ = [
    "ALIASES",
    "AdapterSettings",
    "BackendUnavailable",
    "Capability",
    "ConfigurationError",
    "Dispatch",
    "IdempotencyKeyReused",
    "InvalidJob",
    "InvalidState",
    "JobCanceled",
    "JobContext",
    "JobDefinition",
    "JobInfo",
    "JobInterrupted",
    "JobNotFound",
    "JobOptions",
    "JobState",
    "JobTimeout",
    "Priority",
    "QueueAdapter",
    "SwitchyardError",
    "UnknownJobType",
    "UnsupportedFeature",
    "WaitTimeout",
    "WorkerInfo",
    "WorkflowInfo",
    "WorkflowState",
    "create_adapter",
    "definitions",
    "get_definition",
    "job",
    "load_job_modules",
    "resolve_adapter",
]
