"""Running leakharness on a project the way a user does: the real CLI (or pytest) in a subprocess,
from the project's folder, with this checkout first on PYTHONPATH and a private cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# What a developer's shell may hold that would change what a checker does.
HERMETIC = ("ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS", "VALGRIND_OPTS", "LD_LIBRARY_PATH",
            "LD_PRELOAD", "LEAKHARNESS_CACHE", "LEAKHARNESS_CACHE_MAX", "PYTEST_ADDOPTS", "MAKEFLAGS")


def env_for(cache: Path, extra: dict | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in HERMETIC and not k.startswith("PYTEST_XDIST")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env["LEAKHARNESS_CACHE"] = str(cache)
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return env


def lh(*args, cwd: Path, cache: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """`leakharness ARGS...` from cwd."""
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, env=env_for(cache, env),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                          start_new_session=True)


def pytest_in(*args, cwd: Path, cache: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """`pytest ARGS...` from cwd (the plugin is this checkout's: first on PYTHONPATH)."""
    return subprocess.run([sys.executable, "-m", "pytest", *map(str, args)], cwd=cwd,
                          env=env_for(cache), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, start_new_session=True)


def said(proc) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def one_line_error(proc, *names) -> str:
    """Exit 2 and one line on stderr naming each of names; never a traceback."""
    assert "Traceback" not in proc.stderr, said(proc)
    assert proc.returncode == 2, said(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("leakharness: "), said(proc)
    for name in names:
        assert str(name) in lines[0], said(proc)
    return lines[0]


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return folder


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def jobs(out: Path) -> dict[str, dict]:
    """The jobs of a results folder by name (target[checker])."""
    return {f"{j['pattern']}[{j['tool']}]": j for j in results(out)["jobs"]}


def errors(job: dict) -> list[dict]:
    """A job's bugs: memory errors, definite and indirect leaks, not suppressed."""
    return [f for f in job["findings"] if not f["suppressed"]
            and (f["category"] != "leak" or f["leak_kind"] in ("definite", "indirect"))]


def line_of(path: Path, text: str) -> int:
    """The number of the one line of a file holding text."""
    found = [n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    assert len(found) == 1, (path, text, found)
    return found[0]
