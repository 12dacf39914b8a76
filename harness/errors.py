"""The exception hierarchy: every error a user can cause is one of these.

The command line turns a LeakHarnessError into one line on stderr and exit code 2; anything
else is a bug in leakharness and keeps its traceback.
"""

from __future__ import annotations


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
