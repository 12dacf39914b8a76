"""What a job's program read: the files it learnt about by name, recorded while it ran, so that a
cached result is reused only while every one of them is unchanged.

The result cache's key covers the command, the environment, the binaries and the files named on
the command line; a program that opens "sign.txt" by a fixed name escapes all of these.  The
recorder (data/inputs.c, compiled into the cache as lh-inputs.so) is loaded with LD_PRELOAD into
every process of the job and writes one line per call through which a program learns about a
file: opens for reading, stat/access probes, directory listings, programs run, libraries loaded
by path.  This module is its other half:

- `recorder(cache_dir)`: lh-inputs.so, compiled once per cache (None without a C compiler);
- `environment(env, so, log_dir)`: the variables a run under it needs (LD_PRELOAD, where to
  write, which processes are checker machinery, ASan's link-order check off);
- `read(log_dir, main_pid)`: the recording, and whether it is whole: `Recorded.complete` is false
  (with `why`) whenever something may have been read unseen;
- `fingerprint(recorded, cwd)`: (path, state) for every input, and `unchanged(fingerprint)`:
  whether every state recomputed now equals the stored one.

The logs are LOG_NAME.<pid> in the job's log folder ("lh-inputs.<pid>", and an empty
"lh-inputs.<pid>.lost" when a process could not write its log): names that collect.py's globs
(vg.*.xml, sanitizer.*, residue.*) do not take for checker logs.

What cannot be seen, and how it is reported (never as "read nothing"):
- a static binary, or a setuid one, never loads the library: its process has no log, and the
  reader says the recording is missing (for the main process, a posix_spawn child, a
  system()/popen() child, or the program an exec started);
- a Go program opens its files with raw system calls: its section is kept (cgo code's libc calls
  are seen) but not vouched for, and the Go runtime leaves by a raw exit_group, so no end line;
- glibc's own internal opens (NSS: /etc/passwd, /etc/hosts, /etc/resolv.conf; locales, time
  zones, iconv modules, the dynamic loader's search) are made inside glibc, not through the
  symbols a preloaded library can replace; the loader's start-up libraries are in the cache key
  already (ldd); a dlopen of a bare library name that is not loaded yet, and the directory walks
  glob/nftw/ftw/fts make inside glibc, are written as such and make the recording incomplete
  (but for a glob of one absolute folder, `/etc/ld.so.conf.d/*.conf` as the linker makes it,
  which is that folder's listing);
- a capped log, a lost line (a signal handler calling in while the recorder writes), a log that
  could not be written, a path too long to write, and a call made while another thread was
  setting the library up, all make the recording incomplete (a library constructor that reads a
  file before the library's own constructor ran is recorded: it sets up on first use);
- a process killed by a signal, or ending by an exec of a program that does not load the
  library, leaves a section without its end line: not vouched for, unless the caller says the
  checker saw it die (`read(..., died=pids)`: a sanitizer's report ends the process with a raw
  _exit, a crash valgrind reported) - every record is written before the call it records, so a
  process that died has nothing unrecorded after its last line.

A file changed while the job ran (its ctime at or after the job's start, or present where the
job found it absent, or the other way) gets a state beginning with "?": `unchanged` is never true
for it, since what the job read is no longer known.  A file the job itself writes and then reads
back is such a file (files only written are not inputs).
"""

from __future__ import annotations

import collections
import errno as errno_mod
import functools
import hashlib
import os
import re
import shutil
import stat as stat_mod
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from . import facts

