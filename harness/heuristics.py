"""Heuristics over findings: which frames say something, which are the program's own, how a
bug is named (its signature), and which leak records are one bug (root-cause groups).

These are judgement calls, kept apart from the model (findings.py) so that each rule can be
read, tested and changed on its own.

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
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:  # the model imports these rules; the rules only read its attributes
    from .findings import Finding, Frame

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


def is_noise(frame: Frame) -> bool:
    name = frame.function
    if name:
        base = name.split("(", 1)[0].strip() if "(" in name and not name.startswith("(") else name
        if base in NOISE_FUNCTIONS or name.startswith(NOISE_PREFIXES):
            return True
    obj = os.path.basename(frame.object or "")
    return bool(obj) and obj.startswith(NOISE_OBJECTS)


def is_startup(frame: Frame) -> bool:
    return frame.function in STARTUP_FUNCTIONS


def _unnamed_library_frame(frame: Frame) -> bool:
    # valgrind names such a frame by its library alone, the sanitizers by library+offset:
    # leaving it out keeps one bug's signature the same under every tool.
    return frame.function is None and ".so" in os.path.basename(frame.object or "")


def significant_frames(stack: Iterable[Frame]) -> list[Frame]:
    """The frames that say something, top first, up to the process start-up."""
    out = []
    for f in stack:
        if is_startup(f):
            break  # below it only the C runtime (and, stripped, `_start` by offset)
        if not is_noise(f) and not _unnamed_library_frame(f):
            out.append(f)
    return out


def is_library(frame: Frame) -> bool:
    """A frame of a system library or the C runtime, not of the program's own source."""
    if is_noise(frame):
        return True
    if frame.file:
        return frame.file.startswith(("..", "/usr/", "/build/")) or "sysdeps" in frame.file
    return ".so" in os.path.basename(frame.object or "")


def own_frame_of(stack: Iterable[Frame]) -> Frame | None:
    """The program's own frame nearest the top of the stack, with a file and line."""
    return next((fr for fr in stack if fr.file and fr.line and not is_library(fr)), None)


def own_frame(finding: Finding) -> Frame | None:
    """The program's own frame nearest the top of the finding's stack, with a file and line:
    where to point a person (a SARIF location, a suppression's most specific name)."""
    return own_frame_of(finding.stack)


CLONE_SUFFIX = re.compile(r"\.(?:isra|constprop|part|cold|lto_priv)\.\d+|\.cold$")


def function_key(name: str) -> str:
    """A function's name without arguments and without gcc's clone suffixes (foo.isra.0 is foo)."""
    return CLONE_SUFFIX.sub("", name.split("(", 1)[0].strip() if not name.startswith("(") else name)


def frame_key(frame: Frame) -> str:
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
_HASH = re.compile(r"@([0-9a-f]{6})$")
class _Source:
    """One source file's lines, and the hashes of those asked for."""

    def __init__(self, lines: tuple[str, ...]):
        self.lines = lines
        self.hashes: dict[int, str] = {}


@functools.lru_cache(maxsize=256)
def _source(path: str, mtime_ns: int, size: int) -> _Source | None:
    if size > SOURCE_LIMIT:
        return None
    try:
        with open(path, "rb") as fh:
            return _Source(tuple(fh.read().decode("utf-8", "replace").splitlines()))
    except OSError:
        return None


def _open_source(path: str) -> _Source | None:
    # stat each time (a few microseconds): a file rewritten since is read again.
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return _source(path, st.st_mtime_ns, st.st_size)


def source_line(path: str, line: int) -> str | None:
    """The text of line `line` of file `path`, whitespace collapsed; None when unreadable.
    Files are read once per (path, modification time, size)."""
    src = _open_source(path)
    if src is None or not 0 < line <= len(src.lines):
        return None
    return " ".join(src.lines[line - 1].split())


def line_hash(frame: Frame | None) -> str | None:
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
        h = src.hashes[frame.line] = hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:6]
    return h


def signature_stem(category: str, stack: Iterable[Frame], depth: int = 3) -> str:
    """The signature without its line hash: `leak:make_name>main`."""
    return category + ":" + ">".join(frame_key(f) for f in significant_frames(stack)[:depth])


