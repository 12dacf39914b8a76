"""Reports: HTML people would rather read than logs, and SARIF for code scanning.

`render_report(results, out)` renders what a run stored (its findings, and the sources it
compiled, copied into the results folder) into `out`: index.html, signatures*.html,
patterns/<id>*.html and leakharness.sarif, self-contained and working offline.  Reading and
merging results folders and logs is results.combine; `write_report(inputs, out)` does both.

Findings are shown by root cause (heuristics.group_findings): a definite leak with the indirect
leaks it owns, most severe first; the program's own frame first, library frames folded.

Two views answer questions the matrix does not: leak growth (results.json's "growth", from
`--growth`: bytes lost per operation and once, per program and per signature, with small inline
SVG plots) and, on each pattern page, which build flags and checkers would have caught the
leaky variant (caught, missed, blind, incomplete), grouped by checker family.
"""

from __future__ import annotations

import base64
import difflib
import functools
import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import jinja2
from markupsafe import Markup

from .. import __version__
from .. import checkers as registry
from ..catalog import VARIANTS, base_checker, load_catalog
from ..errors import CatalogError, LeakHarnessError
from ..findings import Finding, Frame
from ..forked import Beside
from ..generate import diff as pattern_diff
from ..generate import CompiledTemplates, render
from ..growth import GrowthFit, GrowthReport
from ..grouping import FindingGroup, group_findings
from ..judge import COMPLETE, outcome
from ..signatures import is_library
from ..results import JobRecord, Results, SourceFile, combine, write_atomic
from ..validate import inside
from . import sarif, svg
from .known import boxes as known_boxes
from .paths import display_path

GROUPS_PER_PAGE = 200
SOURCE_LIMIT = 1 << 20  # bytes of a user's source file shown on a page
GROWTH_SIGNATURES = 100  # signatures of one growth fit shown (with a plot each) on a pattern page

SCRIPT = """(function () {
  var table = document.getElementById('matrix');
  if (!table) return;
  var controls = document.getElementById('controls');
  controls.hidden = false;
  var byStatus = document.getElementById('f-status'), byChecker = document.getElementById('f-checker');
  function apply() {
    var s = byStatus.value, c = byChecker.value;
    table.querySelectorAll('[data-checker]').forEach(function (el) {
      el.hidden = !!c && el.getAttribute('data-checker') !== c;
    });
    table.querySelectorAll('tbody tr').forEach(function (tr) {
      if (!s) { tr.hidden = false; return; }
      var any = false;
      tr.querySelectorAll('td[data-status]').forEach(function (td) {
        if (!td.hidden && td.getAttribute('data-status') === s) any = true;
      });
      tr.hidden = !any;
    });
  }
  byStatus.addEventListener('change', apply);
  byChecker.addEventListener('change', apply);
  table.querySelectorAll('thead th').forEach(function (th, col) {
    th.classList.add('sortable');
    th.addEventListener('click', function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var dir = th.getAttribute('data-dir') === 'asc' ? -1 : 1;
      th.setAttribute('data-dir', dir === 1 ? 'asc' : 'desc');
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute('data-key') || a.cells[col].textContent;
        var y = b.cells[col].getAttribute('data-key') || b.cells[col].textContent;
        return x < y ? -dir : x > y ? dir : 0;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
})();
"""
SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
# Nothing is ever loaded from elsewhere: no remote script, style, font, image or frame.
CSP = (f"default-src 'none'; script-src '{SCRIPT_HASH}'; style-src 'unsafe-inline'; "
       "img-src data:; base-uri 'none'; form-action 'none'")


# --- views --------------------------------------------------------------------------------------

def human_bytes(n: int | None) -> str:
    if n is None:
        return ""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024 / 1024:.1f} MB"


def tool_label(tool: dict) -> str:
    """`valgrind 3.19.0`, not `valgrind valgrind-3.19.0` (the version as the tool prints it)."""
    name, version = str(tool.get("name", "?")), str(tool.get("version", ""))
    for sep in ("-", " "):
        if version.lower().startswith(name.lower() + sep):
            version = version[len(name) + 1:]
    return f"{name} {version}".strip()