SOURCE = Path(__file__).parent / "data" / "inputs.c"
SO_NAME = "lh-inputs.so"
LOG_NAME = "lh-inputs"  # the library writes LOG_NAME.<pid> in the job's log folder
LOG_VAR = "LH_INPUTS_LOG"
SKIP_VAR = "LH_INPUTS_SKIP"
MAX_VAR = "LH_INPUTS_MAX"
# The checker machinery a job runs besides the program (names match the executable's base name
# wherever it is; a shell running one of them as a script counts too): lh-reaper runs the
# command, Debian's /usr/bin/valgrind is a shell script that execs valgrind.bin, the launcher,
# which is dynamically linked (valgrind's tools are static and never load the library); the
# sanitizers start llvm-symbolizer with the program's environment.
DEFAULT_SKIP = ("lh-reaper", "valgrind", "valgrind.bin", "llvm-symbolizer", "addr2line")
# ASan (gcc: libasan is a DT_NEEDED of the program) refuses to start unless its runtime comes
# first in the library list, and LD_PRELOAD puts ours before it.  Interception still works: our
# hooks pass each call on to the next definition, ASan's interceptor, with our frame gone (a
# tail call), so ASan's reports are unchanged (measured in tests/test_inputs.py).
ASAN_LINK_ORDER = "verify_asan_link_order=0"
IGNORED_ROOTS = ("/proc", "/sys", "/dev")
KEPT_ROOTS = ("/dev/shm", "/dev/mqueue")  # ordinary files under /dev (POSIX shared memory, queues)
KINDS = {"r": "read", "p": "probe", "q": "probe", "d": "dir", "x": "exec"}
_START = re.compile(r"^LH-INPUTS 1 (start|skip|fork) pid=(\d+) ppid=(\d+) time=(\d+) early=(\d+) max=(\d+) exe=(.*)$")
_END = re.compile(r"^LH-INPUTS end pid=(\d+) by=(\S+)$")
_RECORD = re.compile(r"^([rpqdx]) (\+|-\d+|!) (.*)$")
_ESCAPE = re.compile(rb"\\x([0-9a-f]{2})")
ABSENT_ERRNOS = {errno_mod.ENOENT, errno_mod.ENOTDIR}
# A file changed less than this long before it was hashed may change again within the same
# file-system timestamp tick with the same size: its hash is not remembered (git's "racily clean").
RACY_NS = 2_000_000_000
# The file system stamps times with a coarse clock that may lag a fine one by a tick; the
# library reads the same coarse clock, and this margin covers what is left.
CLOCK_SLACK_NS = 50_000_000
_COARSE = getattr(time, "CLOCK_REALTIME_COARSE", 5)  # Linux's; Python names it only where the C library does
_TICK_NS = int(max(time.clock_getres(_COARSE) * 1e9, 1e6))  # the coarse clock's step


# --- the run's half ------------------------------------------------------------------------------

def recorder(cache_dir: Path) -> Path | None:
    """lh-inputs.so compiled into the cache, or None when no C compiler is there (no recording:
    the cache must then not trust a result of a program whose reads it cannot see)."""
    from .build import helper_binary

    # -O2 -fno-stack-protector: every hook ends in a sibling call (its frame gone before the real
    # function runs); -fno-builtin -fno-tree-loop-distribute-patterns: no call to strlen or memcpy
    # (the sanitizers intercept them) appears where the source has a loop; -z now: no lazy binding
    # inside a hook; hidden visibility: only the hooks are exported.
    flags = ["-O2", "-g", "-fPIC", "-shared", "-fvisibility=hidden", "-fno-stack-protector", "-fno-builtin",
             "-fno-tree-loop-distribute-patterns", "-Wl,-z,now"]
    if Path("/usr/include/valgrind/valgrind.h").is_file():
        flags.append("-DLH_HAVE_VALGRIND_H")  # in the flags, so the build's key knows it
    so = helper_binary(SOURCE, cache_dir, "inputs", SO_NAME, (*flags, "-ldl"))
    if so is not None and re.search(r"[\s:]", str(so)):
        return None  # the loader splits LD_PRELOAD at spaces and colons: such a path cannot be preloaded
    return so


def skip_list(extra: Iterable[str | os.PathLike] = (), env: dict[str, str] | None = None) -> list[str]:
    """The executables that are checker machinery, not the program: base names, and full paths
    (as given and resolved) of `extra` and of the symbolizers the sanitizer variables name."""
    out = list(DEFAULT_SKIP)
    named = list(extra)
    for var in ("ASAN_SYMBOLIZER_PATH", "TSAN_SYMBOLIZER_PATH", "MSAN_SYMBOLIZER_PATH", "UBSAN_SYMBOLIZER_PATH"):
        if env and env.get(var):
            named.append(env[var])
    valgrind = _which_valgrind((env or os.environ).get("PATH"))
    if valgrind:
        named.append(valgrind)
    for item in named:
        for form in (os.fspath(item), _realpath(os.fspath(item))):
            if form and ":" not in form and form not in out:
                out.append(form)
    return out


