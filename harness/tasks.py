"""Tasks: what to build and run.  A task is one program under one checker: a catalog pattern's
variant rendered from its template, a user's own program (as it is, or C or Go sources built
per checker), or a target of a project file (project.py: sources, the project's own build
command, a Go program or a Go package's tests, a ready program, each test CTest lists).  Each
checker's build profile and what its tasks need (the residue canaries) are the checker's to say;
this module only puts them together.
"""

from __future__ import annotations

import os
import re
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
    stdin: Path | None = None  # a file fed to the program's stdin (a project target's); None: /dev/null
    known: tuple[str, ...] = ()  # signatures accepted: listed, not failing (a project target's `known`)
    project_build: Any = None  # projectbuild.ProjectBuild: the project's own build command, run before
    source_root: Path | None = None  # the project root: its files the findings name are kept with the results
    unbuilt: tuple[str, str] | None = None  # (status, message): a target that cannot be built or found
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
    guess = registry.get(task.checker).estimate_s
    if task.expected is not None and task.expected.outcome == "incomplete" and task.expected.timeout:
        # A run that hangs by design (its own short timeout) lasts until the task's timeout: guessed
        # at the checker's few tenths of a second, the cold catalog run started get0_freed's 5 s
        # hangs last, after 111 s.  A crash by design is quick, and keeps the guess.
        return max(guess, task.timeout)
    return guess


# --- a project's targets (project.py) ---------------------------------------------------------------

def _narrowed(own: Sequence[str], wanted: Sequence[str] | None, language: str) -> list[str]:
    """A target's checkers, narrowed to the ones asked for (--tool asan is go-asan on Go)."""
    if not wanted:
        return list(own)
    asked = {registry.for_program(c, language) for c in wanted}
    return [c for c in own if c in asked]


def _target_env(env: Sequence[tuple[str, str]], checker: str, secrets: Sequence[str]) -> tuple[tuple[str, str], ...]:
    chosen = registry.get(checker)
    # Without secrets the residue checker says itself why it cannot run (incomplete, never clean).
    extra = chosen.task_env(secrets) if chosen.wants_secrets and secrets else ()
    return tuple(env) + tuple(extra)


def ready_program(project, program: str) -> tuple[Path | None, str]:
    """A target's ready program: a path in the project, or a name on PATH; (path, "") or (None, why)."""
    if "/" in program:
        path = project.root / program
        return (path, "") if path.is_file() else (None, f"{program}: no such program in {project.root} (build it "
                                                        f"first, or give the target a build command)")
    found = shutil.which(program)
    return (Path(found), "") if found else (None, f"{program}: no such program on PATH")


def target_tasks(project, target, checkers: Sequence[str] | None = None, cc: str = "gcc",
                 timeout: float | None = None, n: int | None = None, only: str | None = None) -> list[Task]:
    """One project target under each of its checkers (or under `only`, whatever its own are: a
    --growth run's checker); `n` fills {n} in its arguments (default: the target's own n)."""
    from .projectbuild import ProjectBuild, profile_for

    args = tuple(a.replace("{n}", str(target.n if n is None else n)) for a in target.args)
    limit = timeout or target.timeout or project.timeout or DEFAULT_TIMEOUT
    tasks = []
    for checker in [only] if only else _narrowed(target.checkers, checkers, target.language):
        common = dict(pattern=target.name, variant=None, checker=checker, timeout=limit, args=args, cwd=target.cwd,
                      env=_target_env(target.env, checker, target.secrets), stdin=target.stdin, known=target.known,
                      source_root=project.root)
        chosen = registry.get(checker)
        if target.kind == "sources":
            spec = chosen.build_spec(name=target.name, sources=(), files=target.sources, cflags=target.cflags,
                                     ldflags=target.ldflags, language="c", cc=cc)
            tasks.append(Task(spec=spec, **common))
        elif target.kind in ("go", "go_test"):
            spec = chosen.build_spec(name=target.name, sources=(), files=(target.package,), cflags=target.cflags,
                                     ldflags=target.ldflags, language="go", go_test=target.kind == "go_test")
            tasks.append(Task(spec=spec, **common))
        elif target.kind == "build":
            build = ProjectBuild(label=target.name, root=project.root, kind="command",
                                 profile=profile_for(checker, cc, target.cflags, target.ldflags),
                                 timeout=project.build_timeout, command=target.build, program=target.program,
                                 ignore=project.ignore)
            tasks.append(Task(project_build=build, **common))
        else:
            path, why = ready_program(project, target.program)
            if path is None:
                tasks.append(Task(unbuilt=("build-failed", why), **common))
            else:
                tasks.append(Task(program=(str(path),), **common))
    return tasks


