"""Each fix of "never a false clean" is guarded: remove its key line and its test fails.

A test that would pass with the bug present is a defect.  For every fix this copies the
repository, replaces the fix's key line with what it was before (or with nothing), and runs the
tests of tests/test_trust.py that guard it against the mutated copy: they must fail.  The key
line must be found exactly once, so a fix rewritten later makes this test say so, instead of
silently checking nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# (what the fix does, file, key line, the line without the fix, the tests that guard it)
MUTATIONS = [
    ("a timeout is incomplete", "harness/collect.py",
     "    if timed_out:\n        return incomplete(", "    if False:\n        return incomplete(",
     ["test_timeout_is_incomplete"]),
    ("a crash without a report is incomplete", "harness/collect.py",
     "        if sig is not None and not main_reported:\n", "        if False:\n",
     ["test_abort_under_asan_without_report_is_incomplete"]),
    ("ASan's exit-time leak check must have run", "harness/collect.py",
     '        if runtime == "asan" and not exit_mark and not main_reported:', "        if False:",
     ["test_exit_without_leak_check_under_asan_is_incomplete"]),
    ("a failed sanitizer runtime is incomplete", "harness/collect.py",
     "        failure = _RUNTIME_FAILURE.search(tail)", "        failure = None",
     ["test_checker_broken_by_asan_options_is_incomplete_and_not_cached"]),
    ("a job killed from outside is incomplete, not cached", "harness/collect.py",
     "    if returncode is not None and returncode < 0 and -returncode in EXTERNAL:", "    if False:",
     ["test_job_killed_from_outside_is_not_cached"]),
    ("valgrind must have run the program to its end (FINISHED)", "harness/collect.py",
     ' and getattr(log, "finished", False)', "",
     ["test_valgrind_that_cannot_start_its_check_is_incomplete"]),
    ("processes left running and killed unchecked make the job incomplete", "harness/collect.py",
     "    if REAPER_KILLED in tail:", "    if False:",
     ["test_child_killed_unchecked_is_not_clean_under_asan"]),
    ("a binary without the sanitizer is not checked by it", "harness/run.py",
     "                   else not_instrumented(job.runtime, job.command[0]))", "                   else \"\")",
     ["test_asan_on_a_binary_without_asan_is_incomplete", "test_tsan_on_bin_true_is_incomplete"]),
    ("logs go to a private folder safe for the tools' option syntax", "harness/run.py",
     "    private = private_log_dir()", '    private = Path(tempfile.mkdtemp(prefix="lh- :", dir=job.out_dir))',
     ["test_space_colon_quote_in_source_name_and_out_folder"]),
    ("the program runs in the caller's folder", "harness/run.py",
     "Path(job.cwd or os.getcwd()), job.timeout,", "job.out_dir, job.timeout,",
     ["test_input_file_named_by_an_argument_is_part_of_the_key"]),
    ("the user's detect_leaks=0 cannot turn the leak check off", "harness/run.py",
     '    "ASAN_OPTIONS": ":atexit=1:detect_leaks=1:leak_check_at_exit=1",\n'
     '    "LSAN_OPTIONS": ":detect_leaks=1:leak_check_at_exit=1",',
     '    "ASAN_OPTIONS": ":atexit=1",',
     ["test_leak_detection_turned_off_by_the_users_environment_is_not_clean"]),
    ("only complete runs are cached", "harness/resultcache.py",
     "        if key is None or result.status not in CACHEABLE:", "        if key is None:",
     ["test_checker_broken_by_asan_options_is_incomplete_and_not_cached", "test_job_killed_from_outside_is_not_cached"]),
    ("a stored entry is replaced (--fresh)", "harness/resultcache.py",
     "            if entry.exists():  # replace", "            if False:  # replace",
     ["test_fresh_replaces_the_cached_entry"]),
    ("files named in options, rc files and arguments are in the key", "harness/resultcache.py",
     '    for path in named_files(texts, cwd):\n        add("file", path, file_hash(path))', "",
     ["test_valgrind_opts_suppressions_file_is_part_of_the_key", "test_input_file_named_by_an_argument_is_part_of_the_key"]),
    ("the libraries the loader resolves are in the key", "harness/resultcache.py",
     "    for lib in libraries(program, cache_dir, env, cwd):", "    for lib in ():",
     ["test_ld_library_path_to_another_build_misses_the_cache"]),
    ("a relative LD_LIBRARY_PATH entry is resolved", "harness/resultcache.py",
     '        if "/" not in path:  # linux-vdso.so.1: not a file', '        if not path.startswith("/"):',
     ["test_relative_ld_library_path_rebuilt_library_misses_the_cache"]),
    ("a folder holding a user's files is refused", "harness/outdir.py",
     "    if leftover:\n        raise", "    if False:\n        raise",
     ["test_report_and_check_refuse_a_users_folder"]),
    ("a second run on the same folder is refused", "harness/outdir.py",
     "            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", "            pass",
     ["test_second_run_into_the_same_folder_refuses_at_once"]),
    ("an incomplete job is never a pass", "harness/judge.py",
     '    if result.status == "incomplete":\n        seen', "    if False:\n        seen",
     ["test_incomplete_catalog_job_is_never_a_pass"]),
    ("jobs run under the subreaper", "harness/supervise.py",
     "    wrapper = reaper(cache_dir)", "    wrapper = None",
     ["test_setsid_child_is_gone_after_a_timeout"]),
    ("assert_clean fails on any job that is not ok", "harness/pytest_plugin.py",
     '            if j.status != "ok":  # crashed', "            if False:  # crashed",
     ["test_leak_check_fixture_assert_clean_raises_on_crash_and_timeout"]),
    ("check exits non-zero when a job is incomplete", "harness/cli.py",
     '    if any(j.status != "ok" for j in jobs):\n        return 3', '    if False:\n        return 3',
     ["test_not_executable_program_is_incomplete", "test_tsan_on_bin_true_is_incomplete"]),
    ("timeouts and job counts are checked", "harness/control.py",
     "    if not math.isfinite(seconds) or seconds <= 0:", "    if False:",
     ["test_bad_jobs_and_timeout_numbers"]),
    ("a pattern.toml expect table of the wrong type is one line", "harness/catalog.py",
     "        if not isinstance(per_checker, Mapping):", "        if False:",
     ["test_pattern_toml_with_a_wrong_type"]),
    ("a results.json that is not an object is one line", "harness/results.py",
     "        if not isinstance(data, dict):\n            raise LeakHarnessError(f\"{path}: not a leakharness results file",
     "        if False:\n            raise LeakHarnessError(f\"{path}: not a leakharness results file",
     ["test_report_on_a_results_json_that_is_not_an_object"]),
]

_IGNORE = shutil.ignore_patterns(".git", ".venv", "reports", ".cache", ".pytest_cache", "__pycache__", "bench",
                                 "build", "dist", "*.egg-info")


def _copy_and_run(tmp_path: Path, guards: list[str], mutate=None) -> subprocess.CompletedProcess:
    """The guarding tests of tests/test_trust.py, run against a copy of the repository."""
    copy = tmp_path / "repo"
    shutil.copytree(ROOT, copy, ignore=_IGNORE, symlinks=True)
    if mutate:
        mutate(copy)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "LEAKHARNESS"))}
    env["PYTHONPATH"] = str(copy)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q",
         "tests/test_trust.py", "-k", " or ".join(guards)],
        cwd=copy, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900,
        start_new_session=True)


@pytest.mark.slow
def test_the_guarding_tests_pass_on_an_unchanged_copy(tmp_path):
    """The control: in a copy left as it is, every guarding test passes, so a failure below is
    the mutation's doing, not the copy's."""
    guards = sorted({g for m in MUTATIONS for g in m[4]})
    proc = _copy_and_run(tmp_path, guards)
    assert proc.returncode == 0 and " passed" in proc.stdout and "failed" not in proc.stdout, proc.stdout[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("what,path,key,without,guards", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_the_guarding_tests_fail_without_the_fix(tmp_path, what, path, key, without, guards):
    def mutate(copy: Path) -> None:
        target = copy / path
        text = target.read_text()
        assert text.count(key) == 1, f"{path}: the fix's key line is not there once (rewritten?): {key!r}"
        target.write_text(text.replace(key, without))

    proc = _copy_and_run(tmp_path, guards, mutate)
    ran = "passed" in proc.stdout or "failed" in proc.stdout
    assert ran, f"the guarding tests did not run:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    assert proc.returncode == 1 and " failed" in proc.stdout, (
        f"without the fix ({what}), {', '.join(guards)} still pass:\n{proc.stdout[-3000:]}")
