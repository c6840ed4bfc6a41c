"""The report builder on synthetic JUnit files: what is a parity break and what is not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from service.compare import render
from service.compare.figures import capabilities, read_faults
from service.compare.results import read_legs
from tests.processes import ROOT

A, B = "rq+redis", "celery+redis"


def junit(path: Path, leg: str, cases: dict[str, str]) -> None:
    """A pytest-style JUnit file: ``{"module::test": "pass" | "fail" | "skip:<reason>"}``."""
    rows = []
    for case, outcome in cases.items():
        module, name = case.split("::")
        body = ""
        if outcome == "fail":
            body = '<failure message="AssertionError: assert 1 == 2">trace</failure>'
        elif outcome.startswith("skip:"):
            body = f'<skipped type="pytest.skip" message="{outcome[5:]}">why</skipped>'
        rows.append(f'<testcase classname="tests.conformance.{module}" '
                    f'name="{name}[{leg}]" time="0.5">{body}</testcase>')
    path.write_text('<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">'
                    + "".join(rows) + "</testsuite></testsuites>")


def test_an_outcome_that_differs_between_legs_is_a_parity_break(tmp_path):
    junit(tmp_path / f"junit-{A}.xml", A, {"test_a::test_one": "pass", "test_a::test_two": "pass"})
    junit(tmp_path / f"junit-{B}.xml", B, {"test_a::test_one": "pass", "test_a::test_two": "fail"})
    results = read_legs(tmp_path, [A, B])
    assert results.parity_breaks() == ["test_a::test_two"]
    assert not results.ok
    assert results.counts(B) == {"pass": 1, "fail": 1, "skip": 0}


def test_a_capability_skip_is_not_a_break_and_names_the_capability(tmp_path):
    junit(tmp_path / f"junit-{A}.xml", A, {"test_a::test_delay": "pass"})
    junit(tmp_path / f"junit-{B}.xml", B, {"test_a::test_delay": "skip:celery does not declare delay, expiry"})
    results = read_legs(tmp_path, [A, B])
    assert results.parity_breaks() == [] and results.ok
    outcome = results.cases["test_a::test_delay"][B]
    assert outcome.capabilities == ("delay", "expiry")
    assert outcome.label() == "skipped (delay, expiry)"


def test_a_skip_for_any_other_reason_is_a_break(tmp_path):
    junit(tmp_path / f"junit-{A}.xml", A, {"test_a::test_x": "pass"})
    junit(tmp_path / f"junit-{B}.xml", B, {"test_a::test_x": "skip:no server here"})
    assert read_legs(tmp_path, [A, B]).parity_breaks() == ["test_a::test_x"]


def test_a_leg_without_a_case_or_without_results(tmp_path):
    junit(tmp_path / f"junit-{A}.xml", A, {"test_a::test_x": "pass", "test_a::only_a": "pass"})
    junit(tmp_path / f"junit-{B}.xml", B, {"test_a::test_x": "pass"})
    results = read_legs(tmp_path, [A, B, "celery+amqp"])
    assert results.parity_breaks() == []  # only_a is not run on B: no break
    assert "celery+amqp" in results.errors and not results.ok  # no file: not a pass


def test_a_failure_on_every_leg_fails_the_comparison_without_being_a_break(tmp_path):
    junit(tmp_path / f"junit-{A}.xml", A, {"test_a::test_x": "fail"})
    junit(tmp_path / f"junit-{B}.xml", B, {"test_a::test_x": "fail"})
    results = read_legs(tmp_path, [A, B])
    assert results.parity_breaks() == [] and results.failing_everywhere() == ["test_a::test_x"]
    assert not results.ok


def test_parameters_beside_the_leg_stay_in_the_case_name(tmp_path):
    path = tmp_path / f"junit-{A}.xml"
    path.write_text('<testsuites><testsuite><testcase classname="tests.conformance.test_exits" '
                    f'name="test_exit[{A}-sys.exit]"/><testcase classname="tests.conformance.t" '
                    f'name="test_p[KeyboardInterrupt-{A}]"/></testsuite></testsuites>')
    assert set(read_legs(tmp_path, [A]).cases) == {"test_exits::test_exit[sys.exit]",
                                                   "t::test_p[KeyboardInterrupt]"}


def test_the_report_lists_breaks_first_with_capabilities_and_faults(tmp_path):
    junit(tmp_path / f"junit-{A}.xml", A, {"test_a::test_one": "pass", "test_a::test_two": "pass"})
    junit(tmp_path / f"junit-{B}.xml", B, {"test_a::test_one": "skip:celery does not declare delay",
                                          "test_a::test_two": "fail"})
    faults, written = read_faults(ROOT / "RELIABILITY.md")
    report = render.Report(results=read_legs(tmp_path, [A, B]),
                           capabilities=capabilities({A: "rq", B: "celery"}),
                           faults=faults, faults_note=written)
    md = render.markdown(report)
    assert md.index("## Parity breaks (1)") < md.index("## Conformance")
    assert "| test_a::test_two | pass | FAIL |" in md
    assert "skipped (delay)" in md and "assert 1 == 2" in md
    assert "| delay | yes | yes |" in md  # both engines declare it
    assert faults and "| rq+redis | worker sigterm mid job |" in md
    page = render.html_page(report)
    assert page.index("Parity breaks (1)") < page.index("Conformance")


def test_the_command_exits_non_zero_on_a_break_and_writes_the_step_summary(tmp_path):
    junit(tmp_path / f"junit-{A}.xml", A, {"test_a::test_two": "pass"})
    junit(tmp_path / f"junit-{B}.xml", B, {"test_a::test_two": "fail"})
    summary = tmp_path / "summary.md"
    env = {**os.environ, "SWITCHYARD_LEGS": f"{A},{B}", "GITHUB_STEP_SUMMARY": str(summary)}
    run = subprocess.run([sys.executable, "-m", "service.compare", "--report-only",
                          "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "PARITY BREAK: test_a::test_two" in run.stdout
    # the end of the output says which leg failed what, and why (CI often shows only the tail)
    tail = run.stdout.strip().splitlines()[-4:-1]  # then the FAIL line
    assert f"[compare] {A}: 1 passed, 0 failed, 0 skipped" in tail[0]
    assert f"[compare] {B}: 0 passed, 1 failed, 0 skipped" in tail[1]
    assert tail[2] == f"[compare] {B} FAILED test_a::test_two: AssertionError: assert 1 == 2"
    assert "## Parity breaks (1)" in summary.read_text()
    assert (tmp_path / "COMPARISON.html").exists() and (tmp_path / "COMPARISON.md").exists()

    junit(tmp_path / f"junit-{B}.xml", B, {"test_a::test_two": "pass"})
    run = subprocess.run([sys.executable, "-m", "service.compare", "--report-only",
                          "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
