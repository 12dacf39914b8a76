"""The pytest plugin: the catalog and a project's targets as test items, and a `leak_check`
fixture for users' code.

A project file (leakharness.toml, or pyproject.toml with [tool.leakharness]) that pytest
collects becomes one item per target and checker, e.g. `leakharness.toml::aesgcm[asan]`: it
fails when the checker found a bug (a `known` signature is accepted: listed at the end, not
failing) or could not check the program fully, as `leakharness run` says it.

Every pattern folder (a directory holding pattern.toml) that pytest collects becomes one item
per (variant, checker), e.g. `c_fixtures/ssl_error_path::leaky[memcheck]`.  An item passes
when the checker's findings meet the pattern's expectation (judge.judge decides, as for
`leakharness run`).  Every item runs, blind spots included: a known blind spot is a strict
xfail (so a checker that starts reporting the bug fails the item: the expectation is stale),
a run that hangs or crashes by design an xfail with its reason.  With --leak-report DIR every
item writes its job to DIR/jobs/ as it ends (so with pytest-xdist each worker writes its own,
and a worker that dies loses only its running item); the controller gathers them into
DIR/results.json at the end.  Every option can also be set in the ini file
([tool.pytest.ini_options] leak_tools = "memcheck,asan", ...; the command line wins).  The
plugin's state lives in config.stash, and it uses pytest's public API only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import os
import re
from pathlib import Path
from typing import Iterable

import pytest

from . import checkers
from .catalog import METADATA_NAME, TEMPLATE_NAMES, VARIANTS, Pattern, load_pattern
from .errors import LeakHarnessError
from .findings import Finding
from .results import JobRecord, Results, read_jobs, write_job, write_results


OPTIONS = (  # (name, metavar or None for a flag, help): --leak-NAME on the command line, leak_NAME in the ini file
    ("tools", "LIST", "comma-separated checkers for catalog and project items (default: each pattern's or "
                      "target's own)"),
    ("patterns", "LIST", "comma-separated pattern ids to collect (default: all)"),
    ("targets", "LIST", "comma-separated project targets to collect (default: all)"),
    ("timeout", "S", "seconds per run (default: the pattern's or target's, 120)"),
    ("report", "DIR", "write results.json (and the HTML report) of the session's leak jobs to DIR"),
    ("fresh", None, "ignore cached run results: run every checker again"),
    ("cache", "DIR", "build and result cache (default ~/.cache/leakharness)"),
)


def pytest_addoption(parser):
    group = parser.getgroup("leakharness", "memory-error checks (leakharness)")
    for name, metavar, text in OPTIONS:
        if metavar is None:
            group.addoption(f"--leak-{name}", action="store_true", default=False, help=text)
            parser.addini(f"leak_{name}", text, type="bool", default=False)
        else:
            group.addoption(f"--leak-{name}", default=None, metavar=metavar, help=text)
            parser.addini(f"leak_{name}", text, type="string", default="")


def _option(config, name: str):
    """--leak-NAME when given, else leak_NAME from the ini file ([tool.pytest.ini_options]); a
    folder from the ini file is taken from the ini file's folder, one from the command line from
    the folder pytest started in."""
    value = config.getoption(f"leak_{name}")
    if value not in (None, False):
        return value
    value = config.getini(f"leak_{name}")
    if value in ("", None, False):
        return None
    if name in ("report", "cache"):
        base = config.inipath.parent if config.inipath else config.rootpath
        return str(base / value)
    return value


def _timeout(config) -> float | None:
    value = _option(config, "timeout")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise pytest.UsageError(f"leak_timeout / --leak-timeout {value!r}: not a number of seconds") from None


def _report_dir(config) -> Path | None:
    report = _option(config, "report")
    return Path(config.invocation_params.dir) / report if report else None


STARTED = pytest.StashKey[str]()
SESSION = pytest.StashKey[object]()
ACCEPTED = pytest.StashKey[list]()
REPORT_LOCK = pytest.StashKey[object]()  # the --leak-report folder's lock (an ExitStack), held by the controller
ACCEPTED_PROPERTY = "leakharness_accepted"  # a known finding, as a user property: reaches the controller from xdist workers


def pytest_configure(config):
    # The options, checked once here: a UsageError raised while collecting is shown as a
    # collection error with its traceback (and under pytest -n, as a crashed worker).
    for name in _csv(_option(config, "tools")):
        if not checkers.known(name):
            raise pytest.UsageError(f"--leak-tools: unknown checker {name!r} (one of {', '.join(checkers.names())})")
    _timeout(config)
    config.addinivalue_line("markers", "known_leak(signature, ...): accept findings with these signatures "
                                       "in leak_check results (reported as accepted, not failing)")
    config.stash[STARTED] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    config.stash[ACCEPTED] = []
    config.pluginmanager.register(_AcceptedListing(config), "leakharness-accepted")


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(x.strip() for x in value.split(",") if x.strip()) if value else ()


# --- the catalog as items ---------------------------------------------------------------------

def pytest_collect_directory(path: Path, parent):
    if (path / METADATA_NAME).is_file() and any((path / t).is_file() for t in TEMPLATE_NAMES.values()):
        parent.config.stash.setdefault(SEEN_PATTERNS, set()).add(path.name)
        wanted = _csv(_option(parent.config, "patterns"))
        if wanted and path.name not in wanted:
            return None
        return PatternDirectory.from_parent(parent, path=path)
    return None


SEEN_PATTERNS = pytest.StashKey[set]()  # the pattern folders collection came upon, wanted or not


class MissingPatterns(pytest.Item):
    """--leak-patterns naming a pattern collection never came upon (a typo): nothing checked it,
    so the session must not pass.  A failing item, not a usage error: under pytest -n each
    worker collects, and an error there is a crashed worker, not a line."""

    def __init__(self, *, missing: list[str], seen: set[str], **kwargs):
        super().__init__(**kwargs)
        self.missing, self.seen = missing, seen

    def runtest(self) -> None:
        shown = ", ".join(sorted(self.seen)[:8]) + (", ..." if len(self.seen) > 8 else "")
        raise CheckFailed(f"--leak-patterns: no pattern {self.missing[0]!r} among those collected ({shown})")

    def repr_failure(self, excinfo):
        return str(excinfo.value)

    def reportinfo(self):
        return self.path, None, self.name


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    seen = config.stash.get(SEEN_PATTERNS, set())
    missing = [p for p in _csv(_option(config, "patterns")) if p not in seen]
    if seen and missing:  # the catalog was collected, and a pattern asked for is not in it
        items.append(MissingPatterns.from_parent(session, name="--leak-patterns", missing=missing, seen=seen))


class PatternDirectory(pytest.Directory):
    def collect(self) -> Iterable[pytest.Item]:
        try:
            pattern = load_pattern(self.path)
        except LeakHarnessError as exc:
            raise self.CollectError(str(exc)) from None
        tools = _csv(_option(self.config, "tools"))  # known: checked in pytest_configure
        for variant in VARIANTS:
            for checker in pattern.checkers():
                if tools and checker not in tools:
                    continue
                yield PatternItem.from_parent(self, name=f"{variant}[{checker}]", pattern=pattern,
                                              variant=variant, checker=checker)


def pytest_collect_file(file_path: Path, parent):
    """A project file: its targets, each under each of its checkers, as items."""
    from .project import PROJECT_FILE, PYPROJECT_FILE, declares_project

    if file_path.name == PROJECT_FILE or (file_path.name == PYPROJECT_FILE and declares_project(file_path)):
        return ProjectFile.from_parent(parent, path=file_path)
    return None


class ProjectFile(pytest.File):
    def collect(self) -> Iterable[pytest.Item]:
        from .project import load_project

        tools = _csv(_option(self.config, "tools"))  # known: checked in pytest_configure
        try:
            project = load_project(self.path)
            # A [[ctest]] project is configured and built here: that is what lists its tests.
            tasks = _session(self.config).project_tasks(project, _csv(_option(self.config, "targets")) or None,
                                                        tools or None)
        except LeakHarnessError as exc:
            raise self.CollectError(str(exc)) from None
        # A project file below pytest's rootdir (a monorepo's sub1/ and sub2/, each with a target
        # "digest"): its jobs are named by its folder too ("sub1:digest"; ':' is in no target's
        # name), or one's job file and logs in --leak-report replace the other's.  The items keep
        # the target's own name: their node ids already hold the folder.
        where = os.path.relpath(project.root, self.config.rootpath)
        prefix = "" if where == "." else re.sub(r"[^A-Za-z0-9_.+-]+", ":", where).strip(":") + ":"
        for task in tasks:
            name = task.name
            if prefix:
                task = dataclasses.replace(task, pattern=prefix + task.pattern)
            yield TargetItem.from_parent(self, name=name, task=task)


class CheckFailed(Exception):
    """An expectation that did not hold (or is stale); the message says what and where."""


class BlindSpot(Exception):
    """The checker missed the bug, as the pattern says it must: the item's strict xfail."""


