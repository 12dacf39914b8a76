"""Run many jobs in parallel, robustly, and write each one as soon as it ends.

A task is one program under one checker: build it (cached), reuse a cached result or run it,
judge it, write DIR/jobs/<job>.json atomically.  Slow tasks start first (valgrind, then the
longest by the last measured durations) so that the run ends as soon as the slowest job
allows; compiling one task overlaps with running another.  On Ctrl-C or SIGTERM every
running job's process group is killed, nothing new starts, and every finished job stays.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import queue
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import checkers, facts, inputs, supervise
from . import twin as twin_mod
from . import run as run_mod
from . import suppress
from .build import Build, compiler_identity, openssl_flags
from .errors import BuildError
from .judge import Verdict, judge, outcome
from .outdir import claim
from .results import (JobRecord, Results, SourceFile, in_background, read_jobs, relative_logs, write_atomic, write_job,
                      write_results)
from .resultcache import CACHEABLE, ResultCache, job_key, trim
from .jobs import Job, RunResult
from .tasks import Task, estimate


class Interrupted(Exception):
    """The run was stopped (Ctrl-C, SIGTERM); finished jobs are written."""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def tool_versions(names, cc: str) -> tuple[dict[str, str], ...]:
    """What did the checking, for results.json: each checker's tools, the compiler, OpenSSL."""
    tools: dict[str, str] = {}
    for name in names:
        if checkers.known(name):
            for tool, version in checkers.get(name).tool_versions():
                tools.setdefault(tool, version)
    try:
        tools.setdefault(cc, compiler_identity(cc).split(" ", 1)[-1])
    except Exception:  # noqa: BLE001 - a missing compiler is reported per job
        tools.setdefault(cc, "missing")
    tools["openssl"] = openssl_flags()[0]
    return tuple({"name": k, "version": v} for k, v in tools.items())


class Progress:
    """A one-line bar on a terminal, plain lines otherwise."""

    def __init__(self, total: int, stream=None, enabled: bool = True):
        self.total, self.done, self.failed, self.cached = total, 0, 0, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.lock = threading.Lock()

    def finished(self, record: JobRecord) -> None:
        if not self.enabled:
            return
        with self.lock:
            self.done += 1
            decided = outcome(record)  # what every output shows: never "ok" beside errors
            self.failed += decided.failing
            self.cached += record.cached
            verdict = decided.label
            if record.status == "incomplete" and not self.tty:
                verdict += f" (incomplete: {record.message})"
            if self.tty:
                width = 30
                filled = width * self.done // max(self.total, 1)
                line = (f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
                        f"  {self.failed} failed  {self.cached} cached  {record.name[:50]:<50}")
                self.stream.write(line)
                if self.done == self.total:
                    self.stream.write("\n")
            else:
                note = " (cached)" if record.cached else f" {record.duration_s:.1f}s"
                self.stream.write(f"[{self.done}/{self.total}] {record.name}: {verdict}{note}\n")
            self.stream.flush()


