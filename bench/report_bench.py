#!/usr/bin/env python3
"""Report rendering against ValgrindCI's HTML, in one command (issue 6's numbers).

From the same real-run-multiplied valgrind XML files parse_bench.py makes (2,000 and 50,000
errors), times:
- `leakharness report FILE --out DIR` (the full HTML, results.json and SARIF; best of 3) and
  ValgrindCI's HTML (`valgrind-ci FILE --source-dir ... --output-dir ...`, one run) on the
  2,000-error file: ours must be at least 20 times faster;
- ours on the 50,000-error file, and again from the results directory that made (a
  50,000-finding run): each under 10 s, with an index.html under 5 MB.
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


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    os.makedirs(pb.WORK, exist_ok=True)
    real = pb.real_xml()
    xml2k, xml50k = pb.multiplied_xml(real, 2_000), pb.multiplied_xml(real, 50_000)
    rows = []

    r = ours(xml2k, os.path.join(pb.WORK, "report-2000"), "report-ours-2000")
    rows.append(("leakharness report, 2,000 errors", r.seconds, r.peak_mb, ""))
    peer_seconds = None
    if "--no-peers" not in argv:
        peers = pb.install_peers()
        vci = peers.get("ValgrindCI", {})
        if "script" in vci:
            out = os.path.join(pb.WORK, "vci-html-2000")
            shutil.rmtree(out, ignore_errors=True)
            p = pb.measure([vci["script"], xml2k, "--source-dir", pb.WORK, "--output-dir", out],
                           timeout=pb.PEER_TIMEOUT, label="report-vci-2000")
            peer_seconds = None if p.timed_out or p.returncode != 0 else p.seconds
            note = "did not finish" if p.timed_out else ("" if p.returncode == 0 else f"exit {p.returncode}")
            rows.append((f"ValgrindCI {vci.get('version', '')} HTML, 2,000 errors", p.seconds, p.peak_mb, note))
        else:
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
    if peer_seconds:
        ratio = peer_seconds / r.seconds
        print(f"ValgrindCI HTML / ours: {ratio:.1f}x (target >= {TARGET_SPEEDUP:.0f}x): "
              f"{'met' if ratio >= TARGET_SPEEDUP else 'MISSED'}")
    for label, sec, idx in (("from the XML", r50.seconds, index_mb), ("from the results dir", r50b.seconds, index_b)):
        print(f"50,000 findings {label}: {sec:.2f} s (target < {TARGET_50K_SECONDS:.0f} s): "
              f"{'met' if sec < TARGET_50K_SECONDS else 'MISSED'}; index {idx:.3f} MB "
              f"(target < {TARGET_INDEX_MB:.0f} MB): {'met' if idx < TARGET_INDEX_MB else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