def _stderr_log(job: JobRecord, out: Path | None = None) -> str | None:
    """The job's stderr.txt, relative to the results folder: among its logs, or where the run
    keeps it (logs/<pattern>/<variant>/<checker>/)."""
    found = next((lg for lg in job.logs if os.path.basename(lg) == "stderr.txt"), None)
    if found is None and out is not None:
        rel = Path("logs") / job.pattern / (job.variant or "check") / job.tool / "stderr.txt"
        if (out / rel).is_file():
            found = rel.as_posix()
    return found


def job_reason(job: JobRecord) -> str:
    """Why a job is what it is, one line: the verdict's reason, else why the check was not
    complete (the run's message or the problems met reading its logs)."""
    if job.reason:
        return job.reason
    if job.status != "ok":
        text = (job.message or "").strip().splitlines()
        return text[0] if text else "; ".join(job.problems)
    return ""


def job_cell(job: JobRecord, out: Path | None = None) -> dict:
    """A matrix cell: judge.outcome's decision, what was found, and why.  Clean means checked
    and clean: any status but "ok" is not clean."""
    errors = [f for f in job.findings if f.is_error]
    cats: dict[str, int] = defaultdict(int)
    leak_bytes = 0
    for f in errors:
        cats[f.category] += 1
        if f.category == "leak":
            leak_bytes += f.bytes or 0
    parts = []
    for cat, n in sorted(cats.items()):
        parts.append(f"leak {human_bytes(leak_bytes)}" if cat == "leak" else (cat + (f" ×{n}" if n > 1 else "")))
    decided = outcome(job)  # the one decision every output shows
    if job.status != "ok":
        parts.insert(0, job.status + (f" {job.signal}" if job.signal else ""))
    return {"status": decided.name, "verdict": job.verdict, "label": decided.label,
            "what": ", ".join(parts) or "clean", "failing": decided.failing,
            "reason": job_reason(job), "job": job, "stderr": _stderr_log(job, out), "checked": job.status == "ok",
            "suppressed": sum(1 for f in job.findings if f.suppressed)}


def slug(text: str) -> str:
    """A file name for a pattern's pages: the name itself when it is one, else its safe part and
    a hash of the whole (`dig+x` and `dig_x` are two targets: never one page)."""
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    short = keep.strip("._")[:80] or "job"
    if short == text:
        return short
    return f"{short}-{hashlib.sha1(text.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


def paginate(items: list, per_page: int) -> list[list]:
    return [items[i:i + per_page] for i in range(0, len(items), per_page)] or [[]]


def page_name(base: str, index: int) -> str:
    return f"{base}.html" if index == 0 else f"{base}-{index + 1}.html"


def _shown(f: Finding) -> bool:
    return f.is_error or bool(f.suppressed)


@dataclass
class Bug:
    """One root cause on a page: the groups (root and owned indirect records) with the same
    root signature in one variant, one per checker that reported it."""

    signature: str
    variant: str
    groups: list[tuple[JobRecord, FindingGroup]] = field(default_factory=list)
    _main: FindingGroup | None = field(default=None, repr=False, compare=False)

    @property
    def main(self) -> FindingGroup:
        """The group to show: one whose indirect bytes the tool confirmed, else the first.
        (Found once: a bug's groups are all added before it is first shown or sorted.)"""
        if self._main is None:
            self._main = next((g for _, g in self.groups if g.checked), self.groups[0][1])
        return self._main

    @property
    def first(self) -> Finding:
        return self.main.root

    @property
    def category(self) -> str:
        return self.first.category

    @property
    def label(self) -> str:
        f = self.first
        return f"{f.category} ({f.leak_kind})" if f.leak_kind else f.category

    @property
    def suppressed(self) -> bool:
        return all(g.suppressed for _, g in self.groups)

    @property
    def jobs(self) -> list[tuple[str, str]]:
        return sorted({(j.variant or "check", j.tool) for j, _ in self.groups})

    @property
    def count(self) -> int:
        return sum(f.count for _, g in self.groups for f in (g.root,))

    def rank(self) -> tuple:
        return self.main.rank()

    def per_tool(self) -> list[dict]:
        """One row per variant and checker that saw it: bytes and times seen, summed over its
        records (a program that leaks the same way ten thousand times is one row, x10000)."""
        rows: dict[tuple[str, str], dict] = {}
        for job, g in self.groups:
            key = (job.variant or "check", job.tool)
            row = rows.get(key)
            if row is None:
                rows[key] = {"variant": key[0], "tool": job.tool, "bytes": g.bytes, "indirect": g.indirect_bytes,
                             "owned": len(g.owned), "checked": g.checked, "count": g.root.count}
                continue
            row["bytes"] += g.bytes
            row["indirect"] += g.indirect_bytes
            row["owned"] += len(g.owned)
            row["count"] += g.root.count
            if row["checked"] is not False:
                row["checked"] = g.checked if row["checked"] is None or g.checked is False else row["checked"]
        return sorted(rows.values(), key=lambda d: (d["variant"], d["tool"]))

    def owned_rows(self, limit: int = 50) -> list[dict]:
        """The main group's indirect records by signature, the most bytes first."""
        rows: dict[str, dict] = {}
        for f in self.main.owned:
            row = rows.setdefault(f.signature, {"signature": f.signature, "bytes": 0, "records": 0,
                                                "where": f.where()})
            row["bytes"] += f.bytes or 0
            row["records"] += 1
        return sorted(rows.values(), key=lambda r: (-r["bytes"], r["signature"]))[:limit]