def load_durations(cache_dir: Path) -> dict[str, float]:
    """<cache>/durations.json (seconds per task, as the last run measured them); {} when missing
    or damaged.  Read by the scheduler here and by shard.py, so both weigh a task alike."""
    try:
        data = json.loads((Path(cache_dir) / "durations.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _save_durations(cache_dir: Path, durations: dict[str, float]) -> None:
    try:
        write_atomic(cache_dir / "durations.json", json.dumps(durations))
    except OSError:
        pass


def order(tasks: list[Task], durations: dict[str, float]) -> list[Task]:
    """Longest first: measured durations where known; else valgrind before the rest."""
    return sorted(tasks, key=lambda t: estimate(t, durations), reverse=True)


@dataclass(frozen=True)
class Done:
    """A finished task: its run (or the cached run), and its verdict (None for `check`)."""

    task: Task
    result: RunResult
    verdict: Verdict | None
    cached: bool = False
    build: Build | None = None
    sources: tuple[SourceFile, ...] = ()
    not_cached: str = ""  # why a complete run's result could not be stored (what it read is not known)

    def record(self, out_dir: Path) -> JobRecord:
        task, result, verdict = self.task, self.result, self.verdict
        return JobRecord(
            pattern=task.pattern, variant=task.variant, tool=task.checker, status=result.status,
            verdict=verdict.verdict if verdict else None,
            expected=task.expected.to_dict() if task.expected else None,
            reason=verdict.reason if verdict else "",
            duration_s=result.duration_s, exit_code=result.exit_code, signal=result.signal,
            partial=result.partial, problems=result.problems, cached=self.cached, message=result.message,
            not_cached=self.not_cached,
            findings=result.findings, logs=relative_logs(result.logs, out_dir), sources=self.sources,
        )


def keep_sources(task: Task, out_dir: Path) -> tuple[SourceFile, ...]:
    """Copy the sources a task was compiled from into the results folder, so that a report
    made later shows what really ran (a template or a user's file may change afterwards)."""
    spec = task.spec
    if spec is None:
        return ()
    folder = Path("sources") / task.pattern / (task.variant or "check")
    kept = []
    for name, text in spec.sources:
        rel = folder / name
        if not (out_dir / rel).is_file():
            write_atomic(out_dir / rel, text)
        kept.append(SourceFile(name=name, path=str(rel), origin=None))
    for path in spec.files:
        rel = folder / Path(path).name
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        write_atomic(out_dir / rel, text)
        kept.append(SourceFile(name=Path(path).name, path=str(rel), origin=str(path)))
    return tuple(kept)


def keep_named_sources(task: Task, findings, out_dir: Path, kept: tuple[SourceFile, ...]) -> tuple[SourceFile, ...]:
    """A project target's own files that its findings name (their frames' files inside the
    project root), copied into the results folder beside what `keep_sources` kept: the target's
    page shows them with the lines where memory was lost or misused, as they were when it ran."""
    root = task.source_root
    if root is None:
        return kept
    real_root = os.path.realpath(root)
    have = {os.path.realpath(s.origin) for s in kept if s.origin}
    folder = Path("sources") / task.pattern / (task.variant or "check")
    out = list(kept)
    for f in findings:
        for frame in f.stack + tuple(x for a in f.aux_stacks for x in a.frames):
            if not frame.file or len(out) >= 50:
                continue
            real = os.path.realpath(frame.file)
            if real in have or not real.startswith(real_root + os.sep) or not os.path.isfile(real):
                continue
            have.add(real)
            rel = folder / os.path.relpath(real, real_root)
            try:
                write_atomic(out_dir / rel, Path(real).read_bytes()[:1 << 20].decode("utf-8", "replace"))
            except OSError:
                continue
            out.append(SourceFile(name=os.path.basename(real), path=str(rel), origin=real))
    return tuple(out)


def perform(task: Task, out_dir: Path, cache_dir: Path, results_cache,
            suppressions: list | None = None) -> Done | None:
    """Build, run (or reuse) and judge one task; None when interrupted before it ended."""
    job_dir = out_dir / "logs" / task.pattern / (task.variant or "check") / task.checker
    b: Build | None = None
    checker = checkers.get(task.checker)
    unbuilt = task.unbuilt
    command = task.program + task.args
    if task.project_build is not None and unbuilt is None:  # the project's own build command, per profile
        from .projectbuild import build_project, program_path

        built = build_project(task.project_build, cache_dir)
        if built.status != "ok":
            unbuilt = (built.status, built.message)
        else:
            program = program_path(task.project_build, built)
            if program.is_file():
                command = (str(program),) + task.args
            else:
                unbuilt = ("build-failed", f"{task.pattern}: the build for {task.project_build.profile.label} "
                                           f"made no {program}")
    if unbuilt is not None:
        job = Job(checker=task.checker, command=(task.pattern,), out_dir=job_dir, timeout=task.timeout,
                  pattern=task.pattern, variant=task.variant, cwd=task.cwd, env=task.env)
        result = RunResult(job, unbuilt[0], message=unbuilt[1])
        return Done(task, result, judge(task.expected, result) if task.expected is not None else None)
    if task.spec is not None:
        try:
            b = checker.build(task.spec, cache_dir)
        except BuildError as exc:  # no compiler for this checker (clang for msan): the checker is missing
            job = Job(checker=task.checker, command=(task.pattern,), out_dir=job_dir, timeout=task.timeout,
                      pattern=task.pattern, variant=task.variant, cwd=task.cwd, env=task.env)
            result = RunResult(job, "tool-missing", message=str(exc))
            verdict = judge(task.expected, result) if task.expected is not None else None
            return Done(task, result, verdict)
        command = (str(b.binary),) + task.args if b.binary else (task.pattern,)
    if supervise.stopping():
        return None
    job = Job(checker=task.checker, command=command, out_dir=job_dir, timeout=task.timeout,
              pattern=task.pattern, variant=task.variant, cwd=task.cwd, env=task.env, stdin=task.stdin)
    cached = False
    not_cached = ""
    if b is not None and b.status != "ok":
        result = RunResult(job, "build-failed", message=b.message)
    elif checker.missing(cache_dir):
        result = run_mod.run_job(job, cache_dir)  # reports tool-missing with the install command
    else:
        key = job_key(job, cache_dir, ours=task.reads_nothing)
        # A known hang or crash (the pattern says so) is remembered as what it is: incomplete.
        known = task.expected is not None and task.expected.outcome == "incomplete"
        result = results_cache.get(key, job, known_incomplete=known)
        if result is not None:
            cached = True
        else:
            if not task.reads_nothing:  # what it reads is recorded: a program built just now is let settle
                inputs.settle(command[0])
            result = run_mod.run_job(job, cache_dir)
            if supervise.stopping():
                return None  # killed by us: not a result
            # Only a complete run, or a known-incomplete one of the catalog.
            not_cached = results_cache.put(key, result, trusted=task.reads_nothing, known_incomplete=known)
    result = _marked(result, task, suppressions)
    verdict = judge(task.expected, result) if task.expected is not None else None
    # A race a checker sees only when the threads meet (Expectation.attempts): a whole run that
    # missed it runs again (never from the cache), and the last run is the one kept and stored.
    attempts = (task.expected.attempts or 1) if task.expected is not None else 1
    tries = 1
    while (verdict is not None and verdict.verdict == "fail" and tries < attempts
           and result.status in CACHEABLE and not supervise.stopping()):
        tries += 1
        result = run_mod.run_job(job, cache_dir)
        if supervise.stopping():
            return None
        cached = False
        not_cached = results_cache.put(key, result, trusted=task.reads_nothing)
        result = _marked(result, task, suppressions)
        verdict = judge(task.expected, result)
    if tries > 1:
        note = (f"in each of {tries} runs" if verdict.verdict == "fail" else
                f"run {tries} of up to {attempts}: the {tries - 1} before it missed it")
        verdict = dataclasses.replace(verdict, reason=f"{verdict.reason} ({note})")
    kept = keep_sources(task, out_dir) if b is not None else ()
    return Done(task, result, verdict, cached, b, keep_named_sources(task, result.findings, out_dir, kept), not_cached)


def _marked(result: RunResult, task: Task, suppressions: list | None) -> RunResult:
    """The run's findings with the user's suppressions and the target's known findings marked."""
    if suppressions:
        result = dataclasses.replace(result, findings=suppress.apply(result.findings, suppressions))
    if task.known:
        result = dataclasses.replace(result, findings=suppress.apply(result.findings, suppress.known(task.known)))
    return result


def result_cache(cache_dir: Path, fresh: bool):
    """The result cache; with fresh, one that never answers but still records new results."""
    cache = ResultCache(cache_dir)
    return _WriteOnly(cache) if fresh else cache


def execute(task: Task, out_dir: Path, cache_dir: Path, results_cache,
            suppressions: list | None = None) -> JobRecord | None:
    """perform() and write the job's file at once."""
    done = perform(task, out_dir, cache_dir, results_cache, suppressions)
    if done is None:
        return None
    record = done.record(out_dir)
    write_job(out_dir, record)
    return record


def run_tasks(tasks: list[Task], out_dir: Path, cache_dir: Path, jobs: int | None = None,
              fresh: bool = False, progress: Progress | None = None, cc: str = "gcc",
              on_record: Callable[[JobRecord], None] | None = None,
              suppressions: list | None = None, run: dict | None = None,
              started: Callable[[], None] | None = None) -> Results:
    """Run every task, `jobs` at a time; write DIR/jobs/* as they end and DIR/results.json
    (with `run`, the run's identity: shard.RunPlan.to_dict()).  DIR must be new, empty or
    leakharness's own (outdir.claim); the caller holds its lock.  started() is called at most once,
    once the run is under way and a core is free of jobs (see below: a thread of the caller's
    started before would keep the twin from being forked, and slow the launch)."""
    out_dir = claim(Path(out_dir))
    results = _run_claimed(tasks, out_dir, Path(cache_dir), jobs, fresh, progress, cc, on_record, suppressions,
                           run, started)
    # Keep the cache under its size cap, least recently used out first: only when something
    # may have been added (a job ran); a walk of a big cache is most of an all-cached re-run.
    if any(not j.cached for j in results.jobs):
        try:
            trim(cache_dir)
        except OSError:
            pass
    return results


_ENDED = object()  # a worker thread (or the twin's pipe) has nothing more to hand over


def _run_claimed(tasks, out_dir: Path, cache_dir: Path, jobs, fresh, progress, cc, on_record, suppressions,
                 run=None, started_hook: Callable[[], None] | None = None) -> Results:
    set_aside = _set_jobs_aside(out_dir)  # before a twin can write a job file
    started = _now()
    facts.use(cache_dir)  # what the keys rest on, remembered from earlier runs (saved when this one ends)
    tools = tool_versions({t.checker for t in tasks}, cc)
    durations = load_durations(cache_dir)
    results_cache = result_cache(cache_dir, fresh)
    cores = os.cpu_count() or 1
    jobs = max(1, jobs or cores)
    supervise.reset_stop()
    ordered = order(list(tasks), durations)
    records: list[JobRecord] = []
    reported: set[int] = set()
    interrupted = False

    def one(task: Task) -> JobRecord | None:
        if supervise.stopping():
            return None
        return execute(task, out_dir, cache_dir, results_cache, suppressions)

    # Every worker, here and in the twin, takes the next task from one counter, in the order
    # above (slow tasks first).
    claims = twin_mod.Claims()
    quit_claiming = threading.Event()

    def worker(deliver: Callable[[int, object], None]) -> None:
        while not (supervise.stopping() or quit_claiming.is_set()):
            i = claims.take()
            if i >= len(ordered):
                return
            try:
                record = one(ordered[i])
            except BaseException as exc:  # noqa: BLE001 - raised where the run is watched
                deliver(i, exc)
                return
            deliver(i, record)

    twin = None
    if jobs >= 2 and len(ordered) >= twin_mod.MIN_TASKS:
        twin = twin_mod.Twin.fork(lambda deliver: _twin_work(worker, deliver, jobs // 2))
    cleared = in_background(lambda: [shutil.rmtree(p, ignore_errors=True) for p in set_aside]) if set_aside else None
    finished: queue.SimpleQueue = queue.SimpleQueue()

    def local_worker() -> None:
        try:
            worker(lambda i, record: finished.put((i, record)))
        finally:
            finished.put(_ENDED)

    def from_twin() -> None:
        try:
            for item in twin.records():
                finished.put(item)
        finally:
            finished.put(_ENDED)

    threads = [threading.Thread(target=local_worker, name=f"leakharness-job-{k}", daemon=True)
               for k in range(jobs - jobs // 2 if twin else jobs)]
    # The caller's side work (the report's imports) starts on a core no job uses: once this
    # process's first jobs run when they are fewer than the cores (a one-job check gets its head
    # start during its run), else once a first job is done (or handed back from the cache).
    # Never while their threads launch them: it took the interpreter from them (a one-program
    # check's first job started 25 ms later), and beside jobs on every core it slows one of them.
    first = min(len(threads), len(ordered))
    launched = (supervise.LaunchWatch(first if 0 < first < cores else None, started_hook)
                if started_hook is not None else None)
    if twin is not None:
        threads.append(threading.Thread(target=from_twin, name="leakharness-twin", daemon=True))

    def take(i: int, record: JobRecord | None) -> None:
        if record is None:
            return
        reported.add(i)
        records.append(record)
        if launched is not None:
            launched.fire()
        if not record.cached and record.status in ("ok", "crashed", "incomplete"):
            durations[ordered[i].duration_key] = round(record.duration_s, 3)
        if progress:
            progress.finished(record)
        if on_record:
            on_record(record)

    ended_well = False
    failure: BaseException | None = None
    try:
        for t in threads:
            t.start()
        running = len(threads)
        while running:
            try:
                item = finished.get(timeout=0.25)  # a timeout: Ctrl-C is seen at once
            except queue.Empty:
                continue
            if item is _ENDED:
                running -= 1
                continue
            i, record = item
            if isinstance(record, BaseException):
                raise record
            take(i, record)
        if twin is not None:
            twin.wait()  # it ended: its pipe is closed
            # What the twin claimed and never handed back (it died): done here, as a run without
            # a twin would have.
            lost = [i for i in range(min(claims.taken(), len(ordered))) if i not in reported]
            if lost and not supervise.stopping():
                import concurrent.futures as cf  # only here: with logging, 4 ms of every start

                with cf.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="leakharness-job") as pool:
                    for i, record in zip(lost, pool.map(lambda k: one(ordered[k]), lost)):
                        take(i, record)
        ended_well = True
    except KeyboardInterrupt:
        interrupted = True
        supervise.terminate_all()
    except BaseException as exc:  # a full disk, a damaged cache entry: the run is cut short all the same
        failure, interrupted = exc, True
        supervise.terminate_all()
    finally:
        quit_claiming.set()
        if launched is not None:
            launched.cancel()
        if twin is not None and not ended_well:
            twin.stop()
        for t in threads:
            if t.ident is not None:  # Ctrl-C may come before every thread was started
                t.join()
        claims.close()
        if cleared is not None:
            cleared()
        _save_durations(cache_dir, durations)
        facts.save()
        # Interrupted: gather from the files, every job that was written whatever happened
        # after; otherwise the records in hand are the same, without reading them again.
        written = read_jobs(out_dir) if interrupted else sorted(records, key=lambda r: r.file_name)
        # An interrupted run says so: its jobs are those that finished, never the whole run (nor
        # a run that stopped on an error: written as interrupted, whatever the error left).
        results = Results(started, _now(), tools, tuple(written), run=run, interrupted=interrupted)
        try:
            write_results(out_dir, results)
        except OSError:
            if failure is None:
                raise
    if failure is not None:
        raise failure
    if interrupted:
        raise Interrupted(f"interrupted: {len(written)} finished job(s) kept in {out_dir}")
    return results


def _twin_work(worker: Callable[[Callable[[int, object], None]], None], deliver: Callable[[int, object], None],
               count: int) -> None:
    """The twin's side of a run: `count` workers, until the tasks run out or it is stopped
    (Ctrl-C, or the parent's SIGUSR1: its running jobs are killed, as the parent's are)."""
    threads = [threading.Thread(target=worker, args=(deliver,), name=f"leakharness-twin-job-{k}", daemon=True)
               for k in range(count)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():  # in turns: a signal another thread took still wakes this one
                t.join(0.25)
    except KeyboardInterrupt:
        supervise.terminate_all()
        for t in threads:
            t.join()
        raise
    finally:
        facts.save()


def _set_jobs_aside(out_dir: Path) -> list[Path]:
    """A new run into the same folder starts with an empty jobs/: the old one is renamed aside
    (one rename, where an unlink per job file was a sixth of an all-cached re-run), to be
    removed on the side while the jobs run.  Folders set aside by a run that was killed are
    returned too.  The old results.json goes first: a run killed before it writes its own
    would leave the last run's results beside its own job files, and `report` showed those."""
    try:
        (out_dir / "results.json").unlink()
    except FileNotFoundError:
        pass
    aside = [p for p in out_dir.glob(".jobs-old.*") if p.is_dir() and not p.is_symlink()]
    jobs = out_dir / "jobs"
    if jobs.is_dir() and not jobs.is_symlink():
        target = out_dir / f".jobs-old.{os.getpid()}.{time.monotonic_ns()}"
        os.replace(jobs, target)
        aside.append(target)
    return aside


class _WriteOnly:
    """A result cache that never answers (for --fresh) but records what runs."""

    def __init__(self, cache: ResultCache):
        self.cache = cache

    def get(self, key, job, known_incomplete: bool = False):
        return None

    def put(self, key, result, trusted: bool = False, known_incomplete: bool = False) -> str:
        return self.cache.put(key, result, trusted, known_incomplete)
