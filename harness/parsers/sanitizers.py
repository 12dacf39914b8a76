"""Parse AddressSanitizer, LeakSanitizer, MemorySanitizer, UndefinedBehaviorSanitizer and
ThreadSanitizer logs into Findings.

The sanitizers write plain text (stderr, or log_path.PID with log_path set): one report
per error, each a header line, stacks of `#N` frames, labelled auxiliary stacks ("freed by
thread T0 here:", "Uninitialized value was created by a heap allocation") and a SUMMARY line.
The parser is a line-by-line state machine fed one line at a time from the file, so a log of
any size parses in memory bounded by its findings, and a log cut short keeps every report
before the cut (the one being cut is kept too, marked partial).  Frames may be symbolized
(`in func file.c:12:3`) or not (`(/path/prog+0x1a2b)`); those left unsymbolized are named
afterwards with llvm-symbolizer when it is there (harness.symbolize).

One bug gets one category under every tool: a SEGV that ASan says was caused by a READ is an
invalid-read, as memcheck's "Invalid read" at the same address (its kind stays "SEGV", which
is how a run is known to have crashed).
"""

from __future__ import annotations

import dataclasses
import io
import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from ..errors import ParseError
from ..findings import AuxStack, Finding, Frame, make_signature
from .symbolize import symbolize_findings

_HEADER = re.compile(
    r"^==(\d+)==(?:ERROR: (AddressSanitizer|LeakSanitizer|MemorySanitizer|HWAddressSanitizer)"
    # MSan words its reports as warnings; ASan's own WARNING lines (failed allocations, ...) are not reports.
    r"|WARNING: (MemorySanitizer)):?\s*(.*)$"
)
_TSAN_HEADER = re.compile(r"^WARNING: ThreadSanitizer: (.*?)(?: \(pid=(\d+)\))?\s*$")
_UBSAN = re.compile(r"^(.*?):(\d+):(\d+): runtime error: (.*)$")
_LEAK = re.compile(r"^(Direct|Indirect) leak of (\d+) byte\(s\) in (\d+) object\(s\) allocated from:")
_FRAME = re.compile(r"^\s*#(\d+)\s+(?:(0x[0-9a-fA-F]+)\s*)?(.*)$")
_MODULE = re.compile(r"\s*\(([^()]*?)\+(0x[0-9a-fA-F]+)\)\s*$")
_UNKNOWN_MODULE = re.compile(r"\s*\(<unknown module>\)\s*$")
_BUILD_ID = re.compile(r"\s*\(BuildId: [0-9a-fA-F]+\)\s*$")
_FILE_LINE = re.compile(r"^(.*?):(\d+)(?::(\d+))?$")
_ACCESS = re.compile(r"^\s*(READ|WRITE|Read|Write|Previous read|Previous write|Atomic \w+) of size (\d+)")
_THREAD = re.compile(r"\bthread T(\d+)|\b(main) thread")
# "freed by thread T0 here:", "Thread T2 (...) created by main thread at:", TSan's "Location is
# heap block of size 4 at 0x... allocated by main thread:" / "... by thread T1:".
_AUX_HEADER = re.compile(r"^\s*(.*(?:here|at|from|thread|T\d+)):\s*$")
# MSan's origin lines end without a colon.
_MSAN_ORIGIN = re.compile(r"^\s+((?:Uninitialized value was|Memory was marked as uninitialized)\b.*)$")
_MSAN_BYTES = re.compile(r"^Uninitialized bytes in \S+ at offset \d+ inside ")
_SIGNAL_ACCESS = re.compile(r"^==\d+==The signal is caused by a (READ|WRITE|UNKNOWN) memory access")
_SEGV_ADDR = re.compile(r"on unknown address (0x[0-9a-fA-F]+) \(pc (0x[0-9a-fA-F]+)")
_STACK_FRAME_OBJECT = re.compile(r"\bis located in stack of thread .* in frame\s*$")
_SUMMARY = re.compile(r"^SUMMARY: (\w+): (.*)$")
_EXIT_STATS = "AddressSanitizer exit stats:"
_PID_SUFFIX = re.compile(r"\.(\d+)$")

