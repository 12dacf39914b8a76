"""Suppressions: write them for a run's findings (a baseline), and mark findings they match.

leakharness applies suppressions itself, after parsing, instead of handing them to the
tools: a suppressed finding is kept, counted and shown as suppressed, never silently
dropped, and the same file works for every checker.  Two formats are written and read:

- valgrind's (`{ name / Memcheck:Leak / match-leak-kinds: ... / fun:... }`), matched on the
  stack from the top with `...` and shell wildcards, as valgrind itself matches;
- LSan's (`leak:PATTERN` lines), matched as LSan does: the pattern against any frame's
  function, file or module.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .errors import LeakHarnessError
from .findings import Finding, Frame, frame_key, is_noise, own_frame, significant_frames

_VALGRIND_KIND = {
    "leak": "Memcheck:Leak",
    "double-free": "Memcheck:Free",
    "invalid-free": "Memcheck:Free",
    "mismatched-free": "Memcheck:Free",
    "uninitialized": "Memcheck:Cond",
}
_SIZE = re.compile(r"of size (\d+)")


@dataclass(frozen=True)
class Suppression:
    name: str
    kind: str  # "Memcheck:Leak", "Memcheck:Addr4", ..., or "lsan"
    frames: tuple[str, ...]  # "fun:NAME", "obj:PATH", "..." (valgrind); one pattern (lsan)
    leak_kinds: tuple[str, ...] = ()

    def matches(self, finding: Finding) -> bool:
        if self.kind == "lsan":
            if finding.category != "leak":
                return False
            pattern = self.frames[0]
            glob = pattern if "*" in pattern else f"*{pattern}*"
            return any(fnmatch.fnmatchcase(text, glob) for fr in finding.stack
                       for text in (fr.function, fr.file, fr.object) if text)
        if finding.category == "leak":
            if self.kind != "Memcheck:Leak":
                return False
            if self.leak_kinds and "all" not in self.leak_kinds and finding.leak_kind not in self.leak_kinds:
                return False
        elif self.kind == "Memcheck:Leak" or _valgrind_kind(finding) != self.kind:
            return False
        return _match_frames(self.frames, finding.stack)


def _match_frames(patterns: tuple[str, ...], stack: tuple[Frame, ...]) -> bool:
    """valgrind's rule: patterns match the stack from its top frame; `...` spans any frames;
    a stack may be longer than the patterns."""
    def frame_ok(pattern: str, frame: Frame) -> bool:
        kind, _, glob = pattern.partition(":")
        if kind == "fun":
            return frame.function is not None and fnmatch.fnmatchcase(frame.function, glob)
        if kind == "obj":
            return frame.object is not None and fnmatch.fnmatchcase(frame.object, glob)
        if kind == "src":
            where = f"{Path(frame.file).name}:{frame.line}" if frame.file else ""
            return fnmatch.fnmatchcase(where, glob)
        return False

    def go(i: int, j: int) -> bool:
        if i == len(patterns):
            return True
        if patterns[i] == "...":
            return any(go(i + 1, k) for k in range(j, len(stack) + 1))
        return j < len(stack) and frame_ok(patterns[i], stack[j]) and go(i + 1, j + 1)

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
        return "fun:" + frame_key(frame)  # gcc's clones (foo.isra.0) match as foo
    if frame.object:
        return "obj:" + frame.object
    return "..."


def write_valgrind(findings: Iterable[Finding]) -> str:
    out, seen = [], set()
    for f in findings:
        if not f.is_error or f.signature in seen:
            continue
        seen.add(f.signature)
        frames = [fr for fr in f.stack if not is_noise(fr)][:3]
        lines = ["{", f"   leakharness:{f.signature}", f"   {_valgrind_kind(f)}"]
        if f.category == "leak":
            lines.append("   match-leak-kinds: definite,indirect")
        lines.append("   ...")  # allocator and wrapper frames above the significant ones
        lines.extend(f"   {_frame_pattern(fr)}" for fr in frames)
        lines.append("}")
        out.append("\n".join(lines))
    return "\n".join(out) + ("\n" if out else "")


def write_lsan(findings: Iterable[Finding]) -> str:
    out, seen = [], set()
    for f in findings:
        if f.category != "leak" or not f.is_error:
            continue
        frame = own_frame(f)
        if frame is None or not frame.function:
            frame = next((fr for fr in significant_frames(f.stack) if fr.function), None)
        if frame is None or frame.function in seen:
            continue
        seen.add(frame.function)
        out.append(f"# {f.signature}\nleak:{frame.function}")
    return "\n".join(out) + ("\n" if out else "")


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
    while i < len(lines):
        line = lines[i]
        if not line or line.startswith("#"):
            i += 1
            continue
        if line.startswith("leak:"):
            sups.append(Suppression(line, "lsan", (line[5:],)))
            i += 1
            continue
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
            sups.append(Suppression(name, kind, tuple(rest), leak_kinds))
            i = end + 1
            continue
        if re.match(r"^\w+:", line):  # other sanitizers' kinds (interceptor_via_fun, ...): not ours
            i += 1
            continue
        raise LeakHarnessError(f"{path}:{i + 1}: not a valgrind or LSan suppression line: {line[:60]!r}")
    return sups


def apply(findings: Iterable[Finding], suppressions: list[Suppression]) -> tuple[Finding, ...]:
    if not suppressions:
        return tuple(findings)
    out = []
    for f in findings:
        hit = next((s for s in suppressions if s.matches(f)), None) if f.is_error else None
        out.append(dataclasses.replace(f, suppressed=hit.name) if hit else f)
    return tuple(out)
