"""The residue checker (issue 13): real programs run under the real interposer, real logs parsed.

- The catalog's cleanse_missing (rendered from c_fixtures/, compiled -O0 and -O2): the leaky
  variant's derived key is found in the 32-byte block freed by encrypt_with_password (and the
  password in its dead stack frame); the fixed variant is clean.
- The staged patterns (stack buffer returned uncleansed, realloc leaving the old copy, a session
  struct freed uncleansed beside an EVP context freed correctly): found / clean; and the EVP
  context is clean because OpenSSL cleanses it (with OPENSSL_cleanse made a no-op it is found).
- What makes a run "not checked": _exit, a crash, bad or missing canaries, a cut log.
- fork, threads, calloc, realloc in place, exit() from deep inside.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from harness import secrets as secret_mod
from harness.checkers import residue
from harness.parsers import residue as residue_parser
from harness.catalog import Pattern, default_fixtures_dir, load_pattern
from harness.errors import CatalogError, LeakHarnessError, ParseError
from harness.generate import render

pytestmark = pytest.mark.skipif(not Path("/usr/include/openssl/evp.h").exists(), reason="needs OpenSSL headers")

# Patterns staged for the catalog (moved into c_fixtures/ once the catalog knows the checker).
STAGING = Path("/work/notes/staging/c_fixtures")
COMMON = default_fixtures_dir() / "_common"
SECRET = b"LH-test-secret!!"  # the small programs' canary (16 bytes)


def _cc(source: Path, output: Path, *flags: str) -> Path:
    cmd = ["gcc", "-g", *flags, "-Wall", f"-I{COMMON}", "-o", str(output), str(source), "-lssl", "-lcrypto",
           "-lpthread"]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                          start_new_session=True)
    assert proc.returncode == 0, proc.stderr
    return output


def _run(so: Path, exe: Path, secrets: list[str], log_dir: Path, *args: str, extra_preload: str = "",
         secrets_env: str | None = None) -> tuple[subprocess.CompletedProcess, list[residue_parser.ResidueLog]]:
    log_dir.mkdir(parents=True, exist_ok=True)
    env = residue.environment(so, secret_mod.secret_hex(secrets) if secrets_env is None else secrets_env, log_dir,
                              dict(os.environ))
    if extra_preload:
        env["LD_PRELOAD"] += ":" + extra_preload
    proc = subprocess.run([str(exe), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=env, timeout=60, start_new_session=True)
    logs = [residue_parser.parse_residue_log(p) for p in residue.log_files(log_dir)]
    return proc, logs


@pytest.fixture(scope="session")
def interposer(tmp_path_factory) -> Path:
    so = residue.interposer(tmp_path_factory.mktemp("residue-cache"))
    assert so is not None and so.is_file()
    return so


def _pattern(pid: str) -> tuple[Pattern, list[str]]:
    """The pattern and its canaries: from c_fixtures/ once it declares them, else staged."""
    for root in (default_fixtures_dir(), STAGING):
        directory = root / pid
        if (directory / "pattern.toml").is_file() and secret_mod.pattern_secrets(directory):
            try:
                pattern = load_pattern(directory)
            except CatalogError:  # the catalog does not know the residue checker yet
                meta = tomllib.loads((directory / "pattern.toml").read_text())
                pattern = Pattern(id=pid, title=meta["title"], description=meta["description"],
                                  directory=directory, params=meta.get("params", {}))
            return pattern, secret_mod.pattern_secrets(directory)
    pytest.skip(f"{pid}: no pattern declaring secrets in c_fixtures/ or {STAGING}")


def _checked(tmp_path, interposer, pid: str, variant: str, opt: str, source_from: Path | None = None):
    pattern, secrets = _pattern(pid)
    tmp_path.mkdir(parents=True, exist_ok=True)
    if source_from is not None:  # the catalog's own template (the brief: render from c_fixtures)
        pattern = load_pattern(source_from)
    source = tmp_path / f"{pid}-{variant}.c"
    source.write_text(render(pattern, variant))
    exe = _cc(source, tmp_path / f"{pid}-{variant}{opt}", opt)
    proc, logs = _run(interposer, exe, secrets, tmp_path / f"logs{opt}")
    assert proc.returncode == 0, proc.stderr
    assert len(logs) == 1, "one process, one log"
    log = logs[0]
    assert log.complete, log.reason  # checked to the end: a clean result means clean
    assert log.pid == _pid_of(logs[0].path)
    return source, log


def _pid_of(path: str) -> int:
    return int(path.rsplit(".", 1)[1])


def _line(source: Path, number: int) -> str:
    return source.read_text().splitlines()[number - 1]


def _frame(finding, function: str):
    return next(fr for fr in finding.stack if fr.function == function)


# --- the catalog's cleanse_missing ------------------------------------------------------------

@pytest.mark.parametrize("opt", ["-O0", "-O2"])
def test_cleanse_missing_leaky_key_found_in_freed_block(tmp_path, interposer, opt):
    source, log = _checked(tmp_path, interposer, "cleanse_missing", "leaky", opt,
                           source_from=default_fixtures_dir() / "cleanse_missing")
    freed = [f for f in log.findings if f.kind == "SecretInFreedBlock"]
    assert len(freed) == 1, [f.summary() for f in log.findings]
    key = freed[0]
    assert key.tool == "residue" and key.category == "secret-residue" and key.is_error
    assert key.bytes == 32  # KEY_LEN: the block's own size, not the allocator's usable size
    assert key.count == 2  # once per iteration, merged
    assert key.stack[0].function == "free"
    where = _frame(key, "encrypt_with_password")
    assert "OPENSSL_free(key)" in _line(source, where.line)
    assert key.signature.startswith("secret-residue:encrypt_with_password>main")
    (alloc,) = key.aux_stacks
    assert alloc.label == "allocated"
    born = next(fr for fr in alloc.frames if fr.function == "encrypt_with_password")
    assert "OPENSSL_malloc(KEY_LEN)" in _line(source, born.line)
    # The password in encrypt_with_password's dead frame, named by its caller.
    (stack,) = [f for f in log.findings if f.kind == "SecretInStack"]
    assert stack.bytes == len("correct horse battery staple")
    assert stack.stack[0].function == "main"
    assert log.stats["stack_scan"] == "main-returned"


@pytest.mark.parametrize("opt", ["-O0", "-O2"])
def test_cleanse_missing_fixed_is_clean(tmp_path, interposer, opt):
    _source, log = _checked(tmp_path, interposer, "cleanse_missing", "fixed", opt,
                            source_from=default_fixtures_dir() / "cleanse_missing")
    assert log.findings == ()
    assert log.stats["frees"] > 1000  # it did look: OpenSSL's own frees went through it


# --- the staged patterns ----------------------------------------------------------------------

@pytest.mark.parametrize("opt", ["-O0", "-O2"])
def test_stack_buffer_returned_uncleansed(tmp_path, interposer, opt):
    source, log = _checked(tmp_path, interposer, "stack_key_not_cleansed", "leaky", opt)
    (finding,) = log.findings
    assert finding.kind == "SecretInStack" and finding.category == "secret-residue"
    assert finding.bytes == 32
    caller = finding.stack[0]
    assert caller.function == "run_session"
    assert "encrypt_message(" in _line(source, caller.line)
    _source, fixed = _checked(tmp_path / "fixed", interposer, "stack_key_not_cleansed", "fixed", opt)
    assert fixed.findings == ()


@pytest.mark.parametrize("opt", ["-O0", "-O2"])
def test_realloc_leaves_the_old_copy(tmp_path, interposer, opt):
    source, log = _checked(tmp_path, interposer, "realloc_secret_copy", "leaky", opt)
    (finding,) = log.findings
    assert finding.kind == "SecretInReallocCopy"
    assert finding.bytes == 32 and finding.count == 2
    assert finding.stack[0].function == "realloc"
    assert "OPENSSL_realloc(buf, total)" in _line(source, _frame(finding, "build_key_block").line)
    born = next(fr for fr in finding.aux_stacks[0].frames if fr.function == "build_key_block")
    assert "OPENSSL_malloc(KEY_LEN)" in _line(source, born.line)
    _source, fixed = _checked(tmp_path / "fixed", interposer, "realloc_secret_copy", "fixed", opt)
    assert fixed.findings == ()


@pytest.mark.parametrize("opt", ["-O0", "-O2"])
def test_evp_context_freed_correctly_is_clean(tmp_path, interposer, opt):
    source, log = _checked(tmp_path, interposer, "evp_session_key_copy", "leaky", opt)
    (finding,) = log.findings  # the session struct only: nothing from EVP_CIPHER_CTX_free
    assert finding.kind == "SecretInFreedBlock" and finding.bytes == 56
    assert "OPENSSL_free(s)" in _line(source, _frame(finding, "session_free").line)
    assert "EVP_CIPHER_CTX_free" not in finding.functions()
    # Allocated through OPENSSL_zalloc (a wrapper in libcrypto): the whole stack all the same.
    (alloc,) = finding.aux_stacks
    assert alloc.text == "allocated at"
    assert "OPENSSL_zalloc(sizeof *s)" in _line(source, next(fr for fr in alloc.frames
                                                              if fr.function == "session_new").line)
    _source, fixed = _checked(tmp_path / "fixed", interposer, "evp_session_key_copy", "fixed", opt)
    assert fixed.findings == ()


def test_evp_context_is_clean_because_openssl_cleanses_it(tmp_path, interposer):
    """The control can fail: with OPENSSL_cleanse made a no-op, the same fixed program shows
    the cipher context freed in EVP_CIPHER_CTX_free still holding the key."""
    pattern, secrets = _pattern("evp_session_key_copy")
    source = tmp_path / "fixed.c"
    source.write_text(render(pattern, "fixed"))
    exe = _cc(source, tmp_path / "fixed", "-O0")
    noop = tmp_path / "nocleanse.c"
    noop.write_text("#include <stddef.h>\nvoid OPENSSL_cleanse(void *p, size_t n) { (void)p; (void)n; }\n")
    lib = tmp_path / "nocleanse.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(noop)], stdin=subprocess.DEVNULL, check=True,
                   timeout=60, start_new_session=True)
    proc, (log,) = _run(interposer, exe, secrets, tmp_path / "logs", extra_preload=str(lib))
    assert proc.returncode == 0 and log.complete
    in_ctx = [f for f in log.findings if "EVP_CIPHER_CTX_free" in f.functions()]
    assert in_ctx and all(f.kind == "SecretInFreedBlock" for f in in_ctx)
    assert any("session_free" in f.functions() for f in in_ctx)
    # Allocated inside libcrypto: only the allocator's caller is kept (the cost of unwinding at
    # every malloc), and the finding says so.
    assert all(len(f.aux_stacks[0].frames) == 1 and "caller only" in f.aux_stacks[0].text for f in in_ctx)


# --- small programs: what "checked" means, and the corners ------------------------------------

CASES_C = r"""
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char secret[] = "LH-test-secret!!";

