"""The folders leakharness writes results and reports into: claimed, marked and locked.

leakharness writes only into a folder that is empty (or new) or that it made itself, which it
marks with a `.leakharness` file, and it never deletes what it did not write: `check --out .`
in a user's source folder is refused instead of cleaned.  While a run writes into a folder it
holds an exclusive lock on it (flock on `.leakharness.lock`), so a second run on the same folder
refuses at once with a clear message instead of mixing its files with the first one's, and a
`report` (a baseline, an explanation) of a folder a run is still writing refuses too
(refuse_while_written) instead of reading the jobs done so far as a run cut short.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from pathlib import Path

from .errors import LeakHarnessError

MARKER = ".leakharness"
LOCK = ".leakharness.lock"
_MARKER_TEXT = "This folder was written by leakharness; it may delete and rewrite what it wrote here.\n"


def _problem(path: Path, exc: OSError) -> LeakHarnessError:
    return LeakHarnessError(f"{path}: cannot write there: {exc.strerror or exc}")


def _a_link_in(folder: str) -> str | None:
    """The first symbolic link under folder (not followed), or None."""
    try:
        with os.scandir(folder) as found:
            entries = list(found)
    except OSError:
        return None
    for entry in entries:
        if entry.is_symlink():
            return entry.path
        if entry.is_dir(follow_symlinks=False):
            inner = _a_link_in(entry.path)
            if inner is not None:
                return inner
    return None


def claim(path: Path) -> Path:
    """Make path a leakharness folder, or refuse: it must be new, empty, or marked as ours."""
    return _claim(path)[0]


def _claim(path: Path) -> tuple[Path, bool]:
    """claim(), and whether it marked the folder now (it was new or empty)."""
    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        raise LeakHarnessError(f"{path}: is a file, not a folder; give --out a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _problem(path, exc) from None
    if (path / MARKER).is_file():
        link = _a_link_in(str(path))
        if link is not None:
            try:
                where = os.readlink(link)
            except OSError:
                where = "?"
            raise LeakHarnessError(f"{path}: holds a symbolic link, {os.path.relpath(link, path)} -> {where}, which "
                                   f"leakharness never makes: writing there could land outside the folder; remove it "
                                   f"or give another --out")
        return path, False
    try:
        leftover = [p.name for p in path.iterdir() if p.name != LOCK]
    except OSError as exc:
        raise _problem(path, exc) from None
    if leftover:
        raise LeakHarnessError(
            f"{path}: not empty and not written by leakharness (it holds {', '.join(sorted(leftover)[:3])}"
            f"{', ...' if len(leftover) > 3 else ''}); choose a new or empty folder for --out")
    try:
        (path / MARKER).write_text(_MARKER_TEXT)
    except OSError as exc:
        raise _problem(path, exc) from None
    return path, True


@contextlib.contextmanager
def locked(path: Path):
    """Hold the folder's lock for the duration; refuse at once when another run holds it.  When
    the work fails before writing anything there (a `report` of a bad results.json), a folder this
    call made or marked is left as it was: no empty folder holding only the marker and the lock."""
    new = not Path(path).absolute().exists()
    path, marked = _claim(path)
    try:
        fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _problem(path, exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LeakHarnessError(
                    f"{path}: another leakharness run is writing there{_holder(fd)}; "
                    f"wait for it to end, or give a different --out") from None
            raise _problem(path, exc) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError:
            pass
        try:
            yield path
        except BaseException:
            if marked:
                _unmark_if_unused(path, new)
            raise
    finally:
        os.close(fd)  # closing releases the lock


def _holder(fd: int) -> str:
    """The run holding the lock, as it wrote its pid into the lock file: " (pid N)", or "" if unknown."""
    try:
        pid = os.pread(fd, 16, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


def _unmark_if_unused(path: Path, made: bool) -> None:
    """Take back the marker and the lock (and the folder, when this run made it) of a folder
    nothing else was written into.  Still under the lock: another run that found the marker
    meanwhile was refused by it."""
    try:
        if set(os.listdir(path)) - {MARKER, LOCK}:
            return
        for name in (MARKER, LOCK):
            (path / name).unlink(missing_ok=True)
        if made:
            path.rmdir()
    except OSError:
        pass


def refuse_while_written(folder: Path) -> None:
    """LeakHarnessError when a run holds folder's lock (it is writing its results there).  The
    lock file is only opened to read: a folder read is never written to.  Call it before taking
    a lock of this process's own on the folder (a report in place): flock sees two opens of one
    file as two holders, even in one process."""
    try:
        fd = os.open(Path(folder) / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return  # none (never written by a run, or not ours to read): nothing holds it
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return
            raise LeakHarnessError(f"{folder}: a leakharness run{_holder(fd)} is still writing its results "
                                   f"there; read it once that run has ended") from None
    finally:
        os.close(fd)  # closing releases the shared lock, if taken
