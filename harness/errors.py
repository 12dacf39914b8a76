"""The exception hierarchy: every error a user can cause is one of these.

The command line turns a LeakHarnessError into one line on stderr and exit code 2; anything
else is a bug in leakharness and keeps its traceback.
"""

from __future__ import annotations

import contextlib


class LeakHarnessError(Exception):
    """A problem with the user's input or set-up, explained in one line."""


class ParseError(LeakHarnessError):
    """A file could not be read as a valgrind XML file or a sanitizer log."""

    def __init__(self, path: str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class CatalogError(LeakHarnessError):
    """A pattern folder is missing a file or its metadata is wrong."""


class BuildError(LeakHarnessError):
    """A compiler or a build set-up problem that is not the program's own fault."""


def os_problem(exc: OSError, where: object = None) -> str:
    """An OSError as the one line says it, naming the file: a copy's target first (shutil names
    its source in `filename` and its target in `filename2`, and a full disk is the target's),
    else `where` (the folder being written) when the error names no file."""
    what = exc.strerror or str(exc)
    if exc.filename2:
        return f"{exc.filename2}: {what} (copying {exc.filename})"
    name = exc.filename or where
    return f"{name}: {what}" if name else what


@contextlib.contextmanager
def naming(path: object, instead_of: str | None = None):
    """An OSError inside that names no file (a write or a close on a full disk: Python's file
    objects do not say which), or names `instead_of` (a temporary name), is raised again naming
    path."""
    try:
        yield
    except OSError as exc:
        if exc.filename and exc.filename != instead_of:
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
