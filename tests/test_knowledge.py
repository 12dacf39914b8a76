"""Issue 19: the catalog as a knowledge base.  Real OpenSSL programs, written here from scratch
(tests/programs/knowledge/, not the catalog's templates), each checked through the real CLI with
one cleanup call removed, must get from `check` a line naming the call that should have freed the
memory; those that make a catalog mistake are named after that pattern; a clean program gets no
such line.  The same knowledge is in `parse --format text`, `explain`, the report's finding, SARIF
and the pytest failure message.  The shipped knowledge file must be what a run of today's catalog
teaches.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.catalog import load_catalog
from harness.knowledge import KNOWLEDGE_FILE, digest_of, load
from realrun import lh as run_lh
from realrun import said

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ROOT / "tests" / "programs" / "knowledge"
SCHEMA = ROOT.parent / "shared" / "schemas" / "sarif-schema-2.1.0.json"
CLEANUP = "/* CLEANUP */"
OWNERSHIP = "OpenSSL's ownership rules"


def lh(*args, cwd: Path, cache: Path, env: dict | None = None):
    """`leakharness ARGS...` as a user runs it, from cwd, with the shipped knowledge file."""
    return run_lh(*args, cwd=cwd, cache=cache, env={"LEAKHARNESS_KNOWLEDGE": None, **(env or {})}, timeout=600)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("knowledge-cache")


def without_cleanup(name: str, folder: Path) -> Path:
    """tests/programs/knowledge/NAME.c with its one cleanup call removed, written into folder."""
    text = (PROGRAMS / f"{name}.c").read_text()
    assert text.count(CLEANUP) == 1, name
    target = folder / f"{name}.c"
    target.write_text("".join(line for line in text.splitlines(keepends=True) if CLEANUP not in line))
    return target


def knowledge_lines(stdout: str) -> list[str]:
    """The lines `check` writes under a bug: what the catalog knows of it."""
    return [line.strip() for line in stdout.splitlines()
            if line.startswith("    ") and ("looks like" in line or OWNERSHIP in line)]


def known_box(page: str) -> str:
    """The first box of what the catalog knows on a report's pattern page."""
    box = page[page.index('<div class="known">'):]
    return box[:box.index("</div>")]


# (program, the call that should have freed the memory, the catalog pattern it reproduces or None)
SIX = [
    ("cipher_ctx", "EVP_CIPHER_CTX_free", None),
    ("name_oneline", "OPENSSL_free", "x509_name_oneline"),
    ("keygen", "EVP_PKEY_free", None),
    ("membio", "BIO_free", None),
    ("pkey_ctx", "EVP_PKEY_CTX_free", None),
    ("hmac", "EVP_MAC_free", None),
]


@pytest.mark.parametrize("name,call,pattern", SIX, ids=[s[0] for s in SIX])
def test_a_program_missing_one_cleanup_call_is_told_which_call(name, call, pattern, tmp_path, cache):
    source = without_cleanup(name, tmp_path)
    proc = lh("check", "--quiet", "--no-html", "--build", source.name, "--out", "out", cwd=tmp_path, cache=cache)
    assert proc.returncode == 1, said(proc)
    lines = knowledge_lines(proc.stdout)
    # Under each checker's leak (memcheck's and LeakSanitizer's), the call that frees it.
    assert len(lines) >= 2, said(proc)
    for line in lines:
        assert re.search(rf"\bcall {call}\b", line), said(proc)
        if pattern:
            assert line.startswith(f"looks like {pattern}:"), said(proc)
            assert f"`leakharness show {pattern} --diff`" in line, said(proc)
    bug_lines = [n for n, line in enumerate(proc.stdout.splitlines()) if line.startswith("  [")]
    text = proc.stdout.splitlines()
    assert all(text[n + 1].startswith("    ") for n in bug_lines), said(proc)  # the line is under its bug


@pytest.mark.parametrize("name,pattern,line", [
    ("store_ctx_cleanup", "x509_store_ctx_cleanup_not_free",
     "looks like x509_store_ctx_cleanup_not_free: X509_STORE_CTX_cleanup does not free the context; "
     "call X509_STORE_CTX_free. `leakharness show x509_store_ctx_cleanup_not_free --diff`"),
    ("cipher_reset", "evp_cipher_ctx_reset_not_free", None),
    ("get0_pubkey_freed", "get0_freed", None),
])
def test_a_program_making_a_catalog_mistake_is_named_after_the_pattern(name, pattern, line, tmp_path, cache):
    source = tmp_path / f"{name}.c"
    source.write_text((PROGRAMS / f"{name}.c").read_text())
    proc = lh("check", "--quiet", "--no-html", "--tool", "memcheck", "--build", source.name, "--out", "out",
              cwd=tmp_path, cache=cache)
    assert proc.returncode == 1, said(proc)
    lines = knowledge_lines(proc.stdout)
    assert lines and lines[0].startswith(f"looks like {pattern}:"), said(proc)
    if line:
        assert lines[0] == line, said(proc)


