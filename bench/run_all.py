#!/usr/bin/env python3
"""Run every benchmark in bench/ (each file named *_bench.py), one after the other.

Run from the repository root:  .venv/bin/python bench/run_all.py   (what `make bench` does)
Exit status: 0 when every benchmark exited 0, else 1.  Arguments are passed to each script
(run_bench.py and pytest_bench.py ignore the ones they do not know, e.g. parse_bench's --no-peers).

Order: the ones in ORDER first (check, parse, report, the catalog run, the test suite), then any other
*_bench.py by name.  They never overlap: each one times work that needs both cores.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ORDER = ("check_bench.py",   # issue 20: `check` of one program against the bare checkers
         "parse_bench.py",   # issues 2 and 20: `leakharness parse` against its peers and bare lxml
         "report_bench.py",  # issues 6 and 20: the report, parse and check at 5,000 to 50,000 findings
         "run_bench.py",     # issues 4 and 20: `run` against xargs -P; cold against warm; re-run
         "pytest_bench.py",  # issues 5 and 20: pytest -n 2 against -n 0
         "residue_bench.py",  # issue 13: the residue checker against a plain run
         "reaper_bench.py",  # lh-reaper's own cost per job, with 1,000 more processes on the machine
         "gocaller_bench.py")  # go-asan's record of the pointers C calls return to Go, per call


def main(argv: list[str]) -> int:
    found = sorted(glob.glob(os.path.join(HERE, "*_bench.py")))
    rank = {name: i for i, name in enumerate(ORDER)}
    scripts = sorted(found, key=lambda p: (rank.get(os.path.basename(p), len(ORDER)), p))
    if not scripts:
        print("run_all: no *_bench.py in bench/", file=sys.stderr)
        return 1
    failed = []
    for script in scripts:
        name = os.path.basename(script)
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        rc = subprocess.call([sys.executable, script, *argv], cwd=ROOT, stdin=subprocess.DEVNULL)
        print(f"== {name}: exit {rc} after {time.perf_counter() - start:.0f} s\n", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"run_all: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
