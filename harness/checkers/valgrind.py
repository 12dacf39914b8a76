"""The valgrind checkers: memcheck (at -O0 and -O2) and helgrind, on the program as compiled.

Every process gets its own XML file (--xml-file=vg.%p.xml, --trace-children=yes), read by
parsers/valgrind.py.  No --log-file: with it, valgrind 3.19 writes no XML for a forked child.

A valgrind run is whole when the program's own process has an XML file that reached FINISHED
(a valgrind that stopped at start-up closes its XML with RUNNING only), no file is cut short,
a crash was reported, and no process ran a program valgrind cannot see into: a statically
linked one (valgrind cannot replace its malloc, so no leak or heap error is seen) or a setuid
one (valgrind refuses to run it).  A Go program built by leakharness must also have reached the
end of its main (where the build hides Go's heap from the leak check).

The result depends on valgrind's own files besides the program: its binary, the tool and its
preload libraries, its default suppressions, and the rc files it reads by itself
(~/.valgrindrc, ./.valgrindrc, whose contents may name suppression files in turn).
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path

from .. import elf, facts
from ..gobuild import GO_MARKS_ENV, MEMCHECK_MARK
from .base import Checker, child_environment, unless_found, which
from ..elf import contains, is_go_binary
from .go import child_unchecked, go_crash_findings, main_checked, marked_processes, name_go_callers

DATA = Path(__file__).resolve().parent.parent / "data"
SUPPRESSIONS = DATA / "openssl.supp"
GO_SUPPRESSIONS = DATA / "go" / "go.supp"
INSTALL_HINT = "sudo apt-get install valgrind (or scripts/install-system-packages.sh)"
# --child-silent-after-fork=no: a .valgrindrc or VALGRIND_OPTS saying yes left a forked child's
# leaks unreported (the command line is read last: its word wins).
COMMON_OPTIONS = ("--xml=yes", "--trace-children=yes", "--child-silent-after-fork=no", "--num-callers=40")
# What valgrind's own configuration (~/.valgrindrc, VALGRIND_OPTS, ./.valgrindrc) may say that a
# later option cannot take back (each adds to the last): errors in those addresses go unreported.
_IGNORING = ("--ignore-ranges=", "--ignore-range-below-sp=")
# The options valgrind's own configuration may set that change nothing a verdict rests on: its
# messages, the look of frames, its own sizes and scheduling, or more checking rather than less.
# Any other option it sets (--xtree-leak=yes took every leak out of the XML; --soname-synonyms
# can keep malloc from being replaced; --trace-children-skip, --workaround-gcc296-bugs,
# --sim-hints=lax-ioctls, --log-file, --vgdb-error...) makes a clean job incomplete: an option
# we never read is not known to be harmless.  Options on our own command line are taken back
# (valgrind reads it last), whatever the configuration said of them.
_HARMLESS = frozenset({
    "-q", "--quiet", "-v", "--verbose", "-s", "--show-error-list", "--time-stamp", "--track-fds", "--demangle",
    "--error-limit", "--error-exitcode", "--error-markers", "--keep-debuginfo", "--show-below-main",
    "--default-suppressions", "--max-stackframe", "--main-stacksize", "--alignment", "--xtree-memory",
    "--xtree-memory-file", "--xtree-leak-file", "--fullpath-after", "--extra-debuginfo-path",
    "--allow-mismatched-debuginfo", "--smc-check", "--read-inline-info", "--read-var-info", "--vgdb",
    "--vgdb-poll", "--vgdb-prefix", "--vgdb-shadow-registers", "--run-libc-freeres", "--run-cxx-freeres",
    "--fair-sched", "--merge-recursive-frames", "--num-transtab-sectors", "--avg-transtab-entry-size",
    "--valgrind-stacksize", "--show-emwarns", "--sigill-diagnostics", "--max-threads", "--xml-user-comment",
    "--dsymutil", "--unw-stack-scan-thresh", "--unw-stack-scan-frames", "--resync-filter",
    # memcheck
    "--leak-resolution", "--errors-for-leak-kinds", "--leak-check-heuristics", "--track-origins",
    "--partial-loads-ok", "--expensive-definedness-checks", "--malloc-fill", "--free-fill",
    # helgrind
    "--free-is-write", "--conflict-cache-size", "--cmp-race-err-addrs", "--history-backtrack-size",
    "--delta-stacktrace",
})
# Older names of what our --show-leak-kinds=all sets again.
_TAKEN_BACK = frozenset({"--show-reachable", "--show-possibly-lost"})
_HARMLESS_VALUES = {"--gen-suppressions": {"no", "all"}, "--keep-stacktraces": {"alloc-and-free", "alloc-then-free"},
                    "--track-lockorders": {"yes"}, "--check-stack-refs": {"yes"}, "--ignore-thread-creation": {"no"},
                    "--exit-on-first-error": {"no"}, "--vgdb-stop-at": {"none"}}
# Sizes that hide nothing at or above valgrind's default (a smaller freed-block queue, or
# smaller redzones, let a use after free or an overflow land in memory that is not freed).
_AT_LEAST = {"--freelist-vol": 20_000_000, "--freelist-big-blocks": 1_000_000, "--redzone-size": 16,
             "--vgdb-error": 999_999_999}


def _unknown_to_be_harmless(option: str, ours: frozenset[str]) -> bool:
    """Whether an option valgrind's own configuration set may change what a job reports."""
    name, eq, value = option.partition("=")
    if (name in ours or name in _TAKEN_BACK or name in _HARMLESS or option.startswith(_IGNORING)
            or name == "--suppressions"):
        return False  # taken back by our command line, harmless, or said on its own
    if name in _HARMLESS_VALUES:
        return value not in _HARMLESS_VALUES[name]
    if name in _AT_LEAST:
        try:
            return int(value, 0) < _AT_LEAST[name]
        except ValueError:
            return True
    return True


