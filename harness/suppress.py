"""Suppressions: write them for a run's findings (a baseline), and mark findings they match.

leakharness applies suppressions itself, after parsing, instead of handing them to the
tools: a suppressed finding is kept, counted and shown as suppressed, never silently
dropped, and the same file works for every checker.  Two formats are written and read:

- valgrind's (`{ name / Memcheck:Leak / match-leak-kinds: ... / fun:... }`), matched on the
  stack from the top with `...` and shell wildcards, as valgrind itself matches;
- LSan's (`leak:PATTERN` lines), matched as LSan does: the pattern against any frame's
  function, file or module.

A baseline (`write_valgrind`, `write_lsan`) names each entry after the finding's signature
(`leakharness:leak:make_name>main@a1b2c3`: in the valgrind entry's name, in a comment line just
above an LSan line).

- A valgrind entry holds the whole stack from the allocation up to main.  On top, the allocator:
  one frame under every tool for malloc and its kin, written as a glob both match (`fun:*malloc`
  is valgrind's `malloc` and ASan's `__interceptor_malloc`), and OpenSSL's wrappers as they are;
  where the tools differ (libc's strdup calls malloc under valgrind, ASan intercepts strdup
  itself) one `...` instead.  Then every frame: `fun:NAME` as the tool named it (gcc's clones
  such as `make_name.constprop.0` too), `obj:*/libfoo.so` for a frame without a name.  One entry
  per stack shape: a bug whose stack differs between builds or tools gets one entry for each.
- An LSan line holds one pattern, which LSan matches against every frame: the most specific is
  the program's own frame nearest the allocation (`leak:make_name`).  The limit: for a leak
  allocated right in main that is `leak:main`, which LSan itself would apply to every leak: such
  a line is written behind ONLY_OURS, a comment to LSan that leakharness reads as an entry.

So when leakharness applies an entry that carries a signature, the finding's signature must
match it too (the frames equal, and the source-line hash equal when both have one): a new leak
on another line of a function that already leaks is not hidden, while lines moved by unrelated
edits still match.  Entries without a signature (a user's own) match by their patterns alone.
In `fun:` patterns leakharness ignores gcc's clone suffixes on both sides, so an entry written
from an -O2 build matches an -O0 one and the other way round.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .errors import LeakHarnessError
from .findings import Finding, Frame
from .signatures import (
    CLONE_SUFFIX,
    function_key,
    is_noise,
    is_startup,
    own_frame,
    significant_frames,
    signature_matches,
    signature_stack,
)

_VALGRIND_KIND = {
    "leak": "Memcheck:Leak",
    "double-free": "Memcheck:Free",
    "invalid-free": "Memcheck:Free",
    "mismatched-free": "Memcheck:Free",
    "uninitialized": "Memcheck:Cond",
}
_SIZE = re.compile(r"of size (\d+)")
NAME_PREFIX = "leakharness:"
MAX_CALLERS = 24  # valgrind reads at most this many frame lines of a suppression


@dataclass(frozen=True)
class Suppression:
    name: str
    kind: str  # "Memcheck:Leak", "Memcheck:Addr4", ..., or "lsan"
    frames: tuple[str, ...]  # "fun:NAME", "obj:PATH", "src:FILE:LINE", "..." (valgrind); one pattern (lsan)
    leak_kinds: tuple[str, ...] = ()
    signature: str | None = None  # the finding's signature a baseline entry was written for

    def matches(self, finding: Finding) -> bool:
        if not self._matches_patterns(finding):
            return False
        return self.signature is None or signature_matches(self.signature, finding.signature)

    def _matches_patterns(self, finding: Finding) -> bool:
        if self.kind == "known":  # a project target's `known` entry: its signature alone names the bug
            return self.signature is not None
        if self.kind == "lsan":
            if finding.category != "leak":
                return False
            pattern = self.frames[0]
            glob = pattern if "*" in pattern else f"*{pattern}*"
            # A leak through cgo is matched with its recorded Go caller's frames too, as its entry
            # is written (lsan_pattern: `leak:main.keep`, not cgo's stub, which LSan itself would
            # apply to every C.CString leak of the program).
            return any(fnmatch.fnmatchcase(text, glob) for fr in signature_stack(finding.stack, finding.aux_stacks)
                       for text in (fr.function, fr.file, fr.object) if text)
        if finding.category == "leak":
            if self.kind != "Memcheck:Leak":
                return False
            if self.leak_kinds and "all" not in self.leak_kinds and finding.leak_kind not in self.leak_kinds:
                return False
        elif self.kind == "Memcheck:Leak" or _valgrind_kind(finding) != self.kind:
            return False
        return _match_frames(self.frames, finding.stack)


def _fun_ok(glob: str, function: str) -> bool:
    if fnmatch.fnmatchcase(function, glob):
        return True
    # gcc's clones are the same source function: fun:make_name matches make_name.constprop.0,
    # and fun:make_name.constprop.0 (written from an -O2 build) matches make_name.isra.0 or make_name.
    return fnmatch.fnmatchcase(function_key(function), CLONE_SUFFIX.sub("", glob))


def _match_frames(patterns: tuple[str, ...], stack: tuple[Frame, ...]) -> bool:
    """valgrind's rule: patterns match the stack from its top frame; `...` spans any frames;
    a stack may be longer than the patterns."""
    def frame_ok(pattern: str, frame: Frame) -> bool:
        kind, _, glob = pattern.partition(":")
        if kind == "fun":
            return frame.function is not None and _fun_ok(glob, frame.function)
        if kind == "obj":
            return frame.object is not None and fnmatch.fnmatchcase(frame.object, glob)
        if kind == "src":
            where = f"{Path(frame.file).name}:{frame.line}" if frame.file else ""
            return fnmatch.fnmatchcase(where, glob)
        return False

    memo: dict[tuple[int, int], bool] = {}

    def go(i: int, j: int) -> bool:
        if i == len(patterns):
            return True
        key = (i, j)
        if key not in memo:
            if patterns[i] == "...":
                memo[key] = any(go(i + 1, k) for k in range(j, len(stack) + 1))
            else:
                memo[key] = j < len(stack) and frame_ok(patterns[i], stack[j]) and go(i + 1, j + 1)
        return memo[key]

    return go(0, 0)


def _valgrind_kind(f: Finding) -> str:
    if f.category in _VALGRIND_KIND:
        return _VALGRIND_KIND[f.category]
    if f.category in ("use-after-free", "invalid-read", "invalid-write", "buffer-overflow"):
        m = _SIZE.search(f.message)
        return f"Memcheck:Addr{m.group(1)}" if m else "Memcheck:Addr8"
    return "Memcheck:" + (f.kind or "Unknown")


def _frame_pattern(frame: Frame) -> str:
    if frame.function:
        return "fun:" + frame.function
    if frame.object:
        # valgrind says /usr/lib/x86_64-linux-gnu/libssl.so.3 where the sanitizers say
        # /lib/x86_64-linux-gnu/libssl.so.3 (the same file, through the /lib symlink).
        return "obj:*/" + os.path.basename(frame.object)
    return "..."


# Allocator entry points both valgrind and the sanitizers show as one frame on top (valgrind's
# replacement, the sanitizer's interceptor), so `fun:*malloc` matches `malloc` and
# `__interceptor_malloc` alike; and OpenSSL's wrappers, the same under every tool.
_ONE_FRAME_ALLOCATORS = frozenset("""malloc calloc realloc free memalign posix_memalign aligned_alloc
    valloc pvalloc _Znwm _Znam _ZdlPv _ZdaPv _ZdlPvm _ZdaPvm""".split())
_INTERCEPTOR = re.compile(r"^_*interceptor_")


def _top_pattern(frame: Frame) -> str | None:
    """A portable pattern for an allocator frame on top of a stack, or None when the tools
    show that part differently (libc's strdup calls malloc under valgrind; ASan intercepts
    strdup itself)."""
    name = frame.function or ""
    base = _INTERCEPTOR.sub("", name)
    if base in _ONE_FRAME_ALLOCATORS:
        return "fun:*" + base
    if name.startswith("CRYPTO_") and is_noise(frame):
        return "fun:" + name
    return None


def stack_patterns(stack: tuple[Frame, ...]) -> list[str]:
    """A stack as valgrind suppression lines, from the top frame up to main (the start-up
    frames below main left out): allocator frames as portable globs, or one `...` where the
    tools differ there, then every frame as it is."""
    top = 0
    while top < len(stack) and is_noise(stack[top]) and not is_startup(stack[top]):
        top += 1
    portable = [_top_pattern(fr) for fr in stack[:top]]
    lines = ["..."] if None in portable else portable
    for frame in stack[top:]:
        if is_startup(frame):
            break
        line = _frame_pattern(frame)
        if not (line == "..." and lines and lines[-1] == "..."):
            lines.append(line)
        if frame.function == "main":
            break
    if len(lines) > MAX_CALLERS:
        lines = lines[:MAX_CALLERS]  # a prefix still matches: valgrind allows longer stacks
    return lines


# A name no real log holds: a control character (a newline would end the entry's line and let
# the rest of the name write entries of its own: `fun:*`, `leak:*`), or wildcards alone.
_UNWRITABLE = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_WILDCARDS_ONLY = re.compile(r"^[*?.\[\]!/]*$")


def _writable(*texts: str) -> bool:
    return not any(_UNWRITABLE.search(t) for t in texts)


def left_out(skipped: int) -> str:
    """What a baseline says, in its file and on stderr, of the findings it could not write."""
    return (f"{skipped} finding(s) left out: a frame or signature holds a control character or wildcards "
            f"alone, which no tool's log does (a results.json edited by hand?)")


def _skipped_note(skipped: int) -> list[str]:
    return [f"# leakharness: {left_out(skipped)}"] if skipped else []


def write_valgrind(findings: Iterable[Finding]) -> tuple[str, int, int]:
    """(the file, its entries, the findings left out).  One entry per bug and stack shape: when
    two tools (or builds) show one bug through different frames (gcc cloned a function in one
    build only), each shape gets its entry, so that the file also works when handed to valgrind
    itself."""
    out, seen = [], set()
    skipped = 0
    for f in findings:
        if not f.is_error:
            continue
        patterns = stack_patterns(f.stack) or ["..."]
        if not _writable(f.signature, *patterns) or any(
                p != "..." and _WILDCARDS_ONLY.match(p.partition(":")[2]) for p in patterns):
            skipped += 1
            continue
        key = (f.signature, _valgrind_kind(f), tuple(patterns))
        if key in seen:
            continue
        seen.add(key)
        lines = ["{", f"   {NAME_PREFIX}{f.signature}", f"   {_valgrind_kind(f)}"]
        if f.category == "leak":
            lines.append("   match-leak-kinds: definite,indirect")
        lines.extend(f"   {line}" for line in patterns)
        lines.append("}")
        out.append("\n".join(lines))
    written = len(out)
    out += _skipped_note(skipped)
    return "\n".join(out) + ("\n" if out else ""), written, skipped


def lsan_pattern(f: Finding) -> str | None:
    """The most specific single LSan pattern for a leak: the program's own frame nearest the
    allocation, else the first frame that says something, by function, else by module."""
    frame = own_frame(f)
    if frame is not None and frame.function:
        return function_key(frame.function)
    frames = significant_frames(f.stack)
    named = next((fr for fr in frames if fr.function), None)
    if named is not None:
        return function_key(named.function)
    with_object = next((fr for fr in frames if fr.object), None)
    return os.path.basename(with_object.object) if with_object is not None else None


def write_lsan(findings: Iterable[Finding]) -> tuple[str, int, int]:
    """(the file, its `leak:` lines, the findings left out)."""
    out, seen = [], set()
    skipped = 0
    for f in findings:
        if f.category != "leak" or not f.is_error or f.signature in seen:
            continue
        seen.add(f.signature)
        pattern = lsan_pattern(f)
        if pattern is None:
            continue
        if not _writable(f.signature, pattern) or _WILDCARDS_ONLY.match(pattern):
            skipped += 1
            continue
        if _every_leak(pattern, f):
            # LSan matches a pattern against every frame, and every leak passes through main:
            # handed to LSan itself the line would hide them all.  A comment to LSan, an entry to
            # leakharness (load), which applies it only with the signature above.
            out.append(f"# {NAME_PREFIX}{f.signature}\n{ONLY_OURS}leak:{pattern}")
            continue
        out.append(f"# {NAME_PREFIX}{f.signature}\nleak:{pattern}")
    written = len(out)
    out += _skipped_note(skipped)
    return "\n".join(out) + ("\n" if out else ""), written, skipped


# What every leak's stack holds below the program's own code (glibc's start and a thread's,
# by function and file): an LSan pattern matching one of them (`main`, `start`, `call`) would
# be applied by LSan to every leak.  Written for leakharness only (ONLY_OURS), never for LSan.
_EVERY_STACK = ("main", "main.main", "__libc_start_call_main", "__libc_start_main_impl", "__libc_start_main",
                "_start", "libc_start_call_main.h", "libc-start.c", "../csu/libc-start.c", "start_thread",
                "pthread_create.c", "clone", "clone3", "clone3.S", "clone.S", "runtime.main", "runtime.goexit",
                "crosscall2")
ONLY_OURS = "#leakharness-only (LSan would match it on every leak) "


def _every_leak(pattern: str, f: Finding) -> bool:
    """Would LSan, which matches a pattern against every frame's function, file and module,
    apply this one to every leak of the program?  So it would if it matches what every stack
    holds (main and what runs it), this stack's frames from main down, or a module of this stack
    (the program itself: every leak has frames in it)."""
    glob = pattern if "*" in pattern else f"*{pattern}*"
    texts = list(_EVERY_STACK)
    below = False
    for fr in f.stack:
        below = below or fr.function in ("main", "main.main")
        if below:
            texts += [t for t in (fr.function, fr.file) if t]
        if fr.object:
            texts.append(fr.object)
    return any(fnmatch.fnmatchcase(t, glob) for t in texts)


def _signature_of(name: str) -> str | None:
    return (name[len(NAME_PREFIX):].strip() or None) if name.startswith(NAME_PREFIX) else None


def load(path: Path) -> list[Suppression]:
    """Read a valgrind or LSan suppression file (the format is told from its content)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise LeakHarnessError(f"{path}: cannot read suppressions: {exc.strerror or exc}") from None
    sups: list[Suppression] = []
    lines = [ln.strip() for ln in text.splitlines()]
    i = 0
    comment: str | None = None  # the comment line just above: an LSan entry's signature
    while i < len(lines):
        line = lines[i]
        if line.startswith(ONLY_OURS + "leak:"):  # written for leakharness only: an entry here
            line = line[len(ONLY_OURS):]
        if not line or line.startswith("#"):
            comment = line[1:].strip() if line.startswith("#") else None
            i += 1
            continue
        if line.startswith("leak:"):
            sups.append(Suppression(line, "lsan", (line[5:],), signature=_signature_of(comment or "")))
            comment = None
            i += 1
            continue
        comment = None
        if line == "{":
            try:
                end = lines.index("}", i)
            except ValueError:
                raise LeakHarnessError(f"{path}:{i + 1}: suppression not closed with }}") from None
            body = [b for b in lines[i + 1:end] if b and not b.startswith("#")]
            if len(body) < 2:
                raise LeakHarnessError(f"{path}:{i + 1}: a suppression needs a name and a kind")
            name, kind, rest = body[0], body[1], body[2:]
            leak_kinds: tuple[str, ...] = ()
            if rest and rest[0].startswith("match-leak-kinds:"):
                leak_kinds = tuple(k.strip() for k in rest[0].split(":", 1)[1].split(","))
                rest = rest[1:]
            sups.append(Suppression(name, kind, tuple(rest), leak_kinds, signature=_signature_of(name)))
            i = end + 1
            continue
        if re.match(r"^\w+:", line):  # other sanitizers' kinds (interceptor_via_fun, ...): not ours
            i += 1
            continue
        raise LeakHarnessError(f"{path}:{i + 1}: not a valgrind or LSan suppression line: {line[:60]!r}")
    return sups


