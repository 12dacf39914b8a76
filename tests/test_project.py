"""Project files (leakharness.toml, [tool.leakharness]): what a team declares once and what every
verb then does with it, each run the way a user runs it (the real CLI from the project's folder).

- The file is untrusted input: every mistake is one line naming the file, the target and the key,
  exit 2; no path reaches out of the project root.
- A target reading stdin gets the given file, and its result is keyed by that file's content.
- A program its build did not instrument for a sanitizer is not checkable by it, with that reason
  (never clean); a build command that fails is one line with its output's tail.
- A build command runs once per build profile and not again for an unchanged project.
- `known` signatures are accepted (listed, not failing), and `suppressions --format known` writes them.
- --target, --catalog, --shard with report merging, --growth, JUnit; [tool.pytest.ini_options].
"""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from projectrun import errors, jobs, lh, line_of, one_line_error, pytest_in, results, said, write
from realrun import have

needs_valgrind = pytest.mark.skipif(not have("valgrind"), reason="needs valgrind")

LEAK_C = """
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>

    static char *remember(const char *text)
    {
        char *copy = malloc(strlen(text) + 1);
        strcpy(copy, text);
        return copy;
    }

    int main(int argc, char **argv)
    {
        int n = argc > 1 ? atoi(argv[1]) : 1;
        for (int i = 0; i < n; i++)
            printf("%s\\n", remember("fifteen bytes!"));
        return 0;
    }
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


# --- the file: found, checked, never trusted -----------------------------------------------------

@pytest.mark.parametrize("body, names", [
    ('[[target]]\nname = "a"\nsources = ["a.c"]\ncolour = "red"\n', ["[[target]] 'a'", "colour"]),
    ('[[target]]\nname = "a"\nsources = ["../outside.c"]\n', ["sources", "leads outside the project root"]),
    ('[[target]]\nname = "a"\nsources = ["/etc/passwd"]\n', ["sources", "is absolute"]),
    ('[[target]]\nname = "a"\nsources = ["link.c"]\n', ["sources", "leads outside the project root"]),
    ('[[target]]\nname = "a"\nsources = ["a.c"]\nstdin = "nothing.bin"\n', ["stdin", "no such file"]),
    ('[[target]]\nname = "a"\nsources = ["a.c"]\n[[target]]\nname = "a"\nprogram = "true"\n',
     ["two targets are named 'a'"]),
    ('[[target]]\nname = "a"\nbuild = "make"\n', ["[[target]] 'a'", "program", "is missing"]),
    ('[[target]]\nname = "a"\nbuild = "true"\nprogram = "{root}/../outside.c"\n',
     ["program", "leads outside the project root"]),
    ('[[target]]\nname = "a"\nbuild = "make CFLAGS={flags}"\nprogram = "{builddir}/a"\n', ["build", "{flags}"]),
    ('[[target]]\nname = "a"\ngo = "."\ntools = ["ubsan"]\n', ["tools", "ubsan cannot check a Go program"]),
    ('[[target]]\nname = "a"\nsources = ["a.c"]\nknown = ["not a signature"]\n', ["known", "not a finding's signature"]),
    ('[[target]]\nname = "a"\nsources = ["a.c"]\ntimeout = -1\n', ["timeout", "seconds above 0"]),
    ('[[target]]\nname = "a b"\nsources = ["a.c"]\n', ["name", "'a b'"]),
    ('[[target]]\nname = "a"\nsources = ["a.c"]\nenv = { "1X" = "y" }\n', ["env", "'1X'"]),
    ('tools = ["valgrind"]\n[[target]]\nname = "a"\nsources = ["a.c"]\n', ["tools", "unknown checker 'valgrind'"]),
    ('[[ctest]]\nsource_dir = "a.c"\n', ["[[ctest]] #1", "source_dir", "no such folder"]),
    ('[[target]\nname = "a"\n', ["not valid TOML"]),
    ('title = "nothing"\n', ["unknown key(s) title"]),
])
def test_every_mistake_is_one_line_naming_the_file_and_the_key(tmp_path, cache, body, names):
    project = write(tmp_path / "p", {"a.c": "int main(void) { return 0; }\n", "main.go": "package main\nfunc main() {}\n"})
    (tmp_path / "outside.c").write_text("int main(void) { return 0; }\n")
    (project / "link.c").symlink_to(tmp_path / "outside.c")
    (project / "leakharness.toml").write_text(body)
    line = one_line_error(lh("run", cwd=project, cache=cache), project / "leakharness.toml", *names)
    assert "Traceback" not in line


def test_found_walking_up_and_in_pyproject(tmp_path, cache):
    project = write(tmp_path / "p", {
        "pyproject.toml": """
            [project]
            name = "x"
            [tool.leakharness]
            tools = ["asan"]
            [[tool.leakharness.target]]
            name = "remember"
            sources = ["src/leak.c"]
        """,
        "src/leak.c": LEAK_C,
    })
    proc = lh("run", "--no-html", cwd=project / "src", cache=cache)  # from a folder below the root
    assert proc.returncode == 1, said(proc)
    assert f"project: {project / 'pyproject.toml'}" in proc.stdout
    assert "remember[asan]: 1 bug(s) in 1 record(s)" in proc.stdout
    assert (project / "reports" / "latest" / "results.json").is_file()  # under the root, not the folder below
    (project / "leakharness.toml").write_text('[[target]]\nname = "x"\nprogram = "true"\n')
    one_line_error(lh("run", cwd=project, cache=cache), "both leakharness.toml and pyproject.toml")


@pytest.mark.parametrize("spelling, error", [
    ('[tool]\nleakharness = { tools = ["asan"], target = [{ name = "remember", sources = ["src/leak.c"] }] }\n', None),
    ('tool.leakharness.tools = ["asan"]\ntool.leakharness.target = [{ name = "remember", sources = ["src/leak.c"] }]\n',
     None),
    ("[tool]\nleakharness = 5\n", "must be a table"),
    ("[tool.leakharness\ntools = []\n", "not valid TOML"),
])
def test_every_toml_spelling_of_the_pyproject_table_is_the_project(tmp_path, cache, spelling, error):
    """[tool.leakharness] was found by a look at table headers only: TOML's other spellings (an
    inline table under [tool], dotted keys) and a broken header ran the 388-job catalog instead."""
    project = write(tmp_path / "p", {"src/leak.c": LEAK_C})
    # (dotted keys before any table header: after one they would belong to that table)
    (project / "pyproject.toml").write_text(spelling + '[project]\nname = "x"\n')
    proc = lh("run", "--no-html", "--target", "remember", cwd=project, cache=cache)  # never the whole catalog
    if error:
        one_line_error(proc, "pyproject.toml", error)
    else:
        assert proc.returncode == 1 and "remember[asan]: 1 bug(s)" in proc.stdout, said(proc)


def test_two_targets_whose_names_differ_only_in_unsafe_characters_keep_their_own_pages(tmp_path, cache):
    """`dig+x` and `dig_x` are both valid target names, and made one file name: the leaky one's
    job file and page were overwritten by the clean one's, and both rows linked the clean page."""
    project = write(tmp_path / "p", {
        "leakharness.toml": """
            tools = ["asan"]
            [[target]]
            name = "dig+x"
            sources = ["src/leak.c"]
            [[target]]
            name = "dig_x"
            program = "true"
            tools = ["memcheck"]
        """,
        "src/leak.c": LEAK_C,
    })
    proc = lh("run", cwd=project, cache=cache)
    assert proc.returncode == 1, said(proc)
    out = project / "reports" / "latest"
    assert len(list((out / "jobs").glob("*.json"))) == 2
    pages = sorted(p.name for p in (out / "patterns").glob("*.html"))
    assert len(pages) == 2, pages
    index = (out / "index.html").read_text()
    links = set(re.findall(r'href="(patterns/[^"#]+)', index))
    assert len(links) == 2 and all((out / link).is_file() for link in links), links
    leaky = next(p for p in pages if p != "dig_x.html")
    assert "dig+x" in (out / "patterns" / leaky).read_text()


