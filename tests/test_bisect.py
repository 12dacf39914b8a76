"""Issue 19: `leakharness bisect` finds the commit that brought a bug in.  A test repository of
eight commits whose fifth drops an EVP_MD_CTX_free, with commits that do not compile after it;
bisect, run through the real CLI, names the fifth, skips what does not build, and leaves the
user's checkout (branch, files, index, bisect state, worktrees) as it was.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from realrun import lh as run_lh
from realrun import said

APP = """\
#include <openssl/evp.h>
#include <stdio.h>

static int digest_len(const char *msg)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, msg, 5);
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    return (int)len;
}

int main(void)
{
    printf("%d\\n", digest_len("hello"));
    return 0;
}
"""


def git(*args, cwd: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60, start_new_session=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def lh(*args, cwd: Path, cache: Path):
    """`leakharness ARGS...` as a user runs it, from cwd (git told nothing of another repository)."""
    return run_lh(*args, cwd=cwd, cache=cache, env={"GIT_DIR": None, "GIT_WORK_TREE": None}, timeout=900)


def make_repo(repo: Path, project: bool = False) -> list[str]:
    """Eight commits of src/app.c: the 5th drops EVP_MD_CTX_free, the 6th and 7th do not compile,
    the 8th compiles again (with project: a leakharness.toml declaring it, from the first).
    Returns the commits, oldest first."""
    (repo / "src").mkdir(parents=True)
    if project:
        (repo / "leakharness.toml").write_text('[[target]]\nname = "app"\nsources = ["src/app.c"]\n'
                                               'tools = ["memcheck"]\n')
    git("init", "-q", "-b", "main", cwd=repo)
    git("config", "user.email", "dev@example.com", cwd=repo)
    git("config", "user.name", "dev", cwd=repo)
    app = repo / "src" / "app.c"
    text = APP

    def commit(message: str) -> None:
        app.write_text(text)
        git("add", "-A", cwd=repo)
        git("commit", "-q", "-m", message, cwd=repo)

    commit("1: digest a greeting")
    for n in (2, 3, 4):
        text += f"/* revision {n} */\n"
        commit(f"{n}: note")
    text = text.replace("    EVP_MD_CTX_free(ctx);\n", "    /* the context is kept for the next call */\n")
    commit("5: keep the digest context")
    text += "int broken(void) { return }\n"
    commit("6: start a helper")
    text += "/* revision 7 */\n"
    commit("7: note")
    text = text.replace("int broken(void) { return }\n", "")
    commit("8: finish the helper")
    return git("rev-list", "--reverse", "HEAD", cwd=repo).splitlines()


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bisect-cache")


@pytest.fixture
def repo(tmp_path) -> tuple[Path, list[str]]:
    folder = tmp_path / "project"
    commits = make_repo(folder)
    assert len(commits) == 8
    return folder, commits


def untouched(repo: Path, head: str) -> None:
    assert git("rev-parse", "HEAD", cwd=repo) == head
    assert git("symbolic-ref", "HEAD", cwd=repo) == "refs/heads/main"
    assert git("status", "--porcelain", "--ignored", cwd=repo) == ""
    assert len(git("worktree", "list", "--porcelain", cwd=repo).split("\n\n")) == 1
    assert not (repo / ".git" / "BISECT_LOG").exists() and not (repo / ".git" / "worktrees").exists()


def test_bisect_names_the_commit_that_added_the_leak(repo, cache):
    folder, commits = repo
    head = commits[-1]
    proc = lh("bisect", "--good", commits[0], "--build", "src/app.c", "--out", "../steps", cwd=folder, cache=cache)
    assert proc.returncode == 0, said(proc)
    first = proc.stdout.splitlines()[0]
    assert first == f"first bad commit: {commits[4]} 5: keep the digest context", said(proc)
    assert "leak (definite)" in proc.stdout and "at digest_len app.c:8" in proc.stdout, said(proc)
    assert "call EVP_MD_CTX_free" in proc.stdout, said(proc)  # what the catalog knows of it
    # A commit that does not compile was met, and skipped: never judged good or bad.
    assert ": skip (app[" in proc.stderr and "does not build" in proc.stderr, said(proc)
    steps = folder.parent / "steps" / "steps"
    assert (steps / commits[4] / "step.json").is_file()
    untouched(folder, head)


def test_bisect_for_a_signature_of_a_ready_program_built_by_a_command(repo, cache):
    """The check-options form with a program: `--build-command` builds it at each commit, the
    program path is the commit's own, and --signature names the bug to look for."""
    folder, commits = repo
    first = lh("check", "--quiet", "--no-html", "--tool", "memcheck", "--build", "src/app.c", "--out",
               "../check", cwd=folder, cache=cache)
    assert first.returncode == 1, said(first)
    results = json.loads((folder.parent / "check" / "results.json").read_text())
    signature = next(f["signature"] for f in results["jobs"][0]["findings"] if f["leak_kind"] == "definite")
    proc = lh("bisect", "--good", commits[0], "--bad", commits[-1], "--signature", signature, "--tool", "memcheck",
              "--build-command", "gcc -g -O0 -o app src/app.c -lcrypto", "--", "./app", cwd=folder, cache=cache)
    assert proc.returncode == 0, said(proc)
    assert proc.stdout.splitlines()[0] == f"first bad commit: {commits[4]} 5: keep the digest context", said(proc)
    assert signature.split("@")[0] in proc.stdout
    assert "the build command exited" in proc.stderr, said(proc)  # the broken commits: skipped
    untouched(folder, commits[-1])