KNOWN_PREFIX = "known: "  # how a finding a project target's `known` list accepts is marked


def known(signatures: Iterable[str]) -> list[Suppression]:
    """A project target's `known` signatures as suppressions matching by signature alone: the
    findings they name are accepted (kept, counted and listed, not failing)."""
    return [Suppression(name=f"{KNOWN_PREFIX}{sig}", kind="known", frames=(), signature=sig) for sig in signatures]


def apply(findings: Iterable[Finding], suppressions: list[Suppression]) -> tuple[Finding, ...]:
    if not suppressions:
        return tuple(findings)
    out = []
    for f in findings:
        hit = next((s for s in suppressions if s.matches(f)), None) if f.is_error else None
        out.append(dataclasses.replace(f, suppressed=hit.name) if hit else f)
    return tuple(out)


def write_known(jobs) -> tuple[str, int]:
    """`known` lists for a project file, one per target (job.pattern), from a run's bugs (memory
    errors, definite and indirect leaks, not suppressed): (TOML text, how many signatures).  Each
    entry is the signature, commented with the checkers that saw it and where."""
    import json

    by_target: dict[str, dict[str, tuple[set, str]]] = {}
    for job in jobs:
        for f in job.findings:
            if not f.is_error or not f.signature:
                continue
            tools, summary = by_target.setdefault(job.pattern, {}).setdefault(f.signature, (set(), ""))
            tools.add(job.tool)
            if not summary:
                by_target[job.pattern][f.signature] = (tools, f.summary().split("] ", 1)[-1])
    lines = ["# `known` lists for leakharness.toml: put each into its [[target]] (or [[ctest]]) table.",
             "# A finding whose signature is listed is accepted: shown by every run, never failing.", ""]
    count = 0
    for target in sorted(by_target):
        lines.append(f"# [[target]] name = {json.dumps(target)}")
        lines.append("known = [")
        for sig, (tools, summary) in sorted(by_target[target].items()):
            note = " ".join(f"[{', '.join(sorted(tools))}] {summary}".split())
            lines.append(f"    {json.dumps(sig)},  # {note}")
            count += 1
        lines += ["]", ""]
    return "\n".join(lines), count