def test_without_a_project_file_run_is_the_catalog_and_target_is_refused(tmp_path, cache):
    proc = lh("run", "--target", "x", cwd=tmp_path, cache=cache)
    one_line_error(proc, "--target x", "no leakharness.toml")
    write(tmp_path, {"leakharness.toml": '[[target]]\nname = "ok"\nprogram = "true"\n'})
    one_line_error(lh("run", "--target", "nope", cwd=tmp_path, cache=cache), "--target nope", "targets: ok")
    one_line_error(lh("run", "--catalog", "--target", "ok", cwd=tmp_path, cache=cache), "--target")
    proc = lh("run", "--catalog", "--pattern", "x509_name_oneline", "--tool", "asan", "--no-html", cwd=tmp_path,
              cache=cache)
    assert proc.returncode == 0, said(proc)
    assert {j["pattern"] for j in results(tmp_path / "reports" / "latest")["jobs"]} == {"x509_name_oneline"}


# --- stdin, instrumentation, builds ---------------------------------------------------------------------

@needs_valgrind
def test_a_target_reading_stdin_gets_the_file_and_its_result_is_keyed_by_it(tmp_path, cache):
    project = write(tmp_path / "p", {
        "leakharness.toml": """
            [[target]]
            name = "echo"
            program = "cat"                 # a program on PATH, run as it is
            stdin = "data/request.txt"
            tools = ["memcheck"]
        """,
        "data/request.txt": "GET / HTTP/1.0\n",
    })
    proc = lh("run", "--no-html", cwd=project, cache=cache)
    assert proc.returncode == 0, said(proc)
    out = project / "reports" / "latest"
    stdout = out / "logs" / "echo" / "check" / "memcheck" / "stdout.txt"
    assert stdout.read_text() == "GET / HTTP/1.0\n"
    again = lh("run", "--no-html", cwd=project, cache=cache)
    assert jobs(out)["echo[memcheck]"]["cached"], said(again)
    (project / "data" / "request.txt").write_text("POST / HTTP/1.0\n")  # same size, other bytes
    lh("run", "--no-html", cwd=project, cache=cache)
    assert not jobs(out)["echo[memcheck]"]["cached"]
    assert stdout.read_text() == "POST / HTTP/1.0\n"


