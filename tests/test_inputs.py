"""The recorder of what a program reads (harness/inputs.py, harness/data/inputs.c), for real.

Real programs (tests/programs/inputs/) run under the real library, directly and as real jobs
under each checker through run.run_job:
- what is recorded: a fixed-name file (fopen), an access() probe, a folder listed, OpenSSL's
  BIO_new_file and configuration, a forked child (exit and _exit), every open mode and probe
  call, dlopen (the program's RUNPATH still searched), programs started by posix_spawn, system,
  exec and vfork;
- what the fingerprint sees: a file created, deleted, edited with the same size and mtime, a
  folder's listing changed, a file the job itself changed;
- what cannot be vouched for: a static binary (missing, never "read nothing"), a static program
  it starts, a Go program, a glob, a capped or damaged log, a crash (unless the checker saw it);
- that no checker is disturbed: memcheck, helgrind, ASan, TSan, UBSan and residue report the
  same findings with the library loaded as without it (programs with real bugs inside hooked
  calls included), and the checkers' own machinery (lh-reaper, valgrind's wrapper and launcher,
  ASan's symbolizer) is not recorded.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from unittest import mock

from realrun import PROGRAMS, have

from harness import inputs
from harness import checkers
from harness.run import Job, run_job

SOURCES = PROGRAMS / "inputs"
HAVE_OPENSSL = Path("/usr/include/openssl/bio.h").is_file()
needs_valgrind = pytest.mark.skipif(not have("valgrind"), reason="valgrind not installed")
needs_openssl = pytest.mark.skipif(not HAVE_OPENSSL, reason="needs OpenSSL headers")


# --- building and running ----------------------------------------------------------------------------

def _cc(source: Path, output: Path, *flags: str, link: tuple[str, ...] = ()) -> Path:
    libs = ["-lssl", "-lcrypto"] if HAVE_OPENSSL else []
    cmd = ["gcc", "-g", "-pthread", *flags, str(source), "-o", str(output), *link, *libs, "-ldl"]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                          start_new_session=True)
    assert proc.returncode == 0, proc.stderr
    return output


PROFILES = {
    "plain": ("-O0",),
    "asan": ("-O0", "-fsanitize=address", "-fno-omit-frame-pointer"),
    "ubsan": ("-O0", "-fsanitize=undefined", "-fno-omit-frame-pointer"),
    "tsan": ("-O1", "-fsanitize=thread"),
    "static": ("-O0", "-static"),
}


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> Path:
    """One cache for the module: lh-inputs.so, lh-reaper and lh-residue.so are compiled once."""
    return tmp_path_factory.mktemp("inputs-cache")


@pytest.fixture(scope="session")
def so(cache) -> Path:
    built = inputs.recorder(cache)
    assert built is not None and built.is_file()
    return built


@pytest.fixture(scope="session")
def build(tmp_path_factory):
    """build(name, profile): tests/programs/inputs/NAME.c compiled once per profile."""
    out = tmp_path_factory.mktemp("inputs-programs")
    made: dict[tuple[str, str], Path] = {}

    def get(name: str, profile: str = "plain") -> Path:
        if (name, profile) not in made:
            made[(name, profile)] = _cc(SOURCES / f"{name}.c", out / f"{name}-{profile}", *PROFILES[profile])
            settle()  # a binary just built would count as changed while the job ran
        return made[(name, profile)]

    return get


def settle() -> None:
    """Files the test just made must be older than the run's start by more than the slack the
    reader allows for the file system's clock (else they count as changed while the job ran)."""
    time.sleep(inputs.CLOCK_SLACK_NS / 1e9 + 0.05)


_RUNS = [0]


