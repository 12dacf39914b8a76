"""The result cache: a job whose inputs have not changed is not run again.

The key is derived from what the child really sees: the exact command line and environment
handed to the tool (the per-job log folder replaced by a placeholder), the working directory,
the program and every shared library the loader resolves under that environment
(LD_LIBRARY_PATH and LD_PRELOAD included), the content of every file named in the tool's
options, the checker's rc files (valgrind's ~/.valgrindrc and ./.valgrindrc), OPENSSL_CONF and
the program's arguments, the checker's own files and version (Checker.key_files, rc_files,
version: valgrind's binary, tool and preloads; a sanitizer's symbolizer), and the code that reads
the logs into the stored result (reader_identity: the parsers, the checkers, collect.py).

What the program itself read by a fixed name (a file it opened, probed or listed, a program it
ran) cannot be known before it runs: the recorder (inputs.py) writes it down while it runs, the
stored entry keeps a fingerprint of every such input, and a stored result is reused only while
each is unchanged.  A run whose reads could not all be seen (a static binary, a Go program's own
system calls, no recorder) is not stored, and the caller is told why; the catalog's own programs,
which read nothing of the user's, are stored with what was seen.

Only complete runs are stored ("ok" and "crashed" with a report): an incomplete run (timeout,
killed from outside, log cut short, checker that never started) is never cached, with one
exception: a catalog run whose pattern says it hangs or crashes by design (`incomplete = "why"`,
judge's known-incomplete) is stored as what it is, incomplete with its reason, marked so, and
handed back only to a caller that expects exactly that (never as clean, never to `check`).  A stored
entry is replaced by a newer result of the same key (--fresh), a damaged one is a miss, and
the cache is kept under a size cap by evicting the least recently used entries.
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
import time
from pathlib import Path

from . import checkers, facts, inputs
from .errors import LeakHarnessError
from .findings import Finding
from .signatures import RULES
from .jobs import Job, RunResult
from .run import LOG_PLACEHOLDER, command_for

# `libfoo.so => /path/libfoo.so (0x...)`, or `/lib64/ld-linux... (0x...)`; the path may be relative
# (a relative LD_LIBRARY_PATH entry): it is then taken from the program's working folder.
_LDD_LINE = re.compile(r"^\s*(?:\S+\s+=>\s*)?([^\s(]\S*)\s+\(0x[0-9a-f]+\)", re.M)
CACHEABLE = ("ok", "crashed")
KEY_VERSION = "leakharness-result-3"
DEFAULT_MAX_BYTES = 2 << 30  # the whole cache (builds and results); LEAKHARNESS_CACHE_MAX overrides


def file_hash(path: str | Path) -> str:
    """sha256 of a file, remembered by its identity (facts.py): a library hashed once is not
    hashed again by the next process while it is unchanged."""
    return facts.sha256_file(path)


_LOADER_VARS = ("LD_LIBRARY_PATH", "LD_PRELOAD", "LD_AUDIT")


# The loader's account of where it looked (LD_DEBUG=libs): every "trying file=" is a folder in
# which a library of that name appearing would be loaded instead.
_TRYING = re.compile(r"^\s*\d+:\s+trying file=(.+)$", re.M)


@functools.lru_cache(maxsize=1024)
def _libraries(binary: str, mtime_ns: int, loader_env: tuple[tuple[str, str], ...],
               cwd: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the libraries ldd resolves, the folders the loader looked in to find them)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **dict(loader_env), "LD_DEBUG": "libs"}
    try:
        proc = subprocess.run(["ldd", binary], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=30, start_new_session=True, env=env, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return (), ()
    found = set()
    for m in _LDD_LINE.finditer(proc.stdout):
        path = m.group(1)
        if "/" not in path:  # linux-vdso.so.1: not a file
            continue
        found.add(os.path.normpath(os.path.join(cwd, path)))
    looked = {os.path.dirname(os.path.normpath(os.path.join(cwd, m.group(1).strip())))
              for m in _TRYING.finditer(proc.stderr)}
    return tuple(sorted(found)), tuple(sorted(looked))


def _ld_cache_stamp() -> str:
    try:
        st = os.stat("/etc/ld.so.cache")
        return f"{st.st_mtime_ns}-{st.st_size}"
    except OSError:
        return "none"


def _folder_stamp(folder: str) -> list[int] | None:
    """A searched folder's identity (an entry added, removed or renamed in it changes its time), or
    None when it is not there."""
    ident = facts.identity(folder)
    return None if ident is None else [ident[0], ident[1], ident[3], ident[4]]


def libraries(binary: Path, cache_dir: Path | None = None, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> tuple[str, ...]:
    """The shared libraries the dynamic loader resolves for binary (ldd) under the job's loader
    variables (LD_LIBRARY_PATH, LD_PRELOAD).  Remembered on disk by the binary's hash, those
    variables and the loader cache's stamp, while every folder the loader looked in keeps its
    identity (a leaky libfoo.so put in an LD_LIBRARY_PATH or RUNPATH folder searched before the
    one it was found in would be loaded instead): ldd costs a process per binary, most of the
    time of a cached job.  The libraries' own contents are hashed afresh every time."""
    env = os.environ if env is None else env
    cwd = str(cwd or os.getcwd())
    loader_env = tuple((k, env[k]) for k in _LOADER_VARS if env.get(k))
    record = None
    if cache_dir is not None:
        # A relative entry in a loader variable resolves against the working folder: part of the note's key.
        relative = any(not part.startswith("/") for _, v in loader_env for part in re.split(r"[:\s]+", v) if part)
        stamp = hashlib.sha256(repr((loader_env, cwd if relative else "")).encode()).hexdigest()[:16]
        record = Path(cache_dir) / "libs" / f"{file_hash(binary)}-{_ld_cache_stamp()}-{stamp}.json"
        try:
            noted = json.loads(record.read_text())
            libs, folders = noted.get("libs"), noted.get("folders")
            if (isinstance(libs, list) and all(isinstance(p, str) and p.startswith("/") for p in libs)
                    and isinstance(folders, dict)
                    and all(isinstance(f, str) and f.startswith("/") for f in folders)
                    and all(_folder_stamp(f) == seen for f, seen in folders.items())):
                return tuple(libs)  # else damaged, or a folder searched changed: asked again, and written anew
        except (OSError, ValueError, AttributeError):
            pass
    libs, looked = _libraries(os.path.realpath(binary), os.stat(binary).st_mtime_ns, loader_env, cwd)
    folders = {f: _folder_stamp(f) for f in looked}
    if record is not None and libs and all(s is None or facts.settled([0, 0, 0, s[2], s[3]])
                                          for s in folders.values()):
        try:
            record.parent.mkdir(parents=True, exist_ok=True)
            tmp = record.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"libs": libs, "folders": folders}))
            os.replace(tmp, record)
        except OSError:
            pass
    return libs


