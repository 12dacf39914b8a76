"""`leakharness bisect`: the first commit where a bug appears.

`git bisect run` in a worktree of its own (a temporary `git worktree add --detach`, removed at
the end, with the repository's hooks off): the user's checkout, index and bisect state are never
touched.  At each commit the program is built and checked as `check` would (the same Session,
the build and result cache shared by every step, so a commit whose sources did not change costs
nothing), by this module run as a program (`python -m harness.bisect STATE`), which answers git:
- bad (1): the bug is there: the signature asked for, or else any memory error or definite or
  indirect leak whose signature the good commit did not have;
- good (0): every job was checked to its end and the bug is not there;
- skip (125): the commit cannot say: it does not build (or the build command failed, or a
  source is missing), or a job was not fully checked.  A run that was not whole is never good;
- abort (255): a checker is not installed, or leakharness itself failed: no commit can be judged.

The good and the bad commit are checked first, in this process: the good one gives the baseline
(the bugs already there) and must build; the bad one must have the bug.  Each step's results
are kept under OUT/steps/<commit>/ (with --out) and its verdict in step.json there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Sequence

from .errors import LeakHarnessError

GIT_TIMEOUT = 120.0
BUILD_COMMAND_TIMEOUT = 600.0
GOOD, BAD, SKIP, ABORT = 0, 1, 125, 255
_SHA = re.compile(r"\b([0-9a-f]{40})\b")


@dataclass(frozen=True)
class Spec:
    """What to check at each commit, with the user's paths made relative to the repository."""

    top: str  # the user's repository
    rel: str  # the user's working folder, relative to its top
    sources: tuple[str, ...] = ()  # --build: in-repository paths relative to the top, else absolute
    program: tuple[str, ...] = ()  # -- PROGRAM ARGS
    program_in_repo: bool = False  # PROGRAM is a path in the repository, relative to its top
    args: tuple[str, ...] = ()  # with --build: the program's arguments
    checkers: tuple[str, ...] = ()
    cflags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ()
    build_command: tuple[str, ...] = ()  # run in the working folder before checking; failing: skip
    target: str | None = None  # a project target (leakharness.toml), instead of sources or a program
    timeout: float | None = None
    jobs: int | None = None
    cc: str = "gcc"
    cache: str = ""
    suppressions: tuple[str, ...] = ()
    signature: str | None = None  # the bug to look for; None: any bug the good commit did not have
    baseline: tuple[str, ...] = ()  # the good commit's bug signatures
    steps: str = ""  # where each step's results go (steps/<commit>/)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Spec":
        data = json.loads(text)
        names = {f.name: f for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Step:
    """What one commit said."""

    commit: str
    verdict: str  # good, bad, skip, abort
    why: str = ""
    bugs: tuple[dict[str, Any], ...] = ()  # {job, headline, signature, known}, the bug(s) that made it bad
    signatures: tuple[str, ...] = ()  # every bug's signature at this commit

    @property
    def code(self) -> int:
        return {"good": GOOD, "bad": BAD, "skip": SKIP}.get(self.verdict, ABORT)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Outcome:
    good: str
    bad: str
    commits: int  # in good..bad
    first_bad: str | None = None
    subject: str = ""
    bugs: tuple[dict[str, Any], ...] = ()
    candidates: tuple[tuple[str, str], ...] = ()  # when skipped commits leave it undecided: (commit, subject)
    baseline: tuple[str, ...] = ()
    steps: tuple[Step, ...] = field(default=())


# --- git --------------------------------------------------------------------------------------

def _git(args: Sequence[str], cwd: str | os.PathLike, timeout: float = GIT_TIMEOUT,
         check: bool = True) -> subprocess.CompletedProcess:
    """git with the repository's hooks off (a post-checkout hook must not run at every step)."""
    if shutil.which("git") is None:
        raise LeakHarnessError("bisect needs git (sudo apt-get install git)")
    try:
        proc = subprocess.run(["git", "-c", "core.hooksPath=/dev/null", "-c", "advice.detachedHead=false", *args],
                              cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                              start_new_session=True)
    except subprocess.TimeoutExpired:
        raise LeakHarnessError(f"git {' '.join(args)}: no answer in {timeout:g} s") from None
    if check and proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip().splitlines()
        raise LeakHarnessError(f"git {' '.join(args)}: {said[-1] if said else f'exit {proc.returncode}'}")
    return proc


def _commit(rev: str, top: str) -> str:
    proc = _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], top, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise LeakHarnessError(f"{rev}: not a commit of {top}")
    return proc.stdout.strip()


def _subject(commit: str, top: str) -> str:
    return _git(["log", "-1", "--format=%s", commit], top).stdout.strip()


