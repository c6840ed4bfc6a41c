"""Turns the figures into BENCHMARKS.md, a chart, and the smoke check."""

from __future__ import annotations

from pathlib import Path

from bench.subjects import ENGINES, SETTINGS, SLEEP_SECONDS, readable_argv

__all__ = ["markdown", "chart", "missing_figures", "targets"]

NOT_MEASURED = "not measured"
DEFAULT_SETTING = {"celery": "prefork-c2", "rq": "pool-simple-c2", "dramatiq": "procs-c2"}


# What the ledger's commands per job buy, as adapters/lua/ writes them on a no-op job
# that succeeds at once. Keep in step with the scripts there.
LEDGER_ACCOUNT = [
    "",
    "Where Switchyard's own commands go, per no-op job (the scripts in `adapters/lua/`): "
    "15 where the record and the message commit in one MULTI/EXEC (RQ; Celery when its "
    "broker is the ledger's own Redis, as in this bench), 17 on the guarded route (Celery "
    "on RabbitMQ or on another Redis).",
    "",
    "| step | commands | what they buy |",
    "|---|---|---|",
    "| create | EVALSHA, HSET, ZADD, HINCRBY, and on the guarded route a second ZADD | the "
    "job record with its history (one HSET), the tenant's index for `GET /v1/jobs`, the "
    "`enqueued` counter; on the guarded route the dispatch guard |",
    "| after publish (guarded route) | ZREM | lifts the dispatch guard. On the "
    "one-transaction route there is no guard to set or lift |",
    "| claim | EVALSHA, HMGET, HSET, ZADD | state and token check, `started`, the crash-recovery "
    "lease |",
    "| finish | EVALSHA, HMGET, ZREM, HINCRBY, HINCRBYFLOAT, HSET, EXPIRE | token check, lease "
    "released, the finished/duration counters, the result, its TTL |",
    "",
    "On RQ these come on top of RQ's own: its job hash and queue push in the create's "
    "MULTI/EXEC, and one script that pops the job, notes it in hand, checks `rq suspend` "
    "and takes the job hash. Switchyard's workers skip the RQ bookkeeping the ledger "
    "already does (README, \"Engine configuration\"), so the total is well under raw RQ's.",
    "",
    "Raw Celery's result backend costs 7 commands a job (17 against 10 without one), so "
    "\"raw + 4\" leaves the ledger 11. A record that can be claimed exactly once needs a "
    "compare-and-set, which Redis offers only as a script (EVALSHA, a read, a write); so do "
    "the claim and the finish: 6. With the create (a script or a write, plus the listing "
    "index: 2), the lease (set and lifted: 2) and the result's TTL (1), the floor is 11 before "
    "the dispatch guard (2, the \"never a half-written job\" guarantee, which Celery's "
    "broker cannot share a transaction with) and the metrics counters (3). On Celery the +4 "
    "target in commands counted inside scripts is therefore out of reach for a ledger with "
    "these guarantees; in client round trips it is met.",
]


def _fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def _cell(s: dict | None, digits: int = 1) -> str:
    """``median [min–max]``."""
    if not s:
        return NOT_MEASURED
    if s["min"] == s["max"]:
        return _fmt(s["median"], digits)
    return f"{_fmt(s['median'], digits)} [{_fmt(s['min'], digits)}–{_fmt(s['max'], digits)}]"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _row(results: dict, engine: str, setting: str, flavour: str) -> dict | None:
    for row in results.get("workers", []):
        if (row["engine"], row["setting"], row["flavour"]) == (engine, setting, flavour):
            return row
    return None


def _median(row: dict | None, *path: str) -> float | None:
    value = row
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value["median"] if isinstance(value, dict) else value


def _enqueue(results: dict, engine: str, flavour: str, method: str) -> dict | None:
    for row in results.get("enqueue", []):
        if (row["engine"], row["flavour"], row["method"]) == (engine, flavour, method):
            return row
    return None