def _well_formed(data) -> bool:
    """A stored result of the shape put() writes: the fields get() reads have their types, and
    each log is a plain name inside the entry (never a path out of it, nor out of the job's
    folder it is copied into)."""
    if not isinstance(data, dict):
        return False
    logs, problems = data.get("logs", []), data.get("problems", [])
    return (isinstance(logs, list) and all(isinstance(n, str) and n and "/" not in n and n not in (".", "..")
                                           for n in logs)
            and isinstance(data.get("findings", []), list) and all(isinstance(f, dict) for f in data.get("findings", []))
            and isinstance(problems, list) and all(isinstance(p, str) for p in problems)
            and isinstance(data.get("message", ""), str)
            and (data.get("exit_code") is None or type(data.get("exit_code")) is int)
            and (data.get("signal") is None or isinstance(data.get("signal"), str))
            and type(data.get("duration_s", 0)) in (int, float))


_PART = re.compile(r"[=:,]")
_listings: dict[str, tuple[tuple[int, int, int], frozenset[str]]] = {}  # folder -> (its identity, its names)


def _names_in(folder: str) -> frozenset[str] | None:
    """The names in a folder that has not changed for a while, listed once and remembered while
    its identity stays (an entry added, removed or renamed changes its modification time); None
    when it cannot be listed or is still changing.  A folder that changed a moment ago is not
    listed at all: its listing could not be remembered (a second change within the same clock
    tick would leave its modification time as it was: facts.settled), and a busy folder of
    thousands of names (/tmp, a tree a build just wrote into) costs more to list for every job
    than the few stat calls it would save (0.5 s of a 1.4 s catalog re-run from /tmp)."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    stamp = (st.st_dev, st.st_ino, st.st_mtime_ns)
    known = _listings.get(folder)
    if known is not None and known[0] == stamp:
        return known[1]
    if not facts.settled([0, 0, 0, st.st_mtime_ns, st.st_ctime_ns]):
        return None
    try:
        names = frozenset(os.listdir(folder))
    except OSError:
        return None
    _listings[folder] = (stamp, names)
    return names


def named_files(texts, cwd: Path) -> list[str]:
    """The existing files that options, rc files and arguments name (a whole word, or a value
    after '=', ':' or ','), relative to the program's working directory: their content is
    hashed, so editing a suppression file or an input file runs the job again.  A bare name is
    looked up in the folder's remembered listing when there is one (most words of a command
    name no file: one listing instead of a failed stat per word), else stat'ed."""
    cwd = str(cwd)
    parts: set[str] = set()
    for text in texts:
        for token in text.split():
            parts.add(token)
            parts.update(_PART.split(token))
    here = _names_in(cwd)
    found = set()
    for part in parts:
        if not part or len(part) > 4096:
            continue
        if here is not None and "/" not in part and not part.startswith("~") and part not in here:
            continue
        path = os.path.join(cwd, os.path.expanduser(part))
        if os.path.isfile(path):
            found.add(os.path.realpath(path))
    return sorted(found)


