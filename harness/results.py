"""results.json and the per-job files: the one format every later stage reads, and `combine`,
which reads and merges results (shards of one run, raw logs) for the report.

Each finished job is written at once to DIR/jobs/<name>.json (temporary file, then rename),
so a crash or Ctrl-C loses only the jobs still running; DIR/results.json gathers them.
Schema "leakharness/results/1":
{"schema", "started", "finished", "tools": [{"name", "version"}],
 "jobs": [{"pattern", "variant", "tool", "status", "verdict", "expected", "reason",
           "duration_s", "exit_code", "signal", "partial", "problems", "cached", "not_cached",
           "findings": [...], "logs": [paths relative to DIR],
           "sources": [{"name", "path" (relative to DIR), "origin"}]}]}
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from .errors import LeakHarnessError
from .findings import Finding

SCHEMA = "leakharness/results/1"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def write_atomic(path: Path, text: str) -> None:
    write_atomic_with(path, lambda fh: fh.write(text))


def write_atomic_with(path: Path, fill) -> None:
    """Like write_atomic, the text written by `fill(file)` as it goes (a big results.json is
    never one string in memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fill(fh)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are for everyone to read
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@dataclass(frozen=True)
class SourceFile:
    """A source file exactly as it was compiled for a job, kept in the results folder so that a
    report rendered later shows what really ran, not what the template says today."""

    name: str  # the file name the compiler saw (debug info and findings name it)
    path: str  # where the copy is, relative to the results folder
    origin: str | None = None  # the user's own file it was copied from; None for a rendered fixture

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "origin": self.origin}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SourceFile":
        return cls(name=data["name"], path=data["path"], origin=data.get("origin"))