# Asked for every job's environment: looked up once per process (a checker's machinery does not
# move while a run lasts; a name that resolves elsewhere later only misses the cache).
@functools.lru_cache(maxsize=64)
def _which_valgrind(path: str | None) -> str | None:
    return shutil.which("valgrind", path=path)


@functools.lru_cache(maxsize=256)
def _realpath(path: str) -> str:
    return os.path.realpath(path)


def environment(env: dict[str, str], so: Path, log_dir: Path,
                skip: Sequence[str | os.PathLike] = ()) -> dict[str, str]:
    """`env` with what a run under the recorder needs.

    LD_PRELOAD: ours last, after the user's and the residue interposer's (residue must see
    every call first, and its exit-time stack scan must find no frame of ours below it).
    LH_INPUTS_LOG: the log prefix in the job's log folder (the folder itself is not recorded).
    LH_INPUTS_SKIP: checker machinery (lh-reaper, valgrind's wrapper and launcher, the
    symbolizers, `skip`): such a process writes one "skip" line and nothing else.
    ASAN_OPTIONS: verify_asan_link_order=0, appended (a gcc ASan build refuses to start with
    another library before its runtime; nothing else reads this variable)."""
    out = dict(env)
    user = out.get("LD_PRELOAD", "")
    parts = [p for p in re.split(r"[\s:]+", user) if p]
    if str(so) not in parts:
        parts.append(str(so))
    out["LD_PRELOAD"] = ":".join(parts)
    out[LOG_VAR] = f"{log_dir}/{LOG_NAME}"
    out[SKIP_VAR] = ":".join(skip_list(skip, out))
    asan = out.get("ASAN_OPTIONS", "")
    out["ASAN_OPTIONS"] = ":".join(x for x in (asan, ASAN_LINK_ORDER) if x)
    return out


def log_files(log_dir: Path) -> list[Path]:
    """The recorder's logs in a folder (LOG_NAME.<pid>)."""
    return sorted((p for p in Path(log_dir).glob(f"{LOG_NAME}.*") if p.name[len(LOG_NAME) + 1:].isdigit()),
                  key=lambda p: int(p.name[len(LOG_NAME) + 1:]))


# --- the reading half -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One file the job learnt about."""

    path: str  # absolute
    kind: str  # "read" (opened for reading, a library by path), "probe" (stat, access), "dir" (listed), "exec"
    existed: bool | None  # what the job's first look found: True, False (absent), None (could not tell)
    follow: bool = True  # a probe that follows symbolic links (lstat, readlink: False)
    mixed: bool = False  # the job found it both present and absent: it changed while the job ran


@dataclass(frozen=True)
class Recorded:
    entries: tuple[Entry, ...]
    complete: bool  # every process was recorded, whole: nothing was read unseen
    why: str = ""  # why not complete: the first reason, one line
    problems: tuple[str, ...] = ()  # every reason
    started_ns: int | None = None  # the earliest start of a recorded process (the file systems' clock)
    pids: tuple[int, ...] = ()  # the processes recorded
    ends: tuple["End", ...] = ()  # how each recorded process (its last program) ended


@dataclass(frozen=True)
class End:
    """How one process's last recorded program ended."""

    pid: int
    exe: str
    forked: bool  # a forked child of a recorded process, running its parent's program
    by: str  # "exit" (exit(), or main returned: atexit handlers ran), "_exit", "exec" (into a program
    #          that wrote no record), "" (no end line: a signal, a crash, a raw exit system call)


@dataclass
class _Section:
    pid: int
    how: str = "start"  # "start" (a program began: exec, spawn), "fork" (a forked child), "skip"
    ppid: int | None = None
    time_ns: int | None = None
    early: int = 0
    exe: str = ""
    skip: bool = False
    header: bool = True  # False: lines written before any start line (a vfork child's)
    ended: bool = False
    by: str = ""  # the end line's "by=": exit, _exit
    last: str = ""  # the kind of the last record ("x": an exec)
    last_exec: str = ""
    records: list = None  # (kind letter, result, path)

    def __post_init__(self):
        if self.records is None:
            self.records = []


