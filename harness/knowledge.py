"""The catalog as a knowledge base: which known OpenSSL mistake a finding looks like, and the
call that fixes it.

What is matched comes from the catalog's own runs, never from a table typed per pattern:
`learn()` reads a catalog run's results (every error of each leaky run that met the pattern's
expectation: the fixed variant, the same program but for the fix, is clean) and keeps, for every bug, its category and each of its stacks as far as the
program's own code: the library frames between the allocator and the program (by name) and the
calls on the program's own source line (a call into OpenSSL that tail-calls its allocator,
EVP_CIPHER_CTX_new, leaves no frame of its own: the line names it).  With them go the pattern's
header line (what the mistake is, and the fix) and the lines its fix removes and adds (the calls
that make the mistake, and the calls that fix it).  The result is shipped as data/knowledge.json,
made by `leakharness knowledge RESULTS --out harness/data/knowledge.json` from a run of the
catalog (`make knowledge`); tests/test_knowledge.py fails when a pattern's template changed since
(its digest), so a new or edited pattern teaches the matcher by being run once.
LEAKHARNESS_KNOWLEDGE names another file (a knowledge file learnt from one's own catalog).

`explain(finding)` matches a finding whose stacks pass through OpenSSL against every pattern's
bugs: the same category, and for each stack that category is about (the allocation of a leak;
the bad access or second free, and the first free, of a use after free or double free; the
free and the allocation of a secret left in memory) the same entry into OpenSSL (the call the
program's own code made), or at least one telling OpenSSL frame in common.  Where the program's
source can be read, a pattern whose mistake is a call (X509_STORE_CTX_cleanup where _free was
needed) matches only a program that makes that call, and one that makes it is preferred; and a
program whose source files on the bug's stacks never make the calls with which the pattern's
program makes its other bugs (OSSL_LIB_CTX_new, for a lone EVP_MD_CTX leak matched to
evp_md_fetch_leak) is told it looks like part of the pattern, which part, and which calls those
files do not make, not the pattern's own words.
Where no pattern matches, OpenSSL's documented ownership conventions name the call that should
have released the memory (`ownership()`): a *_new, *_dup, *_fetch, *_get1_* or d2i_* result is
the caller's to free with the matching *_free; OPENSSL_malloc and OPENSSL_strdup memory with
OPENSSL_free; an object allocated deep inside a call (EVP_PKEY_keygen) with its type's *_free;
a *_get0_* result is borrowed and must not be freed; set0 hands ownership over.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .errors import LeakHarnessError
from .findings import Finding, Frame
from .memo import MISSING, IdentityMemo
from .signatures import SOURCE_LIMIT, function_key, is_library, is_noise, is_startup, split_signature

SCHEMA = "leakharness/knowledge/1"
KNOWLEDGE_FILE = Path(__file__).parent / "data" / "knowledge.json"
KNOWLEDGE_ENV = "LEAKHARNESS_KNOWLEDGE"

# --- names ------------------------------------------------------------------------------------

_CALL = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(")
# A string, a character or a comment, whichever starts first ("https://" in a string is no comment).
_NOT_CODE = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|/\*.*?(?:\*/|$)|//[^\n]*', re.S)
_C_WORDS = frozenset({"if", "while", "for", "switch", "return", "sizeof", "defined", "do", "else", "case"})
# OpenSSL's public names: TYPE_verb (EVP_CIPHER_CTX_new, OPENSSL_free), d2i_/i2d_ codecs, safe stacks.
_OPENSSL_NAME = re.compile(r"^(?:[A-Z][A-Z0-9]*_[A-Za-z0-9_]+|(?:d2i|i2d|sk|ossl)_[A-Za-z0-9_]+)$")
# OpenSSL's allocation wrappers: noise to a signature, but what OPENSSL_malloc and friends are.
_WRAPPER = re.compile(r"^CRYPTO_(?:secure_)?(?:malloc|zalloc|realloc|clear_realloc|strdup|strndup|memdup|free|clear_free)$")
# Frames every kind of object passes through: shared by two bugs, they say nothing of their likeness.
_GENERIC = ("CRYPTO_", "OPENSSL_", "BUF_MEM_", "ASN1_", "ossl_", "OBJ_", "ERR_", "PEM_ASN1_", "PEM_bytes_")
_CGO_STUB = re.compile(r"^(?:main\.)?(?:_cgo_[0-9a-f]+)?_Cfunc_(\w+)$")
_SOURCE_SUFFIXES = (".c", ".h", ".cc", ".cpp", ".cxx", ".hh", ".hpp", ".inc", ".go")


def is_openssl_name(name: str) -> bool:
    return bool(_OPENSSL_NAME.match(name))


def code_of(text: str) -> str:
    """Source text without comments and string literals (a call named in a comment is no call)."""
    return _NOT_CODE.sub(lambda m: '""' if m.group(0)[:1] in "\"'" else " ", text)


def calls_in(text: str) -> list[str]:
    """The functions called in a piece of C (or Go) source, in order, each once."""
    seen: dict[str, None] = {}
    for name in _CALL.findall(code_of(text)):
        if name not in _C_WORDS:
            seen.setdefault(name, None)
    return list(seen)


_NAMESPACES = frozenset({"EVP", "OSSL", "OPENSSL", "CRYPTO", "PEM", "ASN1", "ERR", "OBJ"})
_MEMORY = re.compile(r"^(?:OPENSSL|CRYPTO)_(?:secure_)?(?:malloc|zalloc|realloc|clear_realloc|free|clear_free|"
                     r"strdup|strndup|memdup)$")


@functools.lru_cache(maxsize=4096)
def types_of(name: str) -> frozenset[str]:
    """The OpenSSL types a function works on, by its name: the words before its verb
    (EVP_CIPHER_CTX_reset: EVP_CIPHER_CTX), the type a codec, stack or get1 names after it
    (PEM_read_bio_X509, sk_X509_free, EVP_PKEY_get1_EC_KEY: X509, X509, EC_KEY and EVP_PKEY);
    "memory" for OPENSSL_malloc's family."""
    if _MEMORY.match(name):
        return frozenset({"memory"})
    words = name.split("_")
    found = set()
    start = 1 if words[0] in ("sk", "d2i", "i2d") else 0
    n = start
    while n < len(words) and (words[n][:1].isupper() or words[n][:1].isdigit()):
        n += 1
    lead = "_".join(words[start:n])
    if lead and lead not in _NAMESPACES:
        found.add(_CODEC_TYPES.get(lead, lead))
    m = n
    while m < len(words) and not (words[m][:1].isupper() or words[m][:1].isdigit()):
        m += 1
    tail = "_".join(words[m:])
    if tail and m > n and re.match(r"^[A-Z][A-Za-z0-9_]*$", tail):
        found.add(_CODEC_TYPES.get(tail, tail))
    return frozenset(found)