def ctest_test_name(prefix: str, name: str) -> str:
    """A CTest test's target name: the table's prefix and the test's name, in the characters a
    target name may hold."""
    return prefix + re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).lstrip("_.+-")[:120] or "test"


def ctest_tasks(project, suite, cache_dir: Path, checkers: Sequence[str] | None = None, cc: str = "gcc",
                timeout: float | None = None) -> list[Task]:
    """Every test CTest lists for a [[ctest]] table, under each of its checkers: the project is
    configured and built once per build profile (projectbuild.py), and each profile's own build
    says what its tests are."""
    from .projectbuild import ProjectBuild, build_project, ctest_tests, profile_for

    limit = timeout or suite.timeout or project.timeout or DEFAULT_TIMEOUT
    profiles: dict[Any, list[str]] = {}
    for checker in _narrowed(suite.checkers, checkers, "c"):
        profiles.setdefault(profile_for(checker, cc, suite.cflags, suite.ldflags), []).append(checker)
    tasks = []
    for profile, names in profiles.items():
        build = ProjectBuild(label=f"{project.file.name} {suite.label}", root=project.root, kind="cmake",
                             profile=profile, timeout=project.build_timeout, source_dir=suite.source_dir,
                             cmake_args=suite.cmake_args, ignore=project.ignore)
        built = build_project(build, cache_dir)
        if built.status != "ok":
            for checker in names:
                tasks.append(Task(pattern=suite.prefix or f"ctest{suite.index}", variant=None, checker=checker,
                                  timeout=limit, unbuilt=(built.status, built.message), source_root=project.root))
            continue
        listed = ctest_tests(built.listing, built.builddir, f"{project.file}: {suite.label}",
                             {**os.environ, **dict(suite.env)})
        # A name in `tests` that CTest does not list (a typo, a test renamed since) checks nothing:
        # said, never a run that leaves it out and passes.
        missing = [n for n in suite.tests if n not in {test.name for test in listed}]
        if missing:
            names_listed = ", ".join(sorted(test.name for test in listed)[:8]) or "none"
            raise LeakHarnessError(f"{project.file}: {suite.label}: tests: {missing[0]!r} is not a test CTest lists "
                                   f"(it lists {names_listed}{', ...' if len(listed) > 8 else ''})")
        for test in listed:
            if test.disabled or (suite.tests and test.name not in suite.tests) or test.name in suite.exclude:
                continue
            if test.unsupported:  # not run as ctest runs it: not run at all, and never clean
                for checker in names:
                    tasks.append(Task(pattern=ctest_test_name(suite.prefix, test.name), variant=None, checker=checker,
                                      timeout=limit, unbuilt=("incomplete", f"{test.name}: {test.unsupported}"),
                                      source_root=project.root))
                continue
            program = test.command[0]
            if not os.path.isabs(program):
                program = shutil.which(program, path=dict(test.env).get("PATH")) or str(test.cwd / program)
            for checker in names:
                tasks.append(Task(pattern=ctest_test_name(suite.prefix, test.name), variant=None, checker=checker,
                                  timeout=limit, program=(program,), args=test.command[1:], cwd=test.cwd,
                                  env=tuple(suite.env) + tuple(test.env), known=suite.known,
                                  source_root=project.root))
    return tasks


def project_tasks(project, cache_dir: Path, names: Sequence[str] | None = None, checkers: Sequence[str] | None = None,
                  cc: str = "gcc", timeout: float | None = None) -> list[Task]:
    """The project's targets (only `names` when given: targets, or tests CTest lists) under
    their checkers (narrowed to `checkers`).  Building a [[ctest]] project is what lists its
    tests, so it is built here when its tests may be among those asked for."""
    wanted = list(dict.fromkeys(names or ()))
    declared = {t.name for t in project.targets}
    tasks = []
    for target in project.targets:
        if not wanted or target.name in wanted:
            tasks.extend(target_tasks(project, target, checkers, cc, timeout))
    if project.ctests and (not wanted or set(wanted) - declared):
        for suite in project.ctests:
            found = ctest_tasks(project, suite, cache_dir, checkers, cc, timeout)
            clash = sorted({t.pattern for t in found} & declared)
            if clash:
                raise LeakHarnessError(f"{project.file}: {suite.label}: the test {clash[0]!r} has the name of a "
                                       f"[[target]]; give the [[ctest]] table a prefix")
            tasks.extend(t for t in found if not wanted or t.pattern in wanted)
    if wanted:
        have = {t.pattern for t in tasks} | declared
        unknown = [n for n in wanted if n not in have]
        if unknown:
            listed = sorted(declared | {t.pattern for t in tasks})
            raise LeakHarnessError(f"--target {unknown[0]}: no such target in {project.file} (targets: "
                                   f"{', '.join(listed[:20])}{' ...' if len(listed) > 20 else ''})")
    return tasks
