"""The figures the comparison reads beside the conformance results: the engines'
declared capabilities, the quick bench's ratios against the raw engines, and the fault
suite's figures (``RELIABILITY.md`` as ``make chaos`` committed it)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from adapters import Capability, ConfigurationError, resolve_engine

__all__ = ["capabilities", "bench_ratios", "read_faults", "BenchRow", "Fault"]


def capabilities(backends: dict[str, str]) -> dict[str, dict[str, Any]]:
    """leg -> ``{"engine": "module:Class", "declared": {capability value, ...}}``, read
    from each engine class's ``capabilities`` (``backends``: leg -> alias or path)."""
    out = {}
    for leg, backend in backends.items():
        try:
            cls = resolve_engine(backend)
        except ConfigurationError as exc:
            out[leg] = {"engine": backend, "declared": set(), "error": str(exc)}
            continue
        out[leg] = {"engine": f"{cls.__module__}:{cls.__qualname__}",
                    "declared": {c.value for c in cls.capabilities}}
    return out


ALL_CAPABILITIES = [c.value for c in Capability]


@dataclasses.dataclass(frozen=True)
class BenchRow:
    """Switchyard against the raw engine under one worker setting (ratios of medians)."""

    engine: str
    setting: str
    default: bool
    throughput_noop: float | None
    throughput_sleep: float | None
    latency_p50: float | None
    commands_total: float | None
    commands_client: float | None


def _median(row: dict | None, *path: str) -> float | None:
    value: Any = row
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    if isinstance(value, dict):
        value = value.get("median")
    return value if isinstance(value, (int, float)) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def bench_ratios(results: dict) -> list[BenchRow]:
    """Switchyard / raw for every worker setting the bench results hold: throughput
    (no-op and 50 ms jobs; above 1 is faster), enqueue-to-result latency p50 and Redis
    commands per job (above 1 is more)."""
    rows: dict[tuple[str, str], dict[str, dict]] = {}
    for row in results.get("workers", []):
        rows.setdefault((row["engine"], row["setting"]), {})[row["flavour"]] = row
    out = []
    for (engine, setting), flavours in rows.items():
        raw, sy = flavours.get("raw"), flavours.get("switchyard")
        if not raw or not sy:
            continue
        out.append(BenchRow(
            engine=engine, setting=setting, default=bool(sy.get("switchyard_default")),
            throughput_noop=_ratio(_median(sy, "throughput_noop"), _median(raw, "throughput_noop")),
            throughput_sleep=_ratio(_median(sy, "throughput_sleep"), _median(raw, "throughput_sleep")),
            latency_p50=_ratio(_median(sy, "latency", "p50"), _median(raw, "latency", "p50")),
            commands_total=_ratio(_median(sy, "commands", "total"), _median(raw, "commands", "total")),
            commands_client=_ratio(_median(sy, "commands", "client"),
                                   _median(raw, "commands", "client"))))
    return sorted(out, key=lambda r: (r.engine, not r.default, r.setting))


def read_bench(path: Path) -> tuple[dict | None, str | None]:
    """The bench's results JSON, or why there is none."""
    try:
        return json.loads(path.read_text()), None
    except OSError as exc:
        return None, f"no bench results at {path.name} ({exc.strerror})"
    except ValueError as exc:
        return None, f"{path.name} is not JSON: {exc}"


@dataclasses.dataclass(frozen=True)
class Fault:
    """One row of the fault suite's table."""

    leg: str
    fault: str
    accepted: int
    succeeded: int
    lost: int
    run_twice: int
    stuck: int
    recovered_in: str
    passed: bool


_ROW = re.compile(r"^\|(.+)\|\s*$")


def read_faults(path: Path) -> tuple[list[Fault], str]:
    """The rows of ``RELIABILITY.md``'s table, and the line that says when and where it
    was written (or why there is nothing)."""
    try:
        text = path.read_text()
    except OSError as exc:
        return [], f"no fault figures: {path.name} ({exc.strerror}); `make chaos` writes it"
    written = next((line for line in text.splitlines() if line.startswith("Written by")), "")
    header: list[str] | None = None
    faults = []
    for line in text.splitlines():
        match = _ROW.match(line.strip())
        if not match:
            header = None if header and not line.strip() else header
            continue
        cells = [c.strip() for c in match.group(1).split("|")]
        if cells[:2] == ["leg", "fault"]:
            header = cells
            continue
        if header is None or set("".join(cells)) <= set("-: "):
            continue
        row = dict(zip(header, cells))
        try:
            faults.append(Fault(
                leg=row["leg"], fault=row["fault"], accepted=int(row["accepted"]),
                succeeded=int(row["succeeded"]), lost=int(row["lost"]),
                run_twice=int(row["run twice"]), stuck=int(row["stuck"]),
                recovered_in=row.get("recovered in", ""), passed=row.get("result") == "pass"))
        except (KeyError, ValueError):
            continue
    return faults, written.split(";")[0]