@functools.lru_cache(maxsize=None)
def valgrind_version() -> str:
    """`valgrind-3.19.0`, remembered (facts.py) while valgrind's launcher and Debian's
    valgrind.bin beside it are unchanged."""
    path = which("valgrind")
    if not path:
        return "valgrind-missing"
    real = os.path.realpath(path)
    answer = facts.tool_output([path, "--version"], grounds=[real + ".bin"], timeout=30)
    return (answer[1].strip() if answer else "") or "valgrind-unknown"


_TOOL_FILES: dict[tuple[str, str], tuple] = {}


def _tool_files(libexec: str, tool: str) -> list[str]:
    """valgrind's files for a tool: its binary, its preloads, the default suppressions.  Listed
    once per process while the folder is unchanged (every valgrind job's key names them)."""
    ident = facts.identity(libexec)
    known = _TOOL_FILES.get((libexec, tool))
    if known is not None and known[0] == ident and ident is not None:
        return known[1]
    files = []
    for pattern in (f"{tool}-*-linux", f"vgpreload_{tool}-*.so", "vgpreload_core-*.so", "default.supp"):
        files.extend(sorted(str(p) for p in Path(libexec).glob(pattern)))
    _TOOL_FILES[(libexec, tool)] = (ident, files)
    return files


def cannot_see_into(program: str) -> str:
    """Why valgrind cannot check a program file, or ""."""
    if elf.is_static(program):
        return (f"{program} is statically linked: valgrind cannot replace its malloc and free, so no leak "
                f"or heap error of it can be seen")
    if elf.is_setuid(program):
        return f"{program} is setuid or setgid: valgrind cannot run it"
    for mark, name in _SANITIZER_RUNTIMES:
        if elf.contains(program, mark):
            # ASan aborts at start-up ("Shadow memory range interleaves with an existing memory
            # mapping"), exit code 1, main never run: read as a program that returned 1, it was clean.
            return (f"{program} is built with {name}: its runtime cannot run under valgrind (it aborts or hangs at "
                    f"start-up, before main), so nothing of the program was checked; give valgrind a build "
                    f"without -fsanitize")
    return ""


