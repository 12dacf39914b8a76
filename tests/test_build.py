"""The build cache: compiled once, shared safely between processes, failures as results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness import checkers
from harness.build import build

HELLO = '#include <openssl/crypto.h>\n#include <stdio.h>\nint main(void){ puts(OpenSSL_version(0)); return 0; }\n'


def spec(text=HELLO, profile="memcheck", name="hello"):
    return checkers.get(profile).build_spec(name=name, sources=((f"{name}.c", text),))


def test_second_build_compiles_nothing(tmp_path):
    first = build(spec(), tmp_path)
    assert first.status == "ok" and not first.cached and first.binary.is_file()
    second = build(spec(), tmp_path)
    assert second.cached and second.binary == first.binary
    other = build(spec(profile="asan"), tmp_path)  # other flags: another binary
    assert not other.cached and other.binary != first.binary
    for same in ("helgrind", "residue"):  # the same flags as memcheck's (-g -O0): one build, shared
        shared = build(spec(profile=same), tmp_path)
        assert shared.cached and shared.binary == first.binary
    out = subprocess.run([str(first.binary)], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                         timeout=30)
    assert out.stdout.startswith("OpenSSL 3")


def test_debug_info_names_the_cached_source(tmp_path):
    b = build(spec(), tmp_path)
    assert b.source_paths[0].is_file()
    dwarf = subprocess.run(["objdump", "--dwarf=info", str(b.binary)], capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL).stdout
    assert str(b.source_paths[0].parent) in dwarf and "/tmp/" + b.key[:12] not in dwarf


def test_compile_error_is_a_result_with_the_message(tmp_path):
    b = build(spec("int main(void) { return undefined_name; }\n", name="broken"), tmp_path)
    assert b.status == "build-failed" and b.binary is None
    assert "undefined_name" in b.message and "error" in b.message
    assert not list((tmp_path / "builds").glob("*/*"))  # failures are not cached


BUILD_ONE = """
import json, sys
from pathlib import Path
from harness import checkers
from harness.build import build
text = Path(sys.argv[2]).read_text()
b = build(checkers.get("memcheck").build_spec(name="hello", sources=(("hello.c", text),)), Path(sys.argv[1]))
print(json.dumps({"status": b.status, "binary": str(b.binary), "cached": b.cached}))
"""


def test_concurrent_builders_share_one_result(tmp_path):
    source = tmp_path / "hello.c"
    source.write_text(HELLO)
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-c", BUILD_ONE, str(cache), str(source)],
                              stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
             for _ in range(6)]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert {r["status"] for r in results} == {"ok"}
    assert len({r["binary"] for r in results}) == 1
    assert Path(results[0]["binary"]).is_file()
    assert len(list((cache / "builds").glob("*/*"))) == 1
    assert not list((cache / "tmp").iterdir())  # losers cleaned up after themselves
