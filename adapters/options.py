"""How to enqueue one job: the options (and priorities) every enqueue takes, on every engine."""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime

__all__ = ["JobOptions", "Priority"]


class Priority(str, enum.Enum):
    """Relative priority inside one named queue."""

    HIGH = "high"
    DEFAULT = "default"
    LOW = "low"


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobOptions:
    """How to enqueue one job; ``None`` means "use the job definition's default"."""

    queue: str | None = None
    """Named queue; defaults to the definition's queue."""
    priority: Priority | str | None = None
    """``high`` | ``default`` | ``low``."""
    delay: float | None = None
    """Seconds from now before the job may start (exclusive with ``run_at``)."""
    run_at: datetime | float | None = None
    """When the job may start: an aware datetime or a Unix timestamp."""
    expires_at: datetime | float | None = None
    """If the job has not started by then it is canceled with reason ``expired``."""
    max_retries: int | None = None
    """Retries after the first attempt; defaults to the definition's."""
    timeout: float | None = None
    """Hard time limit of one attempt in seconds; defaults to the definition's."""
    idempotency_key: str | None = None
    """A second enqueue with the same key (per tenant) and the same type, payload and
    options returns the first job; with different ones it raises ``IdempotencyKeyReused``."""
