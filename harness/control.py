"""The facade: one call per thing a user wants, tying the stages together.

catalog -> generate -> build -> run -> parse -> judge.  The command line, the pytest plugin
and the tests call these functions; the stages never call back up here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from . import build as build_mod
from .catalog import VARIANTS, Pattern, common_dir
from .errors import LeakHarnessError
from .generate import render
from .orchestrate import Done, Progress, Task, perform, result_cache, run_tasks
from .results import Results


def catalog_spec(pattern: Pattern, variant: str, checker: str, cc: str = "gcc",
                 overrides: Mapping[str, Any] | None = None) -> build_mod.BuildSpec:
    name = f"{pattern.id}-{variant}"
    source = render(pattern, variant, overrides)
    return build_mod.BuildSpec(
        name=name,
        sources=((f"{name}.c", source),),
        profile=checker,
        include_dirs=(common_dir(pattern.directory.parent),),
        pch=common_dir(pattern.directory.parent) / "lh_common.h",
        cflags=("-Wall",),
        cc=cc,
    )


def catalog_task(pattern: Pattern, variant: str, checker: str, cc: str = "gcc",
                 overrides: Mapping[str, Any] | None = None, timeout: float | None = None) -> Task:
    return Task(pattern=pattern.id, variant=variant, checker=checker, timeout=timeout or pattern.timeout,
                spec=catalog_spec(pattern, variant, checker, cc, overrides),
                expected=pattern.expectation(variant, checker))


def run_catalog_job(pattern: Pattern, variant: str, checker: str, out_root: Path,
                    cache_dir: Path | None = None, cc: str = "gcc",
                    overrides: Mapping[str, Any] | None = None,
                    timeout: float | None = None, fresh: bool = False) -> Done:
    """Render, build (cached), run (or reuse an unchanged result) and judge one
    (pattern, variant, checker), in this process: what a test item does."""
    cache_dir = Path(cache_dir) if cache_dir else build_mod.default_cache_dir()
    task = catalog_task(pattern, variant, checker, cc, overrides, timeout)
    return perform(task, Path(out_root), cache_dir, result_cache(cache_dir, fresh))


def catalog_tasks(patterns: list[Pattern], checkers: tuple[str, ...] | None = None, cc: str = "gcc",
                  timeout: float | None = None) -> list[Task]:
    """Every (pattern, variant, checker) of the catalog; `checkers` narrows each pattern's own."""
    tasks = []
    for p in patterns:
        for variant in VARIANTS:
            for checker in p.checkers():
                if checkers and checker not in checkers:
                    continue
                tasks.append(catalog_task(p, variant, checker, cc, timeout=timeout))
    return tasks


def run_catalog(patterns: list[Pattern], out_dir: Path, checkers: tuple[str, ...] | None = None,
                cache_dir: Path | None = None, jobs: int | None = None, timeout: float | None = None,
                fresh: bool = False, cc: str = "gcc", progress: bool = True,
                suppressions: list | None = None) -> Results:
    tasks = catalog_tasks(patterns, checkers, cc, timeout)
    if not tasks:
        raise LeakHarnessError("nothing to run: no pattern has the chosen checkers")
    cache_dir = Path(cache_dir) if cache_dir else build_mod.default_cache_dir()
    return run_tasks(tasks, Path(out_dir), cache_dir, jobs=jobs, fresh=fresh, cc=cc,
                     progress=Progress(len(tasks), enabled=progress), suppressions=suppressions)


def check_tasks(program: tuple[str, ...] = (), sources: tuple[Path, ...] = (),
                checkers: tuple[str, ...] = ("memcheck",), cflags: tuple[str, ...] = (),
                ldflags: tuple[str, ...] = (), args: tuple[str, ...] = (), cc: str = "gcc",
                timeout: float = 120.0) -> list[Task]:
    """A user's own program (as it is) or sources (built per checker) under the checkers."""
    tasks = []
    if sources:
        name = Path(sources[0]).stem
        for checker in checkers:
            spec = build_mod.BuildSpec(name=name, sources=(), files=tuple(Path(s).resolve() for s in sources),
                                       profile=checker, cflags=tuple(cflags), ldflags=tuple(ldflags), cc=cc)
            tasks.append(Task(pattern=name, variant=None, checker=checker, timeout=timeout, spec=spec, args=args))
    else:
        if not program:
            raise LeakHarnessError("check: give a program to run (after --) or --build FILE.c")
        path = Path(program[0])
        if not path.is_file():
            import shutil

            found = shutil.which(program[0])
            if not found:
                raise LeakHarnessError(f"{program[0]}: no such program")
            path = Path(found)
        name = path.name
        for checker in checkers:
            tasks.append(Task(pattern=name, variant=None, checker=checker, timeout=timeout,
                              program=(str(path.resolve()),), args=tuple(program[1:]) + tuple(args)))
    return tasks


def run_check(tasks: list[Task], out_dir: Path, cache_dir: Path | None = None, jobs: int | None = None,
              fresh: bool = False, cc: str = "gcc", progress: bool = True,
              suppressions: list | None = None) -> Results:
    cache_dir = Path(cache_dir) if cache_dir else build_mod.default_cache_dir()
    return run_tasks(tasks, Path(out_dir), cache_dir, jobs=jobs, fresh=fresh, cc=cc,
                     progress=Progress(len(tasks), enabled=progress), suppressions=suppressions)