static __attribute__((noinline)) char *holding(size_t size, size_t at)
{
    char *p = malloc(size);
    memset(p, 0, size);
    memcpy(p + at, secret, 16);
    return p;
}

static __attribute__((noinline)) void free_it(char *p) { free(p); __asm__ volatile("" ::: "memory"); }

static void *worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++)
        free_it(holding(64, 0));
    return NULL;
}

static __attribute__((noinline)) void deep_exit(void)
{
    char key[32];
    memcpy(key, secret, 16);
    memcpy(key + 16, secret, 16);
    __asm__ volatile("" : : "r"(key) : "memory");
    exit(0);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "free";
    if (!strcmp(mode, "free")) {
        free_it(holding(48, 8));
    } else if (!strcmp(mode, "calloc")) {
        char *p = calloc(10, 7);
        memcpy(p + 50, secret, 16);
        free_it(p);
    } else if (!strcmp(mode, "_exit")) {
        free_it(holding(48, 8));
        _exit(0);
    } else if (!strcmp(mode, "abort")) {
        free_it(holding(48, 8));
        abort();
    } else if (!strcmp(mode, "kill")) {
        free_it(holding(48, 8));
        raise(SIGKILL);
    } else if (!strcmp(mode, "fork")) {
        pid_t child = fork();
        if (child == 0) {
            free_it(holding(40, 0));
            if (argc > 2)
                raise(SIGKILL);  /* a child killed: its stack is not checked */
            return 0;
        }
        waitpid(child, NULL, 0);
    } else if (!strcmp(mode, "threads")) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
            pthread_create(&t[i], NULL, worker, NULL);
        for (int i = 0; i < 4; i++)
            pthread_join(t[i], NULL);
    } else if (!strcmp(mode, "realloc-in-place")) {
        char *p = holding(4096, 100);
        p = realloc(p, 200);  /* shrinking: glibc keeps the block where it is */
        memset(p, 0, 200);
        free_it(p);
    } else if (!strcmp(mode, "exit-deep")) {
        deep_exit();
    } else if (!strcmp(mode, "main-frame")) {
        char key[16];
        memcpy(key, secret, 16);
        __asm__ volatile("" : : "r"(key) : "memory");
    } else if (!strcmp(mode, "exec")) {
        free_it(holding(24, 0));
        execl(argv[0], argv[0], "free", (char *)NULL);  /* the same pid, a new image */
        return 1;
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cases")
    (folder / "cases.c").write_text(CASES_C)
    return _cc(folder / "cases.c", folder / "cases", "-O0")


def test_block_size_and_offset(tmp_path, interposer, cases):
    _proc, (log,) = _run(interposer, cases, [SECRET.hex()], tmp_path, "free")
    (finding,) = log.findings
    assert finding.bytes == 48 and "offset 8" in finding.message
    assert [fr.function for fr in finding.stack[:3]] == ["free", "free_it", "main"]
    assert [fr.function for fr in finding.aux_stacks[0].frames[:3]] == ["malloc", "holding", "main"]
    assert log.complete


def test_calloc_size(tmp_path, interposer, cases):
    _proc, (log,) = _run(interposer, cases, [SECRET.hex()], tmp_path, "calloc")
    (finding,) = log.findings
    assert finding.bytes == 70
    assert finding.aux_stacks[0].frames[0].function == "calloc"


def test_exit_without_destructors_is_still_checked(tmp_path, interposer, cases):
    _proc, (log,) = _run(interposer, cases, [SECRET.hex()], tmp_path, "_exit")
    assert log.complete and log.stats["stack_scan"] == "_exit" and log.stats["by"] == "_exit"
    assert [f.bytes for f in log.findings] == [48]


@pytest.mark.parametrize("mode", ["abort", "kill"])
def test_a_process_that_does_not_finish_is_not_checked(tmp_path, interposer, cases, mode):
    _proc, (log,) = _run(interposer, cases, [SECRET.hex()], tmp_path, mode)
    assert not log.complete
    assert "ended before" in log.reason
    assert [f.bytes for f in log.findings] == [48]  # what it found before is kept


@pytest.mark.parametrize("value, problem", [("4c482d", "shorter than 8 bytes"), ("4c482d43414e41525", "odd number"),
                                            ("zz482d43414e4152", "not hex")])
def test_canaries_the_interposer_refuses(tmp_path, interposer, cases, value, problem):
    _proc, (log,) = _run(interposer, cases, [], tmp_path, "free", secrets_env=value)
    assert not log.complete and problem in log.reason
    assert log.findings == ()


def test_no_canaries_is_not_a_check(tmp_path, interposer, cases):
    _proc, (log,) = _run(interposer, cases, [], tmp_path, "free", secrets_env="")
    assert not log.complete and "no secrets" in log.reason


def test_a_skipped_program_is_inert(tmp_path, interposer, cases):
    """lh-reaper runs every job's command: the interposer writes nothing for it (but for the
    program it starts)."""
    env = residue.environment(interposer, SECRET.hex(), tmp_path, dict(os.environ), skip=[cases])
    proc = subprocess.run(["/bin/sh", "-c", f"{cases} free; /bin/true"], stdin=subprocess.DEVNULL,
                          capture_output=True, env=env, timeout=60, start_new_session=True)
    assert proc.returncode == 0
    logs = [residue_parser.parse_residue_log(p) for p in residue.log_files(tmp_path)]
    assert logs and all("/cases" not in Path(p.path).read_text().split("\n", 1)[0] for p in logs)
    assert all(log.complete and not log.findings for log in logs)  # sh (which leaves by _exit) and true


def test_fork_child_writes_its_own_log(tmp_path, interposer, cases):
    proc, logs = _run(interposer, cases, [SECRET.hex()], tmp_path, "fork")
    assert proc.returncode == 0 and len(logs) == 2 and all(log.complete for log in logs)
    with_findings = [log for log in logs if log.findings]
    assert len(with_findings) == 1
    (child,) = with_findings
    assert child.findings[0].bytes == 40 and child.findings[0].pid == child.pid == _pid_of(child.path)


def test_whole_run(tmp_path, interposer, cases):
    _proc, logs = _run(interposer, cases, [SECRET.hex()], tmp_path / "fork", "fork")
    parent = min(logs, key=lambda log: log.pid)
    assert residue.whole_run(logs, parent.pid) == ("", [])
    _proc, logs = _run(interposer, cases, [SECRET.hex()], tmp_path / "child-killed", "fork", "kill")
    parent = min(logs, key=lambda log: log.pid)
    reason, problems = residue.whole_run(logs, parent.pid)
    assert reason == "" and len(problems) == 1 and "ended before" in problems[0]
    _proc, logs = _run(interposer, cases, [SECRET.hex()], tmp_path / "abort", "abort")
    reason, _ = residue.whole_run(logs, logs[0].pid)
    assert "ended before" in reason
    reason, _ = residue.whole_run(logs, logs[0].pid + 1)  # the program's own log is missing
    assert "wrote no log for the program" in reason


def test_threads(tmp_path, interposer, cases):
    _proc, (log,) = _run(interposer, cases, [SECRET.hex()], tmp_path, "threads")
    assert log.complete
    assert sum(f.count for f in log.findings) == 800
    assert all(f.bytes == 64 and "worker" in f.functions() for f in log.findings)


def test_realloc_in_place_leaves_no_copy(tmp_path, interposer, cases):
    _proc, (log,) = _run(interposer, cases, [SECRET.hex()], tmp_path, "realloc-in-place")
    assert log.complete and log.findings == ()


def test_exit_from_deep_inside_scans_the_stack_first(tmp_path, interposer, cases):
    _proc, (log,) = _run(interposer, cases, [SECRET.hex()], tmp_path, "exit-deep")
    assert log.complete and log.stats["stack_scan"] == "exit"
    assert {f.kind for f in log.findings} == {"SecretInStack"}
    assert sum(f.count for f in log.findings) == 2  # key[0:16] and key[16:32]


def test_secret_in_mains_own_frame(tmp_path, interposer, cases):
    _proc, (log,) = _run(interposer, cases, [SECRET.hex()], tmp_path, "main-frame")
    (finding,) = log.findings
    assert finding.kind == "SecretInStack" and [fr.function for fr in finding.stack] == ["main"]


def test_exec_starts_a_new_section_of_the_same_log(tmp_path, interposer, cases):
    proc, logs = _run(interposer, cases, [SECRET.hex()], tmp_path, "exec")
    assert proc.returncode == 0 and len(logs) == 1
    (log,) = logs
    assert Path(log.path).read_text().count("LH-RESIDUE 1 start") == 2
    assert log.complete  # the image that ran last finished
    assert sorted(f.bytes for f in log.findings) == [24, 48]  # one from each image


# --- the parser on real logs, cut and corrupted -----------------------------------------------

def test_cut_log_is_partial_and_not_complete(tmp_path, interposer, cases):
    _proc, (log,) = _run(interposer, cases, [SECRET.hex()], tmp_path / "run", "free")
    data = Path(log.path).read_bytes()
    cut_at = data.index(b"\nf ") + 10  # inside the record's first frame line
    cut = tmp_path / "residue.1"
    cut.write_bytes(data[:cut_at])
    parsed = residue_parser.parse_residue_log(cut)
    assert parsed.partial and not parsed.complete and parsed.findings == ()


def test_garbage_and_empty_files_are_one_line_errors(tmp_path, interposer, cases):
    _proc, (log,) = _run(interposer, cases, [SECRET.hex()], tmp_path / "run", "free")
    data = Path(log.path).read_bytes()
    bad = tmp_path / "residue.2"
    bad.write_bytes(data.replace(b"\nE\n", b"\nE\nnot a residue line\n", 1))
    with pytest.raises(ParseError, match=r"residue\.2: line \d+: not a line of a residue log"):
        residue_parser.parse_residue_log(bad)
    empty = tmp_path / "residue.3"
    empty.write_bytes(b"")
    with pytest.raises(ParseError, match="empty file"):
        residue_parser.parse_residue_log(empty)
    other = tmp_path / "residue.4"
    other.write_bytes(b"==1== ERROR: AddressSanitizer\n")
    with pytest.raises(ParseError, match="not a residue log"):
        residue_parser.parse_residue_log(other)


def test_secret_values_checked_with_one_line_errors(tmp_path):
    assert secret_mod.secret_hex(["0x" + SECRET.hex().upper(), SECRET]) == SECRET.hex()
    for bad, words in (["abcd", "at least 8"], ["xyz0", "not hex"], ["abc", "not hex"]):
        with pytest.raises(LeakHarnessError, match=words):
            secret_mod.secret_hex([bad])
    with pytest.raises(LeakHarnessError, match="no secret given"):
        secret_mod.secret_hex([])
    listed = tmp_path / "secrets.txt"
    listed.write_text(f"# keys of the test\n{SECRET.hex()}  # the first\n\n")
    assert secret_mod.read_secrets_file(listed) == [SECRET.hex()]
    listed.write_text("0011\n")
    with pytest.raises(LeakHarnessError, match=re.escape(f"{listed}:1:")):
        secret_mod.read_secrets_file(listed)
