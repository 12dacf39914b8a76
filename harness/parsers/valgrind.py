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
from ..findings import CATEGORIES, AuxStack, Finding, Frame, fields_of, make_signature, new_finding, significant_frames

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
         "protocolversion", "argv", "vargv", "status", "announcethread", "valgrindoutput")


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
    options: tuple[str, ...] = ()  # valgrind's options, as it took them (<vargv>)
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
        return int(text, base)  # valgrind's own numbers: no commas, no spaces
    except ValueError:
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


class _Slices(io.RawIOBase):
    """Byte ranges of a file read one after the other as one stream, then `trailer`: a part of
    a valgrind file that lxml reads as a whole one (its head and a run of its errors)."""

    def __init__(self, raw: BinaryIO, slices: tuple[tuple[int, int], ...], trailer: bytes = b""):
        self._raw = raw
        self._left = list(slices)
        self._trailer = trailer
        self._at: tuple[int, int] | None = None
        self.name = getattr(raw, "name", None)  # what lxml's messages call the file, as for the file itself

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = size if size and size > 0 else 1 << 16
        while self._at is None and self._left:
            start, end = self._left.pop(0)
            if end > start:
                self._raw.seek(start)
                self._at = (start, end)
        if self._at is None:
            trailer, self._trailer = self._trailer, b""
            return trailer
        start, end = self._at
        chunk = self._raw.read(min(size, end - start))
        if not chunk:  # the file is shorter than it was: what is left of it is what there is
            self._at, self._left = None, []
            return self.read(size)
        self._at = (start + len(chunk), end) if start + len(chunk) < end else None
        return chunk


_CACHED = 500_000  # frames and stacks kept for sharing, at most (bounded memory)