def targets(results: dict) -> list[dict]:
    """Each target of the issue: what was measured against it, and whether it holds."""
    out = []
    worst = {}
    for setting in SETTINGS:
        for kind in ("noop", "sleep"):
            r = _ratio(_median(_row(results, setting.engine, setting.key, "switchyard"),
                               f"throughput_{kind}"),
                       _median(_row(results, setting.engine, setting.key, "raw"),
                               f"throughput_{kind}"))
            if r is not None and (setting.engine not in worst or r < worst[setting.engine][0]):
                worst[setting.engine] = (r, f"{setting.key} {kind}")
    for engine in ENGINES:
        if engine in worst:
            r, where = worst[engine]
            out.append({"target": f"Switchyard throughput >= 0.90x raw {engine}, same settings",
                        "measured": f"lowest ratio {r:.2f}x ({where})", "met": r >= 0.90})
        else:
            out.append({"target": f"Switchyard throughput >= 0.90x raw {engine}, same settings",
                        "measured": NOT_MEASURED, "met": None})

    for kind in ("noop", "sleep"):
        sy = _median(_row(results, "rq", "simple-c1", "switchyard"), f"throughput_{kind}")
        stock = _median(_row(results, "rq", "fork-c1", "raw"), f"throughput_{kind}")
        r = _ratio(sy, stock)
        target = {"target": f"Switchyard's default RQ worker >= 3x stock `rq worker` "
                            f"({'no-op' if kind == 'noop' else '50 ms'} jobs, one process each)",
                  "measured": f"{r:.2f}x ({_fmt(sy)} vs {_fmt(stock)} jobs/s)" if r else NOT_MEASURED,
                  "met": (r >= 3.0) if r else None}
        if kind == "sleep" and r:
            # One process runs one job at a time: a job that sleeps SLEEP_SECONDS bounds it
            # at 1 / SLEEP_SECONDS jobs/s, whatever the worker does between jobs.
            ceiling = 1 / SLEEP_SECONDS
            if 3 * stock > ceiling:
                target["measured"] += (
                    f"; out of reach with one process: a {SLEEP_SECONDS * 1000:g} ms job caps any "
                    f"one-process worker at {_fmt(ceiling)} jobs/s = {ceiling / stock:.2f}x stock, "
                    f"and this worker reaches {100 * sy / ceiling:.0f}% of that cap")
                target["out_of_reach"] = True
        out.append(target)

    http = results.get("http", {})
    for engine in ENGINES:
        raw_p50 = _median(_row(results, engine, DEFAULT_SETTING[engine], "raw"), "latency", "p50")
        rest = http.get("engines", {}).get(engine, {})
        # POST -> succeeded as a client sees it: one POST ?wait= (answered as the job
        # ends); polling GETs after a plain POST, the other way, is shown beside it
        rest_p50 = _median(rest, "latency_wait", "p50")
        polled_p50 = _median(rest, "latency", "p50")
        r = _ratio(rest_p50, raw_p50)
        target = {"target": f"REST latency p50 <= 1.5x raw {engine} in-process p50 "
                            "(POST ?wait= -> succeeded)",
                  "measured": (f"{r:.2f}x ({_fmt(rest_p50, 2)} vs {_fmt(raw_p50, 2)} ms)" if r
                               else _http_reason(http) if rest_p50 is None
                               else f"{NOT_MEASURED}: no raw in-process latency in this run"),
                  "met": (r <= 1.5) if r else None}
        if r and polled_p50:
            target["measured"] += (f"; a plain POST, then GETs until succeeded: "
                                   f"{_fmt(polled_p50, 2)} ms ({_ratio(polled_p50, raw_p50):.2f}x)")
        floor = _median(rest, "post_get_p50")
        if r and r > 1.5 and floor:
            # A client sees a job succeed no sooner than one POST and one GET after it
            # asks, even for a job that takes no time at all.
            target["measured"] += (f"; in the same requests, the POST and the GET that saw "
                                   f"the result took {_fmt(floor, 2)} ms (p50) by themselves")
            if floor > 1.5 * raw_p50:
                # Not a proof: both sides move with the machine's load from run to run.
                target["measured"] += f", above the {_fmt(1.5 * raw_p50, 2)} ms target"
        out.append(target)

    for engine in ENGINES:
        setting = DEFAULT_SETTING[engine]
        raw = _row(results, engine, setting, "raw")
        sy = _row(results, engine, setting, "switchyard")
        for kind, label in (("total", "incl. commands inside scripts"),
                            ("client", "client commands")):
            a, b = _median(sy, "commands", kind), _median(raw, "commands", kind)
            if a is None or b is None:
                out.append({"target": f"Redis commands/job <= raw {engine} + 4 ({label})",
                            "measured": NOT_MEASURED, "met": None})
                continue
            out.append({"target": f"Redis commands/job <= raw {engine} + 4 ({label})",
                        "measured": f"{a:.1f} vs {b:.1f} ({a - b:+.1f})", "met": a <= b + 4.05})
            if engine == "celery" and kind == "total" and a > b + 4.05:
                out[-1]["measured"] += "; see \"Where Switchyard's own commands go\" below"
        if engine == "celery":
            bare = _row(results, engine, setting, "raw-bare")
            for kind, label in (("total", "incl. commands inside scripts"),
                                ("client", "client commands")):
                a, b = _median(sy, "commands", kind), _median(bare, "commands", kind)
                if a is not None and b is not None:
                    out.append({"target": f"... and <= raw Celery without a result backend + 4 "
                                          f"({label})",
                                "measured": f"{a:.1f} vs {b:.1f} ({a - b:+.1f})",
                                "met": a <= b + 4.05})

    for engine in ENGINES:
        rest = http.get("engines", {}).get(engine, {})
        r = _ratio(_median(rest, "batch"), _median(rest, "single"))
        out.append({"target": f"HTTP batch enqueue >= 3x single-call HTTP enqueue ({engine})",
                    "measured": (f"{r:.2f}x" if r
                                 else _http_reason(http)),
                    "met": (r >= 3.0) if r else None})
    return out + ahead_targets(results)


