"""Read any log leakharness understands: valgrind XML files, sanitizer logs, and the Go
runtime's crash output (a captured stderr of a Go program).

The format is recognised from the file's first bytes, not its name, so a user can hand
over whatever their tools wrote.  Stacks that run into cgo (a Go program's C calls) get their
cgo frames named (parsers/go.py name_cgo_frames), whichever tool wrote them.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Union

from ..errors import ParseError
from .residue import ResidueLog, parse_residue_log
from .residue import sniff as looks_like_residue_log
from .go import GoCrashLog, name_cgo_frames, parse_go_crash
from .go import sniff as looks_like_go_crash
from .sanitizers import SanitizerLog, parse_sanitizer_log
from .sanitizers import sniff as looks_like_sanitizer_log
from .valgrind import ValgrindLog, parse_valgrind_xml
from .valgrind import sniff as looks_like_valgrind_xml

ParsedLog = Union[ValgrindLog, SanitizerLog, GoCrashLog, ResidueLog]


def parse_file(path: str) -> ParsedLog:
    log = _parse_file(path)
    if any(fr.function and "_Cfunc_" in fr.function for f in log.findings for fr in f.stack):
        log = dataclasses.replace(log, findings=tuple(name_cgo_frames(log.findings)))
    return log


def _parse_file(path: str) -> ParsedLog:
    path = str(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(65536)
    except IsADirectoryError:
        raise ParseError(path, "is a directory, not a log file") from None
    except OSError as exc:
        raise ParseError(path, f"cannot read: {exc.strerror or exc}") from None
    if not head.strip():
        raise ParseError(path, "empty file")
    if looks_like_residue_log(head):
        return parse_residue_log(path)
    if looks_like_valgrind_xml(head) or head.lstrip().startswith(b"<"):
        return parse_valgrind_xml(path)
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