@functools.lru_cache(maxsize=None)
def reader_identity() -> str:
    """A hash of the code that turns a run's logs into its result: the parsers, the checkers (what
    each leaves out, when a run is complete) and collect.py.  A stored result holds what that code
    read, so it is reused only while the code is the same: a fix there (a false report left out)
    reaches results already stored."""
    here = Path(__file__).parent
    h = hashlib.sha256()
    for path in sorted([*(here / "parsers").glob("*.py"), *(here / "checkers").glob("*.py"), here / "collect.py"]):
        h.update(path.relative_to(here).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def job_key(job: Job, cache_dir: Path | None = None, ours: bool = False) -> str | None:
    """The hash of everything that reaches the checked program and its checker; None when the
    program is not a file (nothing to hash, so never cached).  ours: the program is one of
    leakharness's own (Task.reads_nothing): the folder it runs in is no part of its key, so
    `leakharness run` from another folder than last time reuses the catalog's results (a
    checker's rc file found there, ./.valgrindrc, still is)."""
    program = Path(job.command[0])
    if not program.is_file():
        return None
    facts.use(cache_dir)
    cwd = Path(job.cwd or os.getcwd())
    checker = checkers.get(job.checker)
    cmd, env = command_for(job, LOG_PLACEHOLDER, cache_dir)
    h = hashlib.sha256()

    def add(*parts) -> None:
        for part in parts:
            h.update(str(part).encode("utf-8", "surrogateescape"))
            h.update(b"\0")

    add(KEY_VERSION, job.checker, checker.version(), "cwd", "(reads nothing)" if ours else cwd, "timeout", job.timeout)
    add("reader", reader_identity())
    add("argv", *cmd)
    add("env", *(f"{k}={v}" for k, v in sorted(env.items())))
    add("program", file_hash(program))
    if job.stdin is not None:  # what the program reads on stdin (a project target's file)
        if not os.path.isfile(job.stdin):
            return None  # a pipe or a device reads differently every time: never cached
        add("stdin", job.stdin, file_hash(job.stdin))
    for path in checker.key_files(env, cwd, str(program)):
        add("tool", path, file_hash(path) if os.path.isfile(path) else "missing")
    for lib in libraries(program, cache_dir, env, cwd):
        add("lib", lib, file_hash(lib) if os.path.isfile(lib) else "missing")
    for preload in re.split(r"[\s:]+", env.get("LD_PRELOAD", "")):
        if preload:
            add("preload", preload, file_hash(preload) if os.path.isfile(preload) else "missing")
    texts = [*cmd[1:], *(v for k, v in env.items() if k.endswith("_OPTIONS") or k.startswith(("VALGRIND", "OPENSSL")))]
    for rc in checker.rc_files(cwd):
        if os.path.isfile(rc):
            add("rc", rc, file_hash(rc))
            try:
                texts.append(Path(rc).read_text(errors="replace"))
            except OSError:
                pass
    for path in named_files(texts, cwd):
        add("file", path, file_hash(path))
    return h.hexdigest()


def _place(src: Path, target: Path) -> None:
    """A cached log into a job's folder: a hard link where the two share a file system (no
    bytes copied: a re-run of the catalog places hundreds), else a copy.  Nothing writes a log
    in place (a new run replaces the files of its folder), so the cache's copy stays as it was."""
    try:
        if target.exists() or target.is_symlink():
            target.unlink()
        os.link(src, target)
    except OSError:
        shutil.copyfile(src, target)


def _result_to_dict(result: RunResult) -> dict:
    """The stored form: each distinct frame once in "frames", the stacks as indices into it
    (OpenSSL's frames repeat through a catalog job's records: read back, the table is a tenth
    of the JSON)."""
    table: dict[tuple, int] = {}
    frames: list[dict] = []

    def indices(stack) -> list[int]:
        out = []
        for fr in stack:
            value = (fr.address, fr.function, fr.file, fr.line, fr.object, fr.offset)
            n = table.get(value)
            if n is None:
                n = table[value] = len(frames)
                frames.append(fr.to_dict())
            out.append(n)
        return out

    findings = []
    for f in result.findings:
        d = f.to_dict(stacks=False)
        d["stack"] = indices(f.stack)
        d["aux_stacks"] = [{"label": a.label, "text": a.text, "frames": indices(a.frames)} for a in f.aux_stacks]
        findings.append(d)
    return {
        "status": result.status, "exit_code": result.exit_code, "signal": result.signal,
        "duration_s": result.duration_s, "partial": result.partial, "problems": list(result.problems),
        "message": result.message, "logs": [p.name for p in result.logs],
        "frames": frames, "findings": findings,
    }


class ResultCache:
    def __init__(self, cache_dir: Path):
        self.cache_dir = Path(cache_dir)
        self.root = self.cache_dir / "results"

    def get(self, key: str | None, job: Job, known_incomplete: bool = False) -> RunResult | None:
        """The cached result of key, its logs copied into the job's folder; None on a miss.
        known_incomplete: the caller's pattern says this run hangs or crashes by design, and
        a stored incomplete run of it (put with known_incomplete) may be handed back."""
        if key is None:
            return None
        entry = self.root / key[:2] / key
        try:
            data = json.loads((entry / "result.json").read_text())
            if not _well_formed(data):
                return None  # damaged (valid JSON of another shape): a miss, replaced by the next put
            allowed = CACHEABLE + (("incomplete",) if known_incomplete and data.get("known_incomplete") is True else ())
            if data.get("status") not in allowed or any(not (entry / n).is_file() for n in data.get("logs", ())):
                return None  # damaged, or written by an older leakharness that cached too much
        except (OSError, ValueError):
            return None  # a damaged entry is a miss; the next put replaces it
        if not inputs.stored_unchanged(data.get("inputs")):
            return None  # a file the program read changed (or the entry does not say what it read)
        try:
            os.utime(entry)  # least recently used goes first when the cache is trimmed
        except OSError:
            pass
        renamed = {str(entry / name): str(job.out_dir / name) for name in data.get("logs", ())}
        try:
            rules = data.get("signature_rules")  # stored under today's rules: kept as they are
            table = data.get("frames")
            findings = []
            for raw in data.get("findings", ()):
                source = raw.get("source")
                if source:  # the log it came from, now in the job's folder
                    raw["source"] = renamed.get(source, str(job.out_dir / os.path.basename(source)))
                findings.append(Finding.from_dict(raw, rules, table))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            return None
        job.out_dir.mkdir(parents=True, exist_ok=True)
        logs = []
        for name in data.get("logs", ()):
            src = entry / name
            if src.is_file():
                _place(src, job.out_dir / name)
                logs.append(job.out_dir / name)
        return RunResult(job, data["status"], tuple(findings), exit_code=data.get("exit_code"),
                         signal=data.get("signal"), duration_s=float(data.get("duration_s", 0)),
                         logs=tuple(logs), partial=bool(data.get("partial")),
                         problems=tuple(data.get("problems", ())), message=data.get("message", ""))

    def put(self, key: str | None, result: RunResult, trusted: bool = False, known_incomplete: bool = False) -> str:
        """Store a complete result with the fingerprint of what it read, replacing what the key
        held (a rerun with --fresh, or a damaged entry); "" when stored or not worth storing,
        else why it could not be (what the program read is not known).  An incomplete run is
        never stored, unless `known_incomplete` (the catalog's pattern says it hangs or crashes
        by design): it is then stored as incomplete, marked as such.  `trusted`: the program
        reads nothing of the user's (the catalog's own)."""
        if key is None:
            return ""
        known = known_incomplete and result.status == "incomplete"
        if result.status not in CACHEABLE and not known:
            return ""
        fingerprint, why = _inputs_of(result, trusted)
        if why:
            return why
        entry = self.root / key[:2] / key
        self.root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".put.", dir=self.root))
        try:
            for log in result.logs:
                if log.is_file():
                    shutil.copyfile(log, work / log.name)
            data = _result_to_dict(result)
            data["inputs"] = [list(x) for x in fingerprint]
            data["signature_rules"] = RULES
            if known:
                data["known_incomplete"] = True
            names = {str(log): str(entry / log.name) for log in result.logs}
            for f in data["findings"]:
                if f.get("source") in names:
                    f["source"] = names[f["source"]]
            (work / "result.json").write_text(json.dumps(data))
            entry.parent.mkdir(parents=True, exist_ok=True)
            old = None
            if entry.exists():  # replace: move the old entry aside first (rename needs an empty target)
                old = Path(tempfile.mkdtemp(prefix=".old.", dir=self.root))
                try:
                    os.rename(entry, old / "entry")
                except OSError:
                    pass
            try:
                os.rename(work, entry)
            except OSError:
                pass  # another process stored the same key just now: its result is as good
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
        return ""


