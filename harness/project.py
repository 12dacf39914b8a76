"""A team's own project, declared once: `leakharness.toml` (or `[tool.leakharness]` in
pyproject.toml) read into Targets and CTest tables, every key checked.

The file is found as pytest finds its rootdir: in the working folder or the nearest folder above
it.  It is untrusted input like any other: an unknown key, a wrong type or a path that leads out
of the project root (absolute, `..`, or a symlink pointing elsewhere) is one line naming the file,
the target and the key.  No key needs a path outside the project: a target's programs are built
into the harness cache ({builddir}) or found on PATH by name.

    tools = ["memcheck", "asan"]       # default checkers of every target (asan is go-asan for Go)
    [[target]]                         # one program: exactly one of sources, build (+ program),
    name = "aesgcm"                    # go, go_test, or program alone (run as it is)
    sources = ["cipher/aesgcm.c"]
    [[ctest]]                          # every test a CMake project's CTest lists is a target
    source_dir = "."

This module only reads and checks; tasks.py turns targets into Tasks, projectbuild.py runs a
project's own build commands and CMake.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from . import checkers as registry
from .catalog import MAX_TIMEOUT
from .errors import LeakHarnessError
from .findings import CATEGORIES

PROJECT_FILE = "leakharness.toml"
PYPROJECT_FILE = "pyproject.toml"
KINDS = ("sources", "build", "go", "go_test", "program")
# What a build command, a program and cmake's flags may hold: {cc} the compiler, {cflags} and
# {ldflags} the checker's build profile (and the target's own flags), {builddir} the profile's
# own build folder in the harness cache, {root} the project root.
PLACEHOLDERS = ("cc", "cflags", "ldflags", "builddir", "root")
DEFAULT_BUILD_TIMEOUT = 1800.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,119}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PROJECT_KEYS = {"tools", "timeout", "build_timeout", "env", "ignore", "target", "ctest"}
_TARGET_KEYS = {"name", "sources", "build", "program", "go", "go_test", "args", "stdin", "cwd", "env", "timeout",
                "tools", "secrets", "known", "cflags", "ldflags", "n"}
_CTEST_KEYS = {"source_dir", "cmake_args", "tests", "exclude", "prefix", "tools", "timeout", "env", "known",
               "cflags", "ldflags"}


class ProjectError(LeakHarnessError):
    """The project file is wrong: one line naming the file, the target and the key."""


@dataclass(frozen=True)
class Target:
    """One program of the project, as [[target]] declares it (paths absolute, checked)."""

    name: str
    kind: str  # one of KINDS
    language: str  # "c" or "go"
    checkers: tuple[str, ...]  # the target's tools, or the project's, as this language's checkers
    sources: tuple[Path, ...] = ()  # kind "sources"
    build: tuple[str, ...] = ()  # kind "build": the command, split as a shell would, placeholders unfilled
    program: str = ""  # kind "build": a template ({builddir}/prog); kind "program": a path or a name on PATH
    package: Path | None = None  # kind "go" and "go_test": the Go package's folder
    args: tuple[str, ...] = ()  # may hold {n} (the count a --growth run varies)
    stdin: Path | None = None
    cwd: Path | None = None
    env: tuple[tuple[str, str], ...] = ()
    timeout: float | None = None
    secrets: tuple[str, ...] = ()
    known: tuple[str, ...] = ()
    cflags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ()
    n: int = 1  # {n} in an ordinary run

    @property
    def grows(self) -> bool:
        """Its arguments say where an iteration count goes: --growth can vary it."""
        return any("{n}" in a for a in self.args)


@dataclass(frozen=True)
class CTestSuite:
    """A CMake project ([[ctest]]): configured and built once per build profile; each test CTest
    lists is a target named prefix + the test's name."""

    index: int  # its place in the file, for messages
    source_dir: Path
    checkers: tuple[str, ...]
    cmake_args: tuple[str, ...] = ()
    tests: tuple[str, ...] = ()  # only these (default: every test)
    exclude: tuple[str, ...] = ()
    prefix: str = ""
    timeout: float | None = None
    env: tuple[tuple[str, str], ...] = ()
    known: tuple[str, ...] = ()
    cflags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"[[ctest]] #{self.index} ({self.prefix or self.source_dir.name})"


