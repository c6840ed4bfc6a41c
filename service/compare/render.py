"""The comparison report: one list of blocks, written as Markdown and as HTML, and a chart.

Parity breaks come first; then the case x leg matrix, the declared capabilities, the
user's own job examples (with ``--jobs``), the bench's ratios and the fault figures.
"""

from __future__ import annotations

import dataclasses
import html
import json
from pathlib import Path
from typing import Any

from .figures import ALL_CAPABILITIES, BenchRow, Fault
from .results import Results

__all__ = ["Report", "blocks", "markdown", "html_page", "chart"]


@dataclasses.dataclass
class Report:
    """Everything one comparison found."""

    results: Results
    capabilities: dict[str, dict[str, Any]]
    bench: list[BenchRow] = dataclasses.field(default_factory=list)
    bench_note: str = ""
    bench_source: str = "python -m bench --smoke"
    faults: list[Fault] = dataclasses.field(default_factory=list)
    faults_note: str = ""
    examples: list[dict] | None = None
    """The ``--jobs`` runs: see :mod:`service.compare.examples`."""
    example_breaks: list[str] = dataclasses.field(default_factory=list)
    command: str = "make compare"
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    chart_name: str | None = None

    @property
    def breaks(self) -> list[str]:
        return self.results.parity_breaks() + self.example_breaks

    @property
    def ok(self) -> bool:
        return self.results.ok and not self.example_breaks


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= width else text[:width - 1] + "…"


def blocks(report: Report) -> list[tuple]:
    """The report as ``("h1"|"h2"|"p", text)``, ``("list", items)`` and
    ``("table", header, rows)`` blocks."""
    res = report.results
    legs = res.legs
    out: list[tuple] = [("h1", "Engine comparison")]
    took = ", ".join(f"{k} {v:.0f} s" for k, v in report.timings.items())
    out.append(("p", f"Written by `{report.command}`" + (f" ({took})" if took else "")
                + ". Legs: " + ", ".join(legs) + "."))
    verdict = "**PASS**: every case has the same outcome on every leg" if report.ok else "**FAIL**"
    out.append(("p", verdict + "."))

    breaks = res.parity_breaks()
    out.append(("h2", f"Parity breaks ({len(breaks) + len(report.example_breaks)})"))
    if breaks or report.example_breaks:
        out.append(("p", "Cases whose outcome differs between legs, capability skips aside. "
                         "Each one makes the command exit non-zero."))
        rows = [[case] + [_cell(res.cases[case].get(leg)) for leg in legs] for case in breaks]
        if rows:
            out.append(("table", ["case", *legs], rows))
        details = [f"`{case}` on {leg}: {o.message}" for case in breaks
                   for leg, o in res.cases[case].items() if o.status == "fail" and o.message]
        details += report.example_breaks
        if details:
            out.append(("list", details))
    else:
        out.append(("p", "None."))
    extra = [f"`{case}` fails on every leg" for case in res.failing_everywhere()]
    extra += [f"{leg}: {why}" for leg, why in res.errors.items()]
    if extra:
        out += [("h2", "Failures on every leg, and legs without results"), ("list", extra)]

    out.append(("h2", "Conformance: every case on every leg"))
    summary = [[leg] + [str(res.counts(leg)[k]) for k in ("pass", "fail", "skip")]
               for leg in legs]
    out.append(("table", ["leg", "passed", "failed", "skipped"], summary))
    out.append(("p", "A skip names the capability the engine does not declare "
                     "(`tests/conformance/conftest.py::needs`); `—` is a case the leg does "
                     "not run."))
    out.append(("table", ["case", *legs],
                [[case] + [_cell(by_leg.get(leg)) for leg in legs]
                 for case, by_leg in res.cases.items()]))

    out.append(("h2", "Capabilities declared"))
    caps_rows = [[cap] + ["yes" if cap in report.capabilities.get(leg, {}).get("declared", ())
                          else "no" for leg in legs] for cap in ALL_CAPABILITIES]
    out.append(("table", ["capability", *legs], caps_rows))
    out.append(("p", "Engines: " + "; ".join(
        f"{leg} `{info['engine']}`" for leg, info in report.capabilities.items()) + "."))

    if report.examples is not None:
        out += _examples(report)

    out.append(("h2", "Speed against the raw engines (bench smoke)"))
    if report.bench:
        out.append(("p", "Switchyard / raw engine, same worker settings, ratios of medians "
                         f"from `{report.bench_source}` (a smoke run is one short run each: "
                         "indicative). "
                         "Throughput above 1x is faster; latency and Redis commands above 1x "
                         "are more."))
        out.append(("table", ["engine", "worker settings", "throughput no-op",
                              "throughput 50 ms", "latency p50", "Redis commands / job",
                              "client commands / job"],
                    [[r.engine, r.setting + (" (default)" if r.default else ""),
                      _ratio(r.throughput_noop), _ratio(r.throughput_sleep),
                      _ratio(r.latency_p50), _ratio(r.commands_total),
                      _ratio(r.commands_client)] for r in report.bench]))
    if report.bench_note:
        out.append(("p", report.bench_note))

    out.append(("h2", "Faults (the fault suite)"))
    if report.faults:
        out.append(("p", f"From `RELIABILITY.md`: {report.faults_note}. It is written by "
                         "`make chaos`, which this command does not run."))
        out.append(("table", ["leg", "fault", "accepted", "succeeded", "lost", "run twice",
                              "stuck", "recovered in", "result"],
                    [[f.leg, f.fault, str(f.accepted), str(f.succeeded), str(f.lost),
                      str(f.run_twice), str(f.stuck), f.recovered_in,
                      "pass" if f.passed else "FAIL"] for f in report.faults]))
    else:
        out.append(("p", report.faults_note or "No fault figures."))
    if report.chart_name:
        out.append(("img", report.chart_name))
    return out


