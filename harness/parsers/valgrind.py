"""Parse valgrind's XML output (protocol 4, 5 and 6) into Findings, streaming.

Memcheck's errors and leaks, and helgrind's thread errors: data races (Race), lock-order
inversions (LockOrder), and misuse of locks and the pthread API (UnlockUnlocked, UnlockForeign,
UnlockBogus, PthAPIerror, Misc).  Helgrind names threads by number and announces each one once,
with the stack that created it (<announcethread>); a thread error gets the creation stacks of the
threads it names as extra stacks, as helgrind's text output shows them.

One file per process (valgrind --xml-file=name.%p.xml).  The file is read with lxml's
iterparse and every <error> is dropped from memory once turned into a Finding, so a file of
any size parses in bounded memory.  A file cut short (valgrind killed) keeps every complete
error before the cut and is marked partial.  Entities are never expanded and nothing is
fetched from the network: a file carrying a DTD is refused (valgrind never writes one).
"""

from __future__ import annotations

import codecs
import dataclasses
import io
import re
from dataclasses import dataclass, field
from typing import BinaryIO

from lxml import etree

from ..errors import ParseError
from ..findings import AuxStack, Finding, Frame, make_signature, significant_frames

SUPPORTED_PROTOCOLS = (4, 5, 6)

_LEAK_KINDS = {
    "Leak_DefinitelyLost": "definite",
    "Leak_IndirectlyLost": "indirect",
    "Leak_PossiblyLost": "possible",
    "Leak_StillReachable": "reachable",
}
_SIMPLE_CATEGORIES = {
    "MismatchedFree": "mismatched-free",
    "UninitValue": "uninitialized",
    "UninitCondition": "uninitialized",
    "InvalidMemPool": "invalid-free",
    "InvalidJump": "crash",
    "Race": "data-race",  # helgrind
    "ConflictingAccess": "data-race",  # drd
    # helgrind: two locks taken in both orders somewhere in the run, a deadlock waiting to happen
    # even when this run's threads never overlapped.
    "LockOrder": "lock-order",
    # helgrind: misuse of a lock or of the pthread API (unlocking a lock that is not held, or held
    # by another thread, or is no lock; a failed pthread call; "Misc": re-locking a non-recursive
    # lock, a thread exiting while it holds a lock, destroying a locked mutex).  A bug, but neither
    # a race nor an ordering: "other", with the tool's own kind and words kept.
    "UnlockUnlocked": "other",
    "UnlockForeign": "other",
    "UnlockBogus": "other",
    "PthAPIerror": "other",
    "Misc": "other",
}
# helgrind's error kinds: every thread a finding names is given its creation stack.
_HELGRIND_KINDS = frozenset({"Race", "LockOrder", "UnlockUnlocked", "UnlockForeign", "UnlockBogus",
                             "PthAPIerror", "Misc"})
# Threads whose creation stack is kept: helgrind numbers them from 1, and a run creating more than
# this many keeps the first ones only (bounded memory, as the rest of the parser).
_MAX_THREADS = 100_000
_LEAK_TEXT = re.compile(
    r"^\s*([\d,]+)(?:\s+\(([\d,]+) direct, ([\d,]+) indirect\))? bytes in ([\d,]+) blocks"
)
# valgrind's words for where a bad address is (m_addrinfo.c): "Address 0x.. is 4 bytes inside a
# block of size 16 free'd", "... 0 bytes after a block of size 10 alloc'd", or, for an address it
# knows nothing about, "Address 0x.. is not stack'd, malloc'd or (recently) free'd".  Only the
# first says the block was freed: the last merely contains the word.
_BLOCK = re.compile(
    r"is ([\d,]+) bytes (inside|before|after) a (?:recently re-allocated )?block of size [\d,]+ "
    r"(alloc'd|free'd|client-defined)"
)
_TAGS = ("error", "errorcounts", "suppcounts", "fatal_signal", "pid", "ppid", "tool",
         "protocolversion", "argv", "status", "announcethread", "valgrindoutput")


