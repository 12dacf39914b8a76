#!/usr/bin/env python3
"""pytest benchmark (issue 5): the repository's test suite with `-n 2` against `-n 0`.

Run from the repository root:  .venv/bin/python bench/pytest_bench.py   (or `make bench`)

1. Warms a private build cache (bench/.work/pytest_bench/cache, never the user's default cache)
   with one `pytest -n 2 --leak-cache C`: every catalog binary is built.
2. Times `python -m pytest -n 0 --leak-fresh --leak-cache C` and `... -n 2 ...` from the
   repository root (testpaths: tests/ and c_fixtures/), alternating, once each by default
   (--rounds N for more; the best of each is kept).  --leak-fresh: no run result is reused, every checker runs again; the builds are
   warm for both.  Both must pass (exit 0).
3. Prints both wall times and the speedup (-n 0 / -n 2); target >= 1.9x (issue 20).  From each run's JUnit
   XML it also prints where the time went: the sum of the tests' own times (setup + call +
   teardown), the longest test, and what the rest of the wall time was.

pytest runs with `-p no:cacheprovider`, so it writes nothing into the repository.  Everything
else lives in bench/.work/pytest_bench/.  Standard library only.  Exit status: non-zero only when
something is wrong (a pytest run failed); a missed target is printed.
"""

from __future__ import annotations

import os as _os, sys as _sys
_sys.path.insert(0, _os.path.dirname(_os.path.abspath(__file__)))
import benchlib  # noqa: E402  (the machine line every benchmark prints)

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, ".work", "pytest_bench")
PYTHON = sys.executable  # the suite of this checkout, with its packages (run from the repository root)

ROUNDS = 1  # the whole suite: about 15 minutes with -n 2, twice that with -n 0
WORKERS = 2
TARGET_SPEEDUP = 1.9  # issue 20


def log(msg: str) -> None:
    print(f"[pytest_bench] {msg}", file=sys.stderr, flush=True)


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def pytest_argv(workers: int, cache: str, fresh: bool, junit: str | None) -> list[str]:
    argv = [PYTHON, "-m", "pytest", "-n", str(workers), "--leak-cache", cache, "-q",
            "-p", "no:cacheprovider"]
    if fresh:
        argv.append("--leak-fresh")
    if junit:
        argv.append(f"--junitxml={junit}")
    return argv


def run(argv, label: str) -> dict:
    out_path = os.path.join(WORK, f"{label}.out")
    with open(out_path, "wb") as fout:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=fout, env=benchlib.env(),
                                stderr=subprocess.STDOUT, start_new_session=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    with open(out_path, "rb") as fh:
        text = fh.read().decode("utf-8", "replace")
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return {"label": label, "argv": argv, "seconds": seconds,
            "returncode": os.waitstatus_to_exitcode(status),
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "summary": lines[-1].strip("= ") if lines else "(no output)", "tail": text[-4000:]}


def junit_stats(path: str) -> dict:
    """Per-test times from pytest's JUnit XML (each is setup + call + teardown)."""
    tests = []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        tests.append((float(case.get("time") or 0.0), name))
    tests.sort(reverse=True)
    total = sum(t for t, _ in tests)
    leak = sum(t for t, n in tests if n.startswith("c_fixtures"))
    return {"tests": len(tests), "sum_s": total, "catalog_sum_s": leak, "other_sum_s": total - leak,
            "longest": tests[:5]}


