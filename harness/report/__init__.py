"""Reports: HTML people would rather read than logs, SARIF for code scanning, merged shards.

`write_report(inputs, out)` reads results directories (or raw valgrind XML / sanitizer logs),
merges them (shards of one run made on several machines: the same job from two shards is
one job, the same finding in it counted once), and writes into `out`: results.json,
index.html, signatures*.html, patterns/<id>*.html, leakharness.sarif, and copies of the
raw logs, so the folder is self-contained and works offline.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

import jinja2

from .. import __version__
from ..catalog import CHECKERS, VARIANTS, load_catalog
from ..errors import CatalogError, LeakHarnessError
from ..findings import Finding, Frame, is_library
from ..generate import diff as pattern_diff
from ..generate import render
from ..parse import parse_file
from ..results import JobRecord, Results, load_results, write_atomic, write_results
from . import sarif

GROUPS_PER_PAGE = 200
SOURCE_LIMIT = 1 << 20  # bytes of a user's source file shown on a page

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


# --- loading and merging ------------------------------------------------------------------------

def load_input(path: Path) -> tuple[Results, Path]:
    """A results directory, or a raw log file read as a one-job result."""
    path = Path(path)
    if path.is_dir():
        return load_results(path), path
    if not path.exists():
        raise LeakHarnessError(f"{path}: no such results directory or log file")
    log = parse_file(path)
    tool = {"memcheck": "memcheck", "helgrind": "helgrind"}.get(getattr(log, "tool", None) or "", None)
    if tool is None:
        tools = {f.tool for f in log.findings}
        tool = "asan" if tools & {"asan", "lsan"} else (sorted(tools)[0] if tools else "log")
    job = JobRecord(pattern=path.name, variant=None, tool=tool, status="ok", verdict=None, expected=None,
                    partial=log.partial, problems=log.problems, findings=log.findings, logs=(path.name,))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(path.stat().st_mtime))
    return Results(stamp, stamp, (), (job,)), path.parent


def _finding_key(f: Finding) -> tuple:
    return (f.signature, f.kind, f.leak_kind, f.bytes, f.indirect_bytes, f.blocks, f.message)


def merge(loaded: list[tuple[Results, Path]], out: Path) -> Results:
    """Merge shards into one Results whose log paths are relative to `out` (logs copied)."""
    jobs: dict[tuple, JobRecord] = {}
    tools: dict[str, dict] = {}
    started = [r.started for r, _ in loaded if r.started]
    finished = [r.finished for r, _ in loaded if r.finished]
    for index, (results, base) in enumerate(loaded):
        for t in results.tools:
            tools.setdefault(t.get("name", "?"), t)
        for job in results.jobs:
            logs = tuple(_copy_log(base, rel, out, index, len(loaded)) for rel in job.logs)
            job = replace(job, logs=logs)
            key = (job.pattern, job.variant, job.tool)
            if key in jobs:
                old = jobs[key]
                seen = {_finding_key(f) for f in old.findings}
                extra = tuple(f for f in job.findings if _finding_key(f) not in seen)
                job = replace(old, findings=old.findings + extra, logs=old.logs + tuple(
                    lg for lg in logs if lg not in old.logs))
            jobs[key] = job
    return Results(min(started) if started else "", max(finished) if finished else None,
                   tuple(tools.values()), tuple(jobs.values()))


def _copy_log(base: Path, rel: str, out: Path, index: int, shards: int) -> str:
    src = (base / rel)
    if base.resolve() == out.resolve():
        return rel
    target_rel = Path(rel) if shards == 1 else Path(f"shard{index + 1}") / rel
    if Path(rel).is_absolute():
        target_rel = Path("logs") / f"shard{index + 1}" / Path(rel).name
    target = out / target_rel
    if src.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            shutil.copyfile(src, target)
    return str(target_rel)


# --- views --------------------------------------------------------------------------------------

def human_bytes(n: int | None) -> str:
    if n is None:
        return ""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024 / 1024:.1f} MB"


@dataclass
class Group:
    """Findings of one signature within one page's scope."""

    signature: str
    category: str
    findings: list[Finding] = field(default_factory=list)
    jobs: set = field(default_factory=set)  # (variant, checker)

    @property
    def first(self) -> Finding:
        return self.findings[0]

    @property
    def bytes(self) -> int:
        return sum(f.bytes or 0 for f in self.findings)

    @property
    def blocks(self) -> int:
        return sum(f.blocks or 0 for f in self.findings)

    @property
    def count(self) -> int:
        return sum(f.count for f in self.findings)

    @property
    def suppressed(self) -> bool:
        return all(f.suppressed for f in self.findings)