def _inputs_of(result: RunResult, trusted: bool) -> tuple[tuple[tuple[str, str], ...], str]:
    """(fingerprint of what the run read, "") or ((), why it cannot be known)."""
    recorded = result.inputs
    cwd = Path(result.job.cwd or os.getcwd())
    if recorded is None:
        if trusted:
            return (), ""
        return (), ("not cached: what the program reads cannot be known here (the recorder could not be "
                    "built: install a C compiler)")
    if not recorded.complete and not trusted:
        return (), f"not cached: what the program read cannot all be known: {recorded.why}"
    fingerprint = inputs.fingerprint(recorded, cwd)
    doubts = inputs.doubts(fingerprint)
    if doubts and not trusted:
        return (), f"not cached: {doubts[0]}"
    # A program of ours reads nothing of the user's: what it was seen to read is kept and
    # checked; an input that can never be vouched for (changed while it ran) is left out.
    return tuple(x for x in fingerprint if not (x[1].startswith("?") or " ?" in x[1])), ""


# What the size cap covers, least recently used out first: each entry is a folder in a shard
# (results/ab/<key>/, builds/ab/<key>/, pch/ab/<key>/: touched when reused) or a file (libs/: a
# binary's libraries as ldd saw them; cgo-preambles/: a Go file's C preamble, written to ask gcc
# what it includes).  Each is made again when missing.  Not covered: lh-reaper and the recorder
# (helpers/, a few kB every run needs), compiled report templates (templates/), facts.json, and
# go-build/, which the go command trims itself (entries unused for five days).
_SHARDED = ("results", "builds", "pch")
_FLAT = ("libs", "cgo-preambles")


