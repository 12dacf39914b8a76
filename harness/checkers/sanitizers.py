"""The sanitizers: checks compiled into the program (asan, asan-O2, ubsan, tsan, msan).

Each is a build profile plus the runtime options it is run with; every log goes to log_path
(one file per process, sanitizer.PID), read by parsers/sanitizers.py.  LSan misses leaks whose
pointer lingers in a dead stack slot unless use_stacks=0, and cuts stacks at CRYPTO_zalloc with
fast unwinding (../shared/catalog.md measured both); 40 frames as valgrind's --num-callers,
since LSan's default 30 loses main under deep certificate-parsing stacks.

A sanitizer run is whole when its runtime did not fail, no log is cut, a crash was reported, and
for ASan the exit-time leak check ran: ASan's exit statistics (atexit=1) are the proof that the
program left through exit() with ASan alive.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..elf import compiled_sanitizer_options, contains
from .base import Checker, child_environment, unless_found, which

SANITIZER_ENV = {
    "ASAN_OPTIONS": "fast_unwind_on_malloc=0:malloc_context_size=40:detect_stack_use_after_return=1:detect_leaks=1"
                    ":abort_on_error=0:disable_coredump=1",
    "LSAN_OPTIONS": "use_stacks=0",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=0",
    "TSAN_OPTIONS": "halt_on_error=0:second_deadlock_stack=1",
    "MSAN_OPTIONS": "",
}
# Options the user's own cannot turn off: the log path, ASan's exit statistics (proof that the
# exit-time leak check ran) and the leak check itself (detect_leaks=0 would make a leak look clean).
# print_suppressions=1: the "Suppressions used:" table is how a run whose every leak was
# suppressed is told from a clean one (a user's print_suppressions=0 made it silent: clean).
# The checks a user's options (in the environment, a target's env, or __asan_default_options
# compiled into the program, which the environment's options override) could turn off and the
# job still say clean: poison_heap=0 hid a heap overflow, report_bugs=0 a data race.  Each is
# set back to the runtime's default, last.
FORCED_OPTIONS = {
    "ASAN_OPTIONS": ":atexit=1:detect_leaks=1:leak_check_at_exit=1:print_suppressions=1"
                    ":poison_heap=1:poison_partial=1:poison_array_cookie=1:replace_str=1:replace_intrin=1"
                    ":alloc_dealloc_mismatch=1:new_delete_type_mismatch=1:detect_container_overflow=1"
                    ":report_globals=1:check_malloc_usable_size=1",
    "LSAN_OPTIONS": ":detect_leaks=1:leak_check_at_exit=1:print_suppressions=1",
    "TSAN_OPTIONS": ":print_suppressions=1:report_bugs=1:report_thread_leaks=1:report_destroy_locked=1"
                    ":report_mutex_bugs=1:report_signal_unsafe=1:report_atomic_races=1"
                    ":ignore_noninstrumented_modules=0:ignore_interceptors_accesses=0:force_seq_cst_atomics=0",
    "MSAN_OPTIONS": ":poison_in_malloc=1:poison_in_free=1:report_umrs=1:poison_heap_with_zeroes=0",
}
# What LSan writes when every leak it found was suppressed, and TSan (print_suppressions=1) when
# a suppression matched.
SUPPRESSIONS_USED = b"Suppressions used:"
TSAN_SUPPRESSIONS_MATCHED = re.compile(rb"^ThreadSanitizer: Matched \d+ suppressions", re.M)
# What ASan prints at exit with atexit=1: proof that the program ended through exit(), so that
# LeakSanitizer's exit-time check ran too.
ASAN_EXIT_MARK = b"AddressSanitizer exit stats:"
# A sanitizer runtime that failed before or instead of checking says so on stderr.
_RUNTIME_FAILURE = re.compile(
    r"(?:Sanitizer: ERROR: .*|expected '=' in \w+_OPTIONS|ERROR: \w*Sanitizer failed.*"
    r"|==\d+==ERROR: External symbolizer.*|ERROR: \w*Sanitizer: .*(?:failed|cannot|unsupported|not supported).*"
    r"|==\d+==\w*Sanitizer CHECK failed.*|FATAL: \w*Sanitizer.*)$", re.M)


# Options as the runtimes read them: NAME=VALUE, separated by ':', ',' or white space, a value
# in quotes kept whole.
_OPTION = re.compile(r"""(\w+)=("[^"]*"|'[^']*'|[^\s:,]*)""")
# The options naming files: suppressions, and further options (include / include_if_exists).
_FILE_OPTIONS = ("suppressions", "include", "include_if_exists")


