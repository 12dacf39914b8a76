"""The container image (issue 12), built and run with podman the way docs/container.md says.

The image is built by scripts/build-image.sh, the script `make docker` runs: on this kind of host
that means runc, lowered ulimits, a Debian 12 base made once per machine by debootstrap (cached
under the harness's cache folder; the script holds a lock while it makes it, so two pytest
workers or two developers wait for one), and the host's CA bundle and network for the build only.
The runs use --network none.

Each session builds under its own tag (no other session can re-point it while this one runs)
and under localhost/leakharness:test, which keeps the build cache alive between sessions; at
the end the session's own tag is removed, so an image a later build replaced does not pile up.

Who owns what the container writes: the image runs as a non-root user (uid 1000).  A host
folder mounted at /reports must be writable by that uid (here: chowned to it, as a developer
whose uid is 1000, the usual first user, has it already), or the container runs as the host
user with `--user "$(id -u):$(id -g)"` (the image's cache and /reports allow any uid), which is
what the `check` test does with an unprivileged uid: every file it writes belongs to that user.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "scripts" / "build-image.sh"
STABLE_TAG = "localhost/leakharness:test"
LOCAL_BASE = "localhost/debian:12-local"
# The host here allows lowering the limits but not raising them; crun fails on its cgroups.
PODMAN = ["podman", "--runtime", "runc"]
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
NOBODY = 65534  # the unprivileged host uid the `--user` run stands in for

# 48 bytes never freed, allocated in make_buffer (line 8): what the tests look for.
LEAK_C = (REPO / "tests" / "programs" / "make_buffer_leak.c").read_text()


def _skip_reason() -> str | None:
    if shutil.which("podman") is None:
        return "podman not installed (`make setup` installs it: scripts/install-system-packages.sh --test)"
    if shutil.which("runc") is None:
        return "runc not installed (`make setup` installs it); podman's default crun fails on this host"
    if os.geteuid() != 0:
        return ("runs podman as root; rootless podman needs subuid/subgid ranges this test does not "
                "set up (docs/container.md)")
    if shutil.which("debootstrap") is None and _run([*PODMAN, "image", "exists", LOCAL_BASE]).returncode != 0:
        return f"no {LOCAL_BASE} image and no debootstrap to make it (`make setup` installs it)"
    return None


def _run(cmd, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, start_new_session=True, **kw)


def _ok(proc: subprocess.CompletedProcess, code: int = 0) -> subprocess.CompletedProcess:
    assert proc.returncode == code, (
        f"{' '.join(proc.args)} exited {proc.returncode}, expected {code}\n"
        f"--- stdout\n{proc.stdout[-5000:]}\n--- stderr\n{proc.stderr[-5000:]}")
    return proc


_reason = _skip_reason()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(_reason is not None, reason=_reason or "")]


@pytest.fixture(scope="module")
def image():
    tag = f"localhost/leakharness-test:{uuid.uuid4().hex[:12]}"
    start = time.monotonic()
    # Cold, this is debootstrap (about a minute) and the whole build (a minute and a half).
    _ok(_run([BUILD, tag, STABLE_TAG], timeout=1200, cwd=REPO))
    print(f"image {tag} built in {time.monotonic() - start:.1f} s")
    yield tag
    _run([*PODMAN, "rmi", tag])


def _podman_run(image: str, *args, volume: tuple[Path, str], user: str | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess:
    host, target = volume
    cmd = [*PODMAN, "run", "--rm", *LIMITS, "--network", "none", "-v", f"{host}:{target}"]
    if user:
        cmd += ["--user", user]
    return _run([*cmd, image, *args], timeout=timeout)


def _image_uid(image: str) -> int:
    proc = _ok(_run([*PODMAN, "run", "--rm", *LIMITS, "--network", "none", "--entrypoint", "id", image, "-u"]))
    return int(proc.stdout.strip())


def _tree(root: Path) -> list[Path]:
    return [root, *sorted(root.rglob("*"))]


def test_image_defaults(image):
    """The default command writes the catalog's report to /reports, by an absolute path, as a
    non-root user with its own cache; the runs below pass other arguments, so check it here."""
    config = json.loads(_ok(_run([*PODMAN, "image", "inspect", "--format", "{{json .Config}}", image])).stdout)
    assert config["Entrypoint"] == ["leakharness"]
    assert config["Cmd"] == ["run", "--out", "/reports/latest"]
    assert config["User"] == "leakharness"
    assert config["WorkingDir"] == "/project"
    assert "/reports" in config.get("Volumes", {})
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["LEAKHARNESS_CACHE"] == "/home/leakharness/.cache/leakharness"
    assert env["PATH"].startswith("/opt/leakharness/bin:") and "/usr/bin" in env["PATH"].split(":")
    assert _image_uid(image) != 0


def test_run_writes_the_report_into_the_mounted_folder(image, tmp_path):
    uid = _image_uid(image)
    host = tmp_path / "reports"
    host.mkdir()
    os.chown(host, uid, uid)  # the folder of a host user whose uid matches the image's

    proc = _ok(_podman_run(image, "run", "--pattern", "x509_name_oneline", "--pattern", "plain_double_free",
                           "--tool", "memcheck", "--tool", "asan", "--out", "/reports/latest", "--quiet",
                           volume=(host, "/reports")))
    out = host / "latest"
    results = json.loads((out / "results.json").read_text())
    jobs = {(j["pattern"], j["variant"], j["tool"]): j for j in results["jobs"]}
    assert len(jobs) == 8, sorted(jobs)
    assert all(j["status"] == "ok" and j["verdict"] == "pass" for j in jobs.values()), proc.stdout
    for tool in ("memcheck", "asan"):
        leaks = [f for f in jobs["x509_name_oneline", "leaky", tool]["findings"] if f["category"] == "leak"]
        assert leaks and leaks[0]["leak_kind"] == "definite" and leaks[0]["bytes"] >= 428, leaks
        assert any(fr.get("function") == "X509_NAME_oneline" for fr in leaks[0]["stack"])
        frees = [f for f in jobs["plain_double_free", "leaky", tool]["findings"] if f["category"] == "double-free"]
        assert frees and any(fr.get("function") == "format_field" for fr in frees[0]["stack"]), frees
        assert not jobs["x509_name_oneline", "fixed", tool]["findings"]

    index = out / "index.html"
    assert index.is_file() and "x509_name_oneline" in index.read_text()
    # Everything belongs to the container's user, so a host user with that uid owns it all...
    for path in _tree(out):
        st = path.lstat()
        assert st.st_uid == uid, path
        assert st.st_mode & (stat.S_IRUSR | (stat.S_IXUSR if path.is_dir() else 0)), path
    # ...and the report itself is readable by any host user.
    for path in [out, index, out / "results.json", out / "leakharness.sarif", *out.glob("patterns/*.html")]:
        need = stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0)
        assert path.stat().st_mode & need == need, f"{path}: {stat.filemode(path.stat().st_mode)}"


def test_check_builds_a_mounted_c_file_as_the_host_user(image, tmp_path):
    """`docker run --user "$(id -u):$(id -g)" -v "$PWD:/project" IMAGE check --build leak.c`, for an
    unprivileged host user: the results land in the user's folder and belong to the user."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "leak.c").write_text(LEAK_C)
    for path in _tree(src):
        os.chown(path, NOBODY, NOBODY)

    proc = _ok(_podman_run(image, "check", "--build", "leak.c", volume=(src, "/project"),
                           user=f"{NOBODY}:{NOBODY}"), code=1)
    assert "48 B" in proc.stdout, proc.stdout
    out = src / "reports" / "check"
    results = json.loads((out / "results.json").read_text())
    assert sorted(j["tool"] for j in results["jobs"]) == ["asan", "memcheck"]
    for job in results["jobs"]:
        assert job["status"] == "ok", job
        leaks = [f for f in job["findings"] if f["category"] == "leak"]
        assert len(leaks) == 1, job["findings"]
        assert leaks[0]["leak_kind"] == "definite" and leaks[0]["bytes"] == 48, leaks[0]
        assert any(fr.get("function") == "make_buffer" and fr.get("line") == 8 for fr in leaks[0]["stack"])
    assert (out / "index.html").is_file()
    for path in _tree(src):
        st = path.lstat()
        assert st.st_uid == NOBODY, path
        assert st.st_mode & (stat.S_IRUSR | (stat.S_IXUSR if path.is_dir() else 0)), path


def test_a_mounted_project_runs_as_in_its_own_folder(image, tmp_path):
    """`docker run --user "$(id -u):$(id -g)" -v "$PWD:/project" IMAGE run` in examples/: every
    target (C sources fed a file on stdin, a Makefile, a CTest test, a Go program, a Go package's
    tests) finds its planted leak, the results on the host and the host user's."""
    from test_examples import assert_planted

    project = tmp_path / "examples"
    shutil.copytree(REPO / "examples", project, ignore=shutil.ignore_patterns("reports"))
    for path in _tree(project):
        os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
    proc = _ok(_podman_run(image, "run", "--quiet", volume=(project, "/project"), user=f"{NOBODY}:{NOBODY}",
                           timeout=900), code=1)
    assert "project: /project/leakharness.toml" in proc.stdout, proc.stdout
    out = project / "reports" / "latest"
    results = json.loads((out / "results.json").read_text())
    jobs = {f"{j['pattern']}[{j['tool']}]": j for j in results["jobs"]}
    # The container's paths (/project/...) are the project's: the planted lines are where they are.
    assert_planted(jobs, project)
    for path in _tree(out):
        assert path.lstat().st_uid == NOBODY, path
