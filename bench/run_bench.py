#!/usr/bin/env python3
"""Run benchmark (issue 4): `leakharness run` on the whole catalog against plain `xargs -P`.

Run from the repository root:  .venv/bin/python bench/run_bench.py   (or `make bench`)

1. Warms a private build cache (bench/.work/run_bench/cache, never the user's default cache) with
   one `leakharness run --cache C`: every binary is built, durations.json and results are stored.
2. BASELINE: for every job of the catalog (every pattern, variant and checker, as
   `harness.control.catalog_tasks` yields them, in that order), the exact command line and
   environment leakharness uses (`harness.run.command_for`), with the built binary and the job's
   own out_dir and timeout, in the job's folder (leakharness's cwd), stdin /dev/null, stdout and
   stderr to files, core dumps off, wrapped in `timeout -k 5 <job timeout>` (leakharness: SIGTERM
   to the group at the timeout, SIGKILL 5 s later).  One small sh script per job; their paths go
   to `xargs -P <nproc> -n 1 sh`.  The whole xargs is timed.
3. OURS WARM: `leakharness run --fresh --cache C --out O2 --quiet -j <nproc>`: target <= 1.05x.
4. OURS COLD: `leakharness run --cache EMPTY --out O3 --quiet` on a new empty cache (compiles
   overlap runs): target <= 1.3x ours warm (the floor of a cold run is a warm one).
5. RE-RUN: `leakharness run --cache C --out O4 --quiet`, nothing changed: target under 1 s, and
   results.json must say every job was cached (nothing compiled, nothing run; the known hangs and
   crashes by design remembered as known incomplete).

Each timed thing runs twice (rounds alternate baseline / warm / cold), the best is kept.  Every
timed run (baseline and ours) runs under `setarch ARCH -R` (no ASLR; --aslr to keep it): with ASLR,
get0_freed::leaky[ubsan] hangs to its 20 s timeout in most runs and segfaults in the others, a coin
flip that moves either side by ~10 s.  The script prints a table and, from each run's results.json
and job files, where the time went (plus one diagnostic warm run, not in the table).
Everything lives in bench/.work/run_bench/ (reused for nothing but the warm cache).  Standard
library only, plus the `harness` package under test.  Exit status: non-zero only when something
is wrong (a run crashed, a job is missing); a missed target is printed.
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
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, ".work", "run_bench")
OURS = benchlib.ours()  # this checkout's leakharness (with benchlib.env())
sys.path.insert(0, ROOT)

ROUNDS = 2
RERUNS = 2
TARGET_WARM = 1.05  # ours warm / xargs
TARGET_COLD = 1.3  # ours cold / ours warm (issue 20: the floor of a cold run is the warm one)
TARGET_RERUN_S = 1.0  # nothing changed: nothing to run
TERM_GRACE_S = 5  # harness.run.TERM_GRACE_S


def log(msg: str) -> None:
    print(f"[run_bench] {msg}", file=sys.stderr, flush=True)


def nproc() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def rmtree(path: str) -> None:
    if os.path.lexists(path):
        shutil.rmtree(path)


PREFIX: list[str] = []  # set in main(): `setarch ARCH -R` unless --aslr


def timed(argv, label: str, cwd: str = ROOT, stdin_path: str = os.devnull) -> dict:
    """Run PREFIX + argv to the end: wall seconds, exit code, the CPU seconds of the whole process
    tree (os.wait4's rusage), and its output in WORK/label.out."""
    out_path = os.path.join(WORK, f"{label}.out")
    with open(stdin_path, "rb") as fin, open(out_path, "wb") as fout:
        epoch0 = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen(PREFIX + list(argv), cwd=cwd, stdin=fin, stdout=fout, env=benchlib.env(),
                                stderr=subprocess.STDOUT, start_new_session=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        epoch1 = time.time()
        proc.returncode = os.waitstatus_to_exitcode(status)
    with open(out_path, "rb") as fh:
        tail = fh.read()[-3000:].decode("utf-8", "replace")
    return {"label": label, "seconds": seconds, "returncode": proc.returncode, "tail": tail,
            "cpu_s": usage.ru_utime + usage.ru_stime, "epoch0": epoch0, "epoch1": epoch1}


# -- the baseline -----------------------------------------------------------------------------

def baseline_jobs(cache: str, out: str):
    """(task, argv, env) of every catalog job, as leakharness would run it."""
    from harness import checkers
    from harness.catalog import load_catalog
    from harness.run import Job, command_for
    from harness.tasks import catalog_tasks

    tasks = catalog_tasks(load_catalog())
    jobs = []
    for t in tasks:
        b = checkers.get(t.checker).build(t.spec, Path(cache))
        if b.status != "ok":
            raise RuntimeError(f"{t.name}: build failed in the warm cache:\n{b.message[-1500:]}")
        if not b.cached:
            log(f"note: {t.name} was not in the warm cache (built now)")
        job_dir = Path(out) / "logs" / t.pattern / (t.variant or "check") / t.checker
        job = Job(checker=t.checker, command=(str(b.binary),), out_dir=job_dir, timeout=t.timeout,
                  pattern=t.pattern, variant=t.variant)
        job_dir.mkdir(parents=True, exist_ok=True)
        argv, env = command_for(job, job_dir)  # the baseline writes its logs straight into the job folder
        jobs.append((t, job, argv, env))
    return jobs


def write_scripts(jobs, script_dir: str) -> str:
    """One sh script per job, and the list of their paths (in catalog order) for xargs."""
    rmtree(script_dir)
    os.makedirs(script_dir)
    here_env = dict(os.environ)
    paths = []
    for i, (task, job, argv, env) in enumerate(jobs):
        base = os.path.join(script_dir, f"{i:03d}")
        exports = [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())
                   if here_env.get(k) != v]
        unsets = [f"unset {k}" for k in sorted(here_env) if k not in env]
        # `: > FILE` and `echo > FILE` are shell builtins: no extra process per job.  The two
        # marker files' mtimes give each job's start and end, for the diagnostics only.
        text = "\n".join([
            f"# {task.name}",
            f"cd {shlex.quote(str(job.out_dir))} || exit 126",
            "ulimit -c 0",
            *exports, *unsets,
            f": > {shlex.quote(base + '.start')}",
            f"timeout -k {TERM_GRACE_S} {job.timeout:g} {shlex.join(argv)} "
            "</dev/null >stdout.txt 2>stderr.txt",
            f"echo $? > {shlex.quote(base + '.rc')}",
            "",
        ])
        with open(base + ".sh", "w") as fh:
            fh.write(text)
        paths.append(base + ".sh")
    list_path = os.path.join(script_dir, "list.txt")
    with open(list_path, "w") as fh:
        fh.write("\n".join(paths) + "\n")
    return list_path


def run_baseline(jobs, out: str, script_dir: str, n: int, label: str) -> dict:
    rmtree(out)
    for _task, job, _argv, _env in jobs:
        job.out_dir.mkdir(parents=True, exist_ok=True)
    list_path = write_scripts(jobs, script_dir)
    r = timed(["xargs", "-d", "\n", "-P", str(n), "-n", "1", "sh"], label, stdin_path=list_path)
    # xargs exits 123 when a command exited 1-125 (timeout's 124, a sanitizer's 1): normal here.
    if r["returncode"] not in (0, 123):
        raise RuntimeError(f"xargs baseline failed (exit {r['returncode']}):\n{r['tail']}")
    per_job = []
    for i, (task, job, _argv, _env) in enumerate(jobs):
        base = os.path.join(script_dir, f"{i:03d}")
        try:
            rc = int(open(base + ".rc").read().strip())
            start, end = os.stat(base + ".start").st_mtime, os.stat(base + ".rc").st_mtime
        except (OSError, ValueError):
            raise RuntimeError(f"baseline: {task.name} did not run ({base}.sh)") from None
        if rc in (125, 126, 127):
            raise RuntimeError(f"baseline: {task.name}: timeout could not run it (exit {rc}); "
                               f"see {job.out_dir}/stderr.txt")
        per_job.append({"name": task.name, "rc": rc, "timed_out": rc in (124, 137),
                        "start": start, "end": end, "duration_s": end - start})
    r["jobs"] = per_job
    return r


# -- our runs ---------------------------------------------------------------------------------

def read_results(out: str, expected_jobs: int, what: str) -> list[dict]:
    try:
        with open(os.path.join(out, "results.json")) as fh:
            jobs = json.load(fh)["jobs"]
    except (OSError, ValueError, KeyError) as exc:
        raise RuntimeError(f"{what}: no readable results.json in {out}: {exc}") from None
    if len(jobs) != expected_jobs:
        raise RuntimeError(f"{what}: results.json has {len(jobs)} jobs, the catalog {expected_jobs}")
    # A job file's mtime is when the job ended (written at once); start = end - duration.
    for j in jobs:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{j['pattern']}.{j['variant'] or 'check'}.{j['tool']}")
        try:
            j["_end"] = os.stat(os.path.join(out, "jobs", name + ".json")).st_mtime
        except OSError:
            j["_end"] = None
    return jobs


def run_ours(argv, out: str, label: str, n_jobs: int) -> dict:
    rmtree(out)
    r = timed(argv, label)
    # leakharness run: 0 all passed, 1 some verdict failed (a catalog problem, not ours to judge).
    if r["returncode"] not in (0, 1):
        raise RuntimeError(f"{' '.join(argv)} failed (exit {r['returncode']}):\n{r['tail']}")
    r["jobs"] = read_results(out, n_jobs, label)
    r["argv"] = argv
    return r


def summary(jobs: list[dict], wall: float, n: int, t0: float | None = None) -> dict:
    durations = [j["duration_s"] for j in jobs]
    total = sum(durations)
    return {
        "jobs": len(jobs), "sum_s": total, "max_s": max(durations) if durations else 0.0,
        "busy": total / (wall * n) if wall else 0.0,  # fraction of the n slots spent in jobs
        "lower_bound_s": max(total / n, max(durations) if durations else 0.0),
        "timeouts": sum(1 for j in jobs if j.get("status") == "timeout" or j.get("timed_out")),
        "cached": sum(1 for j in jobs if j.get("cached")),
        "fail_verdicts": sum(1 for j in jobs if j.get("verdict") == "fail"),
    }


def when_long_jobs_started(jobs: list[dict], first_start: float, top: int = 6) -> list[str]:
    """Where the longest jobs fell in the run: start offset and duration."""
    out = []
    for j in sorted(jobs, key=lambda j: -j["duration_s"])[:top]:
        end = j.get("_end") or j.get("end")
        if end is None:
            continue
        start = end - j["duration_s"]
        name = j.get("name") or f"{j['pattern']}::{j['variant']}[{j['tool']}]"
        out.append(f"{name} {j['duration_s']:.1f} s, started at +{start - first_start:.1f} s")
    return out


# The console script's own code, plus its process's CPU (all threads, children excluded) and its
# children's, written to a file: for the diagnostic run only.
WRAPPER = r"""
import json, resource, sys
from harness.cli import main
try:
    rc = main(sys.argv[2:])
finally:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(sys.argv[1], "w") as fh:
        json.dump({"self_cpu_s": me.ru_utime + me.ru_stime, "children_cpu_s": kids.ru_utime + kids.ru_stime}, fh)
sys.exit(rc)
"""


def python_costs(jobs, out: str) -> dict:
    """In this process, untimed by the table: what leakharness does in Python around each run,
    on the logs the warm run left in `out`: the build-cache lookup, the result key (ldd, hashes),
    parsing the logs, judging, writing the job file."""
    from harness import checkers
    from harness.judge import judge
    from harness.results import JobRecord, write_job
    from harness.resultcache import job_key
    from harness.collect import collect
    from harness.jobs import Job, RunResult
    from harness.supervise import Exit

    costs = {"build_lookup": 0.0, "job_key": 0.0, "parse": 0.0, "judge_write": 0.0}
    scratch = os.path.join(WORK, "python-costs")
    rmtree(scratch)
    for task, job0, _argv, _env in jobs:
        t0 = time.perf_counter()
        checker = checkers.get(task.checker)
        b = checker.build(task.spec, Path(os.path.join(WORK, "cache")))
        t1 = time.perf_counter()
        job = Job(checker=task.checker, command=(str(b.binary),),
                  out_dir=Path(out) / "logs" / task.pattern / task.variant / task.checker,
                  timeout=task.timeout, pattern=task.pattern, variant=task.variant)
        job_key(job, Path(os.path.join(WORK, "cache")))
        t2 = time.perf_counter()
        got = collect(job.out_dir, checker, Exit(0, False, 0.0, None), job.timeout, job.command[0], 1 << 30,
                      Path.cwd())
        result = RunResult(job, got.status, got.findings)
        t3 = time.perf_counter()
        verdict = judge(task.expected, result)
        write_job(Path(scratch), JobRecord(
            pattern=task.pattern, variant=task.variant, tool=task.checker, status=result.status,
            verdict=verdict.verdict, expected=task.expected.to_dict(), duration_s=0.0,
            findings=result.findings))
        t4 = time.perf_counter()
        costs["build_lookup"] += t1 - t0
        costs["job_key"] += t2 - t1
        costs["parse"] += t3 - t2
        costs["judge_write"] += t4 - t3
    return costs


def compile_seconds(cache: str) -> tuple[float, int]:
    """Sum of the compile times build.json records in a cache, and the number of builds."""
    total, count = 0.0, 0
    for info in Path(cache, "builds").glob("*/*/build.json"):
        try:
            total += float(json.loads(info.read_text()).get("duration_s", 0))
            count += 1
        except (OSError, ValueError):
            pass
    return total, count


def machine() -> str:
    cpu = benchlib.cpu_model()
    vg = benchlib.tool_version(["valgrind", "--version"], "valgrind ?")
    gcc = benchlib.tool_version(["gcc", "--version"], "gcc ?")
    return (f"{nproc()} cores ({cpu}), Python {platform.python_version()}, {vg}, {gcc}, "
            f"{platform.system()} {platform.release()}")


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=ROUNDS, help="timed runs of each (best kept)")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-cache runs")
    ap.add_argument("--aslr", action="store_true",
                    help="keep address randomization (default: every timed run under `setarch -R`, "
                         "so that a job whose hang depends on the layout behaves the same in both)")
    ap.add_argument("--no-diagnose", action="store_true", help="skip the diagnostic run")
    args, unknown = ap.parse_known_args(argv)
    if unknown:
        log(f"ignoring arguments meant for other benchmarks: {' '.join(unknown)}")
    for tool in ("xargs", "timeout", "gcc", "valgrind"):
        if shutil.which(tool) is None:
            print(f"run_bench: {tool} not found", file=sys.stderr)
            return 2
    os.makedirs(WORK, exist_ok=True)
    n = nproc()
    if not args.aslr:
        if shutil.which("setarch") is None:
            print("run_bench: setarch not found (util-linux); pass --aslr", file=sys.stderr)
            return 2
        PREFIX[:] = ["setarch", platform.machine(), "-R"]
    cache = os.path.join(WORK, "cache")
    log_lines: list[str] = []

    def note(line: str) -> None:
        log_lines.append(line)
        log(line)

    # 1. Warm the cache: builds, results and durations.json.
    note(f"warming {cache} (load {loadavg()})")
    w = timed([*OURS, "run", "--cache", cache, "--out", os.path.join(WORK, "out-warmup"), "--quiet"],
              "warmup")
    if w["returncode"] not in (0, 1):
        raise RuntimeError(f"warm-up run failed (exit {w['returncode']}):\n{w['tail']}")
    note(f"warm-up run: {w['seconds']:.1f} s (exit {w['returncode']})")

    jobs = baseline_jobs(cache, os.path.join(WORK, "out-xargs"))
    n_jobs = len(jobs)
    note(f"{n_jobs} catalog jobs, {n} cores, xargs -P {n}")

    base_runs, warm_runs, cold_runs, reruns = [], [], [], []
    for i in range(args.rounds):
        note(f"round {i + 1}: xargs baseline (load {loadavg()})")
        r = run_baseline(jobs, os.path.join(WORK, "out-xargs"), os.path.join(WORK, "xargs-scripts"),
                         n, f"xargs-{i}")
        base_runs.append(r)
        note(f"  xargs: {r['seconds']:.2f} s")

        note(f"round {i + 1}: ours warm (load {loadavg()})")
        out = os.path.join(WORK, "out-warm")
        r = run_ours([*OURS, "run", "--fresh", "--cache", cache, "--out", out, "--quiet", "-j", str(n)],
                     out, f"warm-{i}", n_jobs)
        warm_runs.append(r)
        note(f"  ours warm: {r['seconds']:.2f} s")

        if not args.no_cold:
            cold_cache = os.path.join(WORK, "cache-cold")
            rmtree(cold_cache)
            os.makedirs(cold_cache)
            note(f"round {i + 1}: ours cold, empty {cold_cache} (load {loadavg()})")
            out = os.path.join(WORK, "out-cold")
            r = run_ours([*OURS, "run", "--cache", cold_cache, "--out", out, "--quiet"], out,
                         f"cold-{i}", n_jobs)
            r["compile_s"], r["builds"] = compile_seconds(cold_cache)
            cold_runs.append(r)
            note(f"  ours cold: {r['seconds']:.2f} s ({r['builds']} builds, "
                 f"{r['compile_s']:.1f} s of compiling)")

    for i in range(RERUNS):
        out = os.path.join(WORK, "out-rerun")
        r = run_ours([*OURS, "run", "--cache", cache, "--out", out, "--quiet"], out, f"rerun-{i}", n_jobs)
        reruns.append(r)
        note(f"re-run {i + 1}: {r['seconds']:.2f} s, {sum(j['cached'] for j in r['jobs'])}/{n_jobs} cached")

    # Diagnostics, not in the table: one more warm run through a wrapper that reports the
    # leakharness process's own CPU (all its threads, children excluded); then, in this process,
    # what its Python work around each run costs.
    cpu = None
    costs = None
    if not args.no_diagnose:
        note(f"diagnostic warm run (load {loadavg()})")
        out = os.path.join(WORK, "out-diag")
        cpu_file = os.path.join(WORK, "diag-cpu.json")
        r = run_ours([sys.executable, "-c", WRAPPER, cpu_file, "run",
                      "--fresh", "--cache", cache, "--out", out, "--quiet", "-j", str(n)],
                     out, "diag", n_jobs)
        with open(cpu_file) as fh:
            cpu = json.load(fh)
        cpu["wall_s"] = r["seconds"]
        cpu["jobs_sum_s"] = sum(j["duration_s"] for j in r["jobs"])
        costs = python_costs(jobs, os.path.join(WORK, "out-warm"))

    best = lambda runs: min(runs, key=lambda r: r["seconds"])  # noqa: E731
    b = best(base_runs)
    wr = best(warm_runs)
    cr = best(cold_runs) if cold_runs else None
    rr = best(reruns)
    rows = [("xargs -P baseline (same commands, same timeouts)", b, "(baseline)", None)]
    rows.append((f"ours warm: `run --fresh -j {n}`", wr, f"<= {TARGET_WARM:g}x",
                 wr["seconds"] / b["seconds"] <= TARGET_WARM))
    if cr:
        rows.append(("ours cold: `run`, empty cache", cr, f"<= {TARGET_COLD:g}x ours warm",
                     cr["seconds"] / wr["seconds"] <= TARGET_COLD))
    cached_counts = [sum(j["cached"] for j in r["jobs"]) for r in reruns]
    rows.append(("re-run, nothing changed: `run` (the HTML report included)", rr, f"< {TARGET_RERUN_S:g} s, all cached",
                 rr["seconds"] < TARGET_RERUN_S and min(cached_counts) == n_jobs))

    print(f"# run benchmark, {datetime.date.today().isoformat()}")
    print(f"machine: {machine()}")
    print(f"catalog: {n_jobs} jobs; xargs, warm and cold best of {args.rounds}, re-run best of "
          f"{RERUNS}; {'ASLR on' if args.aslr else 'all timed runs under setarch -R (no ASLR)'}; "
          f"load average at the end {loadavg()}")
    print()
    print("| what | seconds | vs xargs | vs ours warm | target | met? |")
    print("|---|---:|---:|---:|---|---|")
    for what, r, tgt, met in rows:
        ratio = r["seconds"] / b["seconds"]
        ok = "" if met is None else ("met" if met else "**MISSED**")
        if r is rr:
            ok += f" ({min(cached_counts)}/{n_jobs} cached)"
        print(f"| {what} | {r['seconds']:.2f} | {ratio:.2f}x | {r['seconds'] / wr['seconds']:.2f}x | {tgt} | {ok} |")
    print()
    print("all runs, seconds (timeouts): " + "; ".join(
        f"{name} " + " / ".join(f"{r['seconds']:.2f} ({summary(r['jobs'], 1, n)['timeouts']})"
                                for r in runs)
        for name, runs in (("xargs", base_runs), ("warm", warm_runs), ("cold", cold_runs),
                           ("re-run", reruns)) if runs))
    print()

    # Where the time went.
    print(f"where the time went (best runs; sum = sum of per-job durations; busy = sum / (wall x {n}"
          f" slots); bound = max(sum / {n}, longest job); cpu = CPU seconds of the whole tree):")
    diag = {}
    for name, r in (("xargs", b), ("warm", wr), ("cold", cr), ("re-run", rr)):
        if r is None:
            continue
        s = summary(r["jobs"], r["seconds"], n)
        diag[name] = s
        print(f"  {name:7s} wall {r['seconds']:7.2f}  sum {s['sum_s']:7.2f}  busy {s['busy']:.2f}  "
              f"bound {s['lower_bound_s']:6.2f}  longest {s['max_s']:5.2f}  cpu {r['cpu_s']:7.1f}  "
              f"timeouts {s['timeouts']}  cached {s['cached']}  fail verdicts {s['fail_verdicts']}")
    if cr:
        bound = max((diag["cold"]["sum_s"] + cr["compile_s"]) / n, diag["cold"]["max_s"])
        print(f"  cold: {cr['builds']} builds took {cr['compile_s']:.1f} s of compiling "
              f"({cr['compile_s'] / max(cr['builds'], 1):.2f} s each); bound with them "
              f"(runs + compiles) / {n} = {bound:.1f} s")
    base_by_name = {j["name"]: j["duration_s"] for j in b["jobs"]}
    ours_by_name = {f"{j['pattern']}::{j['variant']}[{j['tool']}]": j["duration_s"] for j in wr["jobs"]}
    common = [k for k in base_by_name if k in ours_by_name]
    extra = sum(ours_by_name[k] - base_by_name[k] for k in common)
    diag["warm_minus_xargs_job_s"] = extra
    print(f"  per-job duration, ours warm minus xargs, summed over {len(common)} jobs: {extra:+.2f} s "
          f"({extra / max(len(common), 1) * 1000:+.0f} ms a job)")
    outside = wr["seconds"] * n - diag["warm"]["sum_s"]
    diag["warm_outside_slot_s"] = outside
    print(f"  ours warm: slot time outside any job's run (build lookup, result key, parse, judge, "
          f"write, idle): {outside:.1f} slot-s = {outside / n_jobs * 1000:.0f} ms a job")
    print(f"  CPU of the whole tree, ours warm minus xargs: {wr['cpu_s'] - b['cpu_s']:+.1f} s")
    if cpu:
        diag["diag_run"] = cpu
        print(f"  diagnostic warm run: wall {cpu['wall_s']:.2f} s; the leakharness process itself used "
              f"{cpu['self_cpu_s']:.1f} CPU s ({cpu['self_cpu_s'] / n_jobs * 1000:.0f} ms a job), "
              f"its children {cpu['children_cpu_s']:.1f} s")
    if costs:
        diag["python_costs"] = costs
        total = sum(costs.values())
        print(f"  Python work around the runs, redone here on the warm run's logs: {total:.1f} s "
              f"({total / n_jobs * 1000:.0f} ms a job): " + ", ".join(
                  f"{k} {v:.2f} s" for k, v in costs.items()))
    for name, r in (("xargs", b), ("warm", wr), ("cold", cr)):
        if r is None:
            continue
        ends = [j.get("_end") or j.get("end") for j in r["jobs"]]
        first = min((e - j["duration_s"]) for e, j in zip(ends, r["jobs"]) if e is not None)
        last = max(e for e in ends if e is not None)
        print(f"  {name}: first job started {first - r['epoch0']:.2f} s after the launch, the last "
              f"ended {r['epoch1'] - last:.2f} s before the exit; longest jobs: "
              + "; ".join(when_long_jobs_started(r["jobs"], first, 4)))
    unexpected = [j for j in rr["jobs"] if not j["cached"]]
    if unexpected:
        print(f"  re-run: {len(unexpected)} job(s) not cached (run again): " + "; ".join(
            f"{j['pattern']}::{j['variant']}[{j['tool']}] {j['status']} {j['duration_s']:.1f} s"
            for j in unexpected[:10]))

    for runs in (base_runs, warm_runs, cold_runs, reruns):
        for r in runs:
            r.pop("tail", None)
    with open(os.path.join(WORK, "run_bench.results.json"), "w") as fh:
        json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
                   "nproc": n, "jobs": n_jobs, "aslr": args.aslr, "log": log_lines,
                   "runs": {"xargs": base_runs, "warm": warm_runs, "cold": cold_runs, "rerun": reruns},
                   "diagnostics": diag}, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:
        print(f"run_bench: {exc}", file=sys.stderr)
        sys.exit(1)