def related(a: str, b: str) -> bool:
    """Do two OpenSSL functions work on one type?  EVP_CIPHER_CTX_reset and EVP_CIPHER_CTX_new
    do, sk_X509_free and PEM_read_bio_X509 do; EVP_MD_free and EVP_CIPHER_CTX_new do not."""
    return bool(types_of(a) & types_of(b))


# --- reading the program's source ---------------------------------------------------------------

class Sources:
    """The program's source files, as a run compiled them where it kept a copy (a results
    folder's sources/), else, when `named` (the program was checked just now, or its logs are
    parsed: its sources are what signatures already read), where the stack names them.  A
    results folder given to `report` or `explain` is untrusted: only its kept copies are read,
    and only inside it.  Only source files are read (by their suffix), at most SOURCE_LIMIT
    bytes each."""

    def __init__(self, results_dir: str | os.PathLike | None = None, kept: Iterable = (),
                 named: bool | Sequence[Path] | None = None):
        """named: True (any file a stack names), False, or the folders such a file may be in."""
        self.results_dir = Path(results_dir).resolve() if results_dir else None
        self.kept = {getattr(s, "name", None): getattr(s, "path", None) for s in kept}
        self.named = self.results_dir is None if named is None else named
        self._texts: dict[str, str | None] = {}

    def _resolve(self, path: str) -> Path | None:
        if not path.endswith(_SOURCE_SUFFIXES):
            return None
        rel = self.kept.get(os.path.basename(path))
        if rel and self.results_dir is not None:
            candidate = (self.results_dir / rel).resolve()
            if candidate.is_relative_to(self.results_dir) and candidate.is_file():
                return candidate
        if not self.named:
            return None
        p = Path(path)
        if not p.is_absolute():
            return None
        if self.named is not True and not any(p.resolve().is_relative_to(Path(r).resolve()) for r in self.named):
            return None
        return p if p.is_file() else None

    def text(self, path: str | None) -> str | None:
        if not path:
            return None
        if path not in self._texts:
            found = self._resolve(path)
            text = None
            if found is not None:
                try:
                    if found.stat().st_size <= SOURCE_LIMIT:
                        text = found.read_bytes().decode("utf-8", "replace")
                except OSError:
                    text = None
            self._texts[path] = text
        return self._texts[path]

    def line(self, path: str | None, number: int | None) -> str | None:
        text = self.text(path)
        if text is None or not number:
            return None
        lines = text.splitlines()
        return lines[number - 1].strip() if 0 < number <= len(lines) else None


# --- a stack, as far as the program's own code ------------------------------------------------

@dataclass(frozen=True)
class Reach:
    """What a stack shows of a program's reach into OpenSSL: the library frames from the top of
    the stack down to the program's own frame (by name; None where the library has no name for
    it), the program's own function, and the calls on its source line."""

    frames: tuple[str | None, ...] = ()
    own: str | None = None
    calls: tuple[str, ...] = ()  # every function called on the own frame's line (or a cgo stub's C function)

    def to_dict(self) -> dict[str, Any]:
        return {"frames": list(self.frames), "own": self.own, "calls": list(self.calls)}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "Reach":
        if not isinstance(data, Mapping):
            raise LeakHarnessError(f"{where}: a stack must be an object")
        frames, own, calls = data.get("frames", []), data.get("own"), data.get("calls", [])
        if not isinstance(frames, list) or not all(f is None or isinstance(f, str) for f in frames):
            raise LeakHarnessError(f"{where}: frames must be a list of names or null")
        if own is not None and not isinstance(own, str):
            raise LeakHarnessError(f"{where}: own must be a name or null")
        if not isinstance(calls, list) or not all(isinstance(c, str) for c in calls):
            raise LeakHarnessError(f"{where}: calls must be a list of names")
        return cls(tuple(frames), own, tuple(calls))

    @functools.cached_property
    def entry(self) -> str | None:
        """The OpenSSL function the program's own code called: the call on its line that the frame
        below it confirms, else the line's first OpenSSL call (a tail call or a macro leaves no
        frame of that name: EVP_CIPHER_CTX_new is CRYPTO_zalloc's caller-less frame), else the
        frame's name (no source)."""
        adjacent = self.frames[-1] if self.frames else None
        calls = [c for c in self.calls if is_openssl_name(c)]
        for c in calls:
            if adjacent and (adjacent == c or adjacent.startswith(c + "_")
                             or (c.startswith("OPENSSL_") and adjacent.startswith("CRYPTO_"))):
                return c
        # PEM_read_bio_X509 is PEM_ASN1_read_bio by the time a frame has a name, EVP_PKEY_keygen
        # EVP_PKEY_generate: what the line calls is what the program did, the call on the
        # frame's type first when the line makes several.
        if adjacent:
            for c in calls:
                if related(c, adjacent):
                    return c
        if calls:
            return calls[0]
        # No line to read: the frame's name, unless it is an allocation wrapper a tail call left
        # alone (EVP_CIPHER_CTX_new's CRYPTO_zalloc): then what the program called is unknown.
        return None if adjacent and _WRAPPER.match(adjacent) else adjacent

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        """The entry, then the named library frames inward to the allocator."""
        out = [self.entry] if self.entry else []
        for name in reversed(self.frames):
            if name and name not in out:
                out.append(name)
        return tuple(out)

    @property
    def reaches_openssl(self) -> bool:
        return bool(self.names) and any(is_openssl_name(n) for n in self.names)