def make_signature(category: str, stack: Iterable[Frame], depth: int = 3) -> str:
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
    """Does `signature` name the bug `wanted` names?  The frames must be equal; the line hash
    must be too when both carry one.  So a signature written without a hash (by hand, in a
    `known_leak` marker, or by an older leakharness) still names the bug, and a finding whose
    source could not be read is matched by its frames."""
    if wanted == signature:
        return True
    w_stem, w_hash = split_signature(wanted)
    s_stem, s_hash = split_signature(signature)
    return w_stem == s_stem and (w_hash is None or s_hash is None or w_hash == s_hash)


# --- root causes ------------------------------------------------------------------------------

# Severity classes, most urgent first: memory errors, then leaks by kind.
_LEAK_RANK = {"definite": 1, None: 1, "indirect": 2, "possible": 3, "reachable": 4}


def _bytes(n: int) -> str:
    return f"{n} B"  # no thousands separator: what a user greps for is the number the tool printed


@dataclass(frozen=True)
class FindingGroup:
    """One bug: a root finding and the indirect leak records it owns.

    `checked` says how far the assignment of indirect records is known to be right: True when
    the tool said how many indirect bytes the root owns (valgrind) and the owned records add up
    to exactly that; False when they do not (see `reported_indirect_bytes`); None when the tool
    gives no such total (LeakSanitizer) and the assignment rests on the stacks alone."""

    root: Finding
    owned: tuple[Finding, ...] = ()
    checked: bool | None = None

    @property
    def findings(self) -> tuple[Finding, ...]:
        return (self.root, *self.owned)

    @property
    def bytes(self) -> int:
        return self.root.bytes or 0

    @property
    def indirect_bytes(self) -> int:
        """What the owned records hold (the tool's own figure: `reported_indirect_bytes`)."""
        return sum(f.bytes or 0 for f in self.owned)

    @property
    def reported_indirect_bytes(self) -> int:
        return self.root.indirect_bytes

    @property
    def total_bytes(self) -> int:
        return self.bytes + self.indirect_bytes

    @property
    def is_leak(self) -> bool:
        return self.root.category == "leak"

    @property
    def suppressed(self) -> bool:
        return all(f.suppressed for f in self.findings)

    def rank(self) -> tuple:
        """Sort key: unsuppressed first; memory errors, then definite leaks by total bytes,
        then indirect, possible, reachable."""
        root = self.root
        kind = 0 if root.category != "leak" else _LEAK_RANK.get(root.leak_kind, 1)
        return (self.suppressed, kind, -self.total_bytes, root.signature)

    def where(self) -> str:
        frame = own_frame_of(self.root.stack)
        if frame is None:
            frames = significant_frames(self.root.stack)
            frame = frames[0] if frames else None
        return frame.describe() if frame is not None else ""

    def headline(self) -> str:
        """`leak (definite) 72 B + 933 B indirect at make_ctx ctx.c:12`."""
        root = self.root
        what = root.category
        if root.category == "leak":
            what = f"leak ({root.leak_kind})" if root.leak_kind else "leak"
            if root.bytes is not None:
                what += f" {_bytes(self.bytes)}"
                if self.owned:
                    what += f" + {_bytes(self.indirect_bytes)} indirect"
                elif root.indirect_bytes:  # the tool's figure, no record attached
                    what += f" + {_bytes(root.indirect_bytes)} indirect"
        elif root.count > 1:
            what += f" ×{root.count}"
        where = self.where()
        return what + (f" at {where}" if where else "")


def _frame_id(frame: Frame) -> tuple:
    return (frame.address, frame.function, frame.file, frame.line, frame.object, frame.offset)


def _from_main(stack: Sequence[Frame]) -> list[tuple]:
    """The stack from main up (the process start-up frames below main left out)."""
    frames = []
    for f in stack:
        if is_startup(f):
            break
        frames.append(_frame_id(f))
    frames.reverse()
    return frames


