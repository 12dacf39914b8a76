"""Compile and run small C programs for real, for tests that need a tool's genuine output."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = Path(__file__).parent / "programs"
# What a developer's shell may hold that would change what a checker or the harness does: every
# test starts without it and sets what it is about.
HERMETIC = ("ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS", "MSAN_OPTIONS", "VALGRIND_OPTS",
            "LD_LIBRARY_PATH", "LD_PRELOAD", "LEAKHARNESS_CACHE", "LEAKHARNESS_CACHE_MAX", "LEAKHARNESS_OUTPUT_CAP",
            "PYTEST_ADDOPTS", "GODEBUG", "GOFLAGS")
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


# --- running the tool the way a user does ---------------------------------------------------------

def user_env(cache: Path | None, extra: dict | None = None) -> dict[str, str]:
    """The environment of a user's shell, less HERMETIC, with this checkout first on PYTHONPATH
    (so that a copy of the repository tests itself) and its own cache; `extra` sets variables
    (None removes one)."""
    env = {k: v for k, v in os.environ.items() if k not in HERMETIC and not k.startswith("PYTEST_XDIST")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    if cache is not None:
        env["LEAKHARNESS_CACHE"] = str(cache)
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def lh(*args, cwd: Path, cache: Path | None, env: dict | None = None, timeout: float = 240,
       prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`leakharness ARGS...` run from cwd, to its end; stdout and stderr as text."""
    return subprocess.run([*prefix, sys.executable, "-m", "harness", *map(str, args)], cwd=cwd,
                          env=user_env(cache, env), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, start_new_session=True)


def lh_background(*args, cwd: Path, cache: Path | None, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, env=user_env(cache, env),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def said(proc) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"waited {seconds:g} s for {what}")
