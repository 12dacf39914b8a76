"""Tasks: what to build and run.  A task is one program under one checker: a catalog pattern's
variant rendered from its template, or a user's own program (as it is, or C or Go sources built
per checker).  Each checker's build profile and what its tasks need (the residue canaries) are
the checker's to say; this module only puts them together.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import checkers as registry
from .build import BuildSpec
from .catalog import VARIANTS, Expectation, Pattern, common_dir
from .errors import LeakHarnessError

DEFAULT_TIMEOUT = 120.0


def absolute(path: str | os.PathLike | None, cwd: Path) -> Path | None:
    """A user's path, made absolute against their working folder."""
    if path is None:
        return None
    return Path(os.path.normpath(cwd / Path(path).expanduser()))


@dataclass(frozen=True)
class Task:
    pattern: str  # a catalog pattern id, or the user's program name for `check`
    variant: str | None
    checker: str
    timeout: float
    spec: BuildSpec | None = None  # what to build, or None to run `program` as it is
    program: tuple[str, ...] = ()  # a ready program and its arguments
    args: tuple[str, ...] = ()
    expected: Expectation | None = None  # None for `check`: no verdict
    cwd: Path | None = None  # where the program runs (the user's working directory)
    env: tuple[tuple[str, str], ...] = ()  # added to the program's environment (the residue checker's canaries)
    # The catalog's own programs read nothing of the user's: their cached results are kept even
    # where the recorder cannot vouch for every read (a Go program's own system calls).
    reads_nothing: bool = False

    @property
    def name(self) -> str:
        return f"{self.pattern}::{self.variant}[{self.checker}]" if self.variant else f"{self.pattern}[{self.checker}]"

    @property
    def duration_key(self) -> str:
        return self.name



def catalog_spec(pattern: Pattern, variant: str, checker: str, cc: str = "gcc",
                 overrides: Mapping[str, Any] | None = None) -> BuildSpec:
    name = f"{pattern.id}-{variant}"
    from .generate import render  # jinja2: only the catalog's tasks need it (not `check`'s)

    source = render(pattern, variant, overrides)
    chosen = registry.get(checker)
    if pattern.language == "go":  # a Go program calling C: gobuild.py, its own compiler and flags
        return chosen.build_spec(name=name, sources=((f"{name}.go", source),), language="go")
    return chosen.build_spec(
        name=name,
        sources=((f"{name}.c", source),),
        include_dirs=(common_dir(pattern.directory.parent),),
        pch=common_dir(pattern.directory.parent) / "lh_common.h",
        cflags=("-Wall",),
        cc=cc,
    )


def catalog_task(pattern: Pattern, variant: str, checker: str, cc: str = "gcc",
                 overrides: Mapping[str, Any] | None = None, timeout: float | None = None,
                 cwd: Path | None = None) -> Task:
    env = registry.get(checker).task_env(pattern.secrets) if registry.get(checker).wants_secrets else ()
    expected = pattern.expectation(variant, checker)
    # The user's --timeout first; else a known hang's own (shorter) limit; else the pattern's.
    timeout = timeout or expected.timeout or pattern.timeout
    return Task(pattern=pattern.id, variant=variant, checker=checker, timeout=timeout, env=env,
                spec=catalog_spec(pattern, variant, checker, cc, overrides), expected=expected, cwd=cwd,
                reads_nothing=True)


def catalog_tasks(patterns: list[Pattern], checkers: tuple[str, ...] | None = None, cc: str = "gcc",
                  timeout: float | None = None, cwd: Path | None = None) -> list[Task]:
    """Every (pattern, variant, checker) of the catalog; `checkers` narrows each pattern's own."""
    tasks = []
    for p in patterns:
        for variant in VARIANTS:
            for checker in p.checkers():
                if checkers and checker not in checkers:
                    continue
                tasks.append(catalog_task(p, variant, checker, cc, timeout=timeout, cwd=cwd))
    return tasks