def _inside(path: Path, top: Path) -> str | None:
    try:
        return path.resolve().relative_to(top.resolve()).as_posix()
    except ValueError:
        return None


# --- one commit -------------------------------------------------------------------------------

def _run_build_command(spec: Spec, where: Path, log: Path) -> str | None:
    """The user's build command at this commit; its failure, or None."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        try:
            proc = subprocess.Popen(list(spec.build_command), cwd=where, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            return f"the build command could not start: {exc.strerror or exc}"
        try:
            code = proc.wait(timeout=BUILD_COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return f"the build command did not finish in {BUILD_COMMAND_TIMEOUT:g} s"
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    return None if code == 0 else f"the build command exited {code} (see {log})"


def _wanted(spec: Spec, signature: str) -> bool:
    from .signatures import signature_matches

    if spec.signature:
        return signature_matches(spec.signature, signature)
    return not any(signature_matches(old, signature) for old in spec.baseline)


def check_commit(spec: Spec, worktree: Path, commit: str) -> Step:
    """Build and check the commit checked out in `worktree`, as `check` would."""
    from .control import Session
    from .grouping import group_findings
    from .judge import COMPLETE, errors_of
    from .knowledge import Explainer, Sources

    where = worktree / spec.rel
    out = Path(spec.steps) / commit
    if out.exists():
        shutil.rmtree(out)
    if spec.build_command:
        failed = _run_build_command(spec, where, out / "build-command.log")
        if failed:
            return Step(commit, "skip", failed)
    session = Session(out=out / "results", cache=spec.cache, jobs=spec.jobs, timeout=spec.timeout, cc=spec.cc,
                      suppressions=spec.suppressions, progress=False, cwd=where)
    try:
        if spec.target is not None:
            tasks = _target_tasks(session, spec)
        elif spec.sources:
            files = [str(worktree / s) if not os.path.isabs(s) else s for s in spec.sources]
            tasks = session.check_tasks(sources=files, checkers=spec.checkers, cflags=spec.cflags,
                                        ldflags=spec.ldflags, args=spec.args)
        else:
            program = list(spec.program)
            if spec.program_in_repo:
                program[0] = str(worktree / program[0])
            tasks = session.check_tasks(program=program, checkers=spec.checkers)
    except LeakHarnessError as exc:  # a source or the program missing at this commit
        return Step(commit, "skip", str(exc))
    results = session.check(tasks)
    bugs, signatures, unchecked = [], [], []
    for job in results.jobs:
        if job.status == "tool-missing":
            return Step(commit, "abort", f"{job.name}: {job.message.strip()}")
        if job.status == "build-failed":
            said = job.message.strip().splitlines()
            first = next((line for line in said if "error" in line), said[0] if said else "")
            return Step(commit, "skip", f"{job.name} does not build: {first.strip()}")
        if job.status not in COMPLETE:
            unchecked.append(f"{job.name}: {job.status}: {job.message}")
        explainer = Explainer(sources=Sources(out / "results", job.sources, named=True))  # checked just now
        for group in group_findings(f for f in errors_of(job.findings) if not f.suppressed):
            root = group.root
            signatures.append(root.signature)
            if _wanted(spec, root.signature):
                known = explainer.explain(root)
                bugs.append({"job": job.name, "headline": f"[{root.tool}] {group.headline()}",
                             "signature": root.signature, "known": known.line() if known else None})
    unique = tuple(dict.fromkeys(signatures))
    if bugs:
        return Step(commit, "bad", f"{len(bugs)} bug(s)", tuple(bugs), unique)
    if unchecked:  # never good: a job that was not whole proves nothing
        return Step(commit, "skip", "not fully checked: " + "; ".join(unchecked), (), unique)
    return Step(commit, "good", "checked, and the bug is not there", (), unique)


def _target_tasks(session, spec: Spec):
    """A project target's tasks at this commit (the project file read from the worktree)."""
    project_of = getattr(session, "project", None)
    tasks_of = getattr(session, "project_tasks", None)
    if project_of is None or tasks_of is None:
        raise LeakHarnessError("--target: this leakharness reads no project file (leakharness.toml)")
    project = project_of()
    if project is None:
        raise LeakHarnessError("--target: no leakharness.toml (or [tool.leakharness]) at this commit")
    return tasks_of(project, [spec.target], spec.checkers or None)


def _record(step: Step, spec: Spec) -> None:
    folder = Path(spec.steps) / step.commit
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "step.json").write_text(json.dumps(step.to_dict()), encoding="utf-8")


