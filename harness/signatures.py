"""Rules over frames: which say something, which are the program's own, and how a bug is
named (its signature).  Root-cause grouping of findings is grouping.py's.

These are judgement calls, kept apart from the model (findings.py) so that each rule can be
read, tested and changed on its own.  They read only a frame's attributes (function, file,
line, object, offset, address), so the model imports them and not the other way round.

Signature format (documented in README "results.json"):

    CATEGORY:FRAME>FRAME>FRAME@HASH

- FRAMEs: the top three frames once allocator, interceptor, libc start-up and OpenSSL
  allocation-wrapper frames are dropped (ClusterFuzz's "crash state"), each named by
  `frame_key`: the function (gcc clone suffixes such as `.constprop.0` removed); for a frame
  with no name, `file.c:LINE` when a place is known, else its module and offset
  (`prog+0x11f2`, as the sanitizers print it) or, for valgrind, which prints no offset, its
  module and address (`prog:0x1091f2`: valgrind maps a program at the same address every run).
  Frames below the process start-up (`(below main)`, `__libc_start_main`, `_start`) are never
  part of it.
- `@HASH`: six hex digits of the SHA-1 of the text of the source line of the program's own
  top frame (the allocation site, or the bad access), whitespace collapsed.  The text, not the
  line number: an edit elsewhere in the file moves lines without changing any signature, while
  two leaks allocated on different lines of one function get different ones.  Left out when
  there is no own frame with a file and line, or the file cannot be read.
- A Go leak through cgo named by the Go caller a leakharness build recorded is named by its
  stack with that caller's frames in place of the stack switch (signature_stack).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import stat as stat_mod
from typing import Iterable, Protocol


class FrameLike(Protocol):
    """What these rules read of a frame (findings.Frame is one)."""

    address: int | None
    function: str | None
    file: str | None
    line: int | None
    object: str | None
    offset: int | None

    def describe(self) -> str: ...

# --- frames -----------------------------------------------------------------------------------

# Frames that say nothing about the bug: allocators and their interceptors, libc string and memory
# functions the tools replace, process start-up, and OpenSSL's allocation wrappers.
NOISE_FUNCTIONS = frozenset(
    """
    malloc calloc realloc free reallocarray memalign posix_memalign aligned_alloc valloc pvalloc
    cfree strdup strndup wcsdup _Znwm _Znam _ZdlPv _ZdaPv _ZdlPvm _ZdaPvm
    memcpy memmove memset memcmp bcmp strlen strnlen strcpy strncpy strcat strncat strcmp strncmp
    strchr strrchr stpcpy mempcpy
    _start __libc_start_main __libc_start_main_impl __libc_start_call_main start_thread clone
    clone3 abort raise __GI_abort __GI_raise __pthread_kill_implementation __pthread_kill_internal
    CRYPTO_malloc CRYPTO_zalloc CRYPTO_realloc CRYPTO_clear_realloc CRYPTO_strdup CRYPTO_strndup
    CRYPTO_memdup CRYPTO_free CRYPTO_clear_free CRYPTO_secure_malloc CRYPTO_secure_zalloc
    CRYPTO_secure_free CRYPTO_secure_clear_free
    """.split()
) | {"operator new", "operator new[]", "operator delete", "operator delete[]", "(below main)"}
NOISE_PREFIXES = (
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
NOISE_OBJECTS = ("vgpreload_", "libasan.so", "libtsan.so", "libubsan.so", "liblsan.so", "libclang_rt.")
# Where a process or thread starts: frames from here down are the C runtime's, not the program's.
STARTUP_FUNCTIONS = frozenset({"(below main)", "__libc_start_main", "__libc_start_main_impl",
                               "__libc_start_call_main", "_start", "start_thread", "clone", "clone3"})


def is_noise(frame: FrameLike) -> bool:
    return _noise(frame.function, frame.object)


@functools.lru_cache(maxsize=65536)
def _noise(name: str | None, obj: str | None) -> bool:
    # By the two names it reads: every stack of a big log or of a catalog run repeats them.
    if name:
        base = name.split("(", 1)[0].strip() if "(" in name and not name.startswith("(") else name
        if base in NOISE_FUNCTIONS or name.startswith(NOISE_PREFIXES):
            return True
    obj = os.path.basename(obj or "")
    return bool(obj) and obj.startswith(NOISE_OBJECTS)


def is_startup(frame: FrameLike) -> bool:
    return frame.function in STARTUP_FUNCTIONS


def _unnamed_library_frame(frame: FrameLike) -> bool:
    # valgrind names such a frame by its library alone, the sanitizers by library+offset:
    # leaving it out keeps one bug's signature the same under every tool.
    return frame.function is None and ".so" in os.path.basename(frame.object or "")


def significant_frames(stack: Iterable[FrameLike]) -> list[FrameLike]:
    """The frames that say something, top first, up to the process start-up."""
    out = []
    for f in stack:
        if is_startup(f):
            break  # below it only the C runtime (and, stripped, `_start` by offset)
        if not is_noise(f) and not _unnamed_library_frame(f):
            out.append(f)
    return out


def is_library(frame: FrameLike) -> bool:
    """A frame of a system library or the C runtime, not of the program's own source."""
    if is_noise(frame):
        return True
    if frame.file:
        return frame.file.startswith(("..", "/usr/", "/build/")) or "sysdeps" in frame.file
    return ".so" in os.path.basename(frame.object or "")