_MAX_LINE = 1 << 20  # a line longer than this is read in pieces: bounded memory on any file
_CACHE_LIMIT = 500_000

_ASAN_KINDS = {
    "heap-use-after-free": "use-after-free",
    "stack-use-after-return": "use-after-free",
    "stack-use-after-scope": "use-after-free",
    "use-after-poison": "use-after-free",
    "double-free": "double-free",
    "bad-free": "invalid-free",
    "alloc-dealloc-mismatch": "mismatched-free",
    "new-delete-type-mismatch": "mismatched-free",
    "heap-buffer-overflow": "buffer-overflow",
    "stack-buffer-overflow": "buffer-overflow",
    "stack-buffer-underflow": "buffer-overflow",
    "global-buffer-overflow": "buffer-overflow",
    "dynamic-stack-buffer-overflow": "buffer-overflow",
    "container-overflow": "buffer-overflow",
    "intra-object-overflow": "buffer-overflow",
    "SEGV": "crash",
    "BUS": "crash",
    "FPE": "crash",
    "ILL": "crash",
    "ABRT": "crash",
    "stack-overflow": "crash",
    "use-of-uninitialized-value": "uninitialized",  # MemorySanitizer
    "wild-addr-read": "invalid-read",
    "wild-addr-write": "invalid-write",
    "data race": "data-race",  # ThreadSanitizer
    "data race on vptr": "data-race",
    "lock-order-inversion (potential deadlock)": "lock-order",  # ThreadSanitizer, like helgrind's LockOrder
    "heap-use-after-free (virtual call vs free)": "use-after-free",
}
# Signals whose report says which access caused them.
_ACCESS_SIGNALS = frozenset({"SEGV", "BUS"})


@dataclass(frozen=True)
class SanitizerLog:
    """What one sanitizer log file says."""

    path: str
    findings: tuple[Finding, ...]
    pid: int | None = None
    partial: bool = False  # a report was cut short
    summaries: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default=())
    # "AddressSanitizer exit stats:" (atexit=1) was printed: the program reached exit() with ASan
    # alive, so the exit-time leak check ran.  Read here so that no caller reads the log again.
    exit_stats: bool = False


# --- frames ---------------------------------------------------------------------------------

# C++ operator names hold brackets that are not brackets: leave them out when counting.
_OPERATOR = re.compile(r"operator\s*(?:<<=|>>=|<=>|<<|>>|<=|>=|->\*?|<|>|\(\)|\[\])")
_QUALIFIER = re.compile(r"^(?:const|volatile|&|&&|\[clone\b)")


def _balanced(name: str) -> bool:
    name = _OPERATOR.sub("operator", name)
    return all(name.count(a) == name.count(b) for a, b in ("()", "<>", "[]", "{}"))


def _split_function_and_place(rest: str) -> tuple[str | None, str | None, int | None]:
    """`func /a dir/f.c:12:3` -> (func, '/a dir/f.c', 12).  Both the name (C++: `operator
    new(unsigned long)`, `f(int, char) const`) and the path may hold spaces: the split is the
    first space after a whole name (brackets balanced, not `operator`) whose remainder is a
    place `path:line[:col]`."""
    start = 0
    while True:
        i = rest.find(" ", start)
        if i < 0:
            return rest, None, None
        start = i + 1
        name, place = rest[:i], rest[i + 1:]
        if not name or name.endswith("operator") or _QUALIFIER.match(place):
            continue
        fl = _FILE_LINE.match(place)
        if not fl or place.startswith("<") or not _balanced(name):
            continue
        if "(" in fl.group(1) and not place.startswith(("/", ".")):
            continue  # still inside a signature: `bool operator< <int>(A<int> const&) /x.cc:3`
        return name.strip(), fl.group(1), int(fl.group(2))