def _entries(cache_dir: Path):
    """(kind, path, size in bytes, last use) of every entry of the cache the size cap covers."""
    for sub in _SHARDED:
        root = Path(cache_dir) / sub
        if not root.is_dir():
            continue
        for shard in root.iterdir():
            if not shard.is_dir() or shard.name.startswith("."):
                continue
            for entry in shard.iterdir():
                try:
                    yield sub, entry, _tree_bytes(str(entry)), entry.stat().st_mtime
                except OSError:
                    continue
    for sub in _FLAT:
        yield from _entries_flat(Path(cache_dir) / sub, sub)


def _entries_flat(folder: Path, kind: str):
    try:
        with os.scandir(folder) as found:
            for entry in found:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if entry.is_file(follow_symlinks=False):
                    yield kind, Path(entry.path), st.st_size, st.st_mtime
    except OSError:
        return


def max_bytes() -> int:
    """The cache's size cap: $LEAKHARNESS_CACHE_MAX in MiB (more than 0, at most a pebibyte),
    else DEFAULT_MAX_BYTES.  Anything else is one line, never a silent default."""
    raw = os.environ.get("LEAKHARNESS_CACHE_MAX", "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        mib = float(raw)
    except ValueError:
        mib = float("nan")
    if not (0 < mib <= 1 << 30):  # NaN fails this too
        raise LeakHarnessError(f"LEAKHARNESS_CACHE_MAX={raw[:40]}: give the cache's size cap in MiB, a number "
                               f"more than 0 and at most {1 << 30}")
    return int(mib * (1 << 20))


def info(cache_dir: Path) -> dict:
    """What the cache holds: entries and bytes per kind, and the cap."""
    out = {"path": str(cache_dir), "max_bytes": max_bytes(), "bytes": 0,
           **{kind: 0 for kind in (*_SHARDED, *_FLAT)}}
    for kind, _, size, _ in _entries(cache_dir):
        out[kind] += 1
        out["bytes"] += size
    return out


def trim(cache_dir: Path, limit: int | None = None) -> int:
    """Evict the least recently used entries until the cache is under its cap; returns how many.
    Only while no run uses the cache (cachelock): else nothing now, the next run's end trims."""
    from .cachelock import try_alone

    limit = max_bytes() if limit is None else limit
    if not Path(cache_dir).is_dir():
        return 0
    held = try_alone(cache_dir)
    if held is None:
        return 0
    with held:
        return _trim(cache_dir, limit)


def _trim(cache_dir: Path, limit: int) -> int:
    if _total_bytes(cache_dir) <= limit:  # most runs: nothing to evict, and no walk of every entry
        return 0
    entries = sorted(_entries(cache_dir), key=lambda e: e[3])
    total = sum(size for _, _, size, _ in entries)
    evicted = 0
    for kind, entry, size, _ in entries:
        if total <= limit:
            break
        if kind in _FLAT:
            entry.unlink(missing_ok=True)
        else:
            shutil.rmtree(entry, ignore_errors=True)
        total -= size
        evicted += 1
    return evicted


# Every run that ran a job trims, and a walk of every entry of a cache in daily use (13,000
# entries, 29,000 files) took 0.8 s: more than a one-program `check` itself.  So the bytes under
# each shard folder (results/ab, builds/ab, pch/ab, and libs/, cgo-preambles/) are remembered
# with the folder's modification time, which an entry stored, replaced or evicted changes (each
# is renamed in or out of it), and only a changed folder is walked again.  A project build
# remade in its own folder (projectbuild.py) changes no shard: every hour the whole cache is
# walked again.  Written only under the cache's exclusive lock (trim), so no run writes
# meanwhile; a folder changed within the last seconds is not remembered (a coarse clock could
# give the next change the same time).
SIZES = "sizes.json"
SIZES_VERSION = 1
RESYNC_S = 3600.0
_SETTLED_NS = 2_000_000_000


def _tree_bytes(path: str) -> int:
    total = 0
    try:
        with os.scandir(path) as found:
            for entry in found:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        total += _tree_bytes(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
    except OSError:
        pass
    return total


def _total_bytes(cache_dir: Path) -> int:
    """The bytes the size cap covers (what _entries walks), from SIZES where a folder is unchanged."""
    memo_path = Path(cache_dir) / SIZES
    now = time.time()
    known: dict = {}
    walked = now
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
        if (isinstance(memo, dict) and memo.get("version") == SIZES_VERSION
                and isinstance(memo.get("walked"), (int, float)) and 0 <= now - memo["walked"] < RESYNC_S
                and isinstance(memo.get("folders"), dict)):
            known, walked = memo["folders"], memo["walked"]
    except (OSError, ValueError, RecursionError):
        pass
    # Each shard folder (results/ab, ...) and each flat folder (libs/, ...): its bytes, from the
    # memo while its time is unchanged, else walked.
    found: list[tuple[str, str]] = []
    for sub in _SHARDED:
        try:
            with os.scandir(Path(cache_dir) / sub) as shards:
                found += [(f"{sub}/{shard.name}", shard.path) for shard in shards
                          if not shard.name.startswith(".") and shard.is_dir(follow_symlinks=False)]
        except OSError:
            continue
    found += [(sub, str(Path(cache_dir) / sub)) for sub in _FLAT]
    folders: dict[str, list[int]] = {}
    total = 0
    now_ns = time.time_ns()
    for rel, path in found:
        try:
            mtime_ns = os.stat(path).st_mtime_ns
        except OSError:
            continue
        seen = known.get(rel)
        if (isinstance(seen, list) and len(seen) == 2 and seen[0] == mtime_ns and type(seen[1]) is int
                and seen[1] >= 0):
            size = seen[1]
        else:
            size = _tree_bytes(path)
        total += size
        if now_ns - mtime_ns > _SETTLED_NS:
            folders[rel] = [mtime_ns, size]
    try:
        partial = memo_path.with_name(f".{SIZES}.{os.getpid()}")
        partial.write_text(json.dumps({"version": SIZES_VERSION, "walked": walked, "folders": folders}))
        os.replace(partial, memo_path)
    except OSError:
        pass
    return total


def clear(cache_dir: Path) -> int:
    """Remove every cached build and result (and the notes kept beside them); returns bytes
    freed.  Refused (one line) while a run uses the cache: cachelock."""
    from .cachelock import alone

    with alone(cache_dir):
        freed = info(cache_dir)["bytes"]
        for sub in (*_SHARDED, *_FLAT, "tmp", "helpers", "go-build", "templates"):
            shutil.rmtree(Path(cache_dir) / sub, ignore_errors=True)
        (Path(cache_dir) / "durations.json").unlink(missing_ok=True)
        (Path(cache_dir) / facts.FILE_NAME).unlink(missing_ok=True)
        (Path(cache_dir) / SIZES).unlink(missing_ok=True)
    return freed
