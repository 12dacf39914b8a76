"""The `leakharness` command: argument parsing and output only; the work is behind the Session
(control.py).

`run` and `nightly` work on the project file found in the working folder or above it
(leakharness.toml, or pyproject.toml's [tool.leakharness]: project.py), or on the built-in catalog
(--catalog, or no project file).

Exit codes: 0 all well; 1 an expectation failed (`run` of the catalog) or a memory error or leak
was found (`check`, `run` in a project); 2 a usage or set-up error (bad option, bad input or
project file, a program that would not build, a checker not installed); 3 a job could not be
fully checked (`incomplete`: timeout, crash without a report, checker that did not start, log cut
short...) and nothing else failed; 130 interrupted.  Errors a user can cause (LeakHarnessError) are one line on stderr, never a
traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from .errors import LeakHarnessError, os_problem


def cmd_parse(args) -> int:
    if args.format == "text":
        from .parsers import parse_files
        from .report.text import findings_table

        logs, errors = parse_files(args.files)  # grouping by root cause needs every finding
        for err in errors:  # first, and alone when nothing parsed
            print(f"leakharness: {err}", file=sys.stderr)
        if errors and not logs:
            return 2
        findings_table(logs, sys.stdout)
        streams = [(log, len(log.findings)) for log in logs]
    else:
        from .errors import ParseError
        from .parsers import LogStream
        from .report.findings_json import FindingsWriter, write_log

        opened, errors = [], []
        for path in args.files:  # every file looked at first: an error is never after a list
            try:
                opened.append(LogStream(path, fields=True))
            except ParseError as exc:
                errors.append(exc)
        for err in errors:
            print(f"leakharness: {err}", file=sys.stderr)
        if errors and not opened:
            return 2
        import gc

        # Written as they are read: no finding is held, and none of what is made here forms a
        # reference cycle, so the cycle collector (a few percent of a big file's time, walking
        # the parser's caches again and again) is paused meanwhile.
        gc.disable()
        try:
            writer = FindingsWriter(sys.stdout)
            for stream in opened:
                write_log(writer, stream)
            writer.close()
        finally:
            gc.enable()
        streams = [(stream.log, stream.found) for stream in opened]
    sys.stdout.flush()
    for log, found in streams:
        if log.partial or log.problems:
            note = "; ".join(log.problems) or "cut short"
            print(f"leakharness: {log.path}: partial: {note}; kept {found} finding(s)", file=sys.stderr)
    return 2 if errors else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leakharness",
        description="Find, compare and report memory errors in C programs that use OpenSSL.",
    )
    parser.add_argument("--version", action="version", version=f"leakharness {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("parse", help="turn valgrind XML files and sanitizer logs into findings")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--format", choices=("json", "text"), default="json")
    p.set_defaults(func=cmd_parse)

    p = sub.add_parser("run", help="run the project's targets (leakharness.toml here or above), or the catalog, "
                                   "under the checkers, in parallel")
    p.add_argument("--target", action="append", default=[], metavar="NAME",
                   help="only this target of the project file (repeatable; a test CTest lists is one too)")
    p.add_argument("--catalog", action="store_true",
                   help="run the built-in catalog even where a project file is (--pattern and --fixtures imply it)")
    p.add_argument("--pattern", action="append", default=[], metavar="ID", help="only this pattern (repeatable)")
    p.add_argument("--tool", action="append", default=[], metavar="CHECKER",
                   help="only this checker (repeatable): memcheck, memcheck-O2, asan, asan-O2, ubsan, tsan, msan; "
                        "for the Go patterns memcheck, go-asan, cgocheck")
    _add_run_options(p, "reports/latest")
    p.add_argument("--fixtures", type=Path, help="a fixtures folder other than the built-in catalog")
    p.add_argument("--growth", action="store_true",
                   help="also run each leaking pattern's leaky variant (a project: each target whose args hold "
                        "{n}) at several iteration counts and fit bytes = fixed + rate x iterations, per signature "
                        "and in total (results.json \"growth\")")
    p.add_argument("--growth-iterations", default="1,2,4", metavar="N,N,...",
                   help="the iteration counts of --growth (default 1,2,4)")
    p.add_argument("--growth-tool", default="asan", metavar="CHECKER", help="the checker of --growth (default asan)")
    p.add_argument("--shard", metavar="K/N", default=None,
                   help="run only the K-th of N parts of the catalog (a stable split by job name, balanced by "
                        "--durations when given); merge the parts with `leakharness report`")
    p.add_argument("--durations", type=Path, default=None, metavar="FILE",
                   help="balance --shard by these durations (a JSON object, job -> seconds, e.g. a frozen copy of "
                        "a cache's durations.json); every shard of a run must get the same file")
    p.add_argument("--run-id", default=None, metavar="ID",
                   help="name this run in results.json (e.g. the CI run's id): a merge checks that its shards "
                        "are of one run (default: the plan's own hash)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("nightly", help="run the project's targets (or the catalog) into a history of nights, compare "
                                       "with the last one, and rewrite the history's index with trends")
    p.add_argument("--history", type=Path, required=True, metavar="DIR", help="the history folder (one sub-folder a night)")
    p.add_argument("--keep", type=int, default=None, metavar="N", help="keep the N newest nights, delete older ones")
    p.add_argument("--target", action="append", default=[], metavar="NAME",
                   help="only this target of the project file (repeatable)")
    p.add_argument("--catalog", action="store_true",
                   help="run the built-in catalog even where a project file is (--pattern and --fixtures imply it)")
    p.add_argument("--pattern", action="append", default=[], metavar="ID", help="only this pattern (repeatable)")
    p.add_argument("--tool", action="append", default=[], metavar="CHECKER", help="only this checker (repeatable)")
    for flag, kw in (("-j", dict(dest="jobs", type=int, default=None, metavar="N", help="jobs at once")),
                     ("--timeout", dict(type=float, default=None, metavar="S", help="seconds per job")),
                     ("--cache", dict(type=Path, default=None, metavar="DIR", help="build and result cache")),
                     ("--fixtures", dict(type=Path, default=None, help="a fixtures folder other than the built-in catalog"))):
        p.add_argument(flag, **kw)
    p.add_argument("--fresh", action="store_true", help="ignore cached results")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _add_ci_options(p)
    p.set_defaults(func=cmd_nightly)

    p = sub.add_parser("check", help="run your own program (or build your sources) under the checkers",
                       usage="leakharness check [options] -- PROGRAM [ARGS...]\n"
                             "       leakharness check --build FILE.c [FILE.c ...] [options] [-- ARGS...]")
    p.add_argument("--build", nargs="+", type=Path, metavar="FILE.c",
                   help="compile these sources per checker: C files, or Go files (main.go) or the folder of a "
                        "Go package using cgo")
    p.add_argument("--cflags", default="", help="extra compiler flags for --build (one string)")
    p.add_argument("--ldflags", default="", help="extra linker flags for --build (one string)")
    p.add_argument("--growth", default=None, metavar="ARG-TEMPLATE",
                   help="also run the program at several iteration counts, the template giving the arguments "
                        "that set the count ('--requests {n}'), and fit bytes = fixed + rate x n")
    p.add_argument("--growth-iterations", default="1,2,4", metavar="N,N,...",
                   help="the iteration counts of --growth (default 1,2,4)")
    p.add_argument("--tool", action="append", default=[], metavar="CHECKER",
                   help="checker (repeatable); default memcheck, plus asan with --build of C sources; "
                        "memcheck, go-asan and cgocheck for Go sources")
    p.add_argument("--secret", action="append", default=[], metavar="HEX",
                   help="for --tool residue: bytes the program's secrets hold, in hex (8 bytes or more; repeatable)")
    p.add_argument("--secrets-file", type=Path, metavar="FILE",
                   help="for --tool residue: secrets, one hex string a line (# comments)")
    _add_run_options(p, "reports/check")
    p.add_argument("program", nargs=argparse.REMAINDER, help="-- PROGRAM [ARGS...]")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("report", help="render (and merge) results directories or log files into one HTML report")
    p.add_argument("inputs", nargs="+", type=Path, metavar="DIR",
                   help="results directories (shards of one run are merged), or valgrind XML / sanitizer logs")
    p.add_argument("--out", type=Path, required=True, metavar="OUT",
                   help="the report folder to write (new, empty, or one leakharness wrote)")
    p.add_argument("--suppressions", type=Path, action="append", default=[], metavar="FILE",
                   help="mark the findings these suppressions match as suppressed")
    p.add_argument("--fixtures", type=Path, help="a fixtures folder other than the built-in catalog")
    _add_ci_options(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("suppressions", help="write suppressions for a run's findings (a baseline)")
    p.add_argument("results", type=Path, metavar="DIR")
    p.add_argument("--format", choices=("valgrind", "lsan", "known"), default="valgrind",
                   help="valgrind or LSan suppressions, or `known` lists for a project file's targets")
    p.add_argument("--out", type=Path, default=None, metavar="FILE", help="write here instead of stdout")
    p.set_defaults(func=cmd_suppressions)

    p = sub.add_parser("cache", help="what the build and result cache holds, or clear it")
    p.add_argument("action", choices=("info", "clear"))
    p.add_argument("--cache", type=Path, default=None, metavar="DIR", help="the cache (default ~/.cache/leakharness)")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("list", help="list the patterns of the catalog")
    p.add_argument("--fixtures", type=Path, help="a fixtures folder other than the built-in catalog")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("checkers", help="list the checkers: family, languages, build flags, what each cannot see")
    p.set_defaults(func=cmd_checkers)

    p = sub.add_parser("explain", help="what the catalog knows of a bug: the pattern it looks like and the "
                                       "call that fixes it, for a signature or every bug of a results folder")
    p.add_argument("what", metavar="SIGNATURE|RESULTS", help="a signature (leak:f>g>h@hash), or a results folder "
                                                             "or its results.json")
    p.add_argument("--fixtures", type=Path, help="a fixtures folder other than the built-in catalog")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("knowledge", help="learn what the catalog's patterns look like from a run of the catalog "
                                         "(the file `explain`, `check` and the report match findings against)")
    p.add_argument("results", type=Path, metavar="RESULTS", help="the results folder of `leakharness run`")
    p.add_argument("--out", type=Path, required=True, metavar="FILE",
                   help="the knowledge file to write (the shipped one: harness/data/knowledge.json; "
                        "another is used when LEAKHARNESS_KNOWLEDGE names it)")
    p.add_argument("--fixtures", type=Path, help="a fixtures folder other than the built-in catalog")
    p.set_defaults(func=cmd_knowledge)

    p = sub.add_parser("bisect", help="the first commit of a git repository where a bug appears (git bisect run "
                                      "in a worktree of its own, each commit built and checked through the cache)",
                       usage="leakharness bisect --good REV [--bad REV] [--signature SIG] --build FILE.c ... "
                             "[options] [-- ARGS...]\n"
                             "       leakharness bisect --good REV [--bad REV] [--build-command CMD] [options] "
                             "-- PROGRAM [ARGS...]\n"
                             "       leakharness bisect --good REV [--bad REV] --target NAME [options]")
    p.add_argument("--good", required=True, metavar="REV", help="a commit without the bug")
    p.add_argument("--bad", default="HEAD", metavar="REV", help="a commit with it (default HEAD)")
    p.add_argument("--signature", default=None, metavar="SIG",
                   help="the bug to look for (default: any memory error or definite or indirect leak the good "
                        "commit did not have)")
    p.add_argument("--target", default=None, metavar="NAME", help="a target of the project file (leakharness.toml)")
    p.add_argument("--build", nargs="+", default=[], metavar="FILE.c", help="sources to compile per checker, as check --build")
    p.add_argument("--build-command", default=None, metavar="CMD",
                   help="run at each commit before checking (split like a shell, run without one), e.g. 'make app'; "
                        "a commit where it fails is skipped")
    p.add_argument("--cflags", default="", help="extra compiler flags for --build (one string)")
    p.add_argument("--ldflags", default="", help="extra linker flags for --build (one string)")
    p.add_argument("--tool", action="append", default=[], metavar="CHECKER",
                   help="checker (repeatable); default as check: memcheck, plus asan with --build of C sources")
    p.add_argument("-j", "--jobs", type=int, default=None, metavar="N", help="jobs at once (default: all cores)")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="seconds per job (default 120)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="keep each commit's results in DIR/steps/<commit>/ (default: a temporary folder)")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR", help="build and result cache (default ~/.cache/leakharness)")
    p.add_argument("--cc", default="gcc", help="compiler (gcc, clang)")
    p.add_argument("--suppressions", type=Path, action="append", default=[], metavar="FILE",
                   help="valgrind or LSan suppressions: the bugs they match are not looked for")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("program", nargs=argparse.REMAINDER, help="-- PROGRAM [ARGS...] (with --build: -- ARGS...)")
    p.set_defaults(func=cmd_bisect)

    p = sub.add_parser("show", help="print a pattern's rendered source, or its leaky-to-fixed diff")
    p.add_argument("pattern", metavar="ID")
    p.add_argument("--variant", choices=("leaky", "fixed"), default="leaky")
    p.add_argument("--diff", action="store_true", help="the fix, as a unified diff from leaky to fixed")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a template parameter (repeatable), e.g. --param iterations=4")
    p.add_argument("--fixtures", type=Path, help="a fixtures folder other than the built-in catalog")
    p.set_defaults(func=cmd_show)
    return parser


def _add_run_options(p, default_out: str) -> None:
    p.add_argument("-j", "--jobs", type=int, default=None, metavar="N", help="jobs at once (default: all cores)")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="seconds per job (default 120)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help=f"results folder: new, empty or one leakharness wrote (default {default_out})")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR", help="build and result cache (default ~/.cache/leakharness)")
    p.add_argument("--fresh", action="store_true", help="ignore cached results: run every job again")
    p.add_argument("--cc", default="gcc", help="compiler (gcc, clang)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--suppressions", type=Path, action="append", default=[], metavar="FILE",
                   help="valgrind or LSan suppressions: matching findings are reported as suppressed, not failing")
    p.add_argument("--no-html", action="store_true", help="write results.json only, no HTML report")
    _add_ci_options(p)


def _add_ci_options(p) -> None:
    p.add_argument("--junit", type=Path, default=None, metavar="FILE",
                   help="also write a JUnit XML file (one testcase per job, named as the pytest plugin names them)")
    p.add_argument("--summary-md", type=Path, default=None, metavar="FILE",
                   help="also write a short Markdown summary (for a CI job summary)")


def _write_ci_outputs(args, session, results, title: str, notes: Sequence[str] = ()) -> None:
    """notes: lines the Markdown summary starts with (what the terminal said of the run as a whole)."""
    if args.junit:
        from .report.junit import write_junit

        print(f"junit: {write_junit(results, _user_path(session, args.junit))}")
    if args.summary_md:
        from .report.markdown import write_summary_md

        print(f"summary: {write_summary_md(results, _user_path(session, args.summary_md), title=title, notes=notes)}")


def _user_path(session, path: Path) -> Path:
    from .control import _absolute

    target = _absolute(path, session.cwd)
    if not target.parent.is_dir():
        raise LeakHarnessError(f"{target}: no such folder {target.parent}")
    return target


def _session(args, **extra):
    from .control import Session

    return Session(out=getattr(args, "out", None), cache=getattr(args, "cache", None),
                   jobs=getattr(args, "jobs", None), timeout=getattr(args, "timeout", None),
                   fresh=getattr(args, "fresh", False), cc=getattr(args, "cc", "gcc"),
                   suppressions=getattr(args, "suppressions", ()), progress=not getattr(args, "quiet", False),
                   fixtures=getattr(args, "fixtures", None), **extra)


def cmd_report(args) -> int:
    from .report.text import merge_notes

    session = _session(args)
    index = session.report(args.inputs, args.out)
    print(f"report: {index}")
    results = session.reported
    # Parts of a run that are missing, or a run cut short: said, and not exit 0 (3: not all checked).
    notes = merge_notes(results)
    if args.junit or args.summary_md:  # of the merged results, e.g. the shards of a CI run
        _write_ci_outputs(args, session, results, "leakharness report", notes=[n for n in notes if n[:1] != " "])
    for line in notes:
        print(f"leakharness: {line}", file=sys.stderr)
    return 3 if notes else 0


def cmd_suppressions(args) -> int:
    session = _session(args)
    text, count, skipped = session.baseline(args.results, args.format)
    if args.out:
        target = session.write_file(args.out, text)
        print(f"{count} {'known signature' if args.format == 'known' else 'suppression'}(s) written to {target}")
    else:
        sys.stdout.write(text)
    if skipped:
        from .suppress import left_out

        print(f"leakharness: {args.results}: {left_out(skipped)}", file=sys.stderr)
    return 0


def cmd_cache(args) -> int:
    session = _session(args)
    if args.action == "clear":
        freed = session.cache_clear()
        print(f"cleared {session.cache} ({freed / (1 << 20):.1f} MiB)")
        return 0
    info = session.cache_info()
    print(f"cache: {info['path']}\n  {info['results']} result(s), {info['builds']} build(s), "
          f"{info['pch']} precompiled header(s), {info['libs'] + info['cgo-preambles']} note(s): "
          f"{info['bytes'] / (1 << 20):.1f} MiB of {info['max_bytes'] / (1 << 20):.0f} MiB "
          f"(least recently used entries go first; set LEAKHARNESS_CACHE_MAX in MiB)\n"
          f"  clear it with: leakharness cache clear")
    return 0


def _check_checkers(names: list[str]) -> tuple[str, ...]:
    from . import checkers

    for name in names:
        if not checkers.known(name):
            raise LeakHarnessError(f"--tool {name}: unknown checker (one of {', '.join(checkers.names())})")
    return tuple(names)


def _install_sigterm() -> None:
    """SIGTERM (a plain `kill`) stops a run the way Ctrl-C does: jobs killed, results kept."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def _project_of(args, session):
    """The project file's targets to run, or None for the catalog: --catalog (or --pattern,
    --fixtures) asks for the catalog; a folder with no project file here or above runs it too."""
    if args.catalog or args.pattern or getattr(args, "fixtures", None):
        if args.target:
            raise LeakHarnessError("--target names a project's targets; --catalog, --pattern and --fixtures are "
                                   "for the built-in catalog: give one or the other")
        return None
    project = session.project()
    if project is None and args.target:
        raise LeakHarnessError(f"--target {args.target[0]}: no leakharness.toml (nor pyproject.toml with "
                               f"[tool.leakharness]) in {session.cwd} or a folder above it")
    return project


