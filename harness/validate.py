"""Reading a results.json as untrusted data: every field's type and range, every path inside its
folder.

A results folder given to `report` may come from anywhere (a CI artifact, another machine's
shard, a file edited by hand).  Each field is checked before a dataclass is made of it, and a
wrong one is a `FieldError` naming the field ("findings[2].bytes: a whole number of bytes, not
'many'"), which results.py turns into one line naming the file and the job.  Paths (a job's
logs, its kept sources) are relative to the results folder: an absolute path, a `..`, or a
path that resolves (symlinks followed) outside the folder is refused, so a report never reads
or copies a file from elsewhere.
"""

from __future__ import annotations

import json
import math
import re
import os
from pathlib import Path
from typing import Any, Callable

from .findings import CATEGORIES, LEAK_KINDS, AuxStack, Finding, Frame
from .signatures import own_frame_of, signature_stack, signature_stem, split_signature

# Far above anything a run measures (bytes, blocks, pids, exit codes), far below what breaks
# arithmetic or formatting.
MAX_INT = 1 << 62
MAX_SECONDS = 1e9
MAX_TEXT = 1 << 20  # one string field
STATUSES = ("ok", "crashed", "incomplete", "build-failed", "tool-missing")
OUTCOMES = ("find", "clean", "blind", "incomplete")


