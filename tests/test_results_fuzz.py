"""Issue 17: a results.json is untrusted data.  200 copies of a real run's results.json, each
with one field mutated (another type, null, a huge number, a path outside the folder, the key
gone), are given to `leakharness report`.  Every time: a one-line error (exit 2) or a correct
report (index.html, a results.json that loads again with every job), never a traceback, and
never a file read or written outside the input and output folders.

What a report opens, copies, renames and lists is recorded by an audit hook (sys.addaudithook)
in the process that runs the command line's main(); the 200 reports run in one such process
(one Python start instead of 200).  A sentinel file sits beside the inputs: the mutated paths
point at it (absolute, through `..`, through a symlink in the folder).  Afterwards every file
outside the output folders is as it was.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES = 200
SENTINEL_TEXT = "SENTINEL-FUZZ-OUTSIDE-7731"

DRIVER = r'''
import contextlib, io, json, os, sys, traceback
WATCH = {"open", "shutil.copyfile", "shutil.copymode", "os.rename", "os.replace", "os.remove", "os.unlink",
         "os.mkdir", "os.rmdir", "os.symlink", "os.chmod", "os.listdir", "os.scandir", "os.truncate"}

# Each event is appended to a file as it happens, by whichever process sees it: a report's
# SARIF and results.json are written by a forked copy (harness.forked), whose own list would
# die with it.
record = {"fd": None}

def hook(event, args):
    if event not in WATCH or not args or record["fd"] is None:
        return
    for arg in (args[:2] if event in ("shutil.copyfile", "os.rename", "os.replace", "shutil.copymode") else args[:1]):
        if isinstance(arg, (str, bytes, os.PathLike)):
            line = json.dumps([event, os.path.abspath(os.fsdecode(arg))]) + "\n"
            os.write(record["fd"], line.encode("utf-8", "surrogateescape"))

sys.path[:] = [p for p in sys.path if p not in ("", ".")]  # `python -c` would look for modules in each cwd
sys.addaudithook(hook)
from harness.cli import main

cases = json.load(open(sys.argv[1]))
answers = []
for case in cases:
    os.chdir(case["cwd"])
    events = sys.argv[2] + ".events"
    record["fd"] = os.open(events, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    out, err = io.StringIO(), io.StringIO()
    tb = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(case["argv"])
        except SystemExit as exc:
            rc = exc.code
        except BaseException:
            rc, tb = None, traceback.format_exc()
    fd, record["fd"] = record["fd"], None
    os.close(fd)
    with open(events, encoding="utf-8", errors="surrogateescape") as fh:
        log = [tuple(json.loads(line)) for line in fh]
    # A report's results.json, read back as `report` and `explain` would read it (outside the
    # audit: the reading is the test's, not the report's).
    loaded = None
    if rc in (0, 3):
        from pathlib import Path
        from harness.results import load_results
        try:
            loaded = len(load_results(Path("out")).jobs)
        except BaseException as exc:
            loaded = f"{type(exc).__name__}: {exc}"[:500]
    answers.append({"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue(), "traceback": tb,
                    "touched": sorted(set(log)), "loaded": loaded})
with open(sys.argv[2], "w") as fh:
    json.dump(answers, fh)
'''


def _env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_XDIST", "LEAKHARNESS", "ASAN", "LSAN", "VALGRIND"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env["LEAKHARNESS_CACHE"] = str(cache)
    return env


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    """A real run with leaks, a double free (two stacks), kept sources and logs."""
    work = tmp_path_factory.mktemp("fuzz-run")
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--pattern", "i2d_alloc", "--pattern",
                           "plain_double_free", "--tool", "asan", "--tool", "memcheck", "--out", "run", "--quiet"],
                          cwd=work, env=_env(work / "cache"), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=600, start_new_session=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return work / "run"


def _leaves(value, path=()):
    """Every (path, value) of a JSON document, containers included (their path first)."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, path + (i,))


def _shape(path) -> str:
    return ".".join("[]" if isinstance(p, int) else p for p in path)


def _mutations(sentinel: Path, folder: Path):
    rel_up = os.path.relpath(sentinel, folder)
    return [
        ("null", None), ("string", "x"), ("huge int", 10 ** 30), ("negative", -1), ("huge float", 1e308),
        ("infinity", float("inf")), ("list", []), ("object", {}), ("bool", True), ("absolute path", str(sentinel)),
        ("dotdot path", rel_up), ("symlink path", "logs/evil.txt"), ("gone", KeyError), ("long string", "A" * 200000),
        ("zero", 0), ("nested", [[[[[[[[[[["deep"]]]]]]]]]]]), ("float", 0.5), ("control chars", "a\x00b/../c"),
    ]


