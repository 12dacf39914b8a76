"""helgrind's XML read into Findings: real helgrind runs of small threaded programs (a race, a
lock-order inversion of two pthread mutexes, misuse of locks, a clean program) and of the
catalog's pre_1_1_threading (an EVP_MD_CTX shared by two threads)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from harness.build import build
from harness.catalog import load_catalog
from harness.tasks import catalog_spec
from harness.findings import CATEGORIES
from harness.parsers.valgrind import parse_valgrind_xml
from realrun import compile_c, run

pytestmark = pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind not installed")

# The command line leakharness runs helgrind with (the integration the report asks for).
HELGRIND = ("valgrind", "--tool=helgrind", "--xml=yes", "--history-level=full", "--trace-children=yes",
            "--num-callers=40")

THREAD_BUGS = r"""
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static int counter;
static pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER;   /* guards counter */
static pthread_mutex_t lock_b = PTHREAD_MUTEX_INITIALIZER;

static void *racer(void *arg) { (void)arg; counter++; return NULL; }
static void *locked_inc(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock_a); pthread_mutex_lock(&lock_b);
    counter++;
    pthread_mutex_unlock(&lock_b); pthread_mutex_unlock(&lock_a);
    return NULL;
}
static void *exits_holding(void *arg) { (void)arg; pthread_mutex_lock(&lock_b); return NULL; }