def record(so: Path, binary: Path, cwd: Path, *args: str, env: dict | None = None,
           timeout: float = 120) -> tuple[subprocess.CompletedProcess, inputs.Recorded, Path]:
    """Run binary directly under the recorder (no checker); its own pid is the main one."""
    _RUNS[0] += 1
    logs = cwd.parent / f"inputs-logs-{_RUNS[0]}"
    logs.mkdir()
    full = inputs.environment({**os.environ, **(env or {})}, so, logs)
    proc = subprocess.Popen([str(binary), *args], cwd=cwd, env=full, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    out, err = proc.communicate(timeout=timeout)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return done, inputs.read(logs, proc.pid), logs


def main_pid(logs: Path) -> int | None:
    """The job's program under lh-reaper: the process whose parent is the reaper."""
    heads = {}
    for path in inputs.log_files(logs):
        first = path.read_text(errors="replace").split("\n", 1)[0]
        m = re.match(r"LH-INPUTS 1 (\w+) pid=(\d+) ppid=(\d+) .* exe=(.*)$", first)
        if m:
            heads[int(m.group(2))] = (int(m.group(3)), m.group(4))
    reaper = next((pid for pid, (_, exe) in heads.items() if exe.endswith("/lh-reaper")), None)
    return next((pid for pid, (ppid, _) in heads.items() if ppid == reaper), None)


def job(cache: Path, checker: str, binary: Path, cwd: Path, *args: str, so: Path | None = None,
        env: dict | None = None, timeout: float = 300):
    """One real job through run.run_job, which loads the recorder into every job (so given), or
    the same job with no recorder at all (so None); returns the result and the folder holding
    the recorder's logs (the job's own)."""
    _RUNS[0] += 1
    tag = f"{checker}-{'rec' if so else 'plain'}-{_RUNS[0]}"
    out = cwd.parent / f"out-{tag}"
    task = Job(checker, (str(binary), *args), out, timeout=timeout, env=tuple(dict(env or {}).items()), cwd=cwd)
    if so is not None:
        return run_job(task, cache), out
    with mock.patch.object(inputs, "recorder", return_value=None):  # the same run, nothing recorded
        result = run_job(task, cache)
    assert not inputs.log_files(out)
    return result, None


def signature(f) -> tuple:
    """A finding as the report shows it, less what differs between two runs of the same program
    with no recorder either: pids, addresses, how many times a race was seen (helgrind
    counted 188, 199 and 199 in three plain runs of threads.c race), and the order of a race's
    "thread created" stacks: two threads running the same racer, TSan names the one that came
    second first (CI saw memory_bugs.c's lines 67 and 68 swap between the two runs)."""
    def frames(stack):
        return tuple((fr.function or "", os.path.basename(fr.file or ""), fr.line or 0,
                      os.path.basename(fr.object or "")) for fr in stack)
    aux = tuple((a.label, frames(a.frames)) for a in f.aux_stacks)
    race = f.category == "data-race"
    return (f.tool, f.kind, f.category, f.leak_kind or "", f.bytes or 0, f.indirect_bytes, f.blocks or 0,
            0 if race else f.count, frames(f.stack), tuple(sorted(aux)) if race else aux, f.suppressed or "")


def same_findings(cache: Path, so: Path, checker: str, binary: Path, cwd: Path, *args: str, env=None,
                  recorded_status: str | None = None):
    """Run the job without and with the recorder; returns both results and the recording.
    recorded_status: what the recorded run is when the recording tells more than the plain run
    can know (a forked child that left by _exit, whose leak check never ran)."""
    plain, _ = job(cache, checker, binary, cwd, *args, env=env)
    recorded, logs = job(cache, checker, binary, cwd, *args, so=so, env=env)
    assert recorded.status == (recorded_status or plain.status), (plain.message, recorded.message)
    assert sorted(map(signature, recorded.findings)) == sorted(map(signature, plain.findings))
    return plain, recorded, logs


def paths(rec: inputs.Recorded, cwd: Path, kind: str | None = None) -> dict[str, inputs.Entry]:
    """The entries under cwd, by their path relative to it."""
    root = str(cwd) + "/"
    return {e.path[len(root):]: e for e in rec.entries
            if e.path.startswith(root) and (kind is None or e.kind == kind)}


def state_of(fp, path: Path) -> list[str]:
    return [value for p, value in fp if p == str(path)]


# --- the library itself ---------------------------------------------------------------------------------

# Functions the library may call: none that ASan, TSan or UBSan intercept (a path read through
# their strlen would be checked as the program's), none that allocates.
ALLOWED_IMPORTS = {"__errno_location", "__register_atfork", "dlsym", "getenv", "syscall", "__cxa_finalize",
                   "_ITM_deregisterTMCloneTable", "_ITM_registerTMCloneTable", "__gmon_start__"}
# Hooks that cannot end in a tail call: the exec family's list forms build an array on their
# stack; _exit writes its end line first and never returns.
NOT_TAIL = {"execl", "execle", "execlp", "_exit", "_Exit"}


@pytest.mark.skipif(not (have("nm") and have("objdump")), reason="needs binutils")
def test_every_hook_ends_in_a_tail_call_and_nothing_intercepted_is_called(so):
    imports = subprocess.run(["nm", "-u", "-D", str(so)], stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, timeout=60, start_new_session=True).stdout
    names = {line.split()[-1].split("@")[0] for line in imports.splitlines() if line.strip()}
    assert names <= ALLOWED_IMPORTS, names - ALLOWED_IMPORTS
    exported = subprocess.run(["nm", "-D", "--defined-only", str(so)], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60, start_new_session=True).stdout
    hooks = {line.split()[-1] for line in exported.splitlines() if " T " in line}
    assert {"open", "fopen", "stat", "access", "opendir", "execve", "posix_spawn", "dlopen", "__xstat"} <= hooks
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(so)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, start_new_session=True).stdout
    functions = re.finditer(r"^[0-9a-f]+ <([^>]+)>:\n(.*?)(?=\n\n|\Z)", text, re.S | re.M)
    bodies = {m.group(1): m.group(2) for m in functions}
    for hook in sorted(hooks - NOT_TAIL):
        body = bodies[hook]
        # The real function is reached by a jump, never a call: our frame is gone when it runs.
        assert re.search(r"\bjmp\s+\*%r", body), hook
        assert not re.search(r"\bcall\s+\*%r", body), hook