def job_groups(jobs: Iterable[JobRecord]) -> dict[int, list[FindingGroup]]:
    """Each job's shown findings as root-cause groups, by id(job)."""
    return {id(j): group_findings(f for f in j.findings if _shown(f)) for j in jobs}


def bugs_of(jobs: Iterable[JobRecord], grouped: dict[int, list[FindingGroup]] | None = None) -> list[Bug]:
    """Root causes across jobs: each job's findings grouped, then the same root signature in
    one variant from every checker made one Bug.  The most severe first."""
    jobs = list(jobs)
    grouped = grouped if grouped is not None else job_groups(jobs)
    bugs: dict[tuple[str, str], Bug] = {}
    for job in jobs:
        variant = job.variant or "check"
        for g in grouped[id(job)]:
            key = (variant, g.root.signature)
            bug = bugs.get(key)
            if bug is None:
                bug = bugs[key] = Bug(g.root.signature, variant)
            bug.groups.append((job, g))
    order = {v: i for i, v in enumerate(VARIANTS + ("check",))}
    return sorted(bugs.values(), key=lambda b: (b.rank(), order.get(b.variant, 9)))


def stack_view(frames: tuple[Frame, ...], max_frames: int = 60) -> list[dict]:
    """Frames as display rows: the program's own emphasised, runs of library frames folded."""
    rows: list[dict] = []
    for i, fr in enumerate(frames[:max_frames]):
        lib = is_library(fr)
        if lib and rows and rows[-1]["folded"] is not None:
            rows[-1]["folded"].append((i, fr))
        elif lib:
            rows.append({"folded": [(i, fr)], "frame": None, "index": i})
        else:
            rows.append({"folded": None, "frame": fr, "index": i})
    return rows


def source_view(text: str, highlight: set[int]) -> list[tuple[int, str, bool]]:
    return [(n, line, n in highlight) for n, line in enumerate(text.splitlines(), 1)]


def _lines_in(findings: Iterable[Finding], file_name: str) -> set[int]:
    """Lines of file_name where memory was allocated, freed or touched, per the stacks (each
    distinct stack looked at once: a big log repeats them)."""
    lines = set()
    seen: set[int] = set()
    kept = []  # the stacks looked at, alive while their ids are in `seen`
    for f in findings:
        for stack in (f.stack, *(a.frames for a in f.aux_stacks)):
            if id(stack) in seen:
                continue
            seen.add(id(stack))
            kept.append(stack)
            for fr in stack:
                if fr.file and fr.line and os.path.basename(fr.file) == file_name:
                    lines.add(fr.line)
                    break  # the innermost frame in the program's source is the one to mark
    return lines


# --- which flags would have caught it ------------------------------------------------------------

def opt_level(checker: str) -> str:
    """The -O level the checker's build uses, "" when it has none (Go) or is unknown."""
    return registry.get(checker).opt_level if registry.known(checker) else ""


def _found_text(findings: list[Finding], function: str | None = None) -> str:
    """What a checker found, short: category, bytes where the tool gave them, count, and the
    place: the frame of `function` (the one the pattern names), else the program's own."""
    by_cat: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        by_cat[f.category].append(f)
    parts = []
    for cat, fs in by_cat.items():
        nbytes = sum(f.bytes or 0 for f in fs)
        count = sum(f.count for f in fs)
        text = cat + (f" {human_bytes(nbytes)}" if nbytes else "") + (f" ×{count}" if count > 1 else "")
        # The program's own frame says where the bug is; the tool's top frames (printf,
        # memcpy's interceptor, libcrypto) say only where it was noticed.
        own = next((fr for f in fs for fr in f.stack if function and fr.function == function), None)
        own = own or next((fr for f in fs for fr in f.stack if not is_library(fr) and fr.function), None)
        where = own.describe() if own is not None else fs[0].where(2)
        parts.append(text + (f" at {where}" if where else ""))
    return "; ".join(parts)


