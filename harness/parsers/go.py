"""Parse the Go runtime's own crash output, and name the cgo frames other tools print.

A Go program that dies prints, on stderr, a header (`panic: ...`, `fatal error: ...`, or
`SIGSEGV: segmentation violation` with "signal arrived during cgo execution"), for a signal a
`[signal SIGSEGV: segmentation violation code=... addr=0x0 pc=0x...]` line, then the
goroutines' stacks: `goroutine 1 [syscall]:` and, per frame, `pkg.func(args)` and a tab-indented
`file.go:21 +0x3f` line.  The crashing goroutine comes first.  One Finding per crash:
- cgocheck's verdicts (GODEBUG=cgocheck=2: "Go pointer stored into non-Go memory"; the default
  check's "cgo argument has Go pointer to ...") are category "other", kind "cgocheck";
- a signal is category "crash" with the signal as kind ("SEGV", as the sanitizers name it), so a
  run that ended that way counts as crashed;
- any other panic or fatal error is category "crash", kind "panic" or "fatal-error".
The stack is the crashing goroutine's, the runtime's own frames above the program's left out;
when its top is cgo's stub `main._Cfunc_NAME`, the C function NAME is put above it, so the
finding reads "C function NAME, called from Go main.f (main.go:21)".

Go 1.19's unwinders (LeakSanitizer's, valgrind's) stop at the cgo stack switch: their stacks end
in `_cgo_<hash>_Cfunc__Cmalloc` (C.CString, C.CBytes or C.malloc called from Go) or
`_cgo_<hash>_Cfunc_NAME` (the C function NAME) and `runtime.asmcgocall`, valgrind's then in
garbage.  name_cgo_frames() gives such frames a stable name (the hash changes with the
package), cuts the garbage, and says in the message what the frame means and that the Go caller
is hidden by the stack switch.  name_lsan_go_callers() then names it for go-asan all the same, from
what the go-asan build recorded of each cgo allocation and each pointer a C call returned to Go
(gobuild.HELPER_SOURCE and KEEP_SOURCE), joined with LeakSanitizer's leaked objects by address;
name_memcheck_go_callers() for memcheck, from its build's same record joined with the blocks of
each loss record that valgrind's block_list printed (gobuild.MEMCHECK_HELPER_SOURCE).
"""

from __future__ import annotations

import dataclasses
import io
import re
from dataclasses import dataclass
from typing import Iterable

from ..errors import ParseError
from ..findings import AuxStack, Finding, Frame
from ..signatures import CGO_SWITCH, GO_CALLER

_HEADER = re.compile(r"^(panic: |fatal error: |(SIG[A-Z]+): )(.*)$")
_SIGNAL = re.compile(r"^\[signal (SIG[A-Z]+)(?:: ([^\]]*?))?(?: code=(\S+))?(?: addr=(\S+))?(?: pc=(0x[0-9a-fA-F]+))?\]")
_PC_LINE = re.compile(r"^PC=(0x[0-9a-fA-F]+)")
_GOROUTINE = re.compile(r"^goroutine (\d+) \[([^\]]*)\]:\s*$")
_FUNC = re.compile(r"^(\S.*?)\((.*)\)\s*$|^(\S+)\(\.\.\.\)\s*$")
_PLACE = re.compile(r"^\t(.+?):(\d+)(?: \+0x[0-9a-fA-F]+)?(?: .*?pc=(0x[0-9a-fA-F]+))?\s*$")
_CGO_STUB = re.compile(r"^(?:.*\.)?_Cfunc_(\w+)$")
_CGO_C_FRAME = re.compile(r"^_cgo_[0-9a-f]+_Cfunc_(\w+)$")
_CGOCHECK = ("Go pointer stored into non-Go memory", "cgo argument has Go pointer", "cgo result has Go pointer",
             "Go pointer to unpinned Go pointer", "unpinned Go pointer")
CGO_MALLOC = "_Cfunc__Cmalloc"  # cgo's allocator stub: C.CString, C.CBytes and C.malloc all go through it
_MAX_LINE = 1 << 20


