"""The pattern catalog: read c_fixtures/<id>/pattern.toml into Patterns and Expectations.

A pattern folder holds its metadata (pattern.toml) and one jinja2 template that renders both
variants: pattern.c.j2 for a C pattern, pattern.go.j2 for a Go pattern (`language = "go"`),
whose program calls C and OpenSSL through cgo.  This module only reads and checks the
metadata; rendering is generate.py's job.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import CatalogError
from .findings import CATEGORIES, LEAK_KINDS

VARIANTS = ("leaky", "fixed")
LANGUAGES = ("c", "go")
# Every checker leakharness can run.  The -O2 ones inherit their base checker's expectations.
# go-asan (`go build -asan` plus an exit-time leak check) and cgocheck (GODEBUG=cgocheck=2)
# check Go programs; memcheck checks both languages.
CHECKERS = ("memcheck", "memcheck-O2", "asan", "asan-O2", "ubsan", "tsan", "msan", "go-asan", "cgocheck", "helgrind",
            "hardened", "residue")
GO_CHECKERS = ("memcheck", "go-asan", "cgocheck")
# What runs when a pattern says nothing else; tsan runs where a pattern expects something of it.
DEFAULT_CHECKERS = ("memcheck", "memcheck-O2", "asan", "asan-O2", "ubsan", "hardened")
# The checkers a leaky variant must state expectations for, by language.
REQUIRED_CHECKERS = ("memcheck", "asan")
REQUIRED_GO_CHECKERS = ("memcheck", "go-asan")
TEMPLATE_NAME = "pattern.c.j2"
TEMPLATE_NAMES = {"c": "pattern.c.j2", "go": "pattern.go.j2"}
METADATA_NAME = "pattern.toml"
DEFAULT_TIMEOUT = 120.0

_ID = re.compile(r"^[a-z0-9_]+$")
_SECRET = re.compile(r"^(?:[0-9a-fA-F]{2}){8,1024}$")


def base_checker(checker: str) -> str:
    """memcheck-O2 -> memcheck, asan-O2 -> asan; go-asan is a checker of its own."""
    return checker if checker == "go-asan" else checker.split("-", 1)[0]


def default_fixtures_dir() -> Path:
    """The built-in catalog: $LEAKHARNESS_FIXTURES; else c_fixtures/ beside the package (a
    checkout, an editable install); else the copy a wheel installs inside it (harness/c_fixtures)."""
    env = os.environ.get("LEAKHARNESS_FIXTURES")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "c_fixtures", here / "c_fixtures"):
        if (candidate / "_common").is_dir():
            return candidate
    return here.parent / "c_fixtures"


@dataclass(frozen=True)
class Expectation:
    """What one checker must report for one variant."""

    outcome: str  # "find", "clean" or "blind"
    category: str | None = None
    leak_kind: str | None = None
    function: str | None = None
    min_bytes: int | None = None
    reason: str | None = None  # for "blind": why the checker cannot see the bug
    # For a blind spot that hangs: give up after this many seconds instead of the pattern's
    # timeout.  A hang is never cached (it is an incomplete run), so it costs this on every run.
    timeout: float | None = None

    def describe(self) -> str:
        if self.outcome == "clean":
            return "clean"
        if self.outcome == "blind":
            return f"blind: {self.reason}"
        text = self.category or "any error"
        if self.leak_kind:
            text += f" ({self.leak_kind})"
        if self.min_bytes:
            text += f" of at least {self.min_bytes} B"
        if self.function:
            text += f" through {self.function}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Pattern:
    id: str
    title: str
    description: str
    directory: Path
    apis: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    per_operation: bool = False
    timeout: float = DEFAULT_TIMEOUT
    params: Mapping[str, Any] = field(default_factory=dict)
    expectations: Mapping[tuple[str, str], Expectation] = field(default_factory=dict)
    extra_checkers: tuple[str, ...] = ()  # non-default checkers the pattern states expectations for
    language: str = "c"  # "c", or "go" (a Go program calling C through cgo)
    secrets: tuple[str, ...] = ()  # hex canaries the template plants in its secrets (residue checker)

    @property
    def template_path(self) -> Path:
        return self.directory / TEMPLATE_NAMES[self.language]

    @property
    def source_suffix(self) -> str:
        return ".go" if self.language == "go" else ".c"

    def checkers(self) -> tuple[str, ...]:
        # A Go program runs under memcheck, go-asan and cgocheck only: the C checkers' builds
        # (gcc -fsanitize=...) do not apply to it, nor go-asan to a C program.
        if self.language == "go":
            return GO_CHECKERS
        return DEFAULT_CHECKERS + tuple(c for c in self.extra_checkers if c not in DEFAULT_CHECKERS)

    def expectation(self, variant: str, checker: str) -> Expectation:
        exact = self.expectations.get((variant, checker))
        if exact is not None:
            return exact
        inherited = self.expectations.get((variant, base_checker(checker)))
        if inherited is not None:
            return inherited
        if variant == "fixed":
            return Expectation("clean")
        return Expectation("blind", reason=f"{base_checker(checker)} does not look for this kind of bug")


def _expectation(raw: Mapping[str, Any], where: str) -> Expectation:
    if not isinstance(raw, Mapping):
        raise CatalogError(f"{where}: must be a table")
    unknown = set(raw) - {"category", "leak_kind", "function", "min_bytes", "blind", "clean", "timeout"}
    if unknown:
        raise CatalogError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    if "timeout" in raw and "blind" not in raw:
        raise CatalogError(f"{where}: timeout is for a blind spot that hangs (give the pattern's timeout instead)")
    if "blind" in raw:
        if not isinstance(raw["blind"], str) or not raw["blind"].strip():
            raise CatalogError(f"{where}: blind must say why, as a string")
        hang = raw.get("timeout")
        if hang is not None and (isinstance(hang, bool) or not isinstance(hang, (int, float)) or not hang > 0):
            raise CatalogError(f"{where}: timeout must be a number of seconds above 0, not {hang!r}")
        return Expectation("blind", reason=raw["blind"], timeout=float(hang) if hang is not None else None)
    if raw.get("clean"):
        return Expectation("clean")
    category = raw.get("category")
    if category == "any":  # any memory error or lost leak: a race whose symptom differs from run to run
        category = None
    elif category not in CATEGORIES:
        raise CatalogError(f"{where}: category must be one of {', '.join(CATEGORIES)} (or any), not {category!r}")
    leak_kind = raw.get("leak_kind")
    if leak_kind is not None and leak_kind not in LEAK_KINDS:
        raise CatalogError(f"{where}: leak_kind must be one of {', '.join(LEAK_KINDS)}")
    function = raw.get("function")
    if function is not None and not isinstance(function, str):
        raise CatalogError(f"{where}: function must be a string")
    min_bytes = raw.get("min_bytes")
    if min_bytes is not None and (isinstance(min_bytes, bool) or not isinstance(min_bytes, int) or min_bytes < 0):
        raise CatalogError(f"{where}: min_bytes must be a whole number of bytes")
    return Expectation("find", category=category, leak_kind=leak_kind,
                       function=raw.get("function"), min_bytes=min_bytes)


def load_pattern(directory: Path) -> Pattern:
    directory = Path(directory)
    meta_path = directory / METADATA_NAME
    if not meta_path.is_file():
        raise CatalogError(f"{directory}: no {METADATA_NAME}")
    try:
        meta = tomllib.loads(meta_path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{meta_path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise CatalogError(f"{meta_path}: cannot read: {exc.strerror or exc}") from None
    language = meta.get("language", "c")
    if language not in LANGUAGES:
        raise CatalogError(f"{meta_path}: language must be one of {', '.join(LANGUAGES)}, not {language!r}")
    template = TEMPLATE_NAMES[language]
    if not (directory / template).is_file():
        raise CatalogError(f"{directory}: no {template}")
    pid = meta.get("id", directory.name)
    if pid != directory.name or not _ID.match(pid):
        raise CatalogError(f"{meta_path}: id {pid!r} must match the folder name and be [a-z0-9_]+")
    for key in ("title", "description"):
        if not isinstance(meta.get(key), str) or not meta[key].strip():
            raise CatalogError(f"{meta_path}: needs a {key}")
    expectations: dict[tuple[str, str], Expectation] = {}
    extra: list[str] = []
    raw_expect = meta.get("expect", {})
    if not isinstance(raw_expect, Mapping):
        raise CatalogError(f"{meta_path}: expect must be a table ([expect.leaky.CHECKER] ...), not {raw_expect!r}")
    for variant, per_checker in raw_expect.items():
        if variant not in VARIANTS:
            raise CatalogError(f"{meta_path}: [expect.{variant}]: variant must be leaky or fixed")
        if not isinstance(per_checker, Mapping):
            raise CatalogError(f"{meta_path}: expect.{variant} must be a table of checkers "
                               f"([expect.{variant}.memcheck] ...), not {per_checker!r}")
        for checker, raw in per_checker.items():
            allowed = GO_CHECKERS if language == "go" else tuple(c for c in CHECKERS if c not in ("go-asan", "cgocheck"))
            if checker not in allowed:
                raise CatalogError(f"{meta_path}: [expect.{variant}.{checker}]: unknown checker for a "
                                   f"{language.upper() if language == 'c' else 'Go'} pattern (one of {', '.join(allowed)})")
            expectations[(variant, checker)] = _expectation(raw, f"{meta_path}: [expect.{variant}.{checker}]")
            if checker not in DEFAULT_CHECKERS and checker not in extra:
                extra.append(checker)
    for checker in (REQUIRED_GO_CHECKERS if language == "go" else REQUIRED_CHECKERS):
        if ("leaky", checker) not in expectations:
            raise CatalogError(f"{meta_path}: [expect.leaky.{checker}] is missing: say what it must find, "
                               f"or blind = \"why\"")
    timeout = meta.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise CatalogError(f"{meta_path}: timeout must be a number of seconds above 0, not {timeout!r}")
    for key in ("apis", "references"):
        value = meta.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise CatalogError(f"{meta_path}: {key} must be a list of strings, not {value!r}")
    if not isinstance(meta.get("params", {}), Mapping):
        raise CatalogError(f"{meta_path}: params must be a table (name = value), not {meta['params']!r}")
    if not isinstance(meta.get("per_operation", False), bool):
        raise CatalogError(f"{meta_path}: per_operation must be true or false")
    secrets = meta.get("secrets", [])
    if not isinstance(secrets, list) or not all(isinstance(s, str) and _SECRET.match(s) for s in secrets):
        raise CatalogError(f"{meta_path}: secrets must be a list of hex strings of 8 to 1024 bytes "
                           f"(the canaries the template plants), not {secrets!r}")
    if any(checker == "residue" for _variant, checker in expectations) and not secrets:
        raise CatalogError(f"{meta_path}: [expect.*.residue] needs secrets = [\"HEX\", ...]: "
                           f"the bytes the template plants in its keys")
    return Pattern(
        id=pid,
        title=meta["title"].strip(),
        description=meta["description"].strip(),
        directory=directory,
        apis=tuple(meta.get("apis", ())),
        references=tuple(meta.get("references", ())),
        per_operation=bool(meta.get("per_operation", False)),
        timeout=float(timeout),
        params=dict(meta.get("params", {})),
        expectations=expectations,
        extra_checkers=tuple(extra) if language == "c" else (),
        language=language,
        secrets=tuple(s.lower() for s in secrets),
    )


def load_catalog(root: Path | None = None, ids: list[str] | tuple[str, ...] | None = None) -> list[Pattern]:
    """Every pattern under root (default: the built-in catalog), sorted by id."""
    root = Path(root) if root else default_fixtures_dir()
    if not root.is_dir():
        raise CatalogError(f"{root}: no such fixtures directory")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    if ids:
        known = {p.name for p in folders}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise CatalogError(f"unknown pattern(s): {', '.join(unknown)} (see `leakharness list`)")
        folders = [p for p in folders if p.name in ids]
    return [load_pattern(p) for p in folders]


def common_dir(root: Path | None = None) -> Path:
    """The folder of headers every fixture may include (lh_common.h)."""
    return (Path(root) if root else default_fixtures_dir()) / "_common"
