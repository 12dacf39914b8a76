"""The facade: a Session, one method per thing a user wants, tying the stages together.

catalog -> generate -> build -> run -> parse -> judge -> report.  Every verb of the command
line and the pytest plugin goes through a Session (as coverage.py's tools go through its
Coverage object).  A Session makes every path the user gave absolute when it is made (so a
relative --out, --cache or source works from any folder, and the programs themselves run in
the user's working directory), checks numbers, and turns OSError and bad catalog data into
one-line LeakHarnessErrors naming the file.  The stages never call back up here.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from . import build as build_mod
from .catalog import MAX_TIMEOUT, Pattern, load_catalog
from .errors import LeakHarnessError, os_problem
from .orchestrate import Done, Progress, perform, result_cache, run_tasks
from .results import Results
from .tasks import DEFAULT_TIMEOUT, Task, catalog_task, catalog_tasks, check_tasks
from .tasks import absolute as _absolute


def one_line_errors(method: Callable) -> Callable:
    """OSError anywhere below (a read-only folder, a file where a folder should be, a full
    disk) becomes one line naming the file, as every error a user can cause."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except LeakHarnessError:
            raise
        except OSError as exc:
            raise LeakHarnessError(os_problem(exc)) from None
    return wrapper


def _ended_results(folder: Path) -> Results:
    """A results folder's results, once no run is writing it (outdir.refuse_while_written): the
    jobs a run has done so far are no run cut short."""
    from .outdir import refuse_while_written
    from .results import load_results

    refuse_while_written(folder)
    return load_results(folder)