def parse_frame(line: str) -> Frame | None:
    m = _FRAME.match(line)
    if not m:
        return None
    address = int(m.group(2), 16) if m.group(2) else None
    rest = _BUILD_ID.sub("", m.group(3).strip())
    obj = offset = None
    mod = _MODULE.search(rest)
    if mod:
        obj, offset = mod.group(1) or None, int(mod.group(2), 16)
        rest = rest[: mod.start()].rstrip()
    else:
        unknown = _UNKNOWN_MODULE.search(rest)
        if unknown:
            rest = rest[: unknown.start()].rstrip()
    if rest.startswith("in "):
        rest = rest[3:]
    function = file = line_no = None
    if rest:
        if rest.endswith(" <null>"):  # TSan: `func <null>`, `<null> <null>`
            function = rest[: -len(" <null>")].strip()
        else:
            function, file, line_no = _split_function_and_place(rest)
    if function in ("<null>", ""):
        function = None
    return Frame(address=address, function=function, file=file, line=line_no, object=obj, offset=offset)


# --- reports --------------------------------------------------------------------------------

def _asan_kind(text: str) -> str:
    """`heap-use-after-free on address 0x...` -> heap-use-after-free"""
    if text.startswith("attempting double-free"):
        return "double-free"
    if text.startswith("attempting free on address which was not malloc()-ed"):
        return "bad-free"
    word = text.split(" ", 1)[0].rstrip(":")
    return word or "unknown"


def _thread(text: str) -> int | None:
    m = _THREAD.search(text)
    if not m:
        return None
    return 0 if m.group(2) else int(m.group(1))


def _aux_label(text: str) -> str:
    low = text.lower()
    if low.startswith(("uninitialized value", "memory was marked")):  # MSan's origins
        if "heap allocation" in low or "allocation of" in low:
            return "allocated"
        return "stored" if "stored to memory" in low else "origin"
    return ("freed" if "freed" in low else
            "allocated" if "allocated" in low else
            "mutex created" if "mutex" in low else
            "thread created" if "created" in low else
            "previous access" if "previous" in low else
            "stack frame" if "in frame" in low else "auxiliary")


class _Report:
    """A report being read: its header facts and its stacks so far."""

    def __init__(self, tool, kind, category, message, pid, thread=None, leak=None):
        self.tool, self.kind, self.category = tool, kind, category
        self.message, self.pid, self.thread = message, pid, thread
        self.leak = leak  # (leak_kind, bytes, blocks)
        self.stack: list[Frame] = []
        self.aux: list[tuple[str, str, list[Frame]]] = []
        self.current = self.stack
        self.details: list[str] = []
        self.ub_location: Frame | None = None  # UBSan: the place its header names

    def start_aux(self, text: str) -> None:
        text = text.strip()
        self.aux.append((_aux_label(text), text, []))
        self.current = self.aux[-1][2]