# The sanitizers whose runtime reserves its shadow memory at start-up: valgrind's own mappings are
# in the way, so such a program never gets to main under valgrind.
_SANITIZER_RUNTIMES = ((b"__asan_init", "AddressSanitizer"), (b"__tsan_init", "ThreadSanitizer"),
                       (b"__msan_init", "MemorySanitizer"))


# Go's assembly string scans (internal/bytealg; C.GoString's length search runs IndexByte) load
# 16 or 32 bytes at a time from the string's start, never across a page, so on a short C string
# they read past the end of its malloc'd block.  Whether valgrind calls that an invalid read
# depends on where malloc put the block (seen in 1 run of 3 on C.GoString of OPENSSL_buf2hexstr's
# 12 bytes).  Only that shape is left out: a read that starts inside a block still allocated and
# runs past its end; a read of a freed block, or one that starts outside any, is the program's bug.
# valgrind merges the errors of one kind and one stack into one record and describes the first
# one's block only: a later read of a freed string through the same call would be counted in a
# left-out record.  C.GoString then copies the freed bytes (runtime.memmove), reported on its own,
# unless the freed string was empty: that one case is a blind spot (docs/checkers.md).
GO_WIDE_SCANS = frozenset({"indexbytebody", "memeqbody", "cmpbody"})
# valgrind's own line on its stderr when the program makes a system call it does not implement
# (openat2 in 3.19): the call fails with ENOSYS under valgrind alone.
_UNHANDLED_SYSCALL = re.compile(r"^--(\d+)-- WARNING: unhandled (\S+) syscall: (\d+)$", re.M)
_READ_SIZE = re.compile(r"Invalid read of size (\d+)")
_INSIDE_LIVE = re.compile(r"is (\d+) bytes inside a block of size (\d+) alloc'd")


def go_scan_over_read(f) -> bool:
    if f.kind != "InvalidRead" or not f.stack or f.stack[0].function not in GO_WIDE_SCANS:
        return False
    size = _READ_SIZE.search(f.message or "")
    inside = next((m for a in f.aux_stacks for m in [_INSIDE_LIVE.search(a.text or "")] if m), None)
    if not size or not inside:
        return False
    offset, block = int(inside.group(1)), int(inside.group(2))
    return offset < block < offset + int(size.group(1))


# Go's goroutine stacks live in its heap (from 0xc000000000: the arena hints i<<40 | 0xc000000000),
# and valgrind takes the stack memory below a stack pointer for dead.  When the runtime frees a
# goroutine's stack and later hands the same memory to another (runtime.copystack, growing one),
# what the first left below its stack pointer is still no-access to valgrind, and every write and
# read of the new stack's frames there is reported: 2 of 30 memcheck runs of
# cgo_shared_ctx_goroutines::fixed on three busy runs at once, all inside one goroutine's stack
# (runtime.memmove < runtime.copystack, runtime.mallocgc, main.digest.func1), also with
# GODEBUG=asyncpreemptoff=1.  valgrind knows neither Go's objects nor their bounds, so a report of
# an address in Go's heap is never the program's bug; C memory (malloc'd) is never there.  (Turning
# reports off in that range from inside the program would also hide Go's memory from the leak
# check, which must see it when the program ends by os.Exit.)
# Only what valgrind calls "in a rw- anonymous segment" (Go's mapped heap), never an address it
# places on a thread's stack or in a block.
_GO_HEAP_ACCESS = re.compile(r"Invalid (?:read|write) of size \d+; Address (0x[0-9a-f]+) is in a rw- anonymous segment")


def go_heap_access(f) -> bool:
    if f.kind not in ("InvalidRead", "InvalidWrite"):
        return False
    m = _GO_HEAP_ACCESS.match(f.message or "")
    if not m:
        return False
    address = int(m.group(1), 16)
    return address >> 40 < 0x80 and address & 0xffffffffff >= 0xc000000000