@dataclass(frozen=True)
class JobRecord:
    """One job as results.json stores it."""

    pattern: str
    variant: str | None
    tool: str
    status: str
    verdict: str | None  # pass, fail, blind; None for `check`
    expected: dict[str, Any] | None
    reason: str = ""
    duration_s: float = 0.0
    exit_code: int | None = None
    signal: str | None = None
    partial: bool = False
    problems: tuple[str, ...] = ()
    cached: bool = False
    message: str = ""
    findings: tuple[Finding, ...] = ()
    logs: tuple[str, ...] = ()
    sources: tuple[SourceFile, ...] = ()
    not_cached: str = ""  # why this complete run's result was not stored: what it read is not known

    @property
    def name(self) -> str:
        return f"{self.pattern}::{self.variant}[{self.tool}]" if self.variant else f"{self.pattern}[{self.tool}]"

    @property
    def file_name(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.pattern}.{self.variant or 'check'}.{self.tool}") + ".json"

    def to_dict(self, findings: bool = True) -> dict[str, Any]:
        """findings=False: without "findings" (write_results writes them as a stream)."""
        data = {
            "pattern": self.pattern, "variant": self.variant, "tool": self.tool,
            "status": self.status, "verdict": self.verdict, "expected": self.expected,
            "reason": self.reason, "duration_s": round(self.duration_s, 3),
            "exit_code": self.exit_code, "signal": self.signal, "partial": self.partial,
            "problems": list(self.problems), "cached": self.cached, "message": self.message,
            "findings": [f.to_dict() for f in self.findings] if findings else None, "logs": list(self.logs),
            "sources": [s.to_dict() for s in self.sources], "not_cached": self.not_cached,
        }
        if not findings:
            del data["findings"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobRecord":
        return cls(
            pattern=data["pattern"], variant=data.get("variant"), tool=data["tool"],
            status=data["status"], verdict=data.get("verdict"), expected=data.get("expected"),
            reason=data.get("reason", ""), duration_s=float(data.get("duration_s") or 0),
            exit_code=data.get("exit_code"), signal=data.get("signal"),
            partial=bool(data.get("partial")), problems=tuple(data.get("problems", ())),
            cached=bool(data.get("cached")), message=data.get("message", ""),
            findings=tuple(Finding.from_dict(f) for f in data.get("findings", ())),
            logs=tuple(data.get("logs", ())),
            sources=tuple(SourceFile.from_dict(s) for s in data.get("sources", ())),
            not_cached=str(data.get("not_cached") or ""),
        )


@dataclass(frozen=True)
class Results:
    started: str
    finished: str | None
    tools: tuple[dict[str, str], ...]
    jobs: tuple[JobRecord, ...] = field(default=())
    # Leak growth fits (growthrun.GrowthEntry.to_dict()): per program, the lost bytes' rate per
    # operation and one-time part, in total and per signature.  Absent when no --growth.
    growth: tuple[dict[str, Any], ...] = field(default=())

    def to_dict(self, jobs: bool = True) -> dict[str, Any]:
        data = {"schema": SCHEMA, "started": self.started, "finished": self.finished,
                "tools": list(self.tools), "jobs": [j.to_dict() for j in self.jobs] if jobs else None}
        if not jobs:
            del data["jobs"]
        if self.growth:
            data["growth"] = list(self.growth)
        return data


def write_job(out_dir: Path, record: JobRecord) -> Path:
    path = Path(out_dir) / "jobs" / record.file_name
    write_atomic_with(path, lambda fh: _write_job(fh, record))
    return path


def _write_job(fh, record: JobRecord) -> None:
    """A job's JSON, its findings by report.findings_json's writer (as their to_dict)."""
    from .report.findings_json import FindingsWriter

    fh.write(json.dumps(record.to_dict(findings=False), separators=(",", ":"))[:-1] + ',"findings":')
    writer = FindingsWriter(fh)
    writer.write(record.findings)
    writer.close()
    fh.write("}")


def read_jobs(out_dir: Path) -> list[JobRecord]:
    """Every job file in DIR/jobs; a damaged one is skipped (it was being written when killed)."""
    records = []
    for path in sorted((Path(out_dir) / "jobs").glob("*.json")):
        try:
            records.append(JobRecord.from_dict(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return records


def write_results(out_dir: Path, results: Results) -> Path:
    """DIR/results.json, written as it goes: each job's findings by report.findings_json's
    writer (the same JSON as their to_dict, made a few times faster), so a run of 50,000
    findings is never one string, nor 50,000 dictionaries, in memory."""
    path = Path(out_dir) / "results.json"

    def fill(fh) -> None:
        # Compact: with indent, json falls back to its pure-Python encoder, ten times slower.
        head = json.dumps(results.to_dict(jobs=False), separators=(",", ":"))
        fh.write(head[:-1] + ',"jobs":[')
        for n, job in enumerate(results.jobs):
            if n:
                fh.write(",")
            _write_job(fh, job)
        fh.write("]}")

    write_atomic_with(path, fill)
    return path


def load_results(out_dir: Path) -> Results:
    """A results directory: results.json, or, when it is missing or damaged (a killed run),
    whatever the jobs/ folder holds."""
    out_dir = Path(out_dir)
    path = out_dir / "results.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise LeakHarnessError(f"{path}: not a leakharness results file (a JSON {type(data).__name__}, "
                                   f"not an object)")
        if data.get("schema") != SCHEMA:
            raise LeakHarnessError(f"{path}: schema {data.get('schema')!r} is not {SCHEMA}")
        return Results(data.get("started", ""), data.get("finished"), tuple(data.get("tools", ())),
                       tuple(JobRecord.from_dict(j) for j in data.get("jobs", ())),
                       tuple(g for g in data.get("growth", ()) if isinstance(g, dict)))
    except FileNotFoundError:
        pass
    except (ValueError, KeyError, TypeError) as exc:
        if not (out_dir / "jobs").is_dir():
            raise LeakHarnessError(f"{path}: damaged results file ({exc}) and no jobs/ folder to recover from") from None
    jobs = read_jobs(out_dir)
    if not jobs and not (out_dir / "jobs").is_dir():
        raise LeakHarnessError(f"{out_dir}: not a results directory (no results.json, no jobs/)")
    return Results("", None, (), tuple(jobs))


def relative_logs(paths: Iterable[Path], out_dir: Path) -> tuple[str, ...]:
    out = []
    for p in paths:
        try:
            out.append(str(Path(p).resolve().relative_to(Path(out_dir).resolve())))
        except ValueError:
            out.append(str(p))
    return tuple(out)


# --- reading and merging results for a report -------------------------------------------------

def load_input(path: Path) -> tuple[Results, Path]:
    """A results directory, or a raw log file read as a one-job result; with the folder its
    relative paths start from."""
    path = Path(path)
    if path.is_dir():
        return load_results(path), path
    if not path.exists():
        raise LeakHarnessError(f"{path}: no such results directory or log file")
    from . import checkers
    from .parsers import parse_file  # only for raw logs: a results folder needs no parser

    log = parse_file(path)
    # The checker whose logs name the tool that wrote this one (valgrind's XML says its tool;
    # a sanitizer's findings say theirs).
    tools = [getattr(log, "tool", None)] + sorted({f.tool for f in log.findings})
    tool = next((checkers.of_log_tool(t) for t in tools if checkers.of_log_tool(t)), None)
    if tool is None:
        tool = next((t for t in tools if t), "log")
    job = JobRecord(pattern=path.name, variant=None, tool=tool, status="ok", verdict=None, expected=None,
                    partial=log.partial, problems=log.problems, findings=log.findings, logs=(path.name,))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(path.stat().st_mtime))
    return Results(stamp, stamp, (), (job,)), path.parent


def _finding_key(f: Finding) -> tuple:
    return (f.signature, f.kind, f.leak_kind, f.bytes, f.indirect_bytes, f.blocks, f.message)


def merge(loaded: list[tuple[Results, Path]], out: Path) -> Results:
    """Merge shards into one Results whose log and source paths are relative to `out` (the
    files copied there).  The same job from two shards is one job, the same finding in it
    counted once."""
    jobs: dict[tuple, JobRecord] = {}
    tools: dict[str, dict] = {}
    started = [r.started for r, _ in loaded if r.started]
    finished = [r.finished for r, _ in loaded if r.finished]
    growth: dict[str, dict] = {}
    for index, (results, base) in enumerate(loaded):
        for t in results.tools:
            tools.setdefault(t.get("name", "?"), t)
        for entry in results.growth:
            key = json.dumps([entry.get(k) for k in ("pattern", "variant", "checker", "iterations")], default=str)
            # Each shard of a --growth run may fit the same program: one entry, a complete fit first.
            if key not in growth or (growth[key].get("status") != "ok" and entry.get("status") == "ok"):
                growth[key] = entry
        for job in results.jobs:
            logs = tuple(_copy_file(base, rel, out, index, len(loaded)) for rel in job.logs + _own_logs(job, base))
            sources = tuple(replace(s, path=_copy_file(base, s.path, out, index, len(loaded))) for s in job.sources)
            job = replace(job, logs=logs, sources=sources)
            key = (job.pattern, job.variant, job.tool)
            if key in jobs:
                old = jobs[key]
                seen = {_finding_key(f) for f in old.findings}
                extra = tuple(f for f in job.findings if _finding_key(f) not in seen)
                job = replace(old, findings=old.findings + extra,
                              logs=old.logs + tuple(lg for lg in logs if lg not in old.logs),
                              sources=old.sources or sources)
            jobs[key] = job
    return Results(min(started) if started else "", max(finished) if finished else None,
                   tuple(tools.values()), tuple(jobs.values()), tuple(growth.values()))


def _own_logs(job: JobRecord, base: Path) -> tuple[str, ...]:
    """The program's stdout.txt and stderr.txt where the run keeps them, when they are not among
    the job's logs: a report links them (the reason a job is incomplete is often there)."""
    folder = Path("logs") / job.pattern / (job.variant or "check") / job.tool
    return tuple(rel.as_posix() for rel in (folder / "stdout.txt", folder / "stderr.txt")
                 if rel.as_posix() not in job.logs and (base / rel).is_file())


def _copy_file(base: Path, rel: str, out: Path, index: int, shards: int) -> str:
    src = base / rel
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


def combine(inputs: Iterable[Path], out: Path, suppressions: list | None = None) -> Results:
    """Read results folders and raw logs, merge them into `out` (files copied, results.json
    written there unless `out` is the one folder read and nothing changed), and mark what the
    suppressions match."""
    inputs = [Path(p) for p in inputs]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = merge([load_input(p) for p in inputs], out)
    if suppressions:
        from .suppress import apply

        results = replace(results, jobs=tuple(replace(j, findings=apply(j.findings, suppressions))
                                              for j in results.jobs))
    if not (len(inputs) == 1 and inputs[0].resolve() == out.resolve()) or suppressions:
        write_results(out, results)
    return results