def test_log_names_are_not_checker_logs(tmp_path):
    for name in ("lh-inputs.123", "lh-inputs.123.lost"):
        (tmp_path / name).write_text("x")
    assert all(checkers.get(name).log_files(tmp_path) == [] for name in checkers.names())
    assert [p.name for p in inputs.log_files(tmp_path)] == ["lh-inputs.123"]


# --- what is recorded, and what the fingerprint sees -----------------------------------------------------

def test_a_fixed_name_file_created_edited_and_deleted(so, build, tmp_path):
    binary = build("fixed_name")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    sign = cwd / "sign.txt"
    _, rec, _ = record(so, binary, cwd)
    assert rec.complete, rec.why
    assert paths(rec, cwd)["sign.txt"] == inputs.Entry(str(sign), "read", False)
    fp = inputs.fingerprint(rec, cwd)
    assert state_of(fp, sign) == ["read absent"]
    assert inputs.unchanged(fp) and not inputs.doubts(fp)

    sign.write_text("signed\n")  # the blind spot of the old key: now a rerun
    assert not inputs.unchanged(fp)

    settle()
    done, rec, _ = record(so, binary, cwd)
    assert "first line: signed" in done.stdout
    assert rec.complete and paths(rec, cwd)["sign.txt"].existed is True
    fp = inputs.fingerprint(rec, cwd)
    assert state_of(fp, sign)[0].startswith("read file sha256=")
    assert inputs.unchanged(fp)

    # Same size, same mtime (to the nanosecond): only the content differs.
    before = sign.stat()
    sign.write_text("SIGNED\n")
    os.utime(sign, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert sign.stat().st_mtime_ns == before.st_mtime_ns and sign.stat().st_size == before.st_size
    assert not inputs.unchanged(fp)
    sign.write_text("signed\n")
    assert inputs.unchanged(fp)  # the same content again
    sign.unlink()
    assert not inputs.unchanged(fp)


def test_an_access_probe_and_a_folder_listing(so, build, tmp_path):
    binary = build("probe")
    cwd = tmp_path / "cwd"
    (cwd / "certs").mkdir(parents=True)
    (cwd / "certs" / "a.pem").write_text("a")
    settle()
    _, rec, _ = record(so, binary, cwd)
    assert rec.complete, rec.why
    got = paths(rec, cwd)
    assert got["flag"] == inputs.Entry(str(cwd / "flag"), "probe", False)
    assert got["certs"] == inputs.Entry(str(cwd / "certs"), "dir", True)
    fp = inputs.fingerprint(rec, cwd)
    assert state_of(fp, cwd / "flag") == ["probe absent"]
    assert state_of(fp, cwd / "certs")[0].startswith("dir dir listing=")
    assert inputs.unchanged(fp)
    (cwd / "flag").write_text("")
    assert not inputs.unchanged(fp)
    (cwd / "flag").unlink()
    assert inputs.unchanged(fp)
    (cwd / "certs" / "b.pem").write_text("b")
    assert not inputs.unchanged(fp)
    (cwd / "certs" / "b.pem").unlink()
    assert inputs.unchanged(fp)
    (cwd / "certs" / "a.pem").rename(cwd / "certs" / "c.pem")  # same count, another name
    assert not inputs.unchanged(fp)


@needs_openssl
def test_openssl_bio_new_file_and_its_configuration(so, build, tmp_path):
    binary = build("bio")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "input.txt").write_text("fine\n")
    conf = tmp_path / "openssl.cnf"
    conf.write_text("openssl_conf = main\n[main]\n")
    settle()
    _, rec, _ = record(so, binary, cwd, env={"OPENSSL_CONF": str(conf)})
    assert rec.complete, rec.why
    assert paths(rec, cwd)["input.txt"] == inputs.Entry(str(cwd / "input.txt"), "read", True)
    assert any(e.path == str(conf) and e.kind == "read" for e in rec.entries)  # fopen inside libcrypto
    fp = inputs.fingerprint(rec, cwd)
    assert inputs.unchanged(fp)
    conf.write_text("openssl_conf = main\n[main]\n# edited\n")
    assert not inputs.unchanged(fp)
    conf.write_text("openssl_conf = main\n[main]\n")
    assert inputs.unchanged(fp)
    (cwd / "input.txt").write_text("leak\n")
    assert not inputs.unchanged(fp)