def _worst(results: dict, engine: str, value, highest: bool = True):
    """``(value, setting key)`` of the engine's setting where ``value(setting)`` is worst
    (highest, or lowest), over the settings measured; None if none was."""
    seen = [(v, st.key) for st in SETTINGS if st.engine == engine
            for v in [value(st)] if v is not None]
    if not seen:
        return None
    return max(seen) if highest else min(seen)


def ahead_targets(results: dict) -> list[dict]:
    """The targets of "ahead of the raw engines everywhere": no-op throughput, enqueue
    rates, client commands per job, idle commands, memory, and raw Dramatiq's default."""
    out = []

    def add(target, worst, fmt, met):
        out.append({"target": target, "measured": NOT_MEASURED if worst is None else
                    fmt(*worst), "met": None if worst is None else met(worst[0])})

    add("Celery no-op throughput >= 1.0x raw on every worker setting",
        _worst(results, "celery", lambda st: _ratio_of(results, st, "throughput_noop"), False),
        lambda r, key: f"lowest {r:.2f}x ({key})", lambda r: r >= 1.0)
    for engine, method in (("celery", "single"), ("rq", "single"), ("rq", "batch")):
        sy, raw = _enqueue(results, engine, "switchyard", method), _enqueue(results, engine, "raw",
                                                                            method)
        r = _ratio(sy and sy["median"], raw and raw["median"])
        add(f"in-process {method} enqueue >= 1.0x raw ({engine})",
            None if r is None else (r, ""),
            lambda r, _, sy=sy, raw=raw: f"{r:.2f}x ({_fmt(sy['median'], 0)} vs "
                                         f"{_fmt(raw['median'], 0)} jobs/s)", lambda r: r >= 1.0)
    for engine in ENGINES:
        add(f"client Redis commands per no-op job <= 8 on every {engine} worker setting",
            _worst(results, engine, lambda st: _median(
                _row(results, st.engine, st.key, "switchyard"), "commands", "client")),
            lambda v, key: f"highest {v:.1f} ({key})", lambda v: v <= 8.05)
    def idle(st, flavour="switchyard"):
        v = _median(_row(results, st.engine, st.key, flavour), "commands", "idle_total_per_s")
        return None if v is None else v / st.processes
    settings = {st.key: st for st in SETTINGS}
    for engine in ENGINES:
        add(f"idle Redis commands/s per {engine} worker slot (process or thread) <= 2",
            _worst(results, engine, idle),
            lambda v, key: (f"highest {v:.1f}/s ({key}; raw {_fmt(idle(settings[key], 'raw'))}/s)"),
            lambda v: v <= 2.05)

    def over_raw(st, measure="peak_rss_mib"):
        raw = _row(results, st.engine, st.key, "raw")
        sy = _row(results, st.engine, st.key, "switchyard")
        if raw and sy and raw.get(measure) and sy.get(measure):
            return sy[measure] - raw[measure]
        return None
    for engine in ENGINES:
        by_pss = _worst(results, engine, lambda st: over_raw(st, "peak_pss_mib"))
        add(f"peak {engine} worker memory <= raw + 15 MiB on every setting (by PSS, what "
            f"the tree costs; by RSS sums where PSS is not known)",
            _worst(results, engine, over_raw),
            lambda d, key, by_pss=by_pss: f"largest {d:+.0f} MiB by RSS ({key})" + (
                f", {by_pss[0]:+.0f} MiB by PSS ({by_pss[1]})" if by_pss else "") + (
                "; beside RQ's fork-per-job worker the maintenance loop is a process of its "
                "own (a thread there would be forked into each work horse, holding whatever "
                "lock it held): its RSS counts every page it shares with the worker, its PSS "
                "only its share" if d > 15.5 and key.startswith("fork") else ""),
            lambda d, by_pss=by_pss: (by_pss[0] if by_pss is not None else d) <= 15.5)
    dramatiq = _median(_row(results, "dramatiq", DEFAULT_SETTING["dramatiq"], "raw"),
                       "throughput_noop")
    for engine in ENGINES:
        sy = _median(_row(results, engine, DEFAULT_SETTING[engine], "switchyard"),
                     "throughput_noop")
        r = _ratio(sy, dramatiq)
        add(f"Switchyard's default {engine} worker >= raw Dramatiq's default "
            f"({DEFAULT_SETTING['dramatiq']}), no-op",
            None if r is None else (r, ""),
            lambda r, _, sy=sy: f"{r:.2f}x ({_fmt(sy)} vs {_fmt(dramatiq)} jobs/s)",
            lambda r: r >= 1.0)
    return out


