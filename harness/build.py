"""Compile C sources for a checker's build profile, through a content-addressed cache.

(Go programs, BuildSpec.language == "go", are built by gobuild.py through the same cache; the
checker decides which, build.py knows nothing of Go.)

The cache key is a hash of everything that can change the binary: the sources and the
headers beside them, the profile's flags (not the checker's name: checkers whose builds have
the same flags, memcheck, helgrind and residue at -g -O0, share one binary), the compiler's identity and version, and the
OpenSSL version.  A build happens in a private temporary folder and is renamed into place,
so several processes (pytest-xdist workers) can build at once: one wins, the others reuse
its result.  A compile error is a result ("build-failed" with the compiler's message), not
an exception.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from . import facts
from .errors import BuildError

COMPILE_TIMEOUT = 300


def default_cache_dir() -> Path:
    env = os.environ.get("LEAKHARNESS_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "leakharness"


def run_tool(cmd: list[str], timeout: float = 60, env: dict[str, str] | None = None,
             cwd: str | None = None) -> subprocess.CompletedProcess:
    """A compiler or a tool's --version: no stdin, output captured, its own session, a timeout."""
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, start_new_session=True, env=env, cwd=cwd)


_run = run_tool


@functools.lru_cache(maxsize=None)
def compiler_identity(cc: str) -> str:
    """`gcc (Debian 12.2.0-14) 12.2.0`: part of every cache key (remembered while the
    compiler's binary is unchanged: facts.py)."""
    path = shutil.which(cc)
    if path is None:
        raise BuildError(f"compiler {cc!r} not found (install it: sudo apt-get install {cc})")
    answer = facts.tool_output([path, "--version"])
    if answer is None:
        raise BuildError(f"{cc} --version failed: it could not be run")
    _code, out, err = answer
    first = (out or err).splitlines()[:1]
    return f"{os.path.realpath(path)} {first[0] if first else ''}".strip()


_PKG_CONFIG_ENV = ("PKG_CONFIG_PATH", "PKG_CONFIG_LIBDIR", "PKG_CONFIG_SYSROOT_DIR")


