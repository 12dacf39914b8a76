"""The sanitizer log parser, on logs real ASan, LSan, UBSan and TSan runs wrote."""

from __future__ import annotations


import pytest

from harness.errors import ParseError
from harness.parse import parse_file
from harness.sanitizers import parse_sanitizer_log
from harness.valgrind import parse_valgrind_xml
from realrun import sanitizer, valgrind


@pytest.fixture(scope="module")
def logs(memory_bugs, tmp_path_factory):
    out = tmp_path_factory.mktemp("san")

    def one(build, mode, name=None, **env):
        files = sanitizer(memory_bugs[build], mode, out_dir=out / (name or f"{build}-{mode}"), env=env)
        assert len(files) == 1, files
        return files[0]

    return {
        "leaks": one("asan", "leaks"),
        "uaf": one("asan", "uaf"),
        "double-free": one("asan", "double-free"),
        "overflow": one("asan", "overflow"),
        "bad-free": one("asan", "bad-free"),
        "segv": one("asan", "segv"),
        "unsymbolized": one("asan", "uaf", "unsym", ASAN_OPTIONS="symbolize=0:log_path=" + str(out / "unsym/log")),
        "ubsan": one("ubsan", "ubsan"),
        "race": one("tsan", "race"),
    }


def test_lsan_leaks_bytes_kinds_and_allocating_function(logs):
    log = parse_sanitizer_log(logs["leaks"])
    assert not log.partial and log.pid == int(logs["leaks"].suffix[1:])
    assert all(f.category == "leak" and f.tool == "lsan" for f in log.findings)
    direct = {f.stack[1].function: f for f in log.findings if f.leak_kind == "definite"}
    assert direct["leak_direct"].bytes == 100 and direct["leak_direct"].blocks == 1
    assert direct["leak_direct"].stack[0].function in ("malloc", "__interceptor_malloc")
    assert sum(f.bytes for f in log.findings) == 228
    assert "SUMMARY: AddressSanitizer: 228 byte(s) leaked in 5 allocation(s)." in log.summaries


def test_same_leaks_same_signatures_as_valgrind(logs, memory_bugs, tmp_path):
    lsan = parse_sanitizer_log(logs["leaks"]).findings
    (xml,) = valgrind(memory_bugs["plain"], "leaks", out_dir=tmp_path)
    memcheck = [f for f in parse_valgrind_xml(xml).findings if f.is_lost_leak]
    assert {f.signature for f in lsan} == {f.signature for f in memcheck}
    assert sum(f.bytes for f in lsan) == sum(f.bytes for f in memcheck)


@pytest.mark.parametrize("mode, kind, category, function", [
    ("uaf", "heap-use-after-free", "use-after-free", "use_after_free"),
    ("double-free", "double-free", "double-free", "double_free"),
    ("overflow", "heap-buffer-overflow", "buffer-overflow", "heap_overflow"),
    ("bad-free", "bad-free", "invalid-free", "bad_free"),
    ("segv", "SEGV", "crash", "null_deref"),
])
def test_asan_errors(logs, mode, kind, category, function):
    log = parse_sanitizer_log(logs[mode])
    (finding,) = log.findings  # ASan stops at the first error: no leak report follows
    assert (finding.tool, finding.kind, finding.category) == ("asan", kind, category)
    assert finding.signature.split(":", 1)[1].split(">")[0] == function
    assert not log.partial


def test_asan_use_after_free_details(logs):
    (f,) = parse_sanitizer_log(logs["uaf"]).findings
    assert f.thread == 0 and "READ of size 4" in f.message
    assert [a.label for a in f.aux_stacks] == ["freed", "allocated"]
    assert f.aux_stacks[0].frames[1].function == "use_after_free"
    assert f.stack[0].file.endswith("memory_bugs.c") and f.stack[0].line


def test_overflow_wording_of_gcc_runtime(logs):
    (f,) = parse_sanitizer_log(logs["overflow"]).findings
    assert "to the right of 10-byte region" in f.message  # GCC 12's words; LLVM says "after"


def test_unsymbolized_frames_keep_module_and_offset(logs):
    (f,) = parse_sanitizer_log(logs["unsymbolized"]).findings
    assert f.category == "use-after-free"
    own = [fr for fr in f.stack if fr.object and fr.object.endswith("/asan")]
    assert own and all(fr.function is None and fr.offset for fr in own)
    assert f.signature.startswith("use-after-free:asan+0x")


def test_ubsan_runtime_error(logs):
    (f,) = parse_sanitizer_log(logs["ubsan"]).findings
    assert (f.tool, f.category) == ("ubsan", "undefined-behavior")
    assert "signed integer overflow" in f.message
    assert f.stack[0].function == "overflow_int"


def test_tsan_data_race(logs):
    log = parse_sanitizer_log(logs["race"])
    (f,) = log.findings
    assert (f.tool, f.category) == ("tsan", "data-race")
    assert f.stack[0].function == "racer" and f.stack[0].address is None
    assert f.stack[0].object == "tsan" and f.stack[0].offset
    assert {a.label for a in f.aux_stacks} == {"previous access", "thread created"}


def test_cut_log_keeps_reports_before_the_cut(logs, tmp_path):
    text = logs["leaks"].read_text()
    cut_at = text.index("Indirect leak")
    cut = tmp_path / "log.123"
    cut.write_text(text[: cut_at + 120])  # inside the first indirect record's stack
    log = parse_sanitizer_log(cut)
    assert log.pid == 123
    assert len(log.findings) == 3 and log.partial


def test_logs_of_several_processes(logs, tmp_path):
    a, b = tmp_path / "log.100", tmp_path / "log.200"
    a.write_text(logs["leaks"].read_text())
    b.write_text(logs["uaf"].read_text())
    found = [parse_file(p) for p in (a, b)]
    assert [len(x.findings) for x in found] == [5, 1]


def test_not_a_log(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello\n")
    with pytest.raises(ParseError, match="not a valgrind XML file or a sanitizer log"):
        parse_file(p)