@dataclass(frozen=True)
class ValgrindLog:
    """What one valgrind XML file says."""

    path: str
    findings: tuple[Finding, ...]
    pid: int | None = None
    ppid: int | None = None
    tool: str | None = None
    protocol: int | None = None
    command: tuple[str, ...] = ()
    error_counts: dict[str, int] = field(default_factory=dict)  # unique id -> times seen
    suppression_counts: dict[str, int] = field(default_factory=dict)  # name -> times used
    fatal_signal: str | None = None
    partial: bool = False  # the file ended before </valgrindoutput>
    # The program ran to its end under valgrind (a <status> FINISHED): a valgrind that stopped at
    # start-up (a suppressions file it cannot open) still closes its XML, with RUNNING only.
    finished: bool = False
    problems: tuple[str, ...] = ()  # what was wrong with the file, when anything was


def _int(text: str | None, base: int = 10) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip().replace(",", ""), base)
    except ValueError:
        return None


class _Utf8Repair(io.RawIOBase):
    """A binary stream that replaces invalid UTF-8 with U+FFFD, for files whose symbols
    carry stray bytes.  Used only after a strict parse failed on them: it costs time."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size if size and size > 0 else 1 << 16)
        return self._decoder.decode(chunk, final=not chunk).encode("utf-8")


class _Parser:
    def __init__(self, path: str, tool_name: str | None):
        self.path = path
        self.tool_name = tool_name
        self.findings: list[Finding] = []
        self.by_unique: dict[str, int] = {}
        self.info: dict = {"error_counts": {}, "suppression_counts": {}}
        self.frames: dict[tuple, Frame] = {}  # identical frames are shared: big files repeat them
        self.signatures: dict[tuple, str] = {}
        self.strings: dict[str, str] = {}
        self.threads: dict[int, tuple[Frame, ...]] = {}  # helgrind: thread number -> creation stack
        self.complete = False

    # -- elements ---------------------------------------------------------------------------
    def frame(self, elem) -> Frame:
        values = {c.tag: c.text for c in elem}
        fn, d, f = values.get("fn"), values.get("dir"), values.get("file")
        # Paths, objects and names repeat across frames at different addresses: keep one copy.
        strings = self.strings
        path = f"{d}/{f}" if d and f else f
        return Frame(
            address=_int(values.get("ip"), 16),
            function=strings.setdefault(fn, fn) if fn else fn,
            file=strings.setdefault(path, path) if path else path,
            line=_int(values.get("line")),
            object=strings.setdefault(values.get("obj"), values.get("obj")) if values.get("obj") else None,
        )

    def stack(self, elem) -> tuple[Frame, ...]:
        # Frames repeat across errors: within one process an address always stands for the
        # same chain of (inlined) frames, so (ip, place in the run of frames sharing that ip)
        # names a frame exactly, and reading the ip alone is cheap.
        frames = []
        cache = self.frames
        prev_ip = None
        k = 0
        for fr in elem:
            first = fr[0] if len(fr) else None
            if first is None or first.tag != "ip":
                frames.append(self.frame(fr))
                continue
            ip = first.text
            if ip == prev_ip:
                k += 1
            else:
                prev_ip, k = ip, 0
            key = (ip, k)
            frame = cache.get(key)
            if frame is None:
                frame = self.frame(fr)
                if len(cache) < 500_000:
                    cache[key] = frame
            frames.append(frame)
        return tuple(frames)

    def signature(self, category: str, stack: tuple[Frame, ...]) -> str:
        """Signatures by stack identity: frames are shared, so equal stacks hash cheaply."""
        key = (category, *map(id, stack))
        sig = self.signatures.get(key)
        if sig is None:
            sig = self.signatures[key] = make_signature(category, stack)
        return sig

    def error(self, elem) -> None:
        kind = what = unique = None
        tid = None
        leak_text = None
        leaked_bytes = leaked_blocks = None
        main_stack: tuple[Frame, ...] | None = None
        aux: list[AuxStack] = []
        aux_texts: list[str] = []
        pending_label: str | None = None
        notes: list[str] = []  # words with no stack of their own ("Address .. inside data symbol ..")
        thread_ids: list[int] = []  # helgrind: the threads the error names, in order
        for child in elem:
            tag = child.tag
            if tag == "stack":
                frames = self.stack(child)
                if main_stack is None:
                    main_stack = frames
                else:
                    text = pending_label or ""
                    aux.append(AuxStack(_aux_label(text), frames, text))
                    if notes and notes[-1] == text:
                        notes.pop()
                    pending_label = None
            elif tag == "kind":
                kind = child.text
            elif tag == "what":
                # helgrind's PthAPIerror says it in two parts: <xwhat> "Thread #1's call to
                # pthread_mutex_lock failed", then <what> "with error code 35 (EDEADLK: ...)".
                what = f"{what} {child.text or ''}".strip() if what else child.text
            elif tag in ("xwhat", "xauxwhat"):
                text = child.findtext("text") or ""
                for hid in child.iterfind("hthreadid"):
                    number = _int(hid.text)
                    if number is not None and number not in thread_ids:
                        thread_ids.append(number)
                if tag == "xwhat":
                    what = leak_text = text
                    leaked_bytes = _int(child.findtext("leakedbytes"))
                    leaked_blocks = _int(child.findtext("leakedblocks"))
                else:
                    aux_texts.append(text)
                    pending_label = text
            elif tag == "auxwhat":
                text = child.text or ""
                aux_texts.append(text)
                notes.append(text)
                pending_label = text
            elif tag == "unique":
                unique = child.text
            elif tag == "tid":
                tid = _int(child.text)
        if kind is None:
            self.info.setdefault("problems", []).append("an <error> without <kind> was skipped")
            return
        if kind in _HELGRIND_KINDS:
            # Where the threads came from, as helgrind's text output shows it: which worker raced
            # is often the whole story.  The root thread (#1) has no creation stack.
            for number in thread_ids:
                created = self.threads.get(number)
                if created:
                    aux.append(AuxStack("thread created", created, f"Thread #{number} was created"))
            # The variable raced on ("Address 0x.. is 0 bytes inside data symbol "counter""), said
            # with no stack of its own: part of the message, as it is of helgrind's text.
            if notes and what:
                what = "; ".join([what, *notes])
        finding = self.make_finding(kind, what or "", aux_texts, main_stack or (), tuple(aux),
                                    tid, leak_text, leaked_bytes, leaked_blocks)
        if kind in _HELGRIND_KINDS and not significant_frames(finding.stack):
            # "Exiting thread still holds 1 lock" is reported at the thread's end, whose stack is
            # start_thread and clone only: the thread is named by where it was created instead.
            created = _creation_site(next((a.frames for a in finding.aux_stacks
                                           if a.label == "thread created"), ()))
            if significant_frames(created):
                finding = dataclasses.replace(finding, signature=self.signature(finding.category, created))
        if unique is not None:
            self.by_unique[unique] = len(self.findings)
        self.findings.append(finding)

    def make_finding(self, kind, what, aux_texts, stack, aux, tid, leak_text, leaked_bytes,
                     leaked_blocks) -> Finding:
        leak_kind = _LEAK_KINDS.get(kind)
        nbytes = indirect = 0
        if leak_kind:
            category = "leak"
            nbytes, indirect = leaked_bytes or 0, 0
            m = _LEAK_TEXT.match(leak_text or "")
            if m and m.group(2) is not None:
                nbytes, indirect = _int(m.group(2)), _int(m.group(3))
        else:
            category = _category(kind, what, aux_texts)
        return Finding(
            tool=self.tool_name or "memcheck",
            kind=kind,
            category=category,
            message=what,
            leak_kind=leak_kind,
            bytes=nbytes if leak_kind else None,
            indirect_bytes=indirect or 0,
            blocks=leaked_blocks if leak_kind else None,
            stack=stack,
            aux_stacks=aux,
            pid=self.info.get("pid"),
            thread=tid,
            source=self.path,
            signature=self.signature(category, stack),
        )

    def fatal_signal(self, elem) -> None:
        name = elem.findtext("signame") or f"signal {elem.findtext('signo')}"
        stack_elem = elem.find("stack")
        stack = self.stack(stack_elem) if stack_elem is not None else ()
        addr = elem.findtext("siaddr")
        self.info["fatal_signal"] = name
        self.findings.append(Finding(
            tool=self.tool_name or "memcheck",
            kind=f"FatalSignal:{name}",
            category="crash",
            message=f"Process terminating with {name}" + (f" at address {addr}" if addr else ""),
            stack=stack,
            pid=self.info.get("pid"),
            thread=_int(elem.findtext("tid")),
            source=self.path,
        ))

    def handle(self, elem) -> None:
        tag = elem.tag
        if tag == "error":
            self.error(elem)
        elif tag == "errorcounts":
            for pair in elem.iterfind("pair"):
                unique, count = pair.findtext("unique"), _int(pair.findtext("count"))
                if unique is not None and count:
                    self.info["error_counts"][unique] = count
        elif tag == "suppcounts":
            for pair in elem.iterfind("pair"):
                name, count = pair.findtext("name"), _int(pair.findtext("count"))
                if name is not None and count is not None:
                    self.info["suppression_counts"][name] = count
        elif tag == "fatal_signal":
            self.fatal_signal(elem)
        elif tag == "announcethread":
            number = _int(elem.findtext("hthreadid"))
            stack_elem = elem.find("stack")
            if number is not None and stack_elem is not None and len(self.threads) < _MAX_THREADS:
                self.threads[number] = self.stack(stack_elem)
        elif tag == "argv":
            self.info["command"] = tuple((c.text or "") for c in elem if c.tag in ("exe", "arg"))
        elif tag in ("pid", "ppid", "protocolversion"):
            self.info[tag] = _int(elem.text)
        elif tag == "tool":
            self.info["tool"] = self.tool_name = (elem.text or "").strip() or None
        elif tag == "status":
            if (elem.findtext("state") or "").strip() == "FINISHED":
                self.info["finished"] = True
        elif tag == "valgrindoutput":
            self.complete = True
            return
        # Drop what has been read: the element and every finished sibling before it.
        if elem.getparent() is not None and elem.getparent().tag == "valgrindoutput":
            elem.clear()
            while elem.getprevious() is not None:
                del elem.getparent()[0]

    def run(self, stream) -> None:
        events = etree.iterparse(
            stream,
            events=("end",),
            tag=_TAGS,
            resolve_entities=False,
            load_dtd=False,
            no_network=True,
            huge_tree=False,
            remove_comments=True,
            remove_blank_text=True,
        )
        for _event, elem in events:
            self.handle(elem)


def _creation_site(frames: tuple[Frame, ...]) -> tuple[Frame, ...]:
    """The program's part of a thread's creation stack: what lies below pthread_create (the
    frames above it, clone and libc's own, are the same for every thread)."""
    last = max((i for i, fr in enumerate(frames) if fr.function and fr.function.startswith("pthread_create")),
               default=-1)
    return frames[last + 1:]


def _aux_label(text: str) -> str:
    if "free'd" in text:
        return "freed"
    if "alloc'd" in text:  # memcheck's "Address .. alloc'd", helgrind's "Block was alloc'd by thread #1"
        return "allocated"
    # helgrind's words (hg_errors.c)
    if "conflicts with a previous" in text:
        return "previous access"
    if text.startswith("Required order was established"):
        return "required order"
    if "later acquisition" in text:
        return "later acquisition"
    if text.startswith("Lock at") and "first observed" in text:
        return "lock first observed"
    if text.startswith("Lock was previously acquired"):
        return "previous acquisition"
    return "auxiliary"


def _category(kind: str, what: str, aux_texts: list[str]) -> str:
    simple = _SIMPLE_CATEGORIES.get(kind)
    if simple:
        return simple
    block = next((m for m in map(_BLOCK.search, aux_texts) if m), None)
    if kind in ("InvalidRead", "InvalidWrite"):
        if block and block.group(2) == "inside" and block.group(3) == "free'd":
            return "use-after-free"
        if block and block.group(2) != "inside":
            return "buffer-overflow"
        # An address in no block valgrind knows (NULL plus an offset, a wild pointer): the
        # sanitizers call the same access a READ or WRITE SEGV, and so do we.
        return "invalid-read" if kind == "InvalidRead" else "invalid-write"
    if kind == "InvalidFree":
        # A second free hands back the block's own start; an interior or unknown address is
        # a bad free, as ASan's bad-free.
        if block and block.group(3) == "free'd" and block.group(2) == "inside" and _int(block.group(1)) == 0:
            return "double-free"
        return "invalid-free"
    if kind == "SyscallParam":
        return "uninitialized" if "uninitialised" in what else "invalid-read"
    return "other"


_ROOT = re.compile(rb"<valgrindoutput[\s>]")
_DTD = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)


