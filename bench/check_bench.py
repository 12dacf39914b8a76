#!/usr/bin/env python3
"""check benchmark (issue 20): `leakharness check` on a one-file OpenSSL program against the
bare checkers it runs.

Run from the repository root:  .venv/bin/python bench/check_bench.py   (or `make bench`)

1. Writes bench/.work/check_bench/d.c: a small OpenSSL program (a SHA-256 digest whose context
   is never freed: one definite leak with its indirect blocks).
2. Warms a private cache (bench/.work/check_bench/cache) with one `check --build d.c --tool
   memcheck --tool asan`: both binaries built, the facts about files learnt.
3. Times, in turn (A B A B ..., after one untimed run of each):
   A. ours: `leakharness check --fresh --build d.c --tool memcheck --tool asan`, the HTML report
      included; --fresh so that both checkers really run (the builds are cached: a user's
      edit-free second check would not even run them);
   B. the floor: the same two checkers run bare and in parallel by a shell script, each with
      exactly the command and environment its checker hands the tool (harness.checkers), the
      same binaries, stdin from /dev/null and output to files: what a user typing the two
      commands gets, without leakharness.
   The figure is the median of the pairwise ratios A/B of wall time.  Target: <= 1.1x.
4. Times the bound the same way against the floor: a Python process (this interpreter) that
   launches the same two jobs exactly as leakharness does (under lh-reaper, with the read
   recorder, a private log folder each; run.command_for) and does nothing else: no result
   key, no log read, no report.  No check started per process can beat it.
5. Times A against itself on a cache in daily use: a copy of the warm cache with 6,000 more
   results, 6,000 more builds and 5,000 more library notes (small files: what a walk of the
   cache costs is their number).  A check's cost must not grow with the cache it uses.
Standard library only, plus the `harness` package under test.  Exit status non-zero only when
something is wrong (a run failed); a missed target is printed.
"""

from __future__ import annotations

import os as _os, sys as _sys
_sys.path.insert(0, _os.path.dirname(_os.path.abspath(__file__)))
import benchlib  # noqa: E402

import argparse
import datetime
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, ".work", "check_bench")
ROUNDS = 7
TARGET = 1.1
BIG_ENTRIES = 6000  # results and builds each, in the cache in daily use (a developer's: 5,300-6,900)
BIG_NOTES = 5000

PROGRAM = r"""
/* Written by bench/check_bench.py: a one-file OpenSSL program with one leak. */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    const char *msg = "hello";
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, msg, strlen(msg));
    EVP_DigestFinal_ex(ctx, out, &len);
    printf("%u\n", len);
    return 0; /* ctx is never freed */
}
"""


def log(msg: str) -> None:
    print(f"[check_bench] {msg}", file=sys.stderr, flush=True)


def floor_script(cache: str, source: Path) -> str:
    """A shell script running both checkers bare, in parallel, as the checkers command them."""
    sys.path.insert(0, ROOT)
    from harness import checkers
    from harness.jobs import Job
    from harness.tasks import check_tasks

    lines = ["#!/bin/sh", "# Written by bench/check_bench.py: the floor, both checkers bare, in parallel."]
    for task in check_tasks(sources=(source,), checkers=("memcheck", "asan"), cwd=Path(WORK)):
        checker = checkers.get(task.checker)
        build = checker.build(task.spec, Path(cache))
        if build.status != "ok":
            raise RuntimeError(f"{task.name}: not built: {build.message[-500:]}")
        folder = os.path.join(WORK, f"floor-{task.checker}")
        os.makedirs(folder, exist_ok=True)
        job = Job(checker=task.checker, command=(str(build.binary),), out_dir=Path(folder), cwd=Path(WORK))
        argv, env = checker.command(job, Path(folder), Path(cache))
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()) if os.environ.get(k) != v)
        lines.append(f"( cd {shlex.quote(WORK)} && rm -f {shlex.quote(folder)}/vg.* {shlex.quote(folder)}/sanitizer.*; "
                     f"{'env ' + exports + ' ' if exports else ''}{shlex.join(argv)} </dev/null "
                     f">{shlex.quote(folder)}/stdout.txt 2>{shlex.quote(folder)}/stderr.txt ) &")
    lines += ["wait", ""]
    path = os.path.join(WORK, "floor.sh")
    with open(path, "w") as fh:
        fh.write("\n".join(lines))
    os.chmod(path, 0o755)
    return path


