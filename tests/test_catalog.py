"""The built-in catalog: every pattern, both variants, judged under every default checker.

Each test renders, builds (cached) and runs one (pattern, variant, checker) for real and
asserts the pattern's expectation: a fixed variant any checker flags, or a leaky one a
checker that should see it misses, fails here.
"""

from __future__ import annotations

import pytest

from harness.catalog import DEFAULT_CHECKERS, VARIANTS, load_catalog
from harness.control import run_catalog_job
from harness.run import tool_available

PATTERNS = load_catalog()
REQUIRED = {
    "ssl_error_path", "evp_cipher_ctx_error_path", "x509_store_ctx_cleanup_not_free",
    "bio_mem_uaf", "set0_ownership_double_free", "plain_double_free",
}


def test_catalog_is_complete():
    ids = {p.id for p in PATTERNS}
    assert len(PATTERNS) >= 18
    assert REQUIRED <= ids
    for p in PATTERNS:
        assert p.references and all(r.startswith("https://") for r in p.references), p.id
        assert p.apis and len(p.description) > 80, p.id


CASES = [(p, v, c) for p in PATTERNS for v in VARIANTS for c in p.checkers()]


@pytest.mark.parametrize("pattern, variant, checker", CASES,
                         ids=[f"{p.id}-{v}-{c}" for p, v, c in CASES])
def test_expectation_holds(pattern, variant, checker, tmp_path):
    expected = pattern.expectation(variant, checker)
    if expected.outcome == "blind":
        pytest.xfail(f"{checker} is blind here: {expected.reason}")
    if not tool_available(checker.split("-")[0]):
        pytest.skip(f"{checker}: tool not installed")
    outcome = run_catalog_job(pattern, variant, checker, tmp_path)
    assert outcome.result.status != "build-failed", outcome.result.message
    assert outcome.verdict.verdict == "pass", (
        f"{pattern.id} {variant} under {checker}: {outcome.verdict.reason} "
        f"(status {outcome.result.status_text}; logs in {tmp_path})")