def job_cell(job: JobRecord) -> dict:
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
    status = job.verdict or ("error" if errors else "clean")
    if job.status in ("timeout", "crashed", "build-failed", "tool-missing") and job.verdict != "blind":
        parts.insert(0, job.status + (f" {job.signal}" if job.signal else ""))
    return {"status": status, "verdict": job.verdict, "what": ", ".join(parts) or "clean",
            "reason": job.reason, "job": job, "suppressed": sum(1 for f in job.findings if f.suppressed)}


def slug(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    return keep.strip("._")[:80] or "job"


def paginate(items: list, per_page: int) -> list[list]:
    return [items[i:i + per_page] for i in range(0, len(items), per_page)] or [[]]


def page_name(base: str, index: int) -> str:
    return f"{base}.html" if index == 0 else f"{base}-{index + 1}.html"


def _groups(jobs: Iterable[JobRecord]) -> list[Group]:
    groups: dict[str, Group] = {}
    for job in jobs:
        for f in job.findings:
            if not (f.is_error or f.suppressed):
                continue
            g = groups.get(f.signature)
            if g is None:
                g = groups[f.signature] = Group(f.signature, f.category)
            g.findings.append(f)
            g.jobs.add((job.variant or "check", job.tool))
    return sorted(groups.values(), key=lambda g: (-len(g.findings), g.signature))


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
    """Lines of file_name where memory was allocated, freed or touched, per the stacks."""
    lines = set()
    for f in findings:
        stacks = [f.stack] + [a.frames for a in f.aux_stacks]
        for stack in stacks:
            for fr in stack:
                if fr.file and fr.line and os.path.basename(fr.file) == file_name:
                    lines.add(fr.line)
                    break  # the innermost frame in the program's source is the one to mark
    return lines


# --- rendering ----------------------------------------------------------------------------------

def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,  # everything from programs and logs is text, never markup
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["bytes"] = human_bytes
    env.filters["basename"] = lambda p: os.path.basename(p or "")
    env.globals.update(CSP=CSP, SCRIPT=SCRIPT, version=__version__, CHECKERS=CHECKERS, slug=slug,
                       page_name=page_name)
    return env


def write_report(inputs: list[Path], out: Path, fixtures: Path | None = None,
                 suppressions: list | None = None) -> Path:
    """Render (and merge) results into `out`; returns the path of index.html."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    loaded = [load_input(p) for p in inputs]
    results = merge(loaded, out)
    if suppressions:
        from ..suppress import apply

        results = replace(results, jobs=tuple(replace(j, findings=apply(j.findings, suppressions))
                                              for j in results.jobs))
    if not (len(inputs) == 1 and Path(inputs[0]).resolve() == out.resolve()) or suppressions:
        write_results(out, results)
    env = _env()
    jobs = sorted(results.jobs, key=lambda j: (j.pattern, VARIANTS.index(j.variant) if j.variant in VARIANTS else 9,
                                              CHECKERS.index(j.tool) if j.tool in CHECKERS else 99))
    patterns = _catalog(fixtures, {j.pattern for j in jobs if j.variant})

    by_pattern: dict[str, list[JobRecord]] = defaultdict(list)
    for j in jobs:
        by_pattern[j.pattern].append(j)
    columns = [(v, c) for v in VARIANTS + ("check",) for c in CHECKERS
               if any((j.variant or "check") == v and j.tool == c for j in jobs)]
    rows = []
    for pid, pjobs in by_pattern.items():
        cells = {((j.variant or "check"), j.tool): job_cell(j) for j in pjobs}
        rows.append({"id": pid, "slug": slug(pid), "title": patterns[pid].title if pid in patterns else pid,
                     "cells": cells, "failed": any(c["status"] == "fail" for c in cells.values())})
    totals = {v: sum(1 for j in jobs if j.verdict == v) for v in ("pass", "fail", "blind")}
    totals["jobs"] = len(jobs)
    totals["findings"] = sum(1 for j in jobs for f in j.findings if f.is_error)
    totals["suppressed"] = sum(1 for j in jobs for f in j.findings if f.suppressed)
    totals["with_errors"] = sum(1 for j in jobs if any(f.is_error for f in j.findings))
    slowest = sorted(jobs, key=lambda j: -j.duration_s)[:10]

    # Pages of an earlier report in the same folder would outlive it where there are fewer now.
    for stale in [*out.glob("signatures*.html"), *(out / "patterns").glob("*.html")]:
        stale.unlink()
    cross = _cross_rows(by_pattern, patterns)
    cross_pages = paginate(cross, GROUPS_PER_PAGE)
    for i, page in enumerate(cross_pages):
        write_atomic(out / page_name("signatures", i), env.get_template("signatures.html.j2").render(
            rows=page, page=i, pages=len(cross_pages), total=len(cross), results=results))

    (out / "patterns").mkdir(exist_ok=True)
    for pid, pjobs in by_pattern.items():
        _write_pattern_pages(env, out, pid, pjobs, patterns.get(pid))

    write_atomic(out / "index.html", env.get_template("index.html.j2").render(
        results=results, rows=rows, columns=columns, totals=totals, slowest=slowest,
        cross_total=len(cross), checkers=sorted({c for _, c in columns}, key=CHECKERS.index)
        if all(c in CHECKERS for _, c in columns) else sorted({c for _, c in columns})))
    write_atomic(out / "leakharness.sarif", sarif.dumps(results, out))
    return out / "index.html"


def _catalog(fixtures: Path | None, ids: set[str]) -> dict:
    if not ids:
        return {}
    try:
        found = load_catalog(fixtures)
    except (CatalogError, OSError):
        return {}
    return {p.id: p for p in found if p.id in ids}


def _cross_rows(by_pattern: dict[str, list[JobRecord]], patterns: dict) -> list[dict]:
    """One row per (pattern, variant, signature): which checkers saw it, which missed it and why."""
    rows = []
    for pid, pjobs in by_pattern.items():
        by_variant: dict[str, list[JobRecord]] = defaultdict(list)
        for j in pjobs:
            by_variant[j.variant or "check"].append(j)
        for variant, vjobs in by_variant.items():
            for g in _groups(vjobs):
                saw, missed = [], []
                for j in vjobs:
                    mine = [f for f in j.findings if f.signature == g.signature]
                    if mine:
                        saw.append({"tool": j.tool, "bytes": sum(f.bytes or 0 for f in mine),
                                    "count": sum(f.count for f in mine), "category": g.category})
                    else:
                        why = ""
                        if j.verdict == "blind":
                            why = j.reason
                        elif j.status != "ok":
                            why = f"run ended: {j.status}" + (f" ({j.signal})" if j.signal else "")
                        elif any(f.category == g.category and f.is_error for f in j.findings):
                            why = "reported with a different stack"
                        missed.append({"tool": j.tool, "why": why, "expected": j.verdict == "blind"})
                rows.append({"pattern": pid, "slug": slug(pid), "variant": variant, "group": g,
                             "saw": saw, "missed": missed})
    rows.sort(key=lambda r: (r["pattern"], r["variant"], -len(r["saw"]), r["group"].signature))
    return rows


def _write_pattern_pages(env, out: Path, pid: str, pjobs: list[JobRecord], pattern) -> None:
    sources, diff_text, description = [], None, None
    all_findings = [f for j in pjobs for f in j.findings if f.is_error or f.suppressed]
    if pattern is not None:
        description = pattern
        for variant in VARIANTS:
            try:
                text = render(pattern, variant)
            except LeakHarnessError:
                continue
            vfind = [f for j in pjobs if j.variant == variant for f in j.findings if f.is_error]
            hl = _lines_in(vfind, f"{pid}-{variant}.c")
            sources.append({"title": f"{variant} variant", "name": f"{pid}-{variant}.c",
                            "lines": source_view(text, hl), "highlighted": len(hl)})
        try:
            diff_text = pattern_diff(pattern)
        except LeakHarnessError:
            diff_text = None
    else:
        for path in _user_sources(all_findings):
            try:
                text = path.read_bytes()[:SOURCE_LIMIT].decode("utf-8", "replace")
            except OSError:
                continue
            hl = _lines_in(all_findings, path.name)
            sources.append({"title": str(path), "name": path.name, "lines": source_view(text, hl),
                            "highlighted": len(hl)})
    groups = _groups(pjobs)
    pages = paginate(groups, GROUPS_PER_PAGE)
    base = f"patterns/{slug(pid)}"
    for i, page in enumerate(pages):
        write_atomic(out / page_name(base, i), env.get_template("pattern.html.j2").render(
            pid=pid, pattern=description, jobs=pjobs, cells=[job_cell(j) for j in pjobs],
            sources=sources if i == 0 else [], diff=diff_text if i == 0 else None,
            groups=page, page=i, pages=len(pages), total_groups=len(groups), base=slug(pid),
            stack_view=stack_view, is_library=is_library))


def _user_sources(findings: list[Finding], limit: int = 10) -> list[Path]:
    """The user's own source files named by the stacks (that exist here)."""
    seen: dict[str, Path] = {}
    for f in findings:
        for fr in f.stack + tuple(x for a in f.aux_stacks for x in a.frames):
            if fr.file and not is_library(fr) and fr.file not in seen:
                p = Path(fr.file)
                if p.is_file():
                    seen[fr.file] = p
                    if len(seen) >= limit:
                        return list(seen.values())
    return list(seen.values())