# The bound's launcher: a Python process that starts the two jobs exactly as leakharness does
# (lh-reaper, the read recorder, a private log folder each) and does nothing else.
BOUND_LAUNCHER = r"""
# Written by bench/check_bench.py: the bound, both jobs as leakharness launches them, nothing else.
import json, os, shutil, subprocess, sys, tempfile
jobs = json.load(open(sys.argv[1]))
running = []
for job in jobs:
    folder = tempfile.mkdtemp(prefix="lh-")
    fd, pid_file = tempfile.mkstemp(prefix="lh-pid.", dir=folder)
    os.close(fd)
    fill = lambda text: text.replace(job["placeholder"], folder).replace("@PIDFILE@", pid_file)
    env = dict(os.environ, **{k: fill(v) for k, v in job["env"].items()})
    with open(os.devnull, "rb") as feed, open(folder + "/stdout.txt", "wb") as out, \
            open(folder + "/stderr.txt", "wb") as err:
        running.append((subprocess.Popen([fill(a) for a in job["argv"]], stdin=feed, stdout=out, stderr=err,
                                         env=env, cwd=job["cwd"], start_new_session=True), folder))
for proc, folder in running:
    proc.wait()
    shutil.rmtree(folder, ignore_errors=True)
"""


def bound_launcher(cache: str, source: Path) -> list[str]:
    """The bound's command: BOUND_LAUNCHER, with the jobs' command lines and environments (what
    differs from this process's) as leakharness computes them (run.command_for, under
    supervise's lh-reaper), their log folder a placeholder the launcher fills."""
    sys.path.insert(0, ROOT)
    from harness import checkers, run, supervise
    from harness.jobs import Job
    from harness.tasks import check_tasks

    placeholder = "/leakharness-bound-logs"
    jobs = []
    for task in check_tasks(sources=(source,), checkers=("memcheck", "asan"), cwd=Path(WORK)):
        build = checkers.get(task.checker).build(task.spec, Path(cache))
        job = Job(checker=task.checker, command=(str(build.binary),), out_dir=Path(WORK), cwd=Path(WORK))
        cmd, env = run.command_for(job, Path(placeholder), Path(cache))
        wrapper = supervise.reaper(Path(cache))
        argv = [str(wrapper), "@PIDFILE@", str(supervise.output_cap()), *cmd] if wrapper else cmd
        jobs.append({"argv": argv, "cwd": WORK, "placeholder": placeholder,
                     "env": {k: v for k, v in env.items() if os.environ.get(k) != v}})
    with open(os.path.join(WORK, "bound.json"), "w") as fh:
        json.dump(jobs, fh, indent=1)
    with open(os.path.join(WORK, "bound.py"), "w") as fh:
        fh.write(BOUND_LAUNCHER.lstrip())
    return [sys.executable, os.path.join(WORK, "bound.py"), os.path.join(WORK, "bound.json")]


