#!/usr/bin/env python3
"""Residue benchmark (issue 13): the residue checker's cost against a plain run, on the catalog.

Run from the repository root:  .venv/bin/python bench/residue_bench.py   (or `make bench`)

1. Builds every C pattern's leaky and fixed variant plain (`-g -O0`: the residue checker's build,
   `harness.control.catalog_spec(pattern, variant, "memcheck")` through `harness.build.build`)
   into a private cache (bench/.work/residue_bench/cache; Go patterns are left out: a Go program
   ends with a raw exit_group, so the interposer cannot see it finish), and the interposer
   (`harness.checkers.residue.interposer`) into the same cache (its compile time is printed).
2. Probes each binary once, plain: a program that does not end by itself within the timeout
   (a use-after-free that hangs) is left out of the timing, and listed.
3. Times ROUNDS rounds; in each, every binary runs plain (the baseline) and then under the
   interposer, the same command with the environment the checker adds (`harness.checkers.residue.
   environment`: LD_PRELOAD, LH_RESIDUE_SECRETS, LH_RESIDUE_LOG, LD_BIND_NOW=1).  Canaries: the
   pattern's own (`secrets` in its pattern.toml) or a 32-byte dummy: the cost of a free does not
   depend on whether the canary is there.  stdin /dev/null, stdout and stderr to /dev/null, in
   bench/.work/residue_bench/run, address randomization off in each child (personality, no extra
   exec; --aslr keeps it).  Wall time with perf_counter around spawn and wait; CPU time (user +
   sys) from the child's own rusage (os.wait4), which a busy machine disturbs less.
4. Per binary the median of its rounds; the ratio is the sum of the interposer's medians over the
   sum of the plain medians (target: under 2x), for wall and for CPU, plus the worst binaries.
   Unless --quick, the same for the interposer's other allocation-stack modes (`all`: a whole
   stack at every malloc; `0`: none), fewer rounds: what decided the default (`own`).

Everything lives in bench/.work/residue_bench/; results in residue_bench.results.json.  Standard
library only, plus the `harness` package under test.  Exit status: non-zero only when something
is wrong (a build failed, the interposer's log of a program that ended normally is missing or has
no end line, a pattern's declared canaries not found in its leaky variant or found in its fixed
one); a missed target is printed.
"""

from __future__ import annotations

import os as _os, sys as _sys
_sys.path.insert(0, _os.path.dirname(_os.path.abspath(__file__)))
import benchlib  # noqa: E402  (the machine line every benchmark prints)

import argparse
import ctypes
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = Path(HERE) / ".work" / "residue_bench"
sys.path.insert(0, ROOT)

ROUNDS = 10
EXTRA_ROUNDS = 3  # for the informational modes
TIMEOUT_S = 20.0
TARGET = 2.0
DUMMY_SECRET = "6c682d62656e63682d64756d6d792d63616e6172792d6e6f742d612d6b657921"  # "lh-bench-dummy-canary-not-a-key!"
ADDR_NO_RANDOMIZE = 0x0040000


def log(line: str) -> None:
    print(line, flush=True)


def _no_aslr() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.personality(ADDR_NO_RANDOMIZE)


