"""Parse AddressSanitizer, LeakSanitizer, UndefinedBehaviorSanitizer and ThreadSanitizer
logs into Findings.

The sanitizers write plain text (stderr, or log_path.PID with log_path set): one report
per error, each a header line, stacks of `#N` frames, labelled auxiliary stacks ("freed by
thread T0 here:") and a SUMMARY line.  The parser is a line-by-line state machine so that
a log cut short keeps every report before the cut, and the one being cut is kept too,
marked partial.  Frames may be symbolized (`in func file.c:12:3`) or not
(`(/lib/libcrypto.so.3+0x1a2b)`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import ParseError
from .findings import AuxStack, Finding, Frame

_HEADER = re.compile(
    r"^==(\d+)==ERROR: (AddressSanitizer|LeakSanitizer|MemorySanitizer|HWAddressSanitizer)"
    r":?\s*(.*)$"
)
_TSAN_HEADER = re.compile(r"^WARNING: ThreadSanitizer: (.*?)(?: \(pid=(\d+)\))?\s*$")
_UBSAN = re.compile(r"^(.*?):(\d+):(\d+): runtime error: (.*)$")
_LEAK = re.compile(r"^(Direct|Indirect) leak of (\d+) byte\(s\) in (\d+) object\(s\) allocated from:")
_FRAME = re.compile(r"^\s*#(\d+)\s+(?:(0x[0-9a-fA-F]+)\s*)?(.*)$")
_MODULE = re.compile(r"\s*\(([^()]*?)\+(0x[0-9a-fA-F]+)\)\s*$")
_BUILD_ID = re.compile(r"\s*\(BuildId: [0-9a-fA-F]+\)\s*$")
_FILE_LINE = re.compile(r"^(.*?):(\d+)(?::(\d+))?$")
_ACCESS = re.compile(r"^\s*(READ|WRITE|Read|Write|Previous read|Previous write|Atomic \w+) of size (\d+)")
_THREAD = re.compile(r"\bthread T(\d+)|\b(main) thread")
_AUX_HEADER = re.compile(r"^\s*(.*(?:here|at|from)):\s*$")
_SUMMARY = re.compile(r"^SUMMARY: (\w+): (.*)$")
_PID_SUFFIX = re.compile(r"\.(\d+)$")

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
    "heap-use-after-free (virtual call vs free)": "use-after-free",
}


@dataclass(frozen=True)
class SanitizerLog:
    """What one sanitizer log file says."""

    path: str
    findings: tuple[Finding, ...]
    pid: int | None = None
    partial: bool = False  # a report was cut short
    summaries: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default=())


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
    if rest.startswith("in "):
        rest = rest[3:]
    function = file = line_no = None
    if rest:
        head, _, last = rest.rpartition(" ")
        fl = _FILE_LINE.match(last) if head else None
        if fl and not last.startswith("<"):
            file, line_no, function = fl.group(1), int(fl.group(2)), head.strip()
        elif head and last == "<null>":  # TSan: function <null>
            function = head.strip()
        else:
            function = rest
    if function in ("<null>", ""):
        function = None
    return Frame(address=address, function=function, file=file, line=line_no, object=obj, offset=offset)


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

    def start_aux(self, text: str) -> None:
        low = text.lower()
        label = ("freed" if "freed" in low else
                 "allocated" if "allocated" in low else
                 "thread created" if "created" in low else
                 "previous access" if "previous" in low else "auxiliary")
        self.aux.append((label, text.strip(), []))
        self.current = self.aux[-1][2]

    def finding(self, source: str) -> Finding:
        leak_kind, nbytes, blocks = self.leak or (None, None, None)
        message = self.message
        if self.details:
            message += " (" + "; ".join(self.details) + ")"
        return Finding(
            tool=self.tool,
            kind=self.kind,
            category=self.category,
            message=message,
            leak_kind=leak_kind,
            bytes=nbytes,
            blocks=blocks,
            stack=tuple(self.stack),
            aux_stacks=tuple(AuxStack(label, tuple(fr), text) for label, text, fr in self.aux if fr),
            pid=self.pid,
            thread=self.thread,
            source=source,
        )


def sniff(head: bytes) -> bool:
    text = head[:65536].decode("utf-8", "replace")
    return bool(
        re.search(r"^==\d+==ERROR: \w*Sanitizer", text, re.M)
        or re.search(r"^WARNING: ThreadSanitizer:", text, re.M)
        or re.search(r"^.*:\d+:\d+: runtime error: ", text, re.M)
        or re.search(r"^SUMMARY: \w*Sanitizer: ", text, re.M)
    )


def parse_sanitizer_log(path: str, pid: int | None = None) -> SanitizerLog:
    """Read one sanitizer log.  Raises ParseError when the file cannot be read or holds no
    sanitizer report at all."""
    path = str(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ParseError(path, f"cannot read: {exc.strerror or exc}") from None
    if not data.strip():
        raise ParseError(path, "empty file")
    if pid is None:
        m = _PID_SUFFIX.search(path)
        pid = int(m.group(1)) if m else None
    text = data.decode("utf-8", "replace")
    if not sniff(data) and "leak of" not in text:
        raise ParseError(path, "not a sanitizer log (no ERROR: ...Sanitizer, runtime error or SUMMARY line)")
    return parse_sanitizer_text(text, path, pid)


def parse_sanitizer_text(text: str, source: str = "<stderr>", pid: int | None = None) -> SanitizerLog:
    findings: list[Finding] = []
    summaries: list[str] = []
    report: _Report | None = None
    leak_pid = pid
    lsan_tool = "lsan"

    def close():
        nonlocal report
        if report is not None:
            findings.append(report.finding(source))
            report = None

    for raw in text.splitlines():
        line = raw.rstrip()
        if not line:
            # A blank line ends a leak record and a TSan section, not an ASan report (whose
            # auxiliary stacks are separated by blank lines).
            if report is not None and report.leak is not None:
                close()
            continue
        if line.startswith("    #") or line.startswith("  #") or line.lstrip().startswith("#"):
            frame = parse_frame(line)
            if frame is not None and report is not None:
                report.current.append(frame)
            continue
        m = _HEADER.match(line)
        if m:
            close()
            this_pid, sanitizer, rest = int(m.group(1)), m.group(2), m.group(3)
            if rest.startswith("detected memory leaks"):
                leak_pid = this_pid
                lsan_tool = "lsan"
                continue
            tool = {"AddressSanitizer": "asan", "MemorySanitizer": "msan",
                    "HWAddressSanitizer": "hwasan"}.get(sanitizer, "lsan")
            kind = _asan_kind(rest)
            report = _Report(tool, kind, _ASAN_KINDS.get(kind, "other"), rest.strip(),
                             this_pid, _thread(rest))
            continue
        m = _LEAK.match(line)
        if m:
            close()
            leak_kind = "definite" if m.group(1) == "Direct" else "indirect"
            report = _Report(lsan_tool, f"{m.group(1)} leak", "leak", line.rstrip(":"), leak_pid,
                             leak=(leak_kind, int(m.group(2)), int(m.group(3))))
            continue
        m = _TSAN_HEADER.match(line)
        if m:
            close()
            kind = m.group(1).strip()
            report = _Report("tsan", kind, _ASAN_KINDS.get(kind, "other"), kind,
                             int(m.group(2)) if m.group(2) else pid)
            continue
        m = _UBSAN.match(line)
        if m:
            close()
            file, line_no, message = m.group(1), int(m.group(2)), m.group(4)
            report = _Report("ubsan", "undefined-behavior", "undefined-behavior", message, pid)
            # UBSan names the place in the header; its stack (print_stacktrace=1) may follow.
            report.details.append(f"at {file}:{line_no}:{m.group(3)}")
            report.ub_location = Frame(file=file or None, line=line_no)
            continue
        m = _SUMMARY.match(line)
        if m:
            summaries.append(line)
            if report is not None and report.leak is None:
                if report.tool == "ubsan" and not report.stack:
                    report.stack.append(report.ub_location)
                close()
            continue
        if report is None:
            continue
        if line.startswith("==") or line.startswith("Shadow") or line.startswith("  0x") or line.startswith("=>0x"):
            continue  # ABORTING, hints, shadow memory: nothing to keep
        m = _ACCESS.match(line)
        if m:
            if line.lstrip().startswith("Previous"):
                report.start_aux(line.strip().rstrip(":"))
            else:
                report.details.append(line.strip().rstrip(":"))
                if report.thread is None:
                    report.thread = _thread(line)
            continue
        if _AUX_HEADER.match(line) and not line.startswith(" " * 4):
            report.start_aux(line.strip().rstrip(":"))
            continue
        if " is located " in line:
            report.details.append(line.strip())

    partial = report is not None
    if report is not None:
        if report.tool == "ubsan" and not report.stack:
            report.stack.append(report.ub_location)
            partial = False  # UBSan prints no SUMMARY per error by default
        close()
    return SanitizerLog(path=source, findings=tuple(findings), pid=pid, partial=partial,
                        summaries=tuple(summaries))
