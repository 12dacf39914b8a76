"""Running leakharness on a project the way a user does: the real CLI (or pytest) in a subprocess,
from the project's folder, with this checkout first on PYTHONPATH and a private cache."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from realrun import ROOT, said, user_env
from realrun import lh as _lh

EXAMPLES = ROOT / "examples"


def lh(*args, cwd: Path, cache: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """`leakharness ARGS...` from cwd (realrun.lh, with the time a project's builds may take)."""
    return _lh(*args, cwd=cwd, cache=cache, env=env, timeout=timeout)


def pytest_in(*args, cwd: Path, cache: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """`pytest ARGS...` from cwd (the plugin is this checkout's: first on PYTHONPATH)."""
    return subprocess.run([sys.executable, "-m", "pytest", *map(str, args)], cwd=cwd, env=user_env(cache),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                          start_new_session=True)


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