def positive_jobs(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LeakHarnessError(f"-j {value}: the number of jobs at once must be a whole number, 1 or more")
    return value


def positive_timeout(value: Any) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise LeakHarnessError(f"--timeout {value}: not a number of seconds") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise LeakHarnessError(f"--timeout {value}: must be more than 0 seconds (every job needs a time limit)")
    if seconds > MAX_TIMEOUT:
        raise LeakHarnessError(f"--timeout {value}: at most {MAX_TIMEOUT:g} seconds (a day): a hung job must end")
    return seconds


class Session:
    """What one user's command (or pytest session) works with: where results go, the cache,
    how many jobs at once, the time limit, suppressions, and the folder they run from."""

    def __init__(self, out: str | os.PathLike | None = None, cache: str | os.PathLike | None = None,
                 jobs: int | None = None, timeout: float | None = None, fresh: bool = False, cc: str = "gcc",
                 suppressions: Sequence[str | os.PathLike] = (), progress: bool = True,
                 fixtures: str | os.PathLike | None = None, cwd: str | os.PathLike | None = None):
        self.cwd = Path(cwd).absolute() if cwd else Path(os.getcwd())
        self.out = _absolute(out, self.cwd)
        self.cache = _absolute(cache, self.cwd) if cache else build_mod.default_cache_dir().absolute()
        self.jobs = positive_jobs(jobs)
        self.timeout = positive_timeout(timeout)
        self.fresh = bool(fresh)
        self.cc = cc
        self.progress = progress
        self.fixtures = _absolute(fixtures, self.cwd)
        self.suppression_files = tuple(_absolute(p, self.cwd) for p in suppressions)
        from .supervise import output_cap

        output_cap()  # a bad LEAKHARNESS_OUTPUT_CAP is one line now, not an error in a job's thread
        from .resultcache import max_bytes

        max_bytes()  # so is a bad LEAKHARNESS_CACHE_MAX, before a run rather than after it
        from . import facts

        facts.use(self.cache)  # what earlier runs learnt about unchanged files (facts.py)
        self._suppressions: list | None = None
        self.html_path: Path | None = None  # the report the last run rendered (html=True)
        self.reported: Results | None = None  # the merged results the last report() rendered

    # --- set-up checks ---------------------------------------------------------------------

    def _cache_dir(self) -> Path:
        """The cache folder, made if needed; one line when it cannot be written."""
        try:
            self.cache.mkdir(parents=True, exist_ok=True)
            probe = self.cache / f".write-test.{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise LeakHarnessError(f"{self.cache}: cannot use it as the cache: {exc.strerror or exc} "
                                   f"(choose another with --cache or $LEAKHARNESS_CACHE)") from None
        return self.cache

    def suppressions(self) -> list:
        if self._suppressions is None:
            from .suppress import load

            loaded = []
            for path in self.suppression_files:
                try:
                    loaded.extend(load(path))
                except OSError as exc:
                    raise LeakHarnessError(f"{path}: cannot read the suppressions: {exc.strerror or exc}") from None
            self._suppressions = loaded
        return self._suppressions

    def out_dir(self, default: str) -> Path:
        """The results folder: --out, else the command's default, both from the user's folder."""
        return self.out or _absolute(default, self.cwd)

    # --- the catalog ------------------------------------------------------------------------

    @one_line_errors
    def catalog(self, ids: Sequence[str] | None = None) -> list[Pattern]:
        return load_catalog(self.fixtures, ids=list(ids) if ids else None)

    def catalog_tasks(self, patterns: list[Pattern], checkers: Sequence[str] | None = None) -> list[Task]:
        return catalog_tasks(patterns, tuple(checkers) if checkers else None, self.cc, self.timeout, self.cwd)

    @one_line_errors
    def run_catalog(self, patterns: list[Pattern], checkers: Sequence[str] | None = None,
                    default_out: str = "reports/latest", html: bool = False,
                    shard: tuple[int, int] | None = None,
                    growth: tuple[str, Sequence[int]] | None = None,
                    durations: str | os.PathLike | None = None, run_id: str | None = None) -> Results:
        """growth: (checker, iteration counts): also fit every leaking pattern's growth.
        shard: (k, n), this run's part of the catalog, split by job names, balanced by the
        `durations` file when one is given (never by the cache's: shard.py says why); run_id
        names the run in results.json, so that a merge of its parts can check them."""
        tasks = self.catalog_tasks(patterns, checkers)
        if not tasks:
            raise LeakHarnessError("nothing to run: no pattern has the chosen checkers")
        tasks, plan = self._plan(tasks, shard, durations, run_id)
        # A shard fits only the patterns it runs: every shard fitting all of them would repeat the work.
        chosen = {t.pattern for t in tasks}
        return self._run(tasks, self.out_dir(default_out), html,
                         growth=self._catalog_growth([p for p in patterns if p.id in chosen], growth),
                         run=plan.to_dict())

    def _plan(self, tasks: list[Task], shard: tuple[int, int] | None, durations, run_id):
        """This run's part of the tasks and its plan (shard.plan_run): split by job names, balanced
        by the `durations` file when one is given; run_id names the run for a merge to check."""
        from .shard import check_run_id, plan_run, read_durations

        weights, digest = read_durations(_absolute(durations, self.cwd)) if durations else ({}, None)
        tasks, plan = plan_run(tasks, shard, weights, digest, check_run_id(run_id) if run_id is not None else None)
        if not tasks:
            raise LeakHarnessError(f"--shard {shard[0]}/{shard[1]}: no job falls in this shard")
        return tasks, plan

    # --- a project file (project.py): the team's own targets ---------------------------------

    @one_line_errors
    def project(self):
        """The project file in the working folder or above it (project.Project), or None."""
        from .project import find_project, load_project

        found = find_project(self.cwd)
        return load_project(found) if found is not None else None

    @one_line_errors
    def project_tasks(self, project, targets: Sequence[str] | None = None,
                      checkers: Sequence[str] | None = None) -> list[Task]:
        """The project's targets (or those named) under their checkers (narrowed to `checkers`);
        a [[ctest]] project is configured and built here, since that is what lists its tests."""
        from .tasks import project_tasks

        tasks = project_tasks(project, self._cache_dir(), targets, checkers, self.cc, self.timeout)
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})[0]
            raise LeakHarnessError(f"{project.file}: two targets make the job {dup}; rename one (CTest test "
                                   f"names that differ only in characters other than letters, digits and _ . + - "
                                   f"become one name; a [[ctest]] table's prefix tells two tables' tests apart)")
        return tasks

    def project_out(self, project, default: str = "reports/latest") -> Path:
        """A project's results folder: --out, else `default` under the project root."""
        return self.out or project.root / default

    @one_line_errors
    def run_project(self, project, targets: Sequence[str] | None = None, checkers: Sequence[str] | None = None,
                    default_out: str = "reports/latest", html: bool = False,
                    shard: tuple[int, int] | None = None,
                    growth: tuple[str, Sequence[int]] | None = None,
                    durations: str | os.PathLike | None = None, run_id: str | None = None) -> Results:
        """Run a project's targets into --out (else <root>/reports/latest); growth: (checker,
        counts): also fit the growth of every target whose arguments hold {n}; shard, durations
        and run_id as for the catalog."""
        tasks = self.project_tasks(project, targets, checkers)
        if not tasks:
            raise LeakHarnessError("nothing to run: no target has the chosen checkers")
        tasks, plan = self._plan(tasks, shard, durations, run_id)
        step = None
        if growth is not None:
            from .growthrun import target_growth

            chosen = {t.pattern for t in tasks}
            growing = [t for t in project.targets if t.name in chosen and t.grows]
            checker, counts = growth
            step = lambda out, cache, suppressions: target_growth(  # noqa: E731
                project, growing, out, cache, checker, counts, self.cc, self.timeout, self.fresh, suppressions,
                self.jobs or os.cpu_count() or 1)
        return self._run(tasks, self.project_out(project, default_out), html, growth=step, run=plan.to_dict())

    @one_line_errors
    def run_task(self, task: Task, out_root: str | os.PathLike) -> Done:
        """Build (cached), run (or reuse an unchanged result) and judge one task, in this process:
        what a pytest item of a project target does."""
        from .cachelock import using

        cache = self._cache_dir()
        with using(cache):  # as run_one: `cache clear` refuses while the item uses the cache
            return perform(task, _absolute(out_root, self.cwd), cache, result_cache(cache, self.fresh),
                           self.suppressions())

    def _run(self, tasks: list[Task], out: Path, html: bool, growth=None, run: dict | None = None) -> Results:
        """Run the tasks into out, holding its lock; then `growth(out, cache, suppressions)` (a
        list of growthrun.GrowthEntry) when given; with html, render the report there too."""
        import dataclasses

        from .cachelock import using
        from .outdir import locked
        from .resultcache import trim
        from .results import write_results

        cache = self._cache_dir()
        suppressions = self.suppressions()
        # What the report needs, made ready on the side while the jobs run (once they are under
        # way, on a core no job uses: run_tasks says when).
        ready = _start_ready_report if html else None
        with locked(out) as out, using(cache):  # `cache clear` refuses while this run uses the cache
            results = run_tasks(tasks, out, cache, jobs=self.jobs, fresh=self.fresh, cc=self.cc,
                                progress=Progress(len(tasks), enabled=self.progress), suppressions=suppressions,
                                run=run, started=ready)
            if growth is not None:
                entries = growth(out, cache, suppressions)
                results = dataclasses.replace(results, growth=tuple(e.to_dict() for e in entries))
                write_results(out, results)
            if html:
                self.html_path = self._render_html(out, results)
            else:  # SARIF is for code scanning, whether or not anyone reads the HTML
                from .report import sarif

                sarif.write(results, out)
        if any(not j.cached for j in results.jobs):  # nothing added, nothing to trim (a walk of the cache)
            try:
                trim(cache)  # keep the cache under its cap, now that this run no longer holds it
            except OSError:
                pass
        return results

    def _catalog_growth(self, patterns, growth):
        if growth is None:
            return None
        from .growthrun import catalog_growth

        checker, counts = growth
        return lambda out, cache, suppressions: catalog_growth(
            patterns, out, cache, checker, counts, self.cc, self.timeout, self.cwd, self.fresh, suppressions,
            self.jobs or os.cpu_count() or 1)

    def _render_html(self, results_dir: Path, results: Results | None = None) -> Path:
        """The report of a run just made, from its results in hand (not read back from disk)."""
        from .report import render_report, write_report
        from .results import merge

        if results is None:
            return write_report([results_dir], results_dir, fixtures=self.fixtures, local_sources=True)
        # merge() of the one folder (its own run: no parts to check) adds each job's stdout and
        # stderr links and judges each job again, as reading it back would.
        return render_report(merge([(results, results_dir)], results_dir, check_parts=False), results_dir,
                             fixtures=self.fixtures, local_sources=True)

    @one_line_errors
    def run_one(self, pattern: Pattern, variant: str, checker: str, out_root: str | os.PathLike,
                overrides: Mapping[str, Any] | None = None) -> Done:
        """Render, build (cached), run (or reuse an unchanged result) and judge one
        (pattern, variant, checker), in this process: what a pytest item does."""
        from .cachelock import using

        cache = self._cache_dir()
        task = catalog_task(pattern, variant, checker, self.cc, overrides, self.timeout, self.cwd)
        with using(cache):
            return perform(task, _absolute(out_root, self.cwd), cache, result_cache(cache, self.fresh),
                           self.suppressions())

    # --- the user's own programs ------------------------------------------------------------

    def check_tasks(self, program: Sequence[str] = (), sources: Sequence[str | os.PathLike] = (),
                    checkers: Sequence[str] = (), cflags: Sequence[str] = (),
                    ldflags: Sequence[str] = (), args: Sequence[str] = ()) -> list[Task]:
        """Tasks for a user's program or sources; no checkers: what `check` runs for the language."""
        return check_tasks(tuple(program), tuple(_absolute(s, self.cwd) for s in sources),
                           tuple(dict.fromkeys(checkers)),  # a checker named twice runs once
                           tuple(cflags), tuple(ldflags), tuple(args), self.cc, self.timeout or DEFAULT_TIMEOUT,
                           cwd=self.cwd)

    @one_line_errors
    def check(self, tasks: list[Task], default_out: str = "reports/check", html: bool = False,
              growth: tuple[Sequence[str], str, str, Sequence[int]] | None = None) -> Results:
        """growth: (program, argument template, checker, counts): also fit the program's growth."""
        step = None
        if growth is not None:
            from .growthrun import program_growth

            program, template, checker, counts = growth
            step = lambda out, cache, suppressions: [program_growth(  # noqa: E731
                program, template, out, cache, checker, counts, self.timeout or DEFAULT_TIMEOUT, self.cwd,
                self.fresh, suppressions, self.jobs or os.cpu_count() or 1)]
        return self._run(tasks, self.out_dir(default_out), html, growth=step)

    # --- reports, baselines, the cache ------------------------------------------------------

    @one_line_errors
    def report(self, inputs: Sequence[str | os.PathLike], out: str | os.PathLike | None = None) -> Path:
        from .outdir import locked, refuse_while_written

        inputs = [_absolute(p, self.cwd) for p in inputs]
        target = _absolute(out, self.cwd) if out else self.out
        if target is None:
            raise LeakHarnessError("report: give --out DIR")
        from .forked import Beside
        from .report.html import render_report
        from .results import combined, write_results

        for folder in inputs:
            refuse_while_written(folder)
        with locked(target) as target:
            # The merged results are kept (self.reported) for what the caller says of them: read
            # back from the results.json just written, 50,000 findings took half of `report`'s time.
            self.reported, changed = combined(inputs, target, self.suppressions())
            # results.json (68 MB for 50,000 findings) is written by a forked copy while the
            # report is made here, and is whole before the report is said to be there.
            reported = self.reported
            with Beside(lambda: write_results(target, reported) if changed else None):
                return render_report(reported, target, self.fixtures)

    @one_line_errors
    def baseline(self, results_dir: str | os.PathLike, fmt: str) -> tuple[str, int, int]:
        """Suppressions for every finding of a results folder: (text, how many, how many findings
        could not be written); fmt "known": each target's `known` list for the project file."""
        from .suppress import write_known, write_lsan, write_valgrind

        results = _ended_results(_absolute(results_dir, self.cwd))
        if fmt == "known":
            return (*write_known(results.jobs), 0)
        findings = [f for j in results.jobs for f in j.findings]
        return write_valgrind(findings) if fmt == "valgrind" else write_lsan(findings)

    @one_line_errors
    def write_file(self, path: str | os.PathLike, text: str) -> Path:
        from .results import write_atomic

        target = _absolute(path, self.cwd)
        if not target.parent.is_dir():
            raise LeakHarnessError(f"{target}: no such folder {target.parent}")
        write_atomic(target, text)
        return target

    # --- the catalog as a knowledge base (knowledge.py) -------------------------------------

    @one_line_errors
    def learn(self, results_dir: str | os.PathLike):
        """Knowledge from a catalog run's results folder: (Knowledge, ids of catalog patterns the
        run did not hold)."""
        from .knowledge import learn

        folder = _absolute(results_dir, self.cwd)
        return learn(_ended_results(folder), folder, self.catalog())

    @one_line_errors
    def explain(self, what: str) -> list:
        """What the catalog knows of a signature, or of every bug of a results folder (or its
        results.json): a list of (job name or None, headline, Explanation or None)."""
        from .grouping import group_findings
        from .judge import errors_of
        from .knowledge import Explainer, Sources, explain_signature

        path = _absolute(what, self.cwd)
        if not (path.is_dir() or path.name.endswith(".json") or path.is_file()):
            return [(None, what.strip(), explain_signature(what))]
        folder = path if path.is_dir() else path.parent
        if path.is_file() and path.name != "results.json":
            raise LeakHarnessError(f"{path}: not a results.json (give a results folder, its results.json, "
                                   f"or a signature)")
        rows = []
        for job in _ended_results(folder).jobs:
            explainer = Explainer(sources=Sources(folder, job.sources))
            for group in group_findings(f for f in errors_of(job.findings) if not f.suppressed):
                rows.append((job.name, group.headline(), explainer.explain(group.root)))
        return rows

    @one_line_errors
    def cache_info(self) -> dict:
        from .resultcache import info

        return info(self.cache)

    @one_line_errors
    def cache_clear(self) -> int:
        from .resultcache import clear

        return clear(self.cache) if self.cache.is_dir() else 0