def _unescape(text: str) -> str:
    raw = text.encode("utf-8", "surrogateescape")
    return _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw).decode("utf-8", "surrogateescape")


def _existed(result: str) -> bool | None:
    if result == "+":
        return True
    if result.startswith("-") and result[1:].isdigit() and int(result[1:]) in ABSENT_ERRNOS:
        return False
    return None


_GLOB_MAGIC = re.compile(r"[*?\[\]{}~\\]")


def _globbed_folder(what: str, pattern: str) -> str | None:
    """The one folder a glob lists, when that is all it walks: an absolute pattern whose wildcards
    are in its last part alone (`/etc/ld.so.conf.d/*.conf`, as the linker globs).  The names it
    matches come from that folder's listing, and the files it then reads are opened (recorded).
    None for any other walk (a relative pattern: the process's folder is not known here; braces,
    a tilde; nftw, ftw, fts)."""
    if what != "glob" or not pattern.startswith("/"):
        return None
    folder, _, last = pattern.rpartition("/")
    if not last or _GLOB_MAGIC.search(folder) or "{" in last or "~" in last or "\\" in last:
        return None
    return folder or "/"


def _parse(path: Path, pid: int, problems: list[str]) -> tuple[list[_Section], int, list[str]]:
    """(sections, how many children it started inside glibc, bare-library and walk notes)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        problems.append(f"{path.name}: cannot read: {exc.strerror or exc}")
        return [], 0, []
    text = data.decode("utf-8", "surrogateescape")
    if text and not text.endswith("\n"):
        problems.append(f"{path.name}: the last line is cut short")
        text = text[: text.rfind("\n") + 1]
    sections: list[_Section] = []
    children = 0
    notes: list[str] = []
    current: _Section | None = None
    for number, line in enumerate(text.splitlines(), 1):
        m = _START.match(line)
        if m:
            current = _Section(pid=int(m.group(2)), how=m.group(1), ppid=int(m.group(3)), time_ns=int(m.group(4)),
                               early=int(m.group(5)), exe=_unescape(m.group(7)), skip=m.group(1) == "skip")
            sections.append(current)
            continue
        if current is None:  # a vfork child's records before its exec (no start line of its own)
            current = _Section(pid=pid, header=False)
            sections.append(current)
        m = _RECORD.match(line)
        if m:
            kind, result, where = m.group(1), m.group(2), _unescape(m.group(3))
            if result == "!":
                problems.append(f"process {pid}: a path too long to record whole ({where[:80]}...)")
            current.records.append((kind, result, where))
            current.last = kind
            current.last_exec = where if kind == "x" else current.last_exec
            continue
        m = _END.match(line)
        if m:
            current.ended = True
            current.by = m.group(2)
            current.last = "end"
            continue
        if line == "LH-INPUTS capped":
            problems.append(f"process {pid}: its log reached the cap (LH_INPUTS_MAX): the rest was not recorded")
        elif line == "LH-INPUTS lost":
            problems.append(f"process {pid}: a record was lost (a signal handler called in while the recorder "
                            f"was writing)")
        elif line == "s ?":
            children += 1
        elif line.startswith("l "):
            notes.append(f"process {pid}: dlopen({_unescape(line[2:])!r}) of a bare library name: the loader's "
                         f"search for it is not recorded")
        elif line.startswith("n "):
            notes.append(f"process {pid} connected to {_unescape(line[2:])}: what it received came from another "
                         f"process, not from a file")
        elif line.startswith("u "):
            what, _, arg = line[2:].partition(" ")
            folder = _globbed_folder(what, _unescape(arg))
            if folder is not None:  # one folder's listing: what the glob can have learnt, recorded as such
                current.records.append(("d", "?", folder))
                continue
            notes.append(f"process {pid}: {what}({_unescape(arg)!r}): the directories glibc walks inside it are "
                         f"not recorded")
        else:
            problems.append(f"{path.name}: line {number}: not a line of the recorder's log: {line[:80]!r}")
    return sections, children, notes


def read(log_dir: Path, main_pid: int | None, died: Iterable[int] = ()) -> Recorded:
    """The recording of a job's run, from the logs in log_dir.  Not complete (with the reason)
    when a process that ran is not recorded, or not to its end, or may have read unseen.

    `died`: the pids the checker saw end abruptly (a sanitizer's error report, which exits with
    a raw system call; a fatal signal valgrind or the sanitizer reported).  Such a process has no
    end line, yet its recording is whole: every record is written before the call it records,
    and the report shows that it died rather than exec'd a program the recorder cannot follow."""
    from .elf import compiled_sanitizer_options, is_go_binary

    problems: list[str] = []
    died_set = set(died)
    files = log_files(Path(log_dir))
    by_pid: dict[int, list[_Section]] = {}
    spawned: dict[int, int] = {}
    for path in files:
        pid = int(path.name[len(LOG_NAME) + 1:])
        sections, children, notes = _parse(path, pid, problems)
        by_pid[pid] = sections
        if children:
            spawned[pid] = children
        problems.extend(notes)
    for lost in sorted(Path(log_dir).glob(f"{LOG_NAME}.*.lost")):
        problems.append(f"process {lost.name.split('.')[1]}: could not write its log (no descriptor left, or "
                        f"the disk full): records are missing")

    def program(pid: int) -> bool:
        return any(s.header and not s.skip for s in by_pid.get(pid, ()))

    if main_pid is not None and not program(main_pid):
        skipped = [s.exe for s in by_pid.get(main_pid, ()) if s.skip]
        problems.insert(0, f"no recording for the main process (pid {main_pid}"
                           f"{', after ' + ', '.join(skipped) if skipped else ''}): a static binary, a setuid one, "
                           f"or one that does not load LD_PRELOAD libraries; what it read is unknown")
    if main_pid is None and not any(program(p) for p in by_pid):
        problems.insert(0, "no recording at all: the program never loaded the recorder (a static binary?)")

    # A child started inside glibc (posix_spawn, system, popen): its pid is not seen, but a program
    # that loads the recorder writes a start line naming its parent.  Forked children ("fork"
    # lines) and checker machinery (a sanitizer's symbolizer: "skip") do not count as one.
    for parent, wanted in sorted(spawned.items()):
        found = sum(1 for secs in by_pid.values() if secs and secs[0].how == "start" and secs[0].ppid == parent)
        if found < wanted:
            problems.append(f"{wanted - found} of the {wanted} process(es) process {parent} started inside glibc "
                            f"(posix_spawn, system, popen) wrote no record: a static or setuid program, or one "
                            f"that does not load LD_PRELOAD libraries")

    noted: set[str] = set()  # programs whose unseen reads were said once
    for pid, sections in sorted(by_pid.items()):
        for i, sec in enumerate(sections):
            if sec.skip:
                continue
            if sec.early:
                problems.append(f"process {pid} ({sec.exe}): {sec.early} call(s) came before the recorder started "
                                f"(another library's constructor): not recorded")
            if sec.exe and sec.exe not in noted and is_go_binary(sec.exe):
                noted.add(sec.exe)
                problems.append(f"process {pid} is a Go program ({sec.exe}): Go opens files with raw system calls, "
                                f"which the recorder cannot see")
            own = pid == main_pid and not any(not earlier.skip for earlier in sections[:i])
            # (the program's own options are in the result's key: the sanitizer checker's key_files)
            compiled = compiled_sanitizer_options(sec.exe) if sec.exe and not own and sec.exe not in noted else []
            if compiled:
                noted.add(sec.exe)
                problems.append(f"process {pid} ({sec.exe}) holds sanitizer options naming files "
                                f"({compiled[0][:80]}), which its runtime reads with its own system calls: not seen")
            if sec.ended or i + 1 < len(sections):
                continue  # whole: its end line, or an exec into the next section of the same pid
            if pid in died_set and sec.last != "x":
                continue  # the checker saw it die: nothing after its last record
            if sec.last == "x":
                problems.append(f"process {pid} ran {sec.last_exec} (exec), which wrote no record: a static or "
                                f"setuid program, or one that does not load LD_PRELOAD libraries")
            else:
                what = f" ({sec.exe})" if sec.exe else ""
                problems.append(f"process {pid}{what} ended without the recorder's end line: killed by a signal, "
                                f"crashed, or left by a raw exit system call (the Go runtime's way)")

    entries, started = _entries(by_pid)
    pids = tuple(sorted(pid for pid in by_pid if program(pid)))
    problems = list(dict.fromkeys(problems))
    ends = []
    for pid, sections in sorted(by_pid.items()):
        last = next((s for s in reversed(sections) if not s.skip), None)
        if last is not None:
            by = last.by if last.ended else ("exec" if last.last == "x" else "")
            ends.append(End(pid, last.exe, last.how == "fork", by))
    return Recorded(tuple(entries), complete=not problems, why=problems[0] if problems else "",
                    problems=tuple(problems), started_ns=started, pids=pids, ends=tuple(ends))


