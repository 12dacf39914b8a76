"""A project's own builds: a target's build command (`build = "make ..."`) and a CMake project
([[ctest]]), each run once per build profile into a {builddir} of its own in the harness cache.

A build profile is what a checker needs of a compile: its C flags, the flags its link needs (a
sanitizer's runtime) and the compiler.  Checkers with the same profile (memcheck, helgrind and
residue at -g -O0) share one build.  A build folder is keyed by the project's sources (every
file under the project root but hidden ones, leakharness's own output folders, in-tree CMake
build folders and what `ignore` lists), the command, the profile, the environment it is handed,
the compiler's identity and the OpenSSL version: an unchanged project does not rebuild, and
reusing a build touches it (the cache evicts the least recently used entries).  What the build
read that the tree's hash does not cover (an archive of -L../lib, a header of -I/opt/include,
the compiler's own files, a hidden .config its Makefile includes, .git/) is recorded while it
runs (inputs.py's recorder) and kept with it: a build is reused only while all of that is
unchanged, and one that could not be recorded whole is made again every time.  What it made that
runs (_outputs: its executables and shared libraries) is noted too, by size and time, and a
folder where one of them is gone or differs (replaced, cut short, deleted by a `make clean` run
there) is built again: the program checked is the one that was built.

Unlike a compile of leakharness's own (build.py), a project's build cannot be made in a
temporary folder and renamed into place: CMake build trees and rpaths name their folder.  So it
is made where it stays, under an exclusive lock (concurrent jobs and pytest-xdist workers wait
for one builder), and marked done last: a folder whose build was killed half-way has no mark
and is built again from scratch.

The command is an argument list (the build string split as a shell would, placeholders filled
per argument: no shell; `sh -c '...'` is the user's to write), run with stdin from /dev/null,
under lh-reaper as a job is (supervise.run_reaped), with a time limit, and nothing of it left
running: not when it ends, not when the run stops, not when leakharness is killed.  CC, CFLAGS and
LDFLAGS are also set in its environment, so that a Makefile using the usual variables builds
for the checker without being told.  A failed build is one line with the tail of its output;
the whole output stays in the build folder.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from . import checkers as registry
from . import inputs as inputs_mod
from . import supervise, validate
from .checkers.base import child_environment
from .errors import BuildError, LeakHarnessError
from .outdir import MARKER

KEY_VERSION = "leakharness-projectbuild-1"
DONE = "build.json"  # written last: the build folder is complete, with what it read from outside
READS = "reads"  # the read recorder's logs of each step, while the build runs
TMP = "tmp"  # the build's TMPDIR
LOG = "build.log"
LISTING = "ctest.json"
TAIL_LINES = 3
TAIL_CHARS = 500


@dataclass(frozen=True)
class Profile:
    """What a checker needs of a compile and a link."""

    cc: str
    cflags: tuple[str, ...]
    ldflags: tuple[str, ...]

    @property
    def label(self) -> str:
        return " ".join(self.cflags)


def profile_for(checker: str, cc: str = "gcc", cflags: tuple[str, ...] = (), ldflags: tuple[str, ...] = ()) -> Profile:
    """The checker's build profile, with a target's own flags after it."""
    c = registry.get(checker)
    return Profile(cc=c.compiler or cc, cflags=tuple(c.cflags) + tuple(cflags),
                   ldflags=tuple(c.link_flags) + tuple(ldflags))


@dataclass(frozen=True)
class ProjectBuild:
    """One build of the project for one profile: a command ("command") or CMake ("cmake")."""

    label: str  # the target's name, or the [[ctest]] table's, for messages
    root: Path
    kind: str
    profile: Profile
    timeout: float
    command: tuple[str, ...] = ()  # kind "command": the argument list, placeholders unfilled
    program: str = ""  # kind "command": where the program is ("{builddir}/digest")
    source_dir: Path | None = None  # kind "cmake"
    cmake_args: tuple[str, ...] = ()
    ignore: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Built:
    status: str  # "ok", "build-failed", "tool-missing"
    builddir: Path | None = None
    message: str = ""
    cached: bool = False
    listing: Any = None  # kind "cmake": what `ctest --show-only=json-v1` printed


def fill(template: tuple[str, ...] | list[str], values: Mapping[str, Any]) -> list[str]:
    """Placeholders in an argument list: an argument that is exactly a list's placeholder
    ({cflags}) becomes one argument per flag; inside a longer argument (CFLAGS={cflags}) the list
    is joined by spaces.  `${VAR}` is left alone (a shell's, in `sh -c '...'`)."""
    out: list[str] = []
    for arg in template:
        whole = re.fullmatch(r"\{(\w+)\}", arg)
        if whole and isinstance(values.get(whole.group(1)), (list, tuple)):
            out.extend(str(v) for v in values[whole.group(1)])
            continue

        def one(m: re.Match) -> str:
            value = values.get(m.group(1))
            if value is None:
                return m.group(0)
            return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)

        out.append(re.sub(r"(?<!\$)\{(\w+)\}", one, arg))
    return out


