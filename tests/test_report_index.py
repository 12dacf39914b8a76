"""Issue 19: the report's index is readable on one screen.  A real run with every checker the
catalog uses (both variants, so the matrix is as wide as the whole catalog's) is rendered, and
headless Chromium shows it in a 1400 px window: the screenshot must show the matrix's right edge
(painted magenta for the test), the page must not scroll sideways, the header must stay on top
(sticky), each cell must be a verdict whose detail is on hover and one click away, and the
filters must still work.  The same check on a copy whose cells are made wider must fail: the
test sees an overflow when there is one.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from realrun import user_env

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
WIDTH, HEIGHT = 1400, 1000
MAGENTA = (255, 0, 255)
PATTERNS = ("cleanse_missing", "pre_1_1_threading", "cgo_evp_ctx_leak", "ssl_error_path")
# What the page tells the test once laid out: widths, and what the header and cells are.
PROBE = """(function () {
  var t = document.getElementById('matrix'), r = t.getBoundingClientRect();
  var th = t.querySelector('thead th'), cell = t.querySelector('tbody td.cell a');
  document.title = JSON.stringify({scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
    right: r.right, sticky: getComputedStyle(th).position, controls: !document.getElementById('controls').hidden,
    cellText: cell ? cell.textContent : null, cellTitle: cell ? cell.parentNode.getAttribute('title') : null,
    cellHref: cell ? cell.getAttribute('href') : null});
})();"""


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


pytestmark = pytest.mark.skipif(_chromium() is None, reason="chromium not installed "
                                                            "(scripts/install-system-packages.sh --test)")


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wide")
    env = user_env(work / "cache")
    args = [a for pid in PATTERNS for a in ("--pattern", pid)]
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--quiet", *args, "--out", "out"], cwd=work,
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1200,
                          start_new_session=True)
    assert (work / "out" / "index.html").is_file(), proc.stdout + proc.stderr
    return work / "out"


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit, non-interlaced PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r[i:i + 3]) for r in rows for i in range(0, stride, channels)]


def magenta_pixels(path: Path) -> int:
    _, _, pixels = read_png(path)
    return sum(1 for p in pixels if p == bytes(MAGENTA))


def instrumented(index: Path, name: str, extra_css: str = "") -> Path:
    """A copy of index.html beside it with the matrix's right edge painted magenta, the probe
    script allowed by the page's policy, and any extra style."""
    page = index.read_text()
    digest = "sha256-" + base64.b64encode(hashlib.sha256(PROBE.encode()).digest()).decode()
    # The policy sits in a meta tag, its quotes written as &#39;.
    assert "script-src &#39;" in page
    page = page.replace("script-src &#39;", f"script-src &#39;{digest}&#39; &#39;", 1)
    style = f"<style>#matrix {{ box-shadow: 10px 0 0 0 rgb{MAGENTA}; }} {extra_css}</style>"
    page = page.replace("</head>", style + "</head>", 1).replace("</body>", f"<script>{PROBE}</script></body>", 1)
    copy = index.parent / name
    copy.write_text(page)
    return copy


def browse(page: Path, profile: Path, *extra: str) -> str:
    proc = subprocess.run([_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}",
                           *extra, page.as_uri()], capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL, start_new_session=True)
    return proc.stdout


def look(page: Path, tmp_path: Path, name: str) -> tuple[dict, int]:
    """What the probe measured, and how many magenta pixels a 1400x1000 screenshot holds."""
    dom = browse(page, tmp_path / f"profile-{name}", "--dump-dom")
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert title, dom[:2000]
    measured = json.loads(html.unescape(title.group(1)))
    shot = tmp_path / f"{name}.png"
    browse(page, tmp_path / f"profile-{name}-shot", f"--screenshot={shot}")
    assert shot.is_file()
    width, height, _ = read_png(shot)
    assert (width, height) == (WIDTH, HEIGHT)
    return measured, magenta_pixels(shot)


def test_the_index_fits_a_1400_px_window(wide_run, tmp_path):
    page = (wide_run / "index.html").read_text()
    columns = re.findall(r'<th data-checker="([^"]+)" class="col', page)
    assert len(columns) >= 22, columns  # leaky and fixed under every checker the catalog runs
    measured, magenta = look(instrumented(wide_run / "index.html", "probe.html"), tmp_path, "fits")
    assert measured["scroll"] <= measured["inner"], measured  # no sideways scrolling
    assert measured["right"] <= measured["inner"], measured
    assert magenta >= 100, "the screenshot does not show the matrix's right edge"
    assert measured["sticky"] == "sticky" and measured["controls"], measured
    # a cell: a verdict glyph; what was found and why on hover; the job one click away
    assert measured["cellText"] in ("✓", "✗", "!", "◌", "…") or measured["cellText"].startswith(("✓", "✶")), measured
    assert " under " in measured["cellTitle"] and ": " in measured["cellTitle"], measured
    target, anchor = measured["cellHref"].split("#")
    assert anchor and f'id="{anchor}"' in (wide_run / target).read_text()
    # the reasons of 60 words live in the title, not in the cell
    blind = re.search(r'<td class="cell blind[^"]*"[^>]*title="([^"]*)"[^>]*><a [^>]*>([^<]*)<', page)
    assert blind and len(blind.group(1).split()) > 10 and blind.group(2) == "◌", blind


def test_the_check_sees_a_matrix_that_overflows(wide_run, tmp_path):
    """The same measurements on a copy with wider cells: the test must see the overflow."""
    measured, magenta = look(instrumented(wide_run / "index.html", "wide.html", "#matrix td.cell { min-width: 70px; }"),
                             tmp_path, "overflow")
    assert measured["scroll"] > measured["inner"] and measured["right"] > measured["inner"], measured
    assert magenta == 0
