"""Read what a finished job's checker wrote, and say whether the job was really checked.

The collecting half of a run (supervise.py is the other): the logs are moved from the job's
private folder into its results folder, parsed into Findings, and the run is given a status:
- "ok": the checker ran to the end and its logs are whole (clean, or with findings);
- "crashed": the program died of a signal and the checker reported it;
- "incomplete": anything less, with the reason in one line.
An incomplete job is never clean, never a pass: a false clean is the worst bug leakharness can
have.

This module holds what is the same for every checker: parsing the files the checker names
(`Checker.log_files`), and the rules that make any run incomplete: the command could not start,
it timed out, it was killed from outside, a file of the job reached the output cap, the program
left processes running, or lh-reaper could not run it.  What only one checker knows (valgrind
must reach FINISHED, ASan's exit-time leak check must have run, the residue interposer must have
loaded, a Go program must end through leakharness's helper) is that checker's `incomplete()`,
in harness/checkers/.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from . import inputs
from .errors import ParseError
from .findings import Finding
from .parsers import parse_file

if TYPE_CHECKING:
    from .supervise import Exit

# The deadly signals a sanitizer catches and reports (its report's kind), then exits.
DEADLY = {"SEGV": "SIGSEGV", "BUS": "SIGBUS", "FPE": "SIGFPE", "ILL": "SIGILL", "ABRT": "SIGABRT"}
# Signals a program does not send itself: the job was stopped from outside (or by its timeout).
EXTERNAL = {signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE}
# What lh-reaper says when it had to kill what the program left running (supervise.py).
REAPER_KILLED = "lh-reaper: killed processes the program left running"
# What lh-reaper says when it cannot exec the command (exit 126 or 127).
REAPER_CANNOT_RUN = re.compile(r"^lh-reaper: (cannot run .*)$", re.M)


class Checker(Protocol):
    """What collect asks of the checker that ran (harness/checkers/base.py's Checker): the
    checker hands itself in, collect never looks one up."""

    name: str

    def log_files(self, out_dir: Path) -> list[Path]: ...
    def accept_unparsed(self, path: Path, g: "Gathered") -> bool: ...
    def after_logs(self, g: "Gathered") -> None: ...
    def incomplete(self, g: "Gathered") -> str: ...
    def cannot_follow(self, program: str) -> str: ...


@dataclass(frozen=True)
class Collected:
    status: str  # "ok", "crashed" or "incomplete"
    findings: tuple[Finding, ...]
    logs: tuple[Path, ...]
    partial: bool
    problems: tuple[str, ...]
    signal: str | None
    reason: str = ""  # why the job is incomplete, one line
    recorded: inputs.Recorded | None = None  # what the program read and ran (None: no recorder)


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def pid_of(path: Path) -> int | None:
    """The process a log belongs to: the tools name them NAME.PID or NAME.PID.xml."""
    m = re.search(r"\.(\d+)(?:\.xml)?$", path.name)
    return int(m.group(1)) if m else None


def tail_of(path: Path, limit: int = 16384) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


@dataclass
class Gathered:
    """What a finished job left behind, as its checker's rules read it: the parsed logs, the
    findings and problems so far, and how the process ended.  Filled by `collect`, added to by
    the checker's hooks, then turned into a Collected."""

    out_dir: Path
    ended: "Exit"
    timeout: float
    program: str  # the job's command[0]
    output_cap: int
    cwd: Path  # where the program ran: relative paths its processes name start there
    findings: list[Finding] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    cut: list[str] = field(default_factory=list)  # logs cut short or unreadable
    partial: bool = False
    parsed: list[tuple[Path, object]] = field(default_factory=list)  # (path, the parser's log)
    recorded: inputs.Recorded | None = None  # the recorder's account of what the program read and ran
    env: dict[str, str] = field(default_factory=dict)  # the environment the checker was handed
    flags: set[str] = field(default_factory=set)  # what a checker's hooks noted for its own rules
    _tails: dict[int, str] = field(default_factory=dict)

    @property
    def main_pid(self) -> int | None:
        return self.ended.main_pid

    @property
    def returncode(self) -> int | None:
        return self.ended.returncode

    @property
    def stderr(self) -> Path:
        return self.out_dir / "stderr.txt"

    @property
    def signal(self) -> str | None:
        rc = self.ended.returncode
        return signal_name(-rc) if rc is not None and rc < 0 else None

    def stderr_tail(self, limit: int = 16384) -> str:
        if limit not in self._tails:
            self._tails[limit] = tail_of(self.stderr, limit)
        return self._tails[limit]

    def of_main(self, path: Path) -> bool:
        """Does this log belong to the program's own process (or is that unknown)?"""
        return self.main_pid is None or pid_of(path) == self.main_pid

    @property
    def main_reported(self) -> bool:
        if self.main_pid is None:
            return bool(self.findings)
        return any(f.pid == self.main_pid for f in self.findings)

    @property
    def deadly(self) -> str | None:
        """The signal a sanitizer caught and reported, if it did."""
        return next((DEADLY[f.kind] for f in self.findings if f.kind in DEADLY), None)

    def add(self, path: Path, log) -> None:
        """A parsed log: its findings, problems, and whether it was cut short."""
        self.parsed.append((path, log))
        self.logs.append(path)
        self.findings.extend(log.findings)
        if getattr(log, "partial", False):
            self.partial = True
            self.cut.append(path.name)
        self.problems.extend(f"{path.name}: {p}" for p in getattr(log, "problems", ()))

    def unreadable(self, path: Path, exc: ParseError) -> None:
        self.problems.append(str(exc))
        self.cut.append(path.name)
        self.partial = True

    def result(self, status: str, reason: str = "", sig: str | None = None) -> Collected:
        return Collected(status, tuple(self.findings), tuple(self.logs), self.partial, tuple(self.problems),
                         sig if sig is not None else self.signal, reason, self.recorded)


def move_logs(private: Path, out_dir: Path) -> None:
    """The job's private folder (short, safe paths for the tools' option syntax) -> its results folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in private.iterdir():
        if item.is_file():
            target = out_dir / item.name
            target.unlink(missing_ok=True)  # may be a cached log's hard link: never written through
            shutil.move(str(item), str(target))
            try:
                target.chmod(0o644)  # sanitizers make their logs 0600/0640; the report links them for all
            except OSError:
                pass


def _capped(g: Gathered) -> str:
    """A file of the job that reached the output cap: the program (or the checker) was stopped
    writing it, whether or not it died of SIGXFSZ (a program may ignore the signal and go on
    with its writes failing), so what it wrote, and what the checker saw, is not whole."""
    for path in sorted(g.out_dir.iterdir()):
        try:
            if path.is_file() and path.stat().st_size >= g.output_cap:
                return path.name
        except OSError:
            continue
    return ""


def common_reason(g: Gathered) -> str:
    """Why the run is incomplete whatever the checker, or ""."""
    ended, rc, sig = g.ended, g.returncode, g.signal
    if ended.start_error:
        return ended.start_error
    if ended.timed_out:
        return f"timed out after {g.timeout:g} s: the program did not finish, so the check is not whole"
    capped = _capped(g)
    if (rc is not None and rc < 0 and -rc == signal.SIGXFSZ) or capped:
        what = f"{capped} grew to" if capped else "a file of the job grew past"
        return f"output limit reached: {what} the {g.output_cap} B cap, so what was written after it is lost"
    if rc is not None and rc < 0 and -rc in EXTERNAL:
        return f"killed by {sig} from outside before the checker finished"
    tail = g.stderr_tail()
    cannot_run = REAPER_CANNOT_RUN.search(tail) if rc in (126, 127) else None
    if cannot_run:
        return cannot_run.group(1)
    if REAPER_KILLED in tail:
        return ("the program ended while processes it started were still running; they were killed "
                "unchecked")
    return ""


def unfollowed(g: Gathered, checker: Checker) -> str:
    """A program the job's processes ran (or tried to) that this checker cannot see into: a
    static child under valgrind, a setuid one valgrind refuses to run.  Its part of the run was
    not checked, whatever the program's own exit code says."""
    if g.recorded is None:
        return ""
    for entry in g.recorded.entries:
        if entry.kind == "exec":
            why = checker.cannot_follow(entry.path)
            if why:
                return f"the program ran {entry.path}, which {checker.name} cannot check: {why}"
    return ""


def _name_sources_from_the_jobs_folder(g: Gathered) -> None:
    """A frame's relative source path (a build with -ffile-prefix-map=ROOT=.) starts where the
    program ran, not where leakharness was started (a sub-folder of the project): a finding whose
    source line could not be read there, and so whose signature has no line hash, is named again
    with its frames' files found from the job's folder."""
    import dataclasses

    from .signatures import split_signature

    def found(path: str) -> str | None:
        # valgrind joins the compile folder, mapped too (./sub), to a path already relative to
        # the mapped root (./src/w.c): the path's tail is looked for as well, longest first.
        parts = os.path.normpath(path).split(os.sep)
        for i in range(len(parts)):
            candidate = g.cwd.joinpath(*parts[i:])
            if parts[i] != ".." and candidate.is_file():
                return os.path.normpath(candidate)
        return None

    def resolved(stack):
        out = []
        for fr in stack:
            if fr.file and not os.path.isabs(fr.file) and not os.path.isfile(fr.file):
                where = found(fr.file)
                if where:
                    fr = dataclasses.replace(fr, file=where)
            out.append(fr)
        return tuple(out)

    for i, f in enumerate(g.findings):
        if split_signature(f.signature)[1] is not None or not any(
                fr.file and not os.path.isabs(fr.file) for fr in f.stack):
            continue
        again = dataclasses.replace(f, stack=resolved(f.stack), signature="",
                                    aux_stacks=tuple(dataclasses.replace(a, frames=resolved(a.frames))
                                                     for a in f.aux_stacks))
        if split_signature(again.signature)[0] == split_signature(f.signature)[0]:
            g.findings[i] = again


def collect(out_dir: Path, checker: Checker, ended: "Exit", timeout: float, program: str,
            output_cap: int, cwd: Path, env: dict[str, str] | None = None) -> Collected:
    """Parse the logs `checker` names, apply the rules every run obeys and then the checker's
    own, and say what the run was."""
    g = Gathered(out_dir, ended, timeout, program, output_cap, Path(cwd), env=dict(env or {}))
    for path in checker.log_files(out_dir):
        try:
            log = parse_file(path)
        except ParseError as exc:
            if not checker.accept_unparsed(path, g):
                g.unreadable(path, exc)
            continue
        g.add(path, log)
    checker.after_logs(g)
    _name_sources_from_the_jobs_folder(g)
    if inputs.log_files(out_dir):
        # A process whose report the checker wrote ended there (a sanitizer exits right after its
        # report, a fatal signal ends it): no end line in its recording, and none is missing.
        died = {f.pid for f in g.findings if f.pid is not None}
        g.recorded = inputs.read(out_dir, g.main_pid, died=died)
    reason = common_reason(g) or checker.incomplete(g) or unfollowed(g, checker)
    if reason:
        return g.result("incomplete", reason)
    if g.signal is not None:
        return g.result("crashed")
    if g.deadly:  # a sanitizer caught the signal, reported it and exited
        return g.result("crashed", sig=g.deadly)
    return g.result("ok")