PARTIAL = ("looks like part of evp_md_fetch_leak: its EVP_MD_CTX_new leak, not its OSSL_LIB_CTX_new (no such call "
           "in digest_ctx.c); call EVP_MD_CTX_free. `leakharness show evp_md_fetch_leak --diff`")


@pytest.mark.parametrize("name,line", [
    # EVP_sha256() and a digest context, no library context: the pattern's words ("fetched digest,
    # digest context and library context never freed") would name what the program never does.
    ("digest_ctx", PARTIAL),
    # The pattern's calls all made (the context alone leaked): its own words.
    ("digest_fetch", "looks like evp_md_fetch_leak: fetched digest, digest context and library context never "
                     "freed; call EVP_MD_CTX_free. `leakharness show evp_md_fetch_leak --diff`"),
])
def test_a_program_like_one_part_of_a_pattern_is_told_which_part(name, line, tmp_path, cache):
    source = without_cleanup(name, tmp_path)
    proc = lh("check", "--quiet", "--tool", "memcheck", "--build", source.name, "--out", "out", cwd=tmp_path,
              cache=cache)
    assert proc.returncode == 1, said(proc)
    assert knowledge_lines(proc.stdout) == [line], said(proc)
    page = next((tmp_path / "out" / "patterns").glob("*.html")).read_text()
    box = known_box(page)
    heading = "Looks like part of <span" if line == PARTIAL else "Looks like <span"
    assert heading in box and "Call <code>EVP_MD_CTX_free</code>" in box, box
    whole = tmp_path / "whole" / f"{name}.c"  # with its cleanup call: clean, nothing to explain
    whole.parent.mkdir()
    whole.write_text((PROGRAMS / f"{name}.c").read_text())
    proc = lh("check", "--quiet", "--no-html", "--tool", "memcheck", "--build", whole.name, "--out", "out",
              cwd=whole.parent, cache=cache)
    assert proc.returncode == 0 and not knowledge_lines(proc.stdout), said(proc)


def test_clean_programs_get_no_such_line(tmp_path, cache):
    """The six programs as written (every cleanup call in place): clean, and nothing to explain."""
    sources = []
    for name, _, _ in SIX:
        target = tmp_path / name / f"{name}.c"
        target.parent.mkdir()
        target.write_text((PROGRAMS / f"{name}.c").read_text())
        sources.append(target)
    for source in sources:
        proc = lh("check", "--quiet", "--no-html", "--build", source.name, "--out", "out", cwd=source.parent,
                  cache=cache)
        assert proc.returncode == 0, said(proc)
        assert "looks like" not in proc.stdout and OWNERSHIP not in proc.stdout, said(proc)
        assert proc.stdout.count(": clean") == 2, said(proc)


def test_parse_text_explain_report_and_sarif_say_the_same(tmp_path, cache):
    source = tmp_path / "store_ctx_cleanup.c"
    source.write_text((PROGRAMS / "store_ctx_cleanup.c").read_text())
    proc = lh("check", "--quiet", "--build", source.name, "--out", "out", cwd=tmp_path, cache=cache)
    assert proc.returncode == 1, said(proc)
    expected = ("looks like x509_store_ctx_cleanup_not_free: X509_STORE_CTX_cleanup does not free the context; "
                "call X509_STORE_CTX_free.")
    # parse --format text, on memcheck's own XML log
    logs = sorted((tmp_path / "out" / "logs").rglob("*.xml"))
    assert logs
    parsed = lh("parse", "--format", "text", *logs, cwd=tmp_path, cache=cache)
    assert parsed.returncode == 0, said(parsed)
    assert f"  {expected}" in parsed.stdout.splitlines()[2], said(parsed)
    # explain, of the results folder and of a signature
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    signature = next(f["signature"] for j in results["jobs"] for f in j["findings"] if f["leak_kind"] == "definite")
    for what in ("out", "out/results.json", signature):
        told = lh("explain", what, cwd=tmp_path, cache=cache)
        assert told.returncode == 0, said(told)
        assert expected in told.stdout, said(told)
        assert "x509_store_ctx_cleanup_not_free: X509_STORE_CTX cleaned up but never freed" in told.stdout
        assert "seen in: https://github.com/aws/s2n-tls/issues/733" in told.stdout, said(told)
        assert "+    X509_STORE_CTX_free(ctx);" in told.stdout, said(told)  # the fix, as a diff
    # the report: a box on the finding with the description, the references and the fix
    page = next(p for p in (tmp_path / "out" / "patterns").glob("*.html")).read_text()
    box = known_box(page)
    assert "x509_store_ctx_cleanup_not_free" in box and "X509_STORE_CTX cleaned up but never freed" in box
    assert "Call <code>X509_STORE_CTX_free</code>" in box
    assert 'href="https://github.com/aws/s2n-tls/issues/733"' in box
    assert '<span class="add">+    X509_STORE_CTX_free(ctx);' in box
    # SARIF: the result's message and the rule's help
    sarif = json.loads((tmp_path / "out" / "leakharness.sarif").read_text())
    run = sarif["runs"][0]
    leak = next(r for r in run["results"] if r["ruleId"] == "leak" and "definite" in r["message"]["text"])
    assert expected in leak["message"]["text"]
    assert leak["properties"]["knowledge"]["pattern"] == "x509_store_ctx_cleanup_not_free"
    rule = next(r for r in run["tool"]["driver"]["rules"] if r["id"] == "leak")
    assert "X509_STORE_CTX_cleanup" in rule["help"]["text"] and "```diff" in rule["help"]["markdown"]
    if SCHEMA.is_file():
        jsonschema = pytest.importorskip("jsonschema")
        jsonschema.validate(sarif, json.loads(SCHEMA.read_text()))


