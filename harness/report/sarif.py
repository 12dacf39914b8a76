"""SARIF 2.1.0 for code scanning: one rule per category, one result per finding, located at
the program's own frame nearest the allocation (or the bad access), fingerprinted by the
signature so a re-run does not open duplicate alerts.  What each job was (judge.outcome: a
failed or stale expectation, a job not fully checked) is the run's invocation: one notification
per such job, and executionSuccessful false when any failed.  A frame in a file compiled from the
build cache points at the user's own file it was copied from, or at the copy the run kept in
the results folder (uriBaseId RESULTS), never into the cache.  A bug the catalog knows
(knowledge.py) says so in its message ("looks like x509_store_ctx_cleanup_not_free: ...; call
X509_STORE_CTX_free"), and its category's rule help carries each such pattern's description,
references and fix: the rule ids stay the categories, so alerts keep their identity when the
knowledge grows."""

from __future__ import annotations

import functools
import json
import urllib.parse
from json.encoder import encode_basestring_ascii
from pathlib import Path

from .. import __version__
from ..findings import CATEGORIES
from ..judge import outcome
from ..memo import MISSING, IdentityMemo
from ..signatures import own_frame_of, signature_stack
from ..results import JobRecord, Results
from .paths import build_cache_name

MAX_RESULTS = 25_000  # GitHub code scanning's limit per run
DESCRIPTIONS = {
    "leak": "Memory allocated and never freed (definitely or indirectly lost).",
    "use-after-free": "Memory read or written after it was freed.",
    "double-free": "Memory freed twice.",
    "invalid-free": "free() of an address that was not returned by an allocator.",
    "mismatched-free": "Memory released with a deallocator that does not match its allocator.",
    "invalid-read": "Read of memory that is not addressable.",
    "invalid-write": "Write to memory that is not addressable.",
    "buffer-overflow": "Access outside the bounds of a heap, stack or global buffer.",
    "uninitialized": "A decision or system call depends on uninitialised memory.",
    "data-race": "Two threads access the same memory without synchronisation.",
    "lock-order": "Two locks taken in opposite orders by different code paths: a deadlock waiting to happen.",
    "undefined-behavior": "Undefined behaviour at run time.",
    "crash": "The program was killed by a signal.",
    "secret-residue": "Secret material left in freed memory.",
    "other": "Another memory error.",
}


def _rule_name(category: str) -> str:
    return "".join(part.capitalize() for part in category.split("-"))


@functools.lru_cache(maxsize=4096)
def _uri(path: str) -> tuple[str, str | None]:
    p = Path(path)
    try:
        rel = p.resolve().relative_to(Path.cwd().resolve())
        return urllib.parse.quote(rel.as_posix()), "%SRCROOT%"
    except (ValueError, OSError):
        pass
    if p.is_absolute():
        return "file://" + urllib.parse.quote(p.as_posix()), None
    return urllib.parse.quote(p.as_posix()), "%SRCROOT%"


def _location(job: JobRecord, path: str) -> tuple[str, str | None]:
    """(uri, uriBaseId) for a frame's file: the user's file a build-cache copy came from, or
    the copy the run kept (relative to the results folder), or the path itself."""
    name = build_cache_name(path)
    for src in job.sources:
        if (name and src.name == name) or (src.origin and src.origin == path):
            if src.origin:
                return _uri(src.origin)
            return urllib.parse.quote(Path(src.path).as_posix()), "RESULTS"
    return _uri(path)


