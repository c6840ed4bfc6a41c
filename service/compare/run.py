"""``flask --app wsgi compare`` (``make compare``): every engine leg side by side.

1. The conformance suite once per reachable leg (``python -m tests.conformance`` with
   ``SWITCHYARD_LEGS=<leg>``, one after another: the cases are timing-sensitive and
   a small machine has few cores), each writing ``junit-<leg>.xml``.
2. With ``--jobs`` (by default the app's ``JOB_MODULES``), every ``examples=`` payload
   on every engine leg, run by real worker processes.
3. The quick bench (``python -m bench --smoke``, into ``var/bench/``) when the bench is
   there (a repository checkout).
4. One report, ``COMPARISON.md`` and ``.html`` and a chart, in ``--out``
   (``var/compare/``); appended to ``$GITHUB_STEP_SUMMARY`` when that is set.

Exit status 0 when every case has one outcome on every leg (capability skips aside)
and nothing failed, 1 on a parity break or a failure.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from . import figures, render
from .results import read_legs, safe

__all__ = ["Options", "compare", "discover_legs", "build_report"]


@dataclasses.dataclass
class Options:
    out: Path = Path("var/compare")
    jobs: str | None = None
    """Job modules whose examples are run; ``None`` runs none."""
    engine: str | None = None
    """A dotted path: the leg ``custom`` (pytest ``--engine``)."""
    engine_hooks: str | None = None
    pytest_args: list[str] = dataclasses.field(default_factory=list)
    processes: int = 0
    """pytest-xdist processes per leg's run (0: one process)."""
    conformance: bool = True
    """False: build the report from the JUnit files already in ``out``."""
    bench: bool = True
    bench_results: Path | None = None
    faults: Path | None = None
    redis_url: str | None = None
    command: str = "make compare"


def _root() -> Path:
    import tests

    return Path(tests.__file__).resolve().parent.parent


def discover_legs(engine: str | None = None) -> tuple[list[str], dict[str, str]]:
    """The legs the conformance suite would run here (``SWITCHYARD_LEGS`` and RabbitMQ's
    reachability decide, as in the suite) and each one's engine (alias or path)."""
    from tests import conftest
    from tests.harness import CUSTOM_BACKENDS

    CUSTOM_BACKENDS.clear()
    if engine:
        CUSTOM_BACKENDS["custom"] = engine
    legs = conftest.engine_legs()
    selected = conftest.selected_legs()
    if selected is None or "inline" in selected:
        legs.append("inline")
    return legs, {leg: CUSTOM_BACKENDS.get(leg) or leg.split("+")[0] for leg in legs}


def run_conformance(leg: str, opts: Options, say) -> float:
    """One pytest run of the suite on ``leg``; its seconds."""
    logs = opts.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    junit = (opts.out / f"junit-{safe(leg)}.xml").resolve()
    junit.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "tests.conformance", "-q", f"--junitxml={junit}",
            "-o", "junit_family=xunit1", *opts.pytest_args]
    if opts.processes:
        argv += ["-n", str(opts.processes)]
    if opts.engine:
        argv += ["--engine", opts.engine]
    if opts.engine_hooks:
        argv += ["--engine-hooks", opts.engine_hooks]
    env = {**os.environ, "SWITCHYARD_LEGS": leg}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), env.get("PYTHONPATH")) if p)
    started = time.monotonic()
    say(f"[compare] conformance on {leg}: {shlex.join(argv[1:])}")
    with open(logs / f"conformance-{safe(leg)}.log", "wb") as log:
        code = subprocess.run(argv, env=env, cwd=_root(), stdout=log,
                              stderr=subprocess.STDOUT).returncode
    took = time.monotonic() - started
    say(f"[compare] conformance on {leg}: exit {code} in {took:.0f} s "
        f"(log: {logs / f'conformance-{safe(leg)}.log'})")
    return took


def run_bench(opts: Options, say) -> tuple[Path | None, str]:
    """``python -m bench --smoke``; the results file, and a note if there is none."""
    root = _root()
    if not (root / "bench" / "__main__.py").exists():
        return None, "No bench figures: the bench (`bench/`) is not in this installation."
    started = time.monotonic()
    say("[compare] bench smoke: python -m bench --smoke")
    with open(opts.out / "logs" / "bench.log", "wb") as log:
        code = subprocess.run([sys.executable, "-m", "bench", "--smoke"], cwd=root, stdout=log,
                              stderr=subprocess.STDOUT).returncode
    say(f"[compare] bench smoke: exit {code} in {time.monotonic() - started:.0f} s")
    note = "" if code == 0 else (f"The bench smoke exited {code} (some figures missing; "
                                 f"see {opts.out / 'logs' / 'bench.log'}).")
    return root / "var" / "bench" / "BENCHMARKS.json", note


