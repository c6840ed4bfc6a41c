"""The conformance suite as a user gets it: installed, run from a directory of theirs
against an engine of theirs; and a broken engine caught by the comparison."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest

from tests.processes import ROOT

OTHER_ENGINE = '''
from adapters.rq import RQEngine


class OtherEngine(RQEngine):
    """RQ under another name: an engine defined outside the repository."""

    name = "other"
'''

BROKEN_ENGINE = '''
from adapters.rq import RQEngine

_published = [0]


class DroppingEngine(RQEngine):
    """Declares what RQ declares, but its publish drops every second delivery."""

    name = "dropping"

    def publish(self, deliveries, pipeline=None):
        kept = []
        for delivery in deliveries:
            _published[0] += 1
            if _published[0] % 2:
                kept.append(delivery)
        super().publish(kept, pipeline)
'''

CASES = "test_enqueue_runs_to_success_with_json_result or test_exception_fails_the_job"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The package installed (not editable) into a directory of its own."""
    site = tmp_path_factory.mktemp("site")
    build = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                            "--target", str(site), str(ROOT)], capture_output=True, text=True,
                           timeout=300)
    if build.returncode != 0:
        why = (build.stderr.strip().splitlines() or ["pip failed"])[-1]
        if os.environ.get("REQUIRE_BUILD") == "1":
            pytest.fail(f"REQUIRE_BUILD=1 but the package could not be built: {why}")
        pytest.skip(f"the package could not be built (its build backend comes from the "
                    f"package index): {why}; REQUIRE_BUILD=1 makes that an error")
    return site


def test_the_installed_suite_runs_from_elsewhere_against_an_engine_defined_there(installed, tmp_path):
    (tmp_path / "other_engine.py").write_text(OTHER_ENGINE)
    junit = tmp_path / "junit.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHYARD_", "CELERY_"))}
    env.update(SWITCHYARD_LEGS="custom", PYTHONPATH=f"{installed}{os.pathsep}{tmp_path}")
    run = subprocess.run([sys.executable, "-m", "tests.conformance", "--engine",
                          "other_engine:OtherEngine", "-q", f"--junitxml={junit}",
                          "-k", "test_lifecycle or pickled or died_before_claiming"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "custom: " in run.stdout and " passed" in run.stdout
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    assert len(cases) >= 10 and all("[custom]" in c.get("name") for c in cases)
    assert all(c.find("failure") is None and c.find("skipped") is None for c in cases)
    where = subprocess.run([sys.executable, "-c", "import tests, adapters; print(tests.__file__); "
                            "print(adapters.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60).stdout.split()
    assert all(path.startswith(str(installed)) for path in where), where  # the installed copy


def test_a_broken_engine_is_a_parity_break_and_fails_the_comparison(tmp_path):
    (tmp_path / "broken_engine.py").write_text(textwrap.dedent(BROKEN_ENGINE))
    out = tmp_path / "report"
    env = {**os.environ, "SWITCHYARD_LEGS": "rq+redis,custom",
           "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    run = subprocess.run([sys.executable, "-m", "service.compare", "--engine",
                          "broken_engine:DroppingEngine", "--pytest-args", f"-k '{CASES}'",
                          # one process: the engine drops every second delivery *it* sees
                          "--processes", "0", "--no-bench", "--no-jobs", "--out", str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stdout + run.stderr
    report = (out / "COMPARISON.md").read_text()
    breaks = report[report.index("## Parity breaks"):report.index("## Conformance")]
    assert "## Parity breaks (1)" in breaks, breaks
    assert "| test_lifecycle::test_exception_fails_the_job_with_type_and_message | pass | FAIL |" \
        in breaks
    assert "PARITY BREAK" in run.stdout
