"""The valgrind XML parser, on files real valgrind runs wrote (then cut, corrupted or multiplied)."""

from __future__ import annotations

import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import ParseError
from harness.parsers.valgrind import parse_valgrind_xml
from realrun import kill_group, valgrind

pytestmark = pytest.mark.skipif(not __import__("shutil").which("valgrind"), reason="valgrind not installed")


@pytest.fixture(scope="module")
def vg_runs(memory_bugs, tmp_path_factory) -> dict[str, list[Path]]:
    out = tmp_path_factory.mktemp("vg")
    return {mode: valgrind(memory_bugs["plain"], mode, out_dir=out / mode)
            for mode in ("leaks", "uaf", "double-free", "overflow", "bad-free", "fork")}


def only(files):
    assert len(files) == 1, files
    return parse_valgrind_xml(files[0])


def stem(signature: str) -> str:
    """A signature without the source-line hash a newer leakharness may add (`...@a1b2c3`)."""
    return re.sub(r"@[0-9a-f]+$", "", signature)


def lost(findings):
    return [f for f in findings if f.is_lost_leak]


def test_leaks_bytes_kinds_and_allocating_function(vg_runs):
    log = only(vg_runs["leaks"])
    assert not log.partial and log.problems == ()
    assert log.protocol == 4 and log.tool == "memcheck" and log.command[-1] == "leaks"
    direct = [f for f in log.findings if f.leak_kind == "definite"]
    by_function = {f.stack[1].function: f for f in direct if f.blocks == 1 and f.bytes == 100}
    assert "leak_direct" in by_function
    leak = by_function["leak_direct"]
    assert leak.category == "leak" and leak.stack[0].function == "malloc"
    assert leak.stack[1].file.endswith("memory_bugs.c") and leak.stack[1].line
    assert stem(leak.signature) == "leak:leak_direct>main"
    # The tree's root: 32 direct bytes holding 32 indirect ones, as the xwhat text splits them.
    tree = [f for f in direct if f.stack[1].function == "leak_tree"]
    assert [(f.bytes, f.indirect_bytes) for f in tree] == [(32, 32)]
    # Total lost memory: 100 + 2 x 32 (tree) + 2 x 32 (cycle).
    assert sum(f.bytes for f in lost(log.findings)) == 228


def test_use_after_free_has_freed_and_allocated_stacks(vg_runs):
    log = only(vg_runs["uaf"])
    (uaf,) = [f for f in log.findings if f.category == "use-after-free"]
    assert uaf.kind == "InvalidRead" and uaf.thread == 1
    assert uaf.stack[0].function == "use_after_free"
    assert [a.label for a in uaf.aux_stacks] == ["freed", "allocated"]
    assert uaf.aux_stacks[0].frames[0].function == "free"
    assert stem(uaf.signature) == "use-after-free:use_after_free>main"


def test_error_categories_match_sanitizer_vocabulary(vg_runs):
    def categories(mode):
        return {f.category for f in only(vg_runs[mode]).findings if f.category != "leak"}

    assert categories("double-free") == {"double-free"}
    assert categories("overflow") == {"buffer-overflow"}
    assert categories("bad-free") == {"invalid-free"}


def test_fork_child_leak_in_its_own_file(vg_runs):
    files = vg_runs["fork"]
    assert len(files) == 2
    logs = [parse_valgrind_xml(f) for f in files]
    child = [log for log in logs if any(f.bytes == 77 for f in log.findings)]
    assert len(child) == 1
    assert child[0].pid != min(log.pid for log in logs) or child[0].ppid in {log.pid for log in logs}
    (leak,) = [f for f in child[0].findings if f.bytes == 77]
    assert leak.leak_kind == "definite" and leak.pid == child[0].pid
    assert "child_leaks_then_exits" in leak.functions()


# --- files cut, corrupted or multiplied from a real run -------------------------------------

@pytest.fixture
def real_xml(vg_runs) -> bytes:
    return vg_runs["uaf"][0].read_bytes()


def errors_in(data: bytes) -> int:
    return data.count(b"<error>")


def test_truncated_file_keeps_complete_errors(real_xml, tmp_path):
    starts = [m.start() for m in re.finditer(rb"<error>", real_xml)]
    assert len(starts) >= 4
    cut = tmp_path / "cut.xml"
    cut.write_bytes(real_xml[: starts[3] + 40])  # in the middle of the 4th error
    log = parse_valgrind_xml(cut)
    assert log.partial
    assert len(log.findings) == 3
    assert log.findings[0].category == "use-after-free"