class KnownIncomplete(Exception):
    """The run hung or crashed, as the pattern says it does: the item's xfail."""


class PatternItem(pytest.Item):
    def __init__(self, *, pattern: Pattern, variant: str, checker: str, **kwargs):
        super().__init__(**kwargs)
        self.pattern, self.variant, self.checker = pattern, variant, checker
        self.expected = pattern.expectation(variant, checker)
        self.user_properties.append(("leakharness_job", f"{pattern.id}::{variant}[{checker}]"))
        if self.expected.outcome == "blind":
            # A blind spot runs like any item: strict, so that a checker reporting the bug fails it.
            self.add_marker(pytest.mark.xfail(reason=f"{checker} is blind here: {self.expected.reason}",
                                              strict=True, raises=BlindSpot))
        elif self.expected.outcome == "incomplete":
            self.add_marker(pytest.mark.xfail(reason=f"{checker} hangs or crashes here: {self.expected.reason}",
                                              strict=False, raises=KnownIncomplete))

    def runtest(self):
        config = self.config
        out_root = _out_root(config)
        outcome = _session(config).run_one(self.pattern, self.variant, self.checker, out_root)
        if outcome is None:  # the run was stopped (Ctrl-C): stop the session, not just this test
            raise KeyboardInterrupt
        result, verdict = outcome.result, outcome.verdict
        report = _report_dir(config)
        if report is not None:
            write_job(report, outcome.record(out_root))
        self.user_properties.append(("leakharness_verdict", verdict.verdict))
        if verdict.verdict == "blind":
            raise BlindSpot(verdict.reason)
        if verdict.verdict == "known-incomplete":
            raise KnownIncomplete(verdict.reason)
        if verdict.verdict in ("fail", "stale"):
            log_dir = result.job.out_dir
            found = "\n".join(f"    {f.summary()}" for f in result.findings if f.is_error) or "    nothing"
            what = "stale expectation" if verdict.verdict == "stale" else "failed"
            raise CheckFailed(
                f"{self.pattern.id} ({self.variant}) under {self.checker}: {what}: {verdict.reason}\n"
                f"  expected: {self.expected.describe()}\n"
                f"  status:   {result.status_text}{': ' + result.message if result.status == 'incomplete' else ''}\n"
                f"  found:\n{found}\n"
                f"  logs:     {log_dir}")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, CheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path / METADATA_NAME, None, f"{self.pattern.id}::{self.variant}[{self.checker}]"


