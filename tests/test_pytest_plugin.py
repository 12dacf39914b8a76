"""The pytest plugin, run through pytest's own pytester: the README's example file, exactly;
catalog items, xfail for blind spots, failure messages, JUnit names, and xdist merging."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "tests" / "programs" / "readme_example"


def readme_example() -> tuple[str, str]:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- example: (\S+) -->\s*```python\n(.*?)```\s*<!-- end example -->", text, re.S)
    assert m, "README.md lost its example test file"
    return m.group(1), m.group(2)


def test_the_readme_example_runs_as_written(pytester):
    name, code = readme_example()
    (pytester.path / "src").mkdir()
    for c in EXAMPLE.glob("*.c"):
        shutil.copy(c, pytester.path / "src" / c.name)
    pytester.makepyfile(**{name[:-3]: code})
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*known findings accepted*", "*leak:BUF_MEM_grow>X509_NAME_oneline>print_subject*"])


def test_assertion_messages_read_like_a_report(pytester):
    (pytester.path / "src").mkdir()
    shutil.copy(EXAMPLE / "subject.c", pytester.path / "src" / "subject.c")
    pytester.makepyfile(test_fail="""
        def test_clean(leak_check):
            leak_check(build=["src/subject.c"], tools=("memcheck",)).assert_clean()
        def test_wrong_function(leak_check):
            leak_check(build=["src/subject.c"], tools=("asan",)).assert_leaks(function="SSL_new")
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*expected no memory errors or leaks; found 1:*",
        "*leak (definite) 268 B in 1 block(s) at *print_subject subject.c:8*",
        "*expected leak through SSL_new; found *X509_NAME_oneline*",
    ])


def write_pattern(root: Path, pid: str, min_bytes: int, asan: str = 'category = "leak"') -> None:
    folder = root / pid
    folder.mkdir(parents=True)
    (folder / "pattern.toml").write_text(textwrap.dedent(f'''
        id = "{pid}"
        title = "name line leaked"
        description = """X509_NAME_oneline allocates its result when given no buffer; the caller must free it
        with OPENSSL_free. Written by a test of the pytest plugin."""
        apis = ["X509_NAME_oneline"]
        references = ["https://github.com/vmware/concord-bft/issues/1703"]
        [expect.leaky.memcheck]
        category = "leak"
        function = "X509_NAME_oneline"
        min_bytes = {min_bytes}
        [expect.leaky.asan]
        {asan}
    '''))
    (folder / "pattern.c.j2").write_text(textwrap.dedent('''
        #include "lh_common.h"
        LH_NOINLINE static void show(X509_NAME *n)
        {
            char *s = X509_NAME_oneline(n, NULL, 0);
            puts(s);
        {% if not leaky %}
            OPENSSL_free(s);
        {% endif %}
        }
        int main(void)
        {
            X509_NAME *n = X509_NAME_new();
            lh_init();
            X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"x", -1, -1, 0);
            show(n);
            X509_NAME_free(n);
            return 0;
        }
    '''))


@pytest.fixture
def catalog(pytester):
    root = pytester.path / "fixtures"
    root.mkdir()
    (root / "_common").symlink_to(ROOT / "c_fixtures" / "_common")
    write_pattern(root, "good_pattern", 200)
    # Expects more than leaks: must fail; and says asan is blind where it is not: a stale expectation.
    write_pattern(root, "wrong_pattern", 10**6, asan='blind = "a test says so"')
    return root


def test_catalog_items_junit_and_merged_report(pytester, catalog):
    report = pytester.path / "report"
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest("-p", "no:cacheprovider", "-n", "2", "fixtures", "--leak-tools",
                                "memcheck,asan,hardened", f"--leak-report={report}", f"--junitxml={junit}", "-rfxX")
    # hardened does not look for leaks (a blind spot by default): it runs, misses it, and is a strict xfail.
    result.assert_outcomes(passed=8, failed=2, xfailed=2)
    for line in ("FAILED fixtures/wrong_pattern::leaky[[]memcheck[]]*", "FAILED fixtures/wrong_pattern::leaky[[]asan[]]*",
                 "*XFAIL*good_pattern::leaky[[]hardened[]]*hardened does not look for this kind of bug*"):
        result.stdout.fnmatch_lines([line])  # in whatever order the workers finished
    out = result.stdout.str()
    assert "expected: leak of at least 1000000 B through X509_NAME_oneline" in out
    assert "stale expectation: expected asan to be blind here (a test says so), but it reported" in out
    assert "logs:" in out
    # JUnit: each job named by pattern, variant and checker; the failure carries the findings.
    cases = {(c.get("classname"), c.get("name")): c for c in ET.parse(junit).getroot().iter("testcase")}
    failing = cases[("fixtures.wrong_pattern", "leaky[memcheck]")]
    assert "X509_NAME_oneline" in failing.find("failure").get("message", "") + (failing.find("failure").text or "")
    # xdist workers' jobs gathered once each in the controller's results.json and report.
    data = json.loads((report / "results.json").read_text())
    names = [(j["pattern"], j["variant"], j["tool"]) for j in data["jobs"]]
    assert len(names) == len(set(names)) == 12  # every item ran, blind spots included
    verdicts = {(j["pattern"], j["tool"]): j["verdict"] for j in data["jobs"] if j["variant"] == "leaky"}
    assert verdicts[("wrong_pattern", "asan")] == "stale" and verdicts[("good_pattern", "hardened")] == "blind"
    assert (report / "index.html").is_file()


