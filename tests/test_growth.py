"""Leak growth: real ASan (LeakSanitizer) runs of ssl_error_path's leaky variant at 1, 2 and 4
iterations, fitted to bytes = fixed + rate x iterations per signature and in total."""

from __future__ import annotations

import re

import pytest
from lxml import etree

from harness.build import build
from harness.catalog import load_catalog
from harness.tasks import catalog_spec
from harness.errors import LeakHarnessError
from harness.generate import render
from harness.growth import fit_growth, fit_line
from harness.report.svg import growth_plot as svg_plot
from harness.run import Job, run_job

# Measured earlier by the catalog's scaling test (tests/test_catalog_extend.py) with asan:
# 43,431 B at 2 iterations less 24,979 B at 1.
SSL_ERROR_PATH_PER_OP = 18_452


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(iterations, RunResult) of ssl_error_path's leaky variant under asan at 1, 2 and 4."""
    out = tmp_path_factory.mktemp("growth")
    (pattern,) = load_catalog(ids=["ssl_error_path"])
    got = []
    for n in (1, 2, 4):
        assert f"lh_opaque({n})" in render(pattern, "leaky", {"iterations": n})
        b = build(catalog_spec(pattern, "leaky", "asan", overrides={"iterations": n}), out / "cache")
        assert b.status == "ok", b.message
        result = run_job(Job(checker="asan", command=(str(b.binary),), out_dir=out / f"n{n}", timeout=60,
                             pattern=pattern.id, variant="leaky"), out / "cache")
        # Only a complete run counts: an unchecked run must never read as "0 bytes lost".
        assert result.status == "ok", result.message
        got.append((n, result))
    return got


def stem(signature: str) -> str:
    return re.sub(r"@[0-9a-f]+$", "", signature)


def test_total_rate_is_the_catalogs_per_operation_bytes(runs):
    report = fit_growth([(n, r.findings) for n, r in runs])
    total = report.total
    assert [n for n, _ in total.points] == [1, 2, 4]
    assert abs(total.rate_per_op - SSL_ERROR_PATH_PER_OP) <= 0.01 * SSL_ERROR_PATH_PER_OP, total
    # What is lost once (the EVP_CIPHER/EVP_MD fetch caches SSL_CTX_new fills): positive, and
    # far below one operation's loss.
    assert 0 < total.fixed_bytes < total.rate_per_op
    assert total.r2 > 0.999 and total.kind == "per-operation"
    # Least squares is linear: the signatures' rates add up to the total's.
    assert sum(f.rate_per_op for _, f in report.by_signature) == pytest.approx(total.rate_per_op)


def test_per_signature_tells_per_request_leak_from_one_time_setup(runs):
    report = fit_growth([(n, r.findings) for n, r in runs])
    fits = {stem(s): f for s, f in report.by_signature}
    # The SSL allocated by SSL_new in setup_connection: lost whole on every failed set-up.
    ssl = fits["leak:SSL_new>setup_connection>main"]
    assert ssl.kind == "per-operation" and ssl.rate_per_op > 7000
    assert abs(ssl.fixed_bytes) < 0.01 * ssl.rate_per_op and ssl.r2 > 0.9999
    # The cipher table fetched once into OpenSSL's cache by the first SSL_CTX_new: one-time.
    fetch = fits["leak:EVP_CIPHER_fetch>SSL_CTX_new_ex>setup_connection"]
    assert fetch.kind == "one-time" and abs(fetch.rate_per_op) < 0.5 and fetch.fixed_bytes > 1000
    # The largest per-operation signature comes first.
    assert report.by_signature[0][1].rate_per_op == max(f.rate_per_op for f in fits.values())
    assert set(report.to_dict()["by_signature"]) == {s for s, _ in report.by_signature}