def options(text: str) -> list[tuple[str, str]]:
    """(name, value) of each option in a *SAN_OPTIONS string, its quotes taken off."""
    return [(name, value.strip("'\"")) for name, value in _OPTION.findall(text)]


def option_files(env: dict[str, str], cwd: Path, program: str) -> list[str]:
    """Every file the sanitizer options of a job name (present or not: one that appears is read
    next time), as the runtime looks for it: the option's value with %b the program's name,
    relative to the working folder, a suppressions file also beside the program; an included
    options file read for the files it names in turn.  The options compiled into the program
    (__asan_default_options and the like) count too."""
    texts = [v for k, v in env.items() if k.endswith("SAN_OPTIONS")]
    texts += compiled_sanitizer_options(program)
    found: list[str] = []
    read = 0
    while texts and read < 32:
        text = texts.pop(0)
        read += 1
        for name, value in options(text):
            value = value.replace("%b", os.path.basename(program))
            if name not in _FILE_OPTIONS or not value or "%" in value:
                continue
            candidates = [os.path.normpath(os.path.join(str(cwd), value))]
            if name == "suppressions" and not os.path.isabs(value):
                candidates.append(os.path.normpath(os.path.join(os.path.dirname(os.path.realpath(program)), value)))
            for path in candidates:
                if path in found:
                    continue
                found.append(path)
                if name != "suppressions" and os.path.isfile(path):
                    try:
                        with open(path, "rb") as fh:  # options files are small: their first 64 KiB
                            texts.append(fh.read(65536).decode("utf-8", "replace"))
                    except OSError:
                        pass
    return found


def _read(program: str, limit: int | None = None) -> bytes | str:
    try:
        with open(program, "rb") as fh:
            return fh.read() if limit is None else fh.read(limit)
    except OSError as exc:
        return f"cannot read {program}: {exc.strerror or exc}"


def _the_systems(exe: str) -> bool:
    """A program of the distribution's (/usr but /usr/local, /bin, /sbin, /lib): not the checked
    program's own code."""
    parts = Path(exe).parts
    return len(parts) > 2 and parts[0] == "/" and (parts[1] in ("bin", "sbin", "lib", "lib64", "libexec") or (
        parts[1] == "usr" and parts[2] != "local"))