def cmd_run(args) -> int:
    from .orchestrate import Interrupted

    checkers = _check_checkers(args.tool) or None
    session = _session(args)
    project = _project_of(args, session)
    patterns = session.catalog(args.pattern or None) if project is None else None
    _install_sigterm()
    shard = None
    if args.shard is not None:  # `--shard ""` is a mistake, not "everything"
        from .shard import parse_shard

        shard = parse_shard(args.shard)
    try:
        growth = None
        if args.growth:
            from .growthrun import parse_counts

            growth = (_check_checkers([args.growth_tool])[0], parse_counts(args.growth_iterations))
        if project is not None:
            print(f"project: {project.file}", flush=True)
            results = session.run_project(project, args.target, checkers, html=not args.no_html, shard=shard,
                                          growth=growth, durations=args.durations, run_id=args.run_id)
        else:
            results = session.run_catalog(patterns, checkers, html=not args.no_html, shard=shard, growth=growth,
                                          durations=args.durations, run_id=args.run_id)
    except Interrupted as exc:
        print(f"leakharness: {exc}", file=sys.stderr)
        return 130
    from .judge import check_exit_code, exit_code
    from .report.text import check_summary, run_summary

    from .report.text import growth_lines

    if project is not None:  # targets have no expectation: each is clean, has bugs, or was not checked
        out = session.project_out(project)
        check_summary(results, out / "results.json", sys.stdout)
        unfinished = growth_lines(results, sys.stdout)
        if session.html_path:
            print(f"report: {session.html_path}")
        _write_ci_outputs(args, session, results, "leakharness run", notes=unfinished)
        return check_exit_code(results.jobs) or (3 if unfinished else 0)
    out = session.out_dir("reports/latest")
    run_summary(results, out / "results.json", sys.stdout)
    unfinished = growth_lines(results, sys.stdout)
    if session.html_path:
        print(f"report: {session.html_path}")
    _write_ci_outputs(args, session, results, "leakharness run", notes=unfinished)
    # A growth fit that did not complete is not a pass: 3 (not fully checked) unless something failed.
    return exit_code(results.jobs) or (3 if unfinished else 0)