@needs_valgrind
def test_a_build_that_ignores_the_flags_is_not_checkable_by_asan_and_a_failed_build_is_one_line(tmp_path, cache):
    project = write(tmp_path / "p", {
        "leakharness.toml": """
            [[target]]
            name = "plain"                  # built with its own flags only: not instrumented for asan
            build = "gcc -g -O0 -o {builddir}/plain leak.c"
            program = "{builddir}/plain"

            [[target]]
            name = "broken"
            build = "make -C nowhere"
            program = "{builddir}/broken"
            tools = ["asan"]
        """,
        "leak.c": LEAK_C,
        "nowhere/Makefile": "all:\n\t@echo compiling broken.c\n\t@false\n",
    })
    proc = lh("run", "--no-html", cwd=project, cache=cache)
    assert proc.returncode == 2, said(proc)  # a build failed: a set-up error, as check says it
    by_name = jobs(project / "reports" / "latest")
    asan = by_name["plain[asan]"]
    assert asan["status"] == "incomplete"
    assert "is not built with -fsanitize=address: asan cannot check it" in asan["message"]
    assert "plain[asan]: incomplete" in proc.stdout and "is not built with -fsanitize=address" in proc.stdout
    assert by_name["plain[memcheck]"]["status"] == "ok"
    assert len(errors(by_name["plain[memcheck]"])) == 1  # memcheck needs no instrumentation
    broken = by_name["broken[asan]"]
    assert broken["status"] == "build-failed"
    assert len(broken["message"].splitlines()) == 1, broken["message"]
    assert "make -C nowhere" in broken["message"] and "compiling broken.c" in broken["message"]
    assert "Error 1" in broken["message"]  # make's last words: the output's tail


def test_a_build_runs_once_per_profile_and_not_again_for_an_unchanged_project(tmp_path, cache):
    counter = tmp_path / "builds.txt"
    project = write(tmp_path / "p", {
        "leakharness.toml": f"""
            tools = ["asan", "asan-O2"]
            [[target]]
            name = "counted"
            build = "sh -c 'echo {{cflags}} >> {counter}; exec gcc {{cflags}} -o {{builddir}}/counted leak.c {{ldflags}}'"
            program = "{{builddir}}/counted"
        """,
        "leak.c": LEAK_C,
    })
    first = lh("run", "--no-html", cwd=project, cache=cache)
    assert first.returncode == 1, said(first)
    assert sorted(counter.read_text().splitlines()) == sorted(["-g -O0 -fsanitize=address -fno-omit-frame-pointer",
                                                              "-g -O2 -fsanitize=address -fno-omit-frame-pointer"])
    lh("run", "--no-html", cwd=project, cache=cache)
    assert len(counter.read_text().splitlines()) == 2  # unchanged: not built again
    (project / "leak.c").write_text((project / "leak.c").read_text() + "\n/* edited */\n")
    lh("run", "--no-html", cwd=project, cache=cache)
    assert len(counter.read_text().splitlines()) == 4  # a source changed: both profiles again


