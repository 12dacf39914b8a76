"""The examples/ project, end to end, as its README says to use it: `leakharness run` from its root
finds exactly the leaks planted there under memcheck and asan (go-asan for Go) for each kind of
target (C sources fed a file on stdin, the project's own Makefile, a CTest test, a Go program, a
Go package's tests); `pytest -n 2` in that folder collects and runs the same jobs; `nightly` twice,
with a free removed from one source between the nights, exits 1 naming the new leak by its
signature, function and line.  Real gcc, make, cmake, go, valgrind and ASan; a copy of the folder
in tmp_path (results are written into the project, as for a user)."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from projectrun import EXAMPLES, errors, jobs, lh, line_of, pytest_in, results, said
from realrun import have

pytestmark = pytest.mark.skipif(not all(have(t) for t in ("valgrind", "make", "cmake", "go", "gcc")),
                                reason="needs valgrind, make, cmake, go and gcc (scripts/install-system-packages.sh)")

# Each job of the project, and the leak planted there: (function the stack must hold, file and the
# text of the line it names, or None where the stack has no line of the project's own).
PLANTED = {
    "digest-stdin": ("keep_copy", "cipher/digest_stdin.c", "unsigned char *copy = malloc(len);"),
    "digest": ("print_digest", "digest/digest.c", "char *hex = OPENSSL_buf2hexstr(md, md_len);"),
    "name_oneline": ("print_subject", "x509/name_test.c", "char *line = X509_NAME_oneline(name, NULL, 0);"),
    "service": ("EVP_MD_CTX_new", None, None),
    "tlsconf-tests": ("OPENSSL_buf2hexstr", None, None),
}
CLEAN = ("name_fixed",)
CHECKERS = {"digest-stdin": ("memcheck", "asan"), "digest": ("memcheck", "asan"), "name_oneline": ("memcheck", "asan"),
            "name_fixed": ("memcheck", "asan"), "service": ("memcheck", "go-asan"),
            "tlsconf-tests": ("memcheck", "go-asan")}
ALL_JOBS = {f"{target}[{checker}]" for target, tools in CHECKERS.items() for checker in tools}


@pytest.fixture
def project(tmp_path) -> Path:
    folder = tmp_path / "examples"
    shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns("reports"))
    return folder


def functions(finding: dict) -> set[str]:
    return {fr["function"] for fr in finding["stack"] if fr["function"]}


def assert_planted(job_set: dict[str, dict], project: Path) -> None:
    """Every job checked; each leaky one found its planted leak and nothing else, the clean one nothing."""
    assert set(job_set) == ALL_JOBS
    for name, job in job_set.items():
        target = name.split("[")[0]
        assert job["status"] == "ok", (name, job["status"], job["message"])
        found = [f for f in errors(job) if f["leak_kind"] != "indirect"]
        if target in CLEAN:
            assert found == [], (name, found)
            continue
        function, file, text = PLANTED[target]
        assert len(found) == 1, (name, [f["signature"] for f in found])
        leak = found[0]
        assert leak["category"] == "leak" and leak["leak_kind"] == "definite", (name, leak)
        # A function OpenSSL tail-calls from is named by cgo's stub for it (_Cfunc_EVP_MD_CTX_new).
        assert any(fn in (function, f"_Cfunc_{function}") for fn in functions(leak)), (name, leak["stack"])
        if file:
            line = line_of(project / file, text)
            assert any(fr["file"] and fr["file"].endswith(Path(file).name) and fr["line"] == line
                       for fr in leak["stack"]), (name, line, leak["stack"])


def test_run_finds_exactly_the_planted_leaks_and_pytest_runs_the_same_jobs(project, tmp_path):
    cache = tmp_path / "cache"
    proc = lh("run", "--junit", "junit.xml", cwd=project, cache=cache)
    assert proc.returncode == 1, said(proc)  # leaks found
    assert f"project: {project / 'leakharness.toml'}" in proc.stdout
    out = project / "reports" / "latest"
    run_jobs = jobs(out)
    assert_planted(run_jobs, project)

    # The target reading stdin got the file: its planted copy of the input is as long as the file.
    stdin_size = (project / "data" / "input.bin").stat().st_size
    for checker in CHECKERS["digest-stdin"]:
        (leak,) = errors(run_jobs[f"digest-stdin[{checker}]"])
        assert leak["bytes"] == stdin_size
    # The page of a target built by its own Makefile shows its source, the leak's line marked.
    page = (out / "patterns" / "digest.html").read_text()
    line = line_of(project / "digest" / "digest.c", "OPENSSL_buf2hexstr(md, md_len)")
    assert f'class="hl" id="digest.c-L{line}"' in page
    assert "Source: digest/digest.c" in page
    # JUnit: a testcase per job, the leaky ones failing.
    cases = ET.parse(project / "junit.xml").getroot().iter("testcase")
    failing = {c.find("properties/property[@name='leakharness_job']").get("value") for c in cases
               if c.find("failure") is not None}
    assert failing == ALL_JOBS - {f"name_fixed[{c}]" for c in CHECKERS["name_fixed"]}

    # pytest in that folder: the same items, run in parallel, into --leak-report.
    proc = pytest_in("-n", "2", "-p", "no:cacheprovider", "--leak-report", "reports/pytest", "-rA", cwd=project,
                     cache=cache)
    assert proc.returncode == 1, said(proc)
    passed = set(re.findall(r"^PASSED leakharness\.toml::(\S+)", proc.stdout, re.M))
    failed = set(re.findall(r"^FAILED leakharness\.toml::(\S+)", proc.stdout, re.M))
    assert passed | failed == ALL_JOBS, said(proc)
    assert passed == {f"name_fixed[{c}]" for c in CHECKERS["name_fixed"]}, said(proc)
    pytest_jobs = jobs(project / "reports" / "pytest")
    assert_planted(pytest_jobs, project)
    for name, job in pytest_jobs.items():
        assert {f["signature"] for f in errors(job)} == {f["signature"] for f in errors(run_jobs[name])}, name
    assert (project / "reports" / "pytest" / "index.html").is_file()


def test_nightly_names_the_leak_a_removed_free_adds(project, tmp_path):
    cache = tmp_path / "cache"
    history = tmp_path / "nights"
    first = lh("nightly", "--history", history, "--quiet", cwd=project, cache=cache)
    # The planted leaks fail their jobs from the first night on: failures, not regressions.
    assert first.returncode == 1, said(first)
    assert "FAILED 10 job(s) on the first night of this history" in first.stdout, said(first)
    assert "NEW " not in first.stdout and "REGRESSED" not in first.stdout
    # The history's count is the same decision (it counted catalog verdicts only: 0 here).
    assert json.loads((history / "history.json").read_text())["nights"][0]["failed"] == 10
    source = project / "cipher" / "digest_stdin.c"
    text = source.read_text()
    assert text.count("    free(data);\n") == 1
    source.write_text(text.replace("    free(data);\n", ""))
    second = lh("nightly", "--history", history, "--quiet", cwd=project, cache=cache)
    assert second.returncode == 1, said(second)
    line = line_of(source, "unsigned char *buf = malloc(cap);")
    new = [ln for ln in second.stdout.splitlines() if ln.startswith("NEW ")]
    assert len(new) == 2, said(second)  # under memcheck and under asan
    for ln in new:
        assert re.match(r"NEW leak:read_all>main@[0-9a-f]{6} in digest-stdin\[(memcheck|asan)\]: ", ln), ln
        assert f"at read_all digest_stdin.c:{line} < main digest_stdin.c:" in ln, ln
    assert "REGRESSED 2 new finding(s) in 2 job(s): digest-stdin[" in second.stdout
    nights = [p for p in history.iterdir() if p.is_dir()]
    assert len(nights) == 2
    (second_night,) = [p for p in nights if '"previous": null' not in (p / "comparison.json").read_text()]
    assert "leak:read_all>main@" in (second_night / "comparison.json").read_text()
    assert {f"{j['pattern']}[{j['tool']}]" for j in results(second_night)["jobs"]} == ALL_JOBS