class TargetItem(pytest.Item):
    """One project target under one checker: fails on a bug or a run not fully checked."""

    def __init__(self, *, task, **kwargs):
        super().__init__(**kwargs)
        self.task = task
        self.user_properties.append(("leakharness_job", task.name))

    def runtest(self):
        from .grouping import group_findings
        from .judge import errors_of, outcome

        config = self.config
        out_root = _out_root(config)
        done = _session(config).run_task(self.task, out_root)
        if done is None:  # the run was stopped (Ctrl-C): stop the session, not just this test
            raise KeyboardInterrupt
        record = done.record(out_root)
        report = _report_dir(config)
        if report is not None:
            write_job(report, record)
        decided = outcome(record)
        self.user_properties.append(("leakharness_verdict", decided.name))
        for f in record.findings:
            if (f.suppressed or "").startswith("known: "):
                self.user_properties.append((ACCEPTED_PROPERTY, f"{self.nodeid}: {f.summary()} [{f.signature}]"))
        if decided.failing:
            errors = errors_of(record.findings)
            groups = group_findings(errors)
            bugs = "\n".join(f"    {g.headline()}  [{g.root.signature}]" for g in groups[:20]) or "    nothing"
            what = f"{len(groups)} bug(s) in {len(errors)} record(s)" if decided.name == "errors" else decided.reason
            raise CheckFailed(
                f"{self.task.name}: {decided.name}: {what}\n"
                f"  status:   {record.status}{': ' + record.message if record.message else ''}\n"
                f"  bugs:\n{bugs}\n"
                f"  logs:     {done.result.job.out_dir}")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, CheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, self.task.name