class FieldError(ValueError):
    """One field of a results file is wrong: `field` names it, the message says what is wrong."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")

    def under(self, prefix: str) -> "FieldError":
        return FieldError(f"{prefix}.{self.field}" if self.field else prefix, self.problem)


def printable(value: str, limit: int = 120) -> str:
    """A name from a results file, fit for a one-line message: control characters escaped."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(value))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# A \uD800-\uDFFF escape: a pair is one character, a lone one a string no encoder can write.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def loads_json(text: str) -> Any:
    """json.loads for a file from outside: ValueError (as for damaged JSON) also for nesting too
    deep for the parser, and for a string holding a lone UTF-16 surrogate (`"\\ud800"`), which
    would fail every later write of it (the report, suppressions) with a traceback."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueError("nested too deep") from None
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a string holds a lone UTF-16 surrogate (\\udXXX), which no tool writes") from None
        except RecursionError:
            raise ValueError("nested too deep") from None
    return data


def text(value: Any, field: str, optional: bool = False, limit: int = MAX_TEXT) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise FieldError(field, f"must be a string{' or null' if optional else ''}, not {_show(value)}")
    if len(value) > limit:
        raise FieldError(field, f"a string of {len(value)} characters, more than {limit}")
    return value


# Runs of one job whose expectation allows a miss (catalog.Expectation.attempts): at most this many.
MAX_ATTEMPTS = 10


def whole(value: Any, field: str, optional: bool = False, low: int = 0) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_INT:
        raise FieldError(field, f"must be a whole number from {low} to {MAX_INT}"
                                f"{' or null' if optional else ''}, not {_show(value)}")
    return value


def seconds(value: Any, field: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and 0 <= value <= MAX_SECONDS):
        raise FieldError(field, f"must be a number of seconds from 0 to {MAX_SECONDS:g}, not {_show(value)}")
    return float(value)


def flag(value: Any, field: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise FieldError(field, f"must be true or false, not {_show(value)}")
    return value


def choice(value: Any, field: str, allowed, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if value not in allowed or not isinstance(value, str):
        raise FieldError(field, f"must be one of {', '.join(allowed)}{' or null' if optional else ''}, "
                                f"not {_show(value)}")
    return value


def mapping(value: Any, field: str) -> dict:
    if not isinstance(value, dict):
        raise FieldError(field, f"must be an object, not {_show(value)}")
    return value


def items(value: Any, field: str, each: Callable[[Any, str], Any]) -> tuple:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise FieldError(field, f"must be a list, not {_show(value)}")
    return tuple(each(v, f"{field}[{i}]") for i, v in enumerate(value))


def name(value: Any, field: str, optional: bool = False) -> str | None:
    """A pattern, variant or checker name: it becomes one part of a path (logs/<pattern>/...), so
    not empty, not `.` or `..`, no `/` and no NUL (a program's file name may hold anything else)."""
    value = text(value, field, optional, limit=512)
    if value is None:
        return None
    if not value or value in (".", "..") or "/" in value or "\0" in value:
        raise FieldError(field, f"not a usable name: {_show(value)} (empty, '.', '..', a '/' or a NUL)")
    return value


def relative_path(value: Any, field: str) -> str:
    """A path inside the results folder, as written: relative, no `..`, no NUL."""
    value = text(value, field, limit=4096)
    parts = value.replace("\\", "/").split("/")
    if not value or value.startswith("/") or "\0" in value or ".." in parts:
        raise FieldError(field, f"{_show(value)} is not a path inside the results folder "
                                f"(absolute paths and '..' are refused)")
    return value


class Within:
    """Paths under one folder, resolved as the system would (symlinks followed), each directory
    resolved once: a report of a catalog run checks some 1,400 log and source paths, and a full
    resolution of each was a tenth of an all-cached re-run."""

    def __init__(self, base: Path | str):
        self.root = os.path.realpath(base)
        self._dirs: dict[str, str] = {}

    def real(self, rel: str) -> str:
        """os.path.realpath(base/rel), the parent folder's resolution remembered."""
        parent, name = os.path.split(os.path.join(self.root, rel))
        resolved = self._dirs.get(parent)
        if resolved is None:
            resolved = self._dirs[parent] = os.path.realpath(parent)
        path = os.path.join(resolved, name)
        return os.path.realpath(path) if name in ("", ".", "..") or os.path.islink(path) else path

    def inside(self, rel: str) -> Path | None:
        """base/rel resolved (symlinks followed) when it is a file really inside base; else None
        (missing, or leading out of base): what a reader may open."""
        target = self.real(rel)
        if os.path.commonpath([self.root, target]) != self.root or not os.path.isfile(target):
            return None
        return Path(target)

    def escapes(self, rel: str) -> bool:
        """True when base/rel exists and resolves (through a symlink) outside base."""
        if not os.path.lexists(os.path.join(self.root, rel)):
            return False
        return os.path.commonpath([self.root, self.real(rel)]) != self.root


def inside(base: Path, rel: str) -> Path | None:
    """base/rel resolved (symlinks followed) when it is a file really inside base; else None
    (missing, or leading out of base): what a reader may open."""
    return Within(base).inside(rel)


def escapes(base: Path, rel: str) -> bool:
    """True when base/rel exists and resolves (through a symlink) outside base."""
    return Within(base).escapes(rel)


# --- the records -------------------------------------------------------------------------------

def _address(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            number = int(value, 16)
        except ValueError:
            raise FieldError(field, f"must be a hex address, not {_show(value)}") from None
        if not 0 <= number < 1 << 64:
            raise FieldError(field, f"an address beyond 64 bits: {_show(value)}")
        return number
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise FieldError(field, f"must be a hex address, not {_show(value)}")
    return value


def frame(value: Any, field: str) -> Frame:
    data = mapping(value, field)
    return Frame(address=_address(data.get("address"), f"{field}.address"),
                 function=text(data.get("function"), f"{field}.function", optional=True, limit=8192),
                 file=text(data.get("file"), f"{field}.file", optional=True, limit=4096),
                 line=whole(data.get("line"), f"{field}.line", optional=True),
                 object=text(data.get("object"), f"{field}.object", optional=True, limit=4096),
                 offset=_address(data.get("offset"), f"{field}.offset"))


def aux_stack(value: Any, field: str) -> AuxStack:
    data = mapping(value, field)
    return AuxStack(label=text(data.get("label"), f"{field}.label", limit=512),
                    text=text(data.get("text", ""), f"{field}.text") or "",
                    frames=items(data.get("frames"), f"{field}.frames", frame))


def finding(value: Any, field: str = "finding") -> Finding:
    data = mapping(value, field)
    checked = dict(
        tool=text(data.get("tool"), f"{field}.tool", limit=256),
        kind=text(data.get("kind"), f"{field}.kind", limit=512),
        category=choice(data.get("category"), f"{field}.category", CATEGORIES),
        message=text(data.get("message", ""), f"{field}.message") or "",
        leak_kind=choice(data.get("leak_kind"), f"{field}.leak_kind", LEAK_KINDS, optional=True),
        bytes=whole(data.get("bytes"), f"{field}.bytes", optional=True),
        indirect_bytes=whole(data.get("indirect_bytes", 0), f"{field}.indirect_bytes"),
        blocks=whole(data.get("blocks"), f"{field}.blocks", optional=True),
        pid=whole(data.get("pid"), f"{field}.pid", optional=True),
        thread=whole(data.get("thread"), f"{field}.thread", optional=True),
        count=whole(data.get("count", 1), f"{field}.count"),
        source=text(data.get("source"), f"{field}.source", optional=True, limit=4096),
        signature=text(data.get("signature", ""), f"{field}.signature", limit=8192) or "",
        suppressed=text(data.get("suppressed"), f"{field}.suppressed", optional=True, limit=4096),
    )
    stack = items(data.get("stack"), f"{field}.stack", frame)
    aux = items(data.get("aux_stacks"), f"{field}.aux_stacks", aux_stack)
    # The signature's frames are named again (as Finding.from_dict does for any stored finding);
    # its line hash is kept as the run made it, never made again here: that would read the
    # source file a frame names, which a results.json from elsewhere may point anywhere.
    _, stored_hash = split_signature(checked["signature"])
    named_by = signature_stack(stack, aux)
    stem = signature_stem(checked["category"], named_by)
    checked["signature"] = f"{stem}@{stored_hash}" if stored_hash and own_frame_of(named_by) is not None else stem
    try:
        return Finding(**checked, stack=stack, aux_stacks=aux)
    except ValueError as exc:
        raise FieldError(field, str(exc)) from None


def expected(value: Any, field: str) -> dict | None:
    """A job's expectation, as catalog.Expectation.to_dict wrote it."""
    if value is None:
        return None
    data = mapping(value, field)
    unknown = set(data) - {"outcome", "category", "leak_kind", "function", "min_bytes", "reason", "timeout",
                           "attempts"}
    if unknown:
        raise FieldError(f"{field}.{sorted(unknown)[0]}", "not a field of an expectation")
    out = {"outcome": choice(data.get("outcome"), f"{field}.outcome", OUTCOMES)}
    if data.get("category") is not None:
        out["category"] = choice(data["category"], f"{field}.category", CATEGORIES)
    if data.get("leak_kind") is not None:
        out["leak_kind"] = choice(data["leak_kind"], f"{field}.leak_kind", LEAK_KINDS)
    if data.get("function") is not None:
        out["function"] = text(data["function"], f"{field}.function", limit=4096)
    if data.get("min_bytes") is not None:
        out["min_bytes"] = whole(data["min_bytes"], f"{field}.min_bytes")
    if data.get("reason") is not None:
        out["reason"] = text(data["reason"], f"{field}.reason")
    if data.get("timeout") is not None:
        out["timeout"] = seconds(data["timeout"], f"{field}.timeout")
    if data.get("attempts") is not None:
        out["attempts"] = whole(data["attempts"], f"{field}.attempts")
        if not 1 <= out["attempts"] <= MAX_ATTEMPTS:
            raise FieldError(f"{field}.attempts", f"must be from 1 to {MAX_ATTEMPTS}")
    return out
