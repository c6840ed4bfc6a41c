"""How much the bench does: the full run and the quick CI smoke run."""

from __future__ import annotations

import dataclasses

__all__ = ["Plan", "FULL", "SMOKE"]


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes and repetitions of every measurement."""

    name: str
    runs: int
    """Repetitions of every figure (median and range are reported)."""
    warmup_jobs: int
    """No-op jobs run once to size the timed runs."""
    throughput_seconds: float
    """Target length of one timed throughput run; sizes ``n`` from the warm-up rate."""
    min_jobs: int
    max_jobs: int
    latency_jobs: int
    """Jobs per latency run."""
    command_jobs_max: int
    command_seconds: float
    idle_seconds: float
    enqueue_jobs: int
    batch_size: int
    http_requests: int
    http_batch_requests: int
    http_clients: int
    http_latency_jobs: int


FULL = Plan(name="full", runs=3, warmup_jobs=40, throughput_seconds=2.0, min_jobs=40,
            max_jobs=4000, latency_jobs=100, command_jobs_max=500, command_seconds=1.5,
            idle_seconds=10.0, enqueue_jobs=1000, batch_size=100, http_requests=1000,
            http_batch_requests=40, http_clients=8, http_latency_jobs=100)

SMOKE = Plan(name="smoke", runs=1, warmup_jobs=10, throughput_seconds=0.3, min_jobs=10,
             max_jobs=300, latency_jobs=10, command_jobs_max=40, command_seconds=0.3,
             idle_seconds=0.5, enqueue_jobs=60, batch_size=20, http_requests=60,
             http_batch_requests=6, http_clients=4, http_latency_jobs=10)