def test_sigkilled_valgrind_keeps_errors_before_the_kill(memory_bugs, tmp_path):
    """valgrind killed mid-run: the file stops after the last complete error."""
    proc = subprocess.Popen(
        ["valgrind", "--xml=yes", f"--xml-file={tmp_path}/vg.%p.xml", "--leak-check=full",
         str(memory_bugs["plain"]), "hang"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            files = list(tmp_path.glob("vg.*.xml"))
            if files and b"</error>" in files[0].read_bytes():
                break
            time.sleep(0.1)
    finally:
        kill_group(proc, signal.SIGKILL)
        proc.wait(timeout=30)
    (path,) = tmp_path.glob("vg.*.xml")
    log = parse_valgrind_xml(path)
    assert log.partial
    assert [f.category for f in log.findings] == ["use-after-free"]


def test_empty_and_not_xml_are_refused(tmp_path):
    empty = tmp_path / "empty.xml"
    empty.write_bytes(b"")
    with pytest.raises(ParseError, match="empty"):
        parse_valgrind_xml(empty)
    source = tmp_path / "source.xml"
    source.write_bytes((Path(__file__).parent / "programs" / "memory_bugs.c").read_bytes())
    with pytest.raises(ParseError, match="not a valgrind XML"):
        parse_valgrind_xml(source)


def test_external_entity_is_refused(real_xml, tmp_path):
    body = real_xml.split(b"?>", 1)[1].replace(b"<fn>use_after_free</fn>", b"<fn>&xxe;</fn>", 1)
    hostile = tmp_path / "xxe.xml"
    hostile.write_bytes(b'<?xml version="1.0"?>\n<!DOCTYPE valgrindoutput [\n'
                        b'<!ENTITY xxe SYSTEM "file:///etc/passwd">]>' + body)
    with pytest.raises(ParseError, match="DTD"):
        parse_valgrind_xml(hostile)


def test_a_dtd_behind_a_comment_naming_the_root_is_refused(real_xml, tmp_path):
    """The DTD check looked for the root element in the first 8 KiB and took one written inside
    a comment for it: a DOCTYPE after 9,000 bytes of that comment was let through."""
    body = real_xml.split(b"?>", 1)[1].replace(b"<fn>use_after_free</fn>", b"<fn>&xxe;</fn>", 1)
    hostile = tmp_path / "late.xml"
    hostile.write_bytes(b'<?xml version="1.0"?>\n<!-- <valgrindoutput> ' + b"x" * 9000 + b" -->\n"
                        b'<!DOCTYPE valgrindoutput [\n<!ENTITY xxe SYSTEM "file:///etc/passwd">]>' + body)
    with pytest.raises(ParseError, match="DTD"):
        parse_valgrind_xml(hostile)


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))


def test_entity_bomb_is_refused_in_bounded_memory(real_xml, tmp_path):
    lol = [b'<!ENTITY lol0 "lollollollollollollollollollol">']
    for i in range(1, 10):
        lol.append(b'<!ENTITY lol%d "' % i + b"&lol%d;" % (i - 1) * 10 + b'">')
    body = real_xml.split(b"?>", 1)[1].replace(b"<fn>use_after_free</fn>", b"<fn>&lol9;</fn>", 1)
    bomb = tmp_path / "bomb.xml"
    bomb.write_bytes(b'<?xml version="1.0"?>\n<!DOCTYPE valgrindoutput [' + b"\n".join(lol) + b"]>" + body)
    # In a child limited to 512 MB of address space: an expanding parser would die there.
    proc = subprocess.run([sys.executable, "-m", "harness", "parse", str(bomb)], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, preexec_fn=_limit_memory)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert str(bomb) in proc.stderr and "DTD" in proc.stderr


def test_invalid_utf8_in_a_symbol_is_replaced(real_xml, tmp_path):
    bad = tmp_path / "bad-utf8.xml"
    bad.write_bytes(real_xml.replace(b"<fn>use_after_free</fn>", b"<fn>use_\xff\xfeafter</fn>"))
    log = parse_valgrind_xml(bad)
    assert "invalid UTF-8 replaced" in log.problems
    assert len(log.findings) == len(parse_valgrind_xml_bytes(real_xml, tmp_path).findings)
    assert log.findings[0].stack[0].function == "use_\ufffd\ufffdafter"


def parse_valgrind_xml_bytes(data: bytes, tmp_path: Path):
    path = tmp_path / "copy.xml"
    path.write_bytes(data)
    return parse_valgrind_xml(path)


def test_one_frame_stacks_and_frames_without_file_or_function(real_xml, tmp_path):
    # Keep only the first frame of every stack.
    one = re.sub(rb"(<stack>\s*<frame>.*?</frame>)(?:\s*<frame>.*?</frame>)*",
                 rb"\1", real_xml, flags=re.S)
    log = parse_valgrind_xml_bytes(one, tmp_path)
    assert all(len(f.stack) == 1 for f in log.findings)
    assert stem(log.findings[0].signature) == "use-after-free:use_after_free"
    # Strip fn, dir, file and line: only ip and obj remain.
    bare = re.sub(rb"\s*<(fn|dir|file|line)>[^<]*</\1>", b"", real_xml)
    log = parse_valgrind_xml_bytes(bare, tmp_path)
    frame = log.findings[0].stack[0]
    assert frame.function is None and frame.file is None and frame.line is None
    assert frame.address and frame.object.endswith("plain")
    assert log.findings[0].signature.startswith("use-after-free:plain")


@pytest.mark.parametrize("version", [5, 6])
def test_protocol_5_and_6(real_xml, tmp_path, version):
    data = real_xml.replace(b"<protocolversion>4</protocolversion>",
                            b"<protocolversion>%d</protocolversion>" % version)
    if version == 6:  # protocol 6 closes with summaries; the parser must step over them
        data = data.replace(b"</valgrindoutput>",
                            b"<error_summary><errors>3</errors></error_summary>\n</valgrindoutput>")
    log = parse_valgrind_xml_bytes(data, tmp_path)
    assert log.protocol == version and not log.partial and log.problems == ()
    assert len(log.findings) == errors_in(real_xml)


def test_multiplied_file_counts_every_error(real_xml, tmp_path):
    first, rest = real_xml.split(b"<error>", 1)
    errors_part, tail = (b"<error>" + rest).rsplit(b"</error>", 1)
    many = first + (errors_part + b"</error>\n") * 50 + tail
    log = parse_valgrind_xml_bytes(many, tmp_path)
    assert len(log.findings) == 50 * errors_in(real_xml)
    assert not log.partial
