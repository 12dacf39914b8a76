"""Adding a pattern is one folder; leaks that happen per operation scale with `iterations`."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.catalog import load_catalog
from harness.control import run_catalog_job
from harness.errors import CatalogError

ROOT = Path(__file__).resolve().parent.parent


def write_pattern(root: Path, pid: str = "my_leak") -> Path:
    folder = root / pid
    folder.mkdir(parents=True)
    (folder / "pattern.toml").write_text(textwrap.dedent(f'''
        id = "{pid}"
        title = "BIGNUM not freed"
        description = """A BIGNUM made per call and never freed with BN_free: a pattern written by a test
        to prove that a folder is all a new pattern needs, nothing else in the project."""
        apis = ["BN_new", "BN_free"]
        references = ["https://github.com/openssl/openssl/issues/1"]
        per_operation = true

        [params]
        iterations = 3

        [expect.leaky.memcheck]
        category = "leak"
        function = "BN_new"
        min_bytes = 48

        [expect.leaky.asan]
        category = "leak"
        function = "BN_new"
        min_bytes = 48
    '''))
    (folder / "pattern.c.j2").write_text(textwrap.dedent('''
        #include "lh_common.h"
        #include <openssl/bn.h>

        LH_NOINLINE static void use_number(int i)
        {
            BIGNUM *n = BN_new();
            BN_set_word(n, (BN_ULONG)i);
        {% if leaky %}
            n = NULL;                        /* BUG: never freed */
        {% else %}
            BN_free(n);                      /* FIX */
        {% endif %}
        }

        int main(void)
        {
            int i;
            lh_init();
            for (i = 0; i < lh_opaque({{ iterations }}); i++)
                use_number(i);
            return 0;
        }
    '''))
    return folder


def catalog_root(tmp_path: Path) -> Path:
    """An empty catalog of the user's own: the shared header comes with the catalog, and a user's
    catalog points at it the same way."""
    root = tmp_path / "fixtures"
    root.mkdir()
    (root / "_common").symlink_to(ROOT / "c_fixtures" / "_common")
    return root


@pytest.fixture
def fixtures(tmp_path):
    root = catalog_root(tmp_path)
    write_pattern(root)
    return root


@pytest.mark.parametrize("variant, checker", [("leaky", "memcheck"), ("fixed", "memcheck"),
                                              ("leaky", "asan"), ("fixed", "asan")])
def test_a_pattern_in_a_new_folder_is_rendered_built_and_judged(fixtures, tmp_path, variant, checker):
    (pattern,) = load_catalog(fixtures)
    outcome = run_catalog_job(pattern, variant, checker, tmp_path / "out", tmp_path / "cache")
    assert outcome.verdict.verdict == "pass", outcome.verdict.reason
    if variant == "leaky":
        assert sum(f.bytes for f in outcome.verdict.matched) >= 3 * 24  # three BIGNUMs


def test_list_shows_it(fixtures):
    proc = subprocess.run([sys.executable, "-m", "harness", "list", "--fixtures", str(fixtures)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0 and "my_leak" in proc.stdout and "BIGNUM not freed" in proc.stdout


def test_broken_metadata_is_one_clear_error(fixtures):
    toml = fixtures / "my_leak" / "pattern.toml"
    toml.write_text(toml.read_text().replace('category = "leak"', 'category = "lek"', 1))
    with pytest.raises(CatalogError, match=r"pattern.toml: \[expect.leaky.memcheck\]: category must be"):
        load_catalog(fixtures)
    proc = subprocess.run([sys.executable, "-m", "harness", "list", "--fixtures", str(fixtures)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def lost_bytes(pattern, iterations, out, cache) -> int:
    checker = "go-asan" if pattern.language == "go" else "asan"  # a Go pattern has no gcc -fsanitize build
    outcome = run_catalog_job(pattern, "leaky", checker, out / str(iterations), cache,
                              overrides={"iterations": iterations})
    return sum(f.bytes for f in outcome.result.findings if f.is_lost_leak)


PER_OPERATION = [p for p in load_catalog() if p.per_operation and "iterations" in p.params]


@pytest.mark.parametrize("pattern", PER_OPERATION, ids=[p.id for p in PER_OPERATION])
def test_leak_per_operation_grows_with_iterations(pattern, tmp_path):
    """Bytes at 1, 2 and 4 iterations: the fixed part is 2*b1 - b2, one operation b2 - b1;
    four operations must leak 4 times one, within 10%."""
    b1, b2, b4 = (lost_bytes(pattern, n, tmp_path, None) for n in (1, 2, 4))
    per_op = b2 - b1
    fixed_part = b1 - per_op
    assert per_op > 0, (b1, b2, b4)
    ratio = (b4 - fixed_part) / per_op
    assert 3.6 <= ratio <= 4.4, f"{pattern.id}: {b1=} {b2=} {b4=} ratio {ratio:.2f}"


@pytest.mark.skipif(__import__("shutil").which("clang") is None, reason="clang not installed")
def test_catalog_under_clang(tmp_path):
    """--cc clang: the same expectations hold for a clang build (measured on the whole catalog:
    202 jobs, 172 pass, 30 blind); two patterns here, a leak and a double free."""
    from harness.control import run_catalog

    patterns = load_catalog(ids=["ssl_error_path", "plain_double_free"])
    results = run_catalog(patterns, tmp_path / "out", checkers=("memcheck", "asan"), cc="clang",
                          cache_dir=tmp_path / "cache", progress=False)
    assert [j.verdict for j in results.jobs] == ["pass"] * 8, [(j.pattern, j.tool, j.reason) for j in results.jobs]
    assert any(t["name"] == "clang" for t in results.tools)


def test_a_block_a_stale_pointer_makes_possibly_lost_still_counts_toward_the_bytes(tmp_path):
    """memcheck calls an owned block "possibly lost" when a stale value points inside it, and the
    definite record that owned it no longer counts its bytes (seen once in CI, on
    evp_cipher_ctx_error_path under memcheck-O2: 1328 B lost + 960 B possibly lost, not 2288 B
    lost).  Here a global holds that stale pointer on every run: the leak is the same, and so is
    the verdict."""
    root = catalog_root(tmp_path)
    folder = root / "stale_pointer_leak"
    folder.mkdir()
    (folder / "pattern.toml").write_text(textwrap.dedent('''
        id = "stale_pointer_leak"
        title = "A context and its state lost, a stale pointer into the state"
        description = """A context is lost with the 960-byte state it owns, while a global still holds a
        pointer into the middle of the state, as a dead frame or a register may."""
        apis = ["malloc", "free"]
        references = ["https://valgrind.org/docs/manual/mc-manual.html#mc-manual.leaks"]

        [expect.leaky.memcheck]
        category = "leak"
        function = "seal"
        min_bytes = 976

        [expect.leaky.asan]              # LeakSanitizer counts the state reachable through the global
        category = "leak"
        function = "seal"
        min_bytes = 16
    '''))
    (folder / "pattern.c.j2").write_text(textwrap.dedent('''
        #include "lh_common.h"

        struct context { char *state; int size; };
        char *volatile stale;            /* what a dead frame or a register may hold */

        LH_NOINLINE static int seal(int size)
        {
            struct context *ctx = malloc(sizeof *ctx);
            ctx->state = malloc(960);
            ctx->size = size;
            memset(ctx->state, 0, 960);
            stale = ctx->state + 100;
        {% if leaky %}
            return size;                 /* BUG: ctx and its state are lost */
        {% else %}
            stale = NULL;
            free(ctx->state);
            free(ctx);                   /* FIX */
            return size;
        {% endif %}
        }

        int main(void)
        {
            lh_init();
            printf("%d\\n", seal(lh_opaque(16)));
            return 0;
        }
    '''))
    (pattern,) = load_catalog(root)
    outcome = run_catalog_job(pattern, "leaky", "memcheck", tmp_path / "out", tmp_path / "cache")
    kinds = sorted((f.leak_kind, f.bytes) for f in outcome.result.findings if f.category == "leak")
    assert kinds == [("definite", 16), ("possible", 960)]  # what memcheck says of it
    assert outcome.verdict.verdict == "pass", outcome.verdict.reason
    assert outcome.verdict.reason.startswith("976 B in 2 record(s) through seal")