def _session(config):
    """One Session per pytest process: paths made absolute against the folder pytest started in."""
    session = config.stash.get(SESSION, None)
    if session is None:
        from .control import Session

        session = Session(cache=_option(config, "cache"), timeout=_timeout(config),
                          fresh=bool(_option(config, "fresh")), progress=False, cwd=config.invocation_params.dir)
        config.stash[SESSION] = session
    from .supervise import reset_stop

    reset_stop()
    return session


def _out_root(config) -> Path:
    """Where items write their logs: the report folder, else pytest's cache folder (its public
    config.cache.mkdir, shared by xdist workers: every job has a folder of its own), else a
    .cache folder where pytest started (-p no:cacheprovider)."""
    report = _report_dir(config)
    if report is not None:
        return report
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("leakharness-logs"))
    return Path(config.invocation_params.dir) / ".cache" / "leakharness-logs"


def _is_controller(config) -> bool:
    return not hasattr(config, "workerinput")


def pytest_sessionstart(session):
    report = _report_dir(session.config)
    if report is not None and _is_controller(session.config):
        from .errors import LeakHarnessError
        from .outdir import locked

        # The folder's lock, held to the session's end as a run holds its --out: a second session
        # on it refuses at once (it deleted this one's job files, and this one's results.json then
        # called a failed session clean), and `report` of it waits for its end.
        hold = contextlib.ExitStack()
        try:
            folder = hold.enter_context(locked(report))
        except LeakHarnessError as exc:
            raise pytest.UsageError(f"--leak-report: {exc}") from None
        session.config.stash[REPORT_LOCK] = hold
        # The last session's results go: a session stopped before it writes its own (a CI time
        # limit, -x before any job) must not leave them to stand for it.
        (folder / "results.json").unlink(missing_ok=True)
        for stale in (folder / "jobs").glob("*.json"):
            stale.unlink()


def _release_report(config) -> None:
    hold = config.stash.get(REPORT_LOCK, None)
    if hold is not None:
        del config.stash[REPORT_LOCK]
        hold.close()


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    report = _report_dir(config)
    if report is None or not _is_controller(config):
        return
    try:
        _write_session_results(config, report, exitstatus)
    finally:
        _release_report(config)


def pytest_unconfigure(config):
    _release_report(config)  # a session that never reached its end


def _write_session_results(config, report: Path, exitstatus) -> None:
    jobs = read_jobs(report)
    if not jobs:
        return
    from .orchestrate import tool_versions

    # Ctrl-C: the jobs that finished, said to be no whole session (results.json, the report).
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    results = Results(config.stash[STARTED], dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                      tool_versions({j.tool for j in jobs}, "gcc"), tuple(jobs), interrupted=interrupted)
    write_results(report, results)
    from .report import write_report

    write_report([report], report)