class _LogParser:
    """The state machine: feed it lines, then finish()."""

    def __init__(self, source: str, pid: int | None):
        self.source, self.pid = source, pid
        self.findings: list[Finding] = []
        self.summaries: list[str] = []
        self.report: _Report | None = None
        self.leak_pid = pid
        self.seen_report = False  # anything at all that only a sanitizer writes
        self.pending_details: list[str] = []  # MSan says which bytes before its header
        self.exit_stats = False
        # Big logs repeat the same frames, messages and stacks: keep one copy of each.
        self.frames: dict[str, Frame] = {}
        self.strings: dict[str, str] = {}
        self.signatures: dict[tuple, tuple[str, tuple]] = {}

    # -- building findings -----------------------------------------------------------------
    def intern(self, text: str) -> str:
        if len(self.strings) >= _CACHE_LIMIT:
            return text
        return self.strings.setdefault(text, text)

    def frame(self, line: str) -> Frame | None:
        key = line.strip()
        frame = self.frames.get(key)
        if frame is None:
            frame = parse_frame(key)
            if frame is not None and len(self.frames) < _CACHE_LIMIT:
                if frame.function:
                    frame = dataclasses.replace(frame, function=self.intern(frame.function))
                self.frames[key] = frame
        return frame

    def signature(self, category: str, stack: tuple[Frame, ...]) -> str:
        # Keyed by the frames' identities: frames are shared, so equal stacks are cheap to
        # find; the stack is kept with the signature so that no id is reused while cached.
        key = (category, *map(id, stack))
        hit = self.signatures.get(key)
        if hit is None:
            hit = (make_signature(category, stack), stack)
            if len(self.signatures) < _CACHE_LIMIT:
                self.signatures[key] = hit
        return hit[0]

    def close(self) -> None:
        r = self.report
        if r is None:
            return
        self.report = None
        leak_kind, nbytes, blocks = r.leak or (None, None, None)
        message = r.message
        if r.details:
            message += " (" + "; ".join(r.details) + ")"
        stack = tuple(r.stack)
        if r.tool == "ubsan" and not stack and r.ub_location is not None:
            # UBSan prints no stack by default: its header's place is all there is.
            stack = (r.ub_location,)
        self.findings.append(Finding(
            tool=r.tool,
            kind=r.kind,
            category=r.category,
            message=self.intern(message),
            leak_kind=leak_kind,
            bytes=nbytes,
            blocks=blocks,
            stack=stack,
            aux_stacks=tuple(AuxStack(label, tuple(fr), self.intern(text)) for label, text, fr in r.aux if fr),
            pid=r.pid,
            thread=r.thread,
            source=self.source,
            signature=self.signature(r.category, stack),
        ))

    def open(self, report: _Report) -> None:
        self.close()
        if self.pending_details:
            report.details.extend(self.pending_details)
            self.pending_details = []
        self.report = report
        self.seen_report = True

    # -- one line ----------------------------------------------------------------------------
    def feed(self, raw: str) -> None:
        line = raw.rstrip()
        report = self.report
        if not line:
            # A blank line ends a leak record, not an ASan report (whose auxiliary stacks are
            # separated by blank lines).
            if report is not None and report.leak is not None:
                self.close()
            return
        if line.lstrip().startswith("#"):
            if report is not None:
                frame = self.frame(line)
                if frame is not None:
                    report.current.append(frame)
            return
        if line.startswith("=="):
            self.feed_pid_line(line, report)
            return
        m = _LEAK.match(line)
        if m:
            leak_kind = "definite" if m.group(1) == "Direct" else "indirect"
            self.open(_Report("lsan", f"{m.group(1)} leak", "leak", self.intern(line.rstrip(":")),
                              self.leak_pid, leak=(leak_kind, int(m.group(2)), int(m.group(3)))))
            return
        m = _TSAN_HEADER.match(line)
        if m:
            kind = m.group(1).strip()
            self.open(_Report("tsan", kind, _ASAN_KINDS.get(kind, "other"), kind,
                              int(m.group(2)) if m.group(2) else self.pid))
            return
        if " runtime error: " in line:
            m = _UBSAN.match(line)
            if m:
                file, line_no, message = m.group(1), int(m.group(2)), m.group(4)
                report = _Report("ubsan", "undefined-behavior", "undefined-behavior", message, self.pid)
                # UBSan names the place in the header; its stack (print_stacktrace=1) may follow.
                report.details.append(f"at {file}:{line_no}:{m.group(3)}")
                report.ub_location = Frame(file=file or None, line=line_no)
                self.open(report)
                return
        m = _SUMMARY.match(line)
        if m:
            self.summaries.append(line)
            self.seen_report = True
            if report is not None and report.leak is None:
                self.close()
            return
        if line.startswith(_EXIT_STATS):
            self.close()
            self.exit_stats = True
            return
        if report is None:
            if _MSAN_BYTES.match(line):
                self.pending_details.append(line.strip())
            return
        if line.startswith("Shadow") or line.startswith("  0x") or line.startswith("=>0x"):
            return  # shadow memory: nothing to keep
        m = _ACCESS.match(line)
        if m:
            if line.lstrip().startswith("Previous"):
                report.start_aux(line.strip().rstrip(":"))
            else:
                report.details.append(line.strip().rstrip(":"))
                if report.thread is None:
                    report.thread = _thread(line)
            return
        if report.tool == "msan":
            m = _MSAN_ORIGIN.match(line)
            if m:
                report.start_aux(m.group(1))
                return
        if _AUX_HEADER.match(line) and not line.startswith(" " * 4):
            report.start_aux(line.strip().rstrip(":"))
            return
        if " is located " in line:
            report.details.append(line.strip())
            if _STACK_FRAME_OBJECT.search(line):
                # The frame that holds the stack object follows: not part of the access stack.
                report.start_aux(line.strip())

    def feed_pid_line(self, line: str, report: _Report | None) -> None:
        """`==PID==...`: a report's header, or a note about the report being read."""
        m = _HEADER.match(line)
        if m:
            this_pid = int(m.group(1))
            sanitizer = m.group(2) or m.group(3)
            rest = m.group(4)
            if rest.startswith("detected memory leaks"):
                self.close()
                self.leak_pid = this_pid
                self.seen_report = True
                return
            tool = {"AddressSanitizer": "asan", "MemorySanitizer": "msan",
                    "HWAddressSanitizer": "hwasan"}.get(sanitizer, "lsan")
            kind = _asan_kind(rest)
            self.open(_Report(tool, kind, _ASAN_KINDS.get(kind, "other"), rest.strip(),
                              this_pid, _thread(rest)))
            return
        if report is None:
            return
        m = _SIGNAL_ACCESS.match(line)
        if m and report.kind in _ACCESS_SIGNALS:
            report.details.append(line.split("==", 2)[-1].strip().rstrip("."))
            access = m.group(1)
            addr = _SEGV_ADDR.search(report.message)
            jumped = addr is not None and int(addr.group(1), 16) == int(addr.group(2), 16)
            if access != "UNKNOWN" and not jumped:
                # The same bad access memcheck calls "Invalid read"; a jump to a bad address
                # (the pc is the address) stays a crash, as memcheck's "Jump to the invalid address".
                report.category = "invalid-read" if access == "READ" else "invalid-write"
        # Other ==PID== lines (ABORTING, hints) say nothing to keep.

    # -- end ---------------------------------------------------------------------------------
    def finish(self, path: str | None = None) -> SanitizerLog:
        report = self.report
        partial = report is not None
        if report is not None and report.tool == "ubsan":
            partial = False  # GCC's UBSan prints no SUMMARY per error
        self.close()
        findings, problems = symbolize_findings(self.findings, not_newer_than=path)
        return SanitizerLog(path=self.source, findings=tuple(findings), pid=self.pid, partial=partial,
                            summaries=tuple(self.summaries), problems=tuple(problems),
                            exit_stats=self.exit_stats)