def _ignored(path: str) -> bool:
    return (any(path == root or path.startswith(root + "/") for root in IGNORED_ROOTS)
            and not any(path == root or path.startswith(root + "/") for root in KEPT_ROOTS))


def _entries(by_pid: dict[int, list[_Section]]) -> tuple[list[Entry], int | None]:
    """One entry per (path, kind, follow), in the order first seen: processes by start time."""
    ordered = []
    for pid, sections in by_pid.items():
        first = next((s.time_ns for s in sections if s.time_ns is not None), None)
        ordered.append((first if first is not None else 0, pid, sections))
    ordered.sort(key=lambda t: (t[0], t[1]))
    started = min((s.time_ns for _, _, secs in ordered for s in secs if not s.skip and s.time_ns), default=None)
    found: dict[tuple[str, str, bool], list] = {}
    seen_state: dict[tuple[str, bool], set] = collections.defaultdict(set)
    for _, _, sections in ordered:
        for sec in sections:
            if sec.skip:
                continue
            observations = [("x", "+", sec.exe)] if sec.header and sec.exe.startswith("/") else []
            for letter, result, path in observations + sec.records:
                if result == "!" or not path.startswith("/") or _ignored(path):
                    continue
                kind = KINDS[letter]
                follow = letter != "q"
                existed = _existed(result)
                key = (path, kind, follow)
                if key not in found:
                    found[key] = [existed]
                if existed is not None:
                    seen_state[(path, follow)].add(existed)
    entries = [Entry(path, kind, first[0], follow, mixed=len(seen_state[(path, follow)]) > 1)
               for (path, kind, follow), first in found.items()]
    return entries, started