class SanitizerChecker(Checker):
    family = "sanitizers"
    marks: tuple[bytes, ...] = ()  # symbols only a binary built with it holds
    # What only code compiled with the flag holds: linked with it alone (a Makefile whose own
    # CFLAGS drop ours, its LDFLAGS kept), a binary holds the runtime, which sees leaks and bad
    # frees, but none of the checks of the program's own reads and writes.  () when the marks say it.
    instrumented: tuple[bytes, ...] = ()
    flag = ""  # how to build for it, for messages
    leak_check = False  # LeakSanitizer runs at exit: its statistics must show it did

    def cannot_check(self, program: str) -> str:
        head = _read(program, 4)
        if isinstance(head, str):
            return head
        if not head.startswith(b"\x7fELF"):
            return f"{program} is not an ELF executable: {self.name} checks only a binary built with {self.flag}"
        # elf.contains remembers the answer by the file's identity: not the whole binary read per job.
        if not any(contains(program, m) for m in self.marks):
            return f"{program} is not built with {self.flag}: {self.name} cannot check it"
        return ""

    def command(self, job, log_dir: Path, cache_dir: Path) -> tuple[list[str], dict[str, str]]:
        env = child_environment(job.env)
        prefix = log_dir / "sanitizer"
        for var, options in SANITIZER_ENV.items():
            user = env.get(var, "")
            # Ours first, then the user's: a user's option wins, but the log path is always ours,
            # and ASan's exit statistics (atexit=1) prove the exit-time leak check ran.
            forced = f"log_path={prefix}" + FORCED_OPTIONS.get(var, "")
            env[var] = ":".join(x for x in (options, user, forced) if x)
        return list(job.command), env

    def log_files(self, out_dir: Path) -> list[Path]:
        return sorted(out_dir.glob("sanitizer.*"))

    def accept_unparsed(self, path: Path, g) -> bool:
        head = _read(str(path), 65536)
        if isinstance(head, str):
            return False
        if self.leak_check and ASAN_EXIT_MARK in head:
            if g.of_main(path):
                g.flags.add("exit-stats")
            if head.lstrip(b"-\n").startswith(SUPPRESSIONS_USED):
                # Leaks found, every one covered by a suppression (the user's, or the program's own
                # __lsan_default_suppressions): said, never a silent clean.
                g.problems.append(f"{path.name}: only leaks that suppressions cover")
            return True  # exit statistics only: a clean exit, nothing to report
        if head.lstrip(b"-\n").startswith(SUPPRESSIONS_USED) and b"ERROR:" not in head:
            # LSan found only leaks a suppression covers: it lists the suppressions used, nothing else.
            g.problems.append(f"{path.name}: only leaks that suppressions cover")
            return True
        if TSAN_SUPPRESSIONS_MATCHED.search(head) and b"WARNING: ThreadSanitizer" not in head:
            g.problems.append(f"{path.name}: only races that suppressions cover")
            return True
        return False

    def key_files(self, env: dict[str, str], cwd: Path, program: str) -> list[str]:
        # The runtime is a shared library (hashed with the program's others); the symbolizer
        # names the frames; the files the options name are read by the runtime with its own
        # system calls, which the recorder does not see.
        symbolizer = (env.get("ASAN_SYMBOLIZER_PATH") or env.get("TSAN_SYMBOLIZER_PATH")
                      or which("llvm-symbolizer", env))
        return [symbolizer or "no-symbolizer", *option_files(env, cwd, program)]

    def runtime_failed(self, g) -> str:
        """What every sanitizer's run must not show: a failed runtime, a cut log, a crash with no
        report of it."""
        failure = _RUNTIME_FAILURE.search(g.stderr_tail())
        if failure:
            return f"the {self.name} runtime failed: {failure.group(0).strip()[:300]}"
        if g.cut:
            return f"a log is cut short or unreadable: {', '.join(g.cut)}"
        if g.signal is not None and not g.main_reported:
            return f"crashed with {g.signal} and {self.name} wrote no report of it"
        return ""

    def incomplete(self, g) -> str:
        why = self.runtime_failed(g)
        if why:
            return why
        exit_stats = "exit-stats" in g.flags or any(getattr(log, "exit_stats", False)
                                                    for path, log in g.parsed if g.of_main(path))
        if self.leak_check and not exit_stats and not g.main_reported:
            return ("AddressSanitizer's exit-time leak check did not run (the program ended without "
                    "exit(): _exit, exec or a signal), so leaks were not checked")
        return self.uninstrumented_code(g) or self._unchecked_child(g)

    def uninstrumented_code(self, g) -> str:
        """The program holds the runtime but no code compiled with the flag (`instrumented`): only
        what the runtime sees by itself was checked.  What it found stands (said, as a problem);
        nothing found is not clean."""
        if not self.instrumented or not os.path.isfile(g.program) or not any(
                contains(g.program, m) for m in self.marks):
            return ""
        if any(contains(g.program, m) for m in self.instrumented):
            return ""
        return unless_found(g, f"{os.path.basename(g.program)} is linked with {self.flag} but none of its code is "
                               f"compiled with it (a build whose own CFLAGS replace the checker's, LDFLAGS kept): "
                               f"{self.name} did not check its reads and writes")

    def uninstrumented_child(self, g) -> str:
        """A process of the program that ran a program of the user's not built with this sanitizer
        (a helper it starts, a tool of its own): the sanitizer saw nothing of it, where memcheck
        follows it (valgrind --trace-children).  The distribution's programs (a shell, the
        openssl command) are not the program's code."""
        if g.recorded is None:
            return ""
        for end in g.recorded.ends:
            if end.pid == g.main_pid or not end.exe or end.by == "exec" or _the_systems(end.exe):
                continue
            if not any(contains(end.exe, m) for m in self.marks):
                return (f"process {end.pid} ran {os.path.basename(end.exe)}, which is not built with {self.flag}: "
                        f"{self.name} saw nothing of it (memcheck follows the program's children)")
        return ""

    def _unchecked_child(self, g) -> str:
        """A process of the program, other than the main one, not built with this sanitizer (see
        uninstrumented_child); or built with it, that ended without exit() and wrote no log:
        LeakSanitizer's check runs at exit(), so a forked worker leaving by _exit (the usual way
        after fork) or stopped by a signal had its leaks never checked, and the run said nothing of
        them (memcheck sees them)."""
        why = self.uninstrumented_child(g)
        if why or g.recorded is None or not self.leak_check:
            return why
        logged = {path.name.rpartition(".")[2] for path in self.log_files(g.out_dir)}
        for end in g.recorded.ends:
            if end.pid == g.main_pid or end.by in ("exit", "exec") or str(end.pid) in logged:
                continue
            if not end.exe or not any(contains(end.exe, m) for m in self.marks):
                continue  # not built with the sanitizer: uninstrumented_child's
            how = "by _exit" if end.by == "_exit" else "without exit() (a signal, a crash)"
            what = "a forked child" if end.forked else "a program it ran"
            return (f"process {end.pid} ({what}: {os.path.basename(end.exe)}) ended {how}: LeakSanitizer's "
                    f"check runs at exit(), so its leaks were not checked (memcheck sees them)")
        return ""


