"""Read the residue interposer's logs (data/residue.c; the checker is checkers/residue.py).

`parse_residue_log(path)` reads one process's log (`residue.<pid>`) into Findings of category
secret-residue: SecretInFreedBlock (free of a block still holding a canary), SecretInReallocCopy
(realloc moved a block and left the old copy holding one) and SecretInStack (a dead stack frame
still holds one when main returns).  The interposer logs raw return addresses with module and
offset; they are named here with one llvm-symbolizer process per log.

A log says itself whether its process was checked to the end: a start line and a config line
when the interposer loaded, an end line from its destructor.  `ResidueLog.complete` is false when
the last section has no end line (a crash, _exit, a kill), when the interposer could not read the
canaries, or when there were none to look for: never a clean result then.  (exit, _exit and
main's return are seen; a signal and a raw exit_group system call, the Go runtime's way out, are
not: Go programs cannot be checked by residue.)
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ..errors import ParseError
from ..findings import AuxStack, Finding, Frame
from .symbolize import find_symbolizer, symbolize

SO_NAME = "lh-residue.so"  # the interposer's own frames are named by its file
LOG_NAME = "residue"  # the interposer writes LOG_NAME.<pid> in the job's log folder
TOOL = "residue"
CATEGORY = "secret-residue"
KINDS = {"free": "SecretInFreedBlock", "realloc": "SecretInReallocCopy", "stack": "SecretInStack"}
START = "LH-RESIDUE 1 start "
_FRAME = re.compile(r"^([fam]) 0x([0-9a-f]+) (?:0x([0-9a-f]+)|-) (.*)$")
_FIELD = re.compile(r"(\w+)=(\S*)")
# llvm-symbolizer's FILE:LINE:COLUMN (or FILE:LINE): matched from the right, a path may hold ':'.
_PLACE = re.compile(r"^(.*):(\d+):\d+$|^(.*):(\d+)$")

@dataclass(frozen=True)
class ResidueLog:
    path: str
    pid: int | None
    findings: tuple[Finding, ...]
    complete: bool  # the last section ran to its end line, with canaries to look for
    reason: str = ""  # why not complete, one line
    problems: tuple[str, ...] = ()
    partial: bool = False  # a record was cut short
    stats: dict = field(default_factory=dict)  # the end line's numbers (frees, scanned bytes, ...)


def sniff(head: bytes) -> bool:
    return head.startswith(START.encode())


@dataclass
class _Record:
    fields: dict
    pid: int | None
    free: list = field(default_factory=list)  # (address, offset, module)
    alloc: list = field(default_factory=list)
    caller_only: bool = False
    entries: set = field(default_factory=set)  # frames that are a function's entry address


def _ours(frame: tuple) -> bool:
    return os.path.basename(frame[2] or "") == SO_NAME


def _trim(frames: list) -> list:
    """Our own frames off the top, but the last of them: the replacement free/malloc/realloc
    frame stays, as valgrind shows its own."""
    i = 0
    while i + 1 < len(frames) and _ours(frames[i]) and _ours(frames[i + 1]):
        i += 1
    return frames[i:]


def parse_residue_log(path: str | os.PathLike, symbolizer: str | None = None) -> ResidueLog:
    path = str(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except IsADirectoryError:
        raise ParseError(path, "is a directory, not a residue log") from None
    except OSError as exc:
        raise ParseError(path, f"cannot read: {exc.strerror or exc}") from None
    if not data.strip():
        raise ParseError(path, "empty file: the residue interposer wrote nothing")
    if not sniff(data):
        raise ParseError(path, "not a residue log (no LH-RESIDUE start line)")
    text = data.decode("utf-8", "surrogateescape")
    cut_last = not text.endswith("\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()

    records: list[_Record] = []
    problems: list[str] = []
    section_done: list[bool] = []
    section_secrets: list[int | None] = []
    error = ""
    stats: dict = {}
    pid = None
    current: _Record | None = None
    partial = False
    for number, line in enumerate(lines, 1):
        last = number == len(lines)
        if current is not None:
            if line == "E":
                records.append(current)
                current = None
                continue
            m = _FRAME.match(line)
            if m and not (last and cut_last):
                tag, addr, offset, module = m.groups()
                entry = (int(addr, 16), int(offset, 16) if offset else None, None if module == "-" else module)
                if tag == "m":  # main's entry, not a return address: looked up as it is
                    current.entries.add(entry)
                (current.alloc if tag == "a" else current.free).append(entry)
                continue
            if line == "p caller-only":
                current.caller_only = True
                continue
            # Another record began (a write of a process killed mid-record), or the line is cut.
            partial = True
            problems.append(f"line {number}: a record is cut short")
            current = None
        if line.startswith(START):
            fields = dict(_FIELD.findall(line[len(START):].split(" exe=", 1)[0]))
            pid = int(fields["pid"]) if fields.get("pid", "").isdigit() else pid
            section_done.append(False)
            section_secrets.append(None)
        elif line.startswith("LH-RESIDUE config "):
            fields = dict(_FIELD.findall(line))
            if section_secrets and fields.get("secrets", "").isdigit():
                section_secrets[-1] = int(fields["secrets"])
        elif line.startswith("LH-RESIDUE error "):
            error = line[len("LH-RESIDUE error "):].strip()
        elif line.startswith("LH-RESIDUE end "):
            if section_done:
                section_done[-1] = True
            stats = {k: (int(v) if v.isdigit() else v) for k, v in _FIELD.findall(line)}
        elif line.startswith("R "):
            current = _Record(dict(_FIELD.findall(line)), pid)
            if current.fields.get("kind") not in KINDS or not current.fields.get("bytes", "").isdigit():
                raise ParseError(path, f"line {number}: not a residue record: {line[:80]!r}")
        elif last and cut_last:
            partial = True
            problems.append(f"line {number}: cut short")
        else:
            raise ParseError(path, f"line {number}: not a line of a residue log: {line[:80]!r}")
    if current is not None:
        partial = True
        problems.append("the last record is cut short")

    reason = ""
    if error:
        reason = f"the residue interposer refused its canaries: {error}"
    elif not section_secrets or section_secrets[-1] is None:
        reason = "the residue interposer started but never became ready (no config line)"
    elif section_secrets[-1] == 0:
        reason = "no secrets to look for (give the canaries: a pattern's secrets, --secret HEX or a file)"
    elif not section_done[-1]:
        reason = ("the process ended before the residue interposer's exit check (a signal, or an exit_group "
                  "system call made directly, as the Go runtime does): not checked to the end")
    findings, sym_problems = _findings(records, path, symbolizer)
    problems.extend(sym_problems)
    return ResidueLog(path, pid, tuple(findings), complete=not reason, reason=reason, problems=tuple(problems),
                      partial=partial, stats=stats)


def _message(kind: str, fields: dict) -> str:
    which = f"secret #{fields.get('secret', '?')} ({fields.get('secret_bytes', '?')} bytes"
    if kind == "free":
        return (f"a block of {fields['bytes']} bytes was freed still holding {which} at offset "
                f"{fields.get('offset', '?')}): wipe it first (OPENSSL_clear_free, OPENSSL_cleanse)")
    if kind == "realloc":
        return (f"realloc moved a block of {fields['bytes']} bytes and left the old copy holding {which} at "
                f"offset {fields.get('offset', '?')}): grow secrets with OPENSSL_clear_realloc or copy and cleanse")
    return (f"a stack frame that was given up still holds {which}) when main returned; the frame "
            f"belonged to a function called from the first frame shown: OPENSSL_cleanse the buffer before returning")


def _findings(records: Sequence[_Record], path: str, symbolizer: str | None) -> tuple[list[Finding], list[str]]:
    if not records:
        return [], []
    stacks = []
    for r in records:
        stacks.append((_trim(r.free) if r.fields["kind"] != "stack" else r.free, _trim(r.alloc)))
    names, problems = _symbolize([fr for pair in stacks for part in pair for fr in part], path, symbolizer,
                                 set().union(*(r.entries for r in records)))

    def frames(entries: list) -> tuple[Frame, ...]:
        out: list[Frame] = []
        for i, (addr, offset, module) in enumerate(entries):
            named = names.get((module, offset))
            if _ours((addr, offset, module)):
                # The interposer's own frames: the replacement free/malloc/realloc on top, named
                # by its outermost function alone (its helpers are inlined into it), as valgrind
                # shows its replacement; the main() wrapper further down says nothing: dropped.
                if i == 0:
                    out.append(Frame(address=addr, function=named[-1][0] if named else None,
                                     object=module, offset=offset))
                continue
            if named:
                out.extend(Frame(address=addr, function=fn, file=file, line=line, object=module, offset=offset)
                           for fn, file, line in named)
            else:
                out.append(Frame(address=addr, object=module, offset=offset))
        return tuple(out)

    merged: dict[tuple, Finding] = {}
    counts: dict[tuple, int] = {}
    for r, (free, alloc) in zip(records, stacks):
        kind = r.fields["kind"]
        stack = frames(free)
        aux = ()
        if alloc:
            text = ("allocated by (the allocator's caller only: the block was allocated inside a system library)"
                    if r.caller_only else "allocated at")
            aux = (AuxStack("allocated", frames(alloc), text),)
        key = (kind, r.fields["bytes"], r.fields.get("secret"), stack, aux)
        counts[key] = counts.get(key, 0) + 1
        if key not in merged:
            merged[key] = Finding(tool=TOOL, kind=KINDS[kind], category=CATEGORY, message=_message(kind, r.fields),
                                  bytes=int(r.fields["bytes"]), blocks=1, stack=stack, aux_stacks=aux,
                                  pid=r.pid, source=path)
    result = []
    for key, finding in merged.items():
        if counts[key] > 1:
            finding = dataclasses.replace(finding, count=counts[key], blocks=counts[key])
        result.append(finding)
    return result, problems


def _symbolize(entries: list, path: str, symbolizer: str | None, exact: set = frozenset()) -> tuple[dict, list[str]]:
    """(module, offset) -> [(function, file, line), ...] innermost inlined call first.
    Return addresses are looked up one byte back: inside the call, on the call's own line;
    the `exact` entries (a function's entry address) as they are."""
    exact_keys = {(module, offset) for _addr, offset, module in exact}
    try:
        log_mtime = os.stat(path).st_mtime
    except OSError:
        log_mtime = None
    wanted: dict[tuple[str, int], None] = {}
    usable: dict[str, bool] = {}
    for _addr, offset, module in entries:
        if module is None or offset is None or not os.path.isabs(module):
            continue
        if module not in usable:
            try:
                st = os.stat(module)
                usable[module] = ('"' not in module and os.path.isfile(module)
                                  and (log_mtime is None or st.st_mtime <= log_mtime))
            except OSError:
                usable[module] = False
        if usable[module]:
            wanted[(module, offset)] = None
    if not wanted:
        return {}, []
    exe = symbolizer or find_symbolizer()
    if exe is None:
        return {}, ["llvm-symbolizer not found: frames left as module+offset"]
    requests = [(module, offset if (module, offset) in exact_keys else max(offset - 1, 0)) for module, offset in wanted]
    answers, problem = symbolize(requests, exe)
    names: dict = {}
    for (module, offset), request in zip(wanted, requests):
        block = answers.get(request)
        if not block:
            continue
        named = []
        for i in range(0, len(block) - 1, 2):
            fn = None if block[i] == "??" else block[i]
            m = _PLACE.match(block[i + 1])
            file = line = None
            if m:
                path_, number = (m.group(1), m.group(2)) if m.group(1) is not None else (m.group(3), m.group(4))
                if path_ != "??":
                    file, line = path_, int(number) or None
            if fn or file:
                named.append((fn, file, line))
        if named:
            names[(module, offset)] = named
    return names, [problem] if problem else []


def parse_logs(paths: Iterable[str | os.PathLike], symbolizer: str | None = None) -> tuple[list[ResidueLog], list[ParseError]]:
    logs, errors = [], []
    for p in paths:
        try:
            logs.append(parse_residue_log(p, symbolizer))
        except ParseError as exc:
            errors.append(exc)
    return logs, errors