def _unchecked(job: JobRecord) -> str:
    """Why a job's run was not complete: the run's own message (the verdict only adds "not
    fully checked"), else the problems met reading its logs."""
    lines = (job.message or "").strip().splitlines()
    return f"{job.status}: " + (lines[0] if lines else job_reason(job) or "no reason given")


def leaky_outcome(job: JobRecord) -> dict:
    """caught / missed / blind / stale / known incomplete / incomplete for a leaky variant's
    job, with what or why."""
    expected = job.expected or {}
    complete = job.status in COMPLETE
    if job.verdict == "blind":
        return {"outcome": "blind", "detail": str(expected.get("reason") or job.reason)}
    if job.verdict == "stale":  # the pattern says it cannot see the bug, and it did: the page says so
        return {"outcome": "stale", "detail": job.reason}
    if job.verdict == "known-incomplete":
        return {"outcome": "known incomplete", "detail": job.reason}
    if not complete:
        return {"outcome": "incomplete", "detail": _unchecked(job)}
    if job.verdict == "pass":
        errors = [f for f in job.findings if f.is_error]
        cat = expected.get("category")
        matched = [f for f in errors if not cat or cat == "any" or f.category == cat] or errors
        detail = _found_text(matched, expected.get("function"))
        if job.status == "crashed":
            detail += ("; " if detail else "") + "the program was stopped" + (f" ({job.signal})" if job.signal else "")
        return {"outcome": "caught", "detail": detail}
    if job.verdict == "fail":
        return {"outcome": "missed", "detail": job.reason}
    return {"outcome": "unjudged", "detail": job_reason(job)}  # a job with no expectation: nothing to say


def fixed_outcome(job: JobRecord | None) -> dict:
    """Whether the fixed variant was checked and clean under the same checker."""
    if job is None:
        return {"outcome": "not run", "detail": ""}
    errors = [f for f in job.findings if f.is_error]
    if job.verdict in ("blind", "known-incomplete", "stale"):
        return {"outcome": outcome(job).label, "detail": str((job.expected or {}).get("reason") or job.reason)}
    if job.status not in COMPLETE:
        return {"outcome": "incomplete", "detail": _unchecked(job)}
    if errors or job.status != "ok" or job.verdict == "fail":
        what = _found_text(errors) or job.reason or job.status
        return {"outcome": "not clean", "detail": what}
    return {"outcome": "clean", "detail": ""}


def flag_matrix(pjobs: list[JobRecord]) -> dict | None:
    """Checker x outcome for the pattern's leaky variant, grouped by family, with the fixed
    variant beside it; None when no leaky variant was judged (a user's program)."""
    leaky = {j.tool: j for j in pjobs if j.variant == "leaky" and j.verdict}
    if not leaky:
        return None
    fixed = {j.tool: j for j in pjobs if j.variant == "fixed"}
    order = {c: i for i, c in enumerate(registry.names())}
    families = []
    known = [(name, label, tuple(c for c in registry.names() if registry.family_of(c) == name))
             for name, label in registry.FAMILIES.items()]
    others = tuple(sorted(c for c in leaky if not registry.known(c)))
    if others:
        known.append(("other", "Other checkers", others))
    rows_by_checker = {}
    for name, label, members in known:
        ran = sorted((c for c in members if c in leaky),
                     key=lambda c: (order.get(base_checker(c), 99), opt_level(c), order.get(c, 99), c))
        rows = []
        for c in ran:
            row = {"checker": c, "level": opt_level(c), **leaky_outcome(leaky[c]), "fixed": fixed_outcome(fixed.get(c))}
            rows.append(row)
            rows_by_checker[c] = row
        if rows:
            counts = defaultdict(int)
            for r in rows:
                counts[r["outcome"]] += 1
            families.append({"name": name, "label": label, "rows": rows,
                             "counts": [(o, counts[o]) for o in OUTCOMES if counts[o]]})
    # -O0 vs -O2: one base checker built at several levels, with different outcomes.
    levels: dict[str, list[dict]] = defaultdict(list)
    for c, row in rows_by_checker.items():
        if row["level"]:
            levels[base_checker(c)].append(row)
    contrasts = []
    for base, rows in sorted(levels.items(), key=lambda kv: order.get(kv[0], 99)):
        if len(rows) > 1 and len({r["outcome"] for r in rows}) > 1:
            rows.sort(key=lambda r: r["level"])
            contrasts.append(f"{base}: " + ", ".join(f"{r['outcome']} at {r['level']}" for r in rows))
    caught = [r["checker"] for f in families for r in f["rows"] if r["outcome"] == "caught"]
    return {"families": families, "contrasts": contrasts, "caught": caught}