@dataclass(frozen=True)
class Project:
    file: Path
    root: Path
    targets: tuple[Target, ...] = ()
    ctests: tuple[CTestSuite, ...] = ()
    timeout: float | None = None
    build_timeout: float = DEFAULT_BUILD_TIMEOUT
    ignore: tuple[Path, ...] = ()  # left out of the sources a build is keyed by

    def target(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name == name), None)


# --- finding the file ------------------------------------------------------------------------------

def declares_project(pyproject: Path) -> bool:
    """Whether a pyproject.toml holds [tool.leakharness] (a cheap look: a broken pyproject.toml
    of some folder above must not stop a run that has nothing to do with it)."""
    try:
        text = pyproject.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    if re.search(r"^\s*\[\[?\s*tool\s*\.\s*leakharness\b", text, re.M):
        return True  # a table header, even a broken one: load_project then says what is wrong
    if "leakharness" not in text:
        return False
    # Other spellings TOML allows: `leakharness = {...}` under [tool], a dotted key
    # `tool.leakharness.tools = [...]`.  Read as TOML; when that fails, a line that looks like
    # one of them still declares the project (its error is said, never a silent catalog run).
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):
        return re.search(r"^\s*(leakharness|tool\s*\.\s*leakharness)\s*[.=]", text, re.M) is not None
    tool = data.get("tool")
    return isinstance(tool, dict) and "leakharness" in tool


def find_project(start: str | os.PathLike) -> Path | None:
    """leakharness.toml (or a pyproject.toml declaring [tool.leakharness]) in `start` or the
    nearest folder above it; None when there is none."""
    start = Path(start).absolute()
    for folder in (start, *start.parents):
        own = folder / PROJECT_FILE
        py = folder / PYPROJECT_FILE
        if own.is_file():
            if py.is_file() and declares_project(py):
                raise ProjectError(f"{folder}: both {PROJECT_FILE} and {PYPROJECT_FILE} [tool.leakharness] declare "
                                   f"the project; keep one")
            return own
        if py.is_file() and declares_project(py):
            return py
    return None


# --- reading it --------------------------------------------------------------------------------------