def big_cache(warm: str) -> str:
    """The warm cache, copied, with BIG_ENTRIES filler results and builds and BIG_NOTES library
    notes (made once, kept in bench/.work): the shape of a cache used for weeks."""
    import hashlib

    big = os.path.join(WORK, "bigcache")
    done = os.path.join(big, ".bench-filled")
    if os.path.exists(done):
        return big
    shutil.rmtree(big, ignore_errors=True)
    shutil.copytree(warm, big, ignore=shutil.ignore_patterns(".lock", "sizes.json"))
    old = 1_600_000_000  # 2020: least recently used, first to go were the cache over its cap
    for i in range(BIG_ENTRIES):
        for kind, files in (("results", {"result.json": 1500, "vg.1.xml": 3000}),
                            ("builds", {"build.json": 400, "prog": 20000})):
            key = hashlib.sha256(f"{kind}{i}".encode()).hexdigest()
            entry = os.path.join(big, kind, key[:2], key)
            os.makedirs(entry)
            for name, size in files.items():
                with open(os.path.join(entry, name), "wb") as fh:
                    fh.write(b"x" * size)
            os.utime(entry, (old, old))
    os.makedirs(os.path.join(big, "libs"), exist_ok=True)
    for i in range(BIG_NOTES):
        with open(os.path.join(big, "libs", f"{hashlib.sha256(str(i).encode()).hexdigest()}-0-0-0.json"), "w") as fh:
            fh.write('["/lib/x86_64-linux-gnu/libc.so.6"]')
    open(done, "w").close()
    return big


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=ROUNDS, help="timed pairs (the median ratio is quoted)")
    args, unknown = ap.parse_known_args(argv)
    if unknown:
        log(f"ignoring arguments meant for other benchmarks: {' '.join(unknown)}")
    for tool in ("gcc", "valgrind"):
        if shutil.which(tool) is None:
            print(f"check_bench: {tool} not found", file=sys.stderr)
            return 2
    os.makedirs(WORK, exist_ok=True)
    source = Path(WORK) / "d.c"
    source.write_text(PROGRAM.lstrip())
    cache = os.path.join(WORK, "cache")
    env = benchlib.env({"LEAKHARNESS_CACHE": cache})
    ours = benchlib.ours() + ["check", "--fresh", "--quiet", "--build", "d.c", "--tool", "memcheck",
                              "--tool", "asan", "--out", os.path.join(WORK, "out")]
    warm = benchlib.run_timed(benchlib.ours() + ["check", "--quiet", "--build", "d.c", "--tool", "memcheck",
                                                 "--tool", "asan", "--out", os.path.join(WORK, "out")],
                              cwd=WORK, env_=env)
    if warm["returncode"] != 1:  # 1: the leak was found, as it must be
        print(f"check_bench: the warm-up check exited {warm['returncode']}, not 1 (a leak found)", file=sys.stderr)
        return 1
    floor = floor_script(cache, source)
    log(f"{args.rounds} pairs (load {benchlib.loadavg()})")
    result = benchlib.side_by_side({"argv": ours, "cwd": WORK, "env": env}, {"argv": [floor], "cwd": WORK},
                                   args.rounds, log)
    bad = [r for r in result["a"] if r["returncode"] != 1]
    met = result["ratio"] <= TARGET
    # The bound: what no check started per process can beat while its jobs keep lh-reaper (nothing
    # of a job outlives it) and the read recorder (what makes a stored result trustworthy).
    log(f"bound: {args.rounds} pairs, the jobs launched as leakharness does and nothing else, against the floor")
    bound = benchlib.side_by_side({"argv": bound_launcher(cache, source), "cwd": WORK, "env": env},
                                  {"argv": [floor], "cwd": WORK}, args.rounds, log)
    big = big_cache(cache)
    log(f"a cache in daily use ({2 * BIG_ENTRIES} more entries): {args.rounds} pairs, A on it against A")
    big_env = benchlib.env({"LEAKHARNESS_CACHE": big})
    daily = benchlib.side_by_side({"argv": ours, "cwd": WORK, "env": big_env}, {"argv": ours, "cwd": WORK, "env": env},
                                  args.rounds, log)
    bad += [r for r in daily["a"] + daily["b"] if r["returncode"] != 1]
    print(f"# check benchmark, {datetime.date.today().isoformat()}")
    print(f"machine: {benchlib.cpu_model()}, {os.cpu_count()} cores; load average at the end {benchlib.loadavg()}")
    print()
    print("| what | median s | ratio to the floor | target | met? |")
    print("|---|---:|---:|---|---|")
    print(f"| `check --fresh --build d.c --tool memcheck --tool asan` (builds cached, HTML report) | "
          f"{result['a_median_s']:.3f} | {result['ratio']:.2f}x | <= {TARGET:g}x | {'met' if met else '**MISSED**'} |")
    print(f"| floor: bare valgrind + ASan in parallel (the checkers' own commands) | "
          f"{result['b_median_s']:.3f} | 1x | | |")
    print(f"| bound: the same two jobs launched as leakharness launches them (Python, lh-reaper, the read "
          f"recorder), nothing else; against its own floor ({bound['b_median_s']:.3f} s) | "
          f"{bound['a_median_s']:.3f} | {bound['ratio']:.2f}x | | |")
    print(f"| the same check on a cache in daily use ({2 * BIG_ENTRIES:,} more entries, {BIG_NOTES:,} more notes); "
          f"against the check on its own warm cache ({daily['b_median_s']:.3f} s) | {daily['a_median_s']:.3f} | "
          f"{daily['ratio']:.2f}x | about 1x | {'met' if daily['ratio'] <= 1.05 else '**MISSED**'} |")
    print(f"CPU of the whole process tree, A/B median: {result['cpu_ratio']:.2f}x")
    if not met and bound["ratio"] > TARGET:
        print(f"The target is below the bound: a check started per process, its jobs under lh-reaper and "
              f"the recorder, cannot reach {TARGET:g}x; the check spends {1000 * (result['a_median_s'] - bound['a_median_s']):.0f} "
              f"ms beyond the bound.")
    with open(os.path.join(WORK, "check_bench.results.json"), "w") as fh:
        json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"), **result, "bound": bound,
                   "daily_cache": daily}, fh,
                  indent=1)
    if bad:
        print(f"check_bench: {len(bad)} check run(s) did not exit 1", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