def own_frame_of(stack: Iterable[FrameLike]) -> FrameLike | None:
    """The program's own frame nearest the top of the stack, with a file and line."""
    return next((fr for fr in stack if fr.file and fr.line and not is_library(fr)), None)


def own_frame(finding) -> FrameLike | None:
    """The program's own frame nearest the top of the finding's stack, with a file and line:
    where to point a person (a SARIF location, a suppression's most specific name).  For a leak
    through cgo, its recorded Go caller's (signature_stack)."""
    return own_frame_of(signature_stack(finding.stack, finding.aux_stacks))


GO_CALLER = "Go caller"  # the label of the aux stack a leakharness Go build recorded (parsers/go.py)
CGO_SWITCH = "runtime.asmcgocall"  # where Go 1.19's unwinders stop, as parsers/go.py names the frame


def signature_stack(stack: tuple, aux_stacks: tuple) -> tuple:
    """The frames a finding is named by: its stack; for a leak through cgo whose stack ends at
    the stack switch and whose one Go caller a leakharness build recorded, that stack with the
    Go caller's frames in place of the switch.  The same C call leaking from two Go lines is two
    bugs, each named by its own line: a `known` entry or a baseline that accepts one never
    accepts the other (they shared `leak:_Cfunc__Cmalloc>runtime.asmcgocall` before)."""
    if aux_stacks and stack and stack[-1].function == CGO_SWITCH:
        callers = [a for a in aux_stacks if a.label == GO_CALLER]
        if len(callers) == 1 and callers[0].frames:
            return tuple(stack[:-1]) + tuple(callers[0].frames)
    return stack


CLONE_SUFFIX = re.compile(r"\.(?:isra|constprop|part|cold|lto_priv)\.\d+|\.cold$")


def function_key(name: str) -> str:
    """A function's name without arguments and without gcc's clone suffixes (foo.isra.0 is foo)."""
    return CLONE_SUFFIX.sub("", name.split("(", 1)[0].strip() if not name.startswith("(") else name)


def frame_key(frame: FrameLike) -> str:
    """The part of a frame that stays the same across runs and tools."""
    if frame.function:
        return function_key(frame.function)
    if frame.file:
        # UBSan names only a place; a file and line are still stable across runs.
        return f"{os.path.basename(frame.file)}:{frame.line}" if frame.line else os.path.basename(frame.file)
    if frame.object:
        base = os.path.basename(frame.object)
        if frame.offset is not None:
            return f"{base}+{frame.offset:#x}"
        if frame.address is not None:
            return f"{base}:{frame.address:#x}"
        return base
    return "??"


# --- signatures -------------------------------------------------------------------------------