def placeholder_values(build: ProjectBuild, builddir: Path) -> dict[str, Any]:
    return {"cc": shutil.which(build.profile.cc) or build.profile.cc, "cflags": build.profile.cflags,
            "ldflags": build.profile.ldflags, "builddir": str(builddir), "root": str(build.root)}


# --- what a build is keyed by ------------------------------------------------------------------------

def _skipped_folder(path: Path, name: str, ignore: set[str], cache_real: str) -> bool:
    if name.startswith(".") or name == "__pycache__":
        return True
    if str(path) in ignore:
        return True
    if (path / MARKER).is_file() or (path / "CMakeCache.txt").is_file():
        return True  # leakharness's own output (reports, nightly histories), an in-tree CMake build
    try:
        return os.path.realpath(path) == cache_real
    except OSError:
        return True


def tree_hash(root: Path, ignore: tuple[Path, ...] = (), cache_dir: Path | None = None) -> str:
    """A hash of the project's sources: every file under root (relative path and content), but
    hidden ones, leakharness's output folders, in-tree CMake builds, `ignore` and the cache.
    A symbolic link is keyed by where it points, never followed out of the project."""
    from .resultcache import file_hash

    h = hashlib.sha256()
    skip = {os.path.normpath(str(p)) for p in ignore}
    cache_real = os.path.realpath(cache_dir) if cache_dir else ""
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not _skipped_folder(here / d, d, skip, cache_real))
        for name in sorted(files):
            path = here / name
            if name.startswith(".") or os.path.normpath(str(path)) in skip:
                continue
            rel = path.relative_to(root).as_posix()
            try:
                if path.is_symlink():
                    h.update(f"link\0{rel}\0{os.readlink(path)}\0".encode("utf-8", "surrogateescape"))
                elif path.is_file():
                    h.update(f"file\0{rel}\0{file_hash(path)}\0".encode("utf-8", "surrogateescape"))
            except OSError:
                h.update(f"unreadable\0{rel}\0".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def build_key(build: ProjectBuild, cache_dir: Path) -> str:
    from .build import compiler_identity, openssl_flags

    h = hashlib.sha256()

    def add(*parts) -> None:
        for part in parts:
            h.update(str(part).encode("utf-8", "surrogateescape"))
            h.update(b"\0")

    try:
        compiler = compiler_identity(build.profile.cc)
    except BuildError:
        compiler = f"missing {build.profile.cc}"
    add(KEY_VERSION, build.kind, "root", build.root, "compiler", compiler, "openssl", openssl_flags()[0],
        "cflags", *build.profile.cflags, "ldflags", *build.profile.ldflags, "command", *build.command,
        "source_dir", build.source_dir or "", "cmake_args", *build.cmake_args)
    if build.kind == "cmake":
        add("cmake", _tool_identity("cmake"), _tool_identity("ctest"))
    # The environment the build is handed (but what _run_build sets itself): a Makefile's
    # $(if $(WITH_CACHE),...), CPPFLAGS, PKG_CONFIG_PATH change what it makes, as a job's
    # environment is in its result key.
    add("environment", *sorted(f"{k}={v}" for k, v in child_environment().items() if k not in _BUILD_SETS))
    add("tree", tree_hash(build.root, build.ignore, cache_dir))
    return h.hexdigest()


_BUILD_SETS = frozenset({"CC", "CFLAGS", "LDFLAGS", "TMPDIR"})  # the build's environment, set per profile


def _tree_keyed(build: ProjectBuild, cache_dir: Path):
    """A test of a resolved path (a file read, probed or found missing by the build): whether
    tree_hash keys it, that is under the root, in no hidden, ignored or skipped folder, and not
    hidden itself.  What it does not key (../.config that a Makefile includes, anything under
    .git/, `ignore`) is fingerprinted with the reads from outside.  A build reads thousands of
    paths in a few folders: each folder is judged once."""
    root_real = os.path.realpath(build.root)
    skip = {os.path.normpath(str(p)) for p in build.ignore}
    cache_real = os.path.realpath(cache_dir)

    @functools.lru_cache(maxsize=None)
    def folder_keyed(rel: str) -> bool:  # a folder under the root, "" the root itself
        if not rel:
            return True
        parent, _, name = rel.rpartition("/")
        return folder_keyed(parent) and not _skipped_folder(Path(build.root) / rel, name, skip, cache_real)

    def keyed(real: str) -> bool:
        if real == root_real:
            return True  # its listing: the tree holds its names (but hidden ones, and output folders)
        if not real.startswith(root_real + "/"):
            return False
        rel = real[len(root_real) + 1:]
        parent, _, name = rel.rpartition("/")
        if name.startswith(".") or not folder_keyed(parent) or os.path.normpath(str(Path(build.root) / rel)) in skip:
            return False
        return not os.path.isdir(real) or folder_keyed(rel)

    return keyed


def _tool_identity(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        return f"missing {name}"
    from .resultcache import file_hash

    return f"{os.path.realpath(path)} {file_hash(path)}"


# --- running a build ----------------------------------------------------------------------------------

def _run(argv: list[str], cwd: Path, env: dict[str, str], log, timeout: float, cache_dir: Path, stdout=None,
         started: list | None = None) -> tuple[int | None, bool]:
    """Run one build step to its end or its time limit: (exit code, timed out).  Its output goes
    to the log (stdout to `stdout` when given).  It runs under lh-reaper, as a job does
    (supervise.run_reaped): what it starts is killed once it ends, when the run stops (a build
    runs in a job's thread, where Ctrl-C never arrives: the run says it is stopping), and when
    leakharness is killed outright (make ran on, its parent gone).  Its pid is appended to
    `started`, when given."""
    log.write(f"$ {shlex.join(argv)}\n".encode("utf-8", "surrogateescape"))
    log.flush()
    with open(os.devnull, "rb") as nothing:
        ended = supervise.run_reaped(argv, env, cwd, timeout, nothing, stdout or log, log, cache_dir,
                                     supervise.NO_CAP, Path(env.get("TMPDIR") or cache_dir), counted=False)
    if ended.start_error:
        log.write(f"{ended.start_error}\n".encode("utf-8", "surrogateescape"))
        return 127, False
    if supervise.stopping():
        raise Stopped(f"{argv[0]}: stopped with the run")
    if started is not None and ended.main_pid is not None:
        started.append(ended.main_pid)
    return ended.returncode, ended.timed_out


class Stopped(LeakHarnessError):
    """The run stopped (Ctrl-C, SIGTERM) while a build step ran: the step was killed, the build
    left unfinished (no mark: made again from nothing next time)."""


def _tail(log_path: Path) -> str:
    try:
        with open(log_path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip() and not line.startswith("$ ")]
    tail = " | ".join(lines[-TAIL_LINES:])
    return tail if len(tail) <= TAIL_CHARS else "..." + tail[-TAIL_CHARS:]


def _failed(build: ProjectBuild, argv: list[str], rc: int | None, timed_out: bool, log_path: Path,
            builddir: Path) -> Built:
    what = f"timed out after {build.timeout:g} s" if timed_out else f"failed (exit {rc})"
    tail = _tail(log_path)
    return Built("build-failed", builddir,
                 f"{build.label}: build for {build.profile.label} {what}: {shlex.join(argv)[:300]}"
                 f"{': ' + tail if tail else ''} (whole output: {log_path})")


def build_project(build: ProjectBuild, cache_dir: Path, tries: int = 3) -> Built:
    """The build folder of `build`, made once per key: reused when done (and touched), else
    built under the folder's lock.  A build during which the project's files changed (an editor
    saving) is not marked done under the key its old files gave: made again under the new one."""
    if build.kind == "cmake":
        for tool in ("cmake", "ctest"):
            if shutil.which(tool) is None:
                return Built("tool-missing", message=f"{build.label}: {tool} not found on PATH; install: "
                                                     f"sudo apt-get install cmake (or scripts/install-system-packages.sh)")
    try:
        key = build_key(build, cache_dir)
    except OSError as exc:
        return Built("build-failed", message=f"{build.label}: cannot read the project's sources: "
                                             f"{exc.filename or ''} {exc.strerror or exc}")
    final = Path(cache_dir) / "builds" / key[:2] / key
    done = final / DONE
    if _still_good(done):
        return _reuse(build, final)
    final.mkdir(parents=True, exist_ok=True)
    with open(final / ".lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another job or worker building the same: wait for it
        if _still_good(done):
            return _reuse(build, final)
        for old in final.iterdir():  # a build killed half-way: start again from nothing
            if old.name != ".lock":
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() and not old.is_symlink() else old.unlink()
        builddir = final / "b"
        builddir.mkdir()
        started = time.monotonic()
        values = placeholder_values(build, builddir)
        (final / TMP).mkdir()
        # TMPDIR in the build folder: the compiler's temporary files, which it writes, reads back
        # and deletes, are the build's own, not inputs from outside it.
        env = child_environment({"CC": values["cc"], "CFLAGS": " ".join(build.profile.cflags),
                                 "LDFLAGS": " ".join(build.profile.ldflags), "TMPDIR": str(final / TMP)}.items())
        so = inputs_mod.recorder(Path(cache_dir))
        log_path = final / LOG
        listing = None
        steps: list[tuple[Path, list[int]]] = []  # each step's recorder logs and pid
        with open(log_path, "wb") as log:
            for argv, cwd, out in _steps(build, builddir, values, final):
                deadline = build.timeout - (time.monotonic() - started)
                if deadline <= 0:
                    return _failed(build, argv, None, True, log_path, builddir)
                reads = final / READS / str(len(steps))
                reads.mkdir(parents=True)
                steps.append((reads, []))
                # lh-reaper, which runs the step, is checker machinery the recorder skips by its name.
                step_env = inputs_mod.environment(env, so, reads) if so is not None else env
                if out is not None:
                    with open(out, "wb") as out_file:
                        rc, timed_out = _run(argv, cwd, step_env, log, deadline, cache_dir, stdout=out_file,
                                             started=steps[-1][1])
                else:
                    rc, timed_out = _run(argv, cwd, step_env, log, deadline, cache_dir, started=steps[-1][1])
                if rc != 0 or timed_out:
                    return _failed(build, argv, rc, timed_out, log_path, builddir)
        if build.kind == "cmake":
            try:
                listing = json.loads((final / LISTING).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                return Built("build-failed", builddir, f"{build.label}: ctest --show-only=json-v1 printed no "
                                                       f"test list ({exc}); see {log_path}")
        try:
            moved = build_key(build, cache_dir) != key
        except OSError:
            moved = True
        if moved:  # left without its mark: this folder is built again from nothing if asked for
            if tries <= 1:
                return Built("build-failed", builddir, f"{build.label}: the project's files kept changing while "
                                                       f"it was built; build again once they are saved")
            lock.close()
            return build_project(build, cache_dir, tries - 1)
        (final / DONE).write_text(json.dumps({"label": build.label, "profile": list(build.profile.cflags),
                                              "duration_s": round(time.monotonic() - started, 3),
                                              "inputs": _outside_inputs(build, final, so, steps, cache_dir),
                                              "outputs": _outputs(builddir)}))
        return Built("ok", builddir, listing=listing)


def _steps(build: ProjectBuild, builddir: Path, values: dict[str, Any], final: Path):
    """(argument list, working folder, file for its stdout or None) of each step of the build."""
    if build.kind == "command":
        yield fill(build.command, values), build.root, None
        return
    cmake, ctest = shutil.which("cmake") or "cmake", shutil.which("ctest") or "ctest"
    flags, link = " ".join(build.profile.cflags), " ".join(build.profile.ldflags)
    yield ([cmake, "-S", str(build.source_dir), "-B", str(builddir), f"-DCMAKE_C_COMPILER={values['cc']}",
            f"-DCMAKE_C_FLAGS={flags}", f"-DCMAKE_CXX_FLAGS={flags}", f"-DCMAKE_EXE_LINKER_FLAGS={link}",
            f"-DCMAKE_SHARED_LINKER_FLAGS={link}", f"-DCMAKE_MODULE_LINKER_FLAGS={link}", "-DCMAKE_BUILD_TYPE=",
            *fill(build.cmake_args, values)], build.root, None)
    yield [cmake, "--build", str(builddir), "--parallel", str(os.cpu_count() or 1)], build.root, None
    yield [ctest, "--show-only=json-v1"], builddir, final / LISTING


def _outside_inputs(build: ProjectBuild, final: Path, so: Path | None,
                    steps: list[tuple[Path, list[int]]], cache_dir: Path) -> list[list[str]]:
    """What the build read but its own folder and the files tree_hash keys, as inputs.fingerprint
    gives it: (path, state).  The key holds the root's files; these are the rest a build can take
    in (an archive `-L../lib -lcommon` links, a header of -I/opt/include, the compiler's own
    files, the root's hidden or ignored files: _tree_keyed), so that one changed rebuilds.  A
    recording that is not whole (no recorder, a static program in the build, a process killed)
    leaves a state that is never vouched for: the build is then made again each time, never
    reused on a guess."""
    if so is None:
        return [["", "?no read recorder (no C compiler for it, or a cache path the loader cannot take)"]]
    own = os.path.realpath(final)
    keyed = _tree_keyed(build, cache_dir)

    def outside_of_key(path: str) -> bool:
        # Resolved: a process names a file as it reached it ("/src/app/../lib/libdup.a" for
        # -L../lib), and a link in the root that points out of it is keyed by its target's name only.
        real = os.path.realpath(path)
        return not (real == own or real.startswith(own + "/")) and not keyed(real)

    out: list[list[str]] = []
    for reads, pids in steps:
        recorded = inputs_mod.read(reads, pids[0] if pids else None)
        outside = tuple(e for e in recorded.entries if outside_of_key(e.path))
        fingerprint = inputs_mod.fingerprint(dataclasses.replace(recorded, entries=outside), build.root)
        out += [[path, value] for path, value in fingerprint]
        shutil.rmtree(reads, ignore_errors=True)
    return out


def _runs(path: str, st: os.stat_result) -> bool:
    """A file of a build that a job may run or load: an executable (a program, a libtool wrapper
    script) or a shared library.  Not its objects, archives and data, which a test run in the
    build folder may write to."""
    return bool(st.st_mode & 0o111) or _SHARED_LIBRARY.search(path) is not None


_SHARED_LIBRARY = re.compile(r"\.so(\.[0-9.]+)?$")


def _outputs(builddir: Path) -> list[list]:
    """[path under builddir, size, mtime_ns] of each regular file of the build that runs (_runs)."""
    out = []
    for folder, dirs, files in os.walk(builddir):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
            except OSError:  # gone as the walk passed (a step's leftover process cleaning up)
                continue
            if stat.S_ISREG(st.st_mode) and _runs(name, st):
                out.append([os.path.relpath(path, builddir), st.st_size, st.st_mtime_ns])
    return out


def _outputs_intact(builddir: Path, outputs) -> bool:
    """Each file _outputs noted is there as it was made: a regular file of the size and time noted
    (a stat each).  A record of another shape, or a path out of the folder, is not."""
    if not isinstance(outputs, list):
        return False
    for entry in outputs:
        if not (isinstance(entry, list) and len(entry) == 3 and all(type(n) is int for n in entry[1:])):
            return False
        try:
            st = os.lstat(builddir / validate.relative_path(entry[0], "outputs"))
        except (validate.FieldError, OSError):
            return False
        if not stat.S_ISREG(st.st_mode) or [st.st_size, st.st_mtime_ns] != entry[1:]:
            return False
    return True


def _still_good(done: Path) -> bool:
    """A finished build whose inputs from outside the project (_outside_inputs) are all unchanged
    and whose programs and libraries (_outputs) are as it made them."""
    try:
        record = json.loads(done.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict):
        return False
    # A build made before its reads or outputs were recorded, or a damaged record: made again.
    return (inputs_mod.stored_unchanged(record.get("inputs"))
            and _outputs_intact(done.parent / "b", record.get("outputs")))


def _reuse(build: ProjectBuild, final: Path) -> Built:
    try:
        os.utime(final)  # the cache evicts the least recently used entries: this one was used
    except OSError:
        pass
    listing = None
    if build.kind == "cmake":
        try:
            listing = json.loads((final / LISTING).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            listing = None
    return Built("ok", final / "b", cached=True, listing=listing)


def program_path(build: ProjectBuild, built: Built) -> Path:
    """Where a command build's program is: its template with {builddir} (and {root}) filled."""
    (text,) = fill((build.program,), placeholder_values(build, built.builddir))
    path = Path(text)
    return path if path.is_absolute() else build.root / path


# --- CTest's tests ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CTestTest:
    name: str
    command: tuple[str, ...]
    cwd: Path
    env: tuple[tuple[str, str], ...] = ()
    disabled: bool = False
    unsupported: str = ""  # why it cannot be run as ctest runs it (its job is then incomplete, never clean)


# ENVIRONMENT_MODIFICATION's operations (CMake 3.22): how each makes the variable's new value
# from its value so far ("" when unset) and the entry's.  `unset` (and `reset` to a variable the
# environment does not have) cannot be said as a value: such a test is not run on a guess.
_ENV_OPS = {
    "set": lambda cur, v: v,
    "string_append": lambda cur, v: cur + v,
    "string_prepend": lambda cur, v: v + cur,
    "path_list_append": lambda cur, v: f"{cur}:{v}" if cur else v,
    "path_list_prepend": lambda cur, v: f"{v}:{cur}" if cur else v,
    "cmake_list_append": lambda cur, v: f"{cur};{v}" if cur else v,
    "cmake_list_prepend": lambda cur, v: f"{v};{cur}" if cur else v,
}


def _test_environment(props: dict, base: Mapping[str, str]) -> tuple[list[tuple[str, str]], str]:
    """A test's ENVIRONMENT, then its ENVIRONMENT_MODIFICATION applied in order, over `base`
    (the environment the test's job starts from, as ctest's did): the
    variables it sets, with their values; and why not, when an entry cannot be followed."""
    env: dict[str, str] = {}
    for item in props.get("ENVIRONMENT") or ():
        if isinstance(item, str) and "=" in item:
            k, _, v = item.partition("=")
            env[k] = v
    before = {**base, **env}  # what `reset` goes back to
    mods = props.get("ENVIRONMENT_MODIFICATION")
    for item in mods if isinstance(mods, list) else [] if mods is None else [mods]:
        name, _, rest = item.partition("=") if isinstance(item, str) else ("", "", "")
        op, colon, value = rest.partition(":")
        if not name or not colon:
            return [], f"ENVIRONMENT_MODIFICATION entry {str(item)[:80]!r} is not VAR=OP:VALUE"
        current = env.get(name, base.get(name))
        if op == "reset":
            if name in before:
                env[name] = before[name]
            elif current is not None:
                return [], f"ENVIRONMENT_MODIFICATION {name}=reset: unsets {name}, which leakharness cannot do"
        elif op == "unset":
            if current is not None:
                return [], f"ENVIRONMENT_MODIFICATION {name}=unset: leakharness cannot unset a variable for a job"
        elif op in _ENV_OPS:
            env[name] = _ENV_OPS[op](current or "", value)
        else:
            return [], f"ENVIRONMENT_MODIFICATION {name}={op}: an operation leakharness does not know"
    return list(env.items()), ""


def ctest_tests(listing: Any, builddir: Path, where: str, base: Mapping[str, str] | None = None) -> list[CTestTest]:
    """The tests of `ctest --show-only=json-v1`'s output: each one's command, working folder and
    environment (its ENVIRONMENT_MODIFICATION applied over `base`, the environment ctest would
    run it in: leakharness's own and the [[ctest]] table's `env`).  Checked as untrusted input:
    a malformed entry is one line naming it."""
    if not isinstance(listing, dict) or not isinstance(listing.get("tests"), list):
        raise LeakHarnessError(f"{where}: ctest's test list is not what ctest --show-only=json-v1 prints")
    out = []
    for i, test in enumerate(listing["tests"]):
        name = test.get("name") if isinstance(test, dict) else None
        command = test.get("command") if isinstance(test, dict) else None
        if not isinstance(name, str) or not name:
            raise LeakHarnessError(f"{where}: ctest's test #{i + 1} has no name")
        if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
            # A test without a command (a fixture-only test) runs nothing: nothing to check.
            continue
        props = {p.get("name"): p.get("value") for p in test.get("properties", ()) if isinstance(p, dict)}
        cwd = props.get("WORKING_DIRECTORY")
        env, unsupported = _test_environment(props, os.environ if base is None else base)
        out.append(CTestTest(name=name, command=tuple(command),
                             cwd=Path(cwd) if isinstance(cwd, str) and os.path.isabs(cwd) else builddir,
                             env=tuple(env), disabled=bool(props.get("DISABLED")), unsupported=unsupported))
    return out