def run_once(exe: str, env: dict, cwd: Path, aslr: bool) -> dict:
    """One run: wall seconds, CPU seconds (the child's rusage), how it ended."""
    start = time.perf_counter()
    proc = subprocess.Popen([exe], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, cwd=cwd, start_new_session=True, preexec_fn=None if aslr else _no_aslr)
    deadline = start + TIMEOUT_S
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            os.killpg(proc.pid, 9)
            pid, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = -9
            return {"wall": time.perf_counter() - start, "cpu": usage.ru_utime + usage.ru_stime,
                    "rc": None, "timed_out": True}
        time.sleep(0.0005)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rc": proc.returncode, "timed_out": False}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=ROUNDS, help="timed rounds (median per binary)")
    ap.add_argument("--quick", action="store_true", help="the checker's own mode only (skip `all` and `0`)")
    ap.add_argument("--aslr", action="store_true", help="keep address randomization in the children")
    args, unknown = ap.parse_known_args(argv)
    if unknown:
        log(f"ignoring arguments meant for other benchmarks: {' '.join(unknown)}")
    if shutil.which("gcc") is None:
        print("residue_bench: gcc not found", file=sys.stderr)
        return 2

    from harness import secrets as secret_mod
    from harness.build import build
    from harness.catalog import VARIANTS, load_catalog
    from harness.checkers import residue
    from harness.checkers.base import child_environment
    from harness.parsers import residue as residue_parser
    from harness.tasks import catalog_spec

    WORK.mkdir(parents=True, exist_ok=True)
    cache = WORK / "cache"
    run_dir = WORK / "run"
    logs = WORK / "logs"
    for d in (run_dir, logs):
        d.mkdir(parents=True, exist_ok=True)
    log(f"machine: {benchlib.cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{benchlib.tool_version(['gcc', '--version'], 'gcc ?')}")
    log(f"started {datetime.datetime.now().isoformat(timespec='seconds')}, load {open('/proc/loadavg').read().split()[:3]}")

    so_dir = cache / "helpers" / "residue"
    fresh_so = not any(so_dir.glob("*/lh-residue.so")) if so_dir.is_dir() else True
    t = time.perf_counter()
    so = residue.interposer(cache)
    if so is None:
        print("residue_bench: the interposer did not build", file=sys.stderr)
        return 1
    log(f"interposer {so}: {'built in' if fresh_so else 'cached;'} {time.perf_counter() - t:.2f} s")

    binaries = []  # (name, exe, secrets, declared)
    not_c = []
    for pattern in load_catalog():
        if getattr(pattern, "language", "c") != "c":
            # A Go program ends with a raw exit_group from its runtime: no destructor runs, so the
            # interposer can never say it finished (residue leaves such runs incomplete).
            not_c.append(pattern.id)
            continue
        declared = secret_mod.pattern_secrets(pattern.directory)
        for variant in VARIANTS:
            b = build(catalog_spec(pattern, variant, "memcheck"), cache)
            if b.status != "ok":
                print(f"residue_bench: {pattern.id}-{variant} did not build:\n{b.message}", file=sys.stderr)
                return 1
            binaries.append((f"{pattern.id}::{variant}", str(b.binary), declared or [DUMMY_SECRET], bool(declared)))
    log(f"{len(binaries)} binaries (every C pattern, leaky and fixed, -g -O0)")
    if not_c:
        log(f"left out, Go patterns (residue cannot see a Go program finish): {', '.join(not_c)}")

    base_env = child_environment()
    base_env.pop("LD_PRELOAD", None)
    base_env.pop("LD_BIND_NOW", None)

    def residue_env(secrets, mode: str) -> dict:
        env = residue.environment(so, secret_mod.secret_hex(secrets), logs, base_env)
        if mode != "own":
            env["LH_RESIDUE_ALLOC_STACKS"] = mode
        return env

    def clear_logs() -> None:
        for f in logs.iterdir():
            f.unlink()

    # 2. Probe: leave out what does not end by itself.
    timed = []
    left_out = []
    for name, exe, secrets, declared in binaries:
        r = run_once(exe, base_env, run_dir, args.aslr)
        if r["timed_out"]:
            left_out.append(name)
        else:
            timed.append((name, exe, secrets, declared, r["rc"]))
    if left_out:
        log(f"left out (no end within {TIMEOUT_S:g} s when run plain): {', '.join(left_out)}")

    problems: list[str] = []

    def check_logs(name: str, declared: bool, plain_rc) -> list:
        """The interposer's logs of one run: whole when the program ended normally."""
        parsed = [residue_parser.parse_residue_log(p) for p in residue.log_files(logs)]
        ended_normally = plain_rc is not None and plain_rc >= 0
        if ended_normally and (not parsed or not all(p.complete for p in parsed)):
            why = parsed[0].reason if parsed else "no log"
            problems.append(f"{name}: the interposer's log is not whole: {why}")
        found = [f for p in parsed for f in p.findings]
        if declared and name.endswith("::leaky") and not found:
            problems.append(f"{name}: declares canaries, none found")
        if declared and name.endswith("::fixed") and found:
            problems.append(f"{name}: fixed variant, found {found[0].summary()}")
        return found

    def measure(mode: str, rounds: int) -> dict:
        per: dict[str, dict] = {name: {"plain": [], "residue": [], "plain_cpu": [], "residue_cpu": []}
                                for name, *_ in timed}
        for i in range(rounds):
            for name, exe, secrets, declared, plain_rc in timed:
                env = residue_env(secrets, mode)
                a = run_once(exe, base_env, run_dir, args.aslr)  # the baseline first
                clear_logs()
                b = run_once(exe, env, run_dir, args.aslr)
                if i == 0 and mode == "own":
                    per[name]["findings"] = len(check_logs(name, declared, plain_rc))
                clear_logs()
                per[name]["plain"].append(a["wall"])
                per[name]["residue"].append(b["wall"])
                per[name]["plain_cpu"].append(a["cpu"])
                per[name]["residue_cpu"].append(b["cpu"])
            log(f"  {mode}: round {i + 1}/{rounds} done (load {open('/proc/loadavg').read().split()[0]})")
        med = {name: {k: statistics.median(v) for k, v in d.items() if isinstance(v, list)}
               for name, d in per.items()}
        sums = {k: sum(m[k] for m in med.values()) for k in ("plain", "residue", "plain_cpu", "residue_cpu")}
        worst = sorted(med.items(), key=lambda kv: kv[1]["residue"] / max(kv[1]["plain"], 1e-9), reverse=True)
        return {"mode": mode, "rounds": rounds, "sums": sums,
                "wall_ratio": sums["residue"] / sums["plain"], "cpu_ratio": sums["residue_cpu"] / sums["plain_cpu"],
                "per_binary": {name: {**med[name], "findings": per[name].get("findings")} for name in med},
                "worst": [(name, m["residue"] / max(m["plain"], 1e-9), m["plain"], m["residue"])
                          for name, m in worst[:5]]}

    results = [measure("own", args.rounds)]
    if not args.quick:
        results.append(measure("0", EXTRA_ROUNDS))
        results.append(measure("all", EXTRA_ROUNDS))

    log("")
    log(f"{len(timed)} binaries, median of each binary's rounds, summed:")
    log("| interposer (LH_RESIDUE_ALLOC_STACKS) | rounds | plain wall s | residue wall s | wall ratio "
        "| plain CPU s | residue CPU s | CPU ratio |")
    log("|---|---:|---:|---:|---:|---:|---:|---:|")
    label = {"own": "own (the checker's default)", "0": "0 (no allocation stacks)",
             "all": "all (a whole stack at every malloc)"}
    for r in results:
        s = r["sums"]
        log(f"| {label[r['mode']]} | {r['rounds']} | {s['plain']:.3f} | {s['residue']:.3f} | {r['wall_ratio']:.2f}x "
            f"| {s['plain_cpu']:.3f} | {s['residue_cpu']:.3f} | {r['cpu_ratio']:.2f}x |")
    own = results[0]
    log("")
    log("worst binaries, default mode (wall, median): " + "; ".join(
        f"{name} {ratio:.2f}x ({p * 1000:.1f} -> {q * 1000:.1f} ms)" for name, ratio, p, q in own["worst"]))
    met = own["wall_ratio"] < TARGET
    log(f"target: residue under {TARGET:g}x a plain run on the catalog: "
        f"{'met' if met else 'MISSED'} ({own['wall_ratio']:.2f}x wall, {own['cpu_ratio']:.2f}x CPU)")
    found = {name: d["findings"] for name, d in own["per_binary"].items() if d.get("findings")}
    log(f"findings (default mode, first round): {found or 'none'}")
    out = WORK / "residue_bench.results.json"
    out.write_text(json.dumps({"date": datetime.datetime.now().isoformat(timespec="seconds"),
                               "left_out": left_out, "results": results, "problems": problems}, indent=1))
    log(f"raw numbers: {out}")
    if problems:
        for p in problems:
            print(f"residue_bench: {p}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