OUTCOMES = ("caught", "missed", "stale", "blind", "known incomplete", "incomplete", "unjudged")


# --- leak growth --------------------------------------------------------------------------------

def rate_text(value: float) -> str:
    """268.0 -> "268", 18452.5 -> "18,452.5", -0.0 -> "0": bytes as a reader writes them."""
    text = f"{value:,.1f}"
    text = text[:-2] if text.endswith(".0") else text
    return "0" if text in ("-0", "-0.0") else text


def growth_views(entries: Iterable[dict]) -> list[dict]:
    """results.json's "growth" entries, read back into fits for the pages.  An entry that
    cannot be read shows as such, never as a fit of 0 bytes."""
    views = []
    for entry in entries:
        view = {"pattern": str(entry.get("pattern", "?")), "variant": entry.get("variant"),
                "checker": str(entry.get("checker", "?")), "status": str(entry.get("status", "?")),
                "reason": str(entry.get("reason") or ""), "total": None, "signatures": []}
        try:
            view["iterations"] = [int(n) for n in entry.get("iterations", ())]
            if view["status"] == "ok":
                report = GrowthReport.from_dict(entry)
                view["total"] = report.total
                view["signatures"] = list(report.by_signature)
        except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
            view.update(status="unreadable", total=None, signatures=[],
                        reason=f"this growth entry of results.json cannot be read ({type(exc).__name__}: {exc})")
            view.setdefault("iterations", [])
        view["slug"] = slug(view["pattern"])
        views.append(view)
    return views


def growth_plot(fit: GrowthFit, title: str) -> Markup:
    """svg.growth_plot's output, the one piece of markup a page takes as it is: it escapes its
    own text (the title is a signature, program text)."""
    return Markup(svg.growth_plot(fit, title=title))


# --- rendering ----------------------------------------------------------------------------------

def _env() -> jinja2.Environment:
    from .. import facts

    cache = facts.folder("templates")
    return _env_with(str(cache) if cache is not None else None)


# One environment a process (per folder of compiled templates): it keeps its loaded templates,
# so those loaded while a run's jobs ran (control._ready_report) are not loaded again to render.
@functools.lru_cache(maxsize=4)
def _env_with(cache: str | None) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,  # everything from programs and logs is text, never markup
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        bytecode_cache=CompiledTemplates(cache) if cache is not None else None,
    )
    env.filters["bytes"] = human_bytes
    env.filters["basename"] = lambda p: os.path.basename(p or "")
    env.filters["srcpath"] = display_path
    env.filters["tool_label"] = tool_label
    env.filters["rate"] = rate_text
    env.globals.update(CSP=CSP, SCRIPT=SCRIPT, version=__version__, slug=slug,
                       page_name=page_name, growth_plot=growth_plot, GROWTH_SIGNATURES=GROWTH_SIGNATURES)
    return env


def write_report(inputs: list[Path], out: Path, fixtures: Path | None = None,
                 suppressions: list | None = None, local_sources: bool = False) -> Path:
    """Read and merge results (results.combine) into `out`, then render them there; returns
    the path of index.html.  local_sources: the results are this process's own run, so the
    user's source files their stacks name may be shown (never for results from elsewhere:
    a results.json must not make a report read files outside its folder)."""
    out = Path(out)
    inputs = [Path(p) for p in inputs]
    results = combine(inputs, out, suppressions)  # growth entries merged too, one per program
    return render_report(results, out, fixtures, local_sources)