def _cgo_call(name: str | None) -> str | None:
    m = _CGO_STUB.match(name or "")
    return m.group(1) if m else None


def reach_of(stack: Sequence[Frame], sources: Sources | None = None) -> Reach:
    """A stack's Reach.  Frames of the allocator and libc are left out, OpenSSL's allocation
    wrappers kept (they are OPENSSL_malloc); a cgo stub (`_Cfunc_EVP_CIPHER_CTX_new`) is the Go
    program calling that C function."""
    frames: list[str | None] = []
    for fr in stack:
        if is_startup(fr):
            break
        name = function_key(fr.function) if fr.function else None
        cgo = _cgo_call(name)
        if cgo is not None:
            return Reach(tuple(frames), f"_Cfunc_{cgo}", (cgo,))
        if is_noise(fr):
            if name and _WRAPPER.match(name):
                frames.append(name)
            continue
        if is_library(fr):
            frames.append(name)
            continue
        line = sources.line(fr.file, fr.line) if sources is not None else None
        return Reach(tuple(frames), name or (fr.describe() if fr.address is not None else "??"),
                     tuple(calls_in(line)) if line else ())
    return Reach(tuple(frames), None, ())


# Which stacks say what a bug of each category is.
STACKS = {
    "leak": ("stack",),
    "use-after-free": ("stack", "freed"),
    "double-free": ("stack", "freed"),
    "invalid-free": ("stack", "freed"),
    "secret-residue": ("stack", "allocated"),
}


def reaches_of(finding: Finding, sources: Sources | None = None) -> dict[str, Reach]:
    out = {"stack": reach_of(finding.stack, sources)}
    for aux in finding.aux_stacks:
        if aux.label in ("freed", "allocated") and aux.label not in out:
            out[aux.label] = reach_of(aux.frames, sources)
    return out


def _language(reaches: Mapping[str, Reach]) -> str:
    return "go" if any(_cgo_call(r.own) for r in reaches.values()) else "c"


# --- the knowledge file -----------------------------------------------------------------------

@dataclass(frozen=True)
class Bug:
    """One bug a pattern's leaky variant produced: its category and its stacks' reach."""

    category: str
    reaches: Mapping[str, Reach]
    checkers: tuple[str, ...] = ()

    def key(self) -> str:
        return json.dumps([self.category, {k: v.to_dict() for k, v in sorted(self.reaches.items())}],
                          sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        return {"category": self.category, "checkers": list(self.checkers),
                "stacks": {k: v.to_dict() for k, v in sorted(self.reaches.items())}}


@dataclass(frozen=True)
class PatternKnowledge:
    id: str
    language: str
    digest: str  # of the template and the headers it includes: what the stacks were learnt from
    mistake: str  # the leaky variant's header: what the mistake is
    fix: str  # the fixed variant's header: what the fix does
    removed: tuple[str, ...]  # the code lines the fix removes (leaky -> fixed diff)
    added: tuple[str, ...]  # and adds
    bugs: tuple[Bug, ...] = ()

    @functools.cached_property
    def mistake_calls(self) -> frozenset[str]:
        """The OpenSSL calls the fix takes away: the mistake itself (X509_STORE_CTX_cleanup)."""
        removed = {c for line in self.removed for c in calls_in(line)}
        added = {c for line in self.added for c in calls_in(line)}
        return frozenset(c for c in removed - added if is_openssl_name(c))

    @functools.cached_property
    def fix_calls(self) -> tuple[str, ...]:
        """The OpenSSL calls the fix brings in (X509_STORE_CTX_free)."""
        removed = {c for line in self.removed for c in calls_in(line)}
        seen: dict[str, None] = {}
        for line in self.added:
            for c in calls_in(line):
                if c not in removed and is_openssl_name(c):
                    seen.setdefault(c, None)
        return tuple(seen)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "language": self.language, "digest": self.digest, "mistake": self.mistake,
                "fix": self.fix, "removed": list(self.removed), "added": list(self.added),
                "bugs": [b.to_dict() for b in self.bugs]}


@dataclass(frozen=True)
class Knowledge:
    patterns: tuple[PatternKnowledge, ...]
    openssl: str = ""  # the OpenSSL the runs used

    def get(self, pid: str) -> PatternKnowledge | None:
        return next((p for p in self.patterns if p.id == pid), None)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "openssl": self.openssl, "patterns": [p.to_dict() for p in self.patterns]}

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n"


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LeakHarnessError(f"{where}: must be a list of strings")
    return tuple(value)


