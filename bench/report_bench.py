#!/usr/bin/env python3
"""Report rendering against ValgrindCI's HTML, in one command (issue 6's numbers).

Inputs, all from real valgrind runs:
- sites-2000.xml: a generated program with 2,000 allocation sites on 2,000 lines, each leaked:
  2,000 distinct leak records, as a big program has.  ValgrindCI's HTML costs grow with
  distinct error lines times errors, so this is the file to compare on;
- errors-2000 / errors-50000: parse_bench.py's real run, its errors multiplied.
Times `leakharness report FILE --out DIR` (the full HTML, results.json and SARIF; best of 3)
and ValgrindCI's HTML (`valgrind-ci FILE --source-dir ... --output-dir ...`, one run) on both
2,000-error files (target: ours at least 20 times faster on the distinct-sites one); ours on
the 50,000-error file and again from the results directory that made (a 50,000-finding run):
each under 10 s, with an index.html under 5 MB.
Run from the repository root: .venv/bin/python bench/report_bench.py [--no-peers]
"""

from __future__ import annotations

import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import parse_bench as pb  # noqa: E402  (the inputs and the measuring launcher)

TARGET_SPEEDUP = 20.0
TARGET_50K_SECONDS = 10.0
TARGET_INDEX_MB = 5.0


def ours(src: str, out: str, label: str, runs: int = 3):
    best = None
    for i in range(runs):
        shutil.rmtree(out, ignore_errors=True)
        r = pb.measure([pb.OURS, "report", src, "--out", out], timeout=pb.OUR_TIMEOUT, label=f"{label}-{i}")
        if r.returncode != 0:
            raise RuntimeError(f"leakharness report failed: {r.stderr[-1500:]}")
        best = r if best is None or r.seconds < best.seconds else best
    return best


def sites_xml(n: int) -> str:
    """A real valgrind XML of a program that leaks at n distinct source lines."""
    xml = os.path.join(pb.WORK, f"sites-{n}.xml")
    if os.path.exists(xml):
        return xml
    src, exe = os.path.join(pb.WORK, f"sites{n}.c"), os.path.join(pb.WORK, f"sites{n}")
    lines = ["#include <stdlib.h>", "static void *volatile sink;",
             "__attribute__((noinline)) static void lose(void *p) { sink = p; sink = 0; }",
             "int main(void)", "{"]
    lines += [f"    lose(malloc({16 + i % 13}));" for i in range(n)]
    lines += ["    return 0;", "}"]
    with open(src, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    pb.run_checked(["gcc", "-g", "-O0", "-o", exe, src], timeout=300, what="gcc")
    pb.run_checked(["valgrind", "--xml=yes", f"--xml-file={xml}.tmp", "--leak-check=full", exe],
                   timeout=600, cwd=pb.WORK, what="valgrind")
    os.replace(xml + ".tmp", xml)
    return xml


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    os.makedirs(pb.WORK, exist_ok=True)
    real = pb.real_xml()
    xml2k, xml50k = pb.multiplied_xml(real, 2_000), pb.multiplied_xml(real, 50_000)
    sites = sites_xml(2_000)
    rows = []
    ratios = {}
    peers = pb.install_peers() if "--no-peers" not in argv else {}
    vci = peers.get("ValgrindCI", {})
    for label, src in (("2,000 distinct sites", sites), ("2,000 errors multiplied", xml2k)):
        tag = "sites" if src == sites else "mult"
        r = ours(src, os.path.join(pb.WORK, f"report-{tag}-2000"), f"report-ours-{tag}-2000")
        rows.append((f"leakharness report, {label}", r.seconds, r.peak_mb, ""))
        if "script" in vci:
            out = os.path.join(pb.WORK, f"vci-html-{tag}-2000")
            shutil.rmtree(out, ignore_errors=True)
            p = pb.measure([vci["script"], src, "--source-dir", pb.WORK, "--output-dir", out],
                           timeout=pb.PEER_TIMEOUT, label=f"report-vci-{tag}-2000")
            if not p.timed_out and p.returncode == 0:
                ratios[label] = p.seconds / r.seconds
            note = "did not finish" if p.timed_out else ("" if p.returncode == 0 else f"exit {p.returncode}")
            rows.append((f"ValgrindCI {vci.get('version', '')} HTML, {label}", p.seconds, p.peak_mb, note))
        elif peers:
            rows.append(("ValgrindCI HTML", None, None, f"unavailable ({vci.get('unavailable', '?')})"))

    big = os.path.join(pb.WORK, "report-50000")
    r50 = ours(xml50k, big, "report-ours-50000", runs=1)
    index_mb = os.path.getsize(os.path.join(big, "index.html")) / 1e6
    rows.append(("leakharness report, 50,000 errors (from the XML)", r50.seconds, r50.peak_mb,
                 f"index.html {index_mb:.3f} MB"))
    again = os.path.join(pb.WORK, "report-50000-again")
    r50b = ours(big, again, "report-ours-50000-again", runs=1)
    index_b = os.path.getsize(os.path.join(again, "index.html")) / 1e6
    rows.append(("leakharness report, 50,000-finding run (results dir)", r50b.seconds, r50b.peak_mb,
                 f"index.html {index_b:.3f} MB"))

    print(f"report_bench on {pb.machine()}")
    print(f"{'what':<58} {'seconds':>8} {'peak MB':>8}  note")
    for what, sec, mb, note in rows:
        s = "-" if sec is None else f"{sec:.2f}"
        m = "-" if mb is None else f"{mb:.0f}"
        print(f"{what:<58} {s:>8} {m:>8}  {note}")
    print()
    for label, ratio in ratios.items():
        target = f"(target >= {TARGET_SPEEDUP:.0f}x): {'met' if ratio >= TARGET_SPEEDUP else 'MISSED'}" \
            if label.startswith("2,000 distinct") else "(few distinct lines: ValgrindCI's cheap case)"
        print(f"ValgrindCI HTML / ours, {label}: {ratio:.1f}x {target}")
    for label, sec, idx in (("from the XML", r50.seconds, index_mb), ("from the results dir", r50b.seconds, index_b)):
        print(f"50,000 findings {label}: {sec:.2f} s (target < {TARGET_50K_SECONDS:.0f} s): "
              f"{'met' if sec < TARGET_50K_SECONDS else 'MISSED'}; index {idx:.3f} MB "
              f"(target < {TARGET_INDEX_MB:.0f} MB): {'met' if idx < TARGET_INDEX_MB else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