# --- known, suppressions, shards, growth, CI outputs ---------------------------------------------------

def test_known_signatures_are_accepted_and_suppressions_writes_them(tmp_path, cache):
    project = write(tmp_path / "p", {
        "leakharness.toml": """
            [[target]]
            name = "remember"
            sources = ["leak.c"]
            tools = ["asan"]
        """,
        "leak.c": LEAK_C,
    })
    proc = lh("run", "--no-html", cwd=project, cache=cache)
    assert proc.returncode == 1, said(proc)
    proc = lh("suppressions", "reports/latest", "--format", "known", "--out", "known.toml", cwd=project, cache=cache)
    assert proc.returncode == 0 and "1 known signature(s) written" in proc.stdout, said(proc)
    listed = (project / "known.toml").read_text()
    line = line_of(project / "leak.c", "char *copy = malloc(strlen(text) + 1);")
    assert re.search(r'"leak:remember>main@[0-9a-f]{6}",  # \[asan\] leak \(definite\) 15 B', listed), listed
    # Pasted into its [[target]] (the last table of the file), the leak is accepted: listed, not failing.
    with open(project / "leakharness.toml", "a") as fh:
        fh.write(listed)
    proc = lh("run", "--no-html", cwd=project, cache=cache)
    assert proc.returncode == 0, said(proc)
    assert "remember[asan]: clean, 1 known finding(s) accepted" in proc.stdout
    assert f"known, accepted: [lsan] leak (definite) 15 B at remember leak.c:{line}" in proc.stdout


@needs_valgrind
def test_shards_merge_into_the_whole_run_with_junit_names_per_target(tmp_path, cache):
    names = ["alpha", "beta", "gamma", "delta"]
    project = write(tmp_path / "p", {
        "leakharness.toml": "tools = [\"memcheck\"]\n" + "".join(
            f'[[target]]\nname = "{n}"\nprogram = "true"\n' for n in names),
    })
    for k in (1, 2):  # two machines, each with a cache of its own (no durations remembered: the same split)
        proc = lh("run", "--shard", f"{k}/2", "--out", f"shard{k}", "--junit", f"shard{k}.xml", cwd=project,
                  cache=tmp_path / f"machine{k}")
        assert proc.returncode == 0, said(proc)
    parts = [set(jobs(project / f"shard{k}")) for k in (1, 2)]
    assert parts[0] and parts[1] and not parts[0] & parts[1]
    proc = lh("report", "shard1", "shard2", "--out", "all", "--summary-md", "summary.md", cwd=project, cache=cache)
    assert proc.returncode == 0, said(proc)
    assert set(jobs(project / "all")) == {f"{n}[memcheck]" for n in names}
    assert "4 job(s)" in (project / "summary.md").read_text()
    cases = list(ET.parse(project / "shard1.xml").getroot().iter("testcase"))
    assert {c.get("name") for c in cases} == {"[memcheck]"}
    assert {c.get("classname") for c in cases} <= {f"check.{n}" for n in names}


def test_growth_fits_targets_whose_args_hold_n(tmp_path, cache):
    project = write(tmp_path / "p", {
        "leakharness.toml": """
            [[target]]
            name = "per-request"
            sources = ["leak.c"]
            args = ["{n}"]
            n = 3
            tools = ["asan"]
        """,
        "leak.c": LEAK_C,
    })
    proc = lh("run", "--no-html", cwd=project, cache=cache)
    (leak,) = errors(jobs(project / "reports" / "latest")["per-request[asan]"])
    assert leak["bytes"] == 45 and leak["blocks"] == 3, said(proc)  # {n} is the target's n in an ordinary run
    proc = lh("run", "--no-html", "--growth", "--growth-iterations", "1,2,5", cwd=project, cache=cache)
    assert proc.returncode == 1, said(proc)
    (entry,) = results(project / "reports" / "latest")["growth"]
    assert entry["pattern"] == "per-request" and entry["checker"] == "asan" and entry["status"] == "ok"
    assert entry["total"]["rate_per_op"] == pytest.approx(15)
    assert entry["total"]["points"] == [[1, 15], [2, 30], [5, 75]]