@dataclass(frozen=True)
class GoCrashLog:
    """What the Go runtime printed when the program died."""

    path: str
    findings: tuple[Finding, ...]
    pid: int | None = None
    partial: bool = False  # a header with no goroutine stack after it
    problems: tuple[str, ...] = ()


def sniff(head: bytes) -> bool:
    text = head.decode("utf-8", "replace")
    return bool(re.search(r"^(?:panic: |fatal error: |SIG[A-Z]+: )", text, re.M)
                and re.search(r"^goroutine \d+ \[", text, re.M))


def _lines(path: str) -> Iterable[str]:
    with open(path, "rb") as raw:
        with io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline=None) as text:
            while True:
                line = text.readline(_MAX_LINE)
                if not line:
                    return
                yield line.rstrip("\n")


def parse_go_crash(path: str, pid: int | None = None) -> GoCrashLog:
    """Read a captured stderr; ParseError when it holds no Go crash."""
    path = str(path)
    try:
        findings, partial = _parse(_lines(path), path, pid)
    except OSError as exc:
        raise ParseError(path, f"cannot read: {exc.strerror or exc}") from None
    if not findings:
        raise ParseError(path, "not a Go crash (no panic:, fatal error: or SIGnal header followed by goroutines)")
    problems = ("the Go runtime's crash output is cut short: no goroutine stack",) if partial else ()
    return GoCrashLog(path, tuple(findings), pid, partial, problems)


def parse_go_text(text: str, source: str = "<stderr>", pid: int | None = None) -> GoCrashLog:
    findings, partial = _parse(text.splitlines(), source, pid)
    return GoCrashLog(source, tuple(findings), pid, partial)


class _Crash:
    def __init__(self, header: str, word: str, signame: str | None):
        self.header = header
        self.word = word  # "panic", "fatal error" or the signal
        self.signal = signame
        self.details: list[str] = []
        self.addr: str | None = None
        self.pc: str | None = None
        self.cgo = False  # "signal arrived during cgo execution"
        self.goroutine: tuple[int, str] | None = None
        self.frames: list[Frame] = []
        self.done = False  # the crashing goroutine's stack is complete


def _parse(lines: Iterable[str], source: str, pid: int | None) -> tuple[list[Finding], bool]:
    crashes: list[_Crash] = []
    crash: _Crash | None = None
    state = "idle"  # idle, header, stack (in the crashing goroutine), skip (other goroutines)
    pending: str | None = None  # a function line waiting for its place line
    for line in lines:
        m = _HEADER.match(line)
        if m and (state in ("idle", "skip") or (crash and not crash.frames and state == "header")):
            if crash is None or crash.done or state != "header":
                crash = _Crash(m.group(3).strip(), "panic" if m.group(1) == "panic: " else
                               "fatal error" if m.group(1) == "fatal error: " else m.group(2), m.group(2))
                crashes.append(crash)
                state = "header"
            else:  # "panic: ..." then "fatal error: ..." (a panic during a panic): keep the first
                crash.details.append(line.strip())
            continue
        if crash is None:
            continue
        if state == "header":
            s = _SIGNAL.match(line)
            if s:
                crash.signal = s.group(1)
                crash.addr, crash.pc = s.group(4), s.group(5)
                continue
            p = _PC_LINE.match(line)
            if p:
                crash.pc = crash.pc or p.group(1)
                continue
            if "signal arrived during cgo execution" in line:
                crash.cgo = True
                continue
            g = _GOROUTINE.match(line)
            if g:
                crash.goroutine = (int(g.group(1)), g.group(2))
                state, pending = "stack", None
                continue
            if line.startswith("runtime stack:"):
                state, pending = "runtime", None
                continue
            if line.strip() and not line.startswith(("\t", " ")) and len(crash.details) < 4:
                crash.details.append(line.strip())
            continue
        if state == "runtime":  # the system stack of a fatal error: the runtime's own, skipped
            g = _GOROUTINE.match(line)
            if g:
                crash.goroutine = (int(g.group(1)), g.group(2))
                state, pending = "stack", None
            continue
        if state == "stack":
            if not line.strip():
                crash.done, state = True, "skip"
                continue
            place = _PLACE.match(line)
            if place and pending is not None:
                crash.frames.append(Frame(address=int(place.group(3), 16) if place.group(3) else None,
                                          function=pending, file=place.group(1), line=int(place.group(2))))
                pending = None
                continue
            if line.startswith("created by "):
                continue
            f = _FUNC.match(line)
            if f:
                pending = f.group(1) or f.group(3)
            continue
    findings = [_finding(c, source, pid) for c in crashes]
    partial = any(not c.frames for c in crashes)
    return findings, partial