def test_pytest_failure_message_says_what_it_looks_like(pytester):
    source = pytester.path / "src" / "name_oneline.c"
    source.parent.mkdir()
    source.write_text("".join(line for line in (PROGRAMS / "name_oneline.c").read_text().splitlines(keepends=True)
                              if CLEANUP not in line))
    pytester.makepyfile(test_mine="""
        def test_clean(leak_check):
            leak_check(build=["src/name_oneline.c"], tools=("memcheck",)).assert_clean()
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*leak (definite) 268 B in 1 block(s) at *print_subject name_oneline.c:*",
        "*looks like x509_name_oneline: X509_NAME_oneline(name, NULL, 0) allocates the result, never freed; "
        "call OPENSSL_free. `leakharness show x509_name_oneline --diff`*",
    ])


def test_bad_input_is_one_line(tmp_path, cache):
    for what in ("bogus", "leak", "nonsense:frame>frame"):
        proc = lh("explain", what, cwd=tmp_path, cache=cache)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, said(proc)
        assert len(proc.stderr.strip().splitlines()) == 1, said(proc)
    broken = tmp_path / "knowledge.json"
    broken.write_text('{"schema": "leakharness/knowledge/1", "patterns": [{"id": "x"}]}')
    proc = lh("explain", "leak:X509_STORE_CTX_new_ex>verify>main", cwd=tmp_path, cache=cache,
              env={"LEAKHARNESS_KNOWLEDGE": str(broken)})
    assert proc.returncode == 2 and str(broken) in proc.stderr and "patterns[0]" in proc.stderr, said(proc)
    assert len(proc.stderr.strip().splitlines()) == 1, said(proc)


# --- the shipped knowledge is today's catalog ------------------------------------------------------

def test_the_knowledge_file_knows_every_pattern_as_it_is_today():
    """Each catalog pattern is in harness/data/knowledge.json, learnt from its template as it is
    now; after adding or editing a pattern: `make knowledge` (a catalog run, then `leakharness
    knowledge`)."""
    known = {p.id: p for p in load(KNOWLEDGE_FILE).patterns}
    stale = []
    for pattern in load_catalog():
        entry = known.get(pattern.id)
        if entry is None or entry.digest != digest_of(pattern):
            stale.append(pattern.id)
    assert not stale, f"knowledge.json is not learnt from today's catalog for: {', '.join(stale)} (run `make knowledge`)"
    assert set(known) == {p.id for p in load_catalog()}
    leaking = [p for p in known.values() if any(b.category == "leak" for b in p.bugs)]
    assert len(leaking) >= 15  # learnt from real runs, not empty


SAMPLE = ("x509_store_ctx_cleanup_not_free", "set0_ownership_double_free", "bio_mem_uaf", "x509_name_oneline")


def test_learning_again_from_a_run_gives_the_shipped_knowledge(tmp_path, cache):
    """A run of a few patterns under memcheck and asan, learnt by `leakharness knowledge`, gives
    those patterns' memcheck and asan bugs exactly as shipped."""
    args = [a for pid in SAMPLE for a in ("--pattern", pid)]
    run = lh("run", "--quiet", "--no-html", *args, "--tool", "memcheck", "--tool", "asan", "--out", "run",
             cwd=tmp_path, cache=cache)
    assert run.returncode == 0, said(run)
    learnt = lh("knowledge", "run", "--out", "k.json", cwd=tmp_path, cache=cache)
    assert learnt.returncode == 0, said(learnt)
    assert "left out" in learnt.stderr  # the other patterns: not in this run, and said so
    fresh = {p.id: p for p in load(tmp_path / "k.json").patterns}
    shipped = {p.id: p for p in load(KNOWLEDGE_FILE).patterns}
    assert set(fresh) == set(SAMPLE)
    for pid in SAMPLE:
        want = {b.key() for b in shipped[pid].bugs if {"memcheck", "asan"} & set(b.checkers)}
        got = {b.key() for b in fresh[pid].bugs}
        assert want and got == want, pid
        assert fresh[pid].mistake == shipped[pid].mistake and fresh[pid].fix_calls == shipped[pid].fix_calls