# --- pytest ---------------------------------------------------------------------------------------------

def test_pytest_options_come_from_the_ini_file(tmp_path, cache):
    project = write(tmp_path / "p", {
        "leakharness.toml": """
            [[target]]
            name = "remember"
            sources = ["leak.c"]
            [[target]]
            name = "other"
            program = "true"
        """,
        "leak.c": LEAK_C,
        "pyproject.toml": """
            [tool.pytest.ini_options]
            leak_tools = "asan"
            leak_targets = "remember"
            leak_report = "reports/from-ini"
        """,
    })
    proc = pytest_in("-p", "no:cacheprovider", "-rA", cwd=project, cache=cache)
    assert proc.returncode == 1, said(proc)
    assert re.findall(r"^(?:PASSED|FAILED) (\S+)", proc.stdout, re.M) == ["leakharness.toml::remember[asan]"]
    assert "remember[asan]: errors: 1 bug(s) in 1 record(s)" in proc.stdout
    assert set(jobs(project / "reports" / "from-ini")) == {"remember[asan]"}
    proc = pytest_in("-p", "no:cacheprovider", "--leak-tools", "memcheck", "--collect-only", "-q", cwd=project,
                     cache=cache)
    assert "leakharness.toml::remember[memcheck]" in proc.stdout, said(proc)  # the command line wins


def test_a_targets_relative_flags_are_the_project_roots_from_any_folder_below_it(tmp_path, cache):
    """`cflags = ["-Iinclude"]`, `ldflags = ["-Llib", "-ldup", "lib/extra.o"]`: the project root's
    folders and files, whichever folder below the root `leakharness run` starts in (the compiler
    found nothing from src/ when they were taken from the folder it ran in)."""
    root = write(tmp_path / "proj", {
        "leakharness.toml": """
            tools = ["asan"]
            [[target]]
            name = "dup"
            sources = ["src/main.c"]
            cflags = ["-Iinclude"]
            ldflags = ["-Llib", "-ldup", "lib/extra.o"]
            """,
        "include/dup.h": "char *dup_string(const char *s);\nint extra(void);\n",
        "src/main.c": """
            #include <stdio.h>
            #include <stdlib.h>
            #include "dup.h"
            int main(void) {
                char *p = dup_string("hello");
                printf("%s %d\\n", p, extra());
                fflush(stdout); /* before LeakSanitizer's exit */
                return 0; /* p is never freed */
            }
            """,
        "lib/extra.c": "int extra(void) { return 7; }\n",
    })
    (root / "lib" / "dup.c").write_text((Path(__file__).parent / "programs" / "false_clean" / "linked" / "dup.c").read_text())
    for argv in (["gcc", "-g", "-c", "lib/dup.c", "-o", "lib/dup.o"], ["ar", "rcs", "lib/libdup.a", "lib/dup.o"],
                 ["gcc", "-g", "-c", "lib/extra.c", "-o", "lib/extra.o"]):
        assert subprocess.run(argv, cwd=root, stdin=subprocess.DEVNULL, capture_output=True, timeout=120).returncode == 0
    for n, where in enumerate((root / "src", root)):
        out = tmp_path / f"out{n}"
        proc = lh("run", "--out", out, cwd=where, cache=cache)
        job = jobs(out)["dup[asan]"]
        assert proc.returncode == 1 and job["status"] == "ok", said(proc)
        assert [(f["bytes"], f["stack"][1]["function"]) for f in job["findings"]
                if f["category"] == "leak"] == [(6, "dup_string")], said(proc)
        assert job["cached"] is (n == 1), said(proc)  # the same build and result from the root
        if n == 0:  # extra.o linked in
            assert [p.read_text() for p in out.glob("logs/**/stdout.txt")] == ["hello 7\n"], said(proc)