def _common_from_main(a: list[tuple], b: list[tuple]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _owns_indirect(f: Finding) -> bool:
    return f.category == "leak" and (f.leak_kind == "definite" or (f.leak_kind == "possible" and f.indirect_bytes > 0))


def _tool_counts_indirect(f: Finding) -> bool:
    # valgrind's loss records say how many indirect bytes a record owns ("N (D direct, I
    # indirect) bytes"); LeakSanitizer's never do.
    return f.kind.startswith("Leak_")


_SEARCH_STEPS = 20_000


def _assign(owners: list[Finding], indirect: list[Finding]) -> tuple[dict[int, list[int]], list[int], bool | None]:
    """Attach indirect records to owners.  Returns ({owner: [indirect...]}, unowned, checked)."""
    paths_o = [_from_main(o.stack) for o in owners]
    scores = [[_common_from_main(_from_main(i.stack), po) for po in paths_o] for i in indirect]
    budgeted = bool(owners) and all(_tool_counts_indirect(o) for o in owners)
    order = sorted(range(len(indirect)), key=lambda k: (-(indirect[k].bytes or 0), k))
    prefs = {k: sorted(range(len(owners)), key=lambda o: (-scores[k][o], o)) for k in order}

    if budgeted:
        # valgrind says how many indirect bytes each owner has: find an assignment that spends
        # every budget exactly, trying owners in order of the longest common path from main.
        remaining = [o.indirect_bytes for o in owners]
        choice: dict[int, int] = {}
        steps = [0]

        def search(pos: int) -> bool:
            if pos == len(order):
                return not any(remaining)
            steps[0] += 1
            if steps[0] > _SEARCH_STEPS:
                return False
            k = order[pos]
            need = indirect[k].bytes or 0
            for o in prefs[k]:
                if remaining[o] >= need:
                    remaining[o] -= need
                    choice[k] = o
                    if search(pos + 1):
                        return True
                    remaining[o] += need
            return False

        if search(0):
            owned: dict[int, list[int]] = {o: [] for o in range(len(owners))}
            for k in sorted(choice):
                owned[choice[k]].append(k)
            return owned, [], True

    # No exact split (blocks of one loss record owned by different roots, or no totals at all):
    # each indirect record goes to the owner whose stack shares the longest path from main; with
    # nothing in common it goes to the only owner, or stays a root of its own.
    owned = {o: [] for o in range(len(owners))}
    unowned = []
    for k in range(len(indirect)):
        if not owners:
            unowned.append(k)
            continue
        best = prefs[k][0]
        if scores[k][best] > 0 or len(owners) == 1:
            owned[best].append(k)
        else:
            unowned.append(k)
    return owned, unowned, (False if budgeted else None)


def group_findings(findings: Iterable[Finding]) -> list[FindingGroup]:
    """Findings as root causes, most severe first: each definite leak with the indirect leak
    records it owns, and every other finding as a group of its own.

    Neither tool says which indirect record a definite one owns.  The rule, per process (tool,
    pid, log): an indirect record belongs to the definite record whose allocation stack shares
    the longest path from main (frames compared exactly, start-up frames left out), as blocks
    built by one constructor call share that call's path.  Where the tool gives each definite
    record's total of indirect bytes (valgrind), the assignment must spend every total exactly:
    a search tries owners in that order and the group is `checked`; where no exact split exists
    (one loss record whose blocks belong to two roots) the longest-path choice stands and
    `checked` is False.  LeakSanitizer gives no totals: the longest path decides (`checked` None),
    and an indirect record sharing nothing with any of several definite ones (a leaked cycle,
    which LSan reports as indirect only) stays a root of its own."""
    findings = list(findings)
    by_process: dict[tuple, list[int]] = {}
    for n, f in enumerate(findings):
        by_process.setdefault((f.tool, f.pid, f.source), []).append(n)
    groups: list[FindingGroup] = []
    for members in by_process.values():
        owners = [n for n in members if _owns_indirect(findings[n])]
        owner_set = set(owners)
        indirect = [n for n in members if findings[n].category == "leak" and findings[n].leak_kind == "indirect"]
        owned, unowned, checked = _assign([findings[n] for n in owners], [findings[n] for n in indirect])
        taken = set()
        for o, ks in owned.items():
            root = findings[owners[o]]
            parts = tuple(findings[indirect[k]] for k in ks)
            taken.update(indirect[k] for k in ks)
            ok = checked
            if checked is False:  # no exact split overall; this root's own total may still add up
                ok = sum(p.bytes or 0 for p in parts) == root.indirect_bytes
            groups.append(FindingGroup(root, parts, ok))
        for n in members:
            if n in taken or n in owner_set:
                continue
            groups.append(FindingGroup(findings[n]))
    groups.sort(key=FindingGroup.rank)
    return groups