# --- fingerprints ------------------------------------------------------------------------------------

_MEMO_MAX = 8192
_memo: "collections.OrderedDict[tuple, str]" = collections.OrderedDict()
_memo_lock = threading.Lock()


def _remembered(key: tuple) -> str | None:
    with _memo_lock:
        value = _memo.get(key)
        if value is not None:
            _memo.move_to_end(key)
            return value
    # What an earlier process learnt, kept on disk by the same identity (facts.py).
    value = facts.get("inputs:" + ",".join(map(str, key)))
    return value if isinstance(value, str) else None


def _remember(key: tuple, value: str, st: os.stat_result) -> None:
    # A file changed within RACY_NS of now could change again in the same timestamp tick with the
    # same size: its identity would not show it, so its hash is not kept.
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < RACY_NS:
        return
    with _memo_lock:
        _memo[key] = value
        _memo.move_to_end(key)
        while len(_memo) > _MEMO_MAX:
            _memo.popitem(last=False)
    facts.put("inputs:" + ",".join(map(str, key)), value)


def _identity(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _content(path: str) -> str:
    """sha256 of a regular file, remembered by (dev, inode, size, mtime, ctime)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        return f"unreadable {errno_mod.errorcode.get(exc.errno, exc.errno)}"
    try:
        before = os.fstat(fd)
        if not stat_mod.S_ISREG(before.st_mode):
            return "?not a regular file when opened"
        key = ("file",) + _identity(before)
        value = _remembered(key)
        if value is None:
            h = hashlib.sha256()
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                h.update(chunk)
            after = os.fstat(fd)
            if _identity(after) != _identity(before):
                return "?changed while it was being hashed"
            value = f"sha256={h.hexdigest()}"
            _remember(key, value, before)
        return value
    finally:
        os.close(fd)


def _listing(path: str, st: os.stat_result) -> str:
    """sha256 of a folder's sorted names with their types, remembered by the folder's identity."""
    key = ("dir",) + _identity(st)
    value = _remembered(key)
    if value is not None:
        return value
    try:
        with os.scandir(path) as it:
            names = []
            for entry in it:
                # The type readdir gives (d_type, no stat of each entry): what a program listing
                # the folder sees too.
                try:
                    kind = ("link" if entry.is_symlink() else "dir" if entry.is_dir(follow_symlinks=False)
                            else "file" if entry.is_file(follow_symlinks=False) else "other")
                except OSError:
                    kind = "?"
                names.append(f"{kind} {entry.name}")
    except OSError as exc:
        return f"unlistable {errno_mod.errorcode.get(exc.errno, exc.errno)}"
    names.sort()
    h = hashlib.sha256("\0".join(names).encode("utf-8", "surrogateescape"))
    value = f"listing={h.hexdigest()}"
    _remember(key, value, st)
    return value


def _type(mode: int) -> str:
    for test, name in ((stat_mod.S_ISREG, "file"), (stat_mod.S_ISDIR, "dir"), (stat_mod.S_ISLNK, "link"),
                       (stat_mod.S_ISFIFO, "fifo"), (stat_mod.S_ISSOCK, "socket"), (stat_mod.S_ISCHR, "chardev"),
                       (stat_mod.S_ISBLK, "blockdev")):
        if test(mode):
            return name
    return "other"


def _lookup(path: str, follow: bool) -> tuple[os.stat_result | None, str]:
    """(stat, "") or (None, "absent" / "error ENAME")."""
    try:
        return (os.stat(path) if follow else os.lstat(path)), ""
    except OSError as exc:
        if exc.errno in ABSENT_ERRNOS:
            return None, "absent"
        return None, f"error {errno_mod.errorcode.get(exc.errno, exc.errno)}"


def state(kind: str, path: str, follow: bool = True) -> str:
    """What an input is now, as far as the program can have learnt it: the content of a file
    read or run, the listing of a folder listed, the type, mode, size, modification time (a
    file's) and resolved path of a probed one.  A state beginning with "?" can never be vouched for (a pipe read: its data is
    another process's)."""
    st, missing = _lookup(path, follow)
    if st is None:
        return missing
    kind_now = _type(st.st_mode)
    if kind in ("read", "exec"):
        if kind_now == "file":
            return f"file {_content(path)}"
        if kind_now == "dir":
            return f"dir {_listing(path, st)}"
        return f"?{kind_now}: what is read from it is not in the file system"
    if kind == "dir":
        return f"dir {_listing(path, st)}" if kind_now == "dir" else kind_now
    # a probe: what stat and access tell
    out = f"{kind_now} mode={stat_mod.S_IMODE(st.st_mode):o}"
    if kind_now == "file":
        # Its time too: a make-like program compares the times of the files it stats.
        out += f" size={st.st_size} mtime={st.st_mtime_ns}"
    if kind_now == "link":
        try:
            out += f" -> {os.readlink(path)}"
        except OSError:
            pass
    if follow:
        real = os.path.realpath(path)
        if real != path:
            out += f" real={real}"
    return out


def _tag(kind: str, follow: bool) -> str:
    return kind if follow else f"{kind}-nofollow"


def settle(program: str | os.PathLike) -> None:
    """Before a recorded run: when the program was made just now (a build that has just
    finished), wait until it is older than the window in which _doubt takes a change for one
    made while the job ran (at most CLOCK_SLACK_NS and a tick).  Else the first run after every
    build is never stored, and the next one runs again only to find the same."""
    try:
        changed = os.stat(program).st_ctime_ns
    except (OSError, ValueError):
        return
    # The recorder's clock (the file systems' coarse one), and a tick of it beyond the slack.
    wait = changed + CLOCK_SLACK_NS + _TICK_NS - time.clock_gettime_ns(_COARSE)
    # Bounded, not skipped past the bound: since Linux 6.13 a ctime may be fine-grained, up to a
    # tick ahead of the coarse clock (a folder stat'ed, then changed: 0.5 to 4.4 ms ahead in 200
    # of 200 tries here), and a time stamp from a clock far ahead is waited for no longer than that.
    if wait > 0:
        time.sleep(min(wait, CLOCK_SLACK_NS + 2 * _TICK_NS) / 1e9)


def _doubt(entry: Entry, path: str, started_ns: int | None) -> str:
    """Why the state now may not be what the job found, or ""."""
    if entry.mixed:
        return "the job found it both present and absent: it changed while the job ran"
    st, _ = _lookup(path, entry.follow)
    if entry.existed is True and st is None:
        return "present when the job looked, gone now"
    if entry.existed is False and st is not None:
        return "absent when the job looked, present now"
    if st is not None and started_ns is not None and st.st_ctime_ns >= started_ns - CLOCK_SLACK_NS:
        if entry.kind == "probe" and stat_mod.S_ISDIR(st.st_mode):
            # What a probe learns of a folder is its type and mode: files coming and going in it
            # (/tmp, probed by CMake, changes all the time) change its ctime, not that.
            return ""
        return "changed while the job ran (or just before it started)"
    return ""


def fingerprint(recorded: Recorded, cwd: Path) -> tuple[tuple[str, str], ...]:
    """(path, state) for every input, sorted: a file read -> its content hash, a folder listed ->
    the hash of its sorted listing, a probe -> absent, or the type (mode, size, resolved path).
    Compute it right after the run.  A state beginning with "?" is one that cannot be vouched
    for (the file changed while the job ran; the recording is incomplete): `unchanged` is then
    never true."""
    out: list[tuple[str, str]] = []
    for entry in sorted(recorded.entries, key=lambda e: (e.path, e.kind, not e.follow)):
        path = entry.path if os.path.isabs(entry.path) else os.path.join(os.fspath(cwd), entry.path)
        tag = _tag(entry.kind, entry.follow)
        doubt = _doubt(entry, path, recorded.started_ns)
        out.append((path, f"?{tag}: {doubt}" if doubt else f"{tag} {state(entry.kind, path, entry.follow)}"))
    if not recorded.complete:
        out.append(("", f"?incomplete recording: {recorded.why}"))
    return tuple(out)


def doubts(fingerprint: Sequence[tuple[str, str]]) -> list[str]:
    """Why a fingerprint can never be vouched for ([] when it can): store no result under it."""
    out = []
    for path, value in fingerprint:
        if value.startswith("?") or " ?" in value:
            why = value[1:] if value.startswith("?") else value.split(" ?", 1)[1]  # "read ?socket: ..."
            out.append(f"{path}: {why}" if path else why)
    return out


def stored_unchanged(stored) -> bool:
    """unchanged() of a fingerprint as a cache record stored it (JSON: a list of [path, state]);
    False for anything of another shape (a damaged record, one written before reads were
    recorded): never vouched for."""
    if not isinstance(stored, list) or not all(isinstance(x, list) and len(x) == 2 and all(isinstance(y, str)
                                                                                           for y in x) for x in stored):
        return False
    return unchanged([tuple(x) for x in stored])


def unchanged(fingerprint: Sequence[tuple[str, str]]) -> bool:
    """Every input's state recomputed now equals the stored one (and every one could be vouched for)."""
    for path, value in fingerprint:
        if value.startswith("?") or not path:
            return False
        tag, _, stored = value.partition(" ")
        kind, _, nofollow = tag.partition("-")
        if kind not in ("read", "probe", "dir", "exec"):
            return False
        if stored.startswith("?") or " ?" in stored or state(kind, path, nofollow != "nofollow") != stored:
            return False
    return True
