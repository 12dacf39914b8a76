"""Facts about files, remembered on disk by each file's identity, so that a fresh process need not
learn them again: a file's content hash, what a tool says of itself (`gcc --version`,
`valgrind --version`), a source's local headers (`cc -MM`).  A result key of the catalog hashes
the program and every library it loads; 382 keys took 3 s, nearly all of it hashing the same
files in every new process.

A file's identity is (device, inode, size, modification time, change time), all in
nanoseconds: any write, truncation, rename over it or chmod changes the change time, which no
tool can set back.  A fact is used only while every file it rests on has the identity it had
when the fact was learnt, and a file changed less than RACY_NS before it was looked at is never
the ground of a fact (git's "racily clean": a second write within the same clock tick, with the
same size, would leave the identity as it was).

The facts live in CACHE/facts.json, loaded once per process (`use(cache_dir)`) and written back,
merged with what other processes wrote meanwhile, by `save()` (the runs call it when they end;
atexit otherwise).  A damaged or missing file is an empty memory; a fact that cannot be trusted
is never used, only learnt again.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import stat as stat_mod
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

RACY_NS = 2_000_000_000
MAX_FACTS = 20_000
VERSION = 1
FILE_NAME = "facts.json"

_lock = threading.RLock()
_path: Path | None = None
_facts: dict[str, object] = {}
_new: dict[str, object] = {}  # learnt by this process, not yet saved
_atexit = False


def identity(path: str | os.PathLike, st: os.stat_result | None = None) -> list[int] | None:
    """[dev, ino, size, mtime_ns, ctime_ns] of a regular file or a folder (following links), or None."""
    try:
        st = st or os.stat(path)
    except (OSError, ValueError):
        return None
    if not (stat_mod.S_ISREG(st.st_mode) or stat_mod.S_ISDIR(st.st_mode)):
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def settled(ident: Sequence[int] | None) -> bool:
    """The file has not changed for RACY_NS: its identity will show the next change."""
    return ident is not None and time.time_ns() - max(ident[3], ident[4]) >= RACY_NS


def use(cache_dir: str | os.PathLike | None) -> None:
    """Remember facts in cache_dir (the first call of a process decides; later ones are no-ops)."""
    global _path, _atexit
    if cache_dir is None:
        return
    with _lock:
        if _path is not None:
            return
        _path = Path(cache_dir) / FILE_NAME
        _facts.update(_load(_path))
        if not _atexit:
            atexit.register(save)
            _atexit = True


def folder(name: str) -> Path | None:
    """CACHE/name, for things kept beside the facts (compiled templates), once use() was called."""
    with _lock:
        return _path.parent / name if _path is not None else None


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("facts"), dict):
        return {}
    return data["facts"]


def save() -> None:
    """Write what this process learnt into the cache's facts, with what others wrote meanwhile."""
    with _lock:
        if _path is None or not _new:
            return
        merged = _load(_path)
        merged.update(_new)
        if len(merged) > MAX_FACTS:  # the oldest out (insertion order: what others wrote first)
            merged = dict(list(merged.items())[-MAX_FACTS:])
        try:
            _path.parent.mkdir(parents=True, exist_ok=True)
            tmp = _path.with_name(f".{FILE_NAME}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_text(json.dumps({"version": VERSION, "facts": merged}, separators=(",", ":")),
                           encoding="utf-8")
            os.replace(tmp, _path)
        except OSError:
            return  # a cache that cannot be written only costs the time of learning again
        _facts.update(_new)
        _new.clear()


def get(key: str):
    with _lock:
        return _facts.get(key)


def put(key: str, value) -> None:
    with _lock:
        _facts[key] = value
        if _path is not None:
            _new[key] = value


# --- the facts themselves -------------------------------------------------------------------------

def content_hash(path: str | os.PathLike, ident: Sequence[int] | None, compute: Callable[[], str | None]) -> str | None:
    """The hash of a file whose identity is `ident` (taken before hashing): remembered, or
    `compute()`d and remembered when the file is settled.  None from compute is not kept."""
    if ident is None:
        return compute()
    key = "hash:" + ",".join(map(str, ident))
    known = get(key)
    if isinstance(known, str):
        return known
    value = compute()
    if value is not None and settled(ident):
        put(key, value)
    return value


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, remembered by its identity."""
    ident = identity(path)

    def compute() -> str:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        after = identity(path)
        if after != ident:  # changed while it was read: the hash is of no one version
            raise _Changed()
        return h.hexdigest()

    try:
        return content_hash(path, ident, compute)
    except _Changed:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()


class _Changed(Exception):
    pass


def grounds(paths: Iterable[str]) -> list | None:
    """[[path, identity], ...] of files a fact rests on (None for a missing one), or None when one
    of them is not settled (the fact would not be safe to keep)."""
    out = []
    for p in paths:
        ident = identity(p)
        if ident is not None and not settled(ident):
            return None
        out.append([p, ident])
    return out


def still(known) -> bool:
    """Every file of grounds() made earlier has the identity it had then."""
    return isinstance(known, list) and all(
        isinstance(g, list) and len(g) == 2 and identity(g[0]) == g[1] for g in known)


def remembered(key: str, grounds: Iterable[str], compute: Callable[[], object]):
    """compute(), remembered under key for as long as every file of `grounds` keeps its identity
    (a missing file stays missing).  A result of None is not kept."""
    known = get(key)
    if isinstance(known, dict) and still(known.get("grounds")):
        return known.get("value")
    before = globals()["grounds"](grounds)
    value = compute()
    if value is not None and before is not None and still(before):
        put(key, {"grounds": before, "value": value})
    return value


def tool_output(argv: Sequence[str], grounds: Iterable[str] = (), env: dict[str, str] | None = None,
                timeout: float = 60) -> tuple[int, str, str] | None:
    """(exit code, stdout, stderr) of a tool's answer about itself (`gcc --version`), remembered
    while its binary (and `grounds`, the files it reads) keep their identity.  None when it
    could not run."""
    program = shutil.which(argv[0], path=(env or os.environ).get("PATH")) or argv[0]
    files = [os.path.realpath(program), *grounds]
    key = "run:" + json.dumps([list(argv), sorted((env or {}).items())])

    def compute():
        try:
            proc = subprocess.run([program, *argv[1:]], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=timeout, start_new_session=True, env=env)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return [proc.returncode, proc.stdout, proc.stderr]

    found = remembered(key, files, compute)
    return tuple(found) if isinstance(found, list) and len(found) == 3 else None
