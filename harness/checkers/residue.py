"""The residue checker: secrets left in freed memory and dead stack frames.

A small interposer (data/residue.c, compiled into the cache as lh-residue.so by `interposer`)
is loaded with LD_PRELOAD into the plain -g -O0 build; it scans every block being freed, every
block realloc moves, and the dead part of the main thread's stack when main returns, for the
canaries given in LH_RESIDUE_SECRETS, and logs what it finds to residue.<pid> (read by
parsers/residue.py).  LD_BIND_NOW=1: a lazily bound call overwrites the dead stack frames the
exit-time search reads.

A run is whole when the program's own process logged a start and an end (the interposer loaded
and its destructor ran) with canaries to look for.  It cannot load into a static or setuid
program, nor beside a sanitizer's runtime, and a Go program leaves through a raw exit_group that
it never sees end: such runs are incomplete, never clean.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence


from .. import elf
from ..parsers.residue import LOG_NAME, SO_NAME, ResidueLog
from .base import Checker, child_environment

SOURCE = Path(__file__).resolve().parent.parent / "data" / "residue.c"
SECRETS_VAR = "LH_RESIDUE_SECRETS"


def interposer(cache_dir: Path) -> Path | None:
    """lh-residue.so compiled into the cache, or None when no C compiler is there (the residue
    checker then cannot run: the job is incomplete, never clean)."""
    from ..build import helper_binary

    # -g: the interposer's own frames (free, realloc) are named like the program's.
    # -fno-omit-frame-pointer: the hooks read their caller's stack pointer from their frame.
    return helper_binary(SOURCE, cache_dir, "residue", SO_NAME,
                         ("-O2", "-g", "-fno-omit-frame-pointer", "-shared", "-fPIC", "-ldl"))


def environment(so: Path, secrets: str, log_dir: Path, env: dict[str, str] | None = None,
                skip: Sequence[str | os.PathLike] = ()) -> dict[str, str]:
    """The variables a run under the interposer needs (added to `env`, whose own LD_PRELOAD
    comes after ours: ours must see every malloc first).  `skip`: programs that are not the one
    checked (the harness's lh-reaper, which runs the command): the interposer stays inert there."""
    out = dict(env or {})
    if skip:
        out["LH_RESIDUE_SKIP_EXE"] = ":".join(os.path.realpath(p) for p in skip)
    user = out.get("LD_PRELOAD", "")
    out["LD_PRELOAD"] = f"{so}:{user}" if user else str(so)
    out["LH_RESIDUE_SECRETS"] = secrets
    out["LH_RESIDUE_LOG"] = f"{log_dir}/{LOG_NAME}"
    out["LD_BIND_NOW"] = "1"
    return out


def log_files(out_dir: Path) -> list[Path]:
    return sorted(p for p in Path(out_dir).glob(f"{LOG_NAME}.*") if p.name[len(LOG_NAME) + 1:].isdigit())





def whole_run(logs: Sequence[ResidueLog], main_pid: int | None) -> tuple[str, list[str]]:
    """Was the run checked to the end?  ("" or why not, problems to note) from its parsed logs.
    The main process's log must be whole; another process's log without its end line (a child
    killed by a signal) is noted: its frees until then were checked, its stack was not."""
    main = [log for log in logs if main_pid is None or log.pid == main_pid]
    if not main:
        return ("the residue interposer wrote no log for the program: it was not loaded (a static binary, "
                "a setuid one, or one built with a sanitizer, whose runtime must come first)"), []
    for log in main:
        if not log.complete:
            return log.reason, []
        if log.partial:
            return f"{os.path.basename(log.path)}: the log is cut short", []
    problems = [f"{os.path.basename(log.path)}: {log.reason}" for log in logs if log not in main and not log.complete]
    return "", problems




class Residue(Checker):
    name = "residue"
    family = "residue"
    cflags = ("-g", "-O0")  # the plain build, as memcheck's
    wants_secrets = True
    log_tools = ("residue",)
    cannot_see = ("secrets it was not told (it looks for given bytes only); a static or setuid program or a "
                  "child of that kind (the interposer cannot load: incomplete); a sanitizer build; Go programs "
                  "(their exit is never seen)")

    def missing(self, cache_dir: Path) -> str:
        if interposer(cache_dir) is None:
            return "the residue interposer could not be compiled: install a C compiler (sudo apt-get install gcc)"
        return ""

    def task_env(self, secrets: Iterable[str] = ()) -> tuple[tuple[str, str], ...]:
        return ((SECRETS_VAR, ",".join(secrets)),)

    def cannot_run(self, job) -> str:
        if not dict(job.env).get(SECRETS_VAR):
            return "residue needs the canaries to look for: a pattern's secrets, or --secret HEX / --secrets-file FILE"
        return ""

    def cannot_check(self, program: str) -> str:
        if elf.is_static(program):
            return f"{program} is statically linked: the residue interposer cannot be loaded into it"
        if elf.is_setuid(program):
            return f"{program} is setuid or setgid: the loader ignores LD_PRELOAD for it, so the interposer cannot load"
        return ""

    def cannot_follow(self, program: str) -> str:
        return self.cannot_check(program)

    def command(self, job, log_dir: Path, cache_dir: Path) -> tuple[list[str], dict[str, str]]:
        from ..supervise import reaper

        env = child_environment(job.env)
        so = interposer(cache_dir)
        wrapper = reaper(cache_dir)  # runs the command: not the program, the interposer stays inert in it
        # No interposer (no compiler): run_job stops first; the path only names what is missing.
        env = environment(so or Path(SO_NAME), env.get(SECRETS_VAR, ""), log_dir, env,
                          skip=(wrapper,) if wrapper else ())
        return list(job.command), env

    def log_files(self, out_dir: Path) -> list[Path]:
        return log_files(out_dir)

    def incomplete(self, g) -> str:
        from ..collect import last_line

        logs = [log for _, log in g.parsed if isinstance(log, ResidueLog)]
        why, notes = whole_run(logs, g.main_pid)
        if why:
            said = last_line(g.stderr_tail())
            return why + (f" (stderr: {said})" if said and not logs else "")
        if g.cut:
            return f"a log is cut short or unreadable: {', '.join(g.cut)}"
        g.problems.extend(notes)
        return ""


CHECKERS = (Residue(),)
FAMILY = ("residue", "Residue: an LD_PRELOAD interposer on the plain build, looking for secrets left in memory")