static __attribute__((noinline)) void take_a_then_b(void)
{
    pthread_mutex_lock(&lock_a); pthread_mutex_lock(&lock_b);
    pthread_mutex_unlock(&lock_b); pthread_mutex_unlock(&lock_a);
}
static __attribute__((noinline)) void take_b_then_a(void)
{
    pthread_mutex_lock(&lock_b); pthread_mutex_lock(&lock_a);
    pthread_mutex_unlock(&lock_a); pthread_mutex_unlock(&lock_b);
}
static void *a_then_b(void *arg) { (void)arg; take_a_then_b(); return NULL; }
static void *b_then_a(void *arg) { (void)arg; take_b_then_a(); return NULL; }

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "clean";
    pthread_t t, u;
    if (!strcmp(mode, "race")) {
        pthread_create(&t, NULL, racer, NULL);
        counter++;                                   /* BUG: no lock */
        pthread_join(t, NULL);
    } else if (!strcmp(mode, "lock-order")) {
        /* One thread after the other: this run cannot deadlock, the next one may. */
        pthread_create(&t, NULL, a_then_b, NULL); pthread_join(t, NULL);
        pthread_create(&u, NULL, b_then_a, NULL); pthread_join(u, NULL);
    } else if (!strcmp(mode, "unlock-unlocked")) {
        pthread_mutex_lock(&lock_a); pthread_mutex_unlock(&lock_a);
        pthread_mutex_unlock(&lock_a);               /* BUG: not held */
    } else if (!strcmp(mode, "exit-holding")) {
        pthread_create(&t, NULL, exits_holding, NULL); pthread_join(t, NULL);
    } else if (!strcmp(mode, "relock")) {
        pthread_mutex_t m;
        pthread_mutexattr_t attr;
        pthread_mutexattr_init(&attr);
        pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
        pthread_mutex_init(&m, &attr);
        pthread_mutex_lock(&m);
        pthread_mutex_lock(&m);                      /* BUG: EDEADLK */
        pthread_mutex_unlock(&m);
        pthread_mutex_destroy(&m);
    } else {                                         /* clean: same lock order everywhere */
        pthread_create(&t, NULL, locked_inc, NULL);
        pthread_create(&u, NULL, locked_inc, NULL);
        pthread_join(t, NULL); pthread_join(u, NULL);
        take_a_then_b();
    }
    printf("%d\n", counter);
    return 0;
}
"""
MODES = ("race", "lock-order", "unlock-unlocked", "exit-holding", "relock", "clean")


def helgrind(binary: Path, *args: str, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = run([*HELGRIND, f"--xml-file={out_dir}/vg.%p.xml", binary, *args], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return sorted(out_dir.glob("vg.*.xml"))


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("helgrind")
    source = out / "thread_bugs.c"
    source.write_text(THREAD_BUGS)
    binary = compile_c(source, out / "thread_bugs", "-O0")
    got = {}
    for mode in MODES:
        (path,) = helgrind(binary, mode, out_dir=out / mode)
        got[mode] = parse_valgrind_xml(path)
    return got


def stem(signature: str) -> str:
    return re.sub(r"@[0-9a-f]+$", "", signature)


def test_lock_order_is_a_category():
    assert "lock-order" in CATEGORIES


def test_race_names_both_accesses_the_variable_and_the_threads(logs):
    log = logs["race"]
    assert log.tool == "helgrind" and not log.partial and log.finished and log.problems == ()
    races = log.findings
    assert races and {(f.tool, f.kind, f.category) for f in races} == {("helgrind", "Race", "data-race")}
    race = races[0]
    assert race.stack[0].function == "main" and race.stack[0].file.endswith("thread_bugs.c")
    assert race.stack[0].line and race.thread == 1
    assert 'data symbol "counter"' in race.message and "Possible data race" in race.message
    assert stem(race.signature) == "data-race:main"
    labels = [a.label for a in race.aux_stacks]
    assert labels == ["previous access", "thread created"]
    previous, created = race.aux_stacks
    assert previous.frames[0].function == "racer" and "by thread #2" in previous.text
    # Thread #2 was created by main's pthread_create.
    assert created.text == "Thread #2 was created"
    assert any(fr.function == "main" for fr in created.frames)


def test_lock_order_inversion_of_two_mutexes(logs):
    (finding,) = logs["lock-order"].findings
    assert (finding.kind, finding.category) == ("LockOrder", "lock-order")
    assert finding.is_error
    assert re.search(r'lock order "0x[0-9A-F]+ before 0x[0-9A-F]+" violated', finding.message)
    # Where the order was broken, and where it was set first.
    assert stem(finding.signature) == "lock-order:take_b_then_a>b_then_a"
    by_label = {a.label: a for a in finding.aux_stacks}
    assert {"required order", "later acquisition", "thread created"} <= set(by_label)
    assert "take_a_then_b" in [fr.function for fr in by_label["required order"].frames]
    assert "take_a_then_b" in [fr.function for fr in by_label["later acquisition"].frames]


def test_lock_misuse_is_other_with_the_tools_words(logs):
    (unlock,) = logs["unlock-unlocked"].findings
    assert (unlock.kind, unlock.category) == ("UnlockUnlocked", "other")
    assert "unlocked a not-locked lock" in unlock.message and unlock.stack[-1].function == "main"
    assert "lock first observed" in [a.label for a in unlock.aux_stacks]

    kinds = {f.kind: f for f in logs["relock"].findings}
    assert set(kinds) == {"Misc", "PthAPIerror"}
    assert "re-lock a non-recursive lock" in kinds["Misc"].message
    # PthAPIerror's two parts (<xwhat> and <what>) read as one sentence.
    assert kinds["PthAPIerror"].message == ("Thread #1's call to pthread_mutex_lock failed with error code 35 "
                                           "(EDEADLK: Resource deadlock would occur)")

    (holding,) = logs["exit-holding"].findings
    assert holding.kind == "Misc" and "Exiting thread still holds 1 lock" in holding.message
    # Its own stack is start_thread and clone only: named by where the thread was created.
    assert stem(holding.signature) == "other:main"


def test_clean_program_is_checked_and_clean(logs):
    log = logs["clean"]
    assert log.findings == () and log.tool == "helgrind"
    assert log.finished and not log.partial and log.problems == ()


@pytest.fixture(scope="module")
def threading_logs(tmp_path_factory) -> dict:
    """pre_1_1_threading under helgrind, both variants (memcheck's -g -O0 build)."""
    out = tmp_path_factory.mktemp("pre_1_1")
    (pattern,) = load_catalog(ids=["pre_1_1_threading"])
    got = {}
    for variant in ("leaky", "fixed"):
        b = build(catalog_spec(pattern, variant, "memcheck"), out / "cache")
        assert b.status == "ok", b.message
        (path,) = helgrind(b.binary, out_dir=out / variant)
        got[variant] = (path, parse_valgrind_xml(path))
    return got


def test_shared_evp_md_ctx_race_seen_by_helgrind(threading_logs):
    _, log = threading_logs["leaky"]
    on_ctx = [f for f in log.findings if "hash_shared" in f.functions()]
    assert on_ctx and all(f.category == "data-race" for f in on_ctx)
    # The raced-on blocks: the context EVP_MD_CTX_new allocated in main, and the provider state
    # the other worker's EVP_DigestInit_ex re-allocated through hash_shared.
    allocated = [[fr.function for fr in a.frames] for f in on_ctx for a in f.aux_stacks if a.label == "allocated"]
    assert allocated and all("main" in names or "hash_shared" in names for names in allocated)
    assert any("main" in names for names in allocated)
    assert any("Block was alloc'd by thread #1" in f.message for f in on_ctx)
    assert any("Block was alloc'd by thread #2" in f.message for f in on_ctx)


def test_fixed_variant_races_on_nothing_openssl_owns(threading_logs):
    """The mutex orders every use of the context.  What helgrind may still see is the fixture's
    staggering flag, a relaxed atomic it does not model (c_fixtures/pre_1_1_threading)."""
    _, log = threading_logs["fixed"]
    assert log.finished and not log.partial
    assert not [f for f in log.findings if "hash_shared" in f.functions()]
    assert all('data symbol "first_done"' in f.message for f in log.findings)


def test_cut_helgrind_file_keeps_complete_errors(threading_logs, tmp_path):
    path, whole = threading_logs["leaky"]
    data = path.read_bytes()
    ends = [m.end() for m in re.finditer(rb"</error>", data)]
    assert len(ends) >= 4
    cut = tmp_path / "vg.cut.xml"
    cut.write_bytes(data[: ends[3] + 40])  # inside the fifth error, as valgrind killed by SIGKILL
    log = parse_valgrind_xml(cut)
    assert log.partial and not log.finished
    assert [f.signature for f in log.findings] == [f.signature for f in whole.findings[:4]]
    # Thread announcements read before the cut still name the threads.
    assert all("thread created" in [a.label for a in f.aux_stacks] for f in log.findings)