def sniff(head: bytes) -> bool:
    text = head[:65536].decode("utf-8", "replace")
    return bool(
        re.search(r"^==\d+==ERROR: \w*Sanitizer", text, re.M)
        or re.search(r"^==\d+==WARNING: MemorySanitizer:", text, re.M)
        or re.search(r"^WARNING: ThreadSanitizer:", text, re.M)
        or re.search(r"^.*:\d+:\d+: runtime error: ", text, re.M)
        or re.search(r"^SUMMARY: \w*Sanitizer: ", text, re.M)
    )


def _lines(stream: io.TextIOBase) -> Iterator[str]:
    readline = stream.readline
    while True:
        line = readline(_MAX_LINE)
        if not line:
            return
        yield line


def _run(lines: Iterable[str], source: str, pid: int | None, path: str | None) -> tuple[SanitizerLog, bool, bool]:
    parser = _LogParser(source, pid)
    anything = False
    feed = parser.feed
    for line in lines:
        if not anything and line.strip():
            anything = True
        feed(line)
    return parser.finish(path), anything, parser.seen_report


def parse_sanitizer_log(path: str, pid: int | None = None) -> SanitizerLog:
    """Read one sanitizer log, streaming.  Raises ParseError when the file cannot be read,
    is empty, or holds no sanitizer report at all."""
    path = str(path)
    if pid is None:
        m = _PID_SUFFIX.search(path)
        pid = int(m.group(1)) if m else None
    try:
        with open(path, "rb") as raw:
            with io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline=None) as text:
                log, anything, recognised = _run(_lines(text), path, pid, path)
    except OSError as exc:
        raise ParseError(path, f"cannot read: {exc.strerror or exc}") from None
    if not anything:
        raise ParseError(path, "empty file")
    if not recognised:
        raise ParseError(path, "not a sanitizer log (no ERROR: ...Sanitizer, runtime error or SUMMARY line)")
    return log


def parse_sanitizer_text(text: str, source: str = "<stderr>", pid: int | None = None) -> SanitizerLog:
    """Read sanitizer reports from text already in memory (a captured stderr)."""
    log, _anything, _recognised = _run(io.StringIO(text), source, pid, None)
    return log