@pytest.mark.parametrize("how", ["exit", "_exit"])
def test_a_forked_child_that_reads(so, build, tmp_path, how):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "child.txt").write_text("c\n")
    settle()
    _, rec, logs = record(so, build("fork_read"), cwd, how)
    assert rec.complete, rec.why
    assert len(rec.pids) == 2
    assert paths(rec, cwd)["child.txt"].existed is True
    child = [p for p in inputs.log_files(logs) if int(p.name.split(".")[1]) != min(rec.pids)]
    assert child and f"by={how}" in child[0].read_text()


def test_each_call_and_open_mode(so, build, tmp_path):
    """What each way of learning about a file is recorded as; files written only are not inputs."""
    cwd = tmp_path / "cwd"
    for folder in ("sub", "listed", "scanned"):
        (cwd / folder).mkdir(parents=True)
    for name in ("o_rdonly.txt", "o_rdwr.txt", "sub/in_sub.txt", "fopen_r.txt", "stat.txt", "access.txt"):
        (cwd / name).write_text("x")
    os.symlink("stat.txt", cwd / "lstat_link")
    os.symlink("nowhere", cwd / "readlink_link")
    settle()
    _, rec, _ = record(so, build("calls"), cwd, "execvp")
    assert rec.complete, rec.why
    got = {name: (e.kind, e.existed, e.follow) for name, e in paths(rec, cwd).items()}
    assert got == {
        "o_rdonly.txt": ("read", True, True), "o_rdwr.txt": ("read", True, True),
        "o_excl.txt": ("probe", False, True), "o_path": ("probe", False, True),
        "sub": ("read", True, True), "sub/in_sub.txt": ("read", True, True),  # openat(dirfd, ...)
        "sub/link": ("probe", False, False), "fopen_r.txt": ("read", True, True),
        "fopen_a_plus.txt": ("read", False, True), "stat.txt": ("probe", True, True),
        "lstat_link": ("probe", True, False), "access.txt": ("probe", True, True),
        "faccessat.txt": ("probe", False, True), "statx.txt": ("probe", False, True),
        "readlink_link": ("probe", True, False), "realpath.txt": ("probe", False, True),
        "listed": ("dir", True, True), "scanned": ("dir", True, True),
        "sub/after_chdir.txt": ("read", False, True), "dot/slashes.txt": ("read", False, True),
    }
    # execlp's search: every PATH folder without the program is a probe (one put there later runs).
    searched = [e for e in rec.entries if e.path.endswith("/lh-no-such-program")]
    path_dirs = {d for d in os.environ["PATH"].split(":") if d}
    assert len(searched) == len(path_dirs) and all(e.kind == "probe" and e.existed is False for e in searched)
    # The files written only (o_wronly.txt, o_trunc.txt, fopen_w.txt) are not there; the one opened
    # "a+" is, and was absent: it exists now, so the fingerprint cannot vouch for the run.
    fp = inputs.fingerprint(rec, cwd)
    assert state_of(fp, cwd / "fopen_a_plus.txt") == ["?read: absent when the job looked, present now"]
    assert not inputs.unchanged(fp)

    _, rec, _ = record(so, build("calls"), cwd, "glob")
    assert not rec.complete and "glob('*.pem')" in rec.why
    # A glob of one absolute folder (the linker's /etc/ld.so.conf.d/*.conf) is that folder's listing:
    # whole, and a file added to the folder is a change.
    pems = tmp_path / "pems"  # a folder the program writes nothing into, older than the run
    pems.mkdir()
    (pems / "a.pem").write_text("x")
    inputs.settle(pems)
    _, rec, _ = record(so, build("calls"), cwd, "glob", f"{pems}/*.pem")
    assert rec.complete, rec.why
    assert [e.kind for e in rec.entries if e.path == str(pems)] == ["dir"]
    listed = state_of(inputs.fingerprint(rec, cwd), pems)
    assert listed == [f"dir {inputs.state('dir', str(pems))}"] and "listing=" in listed[0]
    (pems / "new.pem").write_text("x")
    assert listed != [f"dir {inputs.state('dir', str(pems))}"]
    _, rec, _ = record(so, build("calls"), cwd, "glob", f"{cwd}/*/x.pem")  # a walk of many folders: unseen
    assert not rec.complete and f"glob('{cwd}/*/x.pem')" in rec.why


