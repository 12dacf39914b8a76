"""Issue 16: one place decides a job's outcome, and every output shows it; blind spots are checked.

A fixtures folder written by the test holds patterns whose expectations are right, wrong or out of
date, and `leakharness run` is run on it as a user runs it: a blind spot the checker in fact sees
is "stale" (exit 1, a STALE line, a JUnit failure, the matrix, SARIF); a true blind spot runs and
is "blind"; a run that hangs by design is "known incomplete" (never a pass), and one that no
longer hangs makes its expectation stale.  SARIF is written with or without the HTML report.
"""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from realrun import lh

ROOT = Path(__file__).resolve().parent.parent


LEAK_TEMPLATE = '''#include "lh_common.h"
#include <unistd.h>
static char *kept;
int main(void)
{
    kept = malloc(4321);
    memset(kept, 1, 4321);
{% if leaky %}    kept = NULL;{% else %}    free(kept);{% endif %}

{% if hang %}    for (;;) pause();{% endif %}
    return 0;
}
'''


def pattern(root: Path, pid: str, expect: str, hang: bool = False) -> None:
    folder = root / pid
    folder.mkdir(parents=True)
    (folder / "pattern.toml").write_text(textwrap.dedent(f'''
        id = "{pid}"
        title = "{pid}"
        description = "written by tests/test_outcomes.py"
        [params]
        hang = {"true" if hang else "false"}
        [expect.leaky.memcheck]
        category = "leak"
    ''') + textwrap.dedent(expect))
    (folder / "pattern.c.j2").write_text(LEAK_TEMPLATE)


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fixtures")
    (root / "_common").symlink_to(ROOT / "c_fixtures" / "_common")
    # asan sees this leak: a blind spot written here is out of date.
    pattern(root, "stale_blind", '''
        [expect.leaky.asan]
        blind = "said to miss it"
    ''')
    # ubsan does not look for leaks: a true blind spot (the default for a checker not stated).
    pattern(root, "true_blind", '''
        [expect.leaky.asan]
        category = "leak"
        min_bytes = 4321
    ''')
    # Both variants hang: known incomplete (never a pass).
    pattern(root, "hangs", "".join(f'''
        [expect.{variant}.{checker}]
        incomplete = "pauses forever"
        timeout = 2
    ''' for variant in ("leaky", "fixed") for checker in ("asan", "ubsan")), hang=True)
    # Said to hang, but it does not any more: stale.
    pattern(root, "no_longer_hangs", '''
        [expect.fixed.asan]
        incomplete = "used to pause forever"
        timeout = 2
        [expect.leaky.asan]
        category = "leak"
    ''')
    return root


def test_stale_blind_and_known_incomplete_in_every_output(fixtures, tmp_path):
    proc = lh("run", "--fixtures", fixtures, "--tool", "asan", "--tool", "ubsan", "--out", "out",
              "--junit", "junit.xml", "--summary-md", "summary.md", cwd=tmp_path, cache=tmp_path / "cache",
              timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # a stale expectation fails the run
    out = proc.stdout
    assert "STALE stale_blind::leaky[asan]: expected asan to be blind here (said to miss it), but it reported" in out
    assert "4321 B" in out.split("STALE stale_blind::leaky[asan]")[1].splitlines()[0]
    assert "STALE no_longer_hangs::fixed[asan]: expected the run to hang or crash (used to pause forever)" in out
    assert "known incomplete hangs::leaky[asan]: pauses forever (timed out after 2 s" in out
    assert "FAIL " not in out
    jobs = {(j["pattern"], j["variant"], j["tool"]): j for j in
            json.loads((tmp_path / "out" / "results.json").read_text())["jobs"]}
    verdicts = {k: j["verdict"] for k, j in jobs.items()}
    assert verdicts[("stale_blind", "leaky", "asan")] == "stale"
    assert verdicts[("true_blind", "leaky", "ubsan")] == "blind"  # it ran (blind spots are checked)
    assert jobs[("true_blind", "leaky", "ubsan")]["status"] == "ok"
    assert verdicts[("hangs", "leaky", "asan")] == verdicts[("hangs", "fixed", "asan")] == "known-incomplete"
    assert jobs[("hangs", "leaky", "asan")]["status"] == "incomplete"
    assert verdicts[("no_longer_hangs", "fixed", "asan")] == "stale"
    assert "job(s): " in out and " stale, " in out and " known incomplete (" in out

    cases = {(c.get("classname"), c.get("name")): c for c in ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")}
    assert cases[("c_fixtures.stale_blind", "leaky[asan]")].find("failure") is not None
    assert cases[("c_fixtures.true_blind", "leaky[ubsan]")].find("skipped") is not None
    assert cases[("c_fixtures.hangs", "leaky[asan]")].find("skipped") is not None
    assert "stale" in (tmp_path / "summary.md").read_text()

    index = (tmp_path / "out" / "index.html").read_text()
    assert 'class="stale"' in index and 'class="known-incomplete"' in index
    sarif = json.loads((tmp_path / "out" / "leakharness.sarif").read_text())
    (invocation,) = sarif["runs"][0]["invocations"]
    assert invocation["executionSuccessful"] is False
    texts = [n["message"]["text"] for n in invocation["toolExecutionNotifications"]]
    assert any(t.startswith("stale_blind::leaky[asan]: STALE") for t in texts), texts


def test_sarif_without_the_html_report(fixtures, tmp_path):
    proc = lh("run", "--fixtures", fixtures, "--pattern", "true_blind", "--tool", "asan", "--no-html", "--out", "out",
              cwd=tmp_path, cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (tmp_path / "out" / "index.html").exists()
    sarif = json.loads((tmp_path / "out" / "leakharness.sarif").read_text())
    assert [r["properties"]["bytes"] for r in sarif["runs"][0]["results"]] == [4321]
