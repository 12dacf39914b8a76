"""The package as a user installs it: a built wheel, installed (not editable) into a fresh venv.

A checkout and an editable install find the templates, data and catalog beside the source, so
only a real wheel shows what `pip install .` leaves out.  The wheel is built from a copy of the
tree (pip builds in-tree, so two pytest workers building /work/main at once would share build/),
installed into a plain venv, and driven from an unrelated folder with relative paths, the way a
user in their own project would call it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

# What a wheel build does not need; left out of the copy to keep it small and free of stale build
# output (a leftover build/lib would hide a file that the configuration no longer packs).
_IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "reports", ".cache",
                                 ".pytest_cache", "__pycache__", "bench", "tests")

# 48 bytes never freed, allocated in make_buffer (line 8): what the tests look for.
LEAK_C = (REPO / "tests" / "programs" / "make_buffer_leak.c").read_text()


def _run(cmd, *, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, start_new_session=True)


def _ok(proc: subprocess.CompletedProcess, code: int = 0) -> subprocess.CompletedProcess:
    assert proc.returncode == code, (
        f"{' '.join(proc.args)} exited {proc.returncode}, expected {code}\n"
        f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    shutil.copytree(REPO, src, ignore=_IGNORE)
    _ok(_run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", base / "dist", src], cwd=base))
    wheels = sorted((base / "dist").glob("leakharness-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A plain venv (no system site-packages) with the wheel and its dependencies from the registry."""
    env_dir = tmp_path_factory.mktemp("venv") / "v"
    # Without PYTHONPATH: with this checkout on it (bench/pytest_bench.py sets it), pip finds the
    # checkout's leakharness "already satisfied" and installs nothing into the venv.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    _ok(_run([sys.executable, "-m", "venv", env_dir], cwd=env_dir.parent, env=env))
    _ok(_run([env_dir / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel],
             cwd=env_dir.parent, env=env))
    return env_dir


def _user_env(venv: Path, cache: Path) -> dict:
    """The environment of a user who installed the wheel: its bin first on PATH, a private cache,
    and nothing that points back at this checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "LEAKHARNESS_FIXTURES", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env["LEAKHARNESS_CACHE"] = str(cache)
    return env


def test_wheel_holds_every_subpackage_template_data_file_and_the_catalog(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for path in (REPO / "harness").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            expected.add(path.relative_to(REPO).as_posix())
    # The catalog is packed inside the package, where catalog.default_fixtures_dir() looks for it.
    for path in (REPO / "c_fixtures").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            expected.add("harness/c_fixtures/" + path.relative_to(REPO / "c_fixtures").as_posix())
    missing = sorted(expected - names)
    assert not missing, f"left out of the wheel: {missing}"
    # The ones whose absence broke installs before, named so that a failure reads plainly.
    for name in ("harness/report/__init__.py", "harness/report/templates/index.html.j2",
                 "harness/data/openssl.supp", "harness/c_fixtures/_common/lh_common.h",
                 "harness/c_fixtures/x509_name_oneline/pattern.toml",
                 "harness/c_fixtures/x509_name_oneline/pattern.c.j2"):
        assert name in names
    patterns = [p.name for p in (REPO / "c_fixtures").iterdir() if p.is_dir() and not p.name.startswith("_")]
    assert len(patterns) >= 20
    for pattern in patterns:
        assert f"harness/c_fixtures/{pattern}/pattern.toml" in names
        template = "pattern.go.j2" if (REPO / "c_fixtures" / pattern / "pattern.go.j2").is_file() else "pattern.c.j2"
        assert f"harness/c_fixtures/{pattern}/{template}" in names


def test_installed_wheel_lists_runs_and_checks_from_an_unrelated_folder(venv, tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    env = _user_env(venv, tmp_path / "cache")
    exe = venv / "bin" / "leakharness"

    # The package imported is the installed one, not this checkout.
    where = _ok(_run([venv / "bin" / "python", "-c", "import harness.catalog as c; "
                      "print(c.__file__); print(c.default_fixtures_dir())"], cwd=work, env=env))
    module_file, fixtures = where.stdout.split()
    assert module_file.startswith(str(venv)), module_file
    assert fixtures.startswith(str(venv)) and fixtures.endswith("harness/c_fixtures"), fixtures

    listed = _ok(_run([exe, "list"], cwd=work, env=env))
    for pattern in (REPO / "c_fixtures").iterdir():
        if pattern.is_dir() and not pattern.name.startswith("_"):
            assert pattern.name in listed.stdout

    # Relative --out, as a user types it: resolved against the user's folder.
    _ok(_run([exe, "run", "--pattern", "x509_name_oneline", "--tool", "memcheck", "--tool", "asan",
              "--out", "reports/x", "--quiet"], cwd=work, env=env))
    out = work / "reports" / "x"
    results = json.loads((out / "results.json").read_text())
    jobs = results["jobs"]
    assert sorted((j["variant"], j["tool"]) for j in jobs) == [
        ("fixed", "asan"), ("fixed", "memcheck"), ("leaky", "asan"), ("leaky", "memcheck")]
    assert all(j["status"] == "ok" and j["verdict"] == "pass" for j in jobs), jobs
    for job in jobs:
        if job["variant"] == "leaky":
            leaks = [f for f in job["findings"] if f["category"] == "leak" and f["leak_kind"] == "definite"]
            assert leaks and sum(f["bytes"] for f in leaks) >= 428, job
    assert (out / "index.html").is_file()

    (work / "leak.c").write_text(LEAK_C)
    checked = _ok(_run([exe, "check", "--build", "leak.c", "--quiet"], cwd=work, env=env), code=1)
    results = json.loads((work / "reports" / "check" / "results.json").read_text())
    assert sorted(j["tool"] for j in results["jobs"]) == ["asan", "memcheck"]
    for job in results["jobs"]:
        assert job["status"] == "ok", job
        leaks = [f for f in job["findings"] if f["category"] == "leak"]
        assert len(leaks) == 1, job["findings"]
        leak = leaks[0]
        assert leak["leak_kind"] == "definite" and leak["bytes"] == 48, leak
        assert any(fr.get("function") == "make_buffer" for fr in leak["stack"]), leak["stack"]
    assert "48" in checked.stdout
    assert (work / "reports" / "check" / "index.html").is_file()