def _program_frames(frames: list[Frame]) -> list[Frame]:
    """The crashing goroutine's frames from the first that is not the runtime's (cgocall,
    throw, the write barrier, sigpanic), without runtime.main and goexit at the bottom."""
    start = next((i for i, f in enumerate(frames) if not (f.function or "").startswith("runtime.")), len(frames))
    kept = [f for f in frames[start:] if f.function not in ("runtime.main", "runtime.goexit")]
    # cgo wraps a call that passes pointers in a closure (main.f.func1) on the caller's own line:
    # not a function of the program's, so left out, and the caller is the next frame.
    kept = [f for i, f in enumerate(kept)
            if not (i + 1 < len(kept) and f.file and f.file == kept[i + 1].file and f.line == kept[i + 1].line
                    and re.fullmatch(re.escape(kept[i + 1].function or "") + r"\.func\d+", f.function or ""))]
    out = []
    for f in kept:
        if f.file and (f.file.startswith("_cgo_") or "/_cgo_" in f.file):
            f = dataclasses.replace(f, file=None, line=None, object="cgo")  # cgo's generated file: no source
        out.append(f)
    return out or list(frames)


def _finding(c: _Crash, source: str, pid: int | None) -> Finding:
    frames = _program_frames(c.frames)
    c_function = None
    if frames:
        stub = _CGO_STUB.match(frames[0].function or "")
        if stub:
            c_function = stub.group(1)
            frames.insert(0, Frame(address=int(c.pc, 16) if c.pc else None, function=c_function, object="C (cgo)"))
    go_frames = [f for f in frames if f.function and not _CGO_STUB.match(f.function) and f.object != "C (cgo)"]
    go_caller = go_frames[0] if go_frames else None
    caller = ""
    if go_caller is not None:
        place = f" ({go_caller.file.rsplit('/', 1)[-1]}:{go_caller.line})" if go_caller.file else ""
        caller = f"{go_caller.function}{place}"
    text = f"{c.word}: {c.header}" if c.word in ("panic", "fatal error") else f"{c.word}: {c.header}"
    if any(k in c.header or any(k in d for d in c.details) for k in _CGOCHECK):
        detail = next((d for d in c.details if "Go pointer" in d), "")
        message = f"cgocheck: {c.header}" + (f" ({detail})" if detail else "")
        if caller:
            message += f", in Go {caller}"
        return Finding(tool="go", kind="cgocheck", category="other", message=message, stack=tuple(frames),
                       pid=pid, source=source)
    if c.signal:
        where = f" at addr={c.addr}" if c.addr else ""
        if c_function:
            message = f"{c.signal}{where} inside C function {c_function}, called from Go {caller or '?'} through cgo"
        else:
            message = f"{c.signal}{where} in Go {caller or '?'}"
        message += f" ({text})"
        return Finding(tool="go", kind=c.signal[3:] if c.signal.startswith("SIG") else c.signal, category="crash",
                       message=message, stack=tuple(frames), pid=pid, source=source)
    kind = "panic" if c.word == "panic" else "fatal-error"
    message = text + (f", in Go {caller}" if caller else "")
    return Finding(tool="go", kind=kind, category="crash", message=message, stack=tuple(frames), pid=pid,
                   source=source)


# --- cgo frames in other tools' stacks ------------------------------------------------------

HIDDEN = "the Go caller is hidden by the cgo stack switch (Go 1.19's unwinders stop there)"

# The program's main as leakharness's Go builds name it (gobuild.USER_MAIN: the overlay renames it
# so that the helper's main runs the exit-time check after it).
OVERLAY_MAIN = "main.leakharnessUserMain"


def _overlay_main(function: str | None) -> bool:
    return bool(function) and (function == OVERLAY_MAIN or function.startswith(OVERLAY_MAIN + "."))


