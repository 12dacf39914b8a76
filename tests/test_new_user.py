"""What a new user trips on first (issue 18), each as the README writes it, run the way a user runs it:
- `check --build d.c --ldflags "-lcrypto"` and `--cflags "-DX"`: a value that starts with a dash
  is taken, written as two words or with `=`;
- `check` says bugs as grouped, with the records behind them, never "ok" beside errors (in its
  summary and in its progress lines);
- a build reused from the cache is touched, so that the cache's least-recently-used eviction
  never drops a build in daily use before a result written once.
"""

from __future__ import annotations

import os

import pytest

from projectrun import lh, line_of, said, write

PROGRAM = """
    #include <openssl/crypto.h>
    #include <openssl/evp.h>
    #include <stdio.h>

    int main(void)
    {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    #ifdef FIXED
        EVP_MD_CTX_free(ctx);
    #endif
        printf("%s\\n", OpenSSL_version(OPENSSL_VERSION));
        return 0;
    }
"""


@pytest.mark.parametrize("ldflags, cflags", [(["--ldflags", "-lcrypto"], ["--cflags", "-DFIXED"]),
                                             (["--ldflags=-lcrypto"], ["--cflags=-DFIXED"])])
def test_flag_values_starting_with_a_dash_are_taken(tmp_path, ldflags, cflags):
    write(tmp_path, {"d.c": PROGRAM})
    proc = lh("check", "--build", "d.c", *ldflags, "--tool", "asan", "--no-html", cwd=tmp_path, cache=tmp_path / "c")
    assert proc.returncode == 1, said(proc)  # the leak
    proc = lh("check", "--build", "d.c", *ldflags, *cflags, "--tool", "asan", "--no-html", cwd=tmp_path,
              cache=tmp_path / "c")
    assert proc.returncode == 0, said(proc)  # -DFIXED reached the compiler: the context is freed
    assert "d[asan]: clean" in proc.stdout


def test_check_says_bugs_as_grouped_never_ok_beside_errors(tmp_path):
    write(tmp_path, {"d.c": PROGRAM})
    proc = lh("check", "--build", "d.c", "--tool", "asan", "--no-html", cwd=tmp_path, cache=tmp_path / "c")
    assert proc.returncode == 1, said(proc)
    assert "d[asan]: 1 bug(s) in 1 record(s)" in proc.stdout
    line = line_of(tmp_path / "d.c", "EVP_MD_CTX_new()")
    assert f"[lsan] leak (definite) 72 B at main d.c:{line}" in proc.stdout
    assert "d[asan]: errors" in proc.stderr  # the progress line says the same
    assert ": ok" not in proc.stdout + proc.stderr


def test_a_reused_build_is_touched(tmp_path):
    write(tmp_path, {"d.c": PROGRAM})
    cache = tmp_path / "c"
    proc = lh("check", "--build", "d.c", "--tool", "asan", "--no-html", cwd=tmp_path, cache=cache)
    assert proc.returncode == 1, said(proc)
    (entry,) = [p for p in (cache / "builds").glob("*/*") if (p / "build.json").is_file()]
    os.utime(entry, (1_000_000, 1_000_000))  # as if last used in 1970
    lh("check", "--build", "d.c", "--tool", "asan", "--no-html", "--fresh", cwd=tmp_path, cache=cache)
    assert entry.stat().st_mtime > 1_000_000 + 86400 * 365 * 50
