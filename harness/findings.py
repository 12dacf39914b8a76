"""The finding model: one vocabulary for what valgrind and the sanitizers report.

Every parser produces Findings; every later stage (judge, report) reads only Findings.
A Finding is frozen and carries its own signature, a stable name for the bug that is the
same across runs, addresses and tools.  The rules that make signatures and pick frames are
in heuristics.py.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

# The rules that name bugs and pick frames (signatures.py); parsers import them from there.
from .signatures import (RULES, make_signature, own_frame_of, signature_stack, signature_stem, significant_frames,
                         split_signature)

CATEGORIES = (
    "leak",
    "use-after-free",
    "double-free",
    "invalid-free",
    "mismatched-free",
    "invalid-read",
    "invalid-write",
    "buffer-overflow",
    "uninitialized",
    "data-race",
    # Two locks taken in opposite orders (helgrind's LockOrder, TSan's lock-order-inversion): a
    # deadlock waiting for the wrong interleaving, reported even when this run never deadlocked.
    "lock-order",
    "undefined-behavior",
    "crash",
    "secret-residue",
    "other",
)

# Leak kinds, in valgrind's order of severity.  LSan's "Direct"/"Indirect" map to the first two.
LEAK_KINDS = ("definite", "indirect", "possible", "reachable")
# The leak kinds that are bugs: "possible" and "reachable" memory is still pointed to.
LOST_KINDS = frozenset({"definite", "indirect"})


@dataclass(frozen=True, slots=True)
class Frame:
    """One stack frame.  Only the address is (almost) always known; TSan prints none."""

    address: int | None = None
    function: str | None = None
    file: str | None = None
    line: int | None = None
    object: str | None = None  # the executable or shared library
    offset: int | None = None  # the address relative to `object`, when the tool prints it

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": None if self.address is None else hex(self.address),
            "function": self.function,
            "file": self.file,
            "line": self.line,
            "object": self.object,
            "offset": None if self.offset is None else hex(self.offset),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Frame":
        def num(v):
            return None if v is None else int(v, 16) if isinstance(v, str) else int(v)

        return cls(
            address=num(data.get("address")),
            function=data.get("function"),
            file=data.get("file"),
            line=data.get("line"),
            object=data.get("object"),
            offset=num(data.get("offset")),
        )

    def describe(self) -> str:
        """`func file.c:12`, or whatever part of that is known."""
        where = ""
        if self.file:
            where = os.path.basename(self.file) + (f":{self.line}" if self.line else "")
        elif self.object:
            where = os.path.basename(self.object)
            if self.offset is not None:
                where += f"+{self.offset:#x}"
        name = self.function or (f"{self.address:#x}" if self.address is not None else "??")
        return f"{name} {where}".strip()


@dataclass(frozen=True, slots=True)
class AuxStack:
    """A second stack of a finding: where the block was freed, or allocated."""

    label: str  # "freed", "allocated", "previous access", "thread created", ...
    frames: tuple[Frame, ...]
    text: str = ""  # the tool's own words for it

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "text": self.text, "frames": [f.to_dict() for f in self.frames]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AuxStack":
        return cls(
            label=data["label"],
            text=data.get("text", ""),
            frames=tuple(Frame.from_dict(f) for f in data.get("frames", ())),
        )


@dataclass(frozen=True, slots=True)
class Finding:
    """One error or leak record as one tool reported it.

    For leaks, `bytes` and `blocks` are the record's own blocks: for a definite leak the
    directly lost bytes, for an indirect one the indirectly lost bytes.  `indirect_bytes` is
    what valgrind adds on top for a definite record (memory lost only through it).  So the sum
    of `bytes` over a run's definite and indirect records is the total lost memory, the same
    number from valgrind and from LeakSanitizer.
    """

    tool: str  # the tool that reported it, as its log names it: memcheck, asan, lsan, ubsan, tsan, helgrind, ...
    kind: str  # the tool's own name: "Leak_DefinitelyLost", "heap-use-after-free", ...
    category: str  # one of CATEGORIES
    message: str = ""
    leak_kind: str | None = None  # one of LEAK_KINDS, for leaks
    bytes: int | None = None
    indirect_bytes: int = 0
    blocks: int | None = None
    stack: tuple[Frame, ...] = ()
    aux_stacks: tuple[AuxStack, ...] = ()
    pid: int | None = None
    thread: int | None = None
    count: int = 1  # how many times the tool saw this same error
    source: str | None = None  # the log file it came from
    signature: str = field(default="")
    suppressed: str | None = None  # the name of the suppression it matched: counted, not failing

    def __post_init__(self):
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown category {self.category!r}")
        if not self.signature:
            object.__setattr__(self, "signature", make_signature(self.category,
                                                                 signature_stack(self.stack, self.aux_stacks)))

    @property
    def is_lost_leak(self) -> bool:
        return self.category == "leak" and self.leak_kind in LOST_KINDS

    @property
    def is_error(self) -> bool:
        """A bug to fail on: any memory error, or a definite or indirect leak, not suppressed."""
        # One expression, not is_lost_leak's property: every output asks this of every finding.
        return not self.suppressed and (self.category != "leak" or self.leak_kind in LOST_KINDS)

    def functions(self) -> list[str]:
        return [f.function for f in self.stack if f.function]

    def to_dict(self, stacks: bool = True) -> dict[str, Any]:
        data = {
            "tool": self.tool,
            "kind": self.kind,
            "category": self.category,
            "message": self.message,
            "leak_kind": self.leak_kind,
            "bytes": self.bytes,
            "indirect_bytes": self.indirect_bytes,
            "blocks": self.blocks,
            "pid": self.pid,
            "thread": self.thread,
            "count": self.count,
            "source": self.source,
            "signature": self.signature,
            "suppressed": self.suppressed,
        }
        if stacks:
            data["stack"] = [f.to_dict() for f in self.stack]
            data["aux_stacks"] = [a.to_dict() for a in self.aux_stacks]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], rules: str | None = None,
                  frames: list[dict] | None = None) -> "Finding":
        """`rules`: the signatures.RULES the stored signature was made under; when they are
        today's, the signature is kept as stored instead of its frames being named again.
        `frames`: a table of frames the stacks name by index (the result cache's form)."""
        names = _NAMES
        kwargs = {k: v for k, v in data.items() if k in names}
        if frames is not None:
            def stack(indices):
                if not isinstance(indices, list) or not all(type(i) is int and i >= 0 for i in indices):
                    raise ValueError("a stack of the frame table is not a list of indices")
                return _stack_of([frames[i] for i in indices])
        else:
            stack = _stack_of
        kwargs["stack"] = stack(data.get("stack", []))
        kwargs["aux_stacks"] = tuple(AuxStack(label=a["label"], text=a.get("text", ""),
                                              frames=stack(a.get("frames", [])))
                                     for a in data.get("aux_stacks", ()))
        # The frames of the signature are named again, not read: results written by an older
        # leakharness (or kept in the result cache) then group the same way as new ones.  The
        # line hash is kept as it was made at the run: the source may have changed or be gone.
        stored = data.get("signature")
        if rules is not None and rules == RULES and isinstance(stored, str) and stored:
            kwargs["signature"] = stored
            return cls(**kwargs)
        _, stored_hash = split_signature(stored or "")
        named_by = signature_stack(kwargs["stack"], kwargs["aux_stacks"])
        if not stored_hash:
            stem = None
        elif named_by is kwargs["stack"]:
            stem = _stem_of(kwargs.get("category"), named_by)
        else:  # a leak through cgo named by its Go caller: a stack of its own, not shared
            stem = signature_stem(kwargs.get("category"), named_by) if own_frame_of(named_by) is not None else None
        kwargs["signature"] = f"{stem}@{stored_hash}" if stem is not None else ""
        return cls(**kwargs)

    def summary(self, where: str | None = None) -> str:
        """One line: category, size, and the first frames that are the program's own (`where`:
        what self.where() gives, when the caller has it already)."""
        what = self.category
        if self.category == "leak":
            what = f"leak ({self.leak_kind})" if self.leak_kind else "leak"
            if self.bytes is not None:
                extra = f" + {self.indirect_bytes} indirect" if self.indirect_bytes else ""
                what += f" {self.bytes} B{extra} in {self.blocks or 0} block(s)"
        frames = self.where() if where is None else where
        return f"[{self.tool}] {what}" + (f" at {frames}" if frames else "")

    def where(self, depth: int = 3) -> str:
        """The top frames that say something (allocator and wrapper frames left out); for a leak
        through cgo, with its recorded Go caller's frames past the stack switch (signature_stack)."""
        stack = signature_stack(self.stack, self.aux_stacks)
        return " < ".join(f.describe() for f in significant_frames(stack)[:depth])


_NAMES = frozenset(f.name for f in dataclasses.fields(Finding))


def fields_of(f: Finding) -> tuple:
    """A finding's fields in order (new_finding's), the form a stream writer takes as well."""
    return (f.tool, f.kind, f.category, f.message, f.leak_kind, f.bytes, f.indirect_bytes, f.blocks, f.stack,
            f.aux_stacks, f.pid, f.thread, f.count, f.source, f.signature, f.suppressed)
# Frames and stacks read back (results.json, the result cache) are shared by value, as the parsers
# share them: a catalog's results repeat the same OpenSSL frames thousands of times.
_SHARED_MAX = 200_000
_frames_read: dict[tuple, Frame] = {}
_stacks_read: dict[tuple, tuple[Frame, ...]] = {}


def _stack_of(raw_frames) -> tuple[Frame, ...]:
    frames = []
    for raw in raw_frames:
        key = (raw.get("address"), raw.get("function"), raw.get("file"), raw.get("line"), raw.get("object"),
               raw.get("offset"))
        frame = _frames_read.get(key)
        if frame is None:
            if len(_frames_read) >= _SHARED_MAX:
                _frames_read.clear()
                _stacks_read.clear()
            frame = _frames_read[key] = Frame.from_dict(raw)
        frames.append(frame)
    key = tuple(map(id, frames))  # the frames are kept by _frames_read: their ids are their own
    stack = _stacks_read.get(key)
    if stack is None or any(a is not b for a, b in zip(stack, frames)):
        if len(_stacks_read) >= _SHARED_MAX:
            _stacks_read.clear()
        stack = _stacks_read[key] = tuple(frames)
    return stack


_stems: dict[tuple, tuple] = {}


def _stem_of(category, stack: tuple[Frame, ...]) -> str | None:
    """signature_stem of a stack that has an own frame, else None; once per shared stack."""
    key = (category, id(stack))
    known = _stems.get(key)
    if known is not None and known[0] is stack:
        return known[1]
    stem = signature_stem(category, stack) if own_frame_of(stack) is not None else None
    if len(_stems) >= _SHARED_MAX:
        _stems.clear()
    _stems[key] = (stack, stem)
    return stem


_FIELDS = ("tool", "kind", "category", "message", "leak_kind", "bytes", "indirect_bytes", "blocks", "stack",
           "aux_stacks", "pid", "thread", "count", "source", "signature", "suppressed")
assert _FIELDS == tuple(f.name for f in dataclasses.fields(Finding)), "new_finding's order is Finding's"


def _finding_maker():
    """new_finding's body, written out: one call of each slot's own setter (no loop, and not the
    frozen class's __setattr__, which checks and sets one field at a time)."""
    setters = {f"_set_{name}": Finding.__dict__[name].__set__ for name in _FIELDS}
    params = ", ".join(_FIELDS[:-1]) + ", suppressed=None"
    body = "\n".join(f"    _set_{name}(f, {name})" for name in _FIELDS)
    code = (f"def new_finding({params}):\n"
            f"    if category not in CATEGORIES:\n"
            f"        raise ValueError(f'unknown category {{category!r}}')\n"
            f"    if not signature:\n"
            f"        signature = make_signature(category, signature_stack(stack, aux_stacks))\n"
            f"    f = _new(Finding)\n{body}\n    return f\n")
    scope = {"CATEGORIES": CATEGORIES, "make_signature": make_signature, "signature_stack": signature_stack,
             "_new": object.__new__,
             "Finding": Finding, **setters}
    exec(code, scope)  # noqa: S102 - our own text, made from the field names above
    return scope["new_finding"]


new_finding = _finding_maker()
new_finding.__doc__ = """Finding(...) with every field given, in the order of the fields, made about twice as fast
(each slot set directly, not through the frozen class's __setattr__ one field at a time): for
the parsers of logs with tens of thousands of findings.  The same checks as Finding's."""
