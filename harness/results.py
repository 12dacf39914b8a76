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

import hashlib
import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from . import validate
from .errors import LeakHarnessError, naming
from .findings import Finding

from .judge import VERDICTS

SCHEMA = "leakharness/results/1"


def write_atomic(path: Path, text: str) -> None:
    write_atomic_with(path, lambda fh: fh.write(text))


def write_atomic_with(path: Path, fill) -> None:
    """Like write_atomic, the text written by `fill(file)` as it goes (a big results.json is
    never one string in memory)."""
    # A name no other writer uses (this process and thread), created exclusively, readable by
    # everyone as the umask allows: what mkstemp and a chmod did, in one call (a re-run writes
    # hundreds of job files).
    tmp = os.path.join(path.parent, f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with naming(path, instead_of=tmp):  # an error names the file written, never its temporary name
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:  # left by a writer of this pid and thread that was killed
            os.unlink(tmp)
            fd = os.open(tmp, flags, 0o666)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fill(fh)
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
        """Checked field by field (validate.FieldError): the path must stay inside the folder."""
        data = validate.mapping(data, "")
        return cls(name=validate.text(data.get("name"), "name", limit=4096),
                   path=validate.relative_path(data.get("path"), "path"),
                   origin=validate.text(data.get("origin"), "origin", optional=True, limit=4096))


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
        name = f"{self.pattern}.{self.variant or 'check'}.{self.tool}"
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        if safe != name:  # `dig+x` and `dig_x` are two jobs: never one file
            safe += "-" + hashlib.sha1(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        return safe + ".json"

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
        """A job as results.json or a job file holds it, checked field by field: a wrong field is
        a validate.FieldError naming it (results.py adds the file and the job)."""
        v = validate
        data = v.mapping(data, "")

        def each(key: str, one):
            return v.items(data.get(key), key, one)

        def source(value, field):
            try:
                return SourceFile.from_dict(value)
            except v.FieldError as exc:
                raise exc.under(field) from None

        return cls(
            pattern=v.name(data.get("pattern"), "pattern"), variant=v.name(data.get("variant"), "variant", optional=True),
            tool=v.name(data.get("tool"), "tool"), status=v.choice(data.get("status"), "status", v.STATUSES),
            verdict=v.choice(data.get("verdict"), "verdict", VERDICTS, optional=True),
            expected=v.expected(data.get("expected"), "expected"),
            reason=v.text(data.get("reason", ""), "reason") or "",
            duration_s=v.seconds(data.get("duration_s"), "duration_s"),
            exit_code=v.whole(data.get("exit_code"), "exit_code", optional=True, low=-v.MAX_INT),
            signal=v.text(data.get("signal"), "signal", optional=True, limit=64),
            partial=v.flag(data.get("partial"), "partial"),
            problems=each("problems", lambda x, f: v.text(x, f)),
            cached=v.flag(data.get("cached"), "cached"), message=v.text(data.get("message", ""), "message") or "",
            findings=each("findings", v.finding),
            logs=each("logs", v.relative_path),
            sources=each("sources", source),
            not_cached=v.text(data.get("not_cached") or "", "not_cached") or "",
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
    # The run's identity and its part of the plan (shard.RunPlan.to_dict()): what a merge checks
    # the shards of one run against.  None for results made before it was recorded.
    run: dict[str, Any] | None = None
    # Stopped before its end (Ctrl-C, SIGTERM, a pytest session interrupted): the jobs are those
    # that finished, never the whole run.
    interrupted: bool = False

    def to_dict(self, jobs: bool = True) -> dict[str, Any]:
        data = {"schema": SCHEMA, "started": self.started, "finished": self.finished,
                "tools": list(self.tools), "jobs": [j.to_dict() for j in self.jobs] if jobs else None}
        if not jobs:
            del data["jobs"]
        if self.growth:
            data["growth"] = list(self.growth)
        if self.run is not None:
            data["run"] = self.run
        if self.interrupted:
            data["interrupted"] = True
        return data


def write_job(out_dir: Path, record: JobRecord) -> Path:
    """DIR/jobs/NAME.json, written in place: a file cut short by a kill does not parse and is
    skipped (read_jobs), so it needs no temporary file and rename, which were most of what a
    cached job cost to write on a slow file system."""
    path = Path(out_dir) / "jobs" / record.file_name
    try:
        fh = open(path, "w", encoding="utf-8")
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "w", encoding="utf-8")
    with naming(path), fh:
        _write_job(fh, record)
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
    """Every job file in DIR/jobs.  One cut short (write_job writes in place: a run killed while
    writing it) is skipped; one damaged otherwise (edited, a symbolic link) is one line naming
    it, never a report silently a job short."""
    records = []
    for path in sorted((Path(out_dir) / "jobs").glob("*.json")):
        try:
            if path.is_symlink():
                raise ValueError("a symbolic link: a results folder never reads a file from elsewhere")
            if not path.is_file():
                raise ValueError("not a regular file")
            text = path.read_text(encoding="utf-8")
            try:
                data = validate.loads_json(text)
            except json.JSONDecodeError as exc:
                if exc.pos >= len(text.rstrip()) - 1:
                    continue  # cut short where the text ends: the run was killed while writing it
                raise
            records.append(JobRecord.from_dict(data))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LeakHarnessError(f"{path}: damaged job file ({validate.printable(str(exc), 200)})") from None
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
    whatever the jobs/ folder holds.  Every field is checked (validate.py): a wrong one is one
    line naming the file, the job and the field."""
    out_dir = Path(out_dir)
    path = out_dir / "results.json"
    for own in (path, out_dir / "jobs"):
        if own.is_symlink():  # a results folder never makes leakharness read a file from elsewhere
            raise LeakHarnessError(f"{own}: a symbolic link (to {validate.printable(os.readlink(own))}); a results "
                                   f"folder's files are read only from inside it")
    if path.exists() and not path.is_file():  # a FIFO would block the read forever, a device never end
        raise LeakHarnessError(f"{path}: not a regular file")
    try:
        data = validate.loads_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        data = None
    except ValueError as exc:  # cut short or not JSON: a run killed while writing
        if not (out_dir / "jobs").is_dir():
            raise LeakHarnessError(f"{path}: damaged results file ({str(exc)[:200]}) and no jobs/ folder "
                                   f"to recover from") from None
        data = None
    if data is not None:
        return results_from_dict(data, path)
    jobs = read_jobs(out_dir)
    if not jobs and not (out_dir / "jobs").is_dir():
        raise LeakHarnessError(f"{out_dir}: not a results directory (no results.json, no jobs/)")
    # No results.json (a run killed before writing it, or still running): what finished, never
    # the whole run.
    return Results("", None, (), tuple(jobs), interrupted=True)


def results_from_dict(data: Any, path: Path) -> Results:
    """results.json's content, checked: LeakHarnessError naming the file, the job and the field."""
    v = validate
    if not isinstance(data, dict):
        raise LeakHarnessError(f"{path}: not a leakharness results file (a JSON {type(data).__name__}, "
                               f"not an object)")
    if data.get("schema") != SCHEMA:
        raise LeakHarnessError(f"{path}: schema {str(data.get('schema'))[:60]!r} is not {SCHEMA}")
    try:
        started = v.text(data.get("started") or "", "started", limit=64) or ""
        finished = v.text(data.get("finished"), "finished", optional=True, limit=64)
        tools = v.items(data.get("tools"), "tools", _tool)
        growth = v.items(data.get("growth"), "growth", lambda g, f: v.mapping(g, f))
        run = _run_info(data.get("run"))
        interrupted = v.flag(data.get("interrupted"), "interrupted")
        raw_jobs = data.get("jobs")
        if not isinstance(raw_jobs, list):
            raise v.FieldError("jobs", f"must be a list, not {type(raw_jobs).__name__}")
    except v.FieldError as exc:
        raise LeakHarnessError(f"{path}: {exc}") from None
    jobs = []
    for index, raw in enumerate(raw_jobs):
        try:
            jobs.append(JobRecord.from_dict(raw))
        except v.FieldError as exc:
            raise LeakHarnessError(f"{path}: job {index + 1} ({_job_label(raw)}): {exc}") from None
        except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError) as exc:
            raise LeakHarnessError(f"{path}: job {index + 1} ({_job_label(raw)}): cannot be read: "
                                   f"{str(exc)[:200]}") from None
    return Results(started, finished, tools, tuple(jobs), growth, run, interrupted)


def _job_label(raw: Any) -> str:
    if not isinstance(raw, dict):
        return "not an object"
    parts = [raw.get(k) for k in ("pattern", "variant", "tool")]
    if all(isinstance(p, str) or p is None for p in parts) and parts[0] and parts[2]:
        name = f"{parts[0]}::{parts[1]}[{parts[2]}]" if parts[1] else f"{parts[0]}[{parts[2]}]"
        return validate.printable(name)
    return "unnamed"


def _tool(value: Any, field: str) -> dict[str, str]:
    data = validate.mapping(value, field)
    return {"name": validate.text(data.get("name"), f"{field}.name", limit=256),
            "version": validate.text(data.get("version", ""), f"{field}.version", limit=1024) or ""}


def _run_info(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    from .shard import RunPlan

    return RunPlan.from_dict(value).to_dict()


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


def merge(loaded: list[tuple[Results, Path]], out: Path, check_parts: bool = True) -> Results:
    """Merge results folders (shards of one run, or any results) into one Results whose log and
    source paths are relative to `out` (the files copied there, from inside their own folder
    only).  The same job from two inputs is one job: the worse of the copies, judged again
    (judge.rejudge), with the conflict said in its reason when they disagree; never one copy's
    verdict beside another's findings.  Jobs the plan of a sharded run holds and no part does
    are added as not run (shard.coverage), unless check_parts is False (a run rendering its own
    folder: a shard's own report is that shard's)."""
    from .judge import outcome, rejudge, severity
    from .shard import NOT_RUN, coverage, split_name

    labels = [str(base) for _, base in loaded]
    cover = coverage([(label, results) for label, (results, _) in zip(labels, loaded)] if check_parts else [])
    copies: dict[tuple, list[tuple[str, JobRecord]]] = {}
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
        where = base / "results.json"
        same = base.resolve() == out.resolve()
        within = validate.Within(base)
        for job in results.jobs:
            logs = tuple(_copy_file(base, rel, out, index, len(loaded), where, job, "logs", same, within)
                         for rel in job.logs + _own_logs(job, within))
            sources = tuple(replace(s, path=_copy_file(base, s.path, out, index, len(loaded), where, job, "sources",
                                                       same, within))
                            for s in job.sources)
            job = rejudge(replace(job, logs=logs, sources=sources))
            copies.setdefault((job.pattern, job.variant, job.tool), []).append((labels[index], job))
    jobs = []
    for key, held in copies.items():
        real = [(label, j) for label, j in held if NOT_RUN not in j.problems] or held
        label, kept = max(real, key=lambda lj: severity(lj[1]))  # the first of the worst
        seen = {outcome(j).name for _, j in real}
        if len(seen) > 1:
            said = "; ".join(f"{outcome(j).label} in {lb}" for lb, j in real)
            note = f"conflicting copies of this job: {said}; shown: the worse, from {label}"
            kept = replace(kept, reason=f"{note}. {kept.reason}" if kept.reason else note,
                           problems=kept.problems + (note,))
        jobs.append(kept)
    held_names = {j.name for j in jobs}
    for name, why in cover.missing:
        if name in held_names:
            continue
        pattern, variant, tool = split_name(name)
        jobs.append(JobRecord(pattern=pattern, variant=variant, tool=tool, status="incomplete",
                              verdict="fail" if variant else None, expected=None,
                              reason=f"not run: {why}", message=f"not run: {why}", problems=(NOT_RUN,)))
        held_names.add(name)
    return Results(min(started) if started else "", max(finished) if finished else None,
                   tuple(tools.values()), tuple(jobs), tuple(growth.values()),
                   cover.plan.to_dict() if cover.plan else (loaded[0][0].run if len(loaded) == 1 else None),
                   any(r.interrupted for r, _ in loaded))


def _own_logs(job: JobRecord, within: validate.Within) -> tuple[str, ...]:
    """The program's stdout.txt and stderr.txt where the run keeps them, when they are not among
    the job's logs: a report links them (the reason a job is incomplete is often there).  Only
    files really inside the folder (the job's names were checked on load: no separator)."""
    folder = Path("logs") / job.pattern / (job.variant or "check") / job.tool
    return tuple(rel.as_posix() for rel in (folder / "stdout.txt", folder / "stderr.txt")
                 if rel.as_posix() not in job.logs and within.inside(rel.as_posix()) is not None)


def _copy_file(base: Path, rel: str, out: Path, index: int, shards: int, where: Path,
               job: JobRecord, field_name: str, same: bool, within: validate.Within) -> str:
    """Copy base/rel to out (under shardN/ when several inputs) and return its path there.
    rel was checked on load (relative, no '..'); a file that resolves outside base (a symlink)
    is refused: a results folder never makes a report read a file from elsewhere."""
    if within.escapes(rel):
        what = f"job {validate.printable(job.name)}: " if job is not None else ""
        raise LeakHarnessError(f"{where or base}: {what}{field_name}: {rel} leads outside {base} (a symlink); refused")
    if same:  # base is out: nothing to copy
        return rel
    target_rel = Path(rel) if shards == 1 else Path(f"shard{index + 1}") / rel
    src = within.inside(rel)
    target = out / target_rel
    if src is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Always: a report made again into the same folder from another run links this run's
        # logs, never the last one's left there (the folder holds no symbolic link: outdir).
        shutil.copyfile(src, target)
    return target_rel.as_posix()


def combine(inputs: Iterable[Path], out: Path, suppressions: list | None = None) -> Results:
    """Read results folders and raw logs, merge them into `out` (files copied, results.json
    written there unless `out` is the one folder read and nothing changed), and mark what the
    suppressions match."""
    results, changed = combined(inputs, out, suppressions)
    if changed:
        write_results(out, results)
    return results


def in_background(fn: Callable[..., Any], *args) -> Callable[[], None]:
    """fn(*args) in a thread of its own; the function returned waits for it and raises what it
    raised.  For a big file written while the report is made: the time the system takes to
    write it (a results.json of 50,000 findings is 68 MB) is not spent waiting."""
    failed: list[BaseException] = []

    def work() -> None:
        try:
            fn(*args)
        except BaseException as exc:  # handed to whoever waits
            failed.append(exc)

    thread = threading.Thread(target=work, name=f"leakharness-{getattr(fn, '__name__', 'write')}", daemon=True)
    thread.start()

    def wait() -> None:
        thread.join()
        if failed:
            raise failed[0]

    return wait


def combined(inputs: Iterable[Path], out: Path, suppressions: list | None = None) -> tuple[Results, bool]:
    """combine() without writing results.json: (the results, whether out's results.json must be
    written with them)."""
    inputs = [Path(p) for p in inputs]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    in_place = len(inputs) == 1 and inputs[0].resolve() == out.resolve()
    results = merge([load_input(p) for p in inputs], out, check_parts=not in_place)
    if suppressions:
        from .judge import rejudge
        from .suppress import apply

        # Suppressed findings fail nothing: each job judged again with them marked.
        results = replace(results, jobs=tuple(rejudge(replace(j, findings=apply(j.findings, suppressions)))
                                              for j in results.jobs))
    return results, bool(not in_place or suppressions)
