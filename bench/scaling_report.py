"""Turns the figures of ``python -m bench.scaling`` into SCALING.md."""

from __future__ import annotations

__all__ = ["markdown", "primary_capacity", "cluster_section"]


def _cell(s: dict | None, digits: int = 1) -> str:
    if not s:
        return "not measured"
    if len(s.get("runs", [])) > 1:
        return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}–{s['max']:.{digits}f}]"
    return f"{s['median']:.{digits}f}"


def primary_capacity(row: dict, ceiling: dict) -> dict | None:
    """Jobs/s one primary could carry if it did nothing else: each client command costs
    1/client_per_s of its time, each command run inside a script 1/in_script_per_s.
    ``floor`` charges every command as a client command (the pessimistic bound)."""
    if "client_per_s" not in ceiling:
        return None
    client = row["commands"]["client"]["median"]
    scripted = row["commands"]["in_scripts"]["median"]
    seconds = client / ceiling["client_per_s"] + scripted / ceiling["in_script_per_s"]
    return {"estimate": 1 / seconds,
            "floor": ceiling["client_per_s"] / row["commands"]["total"]["median"]}


def markdown(results: dict, command: str) -> str:
    m = results["machine"]
    where = results["where"]
    ceiling = results["ceiling"]
    runs = results["runs"]
    lines = [
        "# Scaling: how far one Redis carries Switchyard",
        "",
        f"Written by `{command}` on {m['date']}, commit `{m['commit']}` ({results['plan']} plan: "
        f"{runs} run(s) of every figure, median [min–max] where there are several; "
        f"{m['seconds']:.0f} s in all). No figure here is typed in.",
        "",
        f"Machine: {m['cpu']}, **{m['cores']} cores**, {m['memory_gib']} GiB; {m['os']}; "
        f"Python {m['python']}; redis-server {m['redis_server']}. Load average before "
        f"{', '.join(map(str, m['load_before']))}, after {', '.join(map(str, m['load_after']))}: "
        "other work shares this machine, so figures move from run to run.",
        "",
    ]
    if where["hosts"]:
        lines += [
            "Setup: Redis on a host of its own and each worker on another "
            "(network namespaces on one bridge, `tests/netns.py`: they share only the "
            f"network), Redis at `{where['redis']}`, no persistence. Each worker is "
            "the Procfile's with its defaults (one process, `-c 1`), started as "
            "`python -m adapters.worker --backend <engine>`. All hosts share this machine's "
            f"{m['cores']} cores.",
        ]
    else:
        lines += [f"Setup: Redis and the worker on loopback ({where['why']}: no second host "
                  "could be made, so the second-host figure is not measured)."]
    lines += [
        "",
        "## One worker process",
        "",
        "Jobs pre-filled with the worker paused, timed from its resume until the last one "
        "is seen finished (as in BENCHMARKS.md). Redis commands per no-op job from "
        "`INFO commandstats` (every command, including those inside Lua scripts; MONITOR "
        "tells which ran inside a script), less the worker's idle rate.",
        "",
        "| engine | no-op jobs/s | 50 ms jobs/s | Redis commands / job | of which inside scripts "
        "| idle commands/s |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["engines"]:
        c = row["commands"]
        lines.append(f"| {row['engine']} | {_cell(row['one']['noop'])} | "
                     f"{_cell(row['one']['sleep'])} | {_cell(c['total'])} | "
                     f"{_cell(c['in_scripts'])} | {_cell(c['idle_total_per_s'])} |")
    lines += ["", "By command (one run's median; a command run inside a script counts here too):", ""]
    for row in results["engines"]:
        by = sorted(row["commands"]["by_command"].items(), key=lambda kv: -kv[1])
        lines.append(f"- {row['engine']}: " + ", ".join(f"{k.upper()} {v:g}" for k, v in by))
    lines += ["", "## What one Redis primary can carry (an estimate)", ""]
    if "client_per_s" in ceiling:
        plain = ", ".join(f"{k.upper()} {v:,.0f}/s" for k, v in ceiling["plain"].items())
        lines += [
            f"Redis's ceiling, measured on this server with `redis-benchmark` (50 clients, no "
            f"pipelining, {ceiling['requests']:,} requests each, "
            f"{'from the root namespace over the bridge' if where['hosts'] else 'on loopback'}): "
            f"{plain}; their median, **{ceiling['client_per_s']:,.0f} client "
            f"commands/s**. An EVALSHA of a script running 10 HINCRBYs: "
            f"{ceiling['evalsha_per_s']:,.0f}/s, i.e. **{ceiling['in_script_per_s']:,.0f} "
            "commands/s inside scripts**.",
            "",
            "Method: a job's client commands (each EVALSHA counted once) cost 1/(client "
            "commands/s) of the server's time each, its commands inside scripts 1/(commands/s "
            "inside scripts) each; the jobs/s a primary can carry is 1 / that sum. The floor "
            "charges every command at the client rate. It is an estimate: it assumes Redis does "
            "nothing else (no other clients, no persistence, no replication) and that the job's "
            "commands cost what the benchmark's do; redis-benchmark ran on the same "
            f"{m['cores']} cores as the server, so a Redis with a machine of its own "
            "carries more.",
            "",
            "| engine | jobs/s one primary can carry (estimate) | floor | one-worker processes "
            "of no-op jobs that is | of 50 ms jobs |",
            "|---|---|---|---|---|",
        ]
        for row in results["engines"]:
            cap = primary_capacity(row, ceiling)
            lines.append(
                f"| {row['engine']} | {cap['estimate']:,.0f} | {cap['floor']:,.0f} | "
                f"{cap['estimate'] / row['one']['noop']['median']:,.0f} | "
                f"{cap['estimate'] / row['one']['sleep']['median']:,.0f} |")
    else:
        lines.append(f"Not measured: {ceiling['why']}.")
    lines += ["", "## A second worker host", ""]
    if where["hosts"]:
        lines += [
            "The same measurement with two workers, one on each of two hosts, against the same "
            "Redis (twice the jobs per run). **This machine has "
            f"{m['cores']} cores** for both workers, Redis and the bench: a no-op job is pure "
            "CPU, so its gain shows the CPU ceiling of this machine, not what a second "
            "machine would add; a 50 ms job mostly waits, so its gain is the one a second "
            "host gives while Redis and the CPUs have room.",
            "",
            "| engine | job | one host, jobs/s | two hosts, jobs/s | gain |",
            "|---|---|---|---|---|",
        ]
        for row in results["engines"]:
            for kind, label in (("noop", "no-op"), ("sleep", "50 ms")):
                one, two = row["one"][kind], row["two"][kind]
                lines.append(f"| {row['engine']} | {label} | {_cell(one)} | {_cell(two)} | "
                             f"{two['median'] / one['median']:.2f}x |")
    else:
        lines.append(f"Not measured: {where['why']}.")
    lines += ["", "## A Redis cluster", ""]
    lines += cluster_section(results.get("cluster"), ceiling, results)
    return "\n".join(lines)


def cluster_section(row: dict | None, ceiling: dict, results: dict) -> list[str]:
    """What the ledger on a Redis Cluster was measured to do (``bench.scaling_cluster``)."""
    lines = [
        "Switchyard's ledger runs on Redis Cluster (`REDIS_URL=redis+cluster://...`, README "
        "\"Redis Cluster\"): it is cut into hash-tagged shards (`sy:{0}:` ... `sy:{15}:`), each "
        "a whole ledger in one slot, so every Lua script touches one slot of one node, and "
        "a job lives in the shard its id hashes to (the ledger picks ids so that a "
        "workflow, a tenant's idempotency keys, a rate-limited type and a retry share their "
        "keys' shard). Reads over many jobs (a tenant's listing, counts, backlogs, the "
        "maintenance tick) read every shard and merge. The engine's broker is not on the "
        "cluster (kombu's, Dramatiq's and RQ's keys span slots): Celery and Dramatiq take a "
        "broker of their own, RQ is refused.",
        "",
    ]
    if not row:
        return lines + ["Not measured here (`--cluster-engine none`).", ""]
    if "why" in row:
        return lines + [f"Not measured: {row['why']}.", ""]
    c = row["commands"]
    lines += [
        f"Measured: a local cluster of {row['nodes']} primaries (no replicas) on loopback, "
        f"{row['shards']} ledger shards, one {row['engine']} worker (`-c 1`) whose broker is "
        "a plain redis-server beside it. No-op jobs/s as above (paused, pre-filled, timed "
        f"from the resume): **{_cell(row['noop'])}** ({row['noop']['jobs']} jobs a run). "
        f"Redis commands per no-op job on the cluster, {c['jobs']} jobs enqueued one by one, "
        "from each primary's `INFO commandstats` (scripts' own commands included), less the "
        "worker's idle rate and the bench's own reads of the counters:",
        "",
        "| primary | ledger shards it owns | keys at the end | commands / job | share | "
        "idle commands/s |",
        "|---|---|---|---|---|---|",
    ]
    total = c["total"] or 1.0
    for port, node in sorted(c["per_node"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"| {port} | {node['shards']} | {node['keys']} | "
                     f"{node['commands_per_job']:.1f} | {node['commands_per_job'] / total:.0%} | "
                     f"{node['idle_per_s']:.1f} |")
    lines += ["", f"In all: {c['total']:.1f} commands per job, {c['idle_per_s']:.1f} idle "
              "commands/s for the worker (on a cluster, where one blocking wait cannot span "
              "slots, its maintenance reads every shard's next deadline once a second, one GET "
              "each, and runs the maintain script only where one has come)."]
    if "client_per_s" in ceiling:
        busiest = max(node["commands_per_job"] for node in c["per_node"].values())
        floor = ceiling["client_per_s"] / busiest if busiest > 0 else 0.0
        single = next((primary_capacity(r, ceiling)["floor"] for r in results.get("engines", [])
                       if r["engine"] == row["engine"]), None)
        lines += [
            "",
            "What it can carry, by the floor method above (every command at the client rate "
            f"of the single server, {ceiling['client_per_s']:,.0f}/s, and the busiest primary "
            f"as the bound): **{floor:,.0f} jobs/s** for the cluster's ledger"
            + (f", against {single:,.0f} jobs/s for one primary holding ledger and broker"
               if single else "")
            + ". An estimate again: all nodes share this machine's cores here, and the "
              "broker's load is elsewhere; on machines of their own each primary adds its "
              "share of the ledger's work.",
        ]
    return lines + [""]