def parse(data: Any, where: str) -> Knowledge:
    """A knowledge file's JSON, checked field by field; a bad one is one line naming it."""
    from .findings import CATEGORIES

    if not isinstance(data, Mapping) or data.get("schema") != SCHEMA:
        raise LeakHarnessError(f"{where}: not a leakharness knowledge file (schema {SCHEMA})")
    patterns = []
    raw_patterns = data.get("patterns")
    if not isinstance(raw_patterns, list):
        raise LeakHarnessError(f"{where}: patterns must be a list")
    for n, raw in enumerate(raw_patterns):
        at = f"{where}: patterns[{n}]"
        if not isinstance(raw, Mapping):
            raise LeakHarnessError(f"{at}: must be an object")
        for key in ("id", "language", "digest", "mistake", "fix"):
            if not isinstance(raw.get(key), str):
                raise LeakHarnessError(f"{at}: {key} must be a string")
        if not re.match(r"^[a-z0-9_]+$", raw["id"]):
            raise LeakHarnessError(f"{at}: id {raw['id']!r} is not a pattern id")
        bugs = []
        raw_bugs = raw.get("bugs", [])
        if not isinstance(raw_bugs, list):
            raise LeakHarnessError(f"{at}: bugs must be a list")
        for m, rb in enumerate(raw_bugs):
            bat = f"{at}.bugs[{m}]"
            if not isinstance(rb, Mapping) or rb.get("category") not in CATEGORIES:
                raise LeakHarnessError(f"{bat}: needs a category (one of {', '.join(CATEGORIES)})")
            stacks = rb.get("stacks", {})
            if not isinstance(stacks, Mapping) or not set(stacks) <= {"stack", "freed", "allocated"}:
                raise LeakHarnessError(f"{bat}: stacks must be an object of stack, freed, allocated")
            reaches = {k: Reach.from_dict(v, f"{bat}.stacks.{k}") for k, v in stacks.items()}
            bugs.append(Bug(rb["category"], reaches, _strings(rb.get("checkers", []), f"{bat}.checkers")))
        patterns.append(PatternKnowledge(raw["id"], raw["language"], raw["digest"], raw["mistake"], raw["fix"],
                                         _strings(raw.get("removed", []), f"{at}.removed"),
                                         _strings(raw.get("added", []), f"{at}.added"), tuple(bugs)))
    openssl = data.get("openssl", "")
    return Knowledge(tuple(patterns), openssl if isinstance(openssl, str) else "")