class _Reader:
    """Checks one table's keys, naming the file and the table in every error."""

    def __init__(self, file: Path, root: Path, where: str, table: Mapping[str, Any], allowed: set[str]):
        self.file, self.root, self.where, self.table = file, root, where, table
        self.real_root = root.resolve()
        if not isinstance(table, dict):
            raise self.error(None, f"must be a table, not {_show(table)}")
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise self.error(None, f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")

    def error(self, key: str | None, problem: str) -> ProjectError:
        where = f"{self.where}: " if self.where else ""
        return ProjectError(f"{self.file}: {where}{key + ': ' if key else ''}{problem}")

    def has(self, key: str) -> bool:
        return key in self.table

    def string(self, key: str, default: str | None = None) -> str | None:
        value = self.table.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value or "\0" in value:
            raise self.error(key, f"must be a non-empty string, not {_show(value)}")
        return value

    def strings(self, key: str, split: bool = False) -> tuple[str, ...]:
        """A list of strings; with split, also one string split as a shell would."""
        value = self.table.get(key, [])
        if split and isinstance(value, str):
            try:
                return tuple(shlex.split(value))
            except ValueError as exc:
                raise self.error(key, f"cannot split {value!r}: {exc}") from None
        if not isinstance(value, list) or not all(isinstance(v, str) and "\0" not in v for v in value):
            what = "a list of strings" + (" or one string" if split else "")
            raise self.error(key, f"must be {what}, not {_show(value)}")
        return tuple(value)

    def seconds(self, key: str) -> float | None:
        value = self.table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_TIMEOUT:
            raise self.error(key, f"must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}, not {_show(value)}")
        return float(value)

    def env(self, key: str = "env") -> tuple[tuple[str, str], ...]:
        value = self.table.get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table of NAME = \"value\", not {_show(value)}")
        out = []
        for name, text in value.items():
            if not _ENV_NAME.match(name):
                raise self.error(key, f"{name!r} is not an environment variable's name")
            if not isinstance(text, str) or "\0" in text:
                raise self.error(key, f"{name} must be a string, not {_show(text)}")
            out.append((name, text))
        return tuple(out)

    def path(self, key: str, value: Any, must: str | None = None, base: Path | None = None) -> Path:
        """A path relative to the project root (or `base`, a folder inside it) that stays inside
        the root, symlinks followed; `must` = "file" or "dir" checks what it is."""
        if not isinstance(value, str) or not value or "\0" in value:
            raise self.error(key, f"must be a path (a non-empty string), not {_show(value)}")
        given = Path(value).expanduser() if value.startswith("~") else Path(value)
        if given.is_absolute():
            raise self.error(key, f"{value!r} is absolute: give a path relative to the project root {self.root}")
        full = Path(os.path.normpath((base or self.root) / given))
        try:
            real = full.resolve()
        except (OSError, RuntimeError) as exc:
            raise self.error(key, f"{value!r}: {exc}") from None
        if real != self.real_root and self.real_root not in real.parents:
            raise self.error(key, f"{value!r} leads outside the project root {self.root}")
        if must == "file" and not real.is_file():
            raise self.error(key, f"{value!r}: no such file ({full})")
        if must == "dir" and not real.is_dir():
            raise self.error(key, f"{value!r}: no such folder ({full})")
        return full

    def tools(self, key: str, language: str, defaults: tuple[str, ...] | None) -> tuple[str, ...]:
        """The checkers for a program of `language`: this table's tools, else the project's, else
        what `check` runs for the language; each as that language's checker (asan: go-asan)."""
        if self.has(key):
            names = self.strings(key)
            if not names:
                raise self.error(key, "is empty: name at least one checker")
            for name in names:
                if not registry.known(name):
                    raise self.error(key, f"unknown checker {name!r} (one of {', '.join(registry.names())})")
            chosen = [registry.for_program(n, language) for n in names]
            if None in chosen:
                bad = names[chosen.index(None)]
                able = ", ".join(registry.for_language(language))
                raise self.error(key, f"{bad} cannot check a {_LANGUAGE[language]} program (its checkers: {able})")
            return tuple(dict.fromkeys(chosen))
        if defaults is None:
            return registry.check_defaults(language)
        chosen = [c for c in (registry.for_program(n, language) for n in defaults) if c]
        if not chosen:
            raise self.error(None, f"none of the project's tools ({', '.join(defaults)}) checks a "
                                   f"{_LANGUAGE[language]} program: give it tools of its own "
                                   f"({', '.join(registry.for_language(language))})")
        return tuple(dict.fromkeys(chosen))

    def known(self) -> tuple[str, ...]:
        out = self.strings("known")
        for sig in out:
            category, sep, frames = sig.partition(":")
            if not sep or category not in CATEGORIES or not frames.strip():
                raise self.error("known", f"{sig!r} is not a finding's signature (CATEGORY:FRAME>FRAME@HASH, as "
                                          f"results.json and `leakharness suppressions --format known` write it)")
        return out

    def secrets(self) -> tuple[str, ...]:
        from .secrets import secret_hex

        out = self.strings("secrets")
        if out:
            try:
                secret_hex(out, where="secrets")
            except LeakHarnessError as exc:
                raise self.error(None, str(exc)) from None
        return out

    def placeholders(self, key: str, texts: tuple[str, ...]) -> None:
        for text in texts:
            for name in re.findall(r"(?<!\$)\{([A-Za-z_]\w*)\}", text):
                if name not in PLACEHOLDERS and name != "n":
                    raise self.error(key, f"{{{name}}} is not a placeholder (known: "
                                          f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)})")