class _Parser:
    def __init__(self, path: str, tool_name: str | None, counts: dict[str, int] | None = None):
        self.path = path
        self.tool_name = tool_name
        self.emitted = 0  # findings handed out so far
        self.fields = False  # hand out each finding as the tuple of its fields (make_finding)
        self.by_unique: dict[str, int] | None = None  # unique -> ordinal, when asked for (read_all)
        self.counts = counts or {}  # <errorcounts> read ahead (counts_ahead): unique -> times seen
        self.info: dict = {"error_counts": {}, "suppression_counts": {}}
        self.frames: dict[tuple, Frame] = {}  # identical frames are shared: big files repeat them
        self.stacks: dict[tuple, tuple[Frame, ...]] = {}  # ips of a whole stack -> its frames, shared
        self.shared: set[int] = set()  # ids of the stacks in self.stacks
        self.signatures: dict[tuple, str] = {}  # (category, id of a shared stack) -> signature
        self.strings: dict[str, str] = {}
        self.threads: dict[int, tuple[Frame, ...]] = {}  # helgrind: thread number -> creation stack
        self.complete = False
        self.cgo = False  # a frame of a cgo call was read (its finding's frames get named: parsers.name_cgo_frames)

    # -- elements ---------------------------------------------------------------------------
    def frame(self, elem) -> Frame:
        values = {c.tag: c.text for c in elem}
        fn, d, f = values.get("fn"), values.get("dir"), values.get("file")
        # Paths, objects and names repeat across frames at different addresses: keep one copy.
        strings = self.strings
        path = f"{d}/{f}" if d and f else f
        if fn and "_Cfunc_" in fn:
            self.cgo = True
        return Frame(
            address=_int(values.get("ip"), 16),
            function=strings.setdefault(fn, fn) if fn else fn,
            file=strings.setdefault(path, path) if path else path,
            line=_int(values.get("line")),
            object=strings.setdefault(values.get("obj"), values.get("obj")) if values.get("obj") else None,
        )

    def stack(self, elem) -> tuple[Frame, ...]:
        # Frames repeat across errors: within one process an address always stands for the
        # same chain of (inlined) frames, so the sequence of a stack's ips (valgrind writes each
        # frame's <ip> first) names the whole stack, and reading them is cheap.  Equal stacks are
        # then one tuple: their signature and their JSON are made once.
        try:
            ips = tuple([fr[0].text for fr in elem])
        except IndexError:  # an empty <frame>: not valgrind's; read frame by frame
            return self.frames_of(elem)
        found = self.stacks.get(ips)
        if found is None:
            found = self.frames_of(elem)
            if len(self.stacks) < _CACHED and all(fr[0].tag == "ip" for fr in elem):
                self.stacks[ips] = found
                self.shared.add(id(found))
        return found

    def frames_of(self, elem) -> tuple[Frame, ...]:
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
                if len(cache) < _CACHED:
                    cache[key] = frame
            frames.append(frame)
        return tuple(frames)

    def signature(self, category: str, stack: tuple[Frame, ...]) -> str:
        """Signatures by stack identity: equal stacks are one shared tuple, kept alive by the
        stack cache (so its id stays its own); any other stack is named afresh."""
        if id(stack) not in self.shared:
            return make_signature(category, stack)
        key = (category, id(stack))
        sig = self.signatures.get(key)
        if sig is None:
            sig = self.signatures[key] = make_signature(category, stack)
        return sig

    def error(self, elem) -> Finding | None:
        kind = what = unique = tid = None
        leak_text = None
        leaked_bytes = leaked_blocks = None
        main_stack: tuple[Frame, ...] | None = None
        # Made when first needed (most errors, leak records, have none of them).
        aux: list[AuxStack] | None = None
        aux_texts: list[str] | None = None
        pending_label: str | None = None
        notes: list[str] | None = None  # words with no stack of their own ("Address .. inside data symbol ..")
        thread_ids: list[int] | None = None  # helgrind: the threads the error names, in order
        stacks = self.stacks
        for child in elem:
            tag = child.tag
            if tag == "stack":
                try:  # a stack seen before, by its ips (the common case, as self.stack does)
                    frames = stacks.get(tuple([fr[0].text for fr in child]))
                except IndexError:
                    frames = None
                if frames is None:
                    frames = self.stack(child)
                if main_stack is None:
                    main_stack = frames
                else:
                    text = pending_label or ""
                    if aux is None:
                        aux = []
                    aux.append(AuxStack(_aux_label(text), frames, text))
                    if notes and notes[-1] == text:
                        notes.pop()
                    pending_label = None
            elif tag == "kind":
                kind = child.text
            elif tag == "unique":
                unique = child.text
            elif tag == "tid":
                try:
                    tid = int(child.text)  # as valgrind writes it; anything else through _int
                except (TypeError, ValueError):
                    tid = _int(child.text)
            elif tag == "xwhat" or tag == "xauxwhat":
                text = None
                for part in child:  # one pass over <text>, <leakedbytes>, <leakedblocks>, <hthreadid>
                    ptag = part.tag
                    if ptag == "text":
                        if text is None:
                            text = part.text or ""
                    elif ptag == "leakedbytes":
                        if leaked_bytes is None and tag == "xwhat":
                            try:
                                leaked_bytes = int(part.text)
                            except (TypeError, ValueError):
                                leaked_bytes = _int(part.text)
                    elif ptag == "leakedblocks":
                        if leaked_blocks is None and tag == "xwhat":
                            try:
                                leaked_blocks = int(part.text)
                            except (TypeError, ValueError):
                                leaked_blocks = _int(part.text)
                    elif ptag == "hthreadid":
                        number = _int(part.text)
                        if thread_ids is None:
                            thread_ids = []
                        if number is not None and number not in thread_ids:
                            thread_ids.append(number)
                text = text or ""
                if tag == "xwhat":
                    what = leak_text = text
                else:
                    aux_texts = (aux_texts or []) + [text]
                    pending_label = text
            elif tag == "what":
                # helgrind's PthAPIerror says it in two parts: <xwhat> "Thread #1's call to
                # pthread_mutex_lock failed", then <what> "with error code 35 (EDEADLK: ...)".
                what = f"{what} {child.text or ''}".strip() if what else child.text
            elif tag == "auxwhat":
                text = child.text or ""
                aux_texts = (aux_texts or []) + [text]
                notes = (notes or []) + [text]
                pending_label = text
        if kind is None:
            self.info.setdefault("problems", []).append("an <error> without <kind> was skipped")
            return None
        if kind in _HELGRIND_KINDS:
            # Where the threads came from, as helgrind's text output shows it: which worker raced
            # is often the whole story.  The root thread (#1) has no creation stack.
            for number in thread_ids or ():
                created = self.threads.get(number)
                if created:
                    aux = (aux or []) + [AuxStack("thread created", created, f"Thread #{number} was created")]
        if notes and what:
            # What valgrind says of the address with no stack of its own, part of the message as it
            # is of valgrind's text: the variable helgrind saw raced on ("Address 0x.. is 0 bytes
            # inside data symbol "counter""), where memcheck's access went ("Address 0x0 is not
            # stack'd, malloc'd or (recently) free'd").
            what = "; ".join([what, *notes])
        count = self.counts.get(unique, 1) if unique is not None and self.counts else 1
        helgrind = kind in _HELGRIND_KINDS
        finding = self.make_finding(kind, what or "", aux_texts or (), main_stack or (), tuple(aux) if aux else (),
                                    tid, leak_text, leaked_bytes, leaked_blocks, count,
                                    fields=self.fields and not helgrind)
        if helgrind and not significant_frames(finding.stack):
            # "Exiting thread still holds 1 lock" is reported at the thread's end, whose stack is
            # start_thread and clone only: the thread is named by where it was created instead.
            created = _creation_site(next((a.frames for a in finding.aux_stacks
                                           if a.label == "thread created"), ()))
            if significant_frames(created):
                finding = dataclasses.replace(finding, signature=self.signature(finding.category, created))
        if unique is not None and self.by_unique is not None:
            self.by_unique[unique] = self.emitted
        self.emitted += 1
        if self.fields and helgrind:
            return fields_of(finding)
        return finding

    def make_finding(self, kind, what, aux_texts, stack, aux, tid, leak_text, leaked_bytes,
                     leaked_blocks, count=1, fields: bool = False) -> Finding | tuple:
        """The Finding; with `fields`, the tuple of its fields in order (findings.new_finding's),
        for a stream whose every finding is written at once and dropped (parse's JSON)."""
        leak_kind = _LEAK_KINDS.get(kind)
        nbytes = indirect = 0
        if leak_kind:
            category = "leak"
            nbytes, indirect = leaked_bytes or 0, 0
            if leak_text and " direct, " in leak_text:  # "N (D direct, I indirect) bytes in ..."
                m = _LEAK_TEXT.match(leak_text)
                if m and m.group(2) is not None:
                    nbytes, indirect = _int(m.group(2)), _int(m.group(3))
        else:
            category = _category(kind, what, aux_texts)
        signature = self.signatures.get((category, id(stack))) if id(stack) in self.shared else None
        values = (self.tool_name or "memcheck", kind, category, what, leak_kind,
                  nbytes if leak_kind else None, indirect or 0, leaked_blocks if leak_kind else None,
                  stack, aux, self.info.get("pid"), tid, count if count > 1 else 1, self.path,
                  signature or self.signature(category, stack), None)
        if fields and category in CATEGORIES:
            return values
        return new_finding(*values)

    def fatal_signal(self, elem) -> Finding | tuple:
        name = elem.findtext("signame") or f"signal {elem.findtext('signo')}"
        stack_elem = elem.find("stack")
        stack = self.stack(stack_elem) if stack_elem is not None else ()
        addr = elem.findtext("siaddr")
        self.info["fatal_signal"] = name
        self.emitted += 1
        found = Finding(
            tool=self.tool_name or "memcheck",
            kind=f"FatalSignal:{name}",
            category="crash",
            message=f"Process terminating with {name}" + (f" at address {addr}" if addr else ""),
            stack=stack,
            pid=self.info.get("pid"),
            thread=_int(elem.findtext("tid")),
            source=self.path,
        )
        return fields_of(found) if self.fields else found

    def handle(self, elem) -> Finding | None:
        tag = elem.tag
        found = None
        if tag == "error":
            found = self.error(elem)
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
            found = self.fatal_signal(elem)
        elif tag == "announcethread":
            number = _int(elem.findtext("hthreadid"))
            stack_elem = elem.find("stack")
            if number is not None and stack_elem is not None and len(self.threads) < _MAX_THREADS:
                self.threads[number] = self.stack(stack_elem)
        elif tag == "argv":
            self.info["command"] = tuple((c.text or "") for c in elem if c.tag in ("exe", "arg"))
        elif tag == "vargv":  # valgrind's own options: its rc files' and VALGRIND_OPTS's, then the command line's
            self.info["options"] = tuple((c.text or "") for c in elem if c.tag == "arg")
        elif tag in ("pid", "ppid", "protocolversion"):
            self.info[tag] = _int(elem.text)
        elif tag == "tool":
            self.info["tool"] = self.tool_name = (elem.text or "").strip() or None
        elif tag == "status":
            if (elem.findtext("state") or "").strip() == "FINISHED":
                self.info["finished"] = True
        elif tag == "valgrindoutput":
            self.complete = True
            return None
        # Drop what has been read: the element and every finished sibling before it.
        parent = elem.getparent()
        if parent is not None and parent.tag == "valgrindoutput":
            elem.clear()
            while elem.getprevious() is not None:
                del parent[0]
        return found

    def run(self, stream):
        """The findings, one by one, as the file is read."""
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
        handle, error = self.handle, self.error
        for _event, elem in events:
            if elem.tag == "error":  # most of a file: handled here, the rest by handle()
                found = error(elem)
                parent = elem.getparent()
                if parent is not None and parent.tag == "valgrindoutput":
                    elem.clear()
                    while elem.getprevious() is not None:
                        del parent[0]
            else:
                found = handle(elem)
            if found is not None:
                yield found


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
_COMMENT = re.compile(rb"<!--.*?(?:-->|$)", re.S)  # a comment, or one not closed within the prolog read
_PROLOG_MAX = 1 << 16  # valgrind's own prolog is one line: its root element comes within this