def _start_ready_report() -> None:
    """_ready_report on a thread of its own; a thread that cannot start is no head start, no error."""
    try:
        threading.Thread(target=_ready_report, name="leakharness-report-ready", daemon=True).start()
    except RuntimeError:
        pass


def _ready_report() -> None:
    """Import the report's modules and load its compiled templates: on a second core, while
    the jobs run, instead of after the last one (most of a one-program `check`'s own time)."""
    try:
        import importlib

        for module in ("sarif", "findings_json", "known"):
            importlib.import_module(f"{__package__}.report.{module}")
        # What a bug's box on a page reads: the knowledge file, and a pattern's TOML and diff.
        import tomllib  # noqa: F401

        from . import generate, shard  # noqa: F401
        from .knowledge import load

        load()
        from .report import html

        env = html._env()
        for name in ("index.html.j2", "pattern.html.j2", "signatures.html.j2"):
            env.get_template(name)
    except Exception:  # noqa: BLE001 - only a head start: the report itself says what is wrong
        pass


# --- the functions earlier callers use, over a default Session -------------------------------

def run_catalog_job(pattern: Pattern, variant: str, checker: str, out_root: Path,
                    cache_dir: Path | None = None, cc: str = "gcc",
                    overrides: Mapping[str, Any] | None = None,
                    timeout: float | None = None, fresh: bool = False) -> Done:
    return Session(cache=cache_dir, cc=cc, timeout=timeout, fresh=fresh).run_one(
        pattern, variant, checker, out_root, overrides)


def run_catalog(patterns: list[Pattern], out_dir: Path, checkers: tuple[str, ...] | None = None,
                cache_dir: Path | None = None, jobs: int | None = None, timeout: float | None = None,
                fresh: bool = False, cc: str = "gcc", progress: bool = True,
                suppressions: list | None = None) -> Results:
    session = Session(out=out_dir, cache=cache_dir, jobs=jobs, timeout=timeout, fresh=fresh, cc=cc,
                      progress=progress)
    session._suppressions = list(suppressions or ())
    return session.run_catalog(patterns, checkers)


def run_check(tasks: list[Task], out_dir: Path, cache_dir: Path | None = None, jobs: int | None = None,
              fresh: bool = False, cc: str = "gcc", progress: bool = True,
              suppressions: list | None = None) -> Results:
    session = Session(out=out_dir, cache=cache_dir, jobs=jobs, fresh=fresh, cc=cc, progress=progress)
    session._suppressions = list(suppressions or ())
    return session.check(tasks)