_LANGUAGE = {"c": "C", "go": "Go"}


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def load_project(file: str | os.PathLike) -> Project:
    """Read and check a project file (leakharness.toml, or pyproject.toml's [tool.leakharness])."""
    file = Path(file).absolute()
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectError(f"{file}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProjectError(f"{file}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ProjectError(f"{file}: not valid TOML: nested too deep") from None
    where = ""
    if file.name == PYPROJECT_FILE:
        data = data.get("tool", {}).get("leakharness") if isinstance(data.get("tool"), dict) else None
        where = "[tool.leakharness]"
        if data is None:
            raise ProjectError(f"{file}: no [tool.leakharness] table")
    root = file.parent
    top = _Reader(file, root, where, data, _PROJECT_KEYS)
    defaults = top.strings("tools") if top.has("tools") else None
    if defaults is not None:
        if not defaults:
            raise top.error("tools", "is empty: name at least one checker")
        for name in defaults:
            if not registry.known(name):
                raise top.error("tools", f"unknown checker {name!r} (one of {', '.join(registry.names())})")
    env = top.env()
    ignore = tuple(top.path("ignore", v) for v in top.strings("ignore"))
    timeout = top.seconds("timeout")
    build_timeout = top.seconds("build_timeout") or DEFAULT_BUILD_TIMEOUT
    raw_targets = data.get("target", [])
    raw_ctests = data.get("ctest", [])
    for key, raw in (("target", raw_targets), ("ctest", raw_ctests)):
        if not isinstance(raw, list):
            raise top.error(key, f"must be an array of tables ([[{key}]]), not {_show(raw)}")
    if not raw_targets and not raw_ctests:
        raise top.error(None, "declares no [[target]] and no [[ctest]]: nothing to check")
    targets = []
    for i, raw in enumerate(raw_targets, 1):
        name = raw.get("name") if isinstance(raw, dict) else None
        label = f"[[target]] {name!r}" if isinstance(name, str) else f"[[target]] #{i}"
        targets.append(_target(_Reader(file, root, f"{where + ' ' if where else ''}{label}", raw, _TARGET_KEYS),
                               defaults, env))
    seen: set[str] = set()
    for t in targets:
        if t.name in seen:
            raise top.error("target", f"two targets are named {t.name!r}; names must be unique")
        seen.add(t.name)
    ctests = tuple(_ctest(_Reader(file, root, f"{where + ' ' if where else ''}[[ctest]] #{i}", raw, _CTEST_KEYS),
                          i, defaults, env) for i, raw in enumerate(raw_ctests, 1))
    return Project(file=file, root=root, targets=tuple(targets), ctests=ctests, timeout=timeout,
                   build_timeout=build_timeout, ignore=ignore)


def _target(r: _Reader, defaults: tuple[str, ...] | None, project_env) -> Target:
    name = r.string("name")
    if name is None:
        raise r.error("name", "is missing: every target needs a unique name")
    if not _NAME.match(name):
        raise r.error("name", f"{name!r}: letters, digits and _ . + - only (it names files and test items)")
    kinds = [k for k in ("sources", "build", "go", "go_test") if r.has(k)]
    if len(kinds) > 1:
        raise r.error(None, f"give one of sources, build, go, go_test, not {' and '.join(kinds)}")
    kind = kinds[0] if kinds else ("program" if r.has("program") else None)
    if kind is None:
        raise r.error(None, "says nothing to run: give sources, build (with program), go, go_test, or program")
    language = "go" if kind in ("go", "go_test") else "c"
    fields: dict[str, Any] = {}
    if kind == "sources":
        values = r.strings("sources", split=False) if not isinstance(r.table["sources"], str) else (r.table["sources"],)
        if not values:
            raise r.error("sources", "is empty: name the C files to build")
        fields["sources"] = tuple(r.path("sources", v, must="file") for v in values)
        go = [v for v in values if v.endswith(".go")]
        if go:
            raise r.error("sources", f"{go[0]!r} is Go: a Go program is go = \"./cmd/prog\" (its package folder)")
        if r.has("program"):
            raise r.error("program", "is for a build command's output, or a ready program: sources are built by "
                                     "leakharness")
    elif kind == "build":
        fields["build"] = r.strings("build", split=True)
        if not fields["build"]:
            raise r.error("build", "is empty")
        r.placeholders("build", fields["build"])
        program = r.string("program")
        if program is None:
            raise r.error("program", "is missing: say where the build puts the program (\"{builddir}/prog\")")
        r.placeholders("program", (program,))
        if not program.startswith("{builddir}/"):
            # A program the build writes into the project itself, checked with {root} filled in
            # (as written, "{root}/../x" named a folder "{root}" and stayed inside).
            filled = os.path.normpath(program.replace("{root}", str(r.root)))
            if os.path.isabs(filled):
                filled = os.path.relpath(filled, r.root)
                if filled == ".." or filled.startswith("../"):
                    raise r.error("program", f"{program!r} leads outside the project root {r.root}")
            r.path("program", filled)
        elif ".." in Path(program[len("{builddir}/"):]).parts:
            raise r.error("program", f"{program!r} leads outside {{builddir}}")
        fields["program"] = program
    elif kind in ("go", "go_test"):
        package = r.path(kind, r.table[kind], must="dir")
        if not any(package.glob("*.go")):
            raise r.error(kind, f"{r.table[kind]!r}: no Go files in {package}")
        fields["package"] = package
        if r.has("program"):
            raise r.error("program", f"is for a build command's output, or a ready program: {kind} is built by "
                                     f"leakharness")
    else:  # a ready program, run as it is
        program = r.string("program")
        if "/" in program:
            r.path("program", program)
        fields["program"] = program
    if kind == "program" and (r.has("cflags") or r.has("ldflags")):
        raise r.error("cflags" if r.has("cflags") else "ldflags", "is for a program leakharness builds")
    args = r.strings("args")
    r.placeholders("args", args)
    n = r.table.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 10 ** 9:
        raise r.error("n", f"must be a whole number, 0 or more (the count {{n}} stands for), not {_show(n)}")
    stdin = r.path("stdin", r.table["stdin"], must="file") if r.has("stdin") else None
    if kind == "go_test" and not r.has("cwd"):
        cwd = fields["package"]  # where `go test` runs a package's tests
    else:
        cwd = r.path("cwd", r.table.get("cwd", "."), must="dir")
    env = dict(project_env)
    env.update(r.env())
    cflags, ldflags = r.strings("cflags", split=True), r.strings("ldflags", split=True)
    if kind in ("sources", "go", "go_test"):  # compiled by leakharness, wherever `run` was started
        cflags, ldflags = rooted(cflags, r.root), rooted(ldflags, r.root, files=True)
    return Target(name=name, kind=kind, language=language, checkers=r.tools("tools", language, defaults),
                  args=args, stdin=stdin, cwd=cwd, env=tuple(env.items()), timeout=r.seconds("timeout"),
                  secrets=r.secrets(), known=r.known(), cflags=cflags, ldflags=ldflags, n=n, **fields)


# Compiler and linker options whose value is a folder or a file, attached (-Iinclude) or next.
_PATH_OPTIONS = ("-I", "-iquote", "-idirafter", "-isystem", "-include", "-imacros", "-L")
_LINK_FILE = re.compile(r"\.(a|o|so)(\.\d+)*$")


def rooted(flags: tuple[str, ...], root: Path, files: bool = False) -> tuple[str, ...]:
    """flags with each relative folder or file their path options name (-Iinclude, -L lib) made
    the project root's, as for a build command (run from the root); with files, also the linker's
    inputs named by a relative path (lib/libx.a, x.o).  Anything else is left as written."""
    out: list[str] = []
    pending = None
    for flag in flags:
        if pending is not None:
            out.append(flag if os.path.isabs(flag) else str(root / flag))
            pending = None
            continue
        option = next((o for o in _PATH_OPTIONS if flag.startswith(o)), None)
        if option is not None and flag == option:
            pending = option
            out.append(flag)
        elif option is not None:
            value = flag[len(option):]
            out.append(flag if os.path.isabs(value) else option + str(root / value))
        elif files and not flag.startswith("-") and not os.path.isabs(flag) and _LINK_FILE.search(flag):
            out.append(str(root / flag))
        else:
            out.append(flag)
    return tuple(out)


def _ctest(r: _Reader, index: int, defaults: tuple[str, ...] | None, project_env) -> CTestSuite:
    source_dir = r.path("source_dir", r.table.get("source_dir", "."), must="dir")
    if not (source_dir / "CMakeLists.txt").is_file():
        raise r.error("source_dir", f"no CMakeLists.txt in {source_dir}")
    prefix = r.table.get("prefix", "")
    if not isinstance(prefix, str) or (prefix and not _NAME.match(prefix)):
        raise r.error("prefix", f"letters, digits and _ . + - only, not {_show(prefix)}")
    cmake_args = r.strings("cmake_args", split=True)
    r.placeholders("cmake_args", cmake_args)
    env = dict(project_env)
    env.update(r.env())
    return CTestSuite(index=index, source_dir=source_dir, checkers=r.tools("tools", "c", defaults),
                      cmake_args=cmake_args, tests=r.strings("tests"), exclude=r.strings("exclude"), prefix=prefix,
                      timeout=r.seconds("timeout"), env=tuple(env.items()), known=r.known(),
                      cflags=r.strings("cflags", split=True), ldflags=r.strings("ldflags", split=True))