class Asan(SanitizerChecker):
    marks = (b"__asan_init",)
    # gcc's instrumented objects call this from their constructor (libasan then is a shared
    # library: the link alone leaves only __asan_init); clang's constructor is asan.module_ctor.
    instrumented = (b"__asan_version_mismatch_check", b"asan.module_ctor")
    flag = "-fsanitize=address"
    leak_check = True
    halts_on_first_error = True
    log_tools = ("asan", "lsan")
    languages = frozenset({"c"})
    cannot_see = ("bad accesses inside uninstrumented libraries (the system libcrypto: a double free there is a "
                  "SEGV or a hang, never \"double-free\"); uninitialised reads; anything after the first error "
                  "(it stops there, and the exit-time leak check of that run never happens); leaks whose pointer "
                  "lingers in a register")

    def __init__(self, name: str, cflags: tuple[str, ...], base: str | None = None,
                 check_default: bool = False, twins: dict[str, str] | None = None):
        self.name, self.cflags, self.base = name, cflags, base
        self.twins = dict(twins or {})
        self.default_for = frozenset({"c"})
        self.required_for = frozenset({"c"}) if base is None else frozenset()
        self.check_default_for = frozenset({"c"}) if check_default else frozenset()


class Ubsan(SanitizerChecker):
    name = "ubsan"
    cflags = ("-g", "-O0", "-fsanitize=undefined", "-fno-omit-frame-pointer")
    marks = (b"__ubsan_handle_",)
    flag = "-fsanitize=undefined"
    default_for = frozenset({"c"})
    log_tools = ("ubsan",)
    cannot_see = "heap memory: no leak, no use after free, no double free (undefined behaviour only)"

    def after_logs(self, g) -> None:
        super().after_logs(g)
        # UBSan says nothing of a report its suppressions hid (LSan and TSan list what matched):
        # a job run with them is never silently clean.
        named = [v for n, v in options(g.env.get("UBSAN_OPTIONS", "")) if n == "suppressions" and v]
        if named:
            g.problems.append(f"UBSan ran with suppressions ({named[0][:200]}): what they cover was not "
                              f"reported, and UBSan does not say whether any matched")


class Tsan(SanitizerChecker):
    name = "tsan"
    cflags = ("-g", "-O1", "-fsanitize=thread")
    marks = (b"__tsan_init",)
    instrumented = (b"__tsan_func_entry", b"tsan.module_ctor")  # every instrumented function calls the first
    flag = "-fsanitize=thread"
    log_tools = ("tsan",)
    cannot_see = "leaks and most memory errors (data races and lock order only); races inside uninstrumented libcrypto"


class Msan(SanitizerChecker):
    name = "msan"
    # clang only; blind to whatever the uninstrumented libcrypto writes (every byte OpenSSL hands
    # back looks uninitialised), so meant for code that does not link OpenSSL, not the catalog.
    cflags = ("-g", "-O0", "-fsanitize=memory", "-fsanitize-memory-track-origins", "-fno-omit-frame-pointer")
    compiler = "clang"
    marks = (b"__msan_init",)
    flag = "-fsanitize=memory"
    log_tools = ("msan",)
    cannot_see = ("everything an uninstrumented library writes looks uninitialised (so OpenSSL programs cannot be "
                  "checked); leaks")


CHECKERS = (
    Asan("asan", ("-g", "-O0", "-fsanitize=address", "-fno-omit-frame-pointer"), check_default=True,
         twins={"go": "go-asan"}),
    Asan("asan-O2", ("-g", "-O2", "-fsanitize=address", "-fno-omit-frame-pointer"), base="asan"),
    Ubsan(), Tsan(), Msan(),
)
FAMILY = ("sanitizers", "Sanitizers: checks compiled into the program")