def document(results: Results, out_dir: Path | None = None) -> dict:
    present = {f.category for j in results.jobs for f in j.findings if f.is_error or f.suppressed}  # one pass
    used = [c for c in CATEGORIES if c in present]
    from ..knowledge import Explainer, Sources

    index = {c: i for i, c in enumerate(used)}
    rules = [{"id": c, "name": _rule_name(c), "shortDescription": {"text": DESCRIPTIONS.get(c, c)},
              "defaultConfiguration": {"level": "error"}} for c in used]
    known_by_category: dict[str, dict[str, object]] = {}
    out = []
    # What a finding's stack gives (its own frame, the words for where it is) is found once per
    # stack: the parsers share equal stacks, and a big log repeats them.
    by_stack = IdentityMemo()  # a stack -> (its own frame, where it is)
    for job in results.jobs:
        explainer = Explainer(sources=Sources(out_dir, job.sources))
        for f in job.findings:
            if not (f.is_error or f.suppressed):
                continue
            if len(out) >= MAX_RESULTS:
                break
            named_by = signature_stack(f.stack, f.aux_stacks)  # f.stack itself, unless a Go caller names it
            seen = by_stack.get(named_by)
            if seen is MISSING:
                seen = by_stack.put(named_by, (own_frame_of(named_by), f.where()))
            frame, frames = seen
            where = f"{job.pattern}" + (f" ({job.variant})" if job.variant else "") + f" under {job.tool}"
            known = explainer.explain(f)
            if known is not None:
                known_by_category.setdefault(f.category, {}).setdefault(known.pattern or known.rule, known)
            result = {
                "ruleId": f.category,
                "ruleIndex": index[f.category],
                "level": "error",
                "message": {"text": f"{f.summary(frames)} in {where}" + (f". {known.line()}" if known else "")},
                "partialFingerprints": {"leakharness/signature/v2": f.signature},  # v2: signatures carry the line hash
                "properties": {"tool": f.tool, "kind": f.kind, "pattern": job.pattern, "variant": job.variant,
                               "checker": job.tool, "bytes": f.bytes, "signature": f.signature},
            }
            if frame is not None:
                uri, base = _location(job, frame.file)
                location = {"artifactLocation": {"uri": uri}, "region": {"startLine": frame.line}}
                if base:
                    location["artifactLocation"]["uriBaseId"] = base
                result["locations"] = [{"physicalLocation": location}]
            if f.suppressed:
                result["suppressions"] = [{"kind": "external", "justification": f.suppressed}]
            if known is not None:
                result["properties"]["knowledge"] = known.to_dict()
            out.append(result)
    for rule in rules:
        rule["help"] = _rule_help(rule["id"], known_by_category.get(rule["id"], {}))
    notes, failing = _notifications(results)
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "leakharness", "version": __version__,
                                "informationUri": "https://github.com/leakharness/leakharness",
                                "rules": rules}},
            "results": out,
            "invocations": [{"executionSuccessful": not failing, "toolExecutionNotifications": notes[:MAX_RESULTS]}],
            "properties": {"started": results.started, "finished": results.finished},
            **({"originalUriBaseIds": {"RESULTS": {"uri": Path(out_dir).resolve().as_uri() + "/"}}}
               if out_dir is not None else {}),
        }],
    }


def _notifications(results: Results) -> tuple[list[dict], bool]:
    """The run's notifications (each job that failed or was not fully checked, with the one
    outcome judge decided) and whether any job failed."""
    notes = []
    failing = False
    for job in results.jobs:
        decided = outcome(job)
        failing = failing or decided.failing
        if decided.failing or not decided.checked:
            notes.append({"level": "error" if decided.failing else "note",
                          "message": {"text": f"{job.name}: {decided.label}: {decided.reason}"[:2000]},
                          "properties": {"outcome": decided.name, "status": job.status}})
    return notes, failing


def _rule_help(category: str, known: dict) -> dict:
    """A category's help: what it is, then each catalog pattern this run's bugs of it look like,
    with its description, where it was seen and the fix, and each ownership rule applied."""
    from ..knowledge import details

    text = [DESCRIPTIONS.get(category, category)]
    markdown = [DESCRIPTIONS.get(category, category)]
    for key, explanation in known.items():
        info = details(explanation.pattern) if explanation.pattern else None
        if info is None:
            text.append(explanation.line())
            markdown.append(f"- {explanation.line()}")
            continue
        refs = ", ".join(info["references"])
        todo = f"Call {explanation.call}." if explanation.call else f"The fix: {explanation.fix}."
        text.append(f"{info['id']}: {info['title']}. {explanation.mistake}. {todo} {info['description']}"
                    + (f" Seen in: {refs}." if refs else ""))
        markdown.append(f"### {info['id']}: {info['title']}\n\n{explanation.mistake}. {todo}\n\n{info['description']}"
                        + (f"\n\nSeen in: {refs}" if refs else "") + f"\n\n```diff\n{info['diff']}```")
    return {"text": "\n\n".join(text), "markdown": "\n\n".join(markdown)}


def dumps(results: Results, out_dir: Path | None = None) -> str:
    return json.dumps(document(results, out_dir), separators=(",", ":"))