def build_report(opts: Options, legs: list[str], backends: dict[str, str],
                 bench_path: Path | None, bench_note: str, examples: list[dict] | None,
                 timings: dict[str, float]) -> render.Report:
    results = read_legs(opts.out, legs)
    report = render.Report(results=results, capabilities=figures.capabilities(backends),
                           command=opts.command, timings=timings, examples=examples)
    if bench_path is not None:
        data, why = figures.read_bench(bench_path)
        report.bench = figures.bench_ratios(data) if data else []
        if opts.bench_results:
            report.bench_source = str(opts.bench_results)
        report.bench_note = " ".join(n for n in (bench_note, why or "") if n)
    else:
        report.bench_note = bench_note or "No bench figures (the bench was not run)."
    faults_path = opts.faults or next(
        (p for p in (Path.cwd() / "RELIABILITY.md", _root() / "RELIABILITY.md") if p.exists()),
        Path.cwd() / "RELIABILITY.md")
    report.faults, report.faults_note = figures.read_faults(faults_path)
    if examples:
        from .examples import example_breaks

        report.example_breaks = example_breaks(examples)
    return report


def write(report: render.Report, out: Path, say) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    try:
        render.chart(report, out / "comparison.png")
        report.chart_name = "comparison.png"
    except ImportError as exc:
        say(f"[compare] no chart: {exc}")
    md = render.markdown(report)
    (out / "COMPARISON.md").write_text(md)
    (out / "COMPARISON.html").write_text(render.html_page(report))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a") as fh:
            fh.write(md.replace("![comparison](comparison.png)",
                                "(chart: comparison.png in the report artifact)") + "\n")
    return out / "COMPARISON.md"


def compare(opts: Options, say=print) -> int:
    """Run everything the options ask for, write the report; the exit status."""
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "logs").mkdir(exist_ok=True)
    started = time.monotonic()
    legs, backends = discover_legs(opts.engine)
    say(f"[compare] legs: {', '.join(legs)}")
    timings: dict[str, float] = {}
    if opts.conformance:
        for leg in legs:
            timings[f"conformance {leg}"] = run_conformance(leg, opts, say)
    examples = None
    if opts.jobs:
        t0 = time.monotonic()
        examples = _run_jobs(opts, {leg: b for leg, b in backends.items() if leg != "inline"}, say)
        timings["jobs"] = time.monotonic() - t0
    bench_path, bench_note = None, ""
    if opts.bench_results:
        bench_path = opts.bench_results
    elif opts.bench:
        t0 = time.monotonic()
        bench_path, bench_note = run_bench(opts, say)
        timings["bench smoke"] = time.monotonic() - t0
    timings["total"] = time.monotonic() - started
    report = build_report(opts, legs, backends, bench_path, bench_note, examples, timings)
    path = write(report, opts.out, say)
    for case in report.breaks:
        say(f"[compare] PARITY BREAK: {case}")
    for case in report.results.failing_everywhere():
        say(f"[compare] FAILS ON EVERY LEG: {case}")
    for leg, why in report.results.errors.items():
        say(f"[compare] {leg}: {why}")
    if not report.ok:
        for line in failure_digest(report.results):
            say(line)
    say(f"[compare] {'PASS' if report.ok else 'FAIL'}: wrote {path}, {path.with_suffix('.html')} "
        f"in {timings['total']:.0f} s")
    return 0 if report.ok else 1


def failure_digest(results, per_leg: int = 5) -> list[str]:
    """The lines that say where a failed comparison failed, printed last (a CI page often
    shows only the end of the output): each leg's counts, then the first failures of
    each leg that had any, with their first line."""
    lines = []
    for leg in results.legs:
        if leg in results.errors:
            continue
        n = results.counts(leg)
        lines.append(f"[compare] {leg}: {n['pass']} passed, {n['fail']} failed, "
                     f"{n['skip']} skipped")
    for leg in results.legs:
        failed = [(case, by_leg[leg].message) for case, by_leg in results.cases.items()
                  if leg in by_leg and by_leg[leg].status == "fail"]
        for case, message in failed[:per_leg]:
            lines.append(f"[compare] {leg} FAILED {case}: {message[:200]}")
        if len(failed) > per_leg:
            lines.append(f"[compare] {leg}: {len(failed) - per_leg} more failed "
                         f"(log: conformance-{safe(leg)}.log)")
    return lines


def _run_jobs(opts: Options, legs: dict[str, str], say) -> list[dict]:
    from .examples import run_examples

    amqp_url = os.environ.get("CELERY_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
    if opts.redis_url:
        return run_examples(legs, opts.jobs, opts.redis_url, amqp_url, opts.out / "logs", say)
    from service.embedded_redis import EmbeddedRedis

    with EmbeddedRedis() as server:
        return run_examples(legs, opts.jobs, server.url, amqp_url, opts.out / "logs", say)