def sniff(head: bytes) -> bool:
    """True when the first bytes of a file look like valgrind's XML."""
    return bool(_ROOT.search(head[:8192]))


_COUNTS_PAIR = re.compile(rb"<pair>\s*<count>\s*(\d+)\s*</count>\s*<unique>\s*(0x[0-9a-fA-F]+)\s*</unique>\s*</pair>")


def counts_ahead(path: str, chunk: int = 1 << 20) -> dict[str, int]:
    """The <errorcounts> valgrind writes once, after its last error, read from the end of the
    file before the errors are: so each finding gets how many times it was seen as it is read,
    and none need be held until the end.  {} when there is none after the last error (a file
    cut short).  What the parse itself then reads is compared with this (ValgrindStream)."""
    with open(path, "rb") as fh:
        end = fh.seek(0, 2)
        tail = b""
        while end > 0:
            start = max(0, end - chunk)
            fh.seek(start)
            tail = fh.read(end - start) + tail
            end = start
            close = tail.rfind(b"</errorcounts>")
            last_error = tail.rfind(b"</error>")
            if last_error > close:
                return {}  # an error after any counts: none were written after the last error
            if close >= 0:
                begin = tail.rfind(b"<errorcounts>", 0, close)
                if begin >= 0:
                    return {unique.decode(): int(count) for count, unique in
                            _COUNTS_PAIR.findall(tail, begin, close) if len(count) <= 18 and int(count)}
    return {}