def _compact(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def _write_stream(results: Results, out_dir: Path | None, fh) -> None:
    """The text of json.dumps(document(...)), written as it goes: each result put together
    from pieces made once per job and signature (its rule, fingerprint and properties) and once
    per stack (its location), so that 25,000 results are neither 25,000 dictionaries nor one
    string in memory.  tests/test_report.py holds it against document()."""
    skeleton = document(Results(results.started, results.finished, results.tools, ()), out_dir)
    present = {f.category for j in results.jobs for f in j.findings if f.is_error or f.suppressed}  # one pass
    used = [c for c in CATEGORIES if c in present]
    index = {c: i for i, c in enumerate(used)}
    from ..knowledge import Explainer, Sources

    # What the knowledge base says of each finding, worked out first: the rules' help, written
    # before the results, names every pattern the results look like.
    explained: dict[int, list] = {}
    known_by_category: dict[str, dict[str, object]] = {}
    counted = 0
    for job in results.jobs:
        explainer = Explainer(sources=Sources(out_dir, job.sources))
        found = explained[id(job)] = []
        for f in job.findings:
            if not (f.is_error or f.suppressed):
                continue
            if counted >= MAX_RESULTS:
                break
            counted += 1
            known = explainer.explain(f)
            found.append(known)
            if known is not None:
                known_by_category.setdefault(f.category, {}).setdefault(known.pattern or known.rule, known)
    run = skeleton["runs"][0]
    run["tool"]["driver"]["rules"] = [{"id": c, "name": _rule_name(c), "shortDescription": {"text": DESCRIPTIONS.get(c, c)},
                                       "defaultConfiguration": {"level": "error"},
                                       "help": _rule_help(c, known_by_category.get(c, {}))} for c in used]
    notes, failing = _notifications(results)
    run["invocations"] = [{"executionSuccessful": not failing, "toolExecutionNotifications": notes[:MAX_RESULTS]}]
    run["results"] = []
    text = _compact(skeleton)
    cut = text.index('"results":[]') + len('"results":[')
    fh.write(text[:cut])
    written = 0
    heads: dict[tuple, tuple[str, str]] = {}
    places: dict[tuple, str] = {}
    by_stack = IdentityMemo()  # a stack -> (its own frame, where it is)
    for job in results.jobs:
        where = f"{job.pattern}" + (f" ({job.variant})" if job.variant else "") + f" under {job.tool}"
        knowns = iter(explained[id(job)])
        for f in job.findings:
            if not (f.is_error or f.suppressed):
                continue
            if written >= MAX_RESULTS:
                break
            known = next(knowns, None)
            named_by = signature_stack(f.stack, f.aux_stacks)  # f.stack itself, unless a Go caller names it
            seen = by_stack.get(named_by)
            if seen is MISSING:
                seen = by_stack.put(named_by, (own_frame_of(named_by), f.where()))
            frame, frames = seen
            key = (id(job), f.category, f.signature, f.tool, f.kind)
            head = heads.get(key)
            if head is None:
                props = _compact({"tool": f.tool, "kind": f.kind, "pattern": job.pattern, "variant": job.variant,
                                  "checker": job.tool})
                head = heads[key] = (
                    f'{{"ruleId":{_compact(f.category)},"ruleIndex":{index[f.category]},"level":"error",'
                    f'"message":{{"text":',
                    f'}},"partialFingerprints":{{"leakharness/signature/v2":{_compact(f.signature)}}},'
                    f'"properties":{props[:-1]},"bytes":')
            place = ""
            if frame is not None:
                pkey = (id(job), frame.file, frame.line)
                place = places.get(pkey)
                if place is None:
                    uri, base = _location(job, frame.file)
                    location = {"artifactLocation": {"uri": uri}, "region": {"startLine": frame.line}}
                    if base:
                        location["artifactLocation"]["uriBaseId"] = base
                    place = places[pkey] = ',"locations":' + _compact([{"physicalLocation": location}])
            if f.suppressed:
                place += ',"suppressions":' + _compact([{"kind": "external", "justification": f.suppressed}])
            message = f"{f.summary(frames)} in {where}" + (f". {known.line()}" if known else "")
            # A string's JSON is json.dumps's own escaping, without json.dumps's set-up per call.
            fh.write(("," if written else "") + head[0] + encode_basestring_ascii(message) + head[1]
                     + ("null" if f.bytes is None else str(f.bytes)) + ',"signature":'
                     + encode_basestring_ascii(f.signature)
                     + (',"knowledge":' + _compact(known.to_dict()) if known is not None else "")
                     + "}" + place + "}")
            written += 1
    fh.write(text[cut:])


def write(results: Results, out_dir: Path) -> Path:
    """OUT/leakharness.sarif (atomically, written as it goes): written by every run, with or
    without the HTML report."""
    from ..results import write_atomic_with

    path = Path(out_dir) / "leakharness.sarif"
    write_atomic_with(path, lambda fh: _write_stream(results, out_dir, fh))
    return path