def _read_step(spec: Spec, commit: str) -> Step | None:
    try:
        data = json.loads((Path(spec.steps) / commit / "step.json").read_text(encoding="utf-8"))
        return Step(data["commit"], data["verdict"], data.get("why", ""), tuple(data.get("bugs", ())),
                    tuple(data.get("signatures", ())))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def step_main(argv: Sequence[str]) -> int:
    """`python -m harness.bisect STATE`: what `git bisect run` runs at each commit."""
    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        spec = Spec.from_json(Path(argv[0]).read_text(encoding="utf-8"))
        worktree = Path.cwd()
        commit = _git(["rev-parse", "HEAD"], worktree).stdout.strip()
        step = check_commit(spec, worktree, commit)
        _record(step, spec)
        what = step.bugs[0]["headline"] if step.bugs else step.why
        print(f"leakharness bisect: {commit[:12]} {_subject(commit, worktree)}: {step.verdict} ({what})",
              file=sys.stderr, flush=True)
        return step.code
    except KeyboardInterrupt:
        return ABORT
    except LeakHarnessError as exc:
        print(f"leakharness bisect: {exc}", file=sys.stderr)
        return ABORT


# --- the whole bisection ----------------------------------------------------------------------

def _checkout(worktree: Path, commit: str) -> None:
    _git(["checkout", "--quiet", "--detach", "--force", commit], worktree)