def knowledge_path() -> Path:
    env = os.environ.get(KNOWLEDGE_ENV)
    return Path(env) if env else KNOWLEDGE_FILE


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int) -> Knowledge:
    try:
        from .validate import loads_json

        data = loads_json(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise LeakHarnessError(f"{path}: cannot read the knowledge file: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise LeakHarnessError(f"{path}: not valid JSON: {exc}") from None
    return parse(data, path)


def load(path: str | os.PathLike | None = None) -> Knowledge:
    """The knowledge file (LEAKHARNESS_KNOWLEDGE, else the one shipped), read once per change."""
    target = Path(path) if path else knowledge_path()
    try:
        mtime = target.stat().st_mtime_ns
    except OSError as exc:
        if path is None and not os.environ.get(KNOWLEDGE_ENV):
            return Knowledge(())  # a package without the file: no pattern to match, conventions still apply
        raise LeakHarnessError(f"{target}: cannot read the knowledge file: {exc.strerror or exc}") from None
    return _load(str(target), mtime)


# --- learning from a catalog run --------------------------------------------------------------

_HEADER = re.compile(r"^\s*(?:/\*|//)\s*[a-z0-9_]+\s*\((?:leaky|fixed)\)\s*:\s*(.*?)\s*(?:\*/)?\s*$")


def header_of(source: str) -> str:
    """`X509_STORE_CTX_cleanup does not free the context` from a rendered variant's first line
    (`/* ID (leaky): ... */`, the catalog's convention, checked by tests/test_fixture_headers.py)."""
    first = source.splitlines()[0] if source else ""
    m = _HEADER.match(first)
    return (m.group(1) if m else "").rstrip(".")


def digest_of(pattern) -> str:
    """What a pattern's stacks depend on: its template and parameters, and for C the common
    header it includes."""
    from .catalog import common_dir

    h = hashlib.sha256(pattern.template_path.read_bytes())
    h.update(json.dumps(dict(pattern.params), sort_keys=True, default=str).encode())
    if pattern.language == "c":
        common = common_dir(pattern.directory.parent) / "lh_common.h"
        if common.is_file():
            h.update(common.read_bytes())
    return h.hexdigest()[:16]


def _diff_lines(pattern) -> tuple[tuple[str, ...], tuple[str, ...]]:
    from .generate import diff

    removed, added = [], []
    for line in diff(pattern).splitlines():
        if line.startswith(("---", "+++")):
            continue
        code = " ".join(line[1:].split())
        if not code:
            continue
        if line.startswith("-"):
            removed.append(code)
        elif line.startswith("+"):
            added.append(code)
    return tuple(removed), tuple(added)


def learn(results, results_dir: Path, patterns: Sequence) -> tuple[Knowledge, list[str]]:
    """Knowledge from a catalog run: every pattern the results hold a leaky run of (rendered
    again now: results of another version of a template are refused), with the bugs each
    checker that met its expectation found.  Returns it and the ids of the patterns the results
    did not hold."""
    from .catalog import Expectation
    from .generate import render
    from .grouping import group_findings
    from .judge import errors_of, matching

    from .catalog import common_dir

    learnt, missing = [], []
    jobs = [j for j in results.jobs if j.variant == "leaky"]
    common = common_dir(patterns[0].directory.parent) if patterns else Path(".")
    for pattern in patterns:
        pjobs = [j for j in jobs if j.pattern == pattern.id]
        if not pjobs:
            missing.append(pattern.id)
            continue
        leaky_now = render(pattern, "leaky")
        bugs: dict[str, Bug] = {}
        for job in pjobs:
            kept = next((s for s in job.sources if s.name == f"{pattern.id}-leaky{pattern.source_suffix}"), None)
            if kept is not None:
                try:
                    ran = (Path(results_dir) / kept.path).read_text(encoding="utf-8")
                except OSError:
                    ran = None
                if ran is not None and ran != leaky_now:
                    raise LeakHarnessError(f"{results_dir}: the run of {pattern.id} compiled another version of its "
                                           f"template than today's: run it again")
            if job.verdict != "pass" or not job.expected:
                continue
            fields = {f.name for f in dataclasses.fields(Expectation)}
            expect = Expectation(**{k: v for k, v in job.expected.items() if k in fields})
            if expect.outcome != "find":
                continue
            # The run's kept sources, and the catalog's common header the programs include.
            sources = Sources(results_dir, job.sources, named=[common])
            # Every error of a leaky run that met its expectation is the pattern's bug: the fixed
            # variant, the same program but for the fix, is clean under every checker.
            found = [f for f in errors_of(job.findings) if not f.suppressed] if matching(expect, job.findings) else []
            for group in group_findings(found):
                reaches = reaches_of(group.root, sources)
                wanted = STACKS.get(group.root.category, ("stack",))
                reaches = {k: r for k, r in reaches.items() if k in wanted and (r.frames or r.calls)}
                if not reaches:
                    continue
                bug = Bug(group.root.category, reaches)
                old = bugs.get(bug.key())
                checkers = tuple(sorted(set((old.checkers if old else ()) + (job.tool,))))
                bugs[bug.key()] = dataclasses.replace(bug, checkers=checkers)
        removed, added = _diff_lines(pattern)
        learnt.append(PatternKnowledge(
            pattern.id, pattern.language, digest_of(pattern), header_of(leaky_now),
            header_of(render(pattern, "fixed")), removed, added,
            tuple(sorted(bugs.values(), key=Bug.key))))
    openssl = next((t.get("version", "") for t in results.tools if isinstance(t, dict) and t.get("name") == "openssl"), "")
    return Knowledge(tuple(learnt), str(openssl)), missing


# --- OpenSSL's ownership conventions ------------------------------------------------------------

# Names whose type is not in them: the documented types of d2i_/PEM_read codecs and of the
# functions that return a new reference under an older name.
_CODEC_TYPES = {"PrivateKey": "EVP_PKEY", "PUBKEY": "EVP_PKEY", "AutoPrivateKey": "EVP_PKEY",
                "PublicKey": "EVP_PKEY", "Parameters": "EVP_PKEY", "KeyParams": "EVP_PKEY",
                "X509_AUX": "X509", "RSAPrivateKey": "RSA", "RSAPublicKey": "RSA", "RSA_PUBKEY": "RSA",
                "DSAPrivateKey": "DSA", "DSA_PUBKEY": "DSA", "ECPrivateKey": "EC_KEY", "EC_PUBKEY": "EC_KEY"}
_GET1 = {"peer_certificate": "X509", "peer_cert": "X509", "certificate": "X509", "pubkey": "EVP_PKEY"}
_NEW_REFERENCE = {"SSL_get_peer_certificate": "X509", "X509_get_pubkey": "EVP_PKEY", "X509_REQ_get_pubkey": "EVP_PKEY",
                  "X509_CRL_get_issuer": None}
# Calls that make an object of a type deep inside: the documented result of key generation.
_PRODUCES = {"EVP_PKEY_keygen": "EVP_PKEY", "EVP_PKEY_generate": "EVP_PKEY", "EVP_PKEY_paramgen": "EVP_PKEY",
             "EVP_PKEY_fromdata": "EVP_PKEY", "EVP_PKEY_Q_keygen": "EVP_PKEY", "EVP_RSA_gen": "EVP_PKEY",
             "EVP_EC_gen": "EVP_PKEY", "EVP_PKEY_derive_init": None}
# Results that are OpenSSL_malloc'd memory: freed with OPENSSL_free.
_OPENSSL_MEMORY = re.compile(r"^(?:OPENSSL_(?:malloc|zalloc|realloc|clear_realloc|strdup|strndup|memdup|"
                             r"buf2hexstr|hexstr2buf)|CRYPTO_(?:malloc|zalloc|strdup|strndup|memdup)|"
                             r"X509_NAME_oneline|BN_bn2hex|BN_bn2dec|i2d_\w+|i2s_\w+|i2o_\w+|"
                             r"EVP_PKEY_get1_encoded_public_key|OBJ_nid2ln_dup)$")


@dataclass(frozen=True)
class Rule:
    call: str  # what should have released the memory
    text: str  # why, in OpenSSL's terms


def _free_of(type_: str) -> str:
    return f"{type_}_free"


def _a(type_: str) -> str:
    """The article before a type's name, read as its letters: an EVP_MAC, a BIO."""
    return f"an {type_}" if type_[:1] in "AEFHILMNORSX" else f"a {type_}"


def ownership_rule(name: str, entry: bool) -> Rule | None:
    """The documented owner of what `name` returned (entry: the program called it itself)."""
    if _OPENSSL_MEMORY.match(name):
        if name.startswith("CRYPTO_") and not entry:
            return None  # an allocation wrapper inside a call: the object's constructor decides
        what = "i2d output" if name.startswith("i2d_") else f"{name}'s result" if entry else "memory"
        return Rule("OPENSSL_free", f"{what} is OPENSSL_malloc'd memory the caller frees")
    m = re.match(r"^(d2i|PEM_read_bio|PEM_read)_(\w+?)(?:_ex)?$", name)
    if m:
        type_ = _CODEC_TYPES.get(m.group(2), m.group(2))
        return Rule(_free_of(type_), f"{name} returns {_a(type_)} the caller owns")
    if name in _NEW_REFERENCE and _NEW_REFERENCE[name]:
        type_ = _NEW_REFERENCE[name]
        return Rule(_free_of(type_), f"{name} returns a reference to {_a(type_)} (get1) the caller owns")
    m = re.match(r"^(\w+?)_get1_(\w+)$", name)
    if m:
        what = m.group(2)
        type_ = _GET1.get(what) or (what if re.match(r"^[A-Z][A-Z0-9_]*$", what) else None)
        if type_:
            return Rule(_free_of(type_), f"{name} returns a new reference (get1) the caller owns")
        return None
    m = re.match(r"^(sk_\w+?)_(?:new|new_null|new_reserve|dup|deep_copy)$", name)
    if m:
        elem = m.group(1)[3:]
        return Rule(f"{m.group(1)}_pop_free", f"{name} makes a stack the caller owns: {m.group(1)}_free frees "
                                              f"the stack, {m.group(1)}_pop_free(sk, {elem}_free) its elements too")
    m = re.match(r"^(\w+?)_(?:new|dup|fetch)(?:_\w+)?$", name)
    if m and not name.startswith(("ossl_", "ASN1_item_", "CRYPTO_THREAD_", "OPENSSL_")):
        type_ = m.group(1)
        verb = "fetches" if "_fetch" in name else "makes"
        how = f"{name} {verb} {_a(type_)} the caller owns" if entry else f"memory of {_a(type_)} ({name})"
        return Rule(_free_of(type_), how)
    if name in _PRODUCES and _PRODUCES[name]:
        type_ = _PRODUCES[name]
        return Rule(_free_of(type_), f"{name} makes {_a(type_)} the caller owns")
    return None


def ownership(reach: Reach) -> Rule | None:
    """The call that should have freed a leak's memory, by OpenSSL's conventions: the first of
    the entry and the named frames inward (the outermost constructor: EVP_PKEY_new inside
    EVP_PKEY_keygen) that has a documented owner."""
    for n, name in enumerate(reach.names):
        entry = n == 0 and name == reach.entry
        rule = ownership_rule(name, entry)
        if rule is None:
            continue
        if not entry and reach.entry:
            made = _a(rule.call[:-len("_free")]) if rule.call != "OPENSSL_free" else "OPENSSL_malloc'd memory"
            rule = Rule(rule.call, f"{reach.entry} made {made} ({name}) the caller owns")
        return rule
    return None


def misuse(category: str, reaches: Mapping[str, Reach], source_calls: frozenset[str] | None) -> Rule | None:
    """A use after free or double free by OpenSSL's conventions: which call freed it first, and
    why the other one must not (a borrowed get0 result; an object handed over with set0)."""
    if category not in ("use-after-free", "double-free", "invalid-free"):
        return None
    freed, again = reaches.get("freed"), reaches.get("stack")
    first = freed.entry if freed else None
    if not first:
        return None
    second = again.entry if again else None
    calls = source_calls or frozenset()
    borrowed = sorted(c for c in calls if "_get0_" in c)
    handed = sorted(c for c in calls if "_set0_" in c or c.endswith("_set0") or c in ("SSL_set_bio", "SSL_set0_rbio",
                    "SSL_set0_wbio", "EVP_PKEY_assign", "SSL_CTX_add_extra_chain_cert") or "_add0_" in c or "_push1" in c
                    or "_assign" in c)
    done = "used" if category == "use-after-free" else "freed"
    head = f"{first} freed it first, then {second or 'the program'} {done} it again"
    if borrowed:
        return Rule(first, f"{head}: a *_get0_* result ({borrowed[0]}) is borrowed and must not be freed; "
                           f"its owner frees it (take a get1 reference to own one)")
    if handed:
        return Rule(first, f"{head}: an object handed over with {handed[0]} (set0) belongs to its new owner, "
                           f"which frees it; do not free it yourself")
    return Rule(first, f"{head}: free it once, and clear the pointer")


# --- matching ---------------------------------------------------------------------------------

def _distinctive(name: str) -> bool:
    return not name.startswith(_GENERIC)


def _base(name: str) -> str:
    return name[:-3] if name.endswith("_ex") else name  # X509_STORE_CTX_new_ex is X509_STORE_CTX_new


def _unmade(p: PatternKnowledge, category: str, own: Reach, source_calls: frozenset[str] | None) -> tuple[str, ...]:
    """The calls with which the pattern's program makes its other bugs of this category and that
    the program's source files read never make; () when that cannot be told (none read, or the
    finding's own call not found in them: a macro, another spelling) or when there are none."""
    if source_calls is None or not own.entry or own.entry not in source_calls:
        return ()
    unmade: dict[str, None] = {}
    for bug in p.bugs:
        if bug.category != category:
            continue
        for reach in bug.reaches.values():
            e = reach.entry
            if e and is_openssl_name(e) and _distinctive(e):
                base = _base(e)  # X509_STORE_CTX_new_ex is made by a program calling X509_STORE_CTX_new
                if base not in source_calls and base + "_ex" not in source_calls:
                    unmade.setdefault(e, None)
    return tuple(unmade)


def _reach_score(a: Reach, b: Reach) -> int:
    """3 for the same entry into OpenSSL, plus 1 for each telling frame in common (at most 2)."""
    score = 3 if a.entry and _base(a.entry) == _base(b.entry or "") else 0
    common = {n for n in a.names if _distinctive(n)} & {n for n in b.names if _distinctive(n)}
    common.discard(a.entry if score else None)
    return score + min(len(common), 2)


@dataclass(frozen=True)
class Explanation:
    """What the catalog says of a finding: the pattern it looks like (and as likely ones), its
    mistake and fix, and the call that should release the memory; or, with no pattern, the
    ownership convention that names that call."""

    pattern: str | None
    others: tuple[str, ...] = ()
    mistake: str = ""
    fix: str = ""
    call: str | None = None
    rule: str = ""
    # The calls of the pattern's program that make its other bugs and that this program never
    # makes: the finding is like one part of the pattern, and `mistake` says which.
    partial: tuple[str, ...] = ()

    def line(self) -> str:
        if self.pattern:
            also = f" (or {', '.join(self.others)})" if self.others else ""
            what = f": {self.mistake}" if self.mistake else ""
            # The pattern's whole fix is no advice for a program like one part of it.
            fix = self.fix if not self.partial else ""
            todo = f"call {self.call}" if self.call else (f"the fix: {fix}" if fix else "")
            like = "looks like part of" if self.partial else "looks like"
            return (f"{like} {self.pattern}{also}{what}" + (f"; {todo}" if todo else "")
                    + f". `leakharness show {self.pattern} --diff`")
        return f"{self.rule} (OpenSSL's ownership rules; no catalog pattern matches)"

    def to_dict(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "others": list(self.others), "mistake": self.mistake, "fix": self.fix,
                "call": self.call, "rule": self.rule, "partial": list(self.partial), "line": self.line()}


def _is_bug(finding: Finding) -> bool:
    """A root cause to explain: a memory error or a definite leak (suppressed or not).  An
    indirect leak is freed with the definite one that owns it: explaining it on its own would
    name the wrong call (the EVP_CIPHER a context fetched, for a context never freed)."""
    if finding.category == "leak":
        return finding.leak_kind == "definite"
    return finding.is_error or finding.suppressed is not None


class Explainer:
    """Explains findings against one knowledge base, reading sources through one Sources (a
    job's), remembering what it worked out for a stack it saw before."""

    def __init__(self, knowledge: Knowledge | None = None, sources: Sources | None = None):
        self.knowledge = knowledge if knowledge is not None else load()
        self.sources = sources if sources is not None else Sources()
        self._memo: dict[tuple, Explanation | None] = {}
        self._by_stack = IdentityMemo()  # stack (tagged with the category) -> what explain said
        self._file_calls: dict[str, frozenset[str] | None] = {}

    def _calls_of_files(self, finding: Finding) -> tuple[frozenset[str] | None, tuple[str, ...]]:
        """Every call in the program's own source files the finding's stacks name, and those
        files' names; (None, ()) when none of them can be read."""
        files = []
        for stack in (finding.stack, *(a.frames for a in finding.aux_stacks)):
            for fr in stack:
                if fr.file and not is_library(fr) and fr.file not in files:
                    files.append(fr.file)
        found: set[str] | None = None
        read: list[str] = []
        for path in files[:8]:
            if path not in self._file_calls:
                text = self.sources.text(path)
                self._file_calls[path] = frozenset(calls_in(text)) if text is not None else None
            calls = self._file_calls[path]
            if calls is not None:
                found = (found or set()) | calls
                read.append(os.path.basename(path))
        return (frozenset(found) if found is not None else None), tuple(dict.fromkeys(read))

    def explain(self, finding: Finding) -> Explanation | None:
        """The explanation of a bug whose stacks pass through OpenSSL, or None."""
        if not _is_bug(finding):
            return None
        stack = finding.stack
        if not finding.aux_stacks:
            # A parser's findings share their stack tuples: by identity first (hashing a stack
            # hashes every frame, and a log of 50,000 leaks asks 50,000 times).
            known = self._by_stack.get(stack, finding.category)
            if known is not MISSING:
                return known
        key = (finding.category, stack, tuple((a.label, a.frames) for a in finding.aux_stacks))
        if key not in self._memo:
            self._memo[key] = self._explain(finding)
        found = self._memo[key]
        if not finding.aux_stacks:
            self._by_stack.put(stack, found, finding.category)
        return found

    def explain_reaches(self, category: str, reaches: Mapping[str, Reach],
                        source_calls: frozenset[str] | None, read: Sequence[str] = ()) -> Explanation | None:
        """read: the names of the source files source_calls comes from."""
        wanted = STACKS.get(category, ("stack",))
        mine = {k: r for k, r in reaches.items() if k in wanted}
        if not any(r.reaches_openssl for r in mine.values()):
            return None
        language = _language(reaches)
        scored: list[tuple[int, str, PatternKnowledge]] = []
        for p in self.knowledge.patterns:
            best = 0
            for bug in p.bugs:
                if bug.category != category:
                    continue
                total, compared = 0, 0
                for k in wanted:
                    a, b = mine.get(k), bug.reaches.get(k)
                    if a is None or b is None or not a.names or not b.names:
                        continue
                    s = _reach_score(a, b)
                    if s == 0:
                        total = 0
                        break
                    total, compared = total + s, compared + 1
                best = max(best, total if compared else 0)
            if not best:
                continue
            if source_calls is not None:
                # A mistake made with a call on the type the pattern's program reached for
                # (X509_STORE_CTX_cleanup, for a context from X509_STORE_CTX_new): a program
                # that never makes that call is not making that mistake.
                entries = {r.entry for b in p.bugs for r in b.reaches.values() if r.entry}
                mistakes = [m for m in p.mistake_calls if any(related(m, e) for e in entries)]
                if any(m not in source_calls for m in mistakes):
                    continue  # the mistake is a call this program does not make
                best += 2 * len(mistakes)
            best += 1 if p.language == language else 0
            scored.append((best, p.id, p))
        rule = ownership(mine["stack"]) if category == "leak" and "stack" in mine else None
        if category != "leak":
            rule = misuse(category, mine, source_calls)
        if scored:
            scored.sort(key=lambda t: (-t[0], t[1]))
            top = scored[0][0]
            chosen = scored[0][2]
            others = tuple(pid for s, pid, _ in scored[1:] if s == top)
            call = self._fix_call(chosen, rule, category)
            own = mine.get("stack")
            # A leak pattern's words list what its program leaks; a misuse pattern's (get0_freed)
            # say what the misuse is, true whatever else the program calls.
            partial = _unmade(chosen, category, own, source_calls) if own is not None and category == "leak" else ()
            if partial:
                # The pattern's own words would name what this program does not do ("fetched
                # digest, digest context and library context never freed" for a program that
                # only leaks an EVP_MD_CTX): say which part it is like, and what it lacks.
                where = f" in {', '.join(read)}" if read else ""
                return Explanation(chosen.id, others,
                                   f"its {own.entry} leak, not its {', '.join(partial)} (no such call{where})",
                                   chosen.fix, call, partial=partial)
            return Explanation(chosen.id, others, chosen.mistake, chosen.fix, call)
        if rule is None:
            return None
        advice = f"{rule.text}: call {rule.call}" if category == "leak" else rule.text
        return Explanation(None, (), call=rule.call, rule=advice)

    @staticmethod
    def _fix_call(p: PatternKnowledge, rule: Rule | None, category: str) -> str | None:
        """The call the pattern's fix makes that releases this memory: a fix call on the type the
        ownership rule names (BIO_free_all for a BIO, sk_X509_pop_free for X509s), else the rule's
        own call (a leak), else the fix's only release call."""
        releasing = [c for c in p.fix_calls if re.search(r"_free(?:_all)?$|_pop_free$|_clear_free$", c)]
        if rule is not None and category == "leak":
            type_ = rule.call[:-len("_free")] if rule.call.endswith("_free") else None
            for c in releasing:
                if c == rule.call or (type_ and type_ != "OPENSSL" and (c.startswith(type_ + "_")
                                                                     or f"_{type_}_" in c)):
                    return c
            return rule.call
        return releasing[0] if len(releasing) == 1 else None

    def _explain(self, finding: Finding) -> Explanation | None:
        reaches = reaches_of(finding, self.sources)
        wanted = STACKS.get(finding.category, ("stack",))
        needs_source = any(r.reaches_openssl for k, r in reaches.items() if k in wanted)
        source_calls, read = self._calls_of_files(finding) if needs_source else (None, ())
        return self.explain_reaches(finding.category, reaches, source_calls, read)


def explain(finding: Finding, sources: Sources | None = None) -> Explanation | None:
    return Explainer(sources=sources).explain(finding)


def explain_signature(signature: str, knowledge: Knowledge | None = None) -> Explanation | None:
    """A signature alone (`leak:X509_STORE_CTX_new_ex>verify>main@1a2b3c`): its frames, those
    with OpenSSL's names taken for the library's, the first other one for the program's own."""
    stem, _ = split_signature(signature.strip())
    category, sep, frames_text = stem.partition(":")
    from .findings import CATEGORIES

    if not sep or category not in CATEGORIES or not frames_text:
        raise LeakHarnessError(f"{signature!r}: not a signature (CATEGORY:FRAME>FRAME>FRAME[@HASH]) "
                               f"nor a results file")
    frames = []
    for name in frames_text.split(">"):
        lib = is_openssl_name(name)
        frames.append(Frame(function=name, object="libcrypto.so.3" if lib else None))
    finding = Finding(tool="signature", kind="signature", category=category,
                      leak_kind="definite" if category == "leak" else None, stack=tuple(frames))
    return Explainer(knowledge).explain(finding)


# --- a pattern at length ------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def details(pattern_id: str, fixtures: str | None = None) -> dict[str, Any] | None:
    """What the catalog says of a pattern at length (title, description, references and the
    leaky-to-fixed diff), for the report's box, SARIF's rule help and `explain`; None when the
    catalog has no such pattern (a knowledge file learnt from another catalog)."""
    from .catalog import load_catalog
    from .generate import diff

    try:
        (pattern,) = load_catalog(Path(fixtures) if fixtures else None, [pattern_id])
        fix = diff(pattern)
    except (LeakHarnessError, OSError, ValueError):
        return None
    return {"id": pattern.id, "title": pattern.title, "description": pattern.description,
            "references": list(pattern.references), "apis": list(pattern.apis), "diff": fix}