def test_a_second_session_on_one_leak_report_refuses_and_the_last_results_never_stand_in(tmp_path):
    """Two sessions on one --leak-report: the second deleted the first's job files, and the
    first's results.json then held only clean jobs (a failed session reported clean).  The
    folder is now held as a run holds its --out: the second refuses at once.  A later session that
    writes no results of its own (nothing selected, stopped early) leaves none of the last one's."""
    import os
    import subprocess
    import sys
    import time

    (tmp_path / "leak.c").write_text("#include <stdlib.h>\nint main(void) { return malloc(40) == 0; }\n")
    (tmp_path / "slow.c").write_text("#include <unistd.h>\nint main(void) { sleep(3); return 0; }\n")
    (tmp_path / "leakharness.toml").write_text('tools = ["asan"]\n[[target]]\nname = "aleak"\nsources = ["leak.c"]\n'
                                               '[[target]]\nname = "bslow"\nsources = ["slow.c"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "LEAKHARNESS"))}
    env["LEAKHARNESS_CACHE"] = str(tmp_path / "cache")

    def session(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                                 "--leak-report", "rep", *args], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    first = session("--leak-fresh")
    try:
        lock = tmp_path / "rep" / ".leakharness.lock"
        deadline = time.monotonic() + 60
        while not (lock.is_file() and lock.read_text().strip() == str(first.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        second = session("-k", "bslow")
        out, _ = second.communicate(timeout=120)
        assert second.returncode == 4 and "another leakharness run is writing there" in out, out
        out, _ = first.communicate(timeout=240)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, 9)
    assert first.returncode == 1, out
    jobs = {j["pattern"]: j for j in json.loads((tmp_path / "rep" / "results.json").read_text())["jobs"]}
    assert set(jobs) == {"aleak", "bslow"} and jobs["aleak"]["findings"], jobs
    third = session("-k", "no_such_item")
    out, _ = third.communicate(timeout=120)
    assert third.returncode == 5 and not (tmp_path / "rep" / "results.json").exists(), out


def test_a_misspelt_leak_pattern_fails_the_session(pytester, catalog):
    """--leak-patterns good_patern (a typo) collected nothing and passed with the other items, or
    ran nothing at all; `run --pattern` refuses the same.  It is a failing item naming it."""
    result = pytester.runpytest("-p", "no:cacheprovider", "fixtures", "--leak-patterns", "good_patern,good_pattern",
                                "--leak-tools", "asan")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*--leak-patterns: no pattern 'good_patern' among those collected (good_pattern, "
                                 "wrong_pattern)*"])


def test_two_checks_in_one_test_each_keep_their_job(pytester):
    """Two leak_check calls of one test on one program (different args): the second's job file
    replaced the first's in --leak-report, and a leak found by the first was gone from the
    report.  tools="asan" is one checker, not the letters a, s, a, n."""
    (pytester.path / "src").mkdir()
    (pytester.path / "src" / "maybe.c").write_text(
        "#include <stdlib.h>\nint main(int argc, char **argv) {\n    char *p = malloc(33);\n"
        "    if (argc > 1) return p == 0;\n    free(p);\n    return 0;\n}\n")
    pytester.makepyfile(test_twice="""
        def test_twice(leak_check):
            leak_check(build=["src/maybe.c"], tools="asan", args=["leak"]).assert_leaks(function="main")
            leak_check(build=["src/maybe.c"], tools="asan").assert_clean()
    """)
    report = pytester.path / "report"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--leak-report={report}")
    result.assert_outcomes(passed=1)
    jobs = json.loads((report / "results.json").read_text())["jobs"]
    assert len(jobs) == 2 and sorted(len(j["findings"]) for j in jobs) == [0, 1], [j["pattern"] for j in jobs]


def test_two_project_files_with_a_target_of_one_name_keep_a_job_each(pytester):
    """A monorepo: sub1/ and sub2/ each declare a target "digest", sub1's leaking.  pytest failed
    sub1's item, but --leak-report held sub2's clean job in its place (one job file, one logs
    folder per name): the report said clean.  Each now has its own job, named by its folder."""
    for sub, body in (("sub1", "return malloc(21) == 0;"), ("sub2", "free(malloc(21)); return 0;")):
        (pytester.path / sub).mkdir()
        (pytester.path / sub / "d.c").write_text(f"#include <stdlib.h>\nint main(void) {{ {body} }}\n")
        (pytester.path / sub / "leakharness.toml").write_text(
            'tools = ["asan"]\n[[target]]\nname = "digest"\nsources = ["d.c"]\n')
    report = pytester.path / "report"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--leak-report={report}", "-rfE")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED sub1/leakharness.toml::digest[[]asan[]]*"])
    jobs = {j["pattern"]: j for j in json.loads((report / "results.json").read_text())["jobs"]}
    assert set(jobs) == {"sub1:digest", "sub2:digest"}, set(jobs)
    assert len(jobs["sub1:digest"]["findings"]) == 1 and not jobs["sub2:digest"]["findings"]


def test_a_project_file_testpaths_leave_out_is_said(pytester):
    """`testpaths = tests` in the project's pytest.ini: `pytest` collected tests/ only, and the
    root's leakharness.toml (a leaking target) was never checked, with nothing said.  The session
    now says so, and the command to run it; a run that names it collects it."""
    (pytester.path / "d.c").write_text("#include <stdlib.h>\nint main(void) { return malloc(21) == 0; }\n")
    (pytester.path / "leakharness.toml").write_text('tools = ["asan"]\n[[target]]\nname = "digest"\nsources = ["d.c"]\n')
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_unit.py").write_text("def test_unit():\n    pass\n")
    pytester.makeini("[pytest]\ntestpaths = tests\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["leakharness: */leakharness.toml was not collected: pytest's testpaths (tests) leave "
                                 "it out; run `pytest leakharness.toml` or add it to testpaths"])
    result = pytester.runpytest("-p", "no:cacheprovider", "leakharness.toml")
    result.assert_outcomes(failed=1)
    assert "was not collected" not in result.stdout.str()
