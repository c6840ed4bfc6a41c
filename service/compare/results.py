"""The conformance results of every leg, read from pytest's JUnit XML: the case x leg
matrix, and the cases whose outcome differs between legs (parity breaks).

One file per leg (``junit-<leg>.xml``, one pytest run with ``SWITCHYARD_LEGS=<leg>``).
A case is the test's module, name and parameters with the leg taken out of them, so the
same case on two legs is one row. A skip whose reason reads ``X does not declare Y``
(``tests/conformance/conftest.py::needs``) is a *capability skip*: the engine said it
cannot, and that is no break. Any other difference between legs is one.
"""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from pathlib import Path

__all__ = ["Outcome", "Results", "read_junit", "read_legs", "CAPABILITY_SKIP"]

CAPABILITY_SKIP = re.compile(r"(?P<engine>\S+) does not declare (?P<caps>[\w, ]+?)\s*$")
"""The reason ``needs()`` gives a skip: ``rq does not declare delay, expiry``."""

PASSED, FAILED, SKIPPED = "pass", "fail", "skip"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one case did on one leg."""

    status: str
    """``pass``, ``fail`` (a failure or an error) or ``skip``."""
    message: str = ""
    """The skip reason or the failure's first line."""
    seconds: float = 0.0

    @property
    def capabilities(self) -> tuple[str, ...]:
        """The capabilities a capability skip names (empty for anything else)."""
        if self.status != SKIPPED:
            return ()
        match = CAPABILITY_SKIP.search(self.message)
        return tuple(c.strip() for c in match.group("caps").split(",")) if match else ()

    @property
    def comparable(self) -> str | None:
        """What parity compares: the status, ``None`` for a capability skip."""
        return None if self.capabilities else self.status

    def label(self) -> str:
        if self.status == SKIPPED and self.capabilities:
            return "skipped (" + ", ".join(self.capabilities) + ")"
        return {PASSED: "pass", FAILED: "FAIL", SKIPPED: "skipped"}[self.status]


def _case_name(testcase: ET.Element, leg: str) -> str:
    classname = testcase.get("classname", "")
    name = testcase.get("name", "")
    module = classname.rsplit(".", 1)[-1] if classname else ""
    if "[" in name and name.endswith("]"):
        base, params = name[:-1].split("[", 1)
        if params == leg:
            params = ""
        elif params.startswith(leg + "-"):
            params = params[len(leg) + 1:]
        elif params.endswith("-" + leg):
            params = params[:-len(leg) - 1]
        else:
            params = params.replace(f"-{leg}-", "-", 1)
        name = base + (f"[{params}]" if params else "")
    return f"{module}::{name}" if module else name


def _outcome(testcase: ET.Element) -> Outcome:
    seconds = float(testcase.get("time") or 0)
    for tag in ("failure", "error"):
        found = testcase.find(tag)
        if found is not None:
            text = found.get("message") or (found.text or "").strip()
            return Outcome(FAILED, text.splitlines()[0][:300] if text else tag, seconds)
    skipped = testcase.find("skipped")
    if skipped is not None:
        reason = (skipped.get("message") or skipped.text or "").strip()
        return Outcome(SKIPPED, reason.removeprefix("Skipped: ").removeprefix("SKIPPED "), seconds)
    return Outcome(PASSED, "", seconds)


def read_junit(path: Path, leg: str) -> dict[str, Outcome]:
    """``{case: outcome}`` of one leg's JUnit XML file."""
    root = ET.parse(path).getroot()
    cases: dict[str, Outcome] = {}
    for testcase in root.iter("testcase"):
        cases[_case_name(testcase, leg)] = _outcome(testcase)
    return cases


@dataclasses.dataclass
class Results:
    """Every leg's outcomes, and what the comparison makes of them."""

    legs: list[str]
    cases: dict[str, dict[str, Outcome]]
    """case -> leg -> outcome (a leg that did not run the case is absent)."""
    errors: dict[str, str] = dataclasses.field(default_factory=dict)
    """leg -> why it has no results (its run did not write a JUnit file)."""

    def parity_breaks(self) -> list[str]:
        """Cases whose outcome differs between legs, capability skips left aside."""
        breaks = []
        for case, by_leg in self.cases.items():
            seen = {o.comparable for o in by_leg.values()} - {None}
            if len(seen) > 1:
                breaks.append(case)
        return sorted(breaks)

    def failing_everywhere(self) -> list[str]:
        """Cases that failed on every leg that ran them (no break, but a failure)."""
        return sorted(case for case, by_leg in self.cases.items()
                      if {o.comparable for o in by_leg.values()} == {FAILED})

    def counts(self, leg: str) -> dict[str, int]:
        counts = {PASSED: 0, FAILED: 0, SKIPPED: 0}
        for by_leg in self.cases.values():
            if leg in by_leg:
                counts[by_leg[leg].status] += 1
        return counts

    @property
    def ok(self) -> bool:
        return not (self.parity_breaks() or self.failing_everywhere() or self.errors)


def read_legs(junit_dir: Path, legs: list[str]) -> Results:
    """The results of ``legs`` from ``junit_dir/junit-<leg>.xml``; a missing or unreadable
    file is an error of that leg."""
    cases: dict[str, dict[str, Outcome]] = {}
    errors: dict[str, str] = {}
    for leg in legs:
        path = junit_dir / f"junit-{safe(leg)}.xml"
        try:
            outcomes = read_junit(path, leg)
        except (OSError, ET.ParseError) as exc:
            errors[leg] = f"no results ({type(exc).__name__}: {exc})"
            continue
        if not outcomes:
            errors[leg] = f"{path.name} holds no test case"
        for case, outcome in outcomes.items():
            cases.setdefault(case, {})[leg] = outcome
    return Results(legs=list(legs), cases=dict(sorted(cases.items())), errors=errors)


def safe(leg: str) -> str:
    """A leg's name as a file name part (``celery+amqp`` stays as it is)."""
    return re.sub(r"[^A-Za-z0-9+._-]", "_", leg)