def _bisect_run(worktree: Path, state: Path, log: Path, timeout: float) -> int:
    """`git bisect run` of this module, in its own process group, killed as a whole when it
    overruns or the user interrupts."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    with open(log, "wb") as out:
        proc = subprocess.Popen(["git", "-c", "core.hooksPath=/dev/null", "bisect", "run", sys.executable, "-m",
                                 "harness.bisect", str(state)], cwd=worktree, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except BaseException as exc:
            os.killpg(proc.pid, signal.SIGTERM)  # a step passes it on to its jobs (Ctrl-C)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise LeakHarnessError(f"git bisect run did not finish in {timeout:g} s") from None
            raise


def bisect(spec: Spec, good_rev: str, bad_rev: str, steps_dir: Path, progress: IO[str] | None = None) -> Outcome:
    """Find the first commit in good..bad where the bug appears (see the module's docstring)."""
    def say(text: str) -> None:
        if progress is not None:
            progress.write(text + "\n")
            progress.flush()

    top = spec.top
    good, bad = _commit(good_rev, top), _commit(bad_rev, top)
    if good == bad:
        raise LeakHarnessError(f"--good {good_rev} and --bad {bad_rev} are the same commit")
    if _git(["merge-base", "--is-ancestor", good, bad], top, check=False).returncode != 0:
        raise LeakHarnessError(f"--good {good_rev} is not an ancestor of --bad {bad_rev}")
    commits = int(_git(["rev-list", "--count", f"{good}..{bad}"], top).stdout.strip() or 0)
    spec = dataclasses.replace(spec, steps=str(steps_dir))
    scratch = Path(tempfile.mkdtemp(prefix="leakharness-bisect-"))
    worktree = scratch / "worktree"
    try:
        _git(["worktree", "add", "--detach", "--quiet", str(worktree), bad], top)
        say(f"bisect: {commits} commit(s) after {good[:12]}, up to {bad[:12]}; checking {good[:12]} (good)")
        _checkout(worktree, good)
        first = check_commit(spec, worktree, good)
        _record(first, spec)
        if first.verdict in ("skip", "abort"):
            raise LeakHarnessError(f"--good {good_rev} cannot be checked: {first.why}")
        if spec.signature and first.verdict == "bad":
            raise LeakHarnessError(f"--good {good_rev} already has {spec.signature}: choose an older --good")
        spec = dataclasses.replace(spec, baseline=first.signatures if not spec.signature else ())
        say(f"bisect: {good[:12]} has {len(first.signatures)} bug(s) already"
            + ("; looking for a new one" if not spec.signature else f"; looking for {spec.signature}"))
        _checkout(worktree, bad)
        last = check_commit(spec, worktree, bad)
        _record(last, spec)
        if last.verdict == "abort":
            raise LeakHarnessError(f"--bad {bad_rev} cannot be checked: {last.why}")
        if last.verdict != "bad":
            what = spec.signature or "no new bug"
            raise LeakHarnessError(f"--bad {bad_rev} is {last.verdict} ({last.why}): {what} there, nothing to bisect")
        say(f"bisect: {bad[:12]} has it: {last.bugs[0]['headline']}")
        state = scratch / "state.json"
        state.write_text(spec.to_json(), encoding="utf-8")
        _git(["bisect", "start", bad, good], worktree)
        per_step = (spec.timeout or 120.0) * max(len(spec.checkers), 1) + BUILD_COMMAND_TIMEOUT + 300
        timeout = per_step * (commits + 2)
        code = _bisect_run(worktree, state, scratch / "bisect-run.log", timeout)
        log = (scratch / "bisect-run.log").read_text(encoding="utf-8", errors="replace")
        first_bad = next((m.group(1) for line in log.splitlines() if "is the first bad commit" in line
                          for m in [_SHA.search(line)] if m), None)
        if first_bad is None and "only 'skip'ped commits left" in log:
            names = tuple(dict.fromkeys(_SHA.findall(log.split("could be any of:", 1)[-1])))
            return Outcome(good, bad, commits, None, candidates=tuple((c, _subject(c, top)) for c in names),
                           baseline=spec.baseline)
        if first_bad is None:
            tail = " ".join(log.strip().splitlines()[-3:])
            raise LeakHarnessError(f"git bisect run ended (exit {code}) without naming a commit: {tail}")
        step = _read_step(spec, first_bad)
        return Outcome(good, bad, commits, first_bad, _subject(first_bad, top), step.bugs if step else (),
                       baseline=spec.baseline)
    finally:
        _git(["bisect", "reset", "--quiet"], worktree, check=False) if worktree.exists() else None
        _git(["worktree", "remove", "--force", str(worktree)], top, check=False)
        _git(["worktree", "prune"], top, check=False)
        shutil.rmtree(scratch, ignore_errors=True)


def make_spec(cwd: Path, cache: Path, sources: Sequence[str], program: Sequence[str], args: Sequence[str],
              checkers: Sequence[str], cflags: Sequence[str], ldflags: Sequence[str], build_command: str | None,
              target: str | None, timeout: float | None, jobs: int | None, cc: str, suppressions: Sequence[Path],
              signature: str | None) -> Spec:
    """The user's options as a Spec: paths inside their repository made relative to its top (so
    that each step reads them from its own commit), paths outside it kept."""
    from .tasks import absolute

    found = _git(["rev-parse", "--show-toplevel"], cwd, check=False)
    if found.returncode != 0:
        raise LeakHarnessError(f"{cwd}: not inside a git repository (bisect checks the commits of one)")
    top = Path(found.stdout.strip())
    rel = _inside(cwd, top) or "."

    def mapped(path: str) -> str:
        full = absolute(path, cwd)
        inside = _inside(full, top)
        return inside if inside is not None else str(full)

    program = list(program)
    in_repo = False
    if program and os.sep in program[0]:  # a path (a name alone is looked up on PATH, as check does)
        full = absolute(program[0], cwd)
        inside = _inside(full, top)
        program[0], in_repo = (inside, True) if inside is not None else (str(full), False)
    if signature is not None:
        from .signatures import split_signature

        stem, _ = split_signature(signature.strip())
        if ":" not in stem:
            raise LeakHarnessError(f"--signature {signature!r}: not a signature (CATEGORY:FRAME>FRAME>FRAME[@HASH])")
    if sum(bool(x) for x in (sources, program, target)) != 1:
        raise LeakHarnessError("bisect: give what to check: --build FILE.c ..., --target NAME, or -- PROGRAM")
    return Spec(top=str(top), rel=rel, sources=tuple(mapped(s) for s in sources), program=tuple(program),
                program_in_repo=in_repo,
                args=tuple(args), checkers=tuple(checkers), cflags=tuple(cflags), ldflags=tuple(ldflags),
                build_command=tuple(shlex.split(build_command)) if build_command else (), target=target,
                timeout=timeout, jobs=jobs, cc=cc, cache=str(cache), suppressions=tuple(str(s) for s in suppressions),
                signature=signature.strip() if signature else None)


if __name__ == "__main__":
    sys.exit(step_main(sys.argv[1:]))


def bisect_session(session, good: str, bad: str = "HEAD", sources: Sequence[str] = (), program: Sequence[str] = (),
                   args: Sequence[str] = (), checkers: Sequence[str] = (), cflags: Sequence[str] = (),
                   ldflags: Sequence[str] = (), build_command: str | None = None, target: str | None = None,
                   signature: str | None = None, progress=None):
    """The first commit in good..bad of the git repository around the session's working folder
    where a bug appears: checked as `check` would, through the session's cache.  A workflow over
    the Session (as the CLI is), so control.py never imports this module; an OSError is one line,
    as for every Session verb."""
    from .control import one_line_errors

    @one_line_errors
    def run():
        cache = session._cache_dir()
        spec = make_spec(session.cwd, cache, sources, program, args, checkers, cflags, ldflags, build_command,
                         target, session.timeout, session.jobs, session.cc, session.suppression_files, signature)
        if session.out is not None:
            from .outdir import locked

            with locked(session.out) as out:
                return bisect(spec, good, bad, out / "steps", progress)
        with tempfile.TemporaryDirectory(prefix="leakharness-steps-") as scratch:
            return bisect(spec, good, bad, Path(scratch), progress)

    return run()
