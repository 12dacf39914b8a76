#!/usr/bin/env python3
"""Parse benchmark (issue 2): `leakharness parse` against its peers on big valgrind XML files.

Run from the repository root:  .venv/bin/python bench/parse_bench.py   (or `make bench`)

1. Builds a REAL valgrind XML file: a small C program (written below) makes distinct invalid
   reads, use-after-frees, invalid frees and definite + indirect leaks through noinline helpers;
   it is compiled with `gcc -g -O0` and run under valgrind memcheck.  Its <error> elements are
   then copied, as text, into files of exactly 2,000 and 50,000 errors, each copy with its own
   <unique> id and, for errors valgrind counts, its own <errorcounts> pair.
2. Installs the peers (ValgrindCI, valgrind-codequality) from PyPI into a throwaway venv.
3. Times each tool as one child process per measurement: wall seconds, and peak RSS from
   os.wait4's rusage of that child.  Ours: best of 3.  Peers: 1 run, 300 s timeout.
4. Prints a markdown table with ratios against ours, and checks that ours found exactly as
   many findings as the file has errors.

Everything it makes lives in bench/.work/ (gitignored) and is reused when present: delete that
folder to start over.  Standard library only.
"""

from __future__ import annotations

import os as _os, sys as _sys
_sys.path.insert(0, _os.path.dirname(_os.path.abspath(__file__)))
import benchlib  # noqa: E402

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, ".work")
PEERS_VENV = os.path.join(WORK, "peers-venv")
OURS = benchlib.ours()  # this checkout's leakharness, run with benchlib.env()
PYTHON = sys.executable

GEN_VERSION = 2  # bump when the program or the multiplication changes: files are regenerated
SIZES = (2_000, 5_000, 20_000, 50_000)
PEER_SIZES = (2_000, 50_000)  # the peers are timed on these (valgrind-codequality takes ten seconds)
OUR_RUNS = 3
PEER_TIMEOUT = 300.0
OUR_TIMEOUT = 300.0

# The versions the catalog measured (shared/catalog.md, "Peers, measured on this kind of
# machine"); both were the newest on PyPI when this was written.
PEERS = {
    "ValgrindCI": {"pin": "ValgrindCI==0.3.0", "script": "valgrind-ci"},
    "valgrind-codequality": {"pin": "valgrind-codequality==1.3.2",
                             "script": "valgrind-codequality"},
}

# Targets from issue 2, on the 50,000-error file; issue 20's against bare lxml, the floor.
TARGET_OUR_SECONDS = 3.0
TARGET_OUR_MB = 80.0
TARGET_FLOOR_RATIO = 1.5  # ours / bare lxml iterparse, the median of pairs timed in turn
TARGET_FLOOR_MB = 50.0
TARGET_CQ_SPEEDUP = 10.0
TARGET_CQ_LEANER = 4.0

C_SOURCE = r"""
/* Written by bench/parse_bench.py: a program with distinct memory errors for valgrind. */
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline))

struct node { struct node *next; char *name; long payload[4]; };

static volatile long sink;

NOINLINE static struct node *make_node(size_t namelen) {
    struct node *n = malloc(sizeof *n);
    n->next = NULL;
    n->name = malloc(namelen);
    memset(n->name, 'x', namelen);
    n->payload[0] = (long)namelen;
    return n;
}

NOINLINE static void leak_list(int variant) {
    struct node *head = make_node(16 + (size_t)variant);
    head->next = make_node(24 + (size_t)variant);
    sink = head->payload[0];
    head = NULL; /* the head is definitely lost, what it points to indirectly */
}

NOINLINE static void leak_buffer(int variant) {
    char *p = malloc(40 + (size_t)variant);
    memset(p, 0, 40 + (size_t)variant);
    sink = p[variant % 8];
    p = NULL; /* definitely lost, nothing indirect */
}

NOINLINE static long read_past_end(int variant) {
    int *buf = malloc(sizeof(int) * 4);
    for (int i = 0; i < 4; i++) buf[i] = i + variant;
    long v = buf[4]; /* invalid read just after the block */
    free(buf);
    return v;
}

NOINLINE static long use_after_free(int variant) {
    char *p = malloc(32);
    memset(p, variant, 32);
    free(p);
    return p[variant % 32]; /* invalid read inside a freed block */
}

NOINLINE static void double_free(int variant) {
    char *p = malloc(48 + (size_t)variant);
    free(p);
    free(p); /* invalid free */
}

NOINLINE static void process_record(int variant) {
    switch (variant % 12) {
    case 0: sink = read_past_end(variant); break;
    case 1: sink = use_after_free(variant); break;
    case 2: double_free(variant); break;
    case 3: case 4: leak_list(variant); break;
    default: leak_buffer(variant); break;
    }
}

int main(void) {
    for (int round = 0; round < 2; round++) {
        process_record(0); process_record(1); process_record(2); process_record(3);
        process_record(4); process_record(5); process_record(6); process_record(7);
        process_record(8); process_record(9); process_record(10); process_record(11);
        process_record(12); process_record(13); process_record(14); process_record(15);
        process_record(16); process_record(17); process_record(18); process_record(19);
        process_record(20); process_record(21); process_record(22); process_record(23);
    }
    return 0;
}
"""