def check_tasks(program: tuple[str, ...] = (), sources: tuple[Path, ...] = (),
                checkers: tuple[str, ...] = (), cflags: tuple[str, ...] = (),
                ldflags: tuple[str, ...] = (), args: tuple[str, ...] = (), cc: str = "gcc",
                timeout: float = DEFAULT_TIMEOUT, cwd: Path | None = None) -> list[Task]:
    """A user's own program (as it is) or sources (built per checker) under the checkers
    (default for sources: what `check` runs for their language)."""
    cwd = Path(cwd) if cwd else Path(os.getcwd())
    tasks = []
    if sources:
        files = tuple(absolute(s, cwd) for s in sources)
        language = source_language(files)
        for f in files:
            if not (f.is_file() or (language == "go" and f.is_dir())):
                raise LeakHarnessError(f"{f}: no such source file" + (" (a folder is taken only when it holds "
                                                                       "Go files)" if f.is_dir() else ""))
        name = files[0].stem if files[0].is_file() else files[0].name
        able = registry.for_language(language)
        wrong = [c for c in checkers if c not in able]
        if wrong:
            what = "a Go program" if language == "go" else f"{files[0].name}, which is C"
            raise LeakHarnessError(f"--tool {wrong[0]}: cannot check {what} (checkers of "
                                   f"{'Go' if language == 'go' else 'C'}: {', '.join(able)})")
        for checker in checkers or registry.check_defaults(language):
            spec = registry.get(checker).build_spec(name=name, sources=(), files=files, cflags=tuple(cflags),
                                                    ldflags=tuple(ldflags), language=language,
                                                    **({"cc": cc} if language == "c" else {}))
            tasks.append(Task(pattern=name, variant=None, checker=checker, timeout=timeout, spec=spec, args=args,
                              cwd=cwd))
        return tasks
    if not program:
        raise LeakHarnessError("check: give a program to run (after --) or --build FILE.c")
    first = program[0]
    if os.sep in first:
        path = absolute(first, cwd)
        if not path.exists():
            raise LeakHarnessError(f"{path}: no such program")
    else:
        found = shutil.which(first) or (str(cwd / first) if (cwd / first).is_file() else None)
        if not found:
            raise LeakHarnessError(f"{first}: no such program (not a file here, not on PATH)")
        path = Path(found).absolute()
    if path.is_dir():
        raise LeakHarnessError(f"{path}: is a folder, not a program")
    if not checkers:
        raise LeakHarnessError("check: name a checker (--tool) to run the program under")
    for checker in checkers:
        tasks.append(Task(pattern=path.name, variant=None, checker=checker, timeout=timeout,
                          program=(str(path),), args=tuple(program[1:]) + tuple(args), cwd=cwd))
    return tasks


def source_language(files: Sequence[Path]) -> str:
    """"go" when the sources are Go files or a folder of them, else "c"; never a mix."""
    from .gobuild import is_go_source

    go = [is_go_source(Path(f)) for f in files]
    if any(go) and not all(go):
        raise LeakHarnessError(f"{files[go.index(False)]}: cannot build C and Go sources as one program "
                               f"(give the Go files, or the folder of the Go package, alone)")
    return "go" if go and all(go) else "c"


def default_check_checkers(sources: Sequence[str | os.PathLike], cwd: Path) -> tuple[str, ...]:
    """The checkers `check --build` runs when none is named: the registry's check defaults of
    the sources' language (memcheck and asan for C, the Go checkers for a Go program)."""
    files = [absolute(s, cwd) for s in sources]
    return registry.check_defaults(source_language(files) if files else "c")


def estimate(task: Task, durations: Mapping[str, float]) -> float:
    """A task's weight: its remembered duration, else its checker's guess (valgrind is slow, the
    rest fast).  The scheduler starts the heaviest first and the shard split balances by it."""
    known = durations.get(task.duration_key)
    if known is not None and known >= 0:
        return float(known)
    return registry.get(task.checker).estimate_s