# What memcheck reports of a Go program that is never the program's bug, and how the job's
# problems count what was left out.
_GO_NOISE = (
    (go_scan_over_read, "read(s) by Go's word-wide string scan past the end of a live C block (C.GoString's "
                        "length search)"),
    (go_heap_access, "access(es) inside Go's heap (goroutine stacks and Go objects, which valgrind cannot tell "
                     "apart)"),
)


class Valgrind(Checker):
    family = "valgrind"
    estimate_s = 3.0
    tool = ""  # valgrind's --tool
    options: tuple[str, ...] = ()

    def missing(self, cache_dir: Path) -> str:
        return "" if which("valgrind") else f"valgrind not found on PATH; install: {INSTALL_HINT}"

    def cannot_check(self, program: str) -> str:
        return cannot_see_into(program)

    def cannot_follow(self, program: str) -> str:
        return cannot_see_into(program)

    def command(self, job, log_dir: Path, cache_dir: Path) -> tuple[list[str], dict[str, str]]:
        cmd = [which("valgrind") or "valgrind", f"--tool={self.tool}", *COMMON_OPTIONS, *self.options,
               f"--xml-file={log_dir}/vg.%p.xml", f"--suppressions={SUPPRESSIONS}",
               *self.extra_options(job), *job.command]
        return cmd, child_environment(job.env)

    def extra_options(self, job) -> tuple[str, ...]:
        return ()

    def log_files(self, out_dir: Path) -> list[Path]:
        return sorted(out_dir.glob("vg.*.xml"))

    def after_logs(self, g) -> None:
        # valgrind reports the signal that ended the program; SIGTERM or SIGKILL came from outside
        # (our timeout, a user's kill), not from the program: the job is incomplete, not a crash.
        from ..collect import EXTERNAL

        outside = {s.name for s in EXTERNAL}
        external = [f for f in g.findings if f.kind.startswith("FatalSignal:") and f.kind.split(":", 1)[1] in outside]
        if external:
            g.findings[:] = [f for f in g.findings if f not in external]
            g.problems.append(f"ended by {external[0].kind.split(':', 1)[1]} from outside")

    def incomplete(self, g) -> str:
        from ..collect import last_line

        tail = g.stderr_tail()
        mine = [(path, log) for path, log in g.parsed if g.of_main(path)]
        if not mine and not any(g.of_main(p) for p in self.log_files(g.out_dir)):
            return f"valgrind wrote no log for the program: {last_line(tail) or f'exit code {g.returncode}'}"
        if not any(getattr(log, "finished", False) and not log.partial for _, log in mine):
            why = last_line(tail)
            return ("valgrind did not check the program to its end (its log is cut short, or it "
                    f"stopped at start-up){': ' + why if why else ''}")
        if g.cut:
            return f"a log is cut short or unreadable: {', '.join(g.cut)}"
        for path, log in g.parsed:  # every process: a child valgrind could not see into is unchecked
            exe = log.command[0] if getattr(log, "command", ()) else ""
            # valgrind names a child's program as it was exec'd: relative to where the program ran
            # (a best guess: the child may have changed folder first).
            why = cannot_see_into(str(g.cwd / exe)) if exe else ""
            if why:
                return f"a process of the program ran what valgrind cannot check ({path.name}): {why}"
        if g.signal is not None and not any(f.kind.startswith("FatalSignal") for f in g.findings):
            return f"crashed with {g.signal} and valgrind wrote no report of it"
        missing = _UNHANDLED_SYSCALL.search(g.stderr_tail(1 << 20))
        if missing:
            return (f"valgrind does not implement the {missing.group(2)} system call {missing.group(3)} the program "
                    f"made (process {missing.group(1)}): the program got ENOSYS there and ran otherwise than "
                    f"it does without valgrind")
        return self.configured_away(g)

    def configured_away(self, g) -> str:
        """What valgrind's own configuration (a .valgrindrc, VALGRIND_OPTS: read by valgrind itself,
        seen in its log's options) kept from the job.  Address ranges it ignores: incomplete, unless
        errors were found all the same (then said).  Suppressions of its own files that matched: said."""
        ours = frozenset(o.partition("=")[0] for o in (f"--tool={self.tool}", *COMMON_OPTIONS, *self.options,
                                                          "--xml-file="))
        for path, log in g.parsed:
            options = getattr(log, "options", ())
            ignoring = next((o for o in options if o.startswith(_IGNORING)), None)
            if ignoring:
                return unless_found(g, f"valgrind's own configuration (a .valgrindrc or VALGRIND_OPTS) sets "
                                       f"{ignoring[:120]}: errors at those addresses were not reported")
            unknown = list(dict.fromkeys(o for o in options if _unknown_to_be_harmless(o, ours)))
            if unknown:
                return unless_found(g, f"valgrind's own configuration (a .valgrindrc or VALGRIND_OPTS) sets "
                                       f"{' '.join(unknown)[:200]}, which can change what {self.tool} reports: "
                                       f"the job is not known to be fully checked (docs/checkers.md lists the "
                                       f"options it may set)")
            theirs = [o.split("=", 1)[1] for o in options if o.startswith("--suppressions=")
                      and o.split("=", 1)[1] not in (str(SUPPRESSIONS), str(GO_SUPPRESSIONS))]
            used = suppressed_by(theirs, getattr(log, "suppression_counts", {}))
            if used:
                g.problems.append(f"{used} error(s) or leak(s) were suppressed by {', '.join(theirs)[:300]}, named by "
                                  f"valgrind's own configuration (a .valgrindrc or VALGRIND_OPTS): not reported")
        return ""

    def version(self) -> str:
        return valgrind_version()

    def tool_versions(self) -> tuple[tuple[str, str], ...]:
        return (("valgrind", valgrind_version() if which("valgrind") else "missing"),)

    def key_files(self, env: dict[str, str], cwd: Path, program: str) -> list[str]:
        files = []
        valgrind = which("valgrind", env)
        if valgrind:
            files.append(os.path.realpath(valgrind))
            if os.path.isfile(valgrind + ".bin"):  # Debian's valgrind is a script that runs valgrind.bin
                files.append(os.path.realpath(valgrind + ".bin"))
        files.extend(_tool_files(env.get("VALGRIND_LIB") or "/usr/libexec/valgrind", self.tool))
        return files

    def rc_files(self, cwd: Path) -> list[str]:
        # valgrind reads ~/.valgrindrc and ./.valgrindrc (the program's working folder) by itself.
        return [os.path.expanduser("~/.valgrindrc"), str(Path(cwd) / ".valgrindrc")]


