"""The Checker type: everything leakharness knows about one checker, said in one place.

A checker is how a program is built (its profile: C flags, the compiler it needs, the Go build
mode), how it is run (command and environment, where its logs go), how its logs are read and
when its run counts as complete, what its cached result depends on (its own binaries, rc files,
version), its family and expected duration, and what it cannot see.  The stages (build, run,
collect, the result cache, the scheduler, the report) ask a Checker; none of them tests a
checker's name.  Each checker is an instance of a subclass defined in its family's module
(valgrind.py, sanitizers.py, go.py, hardened.py, residue.py) and listed in the registry
(__init__.py).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

from .. import build as build_mod

if TYPE_CHECKING:
    from ..collect import Gathered
    from ..jobs import Job

# Set by shells, make, pytest and terminals; never read by a checker or by OpenSSL: left out of
# what a job's tool is handed, so that they change no cached result.
VOLATILE_ENV = frozenset({
    "PYTEST_CURRENT_TEST", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID",
    "PYTEST_ADDOPTS", "_", "OLDPWD", "PWD", "SHLVL", "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES",
    "MAKE_TERMOUT", "MAKE_TERMERR", "COLUMNS", "LINES", "TERM", "COLORTERM", "TERM_PROGRAM", "WINDOWID",
    "SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY", "SSH_AUTH_SOCK", "DISPLAY", "XDG_SESSION_ID", "HISTFILE",
})


def child_environment(extra: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    """The environment a job's tool is handed: the caller's, less what only describes the
    caller (test runner, make, terminal), which changes nothing a checker reports but would
    make every cached result miss."""
    env = {k: v for k, v in os.environ.items() if k not in VOLATILE_ENV}
    env.update(dict(extra))
    return env


def unless_found(g: "Gathered", why: str) -> str:
    """A job not fully checked for `why`: incomplete, unless the checker found errors all the same;
    then they stand (a failure is a failure), and `why` is said among its problems."""
    if any(f.is_error for f in g.findings):
        g.problems.append(why)
        return ""
    return why


class Checker:
    """One checker.  Subclasses set the class attributes and override the hooks they need."""

    name: str = ""
    family: str = ""  # the registry's FAMILIES key: how the report groups checkers
    languages: frozenset[str] = frozenset({"c"})  # the programs it can check: "c", "go"
    base: str | None = None  # the checker whose catalog expectations it inherits (memcheck-O2: memcheck)
    default_for: frozenset[str] = frozenset()  # languages whose every catalog pattern it runs on
    required_for: frozenset[str] = frozenset()  # a leaky variant of that language must say what it expects
    check_default_for: frozenset[str] = frozenset()  # `check --build` runs it when no --tool is given
    cflags: tuple[str, ...] = ()  # the C build profile
    compiler: str | None = None  # a compiler it needs whatever --cc says (msan: clang)
    go_mode: str | None = None  # how gobuild builds a Go program for it ("memcheck", "plain", "asan")
    estimate_s: float = 0.3  # a run's duration before one was measured (the scheduler starts slow ones first)
    halts_on_first_error: bool = False  # the first memory error ends the run: its leak totals are not whole
    wants_secrets: bool = False  # needs the canaries to look for (--secret, a pattern's secrets)
    log_tools: tuple[str, ...] = ()  # the tool names a parsed log or finding carries that mean this checker
    cannot_see: str = ""  # what it is blind to, for docs/checkers.md and `leakharness checkers`
    # The checker that does its job for a program of another language (asan: go-asan for Go), so
    # that a project's default tools say "asan" once for its C and its Go targets.
    twins: Mapping[str, str] = {}

    @property
    def expectation_base(self) -> str:
        return self.base or self.name

    @property
    def link_flags(self) -> tuple[str, ...]:
        """What the link step of a project's own build needs for this profile: the sanitizer's
        runtime (-fsanitize=...), which a compile-only flag would leave out."""
        return tuple(f for f in self.cflags if f.startswith("-fsanitize"))

    @property
    def opt_level(self) -> str:
        """The -O level of its build, "" when it has none (Go)."""
        return next((f for f in reversed(self.cflags) if f.startswith("-O")), "")

    def __repr__(self) -> str:
        return f"<checker {self.name}>"

    # --- building ----------------------------------------------------------------------------

    def build_spec(self, **fields) -> build_mod.BuildSpec:
        """A BuildSpec for this checker's profile; `fields` give the sources and the rest."""
        language = fields.get("language", "c")
        if language == "go":
            return build_mod.BuildSpec(profile=self.name, go_mode=self.go_mode, **fields)
        cc = self.compiler or fields.pop("cc", "gcc")
        fields.pop("cc", None)
        return build_mod.BuildSpec(profile=self.name, profile_flags=self.cflags, cc=cc, **fields)

    def build(self, spec: build_mod.BuildSpec, cache_dir: Path) -> build_mod.Build:
        if spec.language == "go":
            from ..gobuild import build_go  # only the Go checkers' builds need the Go toolchain

            return build_go(spec, cache_dir)
        return build_mod.build(spec, cache_dir)

    # --- running -------------------------------------------------------------------------------

    def missing(self, cache_dir: Path) -> str:
        """Why this checker cannot run on this machine (with how to install it), or ""."""
        return ""

    def task_env(self, secrets: Iterable[str] = ()) -> tuple[tuple[str, str], ...]:
        """What a task's environment needs from this checker (the residue canaries)."""
        return ()

    def cannot_run(self, job: "Job") -> str:
        """Why the job cannot be checked at all before it starts (say, no canaries), or ""."""
        return ""

    def cannot_check(self, program: str) -> str:
        """Why this checker cannot check this program file (not instrumented, statically linked,
        not hardened), or "": the job is then incomplete without running."""
        return ""

    def cannot_follow(self, program: str) -> str:
        """Why this checker cannot see into a program the checked one runs (a child), or "":
        the job is then incomplete.  By default a child is checked as its parent is."""
        return ""

    def command(self, job: "Job", log_dir: Path, cache_dir: Path) -> tuple[list[str], dict[str, str]]:
        """The command line and environment of a job, its logs going to log_dir."""
        return list(job.command), child_environment(job.env)

    # --- collecting ----------------------------------------------------------------------------

    def log_files(self, out_dir: Path) -> list[Path]:
        """The files this checker wrote that hold its reports, one per process."""
        return []

    def accept_unparsed(self, path: Path, g: "Gathered") -> bool:
        """A log the parser rejects that is nonetheless fine (exit statistics alone); may note
        what it shows in g.  False: the log is cut or unreadable."""
        return False

    def after_logs(self, g: "Gathered") -> None:
        """Findings the checker's run left elsewhere than its logs (a Go crash on stderr, glibc's
        abort messages), and corrections to what the logs said."""

    def incomplete(self, g: "Gathered") -> str:
        """Why this checker's run is not whole (after the rules every run obeys), or ""."""
        return ""

    # --- the result cache ---------------------------------------------------------------------

    def version(self) -> str:
        """Part of every result key: the checker's version as its tool reports it."""
        return self.name

    def key_files(self, env: dict[str, str], cwd: Path, program: str) -> list[str]:
        """Files whose content changes what this checker reports although no argument names
        them: its own binaries, its rc files, what its options name.  Missing ones are keyed as
        missing."""
        return []

    def rc_files(self, cwd: Path) -> list[str]:
        """Option files the tool reads by itself: their text is searched for files they name."""
        return []

    def tool_versions(self) -> tuple[tuple[str, str], ...]:
        """(tool, version) for results.json's list of tools: what did the checking."""
        return ()


_WHICH_TTL_S = 10.0  # how long an answer of which() is reused within one process
_which_seen: dict[tuple[str, str | None], tuple[float, str | None]] = {}


def which(program: str, env: dict[str, str] | None = None) -> str | None:
    """shutil.which under the job's PATH.  Every result key asks it for the checker's tools (a
    walk of PATH, a fifth of an all-cached re-run's keys): an answer is reused for a few seconds
    while the file it names is still executable.  Only where a tool is found is remembered; what
    it is, is hashed by the caller."""
    path = (env or os.environ).get("PATH")
    key = (program, path)
    now = time.monotonic()
    seen = _which_seen.get(key)
    if seen is not None and now - seen[0] < _WHICH_TTL_S and (seen[1] is None or os.access(seen[1], os.X_OK)):
        return seen[1]
    found = shutil.which(program, path=path)
    _which_seen[key] = (now, found)
    return found