class ValgrindStream:
    """One valgrind XML file as a stream: iterating gives its findings one by one as the file is
    read, none kept (so a file of any size takes bounded memory); afterwards `log` holds the
    rest of what the file says (findings left out) and `found` how many there were.  Raises
    ParseError at once when the file is not valgrind's XML at all."""

    def __init__(self, path: str, tool_name: str | None = None, index: bool = False, fields: bool = False,
                 part: "Part | None" = None):
        """fields: each finding handed out as the tuple of its fields (findings.fields_of), for a
        caller that writes it at once (parse's JSON): no Finding object made.  part: read only
        that part of the file (halves())."""
        self.path = path = str(path)
        self.tool_name = tool_name
        self.index = index
        self.fields = fields
        self.part = part
        try:
            with open(path, "rb") as fh:
                head = fh.read(_PROLOG_MAX)
        except OSError as exc:
            raise ParseError(path, f"cannot read: {exc.strerror or exc}") from None
        if not head.strip():
            raise ParseError(path, "empty file (the program may have been killed before valgrind wrote anything)")
        # The root element as the parser meets it: not one written inside a comment, behind which
        # a DOCTYPE could come unseen (lxml is told to expand nothing either way).
        prolog = _COMMENT.sub(b"", head)
        root_at = _ROOT.search(prolog)
        dtd = _DTD.search(prolog)
        if dtd and (root_at is None or dtd.start() < root_at.start()):
            raise ParseError(path, "refused: the XML declares a DTD or entities, which valgrind never writes")
        if root_at is None:
            raise ParseError(path, "not a valgrind XML file (no <valgrindoutput> element)")
        try:
            self.ahead = counts_ahead(path)
        except OSError as exc:
            raise ParseError(path, f"cannot read: {exc.strerror or exc}") from None
        self.parser: _Parser | None = None
        self.problems: list[str] = []
        self.log: ValgrindLog | None = None
        self.found = 0

    def _parser(self) -> _Parser:
        parser = _Parser(self.path, self.tool_name, self.ahead)
        parser.fields = self.fields
        if self.index:
            parser.by_unique = {}
        return parser

    def _open(self, fh):
        part = self.part
        return fh if part is None else _Slices(fh, part.slices, part.trailer)

    def __iter__(self):
        problems = self.problems
        parser = self.parser = self._parser()
        try:
            with open(self.path, "rb") as fh:
                yield from parser.run(self._open(fh))
        except etree.XMLSyntaxError as exc:
            message = str(exc)
            if "UTF-8" in message or "Char 0x" in message or "encoding" in message.lower():
                # Stray bytes in a symbol name: read again, replacing them; what was handed out
                # already is the same, and is not handed out twice.
                given = parser.emitted
                parser = self.parser = self._parser()
                problems.append("invalid UTF-8 replaced")
                try:
                    with open(self.path, "rb") as fh:
                        for n, finding in enumerate(parser.run(_Utf8Repair(self._open(fh)))):
                            if n >= given:
                                yield finding
                except etree.XMLSyntaxError as exc2:
                    problems.append("XML error: " + " ".join(str(exc2).split()))
            else:
                problems.append("XML error: " + " ".join(str(message).split()))
        except OSError as exc:
            problems.append(f"read error: {exc}")
        self.found = parser.emitted
        self.log = self._finish(parser)

    def _finish(self, parser: _Parser) -> ValgrindLog:
        info = parser.info
        problems = self.problems
        counts = info["error_counts"]
        # A first part's end is made up (halves()): unless the file broke off before it, its
        # counts are in the last part.
        made_up_end = self.part is not None and not self.part.last and parser.complete
        if counts != self.ahead and not self.index and not made_up_end:
            problems.append("the <errorcounts> read ahead of the errors is not the one the file holds: the "
                            "findings' counts (how many times each was seen) may be wrong")
        protocol = info.get("protocolversion")
        if protocol is not None and protocol not in SUPPORTED_PROTOCOLS:
            problems.append(f"protocol version {protocol} is not one of {SUPPORTED_PROTOCOLS}; read as best could")
        problems.extend(info.get("problems", ()))
        partial = not parser.complete
        if partial and not any(p.startswith("XML error") for p in problems):
            problems.append("the file ends before </valgrindoutput>")
        return ValgrindLog(
            path=self.path,
            findings=(),
            pid=info.get("pid"),
            ppid=info.get("ppid"),
            tool=parser.tool_name,
            protocol=protocol,
            command=info.get("command", ()),
            options=info.get("options", ()),
            error_counts=counts,
            suppression_counts=info["suppression_counts"],
            fatal_signal=info.get("fatal_signal"),
            partial=partial,
            finished=bool(info.get("finished")),
            problems=tuple(problems),
        )