class Memcheck(Valgrind):
    tool = "memcheck"
    # Its checks on, whatever valgrind's own configuration says (a .valgrindrc's
    # --undef-value-errors=no hid every uninitialised read): the command line is read last.
    # --xtree-leak=no: its yes took every leak record out of the XML (written to a file of its own).
    options = ("--leak-check=full", "--show-leak-kinds=all", "--undef-value-errors=yes", "--show-mismatched-frees=yes",
               "--xtree-leak=no")
    log_tools = ("memcheck",)
    cannot_see = ("overflows of stack and global arrays (only the heap is tracked); a block a thread still "
                  "running at exit points at (still reachable, not lost); data races; a statically linked "
                  "program, a setuid one or a sanitizer build (the job is incomplete); the leaks of a Go program built elsewhere "
                  "(C memory Go's memory still points at shows as reachable: incomplete unless it has errors)")

    def __init__(self, name: str, cflags: tuple[str, ...], base: str | None = None):
        self.name, self.cflags, self.base = name, cflags, base
        if base is None:  # memcheck itself checks both languages (Go through gobuild's helper)
            self.languages = frozenset({"c", "go"})
            self.default_for = self.required_for = self.check_default_for = frozenset({"c", "go"})
            self.go_mode = "valgrind"
        else:
            self.default_for = frozenset({"c"})

    def command(self, job, log_dir: Path, cache_dir: Path) -> tuple[list[str], dict[str, str]]:
        cmd, env = super().command(job, log_dir, cache_dir)
        if is_go_binary(job.command[0]):  # where each of its processes says it got to the leak check
            env[GO_MARKS_ENV] = str(log_dir)
        return cmd, env

    def extra_options(self, job) -> tuple[str, ...]:
        # A Go program under valgrind's default scheduler can livelock: valgrind runs one thread at
        # a time, and a runtime thread spinning for the world to stop takes the lock straight back
        # (go_finalizer_keepalive, a goroutine collecting in a loop: 4 of 4 runs past 60 s with the
        # default, 4 of 4 done in 1.9 s with --fair-sched=yes, which hands the lock round in turn).
        if is_go_binary(job.command[0]):
            return f"--suppressions={GO_SUPPRESSIONS}", "--fair-sched=yes"
        return ()

    def after_logs(self, g) -> None:
        super().after_logs(g)
        if is_go_binary(g.program):  # the Go runtime's own report of a crash or a panic
            go_crash_findings(g)
            for noise, what in _GO_NOISE:
                kept, left_out = [], []
                for f in g.findings:
                    (left_out if noise(f) else kept).append(f)
                if left_out:
                    g.findings[:] = kept
                    g.problems.append(f"{sum(f.count for f in left_out)} {what} not reported: not the program's bug")
            # The Go callers valgrind could not see past the cgo stack switch, as the memcheck build
            # recorded them (gobuild.MEMCHECK_HELPER_SOURCE), joined by the lost blocks' addresses;
            # first the records only the garbage past that switch told apart made one.
            from ..parsers.go import merge_split_records, name_memcheck_go_callers

            g.findings[:] = merge_split_records(g.findings)
            name_go_callers(g, functools.partial(name_memcheck_go_callers, stderr=str(g.stderr)))

    def incomplete(self, g) -> str:
        why = super().incomplete(g)
        if why or not is_go_binary(g.program):
            return why
        main_errors = any(f.is_error and (g.main_pid is None or f.pid == g.main_pid) for f in g.findings)
        marked = marked_processes(g, MEMCHECK_MARK)
        unchecked = child_unchecked(g, MEMCHECK_MARK, marked)
        if unchecked:  # its leak check ran with Go's memory in view
            return unchecked
        if not contains(g.program, MEMCHECK_MARK.encode()):  # a Go binary built elsewhere: Go's memory is scanned too
            why = ("a Go program not built by leakharness (check --build): C memory it lost while dead Go frames or "
                   "objects still hold its address shows as still reachable, not lost")
            if main_errors:  # its errors stand; its leaks were not fully checked
                g.problems.append(why)
                return ""
            return why + ", so its leaks were not checked"
        if not main_errors and not main_checked(g, marked):
            what = f"exit code {g.returncode}" if g.returncode is not None else "no exit code"
            return (f"the Go program ended before main returned (os.Exit, panic, signal; {what}), so "
                    f"valgrind's leak check ran with Go's memory in view, where stale pointers hide "
                    f"lost C memory")
        return ""


class Helgrind(Valgrind):
    name = "helgrind"
    tool = "helgrind"
    cflags = ("-g", "-O0")
    options = ("--history-level=full",)  # both stacks of a race, not only the second access
    log_tools = ("helgrind",)
    cannot_see = ("leaks and memory errors (races, lock order and pthread misuse only); a statically linked "
                  "program (its pthread calls cannot be intercepted); a sanitizer build (the job is incomplete)")


CHECKERS = (Memcheck("memcheck", ("-g", "-O0")), Memcheck("memcheck-O2", ("-g", "-O2"), base="memcheck"), Helgrind())
FAMILY = ("valgrind", "Valgrind: the program as compiled, run under valgrind")


def suppressed_by(files: list[str], counts: dict) -> int:
    """How many times the entries of these valgrind suppressions files were used (by their
    names, suppress.load's reading of each file; one it cannot read counts none)."""
    from ..errors import LeakHarnessError
    from ..suppress import load

    if not files or not counts:
        return 0
    names: set[str] = set()
    for name in files:
        try:
            names.update(s.name for s in load(Path(name)))
        except LeakHarnessError:
            continue
    return sum(n for name, n in counts.items() if name in names and isinstance(n, int))
