"""Draw the activity report as a PDF with reportlab: a summary, a chart and two tables."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from xml.sax.saxutils import escape

__all__ = ["STATES", "render_activity"]

STATES = ("scheduled", "queued", "started", "retrying", "succeeded", "failed", "canceled")
_COLOURS = {
    "scheduled": colors.HexColor("#9e9e9e"), "queued": colors.HexColor("#64b5f6"),
    "started": colors.HexColor("#1565c0"), "retrying": colors.HexColor("#ffb300"),
    "succeeded": colors.HexColor("#2e7d32"), "failed": colors.HexColor("#c62828"),
    "canceled": colors.HexColor("#6d4c41"),
}
_TABLE_STYLE = TableStyle([
    ("FONT", (0, 0), (-1, -1), "Helvetica", 7.5),
    ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 7.5),
    ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
    ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.black),
    ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f3f3f3")]),
    ("TOPPADDING", (0, 0), (-1, -1), 1.5),
    ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
])


def _short(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _chart(days: list[str], per_day: dict[str, dict[str, int]], width: float) -> Drawing:
    """Stacked bars: jobs created per day, split by their state now."""
    states = [s for s in STATES if any(per_day.get(d, {}).get(s) for d in days)] or ["succeeded"]
    height = 62 * mm
    drawing = Drawing(width, height + 18 * mm)
    chart = VerticalBarChart()
    chart.x, chart.y = 30, 22
    chart.width, chart.height = width - 150, height
    chart.data = [[per_day.get(d, {}).get(s, 0) for d in days] for s in states]
    chart.categoryAxis.style = "stacked"
    step = max(1, len(days) // 14)
    chart.categoryAxis.categoryNames = [d[5:] if i % step == 0 else "" for i, d in enumerate(days)]
    chart.categoryAxis.labels.fontSize = 6.5
    chart.categoryAxis.labels.angle = 45
    chart.categoryAxis.labels.boxAnchor = "ne"
    chart.valueAxis.valueMin = 0
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.forceZero = True
    peak = max([sum(per_day.get(d, {}).values()) for d in days] + [1])
    chart.valueAxis.valueMax = peak + max(1, peak // 10)
    chart.valueAxis.valueStep = max(1, (peak + 4) // 5)
    chart.barSpacing = 0.5
    for i, state in enumerate(states):
        chart.bars[i].fillColor = _COLOURS[state]
        chart.bars[i].strokeColor = None
    legend = Legend()
    legend.x, legend.y = width - 105, height + 10
    legend.fontSize = 7
    legend.alignment = "right"
    legend.colorNamePairs = [(_COLOURS[s], s) for s in states]
    drawing.add(chart)
    drawing.add(legend)
    drawing.add(String(30, height + 34, "Jobs created per day, by state", fontSize=9,
                       fontName="Helvetica-Bold"))
    return drawing


def _row(label: list[str], counts: dict[str, int]) -> list[str]:
    return label + [str(counts.get(s, 0)) for s in STATES] + [str(sum(counts.values()))]


def render_activity(path: Path, *, tenant: str, start: str, end: str, days: list[str],
                    per_type: dict[str, dict[str, int]], per_day: dict[str, dict[str, int]],
                    per_day_type: dict[tuple[str, str], dict[str, int]], job_id: str) -> int:
    """Write the report to ``path``; returns the number of pages."""
    styles = getSampleStyleSheet()
    doc = SimpleDocTemplate(str(path), pagesize=A4, leftMargin=14 * mm, rightMargin=14 * mm,
                            topMargin=14 * mm, bottomMargin=14 * mm,
                            title=f"Activity report {start} to {end}", author="Switchyard",
                            subject=f"tenant {tenant}")
    totals: dict[str, int] = {}
    for counts in per_type.values():
        for state, n in counts.items():
            totals[state] = totals.get(state, 0) + n
    total = sum(totals.values())
    summary = ", ".join(f"{s} {totals[s]}" for s in STATES if totals.get(s)) or "none"
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    story = [
        Paragraph("Activity report", styles["Title"]),
        Paragraph(escape(f"Tenant {tenant} · {start} to {end} (UTC days) · generated {generated}"),
                  styles["Normal"]),
        Paragraph(escape(f"Total jobs: {total} ({summary})"), styles["Normal"]),
        Spacer(1, 4 * mm),
        _chart(days, per_day, doc.width),
        Spacer(1, 4 * mm),
        Paragraph("Jobs per type and state", styles["Heading2"]),
    ]
    header = ["Type"] + list(STATES) + ["total"]
    rows = [header] + [_row([_short(t)], per_type[t]) for t in sorted(per_type)]
    rows.append(_row(["All types"], totals))
    widths = [40 * mm] + [16.5 * mm] * len(STATES) + [14 * mm]
    story.append(Table(rows, colWidths=widths, repeatRows=1, style=_TABLE_STYLE, hAlign="LEFT"))
    story += [Spacer(1, 4 * mm), Paragraph("Jobs per day, type and state", styles["Heading2"])]
    rows = [["Day", "Type"] + list(STATES) + ["total"]]
    for (day, job_type) in sorted(per_day_type):
        rows.append(_row([day, _short(job_type, 22)], per_day_type[(day, job_type)]))
    if len(rows) == 1:
        rows.append(["", "no jobs"] + [""] * (len(STATES) + 1))
    widths = [19 * mm, 31 * mm] + [15.5 * mm] * len(STATES) + [13 * mm]
    by_day = TableStyle(_TABLE_STYLE.getCommands() + [("ALIGN", (1, 0), (1, -1), "LEFT")])
    story.append(Table(rows, colWidths=widths, repeatRows=1, style=by_day, hAlign="LEFT"))
    story += [Spacer(1, 3 * mm), Paragraph(escape(
        f"Report job {job_id}. States are the jobs' states when the report was made."),
        styles["Italic"])]
    pages = []
    doc.build(story, onFirstPage=lambda c, d: pages.append(c.getPageNumber()),
              onLaterPages=lambda c, d: pages.append(c.getPageNumber()))
    return len(pages)