def test_repeats_are_written_once_per_thread(so, build, tmp_path):
    """threads.c: 8 threads, each 100 rounds over the same 10 lines (shared.txt read and probed,
    its own 7 names probed, the folder listed): each line once per thread, not once per call."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "shared.txt").write_text("s")
    settle()
    _, rec, logs = record(so, build("threads"), cwd)
    assert rec.complete, rec.why
    lines = inputs.log_files(logs)[0].read_text().splitlines()
    # (and, at the end, the libraries still loaded: libc and the loader)
    lines = [line for line in lines if not re.fullmatch(r"r \+ /\S+\.so(\.\d+)*", line)]
    assert len(lines) == 2 + 8 * 10, len(lines)
    assert len(paths(rec, cwd)) == 1 + 8 * 7  # shared.txt (read and probed) and each thread's 7 names


def test_no_descriptor_left_for_the_log(so, build, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    _, rec, logs = record(so, build("calls"), cwd, "emfile")
    assert list(logs.glob("lh-inputs.*.lost"))
    assert not rec.complete and any("could not write its log" in p for p in rec.problems)


def test_a_library_constructor_that_reads(so, tmp_path):
    """glibc runs the program's libraries' constructors before a preloaded library's: the
    recorder sets itself up on the first hooked call, and that read is recorded."""
    lib = _cc(SOURCES / "ctor_lib.c", tmp_path / "libctor.so", "-shared", "-fPIC")
    binary = _cc(SOURCES / "uses_ctor.c", tmp_path / "uses_ctor", link=(f"-L{tmp_path}", "-lctor",
                                                                      f"-Wl,-rpath,{tmp_path}"))
    assert lib.is_file()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "ctor.conf").write_text("x")
    settle()
    done, rec, _ = record(so, binary, cwd)
    assert done.stdout.strip() == "1"
    assert rec.complete, rec.why
    assert paths(rec, cwd)["ctor.conf"].existed is True


def test_dlopen_keeps_the_program_as_its_caller(so, tmp_path):
    libdir = tmp_path / "libdir"
    libdir.mkdir()
    lib = _cc(SOURCES / "lib.c", libdir / "liblhtest.so", "-shared", "-fPIC")
    binary = _cc(SOURCES / "dlopen.c", tmp_path / "dlopen", "-Wl,--enable-new-dtags", f"-Wl,-rpath,{libdir}")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    settle()
    done, rec, _ = record(so, binary, cwd, str(lib), "liblhtest.so")
    # Found through the program's RUNPATH: the hook left the program as dlopen's caller.
    assert done.returncode == 0 and done.stdout.split() == ["1", "1", "1", "1"], done.stderr
    reads = {e.path for e in rec.entries if e.kind == "read"}
    assert str(lib) in reads and any(p.endswith("/libc.so.6") for p in reads)  # by path; loaded already
    assert not rec.complete and "dlopen('liblhtest.so')" in rec.why  # searched: not recorded
    # Without the search, nothing is unseen: the vDSO is loaded with no file behind it (nothing
    # searched, nothing read), and the sanitizers' runtimes dlopen it by that name.
    done, rec, _ = record(so, binary, cwd, str(lib), "")
    assert done.returncode == 0 and done.stdout.split() == ["1", "1", "0", "1"], done.stderr
    assert rec.complete, rec.why


@pytest.mark.parametrize("how", ["spawn", "system", "exec", "vfork", "fork-spawn"])
def test_programs_it_starts(so, build, tmp_path, how):
    """A started program that loads the recorder is recorded; a static one makes the recording
    incomplete, however it was started."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "sign.txt").write_text("s\n")
    settle()
    _, rec, _ = record(so, build("spawn"), cwd, how, str(build("fixed_name")))
    assert rec.complete, rec.why
    assert paths(rec, cwd)["sign.txt"].existed is True  # read by the started program
    assert any(e.kind == "exec" and e.path == str(build("fixed_name")) for e in rec.entries)
    _, rec, _ = record(so, build("spawn"), cwd, how, str(build("fixed_name", "static")))
    assert not rec.complete
    assert "wrote no record" in rec.why and "static" in rec.why