def collect_seconds() -> float:
    """Wall time of collection alone, in one process: the fixed start-up cost each pytest
    process pays (the controller for -n 0; the controller and each worker for -n 2)."""
    start = time.perf_counter()
    subprocess.run([PYTHON, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                   cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def machine() -> str:
    cpu = benchlib.cpu_model()
    try:
        versions = subprocess.run([PYTHON, "-c", "import pytest, xdist; print(pytest.__version__, "
                                   "xdist.__version__)"], capture_output=True, text=True,
                                  timeout=60).stdout.split()
        pyt = f"pytest {versions[0]}, pytest-xdist {versions[1]}"
    except (OSError, subprocess.TimeoutExpired, IndexError):
        pyt = "pytest ?"
    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {pyt}, "
            f"{platform.system()} {platform.release()}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=ROUNDS, help="timed runs of each (best kept)")
    args, unknown = ap.parse_known_args(argv)
    if unknown:
        log(f"ignoring arguments meant for other benchmarks: {' '.join(unknown)}")
    os.makedirs(WORK, exist_ok=True)
    cache = os.path.join(WORK, "cache")

    log(f"warming {cache} (load {loadavg()})")
    w = run(pytest_argv(WORKERS, cache, fresh=False, junit=None), "warmup")
    log(f"warm-up: {w['seconds']:.1f} s, exit {w['returncode']}: {w['summary']}")
    if w["returncode"] != 0:
        print(f"pytest_bench: the warm-up run failed (exit {w['returncode']}):\n{w['tail']}",
              file=sys.stderr)
        return 1

    runs: dict[int, list[dict]] = {0: [], WORKERS: []}
    for i in range(args.rounds):
        for workers in (0, WORKERS):
            label = f"n{workers}-{i}"
            junit = os.path.join(WORK, f"{label}.junit.xml")
            log(f"round {i + 1}: -n {workers} (load {loadavg()})")
            r = run(pytest_argv(workers, cache, fresh=True, junit=junit), label)
            log(f"  {r['seconds']:.1f} s, exit {r['returncode']}: {r['summary']}")
            r["junit"] = junit_stats(junit) if os.path.exists(junit) else None
            runs[workers].append(r)
    collect_s = collect_seconds()

    failed = [r for rs in runs.values() for r in rs if r["returncode"] != 0]
    best0 = min(runs[0], key=lambda r: r["seconds"])
    bestn = min(runs[WORKERS], key=lambda r: r["seconds"])
    speedup = best0["seconds"] / bestn["seconds"]

    print(f"# pytest benchmark, {datetime.date.today().isoformat()}")
    print(f"machine: {machine()}")
    print(f"`python -m pytest -n N --leak-fresh --leak-cache C` from the repository root, builds "
          f"warm, best of {args.rounds}; load average at the end {loadavg()}")
    print()
    print("| run | seconds | speedup | target | met? | result |")
    print("|---|---:|---:|---|---|---|")
    print(f"| -n 0 | {best0['seconds']:.2f} | 1x | | | {best0['summary']} |")
    print(f"| -n {WORKERS} | {bestn['seconds']:.2f} | {speedup:.2f}x | >= {TARGET_SPEEDUP:g}x | "
          f"{'met' if speedup >= TARGET_SPEEDUP else '**MISSED**'} | {bestn['summary']} |")
    print()
    print("all runs, seconds (exit): " + "; ".join(
        f"-n {w} " + " / ".join(f"{r['seconds']:.2f} ({r['returncode']})" for r in rs)
        for w, rs in runs.items()))
    print()
    print(f"where the time went (best runs; sum = the tests' own times from JUnit XML; busy = sum / "
          f"(wall x slots); cpu = CPU seconds of the whole tree); collection alone takes "
          f"{collect_s:.2f} s in one process:")
    for workers, r in ((0, best0), (WORKERS, bestn)):
        j = r["junit"]
        if not j:
            continue
        slots = max(workers, 1)
        print(f"  -n {workers}: wall {r['seconds']:.2f}  tests {j['tests']}  sum {j['sum_s']:.2f} "
              f"(catalog items {j['catalog_sum_s']:.2f}, tests/ {j['other_sum_s']:.2f})  busy "
              f"{j['sum_s'] / (r['seconds'] * slots):.2f}  bound max(sum / {slots}, longest) "
              f"{max(j['sum_s'] / slots, j['longest'][0][0] if j['longest'] else 0):.2f}  "
              f"outside tests {r['seconds'] * slots - j['sum_s']:.1f} slot-s  cpu {r['cpu_s']:.1f}")
        print("      longest: " + "; ".join(f"{n} {t:.1f} s" for t, n in j["longest"][:4]))
    for r in failed:
        print(f"FAILED: {' '.join(r['argv'][1:])} exited {r['returncode']}: {r['summary']}")

    with open(os.path.join(WORK, "pytest_bench.results.json"), "w") as fh:
        json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
                   "warmup": w, "runs": runs, "collect_s": collect_s, "speedup": speedup}, fh,
                  indent=1, default=str)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
