"""The sanitizer log parser, on logs real ASan, LSan, MSan, UBSan and TSan runs wrote (then cut
or multiplied)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.errors import ParseError
from harness.parsers import parse_file
from harness.parsers.sanitizers import parse_sanitizer_log
from harness.parsers.valgrind import parse_valgrind_xml
from realrun import PROGRAMS, compile_c, run, sanitizer, valgrind

CATEGORY_BUGS = PROGRAMS / "category_bugs.c"
needs_symbolizer = pytest.mark.skipif(not shutil.which("llvm-symbolizer"), reason="llvm-symbolizer not installed")


def stem(signature: str) -> str:
    """A signature without the source-line hash a newer leakharness may add (`...@a1b2c3`)."""
    return re.sub(r"@[0-9a-f]+$", "", signature)


def line_of(marker: str) -> int:
    """The line of category_bugs.c that carries a /* MARKER */ comment."""
    for number, text in enumerate(CATEGORY_BUGS.read_text().splitlines(), 1):
        if f"/* {marker} */" in text:
            return number
    raise AssertionError(f"no {marker} in {CATEGORY_BUGS}")


def first_own(frames, function=None):
    """The first frame in category_bugs.c (of `function`, when given)."""
    return next(fr for fr in frames if fr.file and fr.file.endswith("category_bugs.c")
                and (function is None or fr.function == function))


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
    ("segv", "SEGV", "invalid-read", "null_deref"),  # a READ SEGV: memcheck's Invalid read
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


def test_unsymbolized_frames_keep_module_and_offset_without_a_symbolizer(logs, monkeypatch):
    monkeypatch.setattr("harness.parsers.symbolize.find_symbolizer", lambda: None)
    (f,) = parse_sanitizer_log(logs["unsymbolized"]).findings
    assert f.category == "use-after-free"
    own = [fr for fr in f.stack if fr.object and fr.object.endswith("/asan")]
    assert own and all(fr.function is None and fr.offset for fr in own)
    assert f.signature.startswith("use-after-free:asan+0x")


@needs_symbolizer
def test_unsymbolized_frames_are_named_afterwards(logs):
    """symbolize=0 left module+offset frames: llvm-symbolizer names them at parse time, and the
    finding is the one a symbolizing run gives, signature included."""
    (f,) = parse_sanitizer_log(logs["unsymbolized"]).findings
    (symbolized,) = parse_sanitizer_log(logs["uaf"]).findings
    assert (f.stack[0].function, f.stack[0].line) == ("use_after_free", symbolized.stack[0].line)
    assert f.stack[0].file.endswith("memory_bugs.c") and f.stack[0].offset
    assert [a.label for a in f.aux_stacks] == ["freed", "allocated"]
    assert f.aux_stacks[0].frames[1].function == "use_after_free"
    assert f.signature == symbolized.signature
    assert stem(f.signature) == "use-after-free:use_after_free>main"


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


# --- tests/programs/category_bugs.c under each sanitizer (issue 10) ---------------------------

def _clang(source: Path, output: Path, *flags: str) -> Path | None:
    """A clang build, or None when clang or its sanitizer runtime is missing."""
    if not shutil.which("clang"):
        return None
    proc = subprocess.run(["clang", "-g", "-pthread", *flags, str(source), "-o", str(output)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                          start_new_session=True)
    return output if proc.returncode == 0 else None


@pytest.fixture(scope="module")
def cat_builds(tmp_path_factory):
    out = tmp_path_factory.mktemp("category_bugs")
    spaced = out / "dir with space"
    spaced.mkdir()
    shutil.copy(CATEGORY_BUGS, spaced / "category_bugs.c")
    return {
        "asan": compile_c(CATEGORY_BUGS, out / "asan", "-O0", "-fsanitize=address", "-fno-omit-frame-pointer"),
        "ubsan": compile_c(CATEGORY_BUGS, out / "ubsan", "-O0", "-fsanitize=undefined"),
        "tsan": compile_c(CATEGORY_BUGS, out / "tsan", "-O1", "-fsanitize=thread"),
        # The profile recommended for MSan: origins tracked, frame pointers kept, -O0.
        "msan": _clang(CATEGORY_BUGS, out / "msan", "-O0", "-fsanitize=memory",
                       "-fsanitize-memory-track-origins", "-fno-omit-frame-pointer"),
        # Built from a folder whose name holds spaces: the frames' paths do too.
        "asan-spaced": compile_c(spaced / "category_bugs.c", spaced / "asan", "-O0", "-fsanitize=address",
                                 "-fno-omit-frame-pointer"),
        "tsan-spaced": compile_c(spaced / "category_bugs.c", spaced / "tsan", "-O1", "-fsanitize=thread"),
    }


def one_log(binary: Path, mode: str, out_dir: Path, **env) -> Path:
    files = sanitizer(binary, mode, out_dir=out_dir, env=env)
    assert len(files) == 1, files
    return files[0]


def test_msan_use_of_uninitialized_value_with_its_heap_origin(cat_builds, tmp_path):
    if cat_builds["msan"] is None:
        pytest.skip("clang with the MemorySanitizer runtime (libclang-rt-14-dev) not installed")
    log_file = one_log(cat_builds["msan"], "uninit", tmp_path, MSAN_OPTIONS=f"log_path={tmp_path}/log")
    log = parse_sanitizer_log(log_file)
    (f,) = log.findings
    assert (f.tool, f.kind, f.category) == ("msan", "use-of-uninitialized-value", "uninitialized")
    use = first_own(f.stack)
    assert (use.function, use.line) == ("uninit_heap", line_of("UNINIT_USE_LINE"))
    (origin,) = f.aux_stacks
    assert origin.label == "allocated" and "heap allocation" in origin.text
    alloc = first_own(origin.frames)
    assert (alloc.function, alloc.line) == ("uninit_heap", line_of("UNINIT_ALLOC_LINE"))
    assert stem(f.signature) == "uninitialized:uninit_heap>main"
    assert not log.partial and any("MemorySanitizer: use-of-uninitialized-value" in s for s in log.summaries)


# UBSAN_OPTIONS, and whether the runtime prints a stack: GCC's runtime prints no SUMMARY line
# per report, so one report ends only where the next one's header begins.
@pytest.mark.parametrize("options, stacks", [("", False), ("print_stacktrace=1", True)])
def test_ubsan_every_report_keeps_its_place(cat_builds, tmp_path, options, stacks):
    prefix = f"log_path={tmp_path}/log"
    log = parse_sanitizer_log(one_log(cat_builds["ubsan"], "ub-twice", tmp_path,
                                      UBSAN_OPTIONS=":".join(x for x in (options, prefix) if x)))
    first, second = log.findings
    assert "signed integer overflow" in first.message and "shift exponent" in second.message
    places = [(os.path.basename(f.stack[0].file), f.stack[0].line) for f in log.findings]
    assert places == [("category_bugs.c", line_of("UB_FIRST_LINE")), ("category_bugs.c", line_of("UB_SECOND_LINE"))]
    assert all((f.stack[0].function == "ub_twice") == stacks for f in log.findings)
    assert not log.partial


def test_tsan_heap_block_location_is_a_stack_of_its_own(cat_builds, tmp_path):
    log = parse_sanitizer_log(one_log(cat_builds["tsan"], "heap-race", tmp_path))
    (f,) = log.findings
    assert (f.tool, f.category) == ("tsan", "data-race")
    assert (f.stack[0].function, f.stack[0].line) == ("heap_racer", line_of("RACE_LINE"))
    assert [a.label for a in f.aux_stacks] == ["previous access", "allocated", "thread created", "thread created"]
    previous, block = f.aux_stacks[:2]
    assert [fr.function for fr in previous.frames] == ["heap_racer"]
    assert "heap block of size 4" in block.text
    alloc = first_own(block.frames)
    assert (alloc.function, alloc.line) == ("heap_race", line_of("RACE_ALLOC_LINE"))


def test_asan_stack_object_frame_is_not_part_of_the_access_stack(cat_builds, tmp_path):
    """"Address ... is located in stack of thread T0 at offset 40 in frame" is followed by the
    frame that owns the array: a stack of its own, not one more frame below _start."""
    (f,) = parse_sanitizer_log(one_log(cat_builds["asan"], "stack-overflow", tmp_path)).findings
    assert (f.kind, f.category) == ("stack-buffer-overflow", "buffer-overflow")
    assert (f.stack[0].function, f.stack[0].line) == ("stack_overflow", line_of("STACK_OVERFLOW_LINE"))
    assert [fr.function for fr in f.stack].count("stack_overflow") == 1
    (frame,) = f.aux_stacks
    assert frame.label == "stack frame" and [fr.function for fr in frame.frames] == ["stack_overflow"]


@pytest.mark.parametrize("build, mode, function, marker", [
    ("asan-spaced", "leak-zero", "leak_zero", "LEAK_ZERO_LINE"),       # LSan: `in func /a b/f.c:12`
    ("tsan-spaced", "heap-race", "heap_racer", "RACE_LINE"),            # TSan: `func /a b/f.c:12 (mod+0x..)`
])
def test_frames_keep_paths_with_spaces(cat_builds, tmp_path, build, mode, function, marker):
    (f, *_) = parse_sanitizer_log(one_log(cat_builds[build], mode, tmp_path)).findings
    frame = next(fr for fr in f.stack if fr.function == function)
    assert frame.file.endswith("/dir with space/category_bugs.c")
    assert frame.line == line_of(marker)
    assert stem(f.signature).split(":", 1)[1].startswith(function)


@needs_symbolizer
def test_leak_after_pthread_exit_unsymbolized_then_named(cat_builds, tmp_path):
    """The exit-time leak check after main's pthread_exit, with frames left as module+offset
    (symbolize=0): named afterwards, bytes and line as a symbolizing run says."""
    binary = cat_builds["asan"]
    options = f"fast_unwind_on_malloc=0:symbolize=0:log_path={tmp_path}/log"
    log_file = one_log(binary, "pthread-exit", tmp_path, ASAN_OPTIONS=options)
    assert not re.search(r"#\d+ 0x[0-9a-f]+ in ", log_file.read_text())  # really unsymbolized
    (f,) = parse_sanitizer_log(log_file).findings
    assert (f.leak_kind, f.bytes, f.blocks) == ("definite", 33, 1)
    own = first_own(f.stack)
    assert (own.function, own.line) == ("leak_before_thread_exit", line_of("EXIT_LEAK_LINE"))
    assert own.object == str(binary) and own.offset
    assert stem(f.signature) == "leak:leak_before_thread_exit>main"


def test_a_binary_rebuilt_after_the_log_is_not_used_to_name_frames(cat_builds, tmp_path):
    """Frames are named only from the module that ran: one modified since the log was written
    would give wrong names, so its frames stay module+offset."""
    binary = tmp_path / "asan"
    shutil.copy(cat_builds["asan"], binary)
    log_file = one_log(binary, "pthread-exit", tmp_path / "logs",
                       ASAN_OPTIONS=f"symbolize=0:log_path={tmp_path}/logs/log")
    later = log_file.stat().st_mtime + 10
    os.utime(binary, (later, later))
    (f,) = parse_sanitizer_log(log_file).findings
    assert not any(fr.function for fr in f.stack if fr.object == str(binary))


def test_asan_exit_stats_are_seen_while_parsing(tmp_path):
    """atexit=1: "AddressSanitizer exit stats:" after the reports says the program reached exit()
    with ASan alive; the parse says so, so that nobody reads a big log a second time for it."""
    binary = compile_c(CATEGORY_BUGS, tmp_path / "asan-recover", "-O0", "-fsanitize=address",
                       "-fsanitize-recover=address")
    log = parse_sanitizer_log(one_log(binary, "uaf", tmp_path / "logs",
                                      ASAN_OPTIONS=f"halt_on_error=0:atexit=1:log_path={tmp_path}/logs/log"))
    (f,) = log.findings
    assert (f.category, f.stack[0].line) == ("use-after-free", line_of("UAF_LINE"))
    assert log.exit_stats and not log.partial
    stopped = parse_sanitizer_log(one_log(binary, "uaf", tmp_path / "halted",
                                          ASAN_OPTIONS=f"atexit=1:log_path={tmp_path}/halted/log"))
    assert not stopped.exit_stats  # halted at the error: exit() never ran


BIG_LOG_MIB = 65


def test_big_log_parses_in_bounded_memory(logs, tmp_path):
    """A real LSan log multiplied to 65 MiB: read line by line, it costs far less memory than its
    size (the whole text, its lines and the findings at once cost over 500 MiB before)."""
    data = logs["leaks"].read_bytes()
    once = parse_sanitizer_log(logs["leaks"]).findings
    copies = (BIG_LOG_MIB << 20) // len(data) + 1
    big = tmp_path / "log.4242"
    with open(big, "wb") as fh:
        for _ in range(copies):
            fh.write(data)
    script = textwrap.dedent("""
        import sys
        from harness.parsers.sanitizers import parse_sanitizer_log
        log = parse_sanitizer_log(sys.argv[1])
        # VmHWM, this process's own peak: ru_maxrss starts from the parent's peak at fork (a
        # pytest worker that grouped 50,000 records passed 230 MiB on to this child).
        status = open("/proc/self/status").read()
        peak = int(status.split("VmHWM:")[1].split()[0])  # KiB
        print(len(log.findings), len({f.signature for f in log.findings}), peak // 1024)
    """)
    proc = run([sys.executable, "-c", script, big], timeout=300)
    assert proc.returncode == 0, proc.stderr
    findings, signatures, peak_mib = map(int, proc.stdout.split())
    assert findings == len(once) * copies and signatures == len({f.signature for f in once})
    assert peak_mib < 200, f"{peak_mib} MiB peak to parse a {BIG_LOG_MIB} MiB log"
