"""The finding model: one vocabulary for what valgrind and the sanitizers report.

Every parser produces Findings; every later stage (judge, report) reads only Findings.
A Finding is frozen and carries its own signature, a stable name for the bug that is the
same across runs, addresses and tools (ClusterFuzz's "crash state": the category plus the
top three frames once allocator, interceptor, libc start-up and OpenSSL allocation wrapper
frames are dropped).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

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

    tool: str  # "memcheck", "asan", "lsan", "ubsan", "tsan", "helgrind", ...
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
            object.__setattr__(self, "signature", make_signature(self.category, self.stack))

    @property
    def is_lost_leak(self) -> bool:
        return self.category == "leak" and self.leak_kind in LOST_KINDS

    @property
    def is_error(self) -> bool:
        """A bug to fail on: any memory error, or a definite or indirect leak, not suppressed."""
        if self.suppressed:
            return False
        if self.category == "leak":
            return self.is_lost_leak
        return True

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
    def from_dict(cls, data: dict[str, Any]) -> "Finding":
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["stack"] = tuple(Frame.from_dict(f) for f in data.get("stack", ()))
        kwargs["aux_stacks"] = tuple(AuxStack.from_dict(a) for a in data.get("aux_stacks", ()))
        # The signature is made again, not read: results written by an older leakharness (or
        # kept in the result cache) then group the same way as new ones.
        kwargs["signature"] = ""
        return cls(**kwargs)

    def summary(self) -> str:
        """One line: category, size, and the first frames that are the program's own."""
        what = self.category
        if self.category == "leak":
            what = f"leak ({self.leak_kind})" if self.leak_kind else "leak"
            if self.bytes is not None:
                extra = f" + {self.indirect_bytes} indirect" if self.indirect_bytes else ""
                what += f" {self.bytes} B{extra} in {self.blocks or 0} block(s)"
        frames = self.where()
        return f"[{self.tool}] {what}" + (f" at {frames}" if frames else "")

    def where(self, depth: int = 3) -> str:
        """The top frames that say something (allocator and wrapper frames left out)."""
        return " < ".join(f.describe() for f in significant_frames(self.stack)[:depth])


# --- signatures -------------------------------------------------------------------------------

# Frames that say nothing about the bug: allocators and their interceptors, libc string and memory
# functions the tools replace, process start-up, and OpenSSL's allocation wrappers.
_NOISE_FUNCTIONS = frozenset(
    """
    malloc calloc realloc free reallocarray memalign posix_memalign aligned_alloc valloc pvalloc
    cfree strdup strndup wcsdup operator\x20new operator\x20new[] operator\x20delete
    operator\x20delete[] _Znwm _Znam _ZdlPv _ZdaPv _ZdlPvm _ZdaPvm
    memcpy memmove memset memcmp bcmp strlen strnlen strcpy strncpy strcat strncat strcmp strncmp
    strchr strrchr stpcpy mempcpy
    _start __libc_start_main __libc_start_main_impl __libc_start_call_main start_thread clone
    clone3 abort raise __GI_abort __GI_raise __pthread_kill_implementation __pthread_kill_internal
    CRYPTO_malloc CRYPTO_zalloc CRYPTO_realloc CRYPTO_clear_realloc CRYPTO_strdup CRYPTO_strndup
    CRYPTO_memdup CRYPTO_free CRYPTO_clear_free CRYPTO_secure_malloc CRYPTO_secure_zalloc
    CRYPTO_secure_free CRYPTO_secure_clear_free
    """.replace("\\x20", " ").split()
) | {"operator new", "operator new[]", "operator delete", "operator delete[]"}
_NOISE_PREFIXES = (
    "__interceptor_",
    "___interceptor_",
    "__asan_",
    "__lsan_",
    "__ubsan_",
    "__tsan_",
    "__sanitizer_",
    "__msan_",
    "__GI_",
    "__memcpy_",
    "__memmove_",
    "__memset_",
    "__strlen_",
    "__strcmp_",
    "__strncmp_",
    "__strcpy_",
    "__memcmp_",
    "__libc_",
    "_dl_",
    "operator new(",
    "operator delete(",
    "operator new[](",
    "operator delete[](",
)
_NOISE_OBJECTS = ("vgpreload_", "libasan.so", "libtsan.so", "libubsan.so", "liblsan.so", "libclang_rt.")


def is_noise(frame: Frame) -> bool:
    name = frame.function
    if name:
        base = name.split("(", 1)[0].strip()
        if base in _NOISE_FUNCTIONS or name.startswith(_NOISE_PREFIXES):
            return True
    obj = os.path.basename(frame.object or "")
    return bool(obj) and obj.startswith(_NOISE_OBJECTS)


def _unnamed_library_frame(frame: Frame) -> bool:
    # valgrind names such a frame by its library alone, the sanitizers by library+offset:
    # leaving it out keeps one bug's signature the same under every tool.
    return frame.function is None and ".so" in os.path.basename(frame.object or "")


def significant_frames(stack: Iterable[Frame]) -> list[Frame]:
    return [f for f in stack if not is_noise(f) and not _unnamed_library_frame(f)]


def is_library(frame: Frame) -> bool:
    """A frame of a system library or the C runtime, not of the program's own source."""
    if is_noise(frame):
        return True
    if frame.file:
        return frame.file.startswith(("..", "/usr/", "/build/")) or "sysdeps" in frame.file
    return ".so" in os.path.basename(frame.object or "")


def own_frame(finding: "Finding") -> Frame | None:
    """The program's own frame nearest the top of the stack, with a file and line: where
    to point a person (a SARIF location, a suppression's most specific name)."""
    return next((fr for fr in finding.stack if not is_library(fr) and fr.file and fr.line), None)


_SUFFIX = re.compile(r"\.(?:isra|constprop|part|cold|lto_priv)\.\d+|\.cold$")


def frame_key(frame: Frame) -> str:
    """The part of a frame that stays the same across runs and tools."""
    if frame.function:
        # gcc's clones (foo.isra.0, foo.part.1) are the same source function.
        return _SUFFIX.sub("", frame.function.split("(", 1)[0].strip())
    if frame.file:
        # UBSan names only a place; a file and line are still stable across runs.
        return f"{os.path.basename(frame.file)}:{frame.line}" if frame.line else os.path.basename(frame.file)
    if frame.object:
        base = os.path.basename(frame.object)
        return f"{base}+{frame.offset:#x}" if frame.offset is not None else base
    return "??"


def make_signature(category: str, stack: Iterable[Frame], depth: int = 3) -> str:
    frames = significant_frames(stack)[:depth]
    return category + ":" + ">".join(frame_key(f) for f in frames)