class _AcceptedListing:
    """Gathers the known findings items accepted, wherever they ran (an xdist worker's user
    properties travel with its reports to the controller), for the end of the session."""

    def __init__(self, config):
        self.config = config

    def pytest_runtest_logreport(self, report):
        if report.when == "call":
            self.config.stash[ACCEPTED].extend(value for name, value in report.user_properties
                                               if name == ACCEPTED_PROPERTY)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    report = _report_dir(config)
    if report is not None and _is_controller(config) and (report / "results.json").is_file():
        note = ""
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            note = " (interrupted: only the jobs that finished, not the whole session)"
        terminalreporter.write_line(f"leakharness: results in {report / 'results.json'}{note}")
    left_out = _project_file_left_out(config)
    if left_out is not None and _is_controller(config):
        terminalreporter.write_line(
            f"leakharness: {left_out} was not collected: pytest's testpaths ({', '.join(config.getini('testpaths'))}) "
            f"leave it out; run `pytest {left_out.name}` or add it to testpaths", yellow=True)
    accepted = config.stash.get(ACCEPTED, [])
    if accepted:
        terminalreporter.write_sep("-", "leakharness: known findings accepted")
        for line in accepted:
            terminalreporter.write_line(line)


def _project_file_left_out(config) -> Path | None:
    """The rootdir's project file when pytest was run with no paths and its testpaths do not
    reach it: its targets were never collected, and the session would say nothing of them."""
    from .project import PROJECT_FILE, PYPROJECT_FILE, declares_project

    if getattr(config, "args_source", None) != pytest.Config.ArgsSource.TESTPATHS:
        return None
    root = Path(config.rootpath)
    found = root / PROJECT_FILE
    if not found.is_file():
        found = root / PYPROJECT_FILE
        if not (found.is_file() and declares_project(found)):
            return None
    for arg in config.args:
        reached = Path(root, arg.split("::")[0]).resolve()
        if reached == found.resolve() or reached == root.resolve():
            return None
    return found


# --- leak_check: users' own programs ----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CheckResult:
    """What `leak_check` found: its jobs (JobRecords), and two assertions."""

    jobs: tuple[JobRecord, ...]
    accepted_signatures: tuple[str, ...] = ()
    out_dir: Path | None = None

    @property
    def findings(self) -> list[Finding]:
        return [f for j in self.jobs for f in j.findings]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.is_error and not self._accepted(f)]

    @property
    def accepted(self) -> list[Finding]:
        return [f for f in self.findings if f.is_error and self._accepted(f)]

    def _accepted(self, finding: Finding) -> bool:
        """A known_leak marker names a bug by its signature; one written without the line
        hash (`leak:f>g>h`) names it wherever its line is."""
        from .signatures import signature_matches

        return any(signature_matches(wanted, finding.signature) for wanted in self.accepted_signatures)

    def _problems(self) -> list[str]:
        out = []
        for j in self.jobs:
            if j.status != "ok":  # crashed, incomplete, not built, no checker: never clean
                out.append(f"{j.name}: {j.status}{' (' + j.signal + ')' if j.signal else ''}: "
                           f"{(j.message or '').strip()[:400]}")
        return out

    def _known(self, finding: Finding) -> str:
        """The catalog's word on a finding (knowledge.py), as a line of its own, or ""."""
        from .knowledge import Explainer, Sources

        job = next((j for j in self.jobs if any(x is finding for x in j.findings)), None)
        known = Explainer(sources=Sources(self.out_dir, job.sources if job else (), named=True)).explain(finding)
        return f"\n      {known.line()}" if known else ""

    def assert_clean(self) -> None:
        problems = self._problems()
        if self.errors or problems:
            lines = [f"expected no memory errors or leaks; found {len(self.errors)}:"]
            lines += [f"  {f.summary()}  [{f.signature}]{self._known(f)}" for f in self.errors[:20]]
            lines += [f"  {p}" for p in problems]
            if self.out_dir:
                lines.append(f"  logs: {self.out_dir}")
            raise AssertionError("\n".join(lines))

    def assert_leaks(self, category: str = "leak", function: str | None = None, min_bytes: int | None = None) -> list[Finding]:
        from .catalog import Expectation
        from .judge import matching

        expect = Expectation("find", category=category, function=function, min_bytes=min_bytes)
        for j in self.jobs:
            if j.status in ("build-failed", "tool-missing"):
                raise AssertionError(f"{j.name}: {j.status}: {j.message.strip()[:400]}")
            found = matching(expect, j.findings)
            if not found and j.status == "incomplete":
                raise AssertionError(f"{j.name}: not fully checked ({j.message}); expected {expect.describe()}")
            total = sum(f.bytes or 0 for f in found)
            if not found or (min_bytes and total < min_bytes):
                seen = "; ".join(f.summary() for f in j.findings if f.is_error) or "nothing"
                raise AssertionError(f"{j.name}: expected {expect.describe()}; found {seen}"
                                     + (f" (matching: {total} B)" if found else "")
                                     + (f"\n  logs: {self.out_dir}" if self.out_dir else ""))
        return matching(expect, [f for j in self.jobs for f in j.findings])