def cmd_nightly(args) -> int:
    from .nightly import nightly
    from .orchestrate import Interrupted

    checkers = _check_checkers(args.tool) or None
    session = _session(args)
    project = _project_of(args, session)
    patterns = session.catalog(args.pattern or None) if project is None else None
    run = None
    if project is not None:
        print(f"project: {project.file}", flush=True)
        run = lambda tonight: tonight.run_project(project, args.target, checkers, html=True)  # noqa: E731
    _install_sigterm()
    try:
        outcome = nightly(session, args.history, keep=args.keep, patterns=patterns, checkers=checkers, run=run)
    except Interrupted as exc:
        print(f"leakharness: {exc}", file=sys.stderr)
        return 130
    from .report.text import check_summary, run_summary
    from .results import load_results

    results = load_results(outcome.night_dir)
    (check_summary if project is not None else run_summary)(results, outcome.night_dir / "results.json", sys.stdout)
    # Each new bug by its signature and where it is, after the comparison's own lines.
    headline = outcome.comparison.headline() + [f"NEW {c.signature} in {c.job}: {c.summary}"
                                                for c in outcome.comparison.new_findings if c.verdict != "blind"]
    for line in headline:
        print(line)
    print(f"night: {outcome.night_dir}\nhistory: {outcome.index_path}")
    _write_ci_outputs(args, session, results, "leakharness nightly", notes=headline)
    return 1 if outcome.regressed else 0