def test_a_static_binary_is_missing_not_clean(so, build, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    done, rec, _ = record(so, build("fixed_name", "static"), cwd)
    assert done.returncode == 0
    assert not rec.complete and rec.why.startswith("no recording for the main process")
    assert rec.entries == ()
    fp = inputs.fingerprint(rec, cwd)
    assert not inputs.unchanged(fp) and inputs.doubts(fp)


@pytest.mark.skipif(not have("go"), reason="go is not installed")
def test_a_go_program_cannot_be_vouched_for(so, tmp_path):
    binary = tmp_path / "goread"
    env = {**os.environ, "CGO_ENABLED": "1", "GOFLAGS": "-mod=mod"}
    proc = subprocess.run(["go", "build", "-o", str(binary), "."], cwd=SOURCES / "goread", env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
                          start_new_session=True)
    assert proc.returncode == 0, proc.stderr
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "gosign.txt").write_text("g")
    (cwd / "csign.txt").write_text("c")
    settle()
    done, rec, _ = record(so, binary, cwd)
    assert done.stdout.split() == ["true", "true"]
    got = paths(rec, cwd)
    assert "csign.txt" in got  # cgo's fopen goes through libc
    assert "gosign.txt" not in got  # os.ReadFile: raw system calls
    assert not rec.complete
    assert any("Go program" in p for p in rec.problems)
    assert any("without the recorder's end line" in p for p in rec.problems)  # exit_group


def test_files_the_job_changed_cannot_be_vouched_for(so, build, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "state.txt").write_text("old\n")
    settle()
    _, rec, _ = record(so, build("writes_then_reads"), cwd)
    assert rec.complete, rec.why
    fp = inputs.fingerprint(rec, cwd)
    assert state_of(fp, cwd / "state.txt") == ["?read: changed while the job ran (or just before it started)"]
    assert state_of(fp, cwd / "made_later.txt") == ["?probe: absent when the job looked, present now"]
    assert len(inputs.doubts(fp)) == 2 and not inputs.unchanged(fp)