@pytest.fixture
def leak_check(request, tmp_path):
    """Run a program, or build C or Go sources, under memory checkers:
    leak_check(program=None, args=(), build=None, tools=None, timeout=120); tools default to
    memcheck and asan, or for Go sources (main.go, a package folder) memcheck, go-asan, cgocheck.
    Relative paths are taken from the folder pytest was started in, and the program runs there."""
    from .control import Session
    from .orchestrate import Interrupted

    accepted = tuple(sig for mark in request.node.iter_markers("known_leak") for sig in mark.args)
    counter = {"n": 0}

    def check(program=None, args=(), build=None, tools=None, timeout=120,
              cflags=(), ldflags=()) -> CheckResult:
        counter["n"] += 1
        config = request.config
        report = _report_dir(config)
        # With --leak-report, the checks' logs go into the report folder, so that its results.json
        # names them by paths inside it (a report never reads outside its folder).
        label = re.sub(r"[^A-Za-z0-9_.:=+-]+", "_", request.node.nodeid.replace("/", "."))
        if len(label) > 200:  # two tests alike in their first 200 characters must not share a name
            label = label[:191] + "~" + hashlib.sha256(label.encode()).hexdigest()[:8]
        sub = f"leak_check/{label}-{counter['n']}"
        # A second check in one test has names of its own: one job file each, never one over another.
        named = label if counter["n"] == 1 else f"{label}-call{counter['n']}"
        if isinstance(tools, str):  # tools="asan": one checker, not the letters of its name
            tools = (tools,)
        out = report / sub if report is not None else tmp_path / f"leak_check{counter['n']}"
        session = Session(out=out, cache=_option(config, "cache"), timeout=timeout,
                          fresh=bool(_option(config, "fresh")), progress=False, cwd=config.invocation_params.dir)
        if build:
            sources = (build,) if isinstance(build, (str, os.PathLike)) else tuple(build)
            if tools is None:  # memcheck and asan for C; memcheck, go-asan and cgocheck for Go
                from .tasks import default_check_checkers

                tools = default_check_checkers(sources, session.cwd)
            tasks = session.check_tasks(sources=sources, checkers=tuple(tools), cflags=tuple(cflags),
                                        ldflags=tuple(ldflags), args=tuple(map(str, args)))
        else:
            if program is None:
                raise TypeError("leak_check needs program= or build=")
            tools = ("memcheck", "asan") if tools is None else tools
            tasks = session.check_tasks(program=(str(program),), checkers=tuple(tools), args=tuple(map(str, args)))
        try:
            results = session.check(tasks)
        except Interrupted:
            raise KeyboardInterrupt from None  # Ctrl-C stops the pytest session, not just this test
        if report is not None:  # the checks' jobs beside the catalog's in --leak-report, named by their test
            for job in results.jobs:
                write_job(report, dataclasses.replace(
                    job, pattern=f"{named}:{job.pattern}"[:500], logs=tuple(f"{sub}/{lg}" for lg in job.logs),
                    sources=tuple(dataclasses.replace(s, path=f"{sub}/{s.path}") for s in job.sources)))
        result = CheckResult(results.jobs, accepted, out)
        for f in result.accepted:
            request.node.user_properties.append((ACCEPTED_PROPERTY, f"{request.node.nodeid}: {f.summary()} [{f.signature}]"))
        return result

    return check
