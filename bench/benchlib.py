"""What every benchmark prints about the machine it ran on."""

from __future__ import annotations

import platform
import re
import subprocess


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            m = re.search(r"^model name\s*:\s*(.+)$", fh.read(), re.M)
            if m:
                return m.group(1).strip()
    except OSError:
        pass
    return platform.processor() or "?"


def tool_version(argv: list[str], default: str) -> str:
    """The first line a tool prints for its version, or default."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL).stdout.strip()
        return out.splitlines()[0] if out else default
    except (OSError, subprocess.TimeoutExpired):
        return default


# --- running the checkout under test, and timing two commands side by side -------------------

import os as _os
import statistics as _statistics
import sys as _sys
import time as _time

ROOT = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))


def ours() -> list[str]:
    """`leakharness` of this checkout (not whatever an installed console script points at):
    this Python with the repository first on its path (env())."""
    return [_sys.executable, "-m", "harness"]


def env(extra: dict | None = None) -> dict[str, str]:
    """The environment for ours(): the repository on PYTHONPATH, bytecode written (a user's
    second run reads compiled modules; a shell's PYTHONDONTWRITEBYTECODE would time compiling)."""
    out = {k: v for k, v in _os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out["PYTHONPATH"] = _os.pathsep.join(p for p in (ROOT, _os.environ.get("PYTHONPATH", "")) if p)
    out.update(extra or {})
    return out


def run_timed(argv, cwd: str = ROOT, env_: dict | None = None, stdout=None, prepare=None) -> dict:
    """One run of argv to its end: wall seconds (perf_counter around spawn and wait), the CPU
    seconds of its whole process tree (os.wait4), its exit code.  `prepare()` runs first,
    untimed."""
    import subprocess

    if prepare is not None:
        prepare()
    out = stdout if stdout is not None else subprocess.DEVNULL
    start = _time.perf_counter()
    proc = subprocess.Popen(list(argv), cwd=cwd, env=env_, stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.DEVNULL if stdout is None else subprocess.STDOUT,
                            start_new_session=True)
    _, status, usage = _os.wait4(proc.pid, 0)
    seconds = _time.perf_counter() - start
    return {"seconds": seconds, "cpu_s": usage.ru_utime + usage.ru_stime,
            "returncode": _os.waitstatus_to_exitcode(status)}


def side_by_side(a: dict, b: dict, rounds: int, log=None) -> dict:
    """Time two commands in turn, A B A B ..., after one untimed run of each; each of a and b
    is {"argv", "cwd", "env", "prepare"}.  Returns every run and the ratios A/B: of the medians,
    and the median of the pairwise ratios (the figure quoted: a machine whose speed drifts
    moves both sides of a pair alike)."""
    for side in (a, b):
        run_timed(side["argv"], side.get("cwd", ROOT), side.get("env"), prepare=side.get("prepare"))
    runs_a, runs_b = [], []
    for i in range(rounds):
        ra = run_timed(a["argv"], a.get("cwd", ROOT), a.get("env"), prepare=a.get("prepare"))
        rb = run_timed(b["argv"], b.get("cwd", ROOT), b.get("env"), prepare=b.get("prepare"))
        runs_a.append(ra)
        runs_b.append(rb)
        if log:
            log(f"  round {i + 1}: A {ra['seconds']:.3f} s, B {rb['seconds']:.3f} s, "
                f"A/B {ra['seconds'] / rb['seconds']:.2f}")
    med = _statistics.median
    return {"a": runs_a, "b": runs_b,
            "a_median_s": med(r["seconds"] for r in runs_a), "b_median_s": med(r["seconds"] for r in runs_b),
            "ratio": med(ra["seconds"] / rb["seconds"] for ra, rb in zip(runs_a, runs_b)),
            "cpu_ratio": med(ra["cpu_s"] / rb["cpu_s"] for ra, rb in zip(runs_a, runs_b) if rb["cpu_s"])}


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"