def render_report(results: Results, out: Path, fixtures: Path | None = None, local_sources: bool = False) -> Path:
    """Render results whose log and source paths are relative to `out`; returns index.html."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = _env()
    jobs = sorted(results.jobs, key=lambda j: (j.pattern, VARIANTS.index(j.variant) if j.variant in VARIANTS else 9,
                                              registry.order_key(j.tool)))
    growth = growth_views(results.growth)
    patterns = _catalog(fixtures, {j.pattern for j in jobs if j.variant}
                        | {g["pattern"] for g in growth if g["variant"]})

    by_pattern: dict[str, list[JobRecord]] = defaultdict(list)
    for j in jobs:
        by_pattern[j.pattern].append(j)
    growth_by_pattern: dict[str, list[dict]] = defaultdict(list)
    for g in growth:
        growth_by_pattern[g["pattern"]].append(g)
    columns = [(v, c) for v in VARIANTS + ("check",) for c in registry.names()
               if any((j.variant or "check") == v and j.tool == c for j in jobs)]
    columns += sorted({(j.variant or "check", j.tool) for j in jobs} - set(columns))
    rows = []
    for pid, pjobs in by_pattern.items():
        cells = {((j.variant or "check"), j.tool): job_cell(j, out) for j in pjobs}
        rows.append({"id": pid, "slug": slug(pid), "title": patterns[pid].title if pid in patterns else pid,
                     "cells": cells, "failed": any(c["failing"] for c in cells.values())})
    totals = {v: sum(1 for j in jobs if j.verdict == v) for v in ("pass", "fail", "blind", "stale", "known-incomplete")}
    totals["jobs"] = len(jobs)
    totals["verdicts"] = any(j.verdict for j in jobs)  # a catalog run; `check` has none
    totals["findings"] = sum(1 for j in jobs for f in j.findings if f.is_error)
    totals["suppressed"] = sum(1 for j in jobs for f in j.findings if f.suppressed)
    totals["with_errors"] = sum(1 for j in jobs if any(f.is_error for f in j.findings))
    totals["not_checked"] = sum(1 for j in jobs if j.status != "ok")
    slowest = sorted(jobs, key=lambda j: -j.duration_s)[:10]

    # SARIF is written by a forked copy of this process while the pages are made here (both
    # are the interpreter's work: a thread would wait for the pages).
    with Beside(lambda: sarif.write(results, out)):
        # Pages of an earlier report in the same folder would outlive it where there are fewer now.
        for stale in [*out.glob("signatures*.html"), *(out / "patterns").glob("*.html")]:
            stale.unlink()
        grouped = job_groups(jobs)
        bugs = {pid: bugs_of(pjobs, grouped) for pid, pjobs in by_pattern.items()}
        cross = _cross_rows(by_pattern, bugs, grouped)
        cross_pages = paginate(cross, GROUPS_PER_PAGE)
        for i, page in enumerate(cross_pages):
            write_atomic(out / page_name("signatures", i), env.get_template("signatures.html.j2").render(
                rows=page, page=i, pages=len(cross_pages), total=len(cross), results=results))

        (out / "patterns").mkdir(exist_ok=True)
        for pid, pjobs in by_pattern.items():
            _write_pattern_pages(env, out, pid, pjobs, patterns.get(pid), bugs[pid], growth_by_pattern.get(pid, []),
                                 local_sources)
        for pid in growth_by_pattern.keys() - by_pattern.keys():  # a program fitted, with no job of its own
            _write_pattern_pages(env, out, pid, [], patterns.get(pid), [], growth_by_pattern[pid])

        checkers = sorted({c for _, c in columns}, key=registry.order_key)
        write_atomic(out / "index.html", env.get_template("index.html.j2").render(
            results=results, rows=rows, columns=columns, totals=totals, slowest=slowest,
            cross_total=len(cross), checkers=checkers, growth=growth, part=_part_note(results)))
    return out / "index.html"


def _part_note(results: Results) -> str:
    """A banner for results that are not a whole run: one shard of several, or a merge missing
    parts (their jobs are in the matrix as not run)."""
    from ..shard import NOT_RUN

    run = results.run or {}
    missing = sum(1 for j in results.jobs if NOT_RUN in j.problems)
    if missing:
        return (f"Partial: {missing} job(s) of run {run.get('id', '?')} are in no part given to this report; "
                f"they are shown as not run.")
    shard = run.get("shard")
    if shard and shard[1] > 1:
        return f"Shard {shard[0]} of {shard[1]} of run {run.get('id', '?')}: a part of the run, not all of it."
    return ""


def _catalog(fixtures: Path | None, ids: set[str]) -> dict:
    if not ids:
        return {}
    try:
        found = load_catalog(fixtures)
    except (CatalogError, OSError):
        return {}
    return {p.id: p for p in found if p.id in ids}


def _cross_rows(by_pattern: dict[str, list[JobRecord]], bugs: dict[str, list[Bug]],
                grouped: dict[int, list[FindingGroup]]) -> list[dict]:
    """One row per (pattern, variant, root cause): which checkers saw it, which missed it and why."""
    rows = []
    # Per job: each signature of an indirect record -> the first group owning one, found once
    # (not searched for again for every bug).
    owners: dict[int, dict[str, FindingGroup]] = {}
    for pjobs in by_pattern.values():
        for j in pjobs:
            first: dict[str, FindingGroup] = {}
            for g in grouped[id(j)]:
                for f in g.owned:
                    first.setdefault(f.signature, g)
            owners[id(j)] = first
    categories: dict[int, set[str]] = {}

    def error_categories(job: JobRecord) -> set[str]:
        found = categories.get(id(job))
        if found is None:
            found = categories[id(job)] = {f.category for f in job.findings if f.is_error}
        return found

    for pid, pjobs in by_pattern.items():
        by_variant: dict[str, list[JobRecord]] = defaultdict(list)
        for j in pjobs:
            by_variant[j.variant or "check"].append(j)
        for bug in bugs[pid]:
            vjobs = by_variant[bug.variant]
            saw_jobs = {id(j) for j, _ in bug.groups}
            category = bug.category
            by_tool: dict[str, dict] = {}  # one badge per checker, its records summed
            for j, g in bug.groups:
                badge = by_tool.get(j.tool)
                if badge is None:
                    by_tool[j.tool] = {"tool": j.tool, "bytes": g.total_bytes, "count": g.root.count,
                                       "category": category, "as_part": None}
                else:
                    badge["bytes"] += g.total_bytes
                    badge["count"] += g.root.count
            saw = list(by_tool.values())
            missed = []
            for j in vjobs:
                if id(j) in saw_jobs:
                    continue
                part = owners[id(j)].get(bug.signature)
                if part is not None:  # the checker saw it, as an indirect leak of another root
                    saw.append({"tool": j.tool, "bytes": sum(f.bytes or 0 for f in part.owned
                                                             if f.signature == bug.signature),
                                "count": 1, "category": bug.category, "as_part": part.headline()})
                    continue
                why = ""
                if j.verdict == "blind":
                    why = j.reason
                elif j.status != "ok":
                    why = f"not fully checked: {j.status}" + (f" ({j.signal})" if j.signal else "")
                    reason = job_reason(j)
                    why += f": {reason}" if reason else ""
                elif category in error_categories(j):
                    why = "reported with a different stack"
                missed.append({"tool": j.tool, "why": why, "expected": j.verdict == "blind"})
            rows.append({"pattern": pid, "slug": slug(pid), "variant": bug.variant, "group": bug,
                         "saw": sorted(saw, key=lambda s: s["tool"]), "missed": missed})
    rows.sort(key=lambda r: (r["pattern"], r["variant"], r["group"].rank()))
    return rows


def _stored_source(out: Path, source: SourceFile) -> str | None:
    path = inside(out, source.path)  # never through a symlink out of the results folder
    if path is None:
        return None
    try:
        return path.read_bytes()[:SOURCE_LIMIT].decode("utf-8", "replace")
    except (OSError, ValueError):
        return None


def _variant_sources(out: Path, pjobs: list[JobRecord], variant: str) -> list[tuple[SourceFile, str]]:
    """The sources the run compiled for a variant, read from the results folder."""
    seen: dict[str, tuple[SourceFile, str]] = {}
    for job in pjobs:
        if (job.variant or "check") != variant:
            continue
        for src in job.sources:
            if src.name in seen:
                continue
            text = _stored_source(out, src)
            if text is not None:
                seen[src.name] = (src, text)
    return list(seen.values())


def _write_pattern_pages(env, out: Path, pid: str, pjobs: list[JobRecord], pattern, bugs: list[Bug],
                         growth: list[dict] = (), local_sources: bool = False) -> None:
    sources, diff_text, notes = [], None, []
    shown = [f for j in pjobs for f in j.findings if _shown(f)]
    variants = [v for v in VARIANTS + ("check",) if any((j.variant or "check") == v for j in pjobs)]
    stored: dict[str, list[tuple[SourceFile, str]]] = {v: _variant_sources(out, pjobs, v) for v in variants}
    for variant in variants:
        vfind = [f for j in pjobs if (j.variant or "check") == variant for f in j.findings if f.is_error]
        for src, text in stored[variant]:
            hl = _lines_in(vfind, src.name)
            title = f"{variant} variant" if variant != "check" else display_path(src.origin or src.name)
            sources.append({"title": title, "name": src.name, "lines": source_view(text, hl),
                            "highlighted": len(hl)})
    if pattern is not None:
        missing = [v for v in VARIANTS if v in variants and not stored[v]]
        for variant in missing:
            # Results from before sources were kept: the template as it is now, said so.
            try:
                text = render(pattern, variant)
            except LeakHarnessError:
                continue
            name = f"{pid}-{variant}.c"
            vfind = [f for j in pjobs if j.variant == variant for f in j.findings if f.is_error]
            hl = _lines_in(vfind, name)
            sources.append({"title": f"{variant} variant", "name": name, "lines": source_view(text, hl),
                            "highlighted": len(hl)})
        if missing:
            notes.append("These results hold no copy of the compiled sources (made by an older leakharness): "
                         "the source and the fix shown here are rendered from the pattern's template as it is "
                         "now, which may differ from what ran.")
        diff_text = _stored_diff(pid, stored) if not missing else None
        if diff_text is None:
            try:
                diff_text = pattern_diff(pattern)
            except LeakHarnessError:
                diff_text = None
    elif "check" in variants and not stored["check"] and local_sources:
        for path in _user_sources(shown):
            try:
                text = path.read_bytes()[:SOURCE_LIMIT].decode("utf-8", "replace")
            except OSError:
                continue
            hl = _lines_in(shown, path.name)
            sources.append({"title": display_path(str(path)), "name": path.name, "lines": source_view(text, hl),
                            "highlighted": len(hl)})
        if sources:
            notes.append("These results hold no copy of the compiled sources: the files are shown as they are "
                         "on disk now, which may differ from what ran.")
    pages = paginate(bugs, GROUPS_PER_PAGE)
    base = f"patterns/{slug(pid)}"
    cells = [job_cell(j, out) for j in pjobs]
    flags = flag_matrix(pjobs)
    for i, page in enumerate(pages):
        write_atomic(out / page_name(base, i), env.get_template("pattern.html.j2").render(
            pid=pid, pattern=pattern, jobs=pjobs, cells=cells,
            sources=sources if i == 0 else [], diff=diff_text if i == 0 else None, notes=notes if i == 0 else [],
            groups=page, page=i, pages=len(pages), total_groups=len(bugs), base=slug(pid),
            stack_view=stack_view, is_library=is_library, flags=flags if i == 0 else None,
            growth=growth if i == 0 else [], known=known_boxes(out, pid, page)))


def _stored_diff(pid: str, stored: dict[str, list[tuple[SourceFile, str]]]) -> str | None:
    """leaky -> fixed from the sources the run compiled."""
    def main_text(variant: str) -> str | None:
        files = stored.get(variant) or []
        named = [t for s, t in files if s.name == f"{pid}-{variant}.c"]
        return named[0] if named else (files[0][1] if len(files) == 1 else None)

    leaky, fixed = main_text("leaky"), main_text("fixed")
    if leaky is None or fixed is None:
        return None
    return "".join(difflib.unified_diff(leaky.splitlines(keepends=True), fixed.splitlines(keepends=True),
                                        f"{pid}/leaky.c", f"{pid}/fixed.c"))


def _user_sources(findings: list[Finding], limit: int = 10) -> list[Path]:
    """The user's own source files named by the stacks (that exist here)."""
    seen: dict[str, Path] = {}
    looked: set[tuple] = set()  # what is_library reads of a frame: each judged once
    for f in findings:
        for fr in f.stack + tuple(x for a in f.aux_stacks for x in a.frames):
            if not fr.file or fr.file in seen:
                continue
            key = (fr.function, fr.file, fr.object)
            if key in looked:
                continue
            looked.add(key)
            if not is_library(fr):
                p = Path(fr.file)
                if p.is_file():
                    seen[fr.file] = p
                    if len(seen) >= limit:
                        return list(seen.values())
    return list(seen.values())
