"""The cache under concurrent use: runs share it, `cache clear` and trimming need it alone.

A run (a `run`, `check` or `nightly`, a pytest item) holds a shared flock on <cache>/.lock for
as long as it may build into the cache or read from it; `cache clear` takes the lock
exclusively and refuses at once while any run holds it, and trimming (evicting the least
recently used entries) happens only when no run holds it, else waits for the next run's end.
So a clear never pulls a binary or a result from under a running job (that turned its jobs
into build-failed and aborted the run), and pytest-xdist workers, shards on one machine and a
user's second terminal can share one cache.

Within one process the shared lock is counted: threads and nested uses share one open file,
and the lock is released when the last use ends.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
from pathlib import Path

from .errors import LeakHarnessError

LOCK_NAME = ".lock"

_lock = threading.Lock()
_held: dict[str, list] = {}  # cache folder -> [fd, uses]


def _open(cache_dir: Path) -> int:
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    return os.open(Path(cache_dir) / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)


@contextlib.contextmanager
def using(cache_dir: Path):
    """Hold the cache shared for the duration (waits while a `cache clear` runs: seconds)."""
    key = os.path.realpath(cache_dir)
    with _lock:
        entry = _held.get(key)
        if entry is None:
            fd = _open(cache_dir)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
            except OSError:
                os.close(fd)
                raise
            entry = _held[key] = [fd, 0]
        entry[1] += 1
    try:
        yield
    finally:
        with _lock:
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                os.close(entry[0])  # closing releases the lock


def in_use_here(cache_dir: Path) -> bool:
    return os.path.realpath(cache_dir) in _held


@contextlib.contextmanager
def alone(cache_dir: Path, what: str = "cache clear"):
    """Hold the cache exclusively, or raise LeakHarnessError at once when a run uses it."""
    if in_use_here(cache_dir):
        raise LeakHarnessError(f"{cache_dir}: {what}: this process is using the cache")
    fd = _open(cache_dir)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LeakHarnessError(f"{cache_dir}: a leakharness run is using this cache; {what} would pull "
                                       f"builds and results from under its jobs: wait for it to end") from None
            raise
        yield
    finally:
        os.close(fd)


def try_alone(cache_dir: Path) -> contextlib.AbstractContextManager | None:
    """alone() when no run uses the cache now, else None (for trimming: it can wait)."""
    if in_use_here(cache_dir):
        return None
    fd = _open(cache_dir)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None

    @contextlib.contextmanager
    def held():
        try:
            yield
        finally:
            os.close(fd)

    return held()