def _main_named(frames: tuple[Frame, ...]) -> tuple[Frame, ...]:
    return tuple(dataclasses.replace(fr, function="main.main" + fr.function[len(OVERLAY_MAIN):])
                 if _overlay_main(fr.function) else fr for fr in frames)


def name_user_main(findings: Iterable[Finding]) -> list[Finding]:
    """Frames of the program's main, and of its closures (main.main.func1), under the program's
    own names again, and the signatures made from them: a `known` entry or a baseline written for
    main.main matches."""
    out = []
    for f in findings:
        if not any(_overlay_main(fr.function) for frames in (f.stack, *(a.frames for a in f.aux_stacks))
                   for fr in frames):
            out.append(f)
            continue
        aux = tuple(dataclasses.replace(a, frames=_main_named(a.frames)) for a in f.aux_stacks)
        out.append(dataclasses.replace(f, stack=_main_named(f.stack), aux_stacks=aux, signature=""))
    return out


def name_cgo_frames(findings: Iterable[Finding]) -> list[Finding]:
    """Stacks that run into cgo: `_cgo_<hash>_Cfunc_NAME` named `_Cfunc_NAME` (the hash changes
    with the package, the bug does not), `runtime.asmcgocall.abi0` as runtime.asmcgocall, the
    frames below asmcgocall (valgrind's garbage) cut, and the message saying what it means."""
    out = []
    for f in findings:
        stack = list(f.stack)
        hit = None
        for i, fr in enumerate(stack):
            m = _CGO_C_FRAME.match(fr.function or "")
            if m:
                hit = hit or m.group(1)
                stack[i] = dataclasses.replace(fr, function=f"_Cfunc_{m.group(1)}", file=None, line=None,
                                               object=fr.object or "cgo")
        if hit is None:
            out.append(f)
            continue
        for i, fr in enumerate(stack):
            if (fr.function or "").startswith(CGO_SWITCH):
                stack = stack[:i] + [dataclasses.replace(fr, function=CGO_SWITCH)]
                break
        if hit == "_Cmalloc":
            what = "allocated by C.CString, C.CBytes or C.malloc called from Go"
        else:
            what = f"in the C function {hit}, called from Go through cgo"
        message = f"{f.message}; {what}; {HIDDEN}" if f.message else f"{what}; {HIDDEN}"
        out.append(dataclasses.replace(f, stack=tuple(stack), message=message, signature=""))
    return out


# --- the Go caller of a cgo allocation, from the go-asan build's record ----------------------

_LSAN_RECORD = re.compile(r"^(Direct|Indirect) leak of (\d+) byte\(s\) in (\d+) object\(s\)")
_LSAN_OBJECT = re.compile(r"^(0x[0-9a-fA-F]+) \((\d+) bytes\)")
_ALLOC_LINE = re.compile(r"^(\S+) (0x[0-9a-fA-F]+) (\d+) (\S+) (.+):(\d+)$")
_RETURN_LINE = re.compile(r"^(\S+) (0x[0-9a-fA-F]+) (\w+) (.+)$")
_GO_FRAME = re.compile(r"^(\S+) (.+):(\d+)$")


def leaked_objects(path: str, sizes: dict[int, int] | None = None) -> list[tuple[str, int, int, list[int]]]:
    """LSan's records with report_objects=1: (Direct|Indirect, bytes, objects, [addresses]); each
    object's size into `sizes` when given."""
    records: list[tuple[str, int, int, list[int]]] = []
    listing = False
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            m = _LSAN_RECORD.match(line)
            if m:
                records.append((m.group(1), int(m.group(2)), int(m.group(3)), []))
                listing = False
                continue
            if line.startswith("Objects leaked above:"):
                listing = bool(records)
                continue
            if listing:
                o = _LSAN_OBJECT.match(line)
                if o:
                    records[-1][3].append(int(o.group(1), 16))
                    if sizes is not None:
                        sizes[int(o.group(1), 16)] = int(o.group(2))
                else:
                    listing = False
    return records