def cmd_check(args) -> int:
    import shlex

    from .judge import check_exit_code
    from .orchestrate import Interrupted
    from .tasks import default_check_checkers

    program = list(args.program)
    if program and program[0] == "--":
        program = program[1:]
    session = _session(args)
    checkers = _check_checkers(args.tool) or (
        default_check_checkers(args.build, session.cwd) if args.build else ("memcheck",))
    if args.build:
        tasks = session.check_tasks(sources=args.build, checkers=checkers, cflags=shlex.split(args.cflags),
                                    ldflags=shlex.split(args.ldflags), args=program)
    else:
        tasks = session.check_tasks(program=program, checkers=checkers)
    from . import checkers as registry

    wanting = [c for c in checkers if registry.get(c).wants_secrets]
    if wanting:  # the canaries the residue interposer looks for
        import dataclasses

        from .secrets import read_secrets_file, secret_hex

        listed = read_secrets_file(session.cwd / args.secrets_file) if args.secrets_file else []
        hexes = secret_hex([*args.secret, *listed], where="--secret")
        tasks = [dataclasses.replace(t, env=registry.get(t.checker).task_env(hexes.split(",")))
                 if t.checker in wanting else t for t in tasks]
    elif args.secret or args.secrets_file:
        raise LeakHarnessError("--secret/--secrets-file are for a checker that looks for secrets (--tool residue)")
    _install_sigterm()
    try:
        growth = None
        if args.growth is not None:
            from .growthrun import check_template, parse_counts

            if args.build:
                raise LeakHarnessError("check --growth runs a ready program: give it after --, not --build")
            growth = (program, check_template(args.growth), checkers[0], parse_counts(args.growth_iterations))
        results = session.check(tasks, html=not args.no_html, growth=growth)
    except Interrupted as exc:
        print(f"leakharness: {exc}", file=sys.stderr)
        return 130
    from .report.text import check_summary, growth_lines  # after the run: its jobs start sooner

    out = session.out_dir("reports/check")
    check_summary(results, out / "results.json", sys.stdout)
    unfinished = growth_lines(results, sys.stdout)
    if session.html_path:
        print(f"report: {session.html_path}")
    _write_ci_outputs(args, session, results, "leakharness check", notes=unfinished)
    return check_exit_code(results.jobs) or (3 if unfinished else 0)


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise LeakHarnessError(f"--param {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


def cmd_list(args) -> int:
    patterns = _session(args).catalog()
    width = max((len(p.id) for p in patterns), default=2)
    print(f"{'id':<{width}}  {'variants':<11}  {'checkers':<40}  title")
    for p in patterns:
        print(f"{p.id:<{width}}  {'leaky,fixed':<11}  {','.join(p.checkers()):<40}  {p.title}")
    print(f"{len(patterns)} pattern(s)")
    return 0


def cmd_checkers(args) -> int:
    from . import checkers

    for name in checkers.names():
        c = checkers.get(name)
        build = " ".join(c.cflags) or f"go build ({c.go_mode})"
        print(f"{name}  [{c.family}; {', '.join(sorted(c.languages))}; {build}]")
        print(f"    cannot see: {c.cannot_see}")
    print("more: docs/checkers.md")
    return 0


def cmd_show(args) -> int:
    from .generate import diff, render

    (pattern,) = _session(args).catalog([args.pattern])
    params = _params(args.param)
    sys.stdout.write(diff(pattern, params) if args.diff else render(pattern, args.variant, params))
    return 0


def cmd_bisect(args) -> int:
    import shlex

    from .report.text import bisect_text
    from .tasks import default_check_checkers

    rest = list(args.program)
    if rest and rest[0] == "--":
        rest = rest[1:]
    session = _session(args)
    sources = [str(s) for s in args.build]
    checkers = _check_checkers(args.tool) or (
        default_check_checkers(sources, session.cwd) if sources else () if args.target else ("memcheck",))
    _install_sigterm()
    from .bisect import bisect_session

    outcome = bisect_session(session, args.good, args.bad, sources=sources, program=() if sources else rest,
                             args=rest if sources else (), checkers=checkers, cflags=shlex.split(args.cflags),
                             ldflags=shlex.split(args.ldflags), build_command=args.build_command, target=args.target,
                             signature=args.signature, progress=None if args.quiet else sys.stderr)
    bisect_text(outcome, sys.stdout)
    return 0 if outcome.first_bad else 3


def cmd_explain(args) -> int:
    from .report.text import explain_text

    session = _session(args)
    explain_text(session.explain(args.what), sys.stdout, fixtures=session.fixtures)
    return 0


def cmd_knowledge(args) -> int:
    session = _session(args)
    knowledge, missing = session.learn(args.results)
    target = session.write_file(args.out, knowledge.dumps())
    bugs = sum(len(p.bugs) for p in knowledge.patterns)
    print(f"{len(knowledge.patterns)} pattern(s), {bugs} bug shape(s) written to {target}")
    if missing:
        print(f"leakharness: the run holds no leaky job of {len(missing)} catalog pattern(s), left out: "
              f"{', '.join(missing)}", file=sys.stderr)
    return 0


# check's options whose value is compiler flags or program arguments: it often starts with a dash.
_DASH_VALUES = ("--cflags", "--ldflags", "--growth")


def join_dash_values(argv: Sequence[str]) -> list[str]:
    """`check --ldflags "-lcrypto"` (as the README writes it) as `--ldflags=-lcrypto`: argparse
    takes a lone value that starts with a dash for an option of its own and refuses ("expected one
    argument").  Only `check`'s flag-valued options, only before `--`."""
    argv = list(argv)
    first = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if first is None or argv[first] != "check":
        return argv
    out, i = argv[:first + 1], first + 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out += argv[i:]
            break
        if arg in _DASH_VALUES and i + 1 < len(argv) and argv[i + 1] != "--":
            out.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_dash_values(sys.argv[1:] if argv is None else argv))
    try:
        return args.func(args)
    except LeakHarnessError as exc:
        # One line, whatever the message quotes (lxml's own messages hold newlines; a name from a
        # file may hold anything): line breaks as spaces, other control characters as escapes.
        from .validate import printable

        text = " ".join(str(exc).splitlines())
        print("leakharness: " + printable(text, limit=1 << 30), file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `leakharness parse ... | head`: the reader left; that is not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a file we could not read or write, wherever it surfaced
        print(f"leakharness: {os_problem(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("leakharness: interrupted", file=sys.stderr)
        return 130


def entry() -> int:
    """The command's own process (the `leakharness` script, `python -m harness`): main(), then
    gc.freeze(), so that the interpreter's last collection as it ends does not walk every
    object the command made (about 12 ms of a one-program check).  Every file is closed by
    then; main() itself is for callers that go on living (tests)."""
    import gc

    code = main()
    gc.freeze()
    return code
