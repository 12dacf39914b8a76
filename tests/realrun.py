"""Compile and run small C programs for real, for tests that need a tool's genuine output."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

PROGRAMS = Path(__file__).parent / "programs"
ASAN_OPTIONS = "fast_unwind_on_malloc=0:detect_stack_use_after_return=1"


def compile_c(source: Path, output: Path, *flags: str) -> Path:
    cmd = ["gcc", "-g", "-pthread", *flags, str(source), "-o", str(output)]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                          start_new_session=True)
    assert proc.returncode == 0, proc.stderr
    return output


def run(cmd, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([str(c) for c in cmd], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, env=full_env, timeout=timeout, start_new_session=True)


def valgrind(binary: Path, *args: str, out_dir: Path, extra: tuple[str, ...] = ()) -> list[Path]:
    """Runs the binary under memcheck with one XML file per process; returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    run(["valgrind", "--xml=yes", f"--xml-file={out_dir}/vg.%p.xml", "--leak-check=full",
         "--show-leak-kinds=all", "--trace-children=yes", "--num-callers=40", *extra,
         binary, *args])
    return sorted(out_dir.glob("vg.*.xml"))


def sanitizer(binary: Path, *args: str, out_dir: Path, env: dict | None = None) -> list[Path]:
    """Runs a sanitizer build with log_path under out_dir; returns the log files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / "log"
    base = {
        "ASAN_OPTIONS": f"{ASAN_OPTIONS}:log_path={prefix}",
        "LSAN_OPTIONS": "use_stacks=0",
        "UBSAN_OPTIONS": f"print_stacktrace=1:log_path={prefix}",
        "TSAN_OPTIONS": f"log_path={prefix}",
    }
    base.update(env or {})
    run([binary, *args], env=base)
    return sorted(out_dir.glob("log.*"))


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def kill_group(proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