def test_a_crash_is_whole_only_when_the_checker_saw_it(so, memory_bugs, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    done, rec, logs = record(so, memory_bugs["plain"], cwd, "segv")
    assert done.returncode < 0
    assert not rec.complete and "without the recorder's end line" in rec.why
    pid = min(int(p.name.split(".")[1]) for p in inputs.log_files(logs))
    assert inputs.read(logs, pid, died=[pid]).complete


def test_a_capped_log_a_cut_one_and_a_lost_record(so, build, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    _, rec, logs = record(so, build("threads"), cwd, env={inputs.MAX_VAR: "200"})
    assert not rec.complete and "reached the cap" in rec.why
    assert "LH-INPUTS capped" in inputs.log_files(logs)[0].read_text()

    _, rec, logs = record(so, build("fixed_name"), cwd)
    assert rec.complete
    log = inputs.log_files(logs)[0]
    pid = int(log.name.split(".")[1])
    whole = log.read_text()
    log.write_text(whole[:-3])  # the end line cut
    assert "cut short" in inputs.read(logs, pid).why
    log.write_text(whole + "garbage\n")
    assert "not a line of the recorder's log" in inputs.read(logs, pid).why
    log.write_text(whole)
    (logs / f"lh-inputs.{pid}.lost").write_text("")
    assert "could not write its log" in inputs.read(logs, pid).why
    assert "no recording for the main process" in inputs.read(logs, pid + 100000).why


def test_hashes_are_remembered_by_identity(tmp_path, monkeypatch):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(4 << 20))
    reads = []
    real_read = os.read
    monkeypatch.setattr(inputs.os, "read", lambda fd, n: reads.append(n) or real_read(fd, n))
    first = inputs.state("read", str(big))
    assert len(reads) > 4  # hashed: the file was just written, too new to remember
    monkeypatch.setattr(inputs, "RACY_NS", 0)  # as if it were old
    inputs.state("read", str(big))
    reads.clear()
    assert inputs.state("read", str(big)) == first and reads == []  # remembered
    # The same size and mtime after an edit: the ctime (which no one can set) tells.
    before = big.stat()
    with open(big, "r+b") as fh:
        fh.write(b"\0" * 16)
    os.utime(big, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert inputs.state("read", str(big)) != first


# --- the checkers are not disturbed ------------------------------------------------------------------------

@pytest.fixture()
def cwd(tmp_path) -> Path:
    folder = tmp_path / "cwd"
    folder.mkdir()
    for name, text in (("sign.txt", "signed\n"), ("input.txt", "leak\n"), ("child.txt", "c\n"),
                       ("shared.txt", "s\n"), ("key.txt", "LH-test-secret!!\n")):
        (folder / name).write_text(text)
    settle()
    return folder


@pytest.mark.slow
@needs_valgrind
@pytest.mark.parametrize("program,args", [("memory_bugs", ("leaks",)), ("memory_bugs", ("segv",)),
                                          ("bad_path", ()), ("bad_path", ("stat",)), ("bio", ())])
def test_memcheck_reports_the_same_with_the_recorder(so, cache, build, memory_bugs, cwd, program, args):
    if program == "bio" and not HAVE_OPENSSL:
        pytest.skip("needs OpenSSL headers")
    binary = memory_bugs["plain"] if program == "memory_bugs" else build(program)
    plain, recorded, logs = same_findings(cache, so, "memcheck", binary, cwd, *args)
    assert plain.findings  # each has something to report: a leak, an invalid read, a crash
    rec = inputs.read(logs, main_pid(logs))
    if args != ("segv",):
        assert rec.complete, rec.why
    # valgrind's Debian wrapper (a shell script), its launcher and lh-reaper are machinery: one
    # skip line each, nothing recorded for them.
    text = "".join(p.read_text() for p in inputs.log_files(logs))
    skipped = re.findall(r"^LH-INPUTS 1 skip .* exe=(.*)$", text, re.M)
    assert any(s.endswith("/lh-reaper") for s in skipped)
    assert any(s.endswith("/valgrind.bin") or s.endswith("/valgrind") for s in skipped)
    assert not [e.path for e in rec.entries if "valgrind" in e.path]


@pytest.mark.slow
@needs_valgrind
@pytest.mark.parametrize("args", [(), ("race",)])
def test_helgrind_sees_no_race_of_the_recorder(so, cache, build, cwd, args):
    plain, recorded, logs = same_findings(cache, so, "helgrind", build("threads"), cwd, *args)
    assert bool(recorded.findings) == (args == ("race",))
    rec = inputs.read(logs, main_pid(logs))
    assert rec.complete, rec.why
    assert paths(rec, cwd)["shared.txt"].existed is True and "file0-0.txt" in paths(rec, cwd)


@pytest.mark.parametrize("program,args", [("memory_bugs", ("leaks",)), ("memory_bugs", ("uaf",)),
                                          ("memory_bugs", ("fork",)), ("bad_path", ()), ("bad_path", ("stat",)),
                                          ("bio", ())])
def test_asan_reports_the_same_with_the_recorder(so, cache, build, memory_bugs, cwd, program, args):
    if program == "bio" and not HAVE_OPENSSL:
        pytest.skip("needs OpenSSL headers")
    binary = memory_bugs["asan"] if program == "memory_bugs" else build(program, "asan")
    forked = args == ("fork",)  # the child leaves by _exit: only the recording shows its leaks unchecked
    plain, recorded, logs = same_findings(cache, so, "asan", binary, cwd, *args,
                                          recorded_status="incomplete" if forked else None)
    if forked:
        assert plain.status == "ok" and "a forked child" in recorded.message, recorded.message
    assert plain.findings
    if program == "bad_path":  # the bug is inside the hooked call: the report names the program's line
        assert recorded.findings[0].stack[1].function == "main"
    rec = inputs.read(logs, main_pid(logs), died=[f.pid for f in recorded.findings if f.is_error])
    assert rec.complete, rec.why
    # ASan symbolizes its report with libbacktrace, through libc's open: not the program's reads.
    assert not [e.path for e in rec.entries if "/debug/" in e.path or "libasan" in e.path]


def test_asan_needs_its_link_order_check_off(so, cache, memory_bugs, cwd, tmp_path):
    """Why environment() sets verify_asan_link_order=0: without it ASan refuses to run."""
    logs = tmp_path / "logs"
    logs.mkdir()
    env = inputs.environment(dict(os.environ), so, logs)
    env["ASAN_OPTIONS"] = env["ASAN_OPTIONS"].replace(inputs.ASAN_LINK_ORDER, "")
    proc = subprocess.run([str(memory_bugs["asan"]), "leaks"], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120, start_new_session=True)
    assert proc.returncode != 0 and "does not come first" in proc.stderr
    ok = subprocess.run([str(memory_bugs["asan"]), "leaks"], env=inputs.environment(dict(os.environ), so, logs),
                        cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                        start_new_session=True)
    assert "does not come first" not in ok.stderr and "LeakSanitizer" in ok.stderr


@pytest.mark.parametrize("checker,program,args", [("tsan", "memory_bugs", ("race",)), ("tsan", "threads", ()),
                                                  ("tsan", "threads", ("race",)), ("ubsan", "memory_bugs", ("ubsan",))])
def test_tsan_and_ubsan_report_the_same_with_the_recorder(so, cache, build, memory_bugs, cwd, checker, program, args):
    binary = memory_bugs[checker] if program == "memory_bugs" else build(program, checker)
    plain, recorded, logs = same_findings(cache, so, checker, binary, cwd, *args)
    assert bool(plain.findings) == bool(args)
    rec = inputs.read(logs, main_pid(logs))
    assert rec.complete, rec.why


def test_residue_reports_the_same_beside_the_recorder(so, cache, build, cwd):
    env = {"LH_RESIDUE_SECRETS": b"LH-test-secret!!".hex()}
    plain, recorded, logs = same_findings(cache, so, "residue", build("secret"), cwd, env=env)
    assert "SecretInFreedBlock" in {f.kind for f in plain.findings}
    rec = inputs.read(logs, main_pid(logs))
    assert rec.complete and paths(rec, cwd)["key.txt"].existed is True