ERROR_RE = re.compile(rb"<error>.*?</error>\n?", re.S)
UNIQUE_RE = re.compile(rb"<unique>(0x[0-9a-fA-F]+)</unique>")
ERRORCOUNTS_RE = re.compile(rb"<errorcounts>.*?</errorcounts>\n?", re.S)
PAIR_RE = re.compile(rb"<pair>\s*<count>(\d+)</count>\s*<unique>(0x[0-9a-fA-F]+)</unique>\s*</pair>",
                     re.S)


def log(msg: str) -> None:
    print(f"[parse_bench] {msg}", file=sys.stderr, flush=True)


def run_checked(argv, *, timeout, cwd=None, what=""):
    """Run a set-up step; raise with its output when it fails."""
    proc = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout, start_new_session=True)
    if proc.returncode != 0:
        tail = proc.stdout.decode("utf-8", "replace")[-2000:]
        raise RuntimeError(f"{what or argv[0]} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout.decode("utf-8", "replace")


# -- 1. the valgrind XML files --------------------------------------------------------------

def real_xml() -> str:
    """Compile the C program and run it under valgrind; return the XML file's path."""
    src = os.path.join(WORK, "leakprog.c")
    exe = os.path.join(WORK, "leakprog")
    xml = os.path.join(WORK, f"real.v{GEN_VERSION}.xml")
    if os.path.exists(xml):
        return xml
    for tool in ("gcc", "valgrind"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found: run ./scripts/install-system-packages.sh")
    with open(src, "w") as fh:
        fh.write(C_SOURCE.lstrip())
    run_checked(["gcc", "-g", "-O0", "-o", exe, src], timeout=120, what="gcc")
    tmp = xml + ".tmp"
    # memcheck exits with the program's status (0): errors do not change it.
    run_checked(["valgrind", "--xml=yes", f"--xml-file={tmp}", "--leak-check=full",
                 "--show-leak-kinds=all", exe], timeout=300, cwd=WORK, what="valgrind")
    os.replace(tmp, xml)
    return xml


def multiplied_xml(real: str, n_errors: int) -> str:
    """Copy the real file's <error> elements into a file of exactly n_errors errors."""
    out = os.path.join(WORK, f"errors-{n_errors}.v{GEN_VERSION}.xml")
    if os.path.exists(out):
        return out
    with open(real, "rb") as fh:
        data = fh.read()
    matches = list(ERROR_RE.finditer(data))
    if not matches:
        raise RuntimeError(f"{real}: valgrind reported no <error>")
    counts_match = ERRORCOUNTS_RE.search(data)
    if counts_match is None:
        raise RuntimeError(f"{real}: no <errorcounts>")
    seen = {u: int(c) for c, u in PAIR_RE.findall(counts_match.group(0))}

    # How many copies of each real error: spread evenly, the first ones get the remainder.
    total = len(matches)
    copies = [n_errors // total + (1 if i < n_errors % total else 0) for i in range(total)]

    # Errors come in runs (the runtime errors before <status>FINISHED, the leak records
    # after it): each run is repeated in rounds, keeping valgrind's order inside a round.
    runs: list[list[int]] = []
    for i, m in enumerate(matches):
        if runs and data[matches[i - 1].end():m.start()].strip() == b"":
            runs[-1].append(i)
        else:
            runs.append([i])

    next_unique = 0
    pairs: list[bytes] = []
    pieces: list[bytes] = []
    pos = 0
    for run in runs:
        pieces.append(data[pos:matches[run[0]].start()])
        for rnd in range(max(copies[i] for i in run)):
            for i in run:
                if rnd >= copies[i]:
                    continue
                block = matches[i].group(0)
                old = UNIQUE_RE.search(block).group(1)
                new = b"0x%x" % next_unique
                next_unique += 1
                pieces.append(UNIQUE_RE.sub(b"<unique>" + new + b"</unique>", block, count=1))
                if old in seen:
                    pairs.append(b"  <pair>\n    <count>%d</count>\n    <unique>%s</unique>\n"
                                 b"  </pair>\n" % (seen[old], new))
        pos = matches[run[-1]].end()
    rest = data[pos:]
    new_counts = b"<errorcounts>\n" + b"".join(pairs) + b"</errorcounts>\n"
    rest = ERRORCOUNTS_RE.sub(lambda _m: new_counts, rest, count=1)
    pieces.append(rest)

    body = b"".join(pieces)
    got = body.count(b"<error>")
    if got != n_errors:
        raise RuntimeError(f"internal error: built {got} errors, wanted {n_errors}")
    tmp = out + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(body)
    os.replace(tmp, out)
    return out


# -- 2. the peers -----------------------------------------------------------------------------

def install_peers() -> dict[str, dict]:
    """Return {peer: {"script": path, "version": str} or {"unavailable": reason}}."""
    result: dict[str, dict] = {}
    bin_dir = os.path.join(PEERS_VENV, "bin")
    if not os.path.exists(os.path.join(bin_dir, "python")):
        log(f"creating {PEERS_VENV}")
        try:
            run_checked([sys.executable, "-m", "venv", PEERS_VENV], timeout=300, what="venv")
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            reason = f"venv failed: {str(exc).splitlines()[0]}"
            return {name: {"unavailable": reason} for name in PEERS}
    pip = [os.path.join(bin_dir, "python"), "-m", "pip"]
    for name, peer in PEERS.items():
        script = os.path.join(bin_dir, peer["script"])
        if not os.path.exists(script):
            log(f"pip install {peer['pin']}")
            try:
                run_checked(pip + ["install", "-q", "--disable-pip-version-check", peer["pin"]],
                            timeout=600, what=f"pip install {peer['pin']}")
            except subprocess.TimeoutExpired:
                result[name] = {"unavailable": "pip install timed out"}
                continue
            except RuntimeError as exc:
                last = [ln for ln in str(exc).splitlines() if ln.strip()][-1]
                result[name] = {"unavailable": f"pip install failed: {last.strip()}"}
                continue
        if not os.path.exists(script):
            result[name] = {"unavailable": f"installed, but no {peer['script']} script"}
            continue
        try:
            show = run_checked(pip + ["show", name], timeout=120, what="pip show")
            version = re.search(r"^Version: (\S+)", show, re.M).group(1)
        except Exception:  # noqa: BLE001 - the version is only for the table
            version = "?"
        result[name] = {"script": script, "version": version}
    return result


BARE_LXML = r"""
import sys
from lxml import etree
n = 0
for _, elem in etree.iterparse(sys.argv[1], events=("end",), tag="error"):
    n += 1
    elem.clear(keep_tail=True)
    while elem.getprevious() is not None:
        del elem.getparent()[0]
print(n)
"""


# -- 3. measuring -----------------------------------------------------------------------------

class Run:
    def __init__(self, seconds, peak_mb, returncode, timed_out, stdout_path, stderr_path):
        self.seconds = seconds
        self.peak_mb = peak_mb
        self.returncode = returncode
        self.timed_out = timed_out
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path

    def stdout(self) -> str:
        with open(self.stdout_path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")

    def stderr(self) -> str:
        with open(self.stderr_path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")


# Linux carries a process's high-water RSS into the children it forks (exec keeps the larger of
# the old and new peaks), so a child started by this script, which has held whole XML files,
# would show this script's peak.  Children are therefore started by a tiny launcher (a fresh
# `python -I -S`, about 9 MB): its own peak is the floor of every figure, well under the tools'.
LAUNCHER = r"""
import json, os, signal, sys, time
timeout, out, err, cwd = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
argv = sys.argv[5:]
os.chdir(cwd)
actions = [
    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
    (os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
    (os.POSIX_SPAWN_OPEN, 2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
]
timed_out = []
start = time.perf_counter()
pid = os.posix_spawn(argv[0], argv, json.loads(os.environ["BENCH_ENV"]), file_actions=actions, setsid=True)
def on_alarm(signum, frame):
    timed_out.append(True)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, timeout)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
signal.setitimer(signal.ITIMER_REAL, 0)
print(json.dumps({"seconds": seconds, "maxrss_kib": usage.ru_maxrss,
                  "returncode": os.waitstatus_to_exitcode(status),
                  "timed_out": bool(timed_out)}))
"""


def measure(argv, *, timeout, stdout_path=os.devnull, label="run") -> Run:
    """Run argv as one child (through the launcher): wall seconds, and the child's own peak RSS
    from os.wait4's rusage."""
    stderr_path = os.path.join(WORK, f"{label}.stderr")
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", LAUNCHER, str(timeout), stdout_path, stderr_path,
         ROOT, *argv],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout + 60,
        start_new_session=True, env={**os.environ, "BENCH_ENV": json.dumps(benchlib.env())})
    if proc.returncode != 0:
        raise RuntimeError(f"launcher failed for {argv}: {proc.stderr[-2000:]}")
    res = json.loads(proc.stdout)
    # ru_maxrss is in KiB on Linux.
    return Run(res["seconds"], res["maxrss_kib"] / 1024.0, res["returncode"], res["timed_out"],
               stdout_path, stderr_path)


def bench_file(path: str, n_errors: int, peers: dict[str, dict]) -> list[dict]:
    rows: list[dict] = []
    tag = f"{n_errors}"

    # Ours and the floor (bare lxml iterparse over the same <error>s, the cost of walking the file
    # with lxml and building nothing) in turn, OUR_RUNS pairs, after one untimed run of each:
    # the ratio quoted is the median of the pairs' (a machine whose speed drifts moves both).
    ours_argv = [*OURS, "parse", path, "--format", "json"]
    lxml_argv = [PYTHON, "-c", BARE_LXML, path]
    measure(ours_argv, timeout=OUR_TIMEOUT, label=f"ours-{tag}-warm")
    measure(lxml_argv, timeout=OUR_TIMEOUT, stdout_path=os.path.join(WORK, f"lxml-{tag}.out"), label=f"lxml-{tag}-warm")
    ours, floors = [], []
    for i in range(OUR_RUNS):
        ours.append(measure(ours_argv, timeout=OUR_TIMEOUT, label=f"ours-{tag}-{i}"))
        floors.append(measure(lxml_argv, timeout=OUR_TIMEOUT, stdout_path=os.path.join(WORK, f"lxml-{tag}.out"),
                              label=f"lxml-{tag}-{i}"))
    for r in ours:
        if r.timed_out or r.returncode != 0:
            raise RuntimeError(f"leakharness parse failed on {path} (exit {r.returncode}, "
                               f"timed out: {r.timed_out}):\n{r.stderr()[-2000:]}")
    best = min(ours, key=lambda r: r.seconds)
    ratios = sorted(o.seconds / f.seconds for o, f in zip(ours, floors))
    floor_ratio = ratios[len(ratios) // 2]
    # One more, untimed for the table, to count what it found.
    check = measure(ours_argv, timeout=OUR_TIMEOUT,
                    stdout_path=os.path.join(WORK, f"ours-{tag}.json"), label=f"ours-{tag}-check")
    with open(check.stdout_path, "rb") as fh:
        found = len(json.load(fh))
    rows.append({
        "tool": "leakharness parse --format json", "seconds": best.seconds,
        "peak_mb": max(r.peak_mb for r in ours), "all_seconds": [r.seconds for r in ours],
        "all_peak_mb": [r.peak_mb for r in ours], "floor_ratio": floor_ratio, "floor_ratios": ratios,
        "note": f"{found:,} findings (expected {n_errors:,}): "
                + ("OK" if found == n_errors else "MISMATCH")
                + f"; {floor_ratio:.2f}x bare lxml (median of {OUR_RUNS} pairs)",
        "findings": found, "findings_ok": found == n_errors,
    })
    bestf = min(floors, key=lambda r: r.seconds)
    rows.append({"tool": "(floor) bare lxml iterparse, no findings", "seconds": bestf.seconds,
                 "peak_mb": max(r.peak_mb for r in floors), "reference": True,
                 "note": f"{int(bestf.stdout().strip() or 0):,} <error> elements"})

    for name, peer in (peers.items() if n_errors in PEER_SIZES else ()):
        if "unavailable" in peer:
            rows.append({"tool": name, "unavailable": peer["unavailable"]})
            continue
        if name == "ValgrindCI":
            argv = [peer["script"], path, "--number-of-errors"]
            shown = "valgrind-ci FILE --number-of-errors"
        else:
            # Its CLI writes a GitLab Code Quality JSON file; run from the repository root, so
            # its default --base-dirs (the working directory) contains the program's source
            # dir, as in a project's CI, and it reads the source line of each error.
            out_json = os.path.join(WORK, f"codequality-{tag}.json")
            if os.path.exists(out_json):
                os.unlink(out_json)
            argv = [peer["script"], "--input-file", path, "--output-file", out_json]
            shown = "valgrind-codequality --input-file FILE --output-file OUT.json"
        log(f"{name} on {n_errors:,} errors (timeout {PEER_TIMEOUT:.0f} s)")
        r = measure(argv, timeout=PEER_TIMEOUT, stdout_path=os.path.join(WORK, f"{name}-{tag}.out"),
                    label=f"{name}-{tag}")
        row = {"tool": f"{name} {peer['version']}: `{shown}`"}
        if r.timed_out:
            row["did_not_finish"] = True
            row["note"] = f"did not finish in {PEER_TIMEOUT:.0f} s (killed)"
        elif r.returncode != 0:
            last = (r.stderr().strip().splitlines() or ["(no output)"])[-1]
            row.update(seconds=r.seconds, peak_mb=r.peak_mb,
                       note=f"exit {r.returncode}: {last[:120]}")
        else:
            row.update(seconds=r.seconds, peak_mb=r.peak_mb)
            if name == "ValgrindCI":
                row["note"] = r.stdout().strip()
            else:
                m = re.search(r"Converted (\d+) valgrind issues", r.stderr())
                row["note"] = (f"{m.group(1)} issues written (it keeps one per kind, file "
                               "and source line)" if m else r.stderr().strip()[-120:])
        rows.append(row)
    return rows


# -- 4. the table -----------------------------------------------------------------------------

def fmt_table(n_errors: int, size: int, rows: list[dict]) -> str:
    ours = rows[0]
    lines = [f"{n_errors:,} errors ({size / 1e6:.1f} MB):", "",
             "| tool | seconds | peak MB | seconds vs ours | peak MB vs ours | note |",
             "|---|---:|---:|---:|---:|---|"]
    for row in rows:
        if "unavailable" in row:
            lines.append(f"| {row['tool']} | unavailable ({row['unavailable']}) | | | | |")
            continue
        if row.get("did_not_finish"):
            lines.append(f"| {row['tool']} | did not finish | | > {PEER_TIMEOUT / ours['seconds']:.0f}x"
                         f" | | {row['note']} |")
            continue
        is_ours = row is ours
        t_ratio = "1x" if is_ours else f"{row['seconds'] / ours['seconds']:.1f}x"
        m_ratio = "1x" if is_ours else f"{row['peak_mb'] / ours['peak_mb']:.1f}x"
        secs = f"{row['seconds']:.2f}" + (f" (best of {OUR_RUNS})" if is_ours or row.get("reference") else "")
        lines.append(f"| {row['tool']} | {secs} | {row['peak_mb']:.0f} | {t_ratio} | {m_ratio} "
                     f"| {row.get('note', '')} |")
    return "\n".join(lines)


def check_targets(rows: list[dict]) -> list[tuple[str, bool | None, str]]:
    ours = rows[0]
    checks = [
        (f"within {TARGET_FLOOR_RATIO:g}x of bare lxml iterparse (issue 20)", ours["floor_ratio"] <= TARGET_FLOOR_RATIO,
         f"{ours['floor_ratio']:.2f}x"),
        (f"under {TARGET_FLOOR_MB:g} MB peak (issue 20)", ours["peak_mb"] < TARGET_FLOOR_MB, f"{ours['peak_mb']:.0f} MB"),
        (f"ours under {TARGET_OUR_SECONDS:g} s", ours["seconds"] < TARGET_OUR_SECONDS,
         f"{ours['seconds']:.2f} s"),
        (f"ours under {TARGET_OUR_MB:g} MB peak", ours["peak_mb"] < TARGET_OUR_MB,
         f"{ours['peak_mb']:.0f} MB"),
        ("ours found every error", ours["findings_ok"], f"{ours['findings']:,}"),
    ]
    for row in rows[1:]:
        if row["tool"].startswith("valgrind-codequality") and "seconds" in row:
            ts, ms = row["seconds"] / ours["seconds"], row["peak_mb"] / ours["peak_mb"]
            checks.append((f">= {TARGET_CQ_SPEEDUP:g}x faster than valgrind-codequality",
                           ts >= TARGET_CQ_SPEEDUP, f"{ts:.1f}x"))
            checks.append((f">= {TARGET_CQ_LEANER:g}x leaner than valgrind-codequality",
                           ms >= TARGET_CQ_LEANER, f"{ms:.1f}x"))
        elif row["tool"].startswith("valgrind-codequality") and row.get("did_not_finish"):
            checks.append(("faster than valgrind-codequality", True, "it did not finish"))
        if row["tool"].startswith("ValgrindCI") and "seconds" in row:
            ts = row["seconds"] / ours["seconds"]
            checks.append(("faster than ValgrindCI --number-of-errors", ts > 1.0, f"{ts:.1f}x"))
        elif row["tool"].startswith("ValgrindCI") and row.get("did_not_finish"):
            checks.append(("faster than ValgrindCI --number-of-errors", True, "it did not finish"))
    return checks


def machine() -> str:
    cpu = benchlib.cpu_model()
    vg = benchlib.tool_version(["valgrind", "--version"], "valgrind ?")
    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {vg}, "
            f"{platform.system()} {platform.release()}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES),
                    help="numbers of errors in the files to time (default: %(default)s)")
    ap.add_argument("--no-peers", action="store_true", help="time leakharness alone")
    args = ap.parse_args(argv)

    os.makedirs(WORK, exist_ok=True)
    real = real_xml()
    n_real = len(ERROR_RE.findall(open(real, "rb").read()))
    files = [(n, multiplied_xml(real, n)) for n in args.sizes]
    peers = {} if args.no_peers else install_peers()

    print(f"# parse benchmark, {datetime.date.today().isoformat()}")
    print(f"machine: {machine()}")
    print(f"source: {n_real} distinct errors from a real valgrind run ({os.path.basename(real)}), "
          "copied with fresh <unique> ids")
    floor = measure(["/bin/true"], timeout=30, label="floor")
    print(f"peak RSS floor (the launcher's, seen by /bin/true): {floor.peak_mb:.1f} MB; "
          "MB here are MiB of ru_maxrss")
    print()
    all_results = {}
    exit_code = 0
    for n, path in files:
        log(f"timing on {path}")
        rows = bench_file(path, n, peers)
        size = os.path.getsize(path)
        all_results[n] = {"file": path, "bytes": size, "rows": rows}
        print(fmt_table(n, size, rows))
        print()
        if not rows[0]["findings_ok"]:
            exit_code = 1
    print("linear in the number of errors? seconds per 1,000 errors (best run), ours and bare lxml: " + "; ".join(
        f"{n:,}: {all_results[n]['rows'][0]['seconds'] / n * 1000:.3f} / "
        f"{all_results[n]['rows'][1]['seconds'] / n * 1000:.3f}" for n, _ in files))
    print()
    big = max(args.sizes)
    if big == 50_000:
        print("targets (issues 2 and 20, 50,000-error file):")
        missed = 0
        for what, ok, value in check_targets(all_results[big]["rows"]):
            print(f"  [{'met' if ok else 'MISSED'}] {what}: {value}")
            missed += not ok
        all_results["targets_missed"] = missed
    with open(os.path.join(WORK, "parse_bench.results.json"), "w") as fh:
        json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"),
                   "machine": machine(), "results": all_results}, fh, indent=2, default=str)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