def recorded_allocations(stderr: str, mark: str) -> dict[int, tuple[int, str, str, int]]:
    """The go-asan helper's lines: address -> (size, Go function, file, line)."""
    table: dict[int, tuple[int, str, str, int]] = {}
    with open(stderr, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.startswith(mark):
                continue
            m = _ALLOC_LINE.match(line.rstrip("\n"))
            if m and m.group(1) == mark:
                table[int(m.group(2), 16)] = (int(m.group(3)), m.group(4), m.group(5), int(m.group(6)))
    return table


def recorded_returns(stderr: str, mark: str) -> dict[int, tuple[str, tuple[tuple[str, str, int], ...]]]:
    """The go-asan helper's lines for pointers C calls returned to Go (gobuild.KEEP_SOURCE):
    address -> (C function, the Go frames of the call: (function, file, line), the caller first)."""
    table: dict[int, tuple[str, tuple[tuple[str, str, int], ...]]] = {}
    with open(stderr, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.startswith(mark):
                continue
            m = _RETURN_LINE.match(line.rstrip("\n"))
            if not m or m.group(1) != mark:
                continue
            frames = tuple((f.group(1), f.group(2), int(f.group(3)))
                           for f in map(_GO_FRAME.match, m.group(4).split("\t")) if f)
            if frames:
                table[int(m.group(2), 16)] = (m.group(3), frames)
    return table


def _cgo_function(f: Finding) -> str | None:
    """The C function a leak's stack entered from Go (its `_Cfunc_NAME` frame, as
    name_cgo_frames names it), if any."""
    return next((fr.function[len("_Cfunc_"):] for fr in f.stack if (fr.function or "").startswith("_Cfunc_")), None)


def name_lsan_go_callers(findings: list[Finding], table: dict, returns: dict,
                         lsan_logs: Iterable[str]) -> list[Finding]:
    """go-asan's leaks through cgo joined, by address, with the Go calls its build recorded: a block
    of cgo's allocation stub with its C.CString, C.CBytes or C.malloc call (`table`), a block a C
    function returned to Go with that call (`returns`, only where the leak's stack entered that
    same C function).  Each Go caller becomes an aux stack ("Go caller") with its objects and
    bytes, and the message names them.  Only a record whose bytes and object count match the
    finding it came from is used."""
    out = list(findings)
    named: dict[int, list[Finding]] = {}
    for path in lsan_logs:
        object_bytes: dict[int, int] = {}
        try:
            records = leaked_objects(path, object_bytes)
        except OSError:
            continue
        leaks = [i for i, f in enumerate(out) if f.source == path and f.category == "leak"]
        if len(leaks) != len(records):
            continue
        for i, (kind, nbytes, nobjects, addresses) in zip(leaks, records):
            f = out[i]
            if f.bytes != nbytes or f.blocks != nobjects:
                continue
            named[i] = _named_by_records(f, addresses, object_bytes, table, returns, "LeakSanitizer's stack", "go-asan")
    return _spliced(out, named)


def _spliced(findings: list[Finding], named: dict[int, list[Finding]]) -> list[Finding]:
    """findings with each one in `named` replaced by what naming its Go callers made of it."""
    return [g for i, f in enumerate(findings) for g in named.get(i, (f,))]


# valgrind's text log (stderr), its block_list monitor command as memcheck's Go helper runs it
# (gobuild.MEMCHECK_HELPER_SOURCE): a loss record's header, its stack, then one line per block.
_VG_LINE = re.compile(r"^==(\d+)== ?(.*)$")
_VG_RECORD = re.compile(r"^[\d,]+ .*?bytes in ([\d,]+) (?:\([+-]?[\d,]+\) )?blocks are (definitely|indirectly|possibly) "
                        r"lost in loss record [\d,]+ of [\d,]+$")
_VG_FRAME = re.compile(r"^   (?:at|by) 0x([0-9A-Fa-f]+):")
_VG_BLOCK = re.compile(r"^0x([0-9A-Fa-f]+)\[([\d,]+)\]")  # a block of the record (an indented one: its indirect)
_XML_KINDS = {"Leak_DefinitelyLost": "definitely", "Leak_IndirectlyLost": "indirectly", "Leak_PossiblyLost": "possibly"}
_TEXT_KINDS = {"definite": "definitely", "indirect": "indirectly", "possible": "possibly"}  # Finding.leak_kind's
_XML_RECORD = re.compile(r"lost in loss record ([\d,]+) of ([\d,]+)")
# A merged finding's (merge_split_records): "lost in loss records 3, 7-9, 12 of 31".
_XML_RECORDS = re.compile(r"lost in loss records? ([\d,]+(?:-[\d,]+)?(?:, [\d,]+(?:-[\d,]+)?)*) of ([\d,]+)")
_XML_WHAT = re.compile(r"^[\d,]+(?: \([\d,]+ direct, [\d,]+ indirect\))? bytes in [\d,]+ blocks are (\w+) "
                       + _XML_RECORDS.pattern)
_MAX_LISTED = 1 << 16  # characters of a merged finding's record numbers; past that, only how many
_MAX_RECORDS = 1_000_000  # loss records a merged finding may name (block_list asks for 1..1000000)


def _record_numbers(listed: str) -> list[int]:
    """"3, 7-9, 12" (or one valgrind number, "1,234") as [3, 7, 8, 9, 12]; [] for ranges no real
    log has (a million records and more, backwards)."""
    numbers: list[int] = []
    for part in listed.split(", "):
        low, _, high = part.partition("-")
        first = int(low.replace(",", ""))
        last = int(high.replace(",", "")) if high else first
        if not first <= last < first + _MAX_RECORDS or len(numbers) + last - first >= _MAX_RECORDS:
            return []
        numbers += range(first, last + 1)
    return numbers


def _record_ranges(numbers: list[int]) -> str:
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in runs)


def merge_split_records(findings: list[Finding]) -> list[Finding]:
    """memcheck's leak records through cgo that only the garbage below the stack switch told
    apart, as one.  valgrind keys a loss record by its whole stack, and past runtime.asmcgocall
    it unwinds stale words of the system stack: 50,000 C.CString calls from two Go lines came
    out as 31 records of 7 B to 160 kB, numbered differently on every run.  name_cgo_frames cut
    that garbage, so records of the same process, kind and (cut) stack are the one record
    LeakSanitizer reports for them; their bytes and blocks add up, and the message lists the
    records ("loss records 3, 7-9, 12 of 31": where to look in the raw log) for
    name_memcheck_go_callers to find their blocks."""
    groups: dict[tuple, list[int]] = {}
    for i, f in enumerate(findings):
        what = _XML_WHAT.match(f.message or "") if f.category == "leak" and f.leak_kind else None
        if (what is not None and "-" not in what.group(2) and ", " not in what.group(2)  # valgrind's: one record
                and f.stack and f.stack[-1].function == CGO_SWITCH and not f.aux_stacks):
            groups.setdefault((f.tool, f.kind, f.leak_kind, f.pid, f.source, f.stack, f.suppressed), []).append(i)
    if all(len(members) == 1 for members in groups.values()):
        return findings
    out: list[Finding | None] = list(findings)
    for members in groups.values():
        if len(members) > 1:
            out[members[0]] = _merged([findings[i] for i in members])
            for i in members[1:]:
                out[i] = None
    return [f for f in out if f is not None]


def _merged(members: list[Finding]) -> Finding:
    first = members[0]
    whats = [_XML_WHAT.match(f.message) for f in members]  # each valgrind's own: one record number
    numbers = [int(w.group(2).replace(",", "")) for w in whats]
    what = whats[0]
    listed = _record_ranges(numbers)
    direct = sum(f.bytes or 0 for f in members)
    indirect = sum(f.indirect_bytes for f in members)
    blocks = sum(f.blocks or 0 for f in members)
    amount = f"{direct + indirect:,} ({direct:,} direct, {indirect:,} indirect)" if indirect else f"{direct:,}"
    where = (f"loss records {listed} of {what.group(3)}" if len(listed) <= _MAX_LISTED
             else f"{len(numbers):,} loss records of {what.group(3)}")  # too many to list: not named
    head = f"{amount} bytes in {blocks:,} blocks are {what.group(1)} lost in {where}"
    return dataclasses.replace(first, message=head + first.message[what.end():], bytes=direct,
                               indirect_bytes=indirect, blocks=blocks, count=sum(f.count for f in members))

# A loss record is the blocks of one kind allocated by one stack: (pid, kind, the stack's
# instruction addresses) names it in both valgrind's leak searches, whatever number each gives it.
RecordKey = tuple[int, str, tuple[int, ...]]


def listed_blocks(stderr: str) -> dict[RecordKey, tuple[int, list[int], dict[int, int]]]:
    """The block_list output in a memcheck job's stderr: loss record -> (blocks its header says,
    the blocks' addresses, each one's size)."""
    found: dict[RecordKey, tuple[int, list[int], dict[int, int]]] = {}
    header = None  # (pid, kind, blocks) of the record being read, its stack and blocks
    stack: list[int] = []
    blocks: list[int] = []
    sizes: dict[int, int] = {}

    def close() -> None:
        if header is not None and blocks:
            found[(header[0], header[1], tuple(stack))] = (header[2], list(blocks), dict(sizes))

    with open(stderr, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            m = _VG_LINE.match(line.rstrip("\n"))
            if not m:
                continue
            pid, text = int(m.group(1)), m.group(2)
            r = _VG_RECORD.match(text)
            if r:
                close()
                header, stack, blocks, sizes = (pid, r.group(2), int(r.group(1).replace(",", ""))), [], [], {}
                continue
            if header is None or pid != header[0]:
                continue
            fr = _VG_FRAME.match(text)
            b = _VG_BLOCK.match(text)
            if fr and not blocks:
                stack.append(int(fr.group(1), 16))
            elif b:
                addr = int(b.group(1), 16)
                blocks.append(addr)
                sizes[addr] = int(b.group(2).replace(",", ""))
            elif not _VG_BLOCK.match(text.lstrip()):  # anything else but an indirect block ends the record
                close()
                header = None
        close()
    return found


def xml_records(xml_path: str, pid: int) -> dict[tuple[str, int, int], RecordKey]:
    """valgrind's leak records in one XML log: (kind, number, of) -> the record's key (its kind and
    whole stack, which the parsed finding no longer has: the frames past cgo's stub are cut)."""
    from lxml import etree

    found: dict[tuple[str, int, int], RecordKey] = {}
    for _event, elem in etree.iterparse(xml_path, events=("end",), tag="error", resolve_entities=False,
                                        load_dtd=False, no_network=True, huge_tree=False):
        kind = _XML_KINDS.get(elem.findtext("kind") or "")
        text = elem.findtext("xwhat/text") or ""
        m = _XML_RECORD.search(text)
        if kind is not None and m is not None:
            ips = tuple(int(ip, 16) for ip in (e.text or "" for e in elem.iterfind("stack/frame/ip")) if ip)
            found[(kind, int(m.group(1).replace(",", "")), int(m.group(2).replace(",", "")))] = (pid, kind, ips)
        elem.clear()
    return found


def name_memcheck_go_callers(findings: list[Finding], table: dict, returns: dict, stderr: str) -> list[Finding]:
    """memcheck's leaks through cgo joined with the Go calls the memcheck build recorded, as
    name_lsan_go_callers does for go-asan.  valgrind's XML lists no addresses, so the build's helper
    lists the blocks of every loss record (block_list, from a leak search of the heap valgrind's
    own search at exit then finds); a finding's record is the one of the same process, kind and
    whole stack (the XML's), and is used only when its block count matches."""
    try:
        lists = listed_blocks(stderr)
    except OSError:
        return list(findings)
    out = list(findings)
    named: dict[int, list[Finding]] = {}
    records: dict[str, dict[tuple[str, int, int], RecordKey]] = {}
    for i, f in enumerate(out):
        m = _XML_RECORDS.search(f.message or "") if f.category == "leak" and f.leak_kind else None
        if m is None or f.pid is None or not f.source or _cgo_function(f) is None:
            continue
        if f.source not in records:
            try:
                records[f.source] = xml_records(f.source, f.pid)
            except (OSError, SyntaxError):  # lxml's XMLSyntaxError is one: a cut log names nothing
                records[f.source] = {}
        kind = _TEXT_KINDS.get(f.leak_kind or "")
        of = int(m.group(2).replace(",", ""))
        addresses: list[int] = []
        sizes: dict[int, int] = {}
        numbers = _record_numbers(m.group(1))  # one record, or those merge_split_records made one
        if not numbers:
            continue
        for number in numbers:
            key = records[f.source].get((kind, number, of))
            listed = lists.get(key) if key is not None else None
            if listed is None or listed[0] != len(listed[1]):
                break
            addresses += listed[1]
            sizes.update(listed[2])
        else:
            if len(addresses) == f.blocks:
                named[i] = _named_by_records(f, addresses, sizes, table, returns, "valgrind's stack", "memcheck")
    return _spliced(out, named)


def _named_by_records(f: Finding, addresses: list[int], object_bytes: dict[int, int], table: dict, returns: dict,
                      whose_stack: str, build: str) -> list[Finding]:
    """f with its Go callers (the `table` and `returns` records of its blocks' addresses): one
    finding per Go caller, with it as an aux stack ("Go caller") and in its message, and one more
    for the objects no record names, if any.  The unwinder's record of one C call from several
    Go lines is several bugs: each is named by its own line (signatures.signature_stack), so that
    accepting one (a `known` entry, a baseline) never accepts a new one."""
    entered = _cgo_function(f)
    if entered is None:
        return [f]
    groups: dict[tuple[tuple[str, str, int], ...], list[int]] = {}  # Go frames -> bytes per object
    for addr in addresses:
        if entered == "_Cmalloc":
            site = table.get(addr)
            if site is not None:
                groups.setdefault((site[1:],), []).append(site[0])
        else:
            back = returns.get(addr)
            if back is not None and back[0] == entered and addr in object_bytes:
                groups.setdefault(back[1], []).append(object_bytes[addr])
    if not groups:
        return [f]
    named = sum(len(v) for v in groups.values())
    named_bytes = sum(sum(v) for v in groups.values())
    # Hidden from the unwinder, no longer from the reader.
    said = f.message.replace(HIDDEN, f"{whose_stack} stops at the cgo stack switch")
    callers = []
    for frames, sizes in sorted(groups.items(), key=lambda kv: -sum(kv[1])):
        fn, file, line = frames[0]
        place = f"{file.rsplit('/', 1)[-1]}:{line}"
        via = ""
        if len(frames) > 1:
            outer, outer_file, outer_line = frames[1]
            via = f", called from {outer} ({outer_file.rsplit('/', 1)[-1]}:{outer_line})"
        go_frames = tuple(Frame(function=a, file=b, line=c) for a, b, c in frames)
        aux = AuxStack(label=GO_CALLER, frames=go_frames,
                       text=f"{fn} {place}{via}: {len(sizes)} object(s), {sum(sizes)} B "
                            f"(recorded by leakharness's {build} build)")
        callers.append((aux, f"{fn} ({place}{via}) {len(sizes)} object(s) {sum(sizes)} B", sizes))
    # (Both joins took only a record whose object count is the finding's: named <= f.blocks.)
    if (len(callers) == 1 and named == len(addresses)) or f.bytes is None or named_bytes > f.bytes:
        # One Go caller for every object (or sizes that do not add up: left as the tool gave them).
        message = (f"{said}; the {build} build recorded the Go caller(s): {', '.join(w for _, w, _ in callers)}"
                   f" ({named} of {len(addresses)} object(s) named)")
        return [dataclasses.replace(f, message=message, aux_stacks=tuple(f.aux_stacks) + tuple(a for a, _, _ in callers),
                                    signature="")]
    parts = []
    for n, (aux, words, sizes) in enumerate(callers):
        message = (f"{said}; the {build} build recorded its Go caller: {words} ({len(sizes)} of the record's "
                   f"{len(addresses)} object(s); its other Go callers are findings of their own)")
        parts.append(dataclasses.replace(f, message=message, bytes=sum(sizes), blocks=len(sizes),
                                         indirect_bytes=f.indirect_bytes if n == 0 else 0,  # the tool's, whole
                                         aux_stacks=tuple(f.aux_stacks) + (aux,), signature=""))
    if named < f.blocks:
        parts.append(dataclasses.replace(f, message=f"{f.message} ({f.blocks - named} of the record's {f.blocks} "
                                                    f"object(s) no record names; the others are findings of their own)",
                                         bytes=f.bytes - named_bytes, blocks=f.blocks - named, indirect_bytes=0))
    return parts
