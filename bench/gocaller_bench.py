#!/usr/bin/env python3
"""Go caller benchmark: what the record of the pointers C calls return to Go (go-asan's and
memcheck's) costs a program that makes many such calls.

Run from the repository root:  .venv/bin/python bench/gocaller_bench.py   (or `make bench`)

The go-asan build sends every C call whose value Go uses through a recording wrapper
(gobuild.KEEP_SOURCE), so that a leak can be placed at the Go line that made the call.  This
script writes one Go program into bench/.work/gocaller_bench, twice: `keep/` (a module at Go 1.19:
recorded) and `plain/` (the same program in a module at Go 1.17, which the build leaves without
the record, since the wrapper is generic).  The program makes 1,000,000 C.EVP_MD_CTX_new calls,
freeing each, then loses one.  After one untimed check of each (the builds cached), it times in
turn (A B A B ...):
  A. `leakharness check --fresh --build keep --tool go-asan --no-html`;
  B. the same on `plain`.
The figure is the median of the pairwise ratios A/B, and the difference per C call.  Both must
find the 72 B leak, and only A names its Go line.  Then the same under memcheck (`--tool memcheck`),
with MEMCHECK_CALLS calls (valgrind runs the program some 50 times slower): its build records the
same calls, and at the end lists the lost blocks for the join (an extra leak search).  No target: it is printed so that a change to
the record is measured.  Standard library only, plus the `harness` package under test.
"""

from __future__ import annotations

import os as _os, sys as _sys
_sys.path.insert(0, _os.path.dirname(_os.path.abspath(__file__)))
import benchlib  # noqa: E402

import argparse
import datetime
import json
import os
import shutil
import sys
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, ".work", "gocaller_bench")
ROUNDS = 5
CALLS = 1_000_000
MEMCHECK_CALLS = 20_000

PROGRAM = """// Written by bench/gocaller_bench.py: many C calls that return a pointer, then one leak.
package main

/*
#cgo pkg-config: openssl
#include <openssl/evp.h>
*/
import "C"

import "fmt"

func main() {{
	for i := 0; i < {calls}; i++ {{
		ctx := C.EVP_MD_CTX_new()
		C.EVP_MD_CTX_free(ctx)
	}}
	lost := C.EVP_MD_CTX_new() // never freed
	fmt.Println(lost != nil)
}}
"""


def log(msg: str) -> None:
    print(f"[gocaller_bench] {msg}", file=sys.stderr, flush=True)


def leak_where(out: str) -> str:
    """The Go caller go-asan named for the 72 B leak ("" when none), from the check's results."""
    data = json.loads((Path(out) / "results.json").read_text())
    for f in data["jobs"][0]["findings"]:
        if f.get("category") == "leak" and f.get("bytes") == 72:
            callers = [a for a in f["aux_stacks"] if a["label"] == "Go caller"]
            return f"{callers[0]['frames'][0]['function']}:{callers[0]['frames'][0]['line']}" if callers else ""
    raise SystemExit(f"gocaller_bench: no 72 B leak in {out}/results.json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args, _unknown = parser.parse_known_args()  # run_all.py passes every benchmark's options
    if shutil.which("go") is None:
        print("gocaller_bench: go not found; skipped")
        return 0
    for name, version, calls in (("keep", "1.19", CALLS), ("plain", "1.17", CALLS),
                                 ("keep-memcheck", "1.19", MEMCHECK_CALLS), ("plain-memcheck", "1.17", MEMCHECK_CALLS)):
        folder = Path(WORK) / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "main.go").write_text(PROGRAM.format(calls=calls))
        (folder / "go.mod").write_text(f"module example.com/{name.split('-')[0]}\n\ngo {version}\n")
    env = benchlib.env({"LEAKHARNESS_CACHE": os.path.join(WORK, "cache")})
    print(f"# Go caller benchmark, {datetime.date.today().isoformat()}")
    print(f"machine: {benchlib.cpu_model()}")
    for tool, calls, suffix in (("go-asan", CALLS, ""), ("memcheck", MEMCHECK_CALLS, "-memcheck")):
        code = pair(tool, calls, suffix, env, args.rounds)
        if code:
            return code
    return 0


def pair(tool: str, calls: int, suffix: str, env: dict, rounds: int) -> int:
    """Time the recorded and the unrecorded program under tool, print the table."""
    def command(name: str) -> list[str]:
        return benchlib.ours() + ["check", "--fresh", "--quiet", "--build", name, "--tool", tool, "--no-html",
                                  "--out", os.path.join(WORK, f"out-{name}")]

    keep, plain = f"keep{suffix}", f"plain{suffix}"
    for name in (keep, plain):
        warm = benchlib.run_timed(command(name), cwd=WORK, env_=env)
        if warm["returncode"] != 1:
            print(f"gocaller_bench: the warm-up check of {name} exited {warm['returncode']}, not 1", file=sys.stderr)
            return 1
    named = leak_where(os.path.join(WORK, f"out-{keep}")), leak_where(os.path.join(WORK, f"out-{plain}"))
    if named != ("main.main:17", ""):
        print(f"gocaller_bench: {tool}: Go callers named {named}, not ('main.main:17', '')", file=sys.stderr)
        return 1
    log(f"{tool}: {rounds} pairs (load {benchlib.loadavg()})")
    result = benchlib.side_by_side({"argv": command(keep), "cwd": WORK, "env": env},
                                   {"argv": command(plain), "cwd": WORK, "env": env}, rounds, log)
    if any(r["returncode"] != 1 for r in result["a"] + result["b"]):
        print(f"gocaller_bench: a timed {tool} check did not exit 1 (a leak found)", file=sys.stderr)
        return 1
    per_call_us = (result["a_median_s"] - result["b_median_s"]) / (calls + 1) * 1e6
    print()
    print(f"| {tool} check of {calls + 1:,} C.EVP_MD_CTX_new calls | median s | ratio |")
    print("|---|---:|---:|")
    print(f"| recorded (module at Go 1.19): the leak at main.main main.go:17 | {result['a_median_s']:.2f} | "
          f"{result['ratio']:.2f}x |")
    print(f"| not recorded (module at Go 1.17): the leak at the cgo stub | {result['b_median_s']:.2f} | 1x |")
    print()
    print(f"{tool}: the record's cost, {per_call_us:.2f} us per C call that returns a pointer "
          f"(load average at the end {benchlib.loadavg()}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