def sniff(head: bytes) -> bool:
    """True when the first bytes of a file look like valgrind's XML."""
    return bool(_ROOT.search(head[:8192]))


def parse_valgrind_xml(path: str, tool_name: str | None = None) -> ValgrindLog:
    """Read one valgrind XML file.  Raises ParseError when it is not one at all; a file
    that is one but is cut short or damaged gives what could be read, marked partial."""
    path = str(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(8192)
    except OSError as exc:
        raise ParseError(path, f"cannot read: {exc.strerror or exc}") from None
    if not head.strip():
        raise ParseError(path, "empty file (the program may have been killed before valgrind wrote anything)")
    root_at = _ROOT.search(head)
    dtd = _DTD.search(head)
    if dtd and (root_at is None or dtd.start() < root_at.start()):
        raise ParseError(path, "refused: the XML declares a DTD or entities, which valgrind never writes")
    if root_at is None:
        raise ParseError(path, "not a valgrind XML file (no <valgrindoutput> element)")

    parser = _Parser(path, tool_name)
    problems: list[str] = []
    try:
        with open(path, "rb") as fh:
            parser.run(fh)
    except etree.XMLSyntaxError as exc:
        message = str(exc)
        if "UTF-8" in message or "Char 0x" in message or "encoding" in message.lower():
            # Stray bytes in a symbol name: read again, replacing them.
            parser = _Parser(path, tool_name)
            problems.append("invalid UTF-8 replaced")
            try:
                with open(path, "rb") as fh:
                    parser.run(_Utf8Repair(fh))
            except etree.XMLSyntaxError as exc2:
                problems.append(f"XML error: {exc2}")
        else:
            problems.append(f"XML error: {message}")
    except OSError as exc:
        problems.append(f"read error: {exc}")

    info = parser.info
    findings = parser.findings
    counts = info["error_counts"]
    if counts:
        for unique, count in counts.items():
            index = parser.by_unique.get(unique)
            if index is not None and count > 1:
                findings[index] = dataclasses.replace(findings[index], count=count)
    protocol = info.get("protocolversion")
    if protocol is not None and protocol not in SUPPORTED_PROTOCOLS:
        problems.append(f"protocol version {protocol} is not one of {SUPPORTED_PROTOCOLS}; read as best could")
    problems.extend(info.get("problems", ()))
    partial = not parser.complete
    if partial and not any(p.startswith("XML error") for p in problems):
        problems.append("the file ends before </valgrindoutput>")
    return ValgrindLog(
        path=path,
        findings=tuple(findings),
        pid=info.get("pid"),
        ppid=info.get("ppid"),
        tool=parser.tool_name,
        protocol=protocol,
        command=info.get("command", ()),
        error_counts=counts,
        suppression_counts=info["suppression_counts"],
        fatal_signal=info.get("fatal_signal"),
        partial=partial,
        finished=bool(info.get("finished")),
        problems=tuple(problems),
    )
