"""The README's first command, exactly as written, on a fresh clone with a fresh cache.

`make report` is what a new user types first.  It once came back with 71 failed expectations:
a relative --out (reports/latest) broke every checker and the empty logs were read as clean.
This test clones the repository into a temporary folder and runs the README's first command
there as written; every expectation must hold (0 failed), and the report must be written
under the clone's reports/latest/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    """The commands of the README's first code block, in order."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the git repository to clone")
@pytest.mark.skipif(shutil.which("make") is None or shutil.which("git") is None, reason="needs make and git")
def test_make_report_on_a_fresh_clone(tmp_path):
    first = readme_commands()[0]
    assert first == "make report", f"the README's first command changed to {first!r}: update this test"
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, stdin=subprocess.DEVNULL,
                   timeout=120, start_new_session=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "LEAKHARNESS", "MAKE"))}
    env["LEAKHARNESS_CACHE"] = str(tmp_path / "fresh-cache")
    proc = subprocess.run(first.split(), cwd=clone, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=1500, start_new_session=True)
    tail = (proc.stdout + proc.stderr)[-3000:]
    results_file = clone / "reports" / "latest" / "results.json"
    jobs = json.loads(results_file.read_text())["jobs"] if results_file.is_file() else []
    # The failing jobs first: the output's tail shows only the last jobs' lines.
    failed = [f"{j['pattern']}::{j['variant']}[{j['tool']}]: {j['reason']}" for j in jobs if j["verdict"] == "fail"]
    assert proc.returncode == 0, "\n".join(failed + [tail])
    assert not failed, "\n".join(failed)
    assert len(jobs) >= 200
    # The leaky variants' leaks were really seen, with their bytes: not a run of empty logs.
    leaky = [j for j in jobs if j["pattern"] == "ssl_error_path" and j["variant"] == "leaky" and j["tool"] == "memcheck"]
    assert leaky and leaky[0]["status"] == "ok" and not leaky[0]["cached"]
    lost = sum(f["bytes"] or 0 for f in leaky[0]["findings"] if f["leak_kind"] in ("definite", "indirect"))
    assert lost > 20000, lost
    assert (clone / "reports" / "latest" / "index.html").is_file()
    assert "0 failed" in proc.stdout