def test_svg_plot_of_a_real_fit_escapes_its_title(runs):
    report = fit_growth([(n, r.findings) for n, r in runs])
    sig, fit = report.by_signature[0]
    hostile = sig + ' "><script>alert(1)</script> operator<(a&b)'
    svg = svg_plot(fit, title=hostile)
    assert "<script>" not in svg
    # Well-formed XML (parsed with entities and network off) whose title reads back unchanged.
    root = etree.fromstring(svg.encode(), etree.XMLParser(resolve_entities=False, no_network=True))
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert root.find("s:title", ns).text.startswith(hostile + ":")
    assert root.get("aria-label") == root.find("s:title", ns).text
    assert f"{fit.rate_per_op:.1f}".rstrip("0").rstrip(".") + " B per operation" in root.get("aria-label")
    circles = root.findall("s:circle", ns)
    assert len(circles) == 3
    # Higher bytes are drawn higher (smaller y), inside the box.
    ys = [float(c.get("cy")) for c in circles]
    assert ys[0] > ys[1] > ys[2] and all(0 <= v <= float(root.get("height")) for v in ys)


def test_one_iteration_count_is_a_one_line_error(runs):
    n, result = runs[0]
    with pytest.raises(LeakHarnessError, match="two or more different iteration counts"):
        fit_growth([(n, result.findings), (n, result.findings)])
    flat = fit_line([(1, 500), (3, 500)])
    assert (flat.rate_per_op, flat.fixed_bytes, flat.r2, flat.kind) == (0.0, 500.0, 1.0, "one-time")


def test_only_lost_unsuppressed_bytes_count_and_a_missing_signature_is_zero(runs):
    """Real findings, re-labelled: still-reachable and suppressed records lose nothing, and a
    signature absent from a (complete) run lost 0 bytes there."""
    import dataclasses

    base = fit_growth([(n, r.findings) for n, r in runs])
    ssl_sig = next(s for s, _ in base.by_signature if stem(s) == "leak:SSL_new>setup_connection>main")
    fetch = "leak:EVP_CIPHER_fetch>SSL_CTX_new_ex>setup_connection"

    def relabel(f):
        if f.signature == ssl_sig:
            return dataclasses.replace(f, leak_kind="reachable")
        if stem(f.signature) == fetch:
            return dataclasses.replace(f, suppressed="openssl-one-time")
        return f

    changed = fit_growth([(n, [relabel(f) for f in r.findings]) for n, r in runs])
    assert ssl_sig not in dict(changed.by_signature)
    assert not any(stem(s) == fetch for s, _ in changed.by_signature)
    dropped = dict(base.by_signature)
    assert changed.total.rate_per_op == pytest.approx(base.total.rate_per_op - dropped[ssl_sig].rate_per_op)

    # The SSL_new leak left out of the 1-iteration run: a leak that starts past some count.
    later = fit_growth([(n, [f for f in r.findings if not (n == 1 and f.signature == ssl_sig)])
                        for n, r in runs])
    points = dict(later.by_signature)[ssl_sig].points
    assert points[0] == (1, 0) and points[1:] == dict(base.by_signature)[ssl_sig].points[1:]


def test_results_json_form_carries_both_rates(runs):
    """What results.json would carry: the job's rate and each signature's, in bytes per operation."""
    import json

    report = fit_growth([(n, r.findings) for n, r in runs])
    data = json.loads(json.dumps(report.to_dict()))
    assert data["total"]["rate_per_op"] == round(report.total.rate_per_op, 3)
    assert data["total"]["kind"] == "per-operation"
    assert data["total"]["points"] == [[n, b] for n, b in report.total.points] and [n for n, _ in runs] == [1, 2, 4]
    ssl = next(v for s, v in data["by_signature"].items() if stem(s) == "leak:SSL_new>setup_connection>main")
    assert ssl["kind"] == "per-operation" and ssl["rate_per_op"] > 7000
    # Read back (a report draws its plots from results.json): the same fits, the same plots.
    from harness.growth import GrowthReport

    again = GrowthReport.from_dict(data)
    assert [s for s, _ in again.by_signature] == [s for s, _ in report.by_signature]
    assert again.total.points == report.total.points
    assert again.total.rate_per_op == pytest.approx(report.total.rate_per_op, abs=1e-3)
    assert svg_plot(again.by_signature[0][1]) == svg_plot(report.by_signature[0][1])
    # A leak of exact multiples fits a fixed part of -0.0 in floating point: written as 0.0.
    assert not any(json.dumps(v["fixed_bytes"]).startswith("-") and v["fixed_bytes"] == 0
                   for v in data["by_signature"].values())
