"""The hardened checker's collector: real programs built with gcc -O2 -D_FORTIFY_SOURCE=2
-fstack-protector-strong, run natively; fortify, the stack protector and glibc's malloc checks
abort them, and their stderr is read into Findings."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness.errors import ParseError
from harness.checkers.hardened import hardening_marks, not_hardened
from harness.parsers.native import parse_native_stderr
from realrun import compile_c

HARDENED = ("-O2", "-U_FORTIFY_SOURCE", "-D_FORTIFY_SOURCE=2", "-fstack-protector-strong")

HEAP_AND_STACK_BUGS = r"""
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile int opaque_store;
static int opaque(int v) { opaque_store = v; return opaque_store; }
static void *volatile keep;                 /* the optimiser cannot drop what is stored here */

static __attribute__((noinline)) void copy_digest(const char *src)
{
    char buf[16];
    memcpy(buf, src, opaque(32));           /* BUG: 32 bytes into 16: __memcpy_chk */
    printf("%.4s\n", buf);
}
static __attribute__((noinline)) void fill(void)
{
    char buf[16];
    int i, n = opaque(64);
    for (i = 0; i < n; i++)
        buf[i] = 'x';                       /* BUG: no bound, and no library call to fortify */
    printf("%.4s\n", buf);
}
static __attribute__((noinline)) void release(void *p) { keep = p; free(keep); }
static __attribute__((noinline)) void double_free(void)
{
    char *p = malloc(24);
    keep = p;
    release(p);
    release(p);                             /* BUG */
}
static __attribute__((noinline)) void overflow_into_top(void)
{
    char *p = malloc(24);
    keep = p;
    memset(keep, 'A', opaque(40));          /* BUG: over the top chunk's size */
    keep = malloc(5000);
}
static __attribute__((noinline)) void interior_free(void)
{
    char *p = malloc(24);
    keep = p;
    release(p + opaque(8));                 /* BUG: not the block's start */
}
static __attribute__((noinline)) void forged_header(void)
{
    size_t *p = malloc(64);
    keep = p;
    p[opaque(0)] = 8;                       /* BUG: stray writes forge an mmapped chunk's header */
    p[opaque(1)] = 0x1002;
    release(p + 2);
}
int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "clean";
    static char src[64] = "0123456789abcdef0123456789abcdef";
    int i;
    for (i = 0; i < 2000; i++)              /* the program's own chatter on stderr */
        fprintf(stderr, "log line %d: free() and malloc() are fine ***\n", i);
    if (!strcmp(mode, "fortify")) copy_digest(src);
    else if (!strcmp(mode, "smash")) fill();
    else if (!strcmp(mode, "double-free")) double_free();
    else if (!strcmp(mode, "top-size")) overflow_into_top();
    else if (!strcmp(mode, "interior-free")) interior_free();
    else if (!strcmp(mode, "munmap")) forged_header();
    else if (!strcmp(mode, "segv")) { int *p = (int *)(long)opaque(0); printf("%d\n", *p); }
    else if (!strcmp(mode, "assert")) assert(opaque(1) == 2);
    printf("done %s\n", mode);
    return 0;
}
"""


def run_native(binary: Path, mode: str, out: Path) -> tuple[Path, int]:
    """Runs binary natively, stderr to a file, as the hardened checker does; (stderr, returncode)."""
    out.mkdir(parents=True, exist_ok=True)
    stderr = out / f"stderr.{mode}.txt"
    env = dict(os.environ, LIBC_FATAL_STDERR_="1")
    with open(stderr, "wb") as err:
        proc = subprocess.run([str(binary), mode], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=err, env=env, timeout=30, start_new_session=True)
    return stderr, proc.returncode


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("native")
    source = out / "heap_and_stack_bugs.c"
    source.write_text(HEAP_AND_STACK_BUGS)
    return {
        "hardened": compile_c(source, out / "hardened", *HARDENED),
        "plain": compile_c(source, out / "plain", "-O0"),
        # _FORTIFY_SOURCE needs the optimiser: at -O0 gcc leaves memcpy as it is.
        "fortify-O0": compile_c(source, out / "fortify-O0", "-O0", "-D_FORTIFY_SOURCE=2"),
    }


@pytest.mark.parametrize("mode, kind, category, message", [
    ("fortify", "fortify", "buffer-overflow", "*** buffer overflow detected ***: terminated"),
    ("smash", "stack-protector", "buffer-overflow", "*** stack smashing detected ***: terminated"),
    ("double-free", "glibc-malloc", "double-free", "free(): double free detected in tcache 2"),
    ("top-size", "glibc-malloc", "buffer-overflow", "malloc(): corrupted top size"),
    ("interior-free", "glibc-malloc", "invalid-free", "free(): invalid pointer"),
    ("munmap", "glibc-malloc", "invalid-free", "munmap_chunk(): invalid pointer"),
])
def test_abort_messages_become_findings(builds, tmp_path, mode, kind, category, message):
    stderr, rc = run_native(builds["hardened"], mode, tmp_path)
    log = parse_native_stderr(stderr, rc, pid=4242)
    assert log.signal == "SIGABRT" and log.exit_code is None
    (finding,) = log.findings  # the program's 2,000 lines of chatter are not findings
    assert (finding.tool, finding.kind, finding.category, finding.message) == ("hardened", kind, category, message)
    assert finding.is_error and finding.source == str(stderr) and finding.pid == 4242


def test_crash_without_a_message_is_a_crash(builds, tmp_path):
    stderr, rc = run_native(builds["hardened"], "segv", tmp_path)
    log = parse_native_stderr(stderr, rc, pid=4242)
    (finding,) = log.findings
    assert (log.signal, finding.kind, finding.category, finding.pid) == ("SIGSEGV", "SIGSEGV", "crash", 4242)


def test_failed_assertion_names_function_file_and_line(builds, tmp_path):
    stderr, rc = run_native(builds["hardened"], "assert", tmp_path)
    (finding,) = parse_native_stderr(stderr, rc).findings
    assert finding.kind == "assertion" and finding.category == "crash"
    (frame,) = finding.stack
    assert frame.function == "main" and frame.file.endswith("heap_and_stack_bugs.c")
    assert HEAP_AND_STACK_BUGS.splitlines()[frame.line - 1].strip() == 'else if (!strcmp(mode, "assert")) assert(opaque(1) == 2);'


def test_clean_run_has_no_findings(builds, tmp_path):
    stderr, rc = run_native(builds["hardened"], "clean", tmp_path)
    log = parse_native_stderr(stderr, rc)
    assert (log.findings, log.signal, log.exit_code) == ((), None, 0)


def test_what_the_unhardened_builds_miss(builds, tmp_path):
    """The same copy past a 16-byte buffer: only the -O2 fortified build stops at it."""
    assert hardening_marks(builds["hardened"]) == {"fortify", "stack-protector"}
    assert not_hardened(builds["hardened"]) == ""
    assert hardening_marks(builds["fortify-O0"]) == set()  # the flag alone does nothing at -O0
    assert "not built with -O2 -D_FORTIFY_SOURCE=2 -fstack-protector-strong" in not_hardened(builds["plain"])
    # Unchecked, the -O0 build's glibc still catches the heap bugs (malloc's checks are always on).
    stderr, rc = run_native(builds["plain"], "double-free", tmp_path / "plain")
    assert [f.category for f in parse_native_stderr(stderr, rc).findings] == ["double-free"]


def test_unreadable_stderr_is_a_one_line_error(tmp_path):
    with pytest.raises(ParseError, match=r"missing\.txt: cannot read"):
        parse_native_stderr(tmp_path / "missing.txt", 0)
    assert "not an ELF executable" in not_hardened(Path(__file__))