def _cell(outcome) -> str:
    return "—" if outcome is None else outcome.label()


def _examples(report: Report) -> list[tuple]:
    out: list[tuple] = [("h2", "Your jobs' examples on every engine")]
    if not report.examples:
        return out + [("p", "No registered job type has `examples=`.")]
    legs = sorted({leg for run in report.examples for leg in run["legs"]},
                  key=lambda leg: report.results.legs.index(leg) if leg in report.results.legs
                  else len(report.results.legs))
    out.append(("p", "Each example payload enqueued once on each engine, run by a real "
                     "worker process: final state, attempts and run time per engine; "
                     "**result** says whether the results are equal on every engine. A state "
                     "or attempt count that differs is a parity break; a result that differs "
                     "is shown (a result may hold a time or a job id)."))
    rows = []
    for run in report.examples:
        cells = []
        for leg in legs:
            got = run["legs"].get(leg)
            if got is None:
                cells.append("—")
            else:
                seconds = "" if got.get("seconds") is None else f", {got['seconds']:.2f} s"
                cells.append(f"{got['state']}, {got['attempts']} att.{seconds}")
        rows.append([run["type"], _short(run["payload"], 40), *cells,
                     "equal" if run["results_equal"] else "**differs**"])
    out.append(("table", ["job type", "example", *legs, "result"], rows))
    differ = [f"`{run['type']}` example {run['index']}: " + "; ".join(
        f"{leg} `{_short(got.get('result'), 50)}`" for leg, got in run["legs"].items())
        for run in report.examples if not run["results_equal"]]
    if differ:
        out.append(("p", "Results that differ:"))
        out.append(("list", differ))
    return out


def markdown(report: Report) -> str:
    lines: list[str] = []
    for block in blocks(report):
        kind = block[0]
        if kind == "h1":
            lines += [f"# {block[1]}", ""]
        elif kind == "h2":
            lines += [f"## {block[1]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "list":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "img":
            lines += [f"![comparison]({block[1]})", ""]
        elif kind == "table":
            header, rows = block[1], block[2]
            esc = [[str(c).replace("|", "\\|") for c in row] for row in [header, *rows]]
            lines.append("| " + " | ".join(esc[0]) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(row) + " |" for row in esc[1:]]
            lines.append("")
    return "\n".join(lines)


def _inline(text: str) -> str:
    """Markdown's `code` and **bold** of a cell or paragraph, as HTML."""
    parts = html.escape(text).split("`")
    text = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
    parts = text.split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


_STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}"
          "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
          "padding:2px 8px;font-size:13px;text-align:left}th{background:#eee}"
          "td.fail{background:#f8c8c8}td.pass{background:#d8f0d8}td.skip{background:#eee}"
          "code{font-size:12px}")


def _td(cell: str) -> str:
    cls = ("fail" if cell.startswith(("FAIL", "**differs")) else "pass" if cell == "pass"
           else "skip" if cell.startswith("skipped") else "")
    return f"<td class=\"{cls}\">{_inline(cell)}</td>" if cls else f"<td>{_inline(cell)}</td>"


def html_page(report: Report) -> str:
    body = []
    for block in blocks(report):
        kind = block[0]
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{_inline(block[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "img":
            body.append(f"<p><img src=\"{html.escape(block[1])}\" alt=\"comparison chart\"></p>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(_td(str(c)) for c in row) + "</tr>" for row in block[2])
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><title>Engine comparison"
            f"</title><style>{_STYLE}</style></head><body>" + "\n".join(body) + "</body></html>\n")


def chart(report: Report, path: Path) -> None:
    """Cases passed / skipped / failed per leg, and the bench ratios; ImportError
    without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = report.results
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    bottom = [0] * len(res.legs)
    for status, colour in (("pass", "#4c9f50"), ("skip", "#b0b0b0"), ("fail", "#d9534f")):
        values = [res.counts(leg)[status] for leg in res.legs]
        left.bar(res.legs, values, bottom=bottom, color=colour, label=status)
        bottom = [b + v for b, v in zip(bottom, values)]
    left.set_title("conformance cases per leg")
    left.legend()
    left.tick_params(axis="x", rotation=20)
    if report.bench:
        labels = [f"{r.engine} {r.setting}" for r in report.bench]
        width = 0.27
        xs = range(len(labels))
        for offset, (name, attr) in enumerate((("throughput no-op", "throughput_noop"),
                                               ("latency p50", "latency_p50"),
                                               ("Redis commands", "commands_total"))):
            right.bar([x + (offset - 1) * width for x in xs],
                      [getattr(r, attr) or 0 for r in report.bench], width, label=name)
        right.axhline(1.0, color="black", linewidth=0.8)
        right.set_xticks(list(xs))
        right.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        right.set_title("Switchyard / raw engine (bench smoke)")
        right.legend(fontsize=8)
    else:
        right.text(0.5, 0.5, "no bench results", ha="center")
        right.set_axis_off()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
