"""`parse` of a big memcheck file reads it in two processes, one half each: what it prints must be
byte for byte what one process prints, for a whole file, a file cut short in either half, one
with an XML error in either half (the first half's stops the file there, as in one process) and
one with stray bytes in symbol names, and when the child fails.

The file is a real run's (memory_bugs.c: a use after free seen with its count, and leaks) with
its errors copied, as test_scale.py copies them, past the size where the file is halved.  The
reference is the same file written by one process (FindingsWriter over one LogStream).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.parsers import LogStream
from harness.parsers.valgrind import HALVES_MIN_BYTES
from harness.report.findings_json import FindingsWriter, write_log
from realrun import have, valgrind
from test_scale import multiplied_xml

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not (have("gcc") and have("valgrind")), reason="needs gcc and valgrind")


@pytest.fixture(scope="module")
def big(memory_bugs, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("halves")
    (xml,) = valgrind(memory_bugs["plain"], "uaf", out_dir=folder / "vg")
    errors = xml.read_bytes().count(b"<error>")
    per_copy = len(xml.read_bytes()) // errors
    records = errors * (2 * HALVES_MIN_BYTES // (per_copy * errors) + 1)  # about twice the size that is halved
    return multiplied_xml(xml, folder / "big.xml", records)


def one_process(path: Path) -> tuple[str, list[str]]:
    """What a single process prints of the file: the JSON, and the partial line if any."""
    out = io.StringIO()
    stream = LogStream(str(path), fields=True)
    writer = FindingsWriter(out)
    writer.write(stream)
    writer.close()
    log = stream.log
    notes = []
    if log.partial or log.problems:
        notes.append(f"leakharness: {log.path}: partial: {'; '.join(log.problems) or 'cut short'}; "
                     f"kept {stream.found} finding(s)")
    return out.getvalue(), notes


def parse(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "parse", str(path)], cwd=path.parent,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL, start_new_session=True)


def same_as_one_process(path: Path) -> subprocess.CompletedProcess:
    proc = parse(path)
    text, notes = one_process(path)
    assert proc.stdout == text, (len(proc.stdout), len(text))
    assert proc.stderr.splitlines() == notes, proc.stderr
    return proc


def test_a_big_file_is_halved_and_reads_as_one_process_reads_it(big):
    assert LogStream(str(big), fields=True).halves() is not None
    proc = same_as_one_process(big)
    assert proc.returncode == 0 and proc.stderr == ""
    uaf = [line for line in proc.stdout.splitlines() if '"use-after-free"' in line]
    assert uaf and all('"count": 1' in line and '"function": "use_after_free"' in line for line in uaf)


@pytest.mark.parametrize("where", [0.3, 0.8])
def test_a_file_cut_short_in_either_half(big, tmp_path, where):
    data = big.read_bytes()
    cut = tmp_path / "cut.xml"
    cut.write_bytes(data[:int(len(data) * where)])
    if where > 0.5:
        assert LogStream(str(cut), fields=True).halves() is not None
    proc = same_as_one_process(cut)
    assert "partial" in proc.stderr


@pytest.mark.parametrize("where", [0.25, 0.75])
def test_an_xml_error_in_either_half_ends_the_file_where_one_process_ends_it(big, tmp_path, where):
    data = bytearray(big.read_bytes())
    at = data.index(b"</frame>", int(len(data) * where))
    data[at:at + 8] = b"</frXme>"
    bad = tmp_path / "bad.xml"
    bad.write_bytes(bytes(data))
    proc = same_as_one_process(bad)
    assert "XML error" in proc.stderr
    kept = int(proc.stderr.rsplit("kept ", 1)[1].split()[0])
    assert (kept < 0.3 * data.count(b"<error>")) if where < 0.5 else (kept > 0.7 * data.count(b"<error>"))


def test_stray_bytes_in_names_in_both_halves(big, tmp_path):
    data = bytearray(big.read_bytes())
    for where in (0.25, 0.75):
        at = data.index(b"<what>Invalid read", int(len(data) * where)) + 6  # frames are shared: a message is not
        data[at:at + 1] = b"\xff"
    bad = tmp_path / "utf8.xml"
    bad.write_bytes(bytes(data))
    proc = same_as_one_process(bad)
    assert "invalid UTF-8 replaced" in proc.stderr and "\\ufffd" in proc.stdout


def test_a_comment_at_the_middle_that_looks_like_an_error(big, tmp_path):
    """A split inside a comment (valgrind writes none; a hand-made file may) leaves the first
    half a made-up end inside it: an XML error, and the file is read again as one process."""
    from harness.parsers.valgrind import halves

    data = big.read_bytes()
    comment = b"\n<!-- not an error:\n<error>\n-->"
    at = data.index(b"\n<error>", len(data) // 2 - 4 * len(comment))
    while True:  # the first error from which the middle of the made file falls into the comment
        made = data[:at] + comment + data[at:]
        split = (len(made) // 2) + made[len(made) // 2:].index(b"\n<error>") + 1
        if at < split < at + len(comment):
            break
        at = data.index(b"\n<error>", at + 1)
    odd = tmp_path / "comment.xml"
    odd.write_bytes(made)
    assert halves(str(odd))[1].slices[1][0] == split
    proc = same_as_one_process(odd)
    assert proc.returncode == 0 and proc.stderr == ""


def test_when_the_child_fails_its_half_is_read_here(big, monkeypatch):
    """A child that dies before its half is written: the process reads that half itself."""
    from harness import forked

    def failing_child(work):
        pid = os.fork()
        if pid == 0:
            os._exit(1)
        return pid

    monkeypatch.setattr(forked, "fork_child", failing_child)
    out = io.StringIO()
    stream = LogStream(str(big), fields=True)
    writer = FindingsWriter(out)
    write_log(writer, stream)
    writer.close()
    text, _notes = one_process(big)
    assert out.getvalue() == text and stream.found == text.count('"tool": ')