def _set(doc, path, value):
    target = doc
    for p in path[:-1]:
        target = target[p]
    if value is KeyError:
        if isinstance(target, dict):
            del target[path[-1]]
        else:
            target.pop(path[-1])
    else:
        target[path[-1]] = value


def test_two_hundred_mutated_results_files_give_one_line_or_a_correct_report(real_run, tmp_path):
    original = json.loads((real_run / "results.json").read_text())
    assert len(original["jobs"]) == 8
    sentinel = tmp_path / "outside" / "secret.txt"
    sentinel.parent.mkdir()
    sentinel.write_text(SENTINEL_TEXT + "\n")
    leaves = [(path, value) for path, value in _leaves(original) if path]
    shapes: dict[str, list] = {}
    for path, _ in leaves:
        shapes.setdefault(_shape(path), []).append(path)
    order = sorted(shapes)
    rng = random.Random(17)
    cases, meta = [], []
    for i in range(CASES):
        folder = tmp_path / "cases" / f"{i:03d}"
        shutil.copytree(real_run, folder / "in", symlinks=True)
        (folder / "in" / "logs" / "evil.txt").symlink_to(sentinel)
        shape = order[i % len(order)]
        path = rng.choice(shapes[shape])
        kinds = _mutations(sentinel, folder / "in")
        kind, value = kinds[(i // len(order) + rng.randrange(len(kinds))) % len(kinds)]
        doc = json.loads(json.dumps(original))
        _set(doc, path, value)
        (folder / "in" / "results.json").write_text(json.dumps(doc))
        cases.append({"cwd": str(folder), "argv": ["report", "in", "--out", "out"]})
        meta.append((i, shape, kind, folder, len(doc["jobs"]) if isinstance(doc.get("jobs"), list) else None))
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    # Everything outside the output folders, as it is before the reports.
    before = _snapshot(tmp_path)
    cache = real_run.parent / "cache"
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path / "cases.json"), str(tmp_path / "answers.json")],
                          cwd=tmp_path, env=_env(cache), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=1500, start_new_session=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    answers = json.loads((tmp_path / "answers.json").read_text())
    problems, errors, reports = [], 0, 0
    # The harness's own cache (its compiled templates, the facts it remembers about files) is its
    # state, not a user's file: reading and writing there is allowed, anywhere else is not.
    allowed = [str(ROOT), sys.prefix, sys.base_prefix, "/dev/null", "/proc/", "/usr/lib/python3", "/etc/localtime",
               os.path.realpath(cache) + os.sep]
    for (i, shape, kind, folder, njobs), answer in zip(meta, answers):
        what = f"case {i}: {shape} := {kind}"
        if answer["traceback"]:
            problems.append(f"{what}: traceback\n{answer['traceback'][-1500:]}")
            continue
        for event, path in answer["touched"]:
            real = os.path.realpath(path)
            mine = any(real == str(r) or real.startswith(str(r) + os.sep)
                       for r in (folder / "in", folder / "out", (folder / "in").resolve(), (folder / "out").resolve()))
            if not mine and (real.startswith(str(tmp_path)) or not any(real.startswith(a) for a in allowed)):
                problems.append(f"{what}: {event} {path} ({real}): outside the input and output folders")
        if answer["rc"] == 2:
            lines = answer["stderr"].strip().splitlines()
            if len(lines) != 1 or not lines[0].startswith("leakharness: "):
                problems.append(f"{what}: exit 2 without one line: {answer['stderr'][:500]!r}")
            errors += 1
            continue
        if answer["rc"] not in (0, 3):
            problems.append(f"{what}: exit {answer['rc']}: {answer['stderr'][:500]!r}")
            continue
        reports += 1
        out = folder / "out"
        if not (out / "index.html").is_file():
            problems.append(f"{what}: exit {answer['rc']} and no index.html")
            continue
        if answer["loaded"] != njobs:  # every report's results.json loads back, with every job
            problems.append(f"{what}: the report's results.json does not load back whole: {answer['loaded']!r} "
                            f"for {njobs} job(s)")
        for page in out.rglob("*"):
            if page.is_file() and SENTINEL_TEXT.encode() in page.read_bytes():
                problems.append(f"{what}: {page} holds the sentinel file's text")
    assert _snapshot(tmp_path) == before, "a file outside the output folders changed"
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:30])
    # Both kinds of answer occur: the mutations are not all fatal, nor all harmless.
    assert errors >= 20 and reports >= 20, (errors, reports)


def _snapshot(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "out"]
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            if name in ("answers.json", "answers.json.events"):
                continue
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p)] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return out