SOURCE_LIMIT = 32 << 20  # a source file bigger than this is not read for a line's text
# What these rules are, for a store of findings made under them (the result cache): while this
# file is unchanged, a stored signature is what naming its frames again would give.
RULES = hashlib.sha256(open(__file__, "rb").read()).hexdigest()[:16]
_HASH = re.compile(r"@([0-9a-f]{6})$")
class _Source:
    """One source file's lines, and the hashes of those asked for."""

    def __init__(self, lines: tuple[str, ...]):
        self.lines = lines
        self.hashes: dict[int, str] = {}
        self._occurrence: list[int] | None = None

    def occurrence(self, line: int) -> int:
        """Which occurrence of its text (whitespace collapsed) line `line` is in the file: 1 for
        the first.  Counted for the whole file once, when first asked."""
        if self._occurrence is None:
            seen: dict[str, int] = {}
            self._occurrence = []
            for text in self.lines:
                key = " ".join(text.split())
                seen[key] = seen.get(key, 0) + 1
                self._occurrence.append(seen[key])
        return self._occurrence[line - 1]


@functools.lru_cache(maxsize=256)
def _source(path: str, mtime_ns: int, size: int) -> _Source | None:
    if size > SOURCE_LIMIT:
        return None
    try:
        # A log names any path it likes: _open_source takes only a regular file, and one swapped
        # since for a FIFO or a device can neither block the open nor flood the read.
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as fh:
            data = fh.read(SOURCE_LIMIT)
    except (OSError, ValueError):
        return None
    return _Source(tuple(data.decode("utf-8", "replace").splitlines()))


def _open_source(path: str) -> _Source | None:
    # stat each time (a few microseconds): a file rewritten since is read again.
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat_mod.S_ISREG(st.st_mode):
        return None
    return _source(path, st.st_mtime_ns, st.st_size)


def source_line(path: str, line: int) -> str | None:
    """The text of line `line` of file `path`, whitespace collapsed; None when unreadable.
    Files are read once per (path, modification time, size)."""
    src = _open_source(path)
    if src is None or not 0 < line <= len(src.lines):
        return None
    return " ".join(src.lines[line - 1].split())


def line_hash(frame: FrameLike | None) -> str | None:
    """Six hex digits naming the text of a frame's source line, or None."""
    if frame is None or not frame.file or not frame.line:
        return None
    src = _open_source(frame.file)
    if src is None:
        return None
    h = src.hashes.get(frame.line)
    if h is None:
        text = source_line(frame.file, frame.line)
        if text is None:
            return None
        # The same text on an earlier line of the file (`p = malloc(32);` twice in a function): the
        # second is another bug, and its hash says which occurrence it is (the first keeps its own).
        nth = src.occurrence(frame.line) if text else 1
        if nth > 1:
            text = f"{text}#{nth}"
        h = src.hashes[frame.line] = hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:6]
    return h


def signature_stem(category: str, stack: Iterable[FrameLike], depth: int = 3) -> str:
    """The signature without its line hash: `leak:make_name>main`."""
    return category + ":" + ">".join(frame_key(f) for f in significant_frames(stack)[:depth])


def make_signature(category: str, stack: Iterable[FrameLike], depth: int = 3) -> str:
    """`category:f1>f2>f3@hash` (see the module's docstring)."""
    stack = tuple(stack)
    stem = signature_stem(category, stack, depth)
    h = line_hash(own_frame_of(stack))
    return f"{stem}@{h}" if h else stem


def split_signature(signature: str) -> tuple[str, str | None]:
    """(`leak:make_name>main`, `a1b2c3`) from `leak:make_name>main@a1b2c3`; hash None if absent."""
    m = _HASH.search(signature)
    return (signature[: m.start()], m.group(1)) if m else (signature, None)


def signature_matches(wanted: str, signature: str) -> bool:
    """Does `signature` name the bug `wanted` names?  The frames must be equal, and the line
    hash too when `wanted` carries one.  So a signature written without a hash (by hand, in a
    `known_leak` marker, or by an older leakharness) names every bug of those frames; one written
    with a hash never names a finding whose source could not be read (a build with
    -ffile-prefix-map run from another folder): that could be any line of the function."""
    if wanted == signature:
        return True
    w_stem, w_hash = split_signature(wanted)
    s_stem, s_hash = split_signature(signature)
    return w_stem == s_stem and (w_hash is None or w_hash == s_hash)
