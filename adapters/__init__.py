"""Switchyard's queue engines behind one small interface; knows nothing of Flask."""

from . import bulk_job  # noqa: F401 - registers switchyard.bulk in every process
from .client import KeySpace, Switchyard, create_adapter
from .context import JobContext
from .engine import Dispatch, Engine
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
from .options import JobOptions, Priority
from .resolve import ALIASES, resolve_engine
from .search import JobFilter, Search
from .settings import AdapterSettings
from .queues import Queues
from .types import (Capability, JobInfo, JobState, QueueInfo, QueueStats, WorkerInfo,
                    WorkflowInfo, WorkflowState)

__all__ = [
    "ALIASES",
    "AdapterSettings",
    "BackendUnavailable",
    "Capability",
    "ConfigurationError",
    "Dispatch",
    "Engine",
    "IdempotencyKeyReused",
    "InvalidJob",
    "InvalidState",
    "JobCanceled",
    "JobContext",
    "JobDefinition",
    "JobFilter",
    "JobInfo",
    "KeySpace",
    "JobInterrupted",
    "JobNotFound",
    "JobOptions",
    "JobState",
    "JobTimeout",
    "Priority",
    "QueueInfo",
    "QueueStats",
    "Queues",
    "Search",
    "Switchyard",
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
    "resolve_engine",
]
