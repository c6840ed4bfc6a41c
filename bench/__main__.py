"""``python -m bench [--smoke]``: run the comparison, write the table and the chart."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import redis

from bench import report, rest, run, sections
from bench.meta import machine
from bench.plan import FULL, SMOKE
from bench.subjects import ROOT
from service.embedded_redis import EmbeddedRedis


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="small and quick, one run each")
    parser.add_argument("--out", type=Path, default=None,
                        help="the Markdown table (default BENCHMARKS.md; smoke: var/bench/)")
    parser.add_argument("--only", default=None, help="only worker settings whose name contains this")
    parser.add_argument("--skip", default="", help="comma list of phases to skip: workers,enqueue,http")
    parser.add_argument("--baseline", type=Path, default=ROOT / "bench" / "baseline.json",
                        help="the first results file to compare with (default bench/baseline.json)")
    parser.add_argument("--previous", type=Path, default=ROOT / "bench" / "results.json",
                        help="the previous run's results, read before this run replaces them "
                             "(default bench/results.json)")
    parser.add_argument("--rest-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the REST service (repeatable)")
    args = parser.parse_args(argv)
    rest_env = dict(item.split("=", 1) for item in args.rest_env)

    plan = SMOKE if args.smoke else FULL
    earlier = []
    for what, path in (("baseline (before any hot-path change)", args.baseline),
                       ("previous (the run this one replaces)", args.previous)):
        if not args.smoke and path.exists():
            earlier.append((what, json.loads(path.read_text())))
    out = args.out or (ROOT / "var" / "bench" / "BENCHMARKS.md" if args.smoke
                       else ROOT / "BENCHMARKS.md")
    skip = {s for s in args.skip.split(",") if s}
    log_dir = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    started = time.monotonic()
    results: dict = {"plan": plan.__dict__}
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        # Raw Celery's callers subscribe to every result; nobody reads them here, so the
        # private server must not cut that connection for a full buffer.
        client.config_set("client-output-buffer-limit", "pubsub 0 0 0")
        results["machine"] = machine(client.info("server")["redis_version"])
        client.close()
        print(f"[bench] private redis-server on 127.0.0.1:{server.port}; worker logs in {log_dir}",
              flush=True)
        if "workers" not in skip:
            results["workers"] = run.bench_workers(server.url, server.port, plan, log_dir, args.only)
        if "enqueue" not in skip:
            results["enqueue"] = run.bench_enqueue(server.url, plan)
        if "http" not in skip:
            results["http"] = rest.bench_http(server.url, plan, log_dir, rest_env)
    results["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["machine"]["seconds"] = round(time.monotonic() - started, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    data_path = out.parent / "bench" / "results.json" if out.name == "BENCHMARKS.md" and \
        out.parent == ROOT else out.with_suffix(".json")
    chart_path = data_path.parent / "benchmarks.png"
    data_path.parent.mkdir(parents=True, exist_ok=True)
    data_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    given = list(sys.argv[1:] if argv is None else argv)
    command = ("python -m bench " + " ".join(given) if set(given) - {"--smoke"}
               else "make bench-smoke" if args.smoke else "make bench")
    try:
        report.chart(results, chart_path)
        chart_name = os.path.relpath(chart_path, out.parent)
    except ImportError as exc:
        print(f"[bench] no chart: {exc}")
        chart_name = None
    # the sections other benches wrote (between their markers) stay
    old = out.read_text() if out.exists() else ""
    out.write_text(sections.carry(old, report.markdown(results, command, chart_name, earlier)))
    print(f"[bench] wrote {out}, {chart_path} and {data_path} in {results['machine']['seconds']:.0f} s")
    for target in report.targets(results):
        print(f"[bench] target {'MET   ' if target['met'] else 'MISSED' if target['met'] is False else '-     '} "
              f"{target['target']}: {target['measured']}")
    if args.smoke:
        missing = report.missing_figures(results, rest_expected=rest.rest_status() is None)
        skipped_ok = bool(skip or args.only)
        if missing and not skipped_ok:
            print("[bench] smoke: figures missing:\n  " + "\n  ".join(missing), file=sys.stderr)
            return 1
        print("[bench] smoke: every figure was produced" if not missing
              else f"[bench] smoke: {len(missing)} figure(s) skipped on request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