def _mib(value: float | None) -> str:
    return NOT_MEASURED if value is None else f"{value:.0f}"


def _http_reason(http: dict) -> str:
    status = http.get("status") or f"{NOT_MEASURED}: no REST service"
    return status if status.startswith(NOT_MEASURED) else f"{NOT_MEASURED}: {status}"


def _met(value: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "—"}[value]


def _ratio_of(results: dict, setting, key: str, *path: str) -> float | None:
    return _ratio(_median(_row(results, setting.engine, setting.key, "switchyard"), key, *path),
                  _median(_row(results, setting.engine, setting.key, "raw"), key, *path))


def comparison(results: dict, earlier: list[tuple[str, dict]]) -> list[str]:
    """Key figures of earlier runs beside this run's, as Switchyard/raw ratios where the
    machine's load would blur absolute figures. ``earlier``: ``(what it was, results)``,
    oldest first."""
    def cell(value, digits=2, suffix="x"):
        return "—" if value is None else f"{value:.{digits}f}{suffix}"

    def row(label, get, digits=2, suffix="x"):
        cells = [cell(get(res), digits, suffix) for _, res in earlier] + \
            [cell(get(results), digits, suffix)]
        return f"| {label} | " + " | ".join(cells) + " |"

    lines = ["", "## Against earlier runs", ""]
    for what, res in earlier:
        m = res.get("machine", {})
        lines.append(f"- {what}: the run of {m.get('date', '?')} on commit "
                     f"`{m.get('commit', '?')}`.")
    lines += ["", "Ratios are Switchyard / raw from the same run; commands are per job.", "",
              "| figure | " + " | ".join(w.split(" (")[0] for w, _ in earlier) + " | this run |",
              "|---|" + "---|" * (len(earlier) + 1)]
    for setting in SETTINGS:
        for kind, job in (("noop", "no-op"), ("sleep", "50 ms")):
            lines.append(row(f"throughput {setting.engine} {setting.key}, {job}",
                             lambda res: _ratio_of(res, setting, f"throughput_{kind}")))
    for setting in SETTINGS:
        lines.append(row(f"latency p50 {setting.engine} {setting.key}",
                         lambda res: _ratio_of(res, setting, "latency", "p50")))
    for setting in SETTINGS:
        for kind in ("total", "client"):
            lines.append(row(
                f"Redis commands/job {setting.engine} {setting.key}, {kind}",
                lambda res: _median(_row(res, setting.engine, setting.key, "switchyard"),
                                    "commands", kind), 1, ""))
    for engine in ENGINES:
        for method in ("single", "batch"):
            def ratio(res):
                sy, raw = _enqueue(res, engine, "switchyard", method), _enqueue(res, engine, "raw", method)
                return _ratio(sy and sy["median"], raw and raw["median"])
            lines.append(row(f"enqueue {engine} {method}, in-process", ratio))
    for engine in ENGINES:
        def http_ratio(res):
            e = res.get("http", {}).get("engines", {}).get(engine, {})
            return _ratio(_median(e, "batch"), _median(e, "single"))
        lines.append(row(f"HTTP batch / single, {engine}", http_ratio))
    return lines