def test_bisect_refuses_what_it_cannot_do(repo, cache, tmp_path):
    folder, commits = repo
    # the good commit already has the bug asked for
    already = lh("bisect", "--good", commits[4], "--build", "src/app.c", "--signature", "leak:digest_len>main",
                 cwd=folder, cache=cache)
    assert already.returncode == 2 and "already has" in already.stderr, said(already)
    # the good commit does not build
    broken = lh("bisect", "--good", commits[5], "--bad", commits[7], "--build", "src/app.c", cwd=folder, cache=cache)
    assert broken.returncode == 2 and "cannot be checked" in broken.stderr, said(broken)
    # no new bug at the bad commit
    nothing = lh("bisect", "--good", commits[0], "--bad", commits[3], "--build", "src/app.c", cwd=folder, cache=cache)
    assert nothing.returncode == 2 and "nothing to bisect" in nothing.stderr, said(nothing)
    # not a repository, a revision that is not a commit, good after bad
    outside = tmp_path / "plain"
    outside.mkdir()
    proc = lh("bisect", "--good", "HEAD~1", "--build", "app.c", cwd=outside, cache=cache)
    assert proc.returncode == 2 and "not inside a git repository" in proc.stderr, said(proc)
    proc = lh("bisect", "--good", "no-such-rev", "--build", "src/app.c", cwd=folder, cache=cache)
    assert proc.returncode == 2 and "no-such-rev: not a commit" in proc.stderr, said(proc)
    proc = lh("bisect", "--good", commits[6], "--bad", commits[2], "--build", "src/app.c", cwd=folder, cache=cache)
    assert proc.returncode == 2 and "not an ancestor" in proc.stderr, said(proc)
    for proc in (already, broken, nothing):
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()[-1:]) == 1
    untouched(folder, commits[-1])


def _reads_project_files() -> bool:
    from harness.control import Session

    return hasattr(Session, "project") and hasattr(Session, "project_tasks")


@pytest.mark.skipif(not _reads_project_files(), reason="this leakharness reads no project file (issue 18)")
def test_bisect_a_project_target(repo, cache):
    """--target NAME: the target as the project file at each commit declares it."""
    folder = repo[0].parent / "with-project"
    commits = make_repo(folder, project=True)
    proc = lh("bisect", "--good", commits[0], "--target", "app", cwd=folder, cache=cache)
    assert proc.returncode == 0, said(proc)
    assert proc.stdout.splitlines()[0] == f"first bad commit: {commits[4]} 5: keep the digest context", said(proc)
    untouched(folder, commits[-1])
