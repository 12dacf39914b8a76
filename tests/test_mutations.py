"""Each fix of "never a false clean" is guarded: remove its key line and its test fails.

A test that would pass with the bug present is a defect.  For every fix this copies the
repository, replaces the fix's key line with what it was before (or with nothing), and runs the
tests that guard it (tests/test_trust.py, test_false_cleans.py, test_reaper.py, ...) against the
mutated copy: every one of them must fail, not just any.  The key line must be found exactly
once, so a fix rewritten later makes this test say so, instead of silently checking nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# (what the fix does, file, key line, the line without the fix, the tests that guard it: FILE::KEYWORD)
T = "tests/test_trust.py::"
F = "tests/test_false_cleans.py::"
# The rest of ASan's forced options, between its leak check's and LSan's.
_ASAN_REST = ('                    ":poison_heap=1:poison_partial=1:poison_array_cookie=1:replace_str=1:replace_intrin=1"\n'
              '                    ":alloc_dealloc_mismatch=1:new_delete_type_mismatch=1:detect_container_overflow=1"\n'
              '                    ":report_globals=1:check_malloc_usable_size=1",\n')
MUTATIONS = [
    ("a timeout is incomplete", "harness/collect.py",
     "    if ended.timed_out:\n        return f\"timed out", "    if False:\n        return f\"timed out",
     [T + "test_timeout_is_incomplete"]),
    ("a crash without a report is incomplete", "harness/checkers/sanitizers.py",
     "        if g.signal is not None and not g.main_reported:\n            return f\"crashed with {g.signal} and {self.name}",
     "        if False:\n            return f\"crashed with {g.signal} and {self.name}",
     [T + "test_abort_under_asan_without_report_is_incomplete"]),
    ("ASan's exit-time leak check must have run", "harness/checkers/sanitizers.py",
     "        if self.leak_check and not exit_stats and not g.main_reported:", "        if False:",
     [T + "test_exit_without_leak_check_under_asan_is_incomplete"]),
    ("a failed sanitizer runtime is incomplete", "harness/checkers/sanitizers.py",
     "        failure = _RUNTIME_FAILURE.search(g.stderr_tail())", "        failure = None",
     [T + "test_checker_broken_by_asan_options_is_incomplete_and_not_cached"]),
    ("a job killed from outside is incomplete, not cached", "harness/collect.py",
     "    if rc is not None and rc < 0 and -rc in EXTERNAL:", "    if False:",
     [T + "test_job_killed_from_outside_is_not_cached"]),
    ("valgrind must have run the program to its end (FINISHED)", "harness/checkers/valgrind.py",
     'getattr(log, "finished", False) and not log.partial', "not log.partial",
     [T + "test_valgrind_that_cannot_start_its_check_is_incomplete"]),
    ("processes left running and killed unchecked make the job incomplete", "harness/collect.py",
     "    if REAPER_KILLED in tail:", "    if False:",
     [T + "test_child_killed_unchecked_is_not_clean_under_asan"]),
    ("a binary without the sanitizer is not checked by it", "harness/checkers/sanitizers.py",
     "        if not any(contains(program, m) for m in self.marks):", "        if False:",
     [T + "test_asan_on_a_binary_without_asan_is_incomplete", T + "test_tsan_on_bin_true_is_incomplete"]),
    ("logs go to a private folder safe for the tools' option syntax", "harness/run.py",
     "    private = private_log_dir()", '    private = Path(tempfile.mkdtemp(prefix="lh- :", dir=job.out_dir))',
     [T + "test_space_colon_quote_in_source_name_and_out_folder"]),
    ("the program runs in the caller's folder", "harness/run.py",
     "Path(job.cwd or os.getcwd()), job.timeout,", "job.out_dir, job.timeout,",
     [T + "test_input_file_named_by_an_argument_is_part_of_the_key"]),
    ("the user's detect_leaks=0 cannot turn the leak check off", "harness/checkers/sanitizers.py",
     '    "ASAN_OPTIONS": ":atexit=1:detect_leaks=1:leak_check_at_exit=1:print_suppressions=1"\n' + _ASAN_REST +
     '    "LSAN_OPTIONS": ":detect_leaks=1:leak_check_at_exit=1:print_suppressions=1",',
     '    "ASAN_OPTIONS": ":atexit=1:print_suppressions=1"\n' + _ASAN_REST +
     '    "LSAN_OPTIONS": ":print_suppressions=1",',
     [T + "test_leak_detection_turned_off_by_the_users_environment_is_not_clean"]),
    # (A run killed or cut short also leaves its recording of what it read incomplete, which keeps
    # it out of the cache too; a run past the output cap exits normally, its recording whole.)
    ("only complete runs are cached", "harness/resultcache.py",
     "        if result.status not in CACHEABLE and not known:", "        if False:",
     ["tests/test_cache_inputs.py::test_an_incomplete_run_is_never_stored_even_with_a_whole_recording"]),
    ("a stored entry is replaced (--fresh)", "harness/resultcache.py",
     "            if entry.exists():  # replace", "            if False:  # replace",
     [T + "test_fresh_replaces_the_cached_entry"]),
    ("files named in options, rc files and arguments are in the key", "harness/resultcache.py",
     '    for path in named_files(texts, cwd):\n        add("file", path, file_hash(path))', "",
     # (a file the program itself opens is also in what the recorder saw: valgrind's own reads are not)
     [T + "test_valgrind_opts_suppressions_file_is_part_of_the_key"]),
    ("the libraries the loader resolves are in the key", "harness/resultcache.py",
     "    for lib in libraries(program, cache_dir, env, cwd):", "    for lib in ():",
     # (a program that ends normally has its loaded libraries recorded too: one that crashes has not)
     [T + "test_a_rebuilt_library_misses_the_cache_when_the_program_crashes"]),
    ("a relative LD_LIBRARY_PATH entry is resolved", "harness/resultcache.py",
     '        if "/" not in path:  # linux-vdso.so.1: not a file', '        if not path.startswith("/"):',
     [T + "test_relative_ld_library_path_rebuilt_library_misses_the_cache"]),
    ("a folder holding a user's files is refused", "harness/outdir.py",
     "    if leftover:\n        raise", "    if False:\n        raise",
     [T + "test_report_and_check_refuse_a_users_folder"]),
    ("a second run on the same folder is refused", "harness/outdir.py",
     "            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", "            pass",
     [T + "test_second_run_into_the_same_folder_refuses_at_once"]),
    ("an incomplete job is never a pass", "harness/judge.py",
     '    if result.status == "incomplete":\n        seen', "    if False:\n        seen",
     [T + "test_incomplete_catalog_job_is_never_a_pass"]),
    ("jobs run under the subreaper", "harness/supervise.py",
     "    wrapper = reaper(cache_dir)", "    wrapper = None",
     [T + "test_setsid_child_is_gone_after_a_timeout"]),
    ("assert_clean fails on any job that is not ok", "harness/pytest_plugin.py",
     '            if j.status != "ok":  # crashed', "            if False:  # crashed",
     [T + "test_leak_check_fixture_assert_clean_raises_on_crash_and_timeout"]),
    ("check exits non-zero when a job is incomplete", "harness/judge.py",
     '    if any(n != "clean" for n in names):\n        return 3', '    if False:\n        return 3',
     [T + "test_not_executable_program_is_incomplete", T + "test_tsan_on_bin_true_is_incomplete"]),
    ("timeouts and job counts are checked", "harness/control.py",
     "    if not math.isfinite(seconds) or seconds <= 0:", "    if False:",
     [T + "test_bad_jobs_and_timeout_numbers"]),
    ("a pattern.toml expect table of the wrong type is one line", "harness/catalog.py",
     "        if not isinstance(per_checker, Mapping):", "        if False:",
     [T + "test_pattern_toml_with_a_wrong_type"]),
    ("a results.json that is not an object is one line", "harness/results.py",
     "    if not isinstance(data, dict):\n        raise LeakHarnessError(f\"{path}: not a leakharness results file",
     "    if False:\n        raise LeakHarnessError(f\"{path}: not a leakharness results file",
     [T + "test_report_on_a_results_json_that_is_not_an_object"]),
    # Issue 16: never a false clean, checked per checker.
    ("valgrind's rc files are in every valgrind checker's key (helgrind's too)", "harness/checkers/valgrind.py",
     '        return [os.path.expanduser("~/.valgrindrc"), str(Path(cwd) / ".valgrindrc")]', "        return []",
     [F + "test_helgrind_suppressions_removed_are_not_served_from_the_cache"]),
    ("valgrind's own files are in every valgrind checker's key", "harness/checkers/valgrind.py",
     '        valgrind = which("valgrind", env)\n        if valgrind:\n            files.append',
     '        valgrind = None\n        if valgrind:\n            files.append',
     [F + "test_helgrind_result_of_another_valgrind_is_not_served_from_the_cache"]),
    ("valgrind on a statically linked program is incomplete", "harness/checkers/valgrind.py",
     "    if elf.is_static(program):", "    if False:",
     [F + "test_memcheck_on_a_static_binary", F + "test_helgrind_on_a_static_binary",
      F + "test_memcheck_on_a_script_running_a_static_child"]),
    ("a cached result is reused only while every file the program read is unchanged", "harness/resultcache.py",
     "        if not inputs.stored_unchanged(data.get(\"inputs\")):",
     "        if False:",
     [F + "test_file_opened_by_a_fixed_name_appearing_runs_the_job_again",
      F + "test_file_opened_by_a_fixed_name_changing_runs_the_job_again"]),
    ("a result whose reads cannot all be known is not stored", "harness/resultcache.py",
     "        if why:\n            return why", "        if False:\n            return why",
     ["tests/test_cache_inputs.py::test_a_go_program_s_result_is_not_reused_and_the_output_says_why"]),
    ("a child the checker cannot follow makes the job incomplete", "harness/collect.py",
     "    reason = common_reason(g) or checker.incomplete(g) or unfollowed(g, checker)",
     "    reason = common_reason(g) or checker.incomplete(g)",
     [F + "test_residue_on_a_script_running_a_static_child", F + "test_memcheck_on_a_script_running_a_setuid_child",
      F + "test_memcheck_on_a_script_ignoring_its_setuid_childs_failure"]),
    ("a file that reached the output cap makes the job incomplete", "harness/collect.py",
     "    capped = _capped(g)", '    capped = ""',
     [F + "test_output_past_the_cap_with_sigxfsz_ignored_is_incomplete"]),
    ("the reaper outlives what it must kill: supervise signals the reaper, not its group",
     "harness/supervise.py", "                signal.pidfd_send_signal(self.pidfd, sig)",
     "                kill_group(self.proc.pid, signal.SIGKILL)",
     ["tests/test_reaper.py::test_timeout_leaves_nothing_running", "tests/test_reaper.py::test_interrupt_leaves_nothing_running"]),
    ("a blind spot the checker sees is stale", "harness/judge.py",
     '        if seen:\n            return Verdict("stale"', '        if False:\n            return Verdict("stale"',
     ["tests/test_outcomes.py::test_stale_blind_and_known_incomplete_in_every_output"]),
    ("a run that hangs by design is known incomplete, never a pass", "harness/judge.py",
     '        if result.status not in COMPLETE or result.status == "crashed":\n            what',
     '        if False:\n            what',
     ["tests/test_outcomes.py::test_stale_blind_and_known_incomplete_in_every_output"]),
    ("SARIF is written without the HTML report", "harness/control.py",
     "                sarif.write(results, out)", "                pass",
     ["tests/test_outcomes.py::test_sarif_without_the_html_report"]),
    ("a project build whose programs were replaced is built again, not reused", "harness/projectbuild.py",
     '            and _outputs_intact(done.parent / "b", record.get("outputs")))', "            and True)",
     [F + "test_a_projects_cached_program_replaced_is_built_again"]),
    ("a run an error stopped is written interrupted, never as a whole run", "harness/orchestrate.py",
     "        failure, interrupted = exc, True", "        failure, interrupted = exc, False",
     [T + "test_a_run_stopped_by_an_error_is_written_as_cut_short"]),
    ("a program linked with ASan but not compiled with it is never clean", "harness/checkers/sanitizers.py",
     "        return self.uninstrumented_code(g) or self._unchecked_child(g)", "        return self._unchecked_child(g)",
     [F + "test_a_program_linked_with_asan_but_not_compiled_with_it_is_not_clean"]),
    ("valgrind's own configuration cannot silence a forked child", "harness/checkers/valgrind.py",
     '"--trace-children=yes", "--child-silent-after-fork=no",', '"--trace-children=yes",',
     [F + "test_valgrinds_own_configuration_cannot_hide_a_forked_childs_leak"]),
    ("valgrind's own configuration cannot take the leak records out of the XML", "harness/checkers/valgrind.py",
     '"--show-mismatched-frees=yes",\n               "--xtree-leak=no")', '"--show-mismatched-frees=yes")',
     [F + "test_valgrinds_own_configuration_cannot_take_the_leaks_out_of_its_report"]),
    ("an option of valgrind's own configuration not known to be harmless is never clean",
     "harness/checkers/valgrind.py", "            if unknown:\n                return unless_found",
     "            if False:\n                return unless_found",
     [F + "test_valgrinds_own_configuration_not_known_to_be_harmless_is_not_clean"]),
    ("a Go build's key covers the files //go:embed compiles in", "harness/gobuild.py",
     "    for path in _embedded([*user, *tree]):", "    for path in ():",
     [F + "test_a_go_programs_build_changed_by_what_it_embeds_or_its_environment_builds_again[embedded file]"]),
    ("a Go build's key covers the environment cgo's compiler reads", "harness/gobuild.py",
     '    add("environment", *sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("CGO_") or k in _BUILD_ENV))',
     '    add("GOFLAGS", os.environ.get("GOFLAGS", ""))',
     [F + "test_a_go_programs_build_changed_by_what_it_embeds_or_its_environment_builds_again[CGO_CPPFLAGS]"]),
    ("the note of a program's libraries holds only while the folders the loader searched are unchanged",
     "harness/resultcache.py", "                    and all(_folder_stamp(f) == seen for f, seen in folders.items())):",
     "                    ):",
     [F + "test_a_library_put_ahead_in_the_loaders_search_is_an_input"]),
    ("the libraries loaded when a plugin is dlclosed are inputs", "harness/data/inputs.c",
     "    note_loaded(from);  /* before it goes: what the dlopen of this handle brought in */", "",
     [F + "test_a_library_a_dlopened_plugin_needs_is_an_input"]),
    ("a build's key covers the files the compiler reads that cc -M does not list", "harness/build.py",
     "        for path in _read_besides(files, (*self.cflags, *self.ldflags)):", "        for path in ():",
     [F + "test_a_file_the_compiler_reads_that_cc_m_does_not_list_rebuilds"]),
    ("a Go build's key covers what its C includes by a quoted name", "harness/gobuild.py",
     "    tree += _quoted_includes([*_user_files(spec), *tree])", "",
     [F + "test_a_go_programs_c_reached_by_include_or_link_is_in_its_build_key[included .inc]"]),
    ("a Go module's walk follows a linked package folder", "harness/gobuild.py",
     "    for folder, dirs, files in os.walk(root, followlinks=True):", "    for folder, dirs, files in os.walk(root):",
     [F + "test_a_go_programs_c_reached_by_include_or_link_is_in_its_build_key[linked package folder]"]),
    ("a sanitizer's checks cannot be turned off by the user's options", "harness/checkers/sanitizers.py",
     '                    ":poison_heap=1:poison_partial=1:', '                    ":poison_partial=1:',
     [F + "test_sanitizer_options_cannot_turn_a_check_off_unseen"]),
    ("the files a sanitizer's options name, however named, are inputs", "harness/checkers/sanitizers.py",
     '        return [symbolizer or "no-symbolizer", *option_files(env, cwd, program)]',
     '        return [symbolizer or "no-symbolizer"]',
     [F + "test_a_sanitizer_suppressions_file_however_named_is_an_input"]),
    ("a file a spawned child gets open is an input", "harness/data/inputs.c",
     "    note_open(from, AT_FDCWD, path, flags);\n    return REAL(posix_spawn_file_actions_addopen)",
     "    return REAL(posix_spawn_file_actions_addopen)",
     [F + "test_a_file_a_spawned_child_gets_open_is_an_input"]),
    ("a known entry with a line hash never covers a finding whose line could not be read", "harness/signatures.py",
     "    return w_stem == s_stem and (w_hash is None or w_hash == s_hash)",
     "    return w_stem == s_stem and (w_hash is None or s_hash is None or w_hash == s_hash)",
     ["tests/test_signatures.py::test_unreadable_source_falls_back_to_frames_and_stored_hash_is_kept"]),
    ("the same text on a later line of the file is another bug", "harness/signatures.py",
     "        if nth > 1:\n            text", "        if False:\n            text",
     ["tests/test_signatures.py::test_the_same_text_on_two_lines_names_two_bugs"]),
    ("nightly counts the records of a signature: more of them is a new bug", "harness/nightly.py",
     "            if before is not None:  # more records of a signature known last night: a new bug among them",
     "            if False:",
     [F + "test_nightly_says_a_second_leak_of_a_known_signature_is_new"]),
    ("an LSan line LSan would match on every leak is written for leakharness only", "harness/suppress.py",
     "        if _every_leak(pattern, f):", "        if False:",
     [F + "test_an_lsan_file_written_for_a_leak_in_main_hides_nothing_else_when_lsan_reads_it"]),
    ("a frame's relative source is found from the job's folder", "harness/collect.py",
     "    _name_sources_from_the_jobs_folder(g)\n", "",
     [F + "test_a_known_leak_of_a_prefix_mapped_build_run_from_a_sub_folder_accepts_it_alone"]),
    ("a file read through a process's /proc folder or a folder's descriptor is the file behind it",
     "harness/data/inputs.c", "    proc_link(buf);\n", "",
     [F + "test_a_file_reopened_through_proc_self_fd_is_an_input[proc-self-cwd]"]),
    ("a child program's compiled-in sanitizer options keep its result out of the cache", "harness/inputs.py",
     "            if compiled:\n                noted.add(sec.exe)", "            if False:\n                noted.add(sec.exe)",
     [F + "test_a_child_programs_compiled_in_sanitizer_options_are_never_a_stale_result"]),
    ("a Go program runs OpenSSL's cleanup before the leak check, as C's exit() does", "harness/gobuild.py",
     "\t{USER_MAIN}()\n\tC.leakharness_openssl_cleanup() // as C's exit() would, before the leak check",
     "\t{USER_MAIN}()\n\t// as C's exit() would, before the leak check",
     ["tests/test_go_exit.py::test_an_evp_md_reference_never_freed_is_lost_as_in_c"]),
]

_IGNORE = shutil.ignore_patterns(".git", ".venv", "reports", ".cache", ".pytest_cache", "__pycache__", "bench",
                                 "build", "dist", "*.egg-info")


def _copy_and_run(tmp_path: Path, guards: list[str], mutate=None, collect_only: bool = False) -> subprocess.CompletedProcess:
    """The guarding tests (FILE::KEYWORD), run against a copy of the repository (or only
    collected: which tests each guard names)."""
    copy = tmp_path / "repo"
    shutil.copytree(ROOT, copy, ignore=_IGNORE, symlinks=True)
    if mutate:
        mutate(copy)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "LEAKHARNESS"))}
    env["PYTHONPATH"] = str(copy)
    # A guard naming one parametrization (FILE::TEST[ID]) runs that one alone, by its node id (a
    # Go build per parameter is 10 s of CI); the others select by keyword, as a prefix may.
    if all("[" in g for g in guards):
        selection = sorted(set(guards))
    else:
        selection = [*sorted({g.split("::")[0] for g in guards}), "-k",
                     " or ".join(g.split("::")[1].split("[")[0] for g in guards)]
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q", "-rfEp",
         *(["--collect-only"] if collect_only else []), *selection],
        cwd=copy, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900,
        start_new_session=True)


# One quick guard of each guarding file the control runs in an unchanged copy: that the copy is a
# place where those files' tests run and pass (its imports, its conftest, its paths), so that a
# failure in a mutated copy is the mutation's doing.  Every guard itself runs, unmutated, in the
# suite: one that fails on the code as it is fails the suite there.  (The control ran every guard
# of tests/test_trust.py again: 80 s of CI's 20 minutes, for what the suite runs anyway.)
CONTROL = [T + "test_bad_jobs_and_timeout_numbers", F + "test_memcheck_on_a_static_binary",
           "tests/test_cache_inputs.py::test_an_incomplete_run_is_never_stored_even_with_a_whole_recording",
           "tests/test_outcomes.py::test_sarif_without_the_html_report"]


@pytest.mark.slow
def test_the_guarding_tests_pass_on_an_unchanged_copy(tmp_path):
    """The control: in a copy left as it is, every guard names a test (a renamed test would
    otherwise guard nothing), and a quick guard of each guarding file (CONTROL) passes there."""
    guards = sorted({g for m in MUTATIONS for g in m[4]})
    listed = _copy_and_run(tmp_path / "list", guards, collect_only=True).stdout
    for guard in guards:
        path, name = guard.split("::")
        assert f"{path}::{name}" in listed, f"{guard} names no test:\n{listed[-2000:]}"
    assert set(CONTROL) <= set(guards)
    proc = _copy_and_run(tmp_path / "run", CONTROL)
    passed = _lines(proc, "PASSED")
    for guard in CONTROL:
        assert any(guard.split("::")[1] in line for line in passed), f"{guard} did not pass:\n{proc.stdout[-3000:]}"
    assert proc.returncode == 0, proc.stdout[-3000:]


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
    failed = _lines(proc, "FAILED")
    still = [g for g in guards if not any(g.split("::")[1] in line for line in failed)]
    assert proc.returncode == 1 and not still, (
        f"without the fix ({what}), {', '.join(still)} still pass:\n{proc.stdout[-3000:]}")


def _lines(proc: subprocess.CompletedProcess, outcome: str) -> list[str]:
    """pytest -rA's short summary lines of one outcome (PASSED, FAILED)."""
    return [line for line in proc.stdout.splitlines() if line.startswith(outcome + " ")]