def markdown(results: dict, command: str, chart_name: str | None,
             earlier: list[tuple[str, dict]] | None = None) -> str:
    m = results["machine"]
    plan = results["plan"]
    lines = [
        "# Benchmarks: Switchyard beside raw Celery and raw RQ",
        "",
        f"Run of {m['date']} on commit `{m['commit']}`, {plan['runs']} run(s) of every figure "
        f"({plan['name']} plan, {m['seconds']:.0f} s in all). Every cell is the **median "
        "[min–max]** of the runs; ratios are of medians from this same run.",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {m['os']}, "
        f"Linux {m['kernel']}; Python {m['python']}; redis-server {m['redis_server']} (private, "
        "loopback, no persistence); " + ", ".join(f"{k} {v}" for k, v in m["packages"].items())
        + ".",
        "",
        f"Load average (1, 5, 15 min) before: {', '.join(map(str, m['load_before']))}; after: "
        f"{', '.join(map(str, m.get('load_after', [])))}. Other work shares this machine, so "
        "figures move from run to run: read the ranges.",
        "",
    ]
    if chart_name:
        lines += [f"![Switchyard beside the raw engines]({chart_name})", ""]

    lines += ["## Targets", "", "| target | measured | |", "|---|---|---|"]
    for t in targets(results):
        verdict = "missed: out of reach" if t.get("out_of_reach") else _met(t["met"])
        lines.append(f"| {t['target']} | {t['measured']} | {verdict} |")

    lines += ["", "## Worker throughput (jobs/s)", "",
              "Pre-filled queue, worker paused (SIGSTOP) while it fills; timed from its resume "
              "(SIGCONT) until the last job is seen finished.", "",
              "| engine | worker settings | job | raw | Switchyard | Switchyard / raw |",
              "|---|---|---|---|---|---|"]
    for setting in SETTINGS:
        raw = _row(results, setting.engine, setting.key, "raw")
        sy = _row(results, setting.engine, setting.key, "switchyard")
        if not raw and not sy:
            continue
        label = setting.label + (" (Switchyard's default)" if setting.switchyard_default else "")
        for kind, job in (("noop", "no-op"), ("sleep", "50 ms sleep")):
            r = _ratio(_median(sy, f"throughput_{kind}"), _median(raw, f"throughput_{kind}"))
            lines.append(f"| {setting.engine} | {label} | {job} | "
                         f"{_cell((raw or {}).get(f'throughput_{kind}'))} | "
                         f"{_cell((sy or {}).get(f'throughput_{kind}'))} | "
                         f"{f'{r:.2f}x' if r else '—'} |")

    lines += ["", "## Latency: enqueue to result visible (ms)", "",
              "One job at a time on an idle worker, in-process: from the enqueue call until a "
              "reader polling every 0.5 ms sees the result (raw: the engine's result/status; "
              "Switchyard: `adapter.get()` says `succeeded`).", "",
              "| engine | worker settings | raw p50 | raw p95 | raw p99 | Switchyard p50 | "
              "Switchyard p95 | Switchyard p99 | p50 ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for setting in SETTINGS:
        raw = _row(results, setting.engine, setting.key, "raw")
        sy = _row(results, setting.engine, setting.key, "switchyard")
        if not raw or "latency" not in raw:
            continue
        r = _ratio(_median(sy, "latency", "p50"), _median(raw, "latency", "p50"))
        lines.append(f"| {setting.engine} | {setting.label} | "
                     + " | ".join(_cell(raw["latency"][p], 2) for p in ("p50", "p95", "p99"))
                     + " | " + " | ".join(_cell(sy["latency"][p], 2) for p in ("p50", "p95", "p99"))
                     + f" | {f'{r:.2f}x' if r else '—'} |")

    lines += ["", "## Enqueue rate, in-process (jobs/s)", "",
              "No worker running. Single: one call per job (`task.delay`-style `apply_async`, "
              "`queue.enqueue`, `actor.send`, `adapter.enqueue`). Batch: "
              f"{plan['batch_size']} jobs per call (Celery: a `group`, RQ: `enqueue_many`, "
              "Dramatiq: a `group` on the bench's broker, Switchyard: `enqueue_many`). Every "
              "job timed is counted afterwards where its worker would take it.", "",
              "| engine | call | raw | raw, no result backend | Switchyard | Switchyard / raw |",
              "|---|---|---|---|---|---|"]
    for engine in ENGINES:
        for method in ("single", "batch"):
            raw = _enqueue(results, engine, "raw", method)
            bare = _enqueue(results, engine, "raw-bare", method)
            sy = _enqueue(results, engine, "switchyard", method)
            r = _ratio(sy and sy["median"], raw and raw["median"])
            lines.append(f"| {engine} | {method} | {_cell(raw, 0)} | "
                         f"{_cell(bare, 0) if engine == 'celery' else '—'} | {_cell(sy, 0)} | "
                         f"{f'{r:.2f}x' if r else '—'} |")

    lines += ["", "## Over HTTP (gunicorn, 2 workers)", ""]
    http = results.get("http", {})
    if http.get("engines"):
        lines += [f"{http.get('note', '')}", "",
                  "| engine | single POST /v1/jobs (jobs/s) | POST /v1/jobs/batch (jobs/s) | "
                  "batch / single | POST ?wait= → succeeded p50 | p95 | p99 (ms) | "
                  "POST, then GETs → succeeded p50 | p95 | p99 (ms) | non-2xx answers |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for engine, e in http["engines"].items():
            if "error" in e:
                lines.append(f"| {engine} | {NOT_MEASURED}: {e['error']} | | | | | | | | | |")
                continue
            r = _ratio(_median(e, "batch"), _median(e, "single"))
            waited = e.get("latency_wait", {})
            lines.append(f"| {engine} | {_cell(e['single'], 0)} | {_cell(e['batch'], 0)} | "
                         f"{f'{r:.2f}x' if r else '—'} | "
                         + " | ".join(_cell(waited[p], 2) if p in waited else "—"
                                      for p in ("p50", "p95", "p99")) + " | "
                         + " | ".join(_cell(e["latency"][p], 2) for p in ("p50", "p95", "p99"))
                         + f" | {e.get('non_2xx', 0)} |")
    else:
        lines.append(f"{_http_reason(http)}.")

    lines += ["", "## Redis commands per job", "",
              "A no-op job's whole lifecycle: enqueue, run, result stored. From `INFO "
              "commandstats` deltas over the run, less the worker's idle rate over that time "
              "and less the bench's own polling, divided by the jobs. **Total** counts every "
              "command Redis ran, including those a Lua script ran (Redis counts those too); "
              "**client** counts what clients sent (a pipelined command counts once, a script "
              "counts as its one EVALSHA), i.e. the total less the script-internal commands seen "
              "by MONITOR. The idle rate (heartbeats, maintenance ticks, blocking-pop timeouts) "
              f"is shown on its own, per second, over {_fmt(plan['idle_seconds'])} s of each run "
              "(an idle maintenance loop sleeps up to 10 s, so a shorter window counts its "
              "tick or not by chance).", "",
              "| engine | worker settings | raw total | Switchyard total | diff | raw client | "
              "Switchyard client | diff | enqueue side raw / Switchyard (client) | "
              "idle commands/s raw / Switchyard |", "|---|---|---|---|---|---|---|---|---|---|"]
    for setting in SETTINGS:
        raw = _row(results, setting.engine, setting.key, "raw")
        sy = _row(results, setting.engine, setting.key, "switchyard")
        if not raw or "commands" not in raw:
            continue
        variants = [("raw", raw)]
        bare = _row(results, setting.engine, setting.key, "raw-bare")
        if bare and "commands" in bare:
            variants.append(("raw, no result backend", bare))
        for name, base in variants:
            dt = _median(sy, "commands", "total") - _median(base, "commands", "total")
            dc = _median(sy, "commands", "client") - _median(base, "commands", "client")
            label = setting.label if name == "raw" else f"{setting.label}, vs {name}"
            lines.append(
                f"| {setting.engine} | {label} | {_cell(base['commands']['total'])} | "
                f"{_cell(sy['commands']['total'])} | {dt:+.1f} | "
                f"{_cell(base['commands']['client'])} | {_cell(sy['commands']['client'])} | "
                f"{dc:+.1f} | {_fmt(_median(base, 'commands', 'enqueue_client'))} / "
                f"{_fmt(_median(sy, 'commands', 'enqueue_client'))} | "
                f"{_fmt(_median(base, 'commands', 'idle_total_per_s'))} / "
                f"{_fmt(_median(sy, 'commands', 'idle_total_per_s'))} |")
    lines += LEDGER_ACCOUNT
    lines += ["", "Per command, per job (median run; `bench/` JSON has every run):", ""]
    for engine in ENGINES:
        for flavour in ("raw", "raw-bare", "switchyard"):
            row = _row(results, engine, DEFAULT_SETTING[engine], flavour)
            if row and "commands" in row:
                c = row["commands"]
                lines.append(f"- {engine} {flavour}: " + ", ".join(
                    f"{k} {v:g}" for k, v in c["by_command"].items())
                    + (" — inside scripts: " + ", ".join(
                        f"{k} {v:g}" for k, v in c["by_command_in_scripts"].items())
                       if c["by_command_in_scripts"] else ""))

    lines += ["", "## Peak worker memory (MiB)", "",
              "The largest sum over the worker's whole process tree (main process, pool "
              "children, work horses, Switchyard's maintenance process where it has one), "
              "sampled every 0.1 s over all its runs. **RSS**: copy-on-write pages shared by "
              "forked processes count once per process. **PSS** (`/proc/<pid>/smaps_rollup`): "
              "a shared page counts once in all, split among the processes sharing it, so "
              "the sum is what the tree costs the machine.", "",
              "| engine | worker settings | raw RSS | Switchyard RSS | raw PSS | Switchyard PSS |",
              "|---|---|---|---|---|---|"]
    for setting in SETTINGS:
        raw = _row(results, setting.engine, setting.key, "raw")
        sy = _row(results, setting.engine, setting.key, "switchyard")
        if raw and sy:
            lines.append(f"| {setting.engine} | {setting.label} | {raw['peak_rss_mib']:.0f} | "
                         f"{sy['peak_rss_mib']:.0f} | {_mib(raw.get('peak_pss_mib'))} | "
                         f"{_mib(sy.get('peak_pss_mib'))} |")

    lines += ["", "## What runs", ""]
    for setting in SETTINGS:
        for flavour in ("raw", "switchyard"):
            row = _row(results, setting.engine, setting.key, flavour)
            if row and row.get("argv"):
                argv = " ".join(readable_argv(row["argv"]))  # older results hold the raw words
                lines.append(f"- {setting.engine} {setting.key} {flavour}: `{argv}`")
    lines += ["",
              "Raw Celery is `bench/raw_celery.py`: the same JSON-only, late-ack, prefetch-1, "
              "Redis-priority settings as Switchyard's Celery app, plus Celery's Redis result "
              "backend so results can be read back (its callers subscribe to each result's "
              "channel, as Celery does). Raw RQ is `rq worker` / `rq worker-pool` with the JSON "
              "serializer and RQ's default result keeping. Raw Dramatiq is `bench/raw_dramatiq.py` "
              "under Dramatiq's own CLI (`dramatiq -p N -t 1`): its RedisBroker with its default "
              "middleware and a Redis result backend, one message in hand per queue as Switchyard's "
              "Dramatiq worker has, and a 100 ms idle poll (Switchyard's consumers wait for a "
              "wake-up in XREAD instead). Each subject has its own database "
              "on one private redis-server; the raw engine and Switchyard alternate run by run, "
              "the one not measured paused with SIGSTOP.", ""]
    if earlier:
        lines += comparison(results, earlier) + [""]
    return "\n".join(lines)




def chart(results: dict, path: Path) -> None:
    """A PNG of throughput, latency, commands and enqueue rate, raw beside Switchyard."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    keys = [s for s in SETTINGS if _row(results, s.engine, s.key, "raw")]
    names = [f"{s.engine}\n{s.key}" for s in keys]

    def bars(ax, getter, title, unit, log=False):
        xs = range(len(keys))
        for offset, flavour, colour in ((-0.2, "raw", "#8c8c8c"), (0.2, "switchyard", "#1f77b4")):
            meds, lows, highs = [], [], []
            for s in keys:
                v = getter(_row(results, s.engine, s.key, flavour))
                meds.append(v["median"] if v else 0)
                lows.append(v["median"] - v["min"] if v else 0)
                highs.append(v["max"] - v["median"] if v else 0)
            ax.bar([x + offset for x in xs], meds, 0.4, yerr=[lows, highs], capsize=2,
                   label=flavour, color=colour)
        ax.set_xticks(list(xs), names, fontsize=7)
        ax.set_title(title)
        ax.set_ylabel(unit)
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=8)

    bars(axes[0][0], lambda r: r and r.get("throughput_noop"), "No-op job throughput", "jobs/s")
    bars(axes[0][1], lambda r: r and r.get("throughput_sleep"), "50 ms job throughput", "jobs/s")
    bars(axes[1][0], lambda r: r and r.get("latency", {}).get("p50"),
         "Latency p50, enqueue to result visible", "ms")
    bars(axes[1][1], lambda r: r and r.get("commands", {}).get("total"),
         "Redis commands per job (incl. inside scripts)", "commands")
    fig.suptitle(f"Switchyard beside raw Celery and RQ — {results['machine']['date']}, "
                 f"median of {results['plan']['runs']} run(s), bars span min–max")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def missing_figures(results: dict, rest_expected: bool) -> list[str]:
    """Every figure the table should hold but does not (the smoke check)."""
    missing = []
    for setting in SETTINGS:
        for flavour in ("raw", "switchyard"):
            row = _row(results, setting.engine, setting.key, flavour)
            where = f"{setting.engine} {setting.key} {flavour}"
            if not row:
                missing.append(f"{where}: no worker figures")
                continue
            for path in (("throughput_noop",), ("throughput_sleep",), ("latency", "p50"),
                         ("latency", "p95"), ("latency", "p99"), ("commands", "total"),
                         ("commands", "client"), ("commands", "idle_total_per_s")):
                if _median(row, *path) is None:
                    missing.append(f"{where}: {'.'.join(path)}")
            if not row.get("peak_rss_mib"):
                missing.append(f"{where}: peak RSS")
    for engine in ENGINES:
        for flavour in ("raw", "switchyard"):
            for method in ("single", "batch"):
                if not _enqueue(results, engine, flavour, method):
                    missing.append(f"enqueue {engine} {flavour} {method}")
    http = results.get("http", {})
    if rest_expected:
        for engine in ENGINES:
            e = http.get("engines", {}).get(engine, {})
            for path in (("single",), ("batch",), ("latency", "p50"), ("latency_wait", "p50")):
                if _median(e, *path) is None:
                    missing.append(f"http {engine}: {'.'.join(path)} "
                                   f"({e.get('error', http.get('status', 'missing'))})")
    elif not str(http.get("status", "")).startswith(NOT_MEASURED):
        missing.append("http: no status")
    return missing