@functools.lru_cache(maxsize=None)
def openssl_flags() -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(version, cflags, libs) of OpenSSL, from pkg-config (or plain -lssl -lcrypto).
    Remembered (facts.py) while pkg-config, the .pc files it read and the folders it searches
    keep their identity: a new OpenSSL installed anywhere pkg-config looks is seen."""
    env_key = [(k, os.environ.get(k, "")) for k in _PKG_CONFIG_ENV]

    def ask() -> list | None:
        try:
            version = _run(["pkg-config", "--modversion", "openssl"]).stdout.strip()
            cflags = _run(["pkg-config", "--cflags", "openssl"]).stdout.split()
            libs = _run(["pkg-config", "--libs", "openssl"]).stdout.split()
        except (OSError, subprocess.TimeoutExpired):
            return None
        return [version, cflags, libs] if version and libs else None

    try:
        grounds = _pkg_config_grounds()
    except (OSError, subprocess.TimeoutExpired):
        grounds = None
    if grounds is None:
        found = ask()
    else:
        found = facts.remembered("openssl-flags:" + repr(env_key), grounds, ask)
    if found:
        version, cflags, libs = found
        return version, tuple(cflags), tuple(libs)
    return "unknown", (), ("-lssl", "-lcrypto")


def _pkg_config_grounds() -> list[str] | None:
    """The files pkg-config's answer about openssl rests on: itself, the folders it searches,
    and the .pc files found there (remembered the same way); None when it is not there."""
    program = shutil.which("pkg-config")
    if program is None:
        return None
    env_key = [(k, os.environ.get(k, "")) for k in _PKG_CONFIG_ENV]

    def search_path() -> list[str] | None:
        proc = _run(["pkg-config", "--variable", "pc_path", "pkg-config"])
        if proc.returncode != 0:
            return None
        extra = [os.environ.get(k, "") for k in ("PKG_CONFIG_PATH", "PKG_CONFIG_LIBDIR")]
        return [d for d in ":".join([*extra, proc.stdout.strip()]).split(":") if d]

    folders = facts.remembered("pkg-config-path:" + repr(env_key), [os.path.realpath(program)], search_path)
    if not folders:
        return None
    pcs = [os.path.join(d, f"{name}.pc") for d in folders for name in ("openssl", "libssl", "libcrypto")]
    return [os.path.realpath(program), *folders, *(p for p in pcs if os.path.exists(p))]


@dataclass(frozen=True)
class BuildSpec:
    """What to compile: named sources (text), for one profile."""

    name: str  # a file-name-safe label, e.g. "ssl_error_path-leaky"
    sources: tuple[tuple[str, str], ...]  # (file name, C text)
    profile: str  # the checker it is built for (a label: the flags below are what count)
    profile_flags: tuple[str, ...] = ()  # the checker's C flags (Checker.cflags)
    include_dirs: tuple[Path, ...] = ()
    cflags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ()
    cc: str = "gcc"
    files: tuple[Path, ...] = ()  # a user's own sources, compiled where they are
    pch: Path | None = None  # a header every source includes first: precompiled once per profile
    language: str = "c"  # "go": a Go program (cgo), built by gobuild.py
    go_mode: str | None = None  # for Go: how gobuild builds it for the checker (Checker.go_mode)
    go_test: bool = False  # for Go: the package's tests (`go test -c`), not a program

    def key(self) -> str:
        return self.key_and_inputs()[0]

    def key_and_inputs(self) -> tuple[str, tuple[tuple[str, list[int] | None], ...]]:
        """The key, and the identity of every file it hashed as it was before the hash (facts.
        identity): a file changed after that (an editor saving while the compiler runs) no longer
        has it, and a binary built then is not stored under this key (in_cache)."""
        h = hashlib.sha256()
        seen: list[tuple[str, list[int] | None]] = []

        def hashed(path) -> str:
            seen.append((str(path), facts.identity(path)))
            return facts.sha256_file(str(path))

        def add(*parts: str) -> None:
            for part in parts:
                h.update(part.encode("utf-8", "surrogateescape"))
                h.update(b"\0")

        version, ssl_cflags, ssl_libs = openssl_flags()
        # The binary's name is part of the entry (builds/KEY/NAME): two targets built from the same
        # sources under different names are two entries, not one that each rebuilds under its own
        # name, pulling the binary from under the other while it runs (two processes of a run).
        add("leakharness-build-2", "output", self.name)
        add(compiler_identity(self.cc), "openssl", version, *ssl_cflags, *ssl_libs)
        add("profile", *self.profile_flags, "cflags", *self.cflags,
            "ldflags", *self.ldflags)
        for name, text in self.sources:
            add("source", name, text)
        files = _with_headers(self.cc, self.files, self.cflags)
        for path in files:
            add("file", str(path), hashed(path))  # remembered by identity: 100s of system headers
        for path in _read_besides(files, (*self.cflags, *self.ldflags)):
            add("read by the compiler", str(path), hashed(path))
        for path in link_inputs(self.ldflags, cc=self.cc):
            add("link input", path, hashed(path))
        for inc in self.include_dirs:  # headers the sources may include
            # Their folder too: the debug info names it, and a signature's line hash reads the
            # header there (a build from a copy of the fixtures, since deleted, named none).
            add("include_dir", str(inc))
            seen.append((str(inc), facts.identity(inc)))  # a header added or removed changes it
            for name, text in _headers_of(Path(inc)):
                add("header", name, text)
                seen.append((str(Path(inc) / name), facts.identity(Path(inc) / name)))
        return h.hexdigest(), tuple(seen)


# What a source pulls in that `cc -M` does not list: the assembler's .incbin and .include (in
# inline assembly, a certificate or a config compiled in) and C23's #embed.
_PULLED_IN = re.compile(rb'(?:\.incbin|\.include)\s+\\*"([^"\\\n]+)\\*"|#\s*embed\s*[<"]([^>"\n]+)[>"]')


def _read_besides(files: Sequence[Path], flags: Sequence[str]) -> list[Path]:
    """The files a compile reads that `cc -M` does not name: gcc's @response files among the
    flags (and those they name in turn), and what the user's own sources and headers (not the
    distribution's) pull in by .incbin, .include or #embed, looked for where the assembler and
    the compiler look (the working folder, the source's folder, the -I folders)."""
    found: list[Path] = []
    pending = [f[1:] for f in flags if f.startswith("@") and len(f) > 1]
    include_dirs = [f[2:] for f in flags if f.startswith("-I") and len(f) > 2]
    while pending and len(found) < 64:
        try:
            path = Path(pending.pop(0)).resolve()
            if path in found or not path.is_file():
                continue
        except (OSError, RuntimeError, ValueError):  # a symbolic link loop, a NUL: gcc fails on it too
            continue
        found.append(path)
        try:
            with open(path, "rb") as fh:  # a response file is small: past 1 MiB is not one
                words = fh.read(1 << 20).decode("utf-8", "replace").split()
        except OSError:
            continue
        pending += [w[1:].strip("'\"") for w in words if w.startswith("@") and len(w) > 1]
        include_dirs += [w[2:].strip("'\"") for w in words if w.startswith("-I") and len(w) > 2]
    for f in files:
        f = Path(f)
        if str(f).startswith(("/usr/include/", "/usr/lib/")):
            continue
        try:
            data = f.read_bytes()
        except OSError:
            continue
        if b"incbin" not in data and b".include" not in data and b"embed" not in data:
            continue
        for m in _PULLED_IN.finditer(data):
            name = os.fsdecode(m.group(1) or m.group(2))
            for folder in (os.getcwd(), str(f.parent), *include_dirs):
                try:
                    candidate = Path(folder, name)
                    if candidate.is_file() and candidate.resolve() not in found:
                        found.append(candidate.resolve())
                except (OSError, RuntimeError, ValueError):
                    continue
    return found


def link_inputs(ldflags: Sequence[str], cwd: str | None = None, cc: str = "gcc") -> list[str]:
    """The files a link with these flags reads that must be in a build's key, as the compiler
    (run in cwd, default the process's) finds them: archives, objects and libraries named by
    path; the lib<name>.so and lib<name>.a (or -l:<file>) that -l finds in the -L folders given;
    and, for a name none of those has, the archive the linker takes from its own folders
    (search_dirs: LIBRARY_PATH's, /usr/local/lib, the distribution's).  An archive is copied
    into the binary, so a new one must make a new binary (a library `make install`ed into
    /usr/local/lib, rebuilt with a leak); a shared library found there is loaded at run time,
    and every one the program loads is in the result key."""
    cwd = cwd or os.getcwd()
    folders, names, paths = [], [], []
    static = False
    tokens = iter(ldflags)
    for token in tokens:
        if token in ("-L", "-l"):  # the value in the next argument
            token += next(tokens, "")
        if token.startswith("-L"):
            folders.append(token[2:])
        elif token.startswith("-l"):
            names.append((token[2:], static))
        elif token in ("-static", "-Wl,-Bstatic", "-Wl,-static"):
            static = True
        elif token in ("-Wl,-Bdynamic", "-Wl,-call_shared"):
            static = "-static" in ldflags
        elif not token.startswith("-"):
            paths.append(token)
    found = [os.path.join(cwd, p) for p in paths]
    for name, only_archive in names:
        files = [name[1:]] if name.startswith(":") else [f"lib{name}.so", f"lib{name}.a"]
        given = [os.path.join(cwd, folder, f) for folder in folders for f in files]
        found += given
        if not any(os.path.isfile(p) for p in given):
            if only_archive and not name.startswith(":"):
                files = [f"lib{name}.a"]
            taken = next((os.path.join(d, f) for d in search_dirs(cc) for f in files
                          if os.path.isfile(os.path.join(d, f))), None)  # as ld: the first folder, .so first
            if taken is not None and not taken.endswith(".so"):
                found.append(taken)
    return list(dict.fromkeys(os.path.normpath(p) for p in found if os.path.isfile(p)))


def search_dirs(cc: str = "gcc") -> tuple[str, ...]:
    """The folders a link by cc searches for -l after the -L given, in order: the driver's own
    (`cc -print-search-dirs`, LIBRARY_PATH's among them), then the linker's SEARCH_DIR list."""
    return _search_dirs(cc, os.environ.get("LIBRARY_PATH", ""))


@functools.lru_cache(maxsize=16)
def _search_dirs(cc: str, library_path: str) -> tuple[str, ...]:
    compiler = os.path.realpath(shutil.which(cc) or cc)

    def ask() -> list[str] | None:
        out: list[str] = []
        try:
            answer = _run([compiler, "-print-search-dirs"]).stdout
            for line in answer.splitlines():
                if line.startswith("libraries: ="):
                    out += [os.path.normpath(d) for d in line[len("libraries: ="):].split(":") if d]
            ld = _run([compiler, "-print-prog-name=ld"]).stdout.strip() or "ld"
            verbose = _run([ld, "--verbose"]).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out + [os.path.normpath(d) for d in re.findall(r'SEARCH_DIR\("=?([^"]*)"\)', verbose)]

    # Three runs of the toolchain (15 ms): remembered while the compiler and the linker are the same.
    linker = shutil.which("ld")
    found = facts.remembered("search-dirs:" + repr((compiler, library_path)),
                             [compiler, *([os.path.realpath(linker)] if linker else [])], ask) or []
    return tuple(d for d in dict.fromkeys(found) if os.path.isdir(d))


_HEADERS: dict[str, tuple[list, list[tuple[str, str]]]] = {}
_HEADERS_LOCK = threading.Lock()


def _headers_of(folder: Path) -> list[tuple[str, str]]:
    """(name, text) of the *.h files of a folder, in name order: read once per process while the
    folder and each header keep their identity (every catalog task's key has them)."""
    key = str(folder)
    with _HEADERS_LOCK:
        known = _HEADERS.get(key)
    if known is not None and facts.still(known[0]):
        return known[1]
    headers = sorted(folder.glob("*.h"))
    grounds = [[key, facts.identity(folder)]] + [[str(p), facts.identity(p)] for p in headers]
    found = [(p.name, p.read_text(encoding="utf-8", errors="replace")) for p in headers]
    if all(g[1] is not None for g in grounds) and facts.still(grounds) and all(facts.settled(g[1]) for g in grounds):
        with _HEADERS_LOCK:
            _HEADERS[key] = (grounds, found)
    return found


def _with_headers(cc: str, files: tuple[Path, ...], cflags: tuple[str, ...]) -> list[Path]:
    """A user's sources and every header they include (`cc -M`), so that editing a header
    rebuilds: the system's too (`cc -MM` left them out, and with them a header of -isystem, of
    /usr/local/include after a `make install`, of a -dev package upgraded).

    Remembered (facts.py) while the compiler, the sources, the headers found and every folder
    a header could come from (the sources' and the headers' own, those of -I, -isystem, -iquote
    and -idirafter, and the compiler's own search list) keep their identity: an edit anywhere,
    or a header added where it would shadow another, runs `cc -M` again.  Never remembered when
    a header was missing."""
    if not files:
        return []
    found = [Path(f).resolve() for f in files]
    for f in found:
        if not f.is_file():
            raise BuildError(f"{f}: no such source file")
    compiler = shutil.which(cc) or cc

    def ask() -> tuple[list[str], bool]:
        """(the headers found, whether one was missing)."""
        try:
            proc = _run([compiler, "-M", "-MG", *cflags, *map(str, found)], timeout=120)
            deps = proc.stdout.replace("\\\n", " ").split()
        except (OSError, subprocess.TimeoutExpired):
            return [], True
        paths, missing = [], False
        for dep in deps:
            if dep.endswith(":"):
                continue
            path = Path(dep).resolve()
            if path.is_file():
                paths.append(str(path))
            else:
                missing = True  # -MG: a header that is not there (yet)
        return paths, missing

    folders = {str(f.parent) for f in found}
    for i, flag in enumerate(cflags):
        for prefix in ("-I", "-isystem", "-iquote", "-idirafter"):
            if flag == prefix and i + 1 < len(cflags):
                folders.add(os.path.abspath(cflags[i + 1]))
            elif flag.startswith(prefix) and len(flag) > len(prefix):
                folders.add(os.path.abspath(flag[len(prefix):]))
    include_env = [(k, os.environ.get(k, "")) for k in ("CPATH", "C_INCLUDE_PATH")]
    folders.update(os.path.abspath(d) for _, v in include_env for d in v.split(":") if d)
    key = "deps:" + repr((os.path.realpath(compiler), cflags, [str(f) for f in found], include_env))
    known = facts.get(key)
    if isinstance(known, dict) and facts.still(known.get("grounds")) and isinstance(known.get("value"), list):
        deps = known["value"]
    else:
        # The compiler's own search list only here: asking it is a run of the compiler.
        folders.update(_include_dirs(compiler))
        before = facts.grounds([os.path.realpath(compiler), *map(str, found), *sorted(folders)])
        deps, missing = ask()
        after = facts.grounds([p for d in deps for p in (d, os.path.dirname(d))])
        if not missing and before is not None and after is not None and facts.still(before):
            facts.put(key, {"grounds": before + after, "value": deps})
    for dep in deps:
        path = Path(dep)
        if path.is_file() and path not in found:
            found.append(path)
    return found


def _include_dirs(compiler: str) -> tuple[str, ...]:
    """The folders the compiler searches for <headers> of its own accord (CPATH's and
    C_INCLUDE_PATH's among them): `cc -E -v`'s search list."""
    return _include_dirs_of(compiler, os.environ.get("CPATH", ""), os.environ.get("C_INCLUDE_PATH", ""))


@functools.lru_cache(maxsize=16)
def _include_dirs_of(compiler: str, cpath: str, c_include_path: str) -> tuple[str, ...]:
    try:
        err = _run([compiler, "-E", "-v", "-x", "c", os.devnull]).stderr
    except (OSError, subprocess.TimeoutExpired):
        return ()
    listed = err.split("search starts here:")[-1].split("End of search list.")[0]
    return tuple(os.path.normpath(line.strip()) for line in listed.splitlines()
                 if line.startswith(" ") and os.path.isdir(line.strip()))


@dataclass(frozen=True)
class Build:
    spec: BuildSpec
    status: str  # "ok" or "build-failed"
    binary: Path | None
    source_paths: tuple[Path, ...] = ()
    message: str = ""  # the compiler's diagnostics
    key: str = ""
    cached: bool = False
    duration_s: float = 0.0
    command: tuple[str, ...] = field(default=())


def build(spec: BuildSpec, cache_dir: Path | None = None) -> Build:
    """Compile spec, or reuse the cached binary of the same key."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    if spec.language != "c":
        raise BuildError(f"{spec.name}: build.build compiles C; a {spec.language} program is its checker's to build")
    for _ in range(3):
        key, seen = spec.key_and_inputs()
        try:
            return in_cache(spec, cache_dir, key, lambda work, final: _compile_c(spec, cache_dir, work, final),
                            unchanged=lambda: all(facts.identity(path) == ident for path, ident in seen))
        except InputsChanged:
            continue  # built from what the files are now, under their new key
    raise BuildError(f"{spec.name}: its sources kept changing while they were compiled (3 tries); "
                     f"build again once they are saved")


class InputsChanged(Exception):
    """A file of the build's key changed while it was compiled: the binary may be of either text."""


def touch(entry: Path) -> None:
    """Mark a cache entry used now: the cache evicts the least recently used entries first, and a
    build reused every day must not go before a result written once."""
    try:
        os.utime(entry)
    except OSError:
        pass


def in_cache(spec: BuildSpec, cache_dir: Path, key: str, compile_into,
             unchanged: Callable[[], bool] | None = None) -> Build:
    """The build cache's one protocol, for every language: reuse cache/builds/KEY when it is
    there; else `compile_into(work, final)` in a private temporary folder, which returns a
    failed Build or the build.json record of a good one, and rename the folder into place, so
    that concurrent builders (pytest-xdist workers) share one result.  `unchanged()`, asked once
    the compile is done, says the key's files are as they were hashed; if not, InputsChanged."""
    final = cache_dir / "builds" / key[:2] / key
    done = final / "build.json"
    if done.is_file():
        info = _intact(final, spec.name)
        if info is not None:
            touch(final)  # reused: the cache evicts the least recently used entries first
            return _from_cache(spec, final, key, info)
        _discard(cache_dir, final)  # a truncated, altered or misshapen entry is never used: built again
    started = time.monotonic()
    (cache_dir / "tmp").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{key[:12]}.", dir=cache_dir / "tmp"))
    try:
        made = compile_into(work, final)
        if isinstance(made, Build):  # build-failed: a result, never cached
            return replace(made, key=key, duration_s=time.monotonic() - started)
        if unchanged is not None and not unchanged():
            raise InputsChanged(spec.name)
        made = {**made, "duration_s": time.monotonic() - started}
        binary = work / spec.name
        if binary.is_file():  # what reuse checks the binary against (_intact)
            made["binary"] = _stamp(binary)
        (work / "build.json").write_text(json.dumps(made))
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(work, final)
        except OSError:
            if not done.is_file():  # not a lost race: a real failure
                raise
        info = _intact(final, spec.name)
        if info is None:
            raise BuildError(f"{final}: the build just stored is not readable back")
        return _from_cache(spec, final, key, info, cached=False, duration=time.monotonic() - started)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _intact(final: Path, name: str) -> dict | None:
    """The entry's record, if the cached binary is the one that was built and the record is of
    the shape written: the binary's size and modification time as recorded (a stat: what every
    reuse pays); when they differ (a cache copied elsewhere, touched) its hash decides.  A binary
    cut short by a full disk or a killed copy, or edited, is not; nor is an entry recorded without
    the binary's hash (an older leakharness): it is built again once."""
    try:
        info = json.loads((final / "build.json").read_text())
        if not isinstance(info, dict) or not all(
                isinstance(info.get(k, []), list) and all(isinstance(x, str) for x in info.get(k, []))
                for k in ("sources", "files", "command")) or not isinstance(info.get("message", ""), str):
            return None
        binary = final / name
        return info if binary.is_file() and _as_stamped(binary, info.get("binary")) else None
    except (OSError, ValueError):
        return None


def _stamp(path: Path) -> dict:
    """What a file the cache keeps was made as: its size, time and hash."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": _sha256(path)}


def _as_stamped(path: Path, stamp) -> bool:
    """The file is as _stamp noted it: a stat when its size and time are as noted (what every
    reuse pays), its hash when the time is not (a cache copied elsewhere, touched).  Raises OSError."""
    st = path.stat()
    if not isinstance(stamp, dict) or st.st_size != stamp.get("size"):
        return False
    return st.st_mtime_ns == stamp.get("mtime_ns") or _sha256(path) == stamp.get("sha256")


def _discard(cache_dir: Path, final: Path) -> None:
    """Move a damaged entry aside (a rename: another process may be reading it) and delete it."""
    (cache_dir / "tmp").mkdir(parents=True, exist_ok=True)
    aside = Path(tempfile.mkdtemp(prefix=".damaged.", dir=cache_dir / "tmp"))
    try:
        os.rename(final, aside / "entry")
    except OSError:
        pass  # another builder moved it first
    shutil.rmtree(aside, ignore_errors=True)


def _compile_c(spec: BuildSpec, cache_dir: Path, work: Path, final: Path) -> Build | dict:
    source_paths = []
    for name, text in spec.sources:
        path = work / name
        path.write_text(text, encoding="utf-8")
        source_paths.append(path)
    binary = work / spec.name
    _version, ssl_cflags, ssl_libs = openssl_flags()
    pch_dir = precompiled_header(spec, cache_dir) if spec.pch else None
    # Debug info names the sources by the folder they end up in, not the temporary one.
    cmd = [shutil.which(spec.cc) or spec.cc, *spec.profile_flags, *spec.cflags, *ssl_cflags,
           f"-fdebug-prefix-map={work}={final}",
           *((f"-I{pch_dir}",) if pch_dir else ()),
           *(f"-I{inc}" for inc in spec.include_dirs), "-o", str(binary),
           *(str(p) for p in source_paths), *(str(Path(f).resolve()) for f in spec.files),
           *ssl_libs, "-lpthread", *spec.ldflags]
    try:
        proc = _run(cmd, timeout=COMPILE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return Build(spec, "build-failed", None, message=f"compiler timed out after {COMPILE_TIMEOUT} s",
                     command=tuple(cmd))
    message = (proc.stderr + proc.stdout).strip()
    if proc.returncode != 0 or not binary.is_file():
        return Build(spec, "build-failed", None, message=message or f"compiler exit {proc.returncode}",
                     command=tuple(cmd))
    return {"name": spec.name, "profile": spec.profile, "command": cmd, "message": message,
            "sources": [name for name, _ in spec.sources], "compile_dir": str(work),
            "files": [str(Path(f).resolve()) for f in spec.files]}


def precompiled_header(spec: BuildSpec, cache_dir: Path) -> Path | None:
    """A folder holding spec.pch precompiled for spec's compiler and flags, or None.

    The catalog's fixtures all start with lh_common.h, whose OpenSSL headers are most of a
    compile's time; gcc picks `lh_common.h.gch` up from an earlier -I folder, and silently
    falls back to the header when the flags do not match, so this only ever saves time."""
    header = Path(spec.pch)
    if spec.cc.endswith("clang") or not header.is_file():
        return None  # clang's PCH works differently (-include-pch); not worth a second path
    version, ssl_cflags, _ = openssl_flags()
    flags = (*spec.profile_flags, *spec.cflags, *ssl_cflags)
    # The header's path too: the functions it defines are named by it in every binary's debug info.
    h = hashlib.sha256("\0".join(("leakharness-pch-1", compiler_identity(spec.cc), version, *flags, str(header),
                                   header.read_text(encoding="utf-8", errors="replace"))).encode())
    key = h.hexdigest()
    final = Path(cache_dir) / "pch" / key[:2] / key
    gch = final / f"{header.name}.gch"
    if gch.is_file():
        if _sealed(gch):
            try:
                os.utime(final)  # used: the cache's size cap evicts the least recently used first
            except OSError:
                pass
            return final
        _discard(Path(cache_dir), final)  # cut short or replaced: every build would fail on it, or use another
    (Path(cache_dir) / "tmp").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"pch.{key[:12]}.", dir=Path(cache_dir) / "tmp"))
    try:
        cmd = [shutil.which(spec.cc) or spec.cc, *flags, "-x", "c-header", str(header),
               "-o", str(work / f"{header.name}.gch")]
        try:
            proc = _run(cmd, timeout=COMPILE_TIMEOUT)
        except subprocess.TimeoutExpired:
            return None
        if proc.returncode != 0:
            return None
        _seal(work / f"{header.name}.gch")
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(work, final)
        except OSError:
            pass  # another builder made the same one first
        return final if gch.is_file() else None
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _from_cache(spec: BuildSpec, final: Path, key: str, info: dict, cached: bool = True,
                duration: float = 0.0) -> Build:
    return Build(spec, "ok", final / spec.name,
                 source_paths=tuple(final / name for name in info.get("sources", ()))
                 + tuple(Path(f) for f in info.get("files", ())),
                 message=info.get("message", ""), key=key, cached=cached,
                 duration_s=duration, command=tuple(info.get("command", ())))


_HELPER_LOCK = threading.Lock()
_HELPERS: dict[tuple, tuple] = {}  # (source, cache, folder, name, flags) -> (source's identity, the binary)


def helper_binary(source: Path, cache_dir: Path, folder: str, name: str, flags: tuple[str, ...]) -> Path | None:
    """A small C helper of leakharness's own (lh-reaper, the residue interposer) compiled once
    into the cache, keyed by its source's hash; None when no C compiler is there.  Renamed into
    place, so a concurrent process never sees a half-written file."""
    known = _HELPERS.get((str(source), str(cache_dir), folder, name, flags))
    if known is not None and known[0] == facts.identity(source) and known[1].is_file():
        return known[1]  # asked for by every job: the source is hashed once per process
    ident = facts.identity(source)
    key = hashlib.sha256(Path(source).read_bytes() + "\0".join(flags).encode()).hexdigest()[:16]
    target = Path(cache_dir) / "helpers" / folder / key / name
    if target.is_file() and _sealed(target):
        _HELPERS[(str(source), str(cache_dir), folder, name, flags)] = (ident, target)
        return target
    with _HELPER_LOCK:
        if target.is_file() and _sealed(target):
            return target
        cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        if cc is None:
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{name}.{os.getpid()}.{threading.get_ident()}")
        try:
            proc = _run([cc, "-o", str(tmp), str(source), *flags], timeout=120)  # libraries after the source
        except (OSError, subprocess.TimeoutExpired):
            return None
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            return None
        _seal(tmp, target)
        os.replace(tmp, target)
        _HELPERS[(str(source), str(cache_dir), folder, name, flags)] = (ident, target)
        return target


def _seal(path: Path, final: Path | None = None) -> None:
    """Note beside a file the cache keeps outside a build entry (a precompiled header, a helper)
    what it was made as (FILE.seal; for `final` when it is renamed there)."""
    target = final or path
    target.with_name(target.name + ".seal").write_text(json.dumps(_stamp(path)))


def _sealed(path: Path) -> bool:
    """The file is as it was made (_seal).  One cut short by a full disk, replaced or never noted
    (an older leakharness) is not: it is made again."""
    try:
        return _as_stamped(path, json.loads(path.with_name(path.name + ".seal").read_text()))
    except (OSError, ValueError):
        return False
