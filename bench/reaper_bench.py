#!/usr/bin/env python3
"""reaper benchmark: what lh-reaper (every job's supervisor) adds to a job, on this machine as
it is and with 1,000 more processes on it.

Run from the repository root:  .venv/bin/python bench/reaper_bench.py   (or `make bench`)

The reaper ends a job by making sure nothing the command started is left running.  It used to
read all of /proc twice for that at every job's end, so its cost grew with every process on the
machine, the job's or not (a desktop has hundreds).  This script builds this checkout's reaper
(harness.supervise.reaper, into bench/.work/reaper_bench/cache) and times, in turn (A B A B ...):
  A. `lh-reaper PIDFILE 0 /bin/true`;
  B. `/bin/true`, bare;
first as the machine is, then with 1,000 `sleep` processes started beside it.  The figure is the
median of the pairwise differences A - B, in milliseconds: the reaper's own cost per job.
No target: it is printed so that a change to the reaper is measured.  Standard library only,
plus the `harness` package under test.
"""

from __future__ import annotations

import os as _os, sys as _sys
_sys.path.insert(0, _os.path.dirname(_os.path.abspath(__file__)))
import benchlib  # noqa: E402

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, ".work", "reaper_bench")
ROUNDS = 100
EXTRA = 1000


def log(msg: str) -> None:
    print(f"[reaper_bench] {msg}", file=sys.stderr, flush=True)


def overhead_ms(reaper: Path, rounds: int) -> tuple[float, float]:
    """The median of (reaper run - bare run) over `rounds` pairs, and the bare run's median, in ms."""
    result = benchlib.side_by_side({"argv": [str(reaper), os.path.join(WORK, "pid"), "0", "/bin/true"]},
                                   {"argv": ["/bin/true"]}, rounds)
    if any(r["returncode"] != 0 for r in result["a"] + result["b"]):
        raise SystemExit("reaper_bench: a run did not exit 0")
    diffs = [a["seconds"] - b["seconds"] for a, b in zip(result["a"], result["b"])]
    return statistics.median(diffs) * 1000, result["b_median_s"] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args, _unknown = parser.parse_known_args()  # run_all.py passes every benchmark's options
    sys.path.insert(0, ROOT)
    from harness.supervise import reaper as build_reaper

    os.makedirs(WORK, exist_ok=True)
    reaper = build_reaper(Path(WORK) / "cache")
    if reaper is None:
        print("reaper_bench: the reaper could not be built (is gcc installed?)", file=sys.stderr)
        return 2
    rows = []
    base = len([p for p in os.listdir("/proc") if p.isdigit()])
    log(f"{args.rounds} pairs with {base} processes on the machine (load {benchlib.loadavg()})")
    rows.append((base, *overhead_ms(reaper, args.rounds)))
    sleepers = [subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL, start_new_session=True)
                for _ in range(EXTRA)]
    try:
        time.sleep(1)
        crowd = len([p for p in os.listdir("/proc") if p.isdigit()])
        log(f"{args.rounds} pairs with {crowd} processes on the machine")
        rows.append((crowd, *overhead_ms(reaper, args.rounds)))
    finally:
        for proc in sleepers:
            proc.kill()
        for proc in sleepers:
            proc.wait()
    print(f"# reaper benchmark, {datetime.date.today().isoformat()}")
    print(f"machine: {benchlib.cpu_model()}; load average at the end {benchlib.loadavg()}")
    print()
    print("| processes on the machine | lh-reaper's own cost per job, ms (median of A - B) | /bin/true bare, ms |")
    print("|---:|---:|---:|")
    for count, cost, bare in rows:
        print(f"| {count} | {cost:.2f} | {bare:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