@dataclass(frozen=True)
class Part:
    """A part of a valgrind file read as a whole file: its byte ranges, then `trailer`."""

    slices: tuple[tuple[int, int], ...]
    trailer: bytes = b""
    last: bool = True  # the part that holds the file's end (its counts, its status, its cut)


HALVES_MIN_BYTES = 2 << 20  # below this a second process saves little (2,000 errors, 2.8 MB: 0.11 -> 0.10 s)
_ERROR_START = re.compile(rb"\n<error>")
_MEMCHECK_TOOL = re.compile(rb"<tool>\s*memcheck\s*</tool>")


def halves(path: str, min_bytes: int = HALVES_MIN_BYTES) -> tuple[Part, Part] | None:
    """A big memcheck file as two parts that lxml can read apart (two processes, one each): its
    head and errors up to one that starts past the middle (closed by a made-up end), and its head
    with the errors from there on to the file's end.  Each error is read in exactly one part, and
    a frame's, a stack's and a count's meaning never reach from one error to another in memcheck's
    files (helgrind's do: a thread announced early, named later), so the two give the findings
    the whole file gives, in order.  None for a small file, another tool's, or no such error."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            if size < min_bytes:
                return None
            fh.seek(0)
            head = fh.read(1 << 16)
            first = _ERROR_START.search(head)
            if first is None or not _MEMCHECK_TOOL.search(head, 0, first.start()) or _DTD.search(head):
                return None
            fh.seek(size // 2)
            window = fh.read(4 << 20)
    except OSError:
        return None
    middle = _ERROR_START.search(window)
    if middle is None:
        return None
    preamble_end, split = first.start() + 1, size // 2 + middle.start() + 1
    if split <= preamble_end:
        return None
    return (Part(((0, split),), b"</valgrindoutput>\n", last=False),
            Part(((0, preamble_end), (split, size))))


def join_parts(first: ValgrindLog, last: ValgrindLog) -> ValgrindLog:
    """What the whole file says, from what its two parts (halves()) said: the head's facts are
    in both; the counts, the cut and the file's own end in the last; a status or a fatal signal
    in either."""
    return dataclasses.replace(
        last,
        fatal_signal=last.fatal_signal or first.fatal_signal,
        finished=last.finished or first.finished,
        problems=tuple(dict.fromkeys(first.problems + last.problems)),
    )


def parse_valgrind_xml(path: str, tool_name: str | None = None) -> ValgrindLog:
    """Read one valgrind XML file.  Raises ParseError when it is not one at all; a file
    that is one but is cut short or damaged gives what could be read, marked partial."""
    stream = ValgrindStream(path, tool_name, index=True)
    findings = list(stream)
    parser, log = stream.parser, stream.log
    counts = log.error_counts
    if counts != stream.ahead:  # not what was read ahead (a file not as valgrind writes them): the file's own
        for unique, index in parser.by_unique.items():
            count = counts.get(unique, 1)
            if findings[index].count != max(count, 1):
                findings[index] = dataclasses.replace(findings[index], count=max(count, 1))
    return dataclasses.replace(log, findings=tuple(findings))
