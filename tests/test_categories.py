"""One bug, one category and one signature under every tool (issue 10).

tests/programs/category_bugs.c is built plain and with ASan and run for real under memcheck and
ASan/LSan; each row of a table says what a user reading the findings would check: the category,
the kind each tool names it by, the function and the line.
"""

from __future__ import annotations

import re
import shutil
from functools import cache

import pytest

from harness.findings import Finding
from harness.parsers.sanitizers import parse_sanitizer_log
from harness.parsers.valgrind import parse_valgrind_xml
from realrun import PROGRAMS, compile_c, sanitizer, valgrind

SOURCE = PROGRAMS / "category_bugs.c"
needs_valgrind = pytest.mark.skipif(not shutil.which("valgrind"), reason="valgrind not installed")


def line_of(marker: str) -> int:
    """The line of category_bugs.c that carries a /* MARKER */ comment."""
    for number, text in enumerate(SOURCE.read_text().splitlines(), 1):
        if f"/* {marker} */" in text:
            return number
    raise AssertionError(f"no {marker} in {SOURCE}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each mode run once per tool, on demand: memcheck(mode) and asan(mode) give the parsed log."""
    out = tmp_path_factory.mktemp("categories")
    plain = compile_c(SOURCE, out / "plain", "-O0")
    asan = compile_c(SOURCE, out / "asan", "-O0", "-fsanitize=address", "-fno-omit-frame-pointer")

    @cache
    def memcheck(mode):
        (xml,) = valgrind(plain, mode, out_dir=out / f"vg-{mode}")
        return parse_valgrind_xml(xml)

    @cache
    def asan_run(mode):
        (log,) = sanitizer(asan, mode, out_dir=out / f"asan-{mode}")
        return parse_sanitizer_log(log)

    return memcheck, asan_run


def stem(signature: str) -> str:
    """A signature without the source-line hash a newer leakharness may add (`...@a1b2c3`)."""
    return re.sub(r"@[0-9a-f]+$", "", signature)


def own_frame(finding: Finding):
    """The first frame in category_bugs.c: where a user is sent."""
    return next(fr for fr in finding.stack if fr.file and fr.file.endswith("category_bugs.c"))


# mode, memcheck kind, ASan kind, category, function, line marker, signature (without line hash)
ERRORS = [
    ("null-read", "InvalidRead", "SEGV", "invalid-read", "null_offset_read", "NULL_READ_LINE",
     "invalid-read:null_offset_read>main"),
    ("null-write", "InvalidWrite", "SEGV", "invalid-write", "null_offset_write", "NULL_WRITE_LINE",
     "invalid-write:null_offset_write>main"),
    ("wild-free", "InvalidFree", "bad-free", "invalid-free", "wild_free", "WILD_FREE_LINE",
     "invalid-free:wild_free>main"),
    # Only an address inside a freed block is a use after free, and only the freed block's own
    # start freed again a double free; an address inside it freed is ASan's bad-free.
    ("uaf", "InvalidRead", "heap-use-after-free", "use-after-free", "use_after_free", "UAF_LINE",
     "use-after-free:use_after_free>main"),
    ("double-free", "InvalidFree", "double-free", "double-free", "double_free", "DOUBLE_FREE_LINE",
     "double-free:double_free>main"),
    ("free-inside-freed", "InvalidFree", "bad-free", "invalid-free", "free_inside_freed",
     "FREE_INSIDE_FREED_LINE", "invalid-free:free_inside_freed>main"),
    # A jump to address 0: ASan also says "caused by a READ", but the pc is the address, so it is
    # memcheck's "Jump to the invalid address", a crash.  Neither tool sees call_null's frame.
    ("null-call", "InvalidJump", "SEGV", "crash", "main", "NULL_CALL_LINE", "crash:??>main"),
]


@needs_valgrind
@pytest.mark.parametrize("mode, vg_kind, asan_kind, category, function, marker, signature", ERRORS)
def test_memcheck_category_of_an_address_nobody_allocated(runs, mode, vg_kind, asan_kind, category,
                                                          function, marker, signature):
    """"Address 0x.. is not stack'd, malloc'd or (recently) free'd" says "free'd", yet nothing
    was freed: an invalid read, write or free, never a use-after-free or a double free."""
    memcheck, _ = runs
    (finding,) = [f for f in memcheck(mode).findings if f.kind == vg_kind]
    assert finding.category == category
    where = own_frame(finding)
    assert (where.function, where.line) == (function, line_of(marker))


@pytest.mark.parametrize("mode, vg_kind, asan_kind, category, function, marker, signature", ERRORS)
def test_asan_category_of_the_same_bug(runs, mode, vg_kind, asan_kind, category, function, marker,
                                       signature):
    """ASan's "SEGV on unknown address ... caused by a READ memory access" is the same bug as
    memcheck's "Invalid read"; its kind stays the tool's own word (SEGV), which marks the crash."""
    _, asan = runs
    (finding,) = asan(mode).findings  # ASan stops at the first error
    assert (finding.tool, finding.kind, finding.category) == ("asan", asan_kind, category)
    where = own_frame(finding)
    assert (where.function, where.line) == (function, line_of(marker))


@needs_valgrind
@pytest.mark.parametrize("mode, vg_kind, asan_kind, category, function, marker, signature", ERRORS)
def test_same_bug_same_signature_under_memcheck_and_asan(runs, mode, vg_kind, asan_kind, category,
                                                         function, marker, signature):
    memcheck, asan = runs
    (vg,) = [f for f in memcheck(mode).findings if f.kind == vg_kind]
    (sa,) = asan(mode).findings
    assert vg.signature == sa.signature
    assert stem(vg.signature) == signature


@needs_valgrind
@pytest.mark.parametrize("mode", ["null-read", "null-write", "null-call"])
def test_a_null_access_is_also_a_crash(runs, mode):
    """The invalid access killed the program: memcheck adds its fatal signal, and ASan's finding
    keeps the kind by which a run is known to have crashed."""
    memcheck, asan = runs
    assert "FatalSignal:SIGSEGV" in [f.kind for f in memcheck(mode).findings if f.category == "crash"]
    (finding,) = asan(mode).findings
    assert finding.kind == "SEGV"  # the run stage knows a crash by the kinds SEGV, BUS, FPE, ILL, ABRT


@needs_valgrind
def test_zero_byte_leak_same_signature_under_memcheck_and_lsan(runs):
    """malloc(0) lost: memcheck counts 0 bytes in 1 block, LSan 1 byte in 1 object (its
    allocator hands out one byte for a zero-byte request).  Both are a definite leak with one
    signature; the byte counts stay each tool's own."""
    memcheck, asan = runs
    (vg,) = [f for f in memcheck("leak-zero").findings if f.is_lost_leak]
    (lsan,) = asan("leak-zero").findings
    assert (vg.leak_kind, vg.bytes, vg.blocks) == ("definite", 0, 1)
    assert (lsan.leak_kind, lsan.bytes, lsan.blocks) == ("definite", 1, 1)
    assert vg.is_error and lsan.is_error
    assert vg.signature == lsan.signature
    assert stem(vg.signature) == "leak:leak_zero>main"
    for f in (vg, lsan):
        assert (own_frame(f).function, own_frame(f).line) == ("leak_zero", line_of("LEAK_ZERO_LINE"))
