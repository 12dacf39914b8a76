"""Read any log leakharness understands: valgrind XML files, sanitizer logs, and the Go
runtime's crash output (a captured stderr of a Go program).

The format is recognised from the file's first bytes, not its name, so a user can hand
over whatever their tools wrote.  Stacks that run into cgo (a Go program's C calls) get their
cgo frames named (parsers/go.py name_cgo_frames), whichever tool wrote them.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Iterable, Union

from ..errors import ParseError
from ..findings import fields_of, new_finding

# Each format's parser is imported when a log of its format comes: `parse` of a valgrind file
# (the big ones) starts without the others, and a run launches its first jobs before lxml is
# loaded (the checkers import this package for their own formats' parsers).
if TYPE_CHECKING:
    from .go import GoCrashLog
    from .residue import ResidueLog
    from .sanitizers import SanitizerLog
    from .valgrind import Part, ValgrindLog

ParsedLog = Union["ValgrindLog", "SanitizerLog", "GoCrashLog", "ResidueLog"]
_RESIDUE_PREFIX = b"LH-RESIDUE "  # how residue.START begins: only such a head needs that parser to sniff it


def looks_like_residue_log(head: bytes) -> bool:
    if not head.startswith(_RESIDUE_PREFIX):
        return False
    from .residue import sniff

    return sniff(head)


def name_cgo_frames(findings):
    from .go import name_cgo_frames as name

    return name(findings)


def parse_file(path: str) -> ParsedLog:
    try:
        log = _parse_file(path)
    except ValueError as exc:
        # A number past Python's 4,300 digits (`Direct leak of 999...`): no tool writes one.
        if "digits" not in str(exc):
            raise
        raise ParseError(str(path), "a number too long to be a tool's (more than 4,300 digits)") from None
    if any(_runs_into_cgo(f) for f in log.findings):
        log = dataclasses.replace(log, findings=tuple(name_cgo_frames(log.findings)))
    if any(_names_overlay_main(f) for f in log.findings):
        from .go import name_user_main

        log = dataclasses.replace(log, findings=tuple(name_user_main(log.findings)))
    return log


def _names_overlay_main(finding) -> bool:
    return any(fr.function and "leakharnessUserMain" in fr.function
               for frames in (finding.stack, *(a.frames for a in finding.aux_stacks)) for fr in frames)


def _runs_into_cgo(finding) -> bool:
    return any(fr.function and "_Cfunc_" in fr.function for fr in finding.stack)


class LogStream:
    """One log's findings, one by one: a valgrind XML file read as it goes (none kept, so a file
    of any size takes bounded memory), any other log read whole.  Afterwards `log` is what the
    file says besides (a streamed file's findings left out) and `found` how many findings it
    had.  Raises ParseError when made, as parse_file does, for a file that is no log at all."""

    def __init__(self, path: str, fields: bool = False, part: Part | None = None):
        """fields: hand out a valgrind file's findings as the tuples of their fields
        (findings.fields_of: no Finding made), for a writer that takes them (parse's JSON).
        part: only that part of a valgrind file (halves())."""
        path = str(path)
        self.path, self.fields = path, fields
        if part is not None or _is_valgrind_xml(_head(path)):
            from .valgrind import ValgrindStream

            self.stream = ValgrindStream(path, fields=fields, part=part)
            self.log = None
        else:
            self.stream = None
            self.log = parse_file(path)
        self.found = 0

    def halves(self) -> "tuple[LogStream, LogStream] | None":
        """A big memcheck file as two streams of its two halves, to be read by two processes
        (parsers/valgrind.py halves() says how), the first's findings before the second's; None
        for any other log."""
        if self.stream is None or self.stream.part is not None:
            return None
        from .valgrind import halves

        parts = halves(self.path)
        if parts is None:
            return None
        return LogStream(self.path, self.fields, parts[0]), LogStream(self.path, self.fields, parts[1])

    def __iter__(self):
        if self.stream is None:
            self.found = len(self.log.findings)
            yield from self.log.findings
            return
        stream = self.stream
        for finding in stream:
            # Only once the parser has met a cgo frame need a finding's frames be looked at.
            if stream.parser.cgo:
                whole = new_finding(*finding) if type(finding) is tuple else finding
                if _runs_into_cgo(whole):
                    named = name_cgo_frames([whole])[0]
                    finding = fields_of(named) if type(finding) is tuple else named
            yield finding
        self.log, self.found = stream.log, stream.found


def _head(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            head = fh.read(65536)
    except IsADirectoryError:
        raise ParseError(path, "is a directory, not a log file") from None
    except OSError as exc:
        raise ParseError(path, f"cannot read: {exc.strerror or exc}") from None
    if not head.strip():
        raise ParseError(path, "empty file")
    return head


def _is_valgrind_xml(head: bytes) -> bool:
    from .valgrind import sniff

    return not looks_like_residue_log(head) and (sniff(head) or head.lstrip().startswith(b"<"))


def _parse_file(path: str) -> ParsedLog:
    path = str(path)
    head = _head(path)
    if looks_like_residue_log(head):
        from .residue import parse_residue_log

        return parse_residue_log(path)
    if _is_valgrind_xml(head):
        from .valgrind import parse_valgrind_xml

        return parse_valgrind_xml(path)
    from .go import parse_go_crash
    from .go import sniff as looks_like_go_crash
    from .sanitizers import parse_sanitizer_log
    from .sanitizers import sniff as looks_like_sanitizer_log

    if looks_like_sanitizer_log(head):
        return parse_sanitizer_log(path)
    if looks_like_go_crash(head):
        return parse_go_crash(path)
    if b"\0" in head:
        raise ParseError(path, "binary file: not a valgrind XML file or a sanitizer log")
    # A captured stderr may hold more than 64 KiB of the program's own output before the
    # first report: read on (the sanitizer parser streams) before calling it no log.
    try:
        log = parse_sanitizer_log(path)
    except ParseError as exc:
        if exc.problem.startswith("not a sanitizer log"):
            raise ParseError(path, "not a valgrind XML file or a sanitizer log (no report found)") from None
        raise
    return log


def parse_files(paths: Iterable[str]) -> tuple[list[ParsedLog], list[ParseError]]:
    """Parse every file; a bad one does not stop the others."""
    logs: list[ParsedLog] = []
    errors: list[ParseError] = []
    for path in paths:
        try:
            logs.append(parse_file(path))
        except ParseError as exc:
            errors.append(exc)
    return logs, errors
