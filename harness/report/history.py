"""The nightly history's index page: the nights, newest first, trend charts (report/svg.py)
and the last comparison on top.  nightly.py decides what the nights and the comparison are;
this module only draws them.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
from markupsafe import Markup

from ..results import write_atomic
from .svg import line_chart

MAX_LISTED = 200  # rows of one comparison table on the index page


def charts(entries: list[dict]) -> list[dict]:
    """The trend charts of the nights' summary entries: a title and its SVG each.  Interrupted
    nights are not drawn: their numbers are of the jobs that finished, and a drop to 0 there
    would be a night that never was."""
    entries = [e for e in entries if not e.get("interrupted")]
    checkers = sorted({c for e in entries for c in e.get("findings_by_checker", {})})
    categories = sorted({c for e in entries for c in e.get("findings_by_category", {})})
    nights = [e["night"] for e in entries]
    ticks = [n[5:10] for n in nights]

    def chart(title: str, series: dict[str, list[float]], unit: str = "") -> dict:
        return {"title": title, "svg": Markup(line_chart(title, nights, ticks, series, unit))}

    return [
        chart("Findings per checker",
              {c: [float(e.get("findings_by_checker", {}).get(c, 0)) for e in entries] for c in checkers}
              or {"findings": [0.0] * len(entries)}),
        chart("Findings per category",
              {c: [float(e.get("findings_by_category", {}).get(c, 0)) for e in entries] for c in categories}
              or {"findings": [0.0] * len(entries)}),
        chart("Failed expectations", {"failed": [float(e.get("failed", 0)) for e in entries]}),
        chart("Jobs not fully checked", {"incomplete": [float(e.get("incomplete", 0)) for e in entries]}),
        chart("Run time", {"seconds": [float(e.get("seconds", 0)) for e in entries]}, unit=" s"),
    ]


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,  # night names are ours, but job names and messages come from programs
        trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)


def write_index(history: Path, entries: list[dict], comparison) -> Path:
    """Write history/index.html (atomically) for the nights' entries, oldest first."""
    limit = lambda items: (items[:MAX_LISTED], max(0, len(items) - MAX_LISTED))  # noqa: E731
    page = _env().get_template("nightly_index.html.j2").render(
        entries=list(reversed(entries)), charts=charts(entries) if any(not e.get("interrupted") for e in entries) else [],
        comparison=comparison, drawn=sum(1 for e in entries if not e.get("interrupted")),
        limit=limit)
    write_atomic(Path(history) / "index.html", page)
    return Path(history) / "index.html"
