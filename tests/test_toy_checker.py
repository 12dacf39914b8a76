"""Issue 16: a new checker is one module and one registry line.

A copy of the package gets a toy checker (LeakSanitizer alone, gcc's -fsanitize=leak) as
harness/checkers/toy.py and one line in the registry, and nothing else; the copy is then used
the way a user uses leakharness: `check --build` (build, run, parse, judge), a second run served
from the cache, the HTML report, JUnit and SARIF, `leakharness checkers`, and a pytest item of a
pattern that states what the toy checker must find.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

TOY = '''"""A toy checker: LeakSanitizer alone (gcc -fsanitize=leak), for the registry's test."""

from .sanitizers import SanitizerChecker


class LeakOnly(SanitizerChecker):
    name = "toy-lsan"
    cflags = ("-g", "-O0", "-fsanitize=leak", "-fno-omit-frame-pointer")
    marks = (b"__lsan_init",)
    flag = "-fsanitize=leak"
    log_tools = ("lsan",)
    cannot_see = "anything but leaks"


CHECKERS = (LeakOnly(),)
FAMILY = ("sanitizers", "Sanitizers: checks compiled into the program")
'''

LEAK = "#include <stdlib.h>\n#include <string.h>\nstatic char *p;\n" \
       "int main(void) { p = malloc(4321); memset(p, 1, 4321); p = 0; return 0; }\n"


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    if subprocess.run(["gcc", "-fsanitize=leak", "-x", "c", "-", "-o", os.devnull], input="int main(void){return 0;}",
                      text=True, capture_output=True, timeout=60).returncode != 0:
        pytest.skip("gcc cannot build with -fsanitize=leak here (liblsan missing)")
    repo = tmp_path_factory.mktemp("repo")
    shutil.copytree(ROOT / "harness", repo / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "c_fixtures", repo / "c_fixtures")
    (repo / "harness" / "checkers" / "toy.py").write_text(TOY)
    registry = repo / "harness" / "checkers" / "__init__.py"
    text = registry.read_text()
    assert text.count('    "go",\n') == 1
    registry.write_text(text.replace('    "go",\n', '    "go",\n    "toy",\n'))  # the one registry line
    return repo


def lh(copy: Path, *args, cwd: Path, cache: Path, module: str = "harness") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "LSAN_", "ASAN_"))}
    env.update(PYTHONPATH=str(copy), LEAKHARNESS_CACHE=str(cache))
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd, env=env, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=300, start_new_session=True)


def test_a_toy_checker_runs_end_to_end(copy, tmp_path):
    cache = tmp_path / "cache"
    (tmp_path / "leak.c").write_text(LEAK)
    listed = lh(copy, "checkers", cwd=tmp_path, cache=cache)
    assert "toy-lsan  [sanitizers; c; -g -O0 -fsanitize=leak" in listed.stdout, listed.stdout + listed.stderr

    first = lh(copy, "check", "--build", "leak.c", "--tool", "toy-lsan", "--junit", "junit.xml", cwd=tmp_path,
               cache=cache)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "leak (definite) 4321 B" in first.stdout and "at main leak.c:4" in first.stdout
    data = json.loads((tmp_path / "reports/check/results.json").read_text())
    (job,) = data["jobs"]
    assert job["tool"] == "toy-lsan" and job["status"] == "ok" and not job["cached"]
    assert [(f["category"], f["bytes"]) for f in job["findings"]] == [("leak", 4321)]
    case = ET.parse(tmp_path / "junit.xml").getroot().find(".//testcase")
    assert case.get("name") == "[toy-lsan]" and case.find("failure") is not None
    assert "toy-lsan" in (tmp_path / "reports/check/index.html").read_text()
    sarif = json.loads((tmp_path / "reports/check/leakharness.sarif").read_text())
    assert sarif["runs"][0]["results"][0]["properties"]["checker"] == "toy-lsan"

    again = lh(copy, "check", "--build", "leak.c", "--tool", "toy-lsan", "--out", "second", cwd=tmp_path, cache=cache)
    assert again.returncode == 1 and "(cached)" in again.stdout and "1 from cache" in again.stdout, again.stdout


def test_a_pattern_states_what_the_toy_checker_must_find(copy, tmp_path):
    fixtures = tmp_path / "fixtures"
    (fixtures / "toy_leak").mkdir(parents=True)
    (fixtures / "_common").symlink_to(copy / "c_fixtures" / "_common")
    (fixtures / "toy_leak" / "pattern.toml").write_text(textwrap.dedent('''
        id = "toy_leak"
        title = "a block never freed"
        description = "malloc without free, for the toy checker's test."
        [expect.leaky.memcheck]
        category = "leak"
        [expect.leaky.asan]
        category = "leak"
        [expect.leaky.toy-lsan]
        category = "leak"
        min_bytes = 4321
    '''))
    (fixtures / "toy_leak" / "pattern.c.j2").write_text(
        '#include "lh_common.h"\nstatic char *p;\nint main(void)\n{\n    p = malloc(4321);\n    memset(p, 1, 4321);\n'
        '{% if leaky %}    p = 0;{% else %}    free(p);{% endif %}\n    return 0;\n}\n')
    # The plugin is the installed entry point's module, harness.pytest_plugin: found first in the copy.
    result = lh(copy, "fixtures", "--leak-tools", "toy-lsan", "-p", "no:cacheprovider", "-q", "-rA",
                f"--leak-report={tmp_path / 'report'}", cwd=tmp_path, cache=tmp_path / "cache", module="pytest")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout and "toy_leak::leaky[toy-lsan]" in result.stdout, result.stdout
    jobs = json.loads((tmp_path / "report" / "results.json").read_text())["jobs"]
    assert sorted((j["variant"], j["tool"], j["verdict"]) for j in jobs) == [("fixed", "toy-lsan", "pass"),
                                                                              ("leaky", "toy-lsan", "pass")]
