"""The pattern catalog: read c_fixtures/<id>/pattern.toml into Patterns and Expectations.

A pattern folder holds its metadata (pattern.toml) and one jinja2 template that renders both
variants: pattern.c.j2 for a C pattern, pattern.go.j2 for a Go pattern (`language = "go"`),
whose program calls C and OpenSSL through cgo.  This module only reads and checks the
metadata; rendering is generate.py's job.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import checkers
from .errors import CatalogError
from .findings import CATEGORIES, LEAK_KINDS
from .validate import MAX_ATTEMPTS

VARIANTS = ("leaky", "fixed")
LANGUAGES = ("c", "go")
# Which checkers exist, which run on every pattern of a language, which a leaky variant must
# state an expectation for, and whose expectations a checker inherits (memcheck-O2 memcheck's):
# the registry's (harness/checkers).  A checker that is not a default runs where a pattern
# states an expectation for it.
TEMPLATE_NAME = "pattern.c.j2"
TEMPLATE_NAMES = {"c": "pattern.c.j2", "go": "pattern.go.j2"}
METADATA_NAME = "pattern.toml"
DEFAULT_TIMEOUT = 120.0
# A job's time limit may not exceed a day: a hang must end, and a number like 1e300 would not.
MAX_TIMEOUT = 86400.0

_ID = re.compile(r"^[a-z0-9_]+$")
_SECRET = re.compile(r"^(?:[0-9a-fA-F]{2}){8,1024}$")


def base_checker(checker: str) -> str:
    """The checker whose expectations this one inherits (memcheck-O2: memcheck), or itself."""
    return checkers.get(checker).expectation_base if checkers.known(checker) else checker


def seconds(value: Any, where: str) -> float:
    """A time limit from pattern.toml: a number of seconds above 0, at most MAX_TIMEOUT."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_TIMEOUT:
        raise CatalogError(f"{where} must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}, "
                           f"not {value!r}")
    return float(value)


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

    # "find", "clean", "blind" (the checker cannot see the bug: a whole run that misses it), or
    # "incomplete" (the run hangs or crashes by design, so it can never be whole: known incomplete)
    outcome: str
    category: str | None = None
    leak_kind: str | None = None
    function: str | None = None
    min_bytes: int | None = None
    reason: str | None = None  # for "blind" and "incomplete": why
    # For a run that hangs by design: give up after this many seconds instead of the pattern's
    # timeout.
    timeout: float | None = None
    # For a bug a checker sees only in the runs where threads happen to meet (a race memcheck
    # catches by its symptoms): a complete run that misses it is run again, up to this many runs
    # in all, and a catch in any of them is a catch.
    attempts: int | None = None

    def describe(self) -> str:
        if self.outcome == "clean":
            return "clean"
        if self.outcome == "blind":
            return f"blind: {self.reason}"
        if self.outcome == "incomplete":
            return f"known incomplete: {self.reason}"
        text = self.category or "any error"
        if self.leak_kind:
            text += f" ({self.leak_kind})"
        if self.min_bytes:
            text += f" of at least {self.min_bytes} B"
        if self.function:
            text += f" through {self.function}"
        if self.attempts and self.attempts > 1:
            text += f" (in one of up to {self.attempts} runs)"
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
        """The checkers it runs under: its language's defaults, then those it states expectations
        for (a Go program never runs under a C checker's build, nor a C one under go-asan)."""
        defaults = checkers.defaults(self.language)
        return defaults + tuple(c for c in self.extra_checkers if c not in defaults)

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
    unknown = set(raw) - {"category", "leak_kind", "function", "min_bytes", "blind", "incomplete", "clean", "timeout",
                          "attempts"}
    if unknown:
        raise CatalogError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    said = [k for k in ("blind", "incomplete", "clean") if k in raw] or ["category"] * ("category" in raw)
    if len(said) > 1 or (raw.get("clean") and "category" in raw):
        raise CatalogError(f"{where}: say one of blind, incomplete, clean or what to find, not "
                           f"{' and '.join(k for k in ('blind', 'incomplete', 'clean', 'category') if k in raw)}")
    if "timeout" in raw and "incomplete" not in raw:
        raise CatalogError(f"{where}: timeout is for a run that hangs by design, with incomplete = \"why\" "
                           f"(give the pattern's timeout instead)")
    attempts = raw.get("attempts")
    if attempts is not None:
        if "category" not in raw or any(k in raw for k in ("blind", "incomplete", "clean")):
            raise CatalogError(f"{where}: attempts is for a bug to find (with category), which a run may miss")
        if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= MAX_ATTEMPTS:
            raise CatalogError(f"{where}: attempts must be a whole number from 1 to {MAX_ATTEMPTS}")
    for outcome in ("blind", "incomplete"):
        if outcome not in raw:
            continue
        if not isinstance(raw[outcome], str) or not raw[outcome].strip():
            raise CatalogError(f"{where}: {outcome} must say why, as a string")
        hang = raw.get("timeout")
        if hang is not None:
            hang = seconds(hang, f"{where}: timeout")
        category = raw.get("category")  # the bug's category: what a report of it would be
        if category is not None and category not in CATEGORIES:
            raise CatalogError(f"{where}: category must be one of {', '.join(CATEGORIES)}, not {category!r}")
        return Expectation(outcome, category=category, reason=raw[outcome], timeout=hang)
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
                       function=raw.get("function"), min_bytes=min_bytes, attempts=attempts)


def load_pattern(directory: Path) -> Pattern:
    directory = Path(directory)
    meta_path = directory / METADATA_NAME
    if not meta_path.is_file():
        raise CatalogError(f"{directory}: no {METADATA_NAME}")
    import tomllib  # here: a `check` of the user's program reads no pattern, and starts sooner without it

    try:
        meta = tomllib.loads(meta_path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{meta_path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise CatalogError(f"{meta_path}: not valid TOML: nested too deep") from None
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
        allowed = checkers.for_language(language)
        for checker, raw in per_checker.items():
            if checker not in allowed:
                raise CatalogError(f"{meta_path}: [expect.{variant}.{checker}]: unknown checker for a "
                                   f"{language.upper() if language == 'c' else 'Go'} pattern (one of {', '.join(allowed)})")
            expectations[(variant, checker)] = _expectation(raw, f"{meta_path}: [expect.{variant}.{checker}]")
            if checker not in checkers.defaults(language) and checker not in extra:
                extra.append(checker)
    for checker in checkers.required(language):
        if ("leaky", checker) not in expectations:
            raise CatalogError(f"{meta_path}: [expect.leaky.{checker}] is missing: say what it must find, "
                               f"or blind = \"why\"")
    timeout = seconds(meta.get("timeout", DEFAULT_TIMEOUT), f"{meta_path}: timeout")
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
    wanting = [c for _variant, c in expectations if checkers.get(c).wants_secrets]
    if wanting and not secrets:
        raise CatalogError(f"{meta_path}: [expect.*.{wanting[0]}] needs secrets = [\"HEX\", ...]: "
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
        extra_checkers=tuple(extra),
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
