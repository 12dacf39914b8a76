"""Shards: split one run's tasks over N machines (CI jobs) so that each takes about as long,
and check that the parts of one run, merged, are the whole run exactly once.

`select_shard(tasks, k, n, durations)` is a pure function of the task names and the durations
it is given, so every shard computes the same split on its own, with no coordination: the
tasks are sorted longest first (ties by name) and each goes to the shard with the least work
so far (ties to the lowest shard).  Every task lands in exactly one shard.  The durations are
only ever a file the user names (`run --durations FILE`, its hash recorded), never the
cache's durations.json: a shard run after another on the same cache would find that file
changed and compute another split (jobs run twice, others never).

Each results.json records its run's identity (`RunPlan`): the run id (`--run-id`, else the
plan's own hash), every job of the plan, this shard's K/N and the jobs it was meant to run.
`coverage()` checks the parts of one run given to `leakharness report`: each job of the plan in
exactly one part, a duplicated part refused, a missing part (or a part cut short) named.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

from . import validate
from .errors import LeakHarnessError
from .tasks import estimate  # the scheduler's own weights: shards and the run agree

T = TypeVar("T")

MAX_SHARDS = 10000  # far more machines than any catalog has jobs; a bigger N is a typo
_SHARD = re.compile(r"\s*([0-9]{1,12})\s*/\s*([0-9]{1,12})\s*", re.ASCII)
NOT_RUN = "not run: its part of the run is not among the merged results"


def parse_shard(text: str) -> tuple[int, int]:
    """'2/3' -> (2, 3): shard 2 of 3, counted from 1; one line for anything else."""
    match = _SHARD.fullmatch(str(text))
    if not match:
        raise LeakHarnessError(f"--shard {str(text)[:40]!r}: give K/N with whole numbers, e.g. 2/3 (shard 2 of 3)")
    k, n = int(match.group(1)), int(match.group(2))
    if n < 1:
        raise LeakHarnessError(f"--shard {text}: the number of shards must be 1 or more")
    if n > MAX_SHARDS:
        raise LeakHarnessError(f"--shard {text}: at most {MAX_SHARDS} shards")
    if not 1 <= k <= n:
        raise LeakHarnessError(f"--shard {text}: the shard must be between 1 and {n}")
    return k, n


def split(tasks: Sequence[T], n: int, durations: Mapping[str, float]) -> list[list[T]]:
    """All n shards, each in the tasks' given order."""
    if not 1 <= n <= MAX_SHARDS:
        raise LeakHarnessError(f"shards: the number of shards must be from 1 to {MAX_SHARDS}, not {n}")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        dup = sorted({x for x in names if names.count(x) > 1})[0]
        raise LeakHarnessError(f"shards: the job {dup} is listed twice; job names must be unique to split them")
    # Rounded so that a last-digit difference in a float never moves a task between shards.
    weighed = sorted(((round(estimate(t, durations), 3), t.name, i) for i, t in enumerate(tasks)),
                     key=lambda w: (-w[0], w[1]))
    loads = [0.0] * n
    owner: dict[int, int] = {}
    for weight, _name, index in weighed:
        lightest = min(range(n), key=lambda s: (loads[s], s))
        loads[lightest] = round(loads[lightest] + weight, 3)
        owner[index] = lightest
    shards: list[list[T]] = [[] for _ in range(n)]
    for index, task in enumerate(tasks):
        shards[owner[index]].append(task)
    return shards


def select_shard(tasks: Sequence[T], k: int, n: int, durations: Mapping[str, float] | None = None) -> list[T]:
    """The tasks of shard k of n (k counted from 1), in their given order."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SHARDS:
        raise LeakHarnessError(f"--shard {k}/{n}: the number of shards must be a whole number from 1 to {MAX_SHARDS}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise LeakHarnessError(f"--shard {k}/{n}: the shard must be between 1 and {n}")
    return split(tasks, n, durations or {})[k - 1]


# --- durations given by the user ----------------------------------------------------------------

def read_durations(path: Path) -> tuple[dict[str, float], str]:
    """A durations file (a JSON object: job -> seconds, as <cache>/durations.json holds) and its
    sha256, recorded in results.json so that a merge can tell shards split alike."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise LeakHarnessError(f"--durations {path}: cannot read it: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise LeakHarnessError(f"--durations {path}: not JSON") from None
    if not isinstance(data, dict):
        raise LeakHarnessError(f"--durations {path}: must be a JSON object of job names and seconds")
    durations = {}
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and 0 <= value <= validate.MAX_SECONDS):
            raise LeakHarnessError(f"--durations {path}: {key[:80]!r}: not a number of seconds ({str(value)[:40]})")
        durations[str(key)] = float(value)
    return durations, hashlib.sha256(raw).hexdigest()


# --- a run's identity and plan ------------------------------------------------------------------

@dataclass(frozen=True)
class RunPlan:
    """What results.json says of the run it is part of: `run` there."""

    id: str  # the run's id: --run-id, else the plan's own hash (shards split alike share it)
    plan: tuple[str, ...]  # every job of the run, sorted
    shard: tuple[int, int] | None  # (k, n); None for the whole run (unsharded, or merged)
    jobs: tuple[str, ...]  # the jobs this part was meant to run
    durations: str | None = None  # sha256 of the --durations file the split was balanced by
    missing: tuple[str, ...] = ()  # a merge: jobs of the plan no part held (shown as not run)

    @property
    def plan_id(self) -> str:
        n = self.shard[1] if self.shard else 1
        return plan_id(self.plan, n, self.durations)

    def to_dict(self) -> dict[str, Any]:
        data = {"id": self.id, "plan_id": self.plan_id, "plan": list(self.plan),
                "shard": list(self.shard) if self.shard else None, "jobs": list(self.jobs),
                "durations": self.durations}
        if self.missing:
            data["missing"] = list(self.missing)
        return data

    @classmethod
    def from_dict(cls, value: Any) -> "RunPlan":
        v = validate
        data = v.mapping(value, "run")
        def job_name(x: Any, f: str) -> str:
            # Each part of a planned job's name becomes part of a path (a job not run is listed
            # with its log folder): usable names only, as a job's own fields must be.
            x = v.text(x, f, limit=2048)
            pattern, variant, tool = split_name(x)
            v.name(pattern, f"{f} (pattern)")
            v.name(variant, f"{f} (variant)", optional=True)
            v.name(tool, f"{f} (checker)")
            return x

        names = lambda key: v.items(data.get(key), f"run.{key}", job_name)  # noqa: E731
        shard = data.get("shard")
        if shard is not None:
            if (not isinstance(shard, list) or len(shard) != 2
                    or not all(isinstance(x, int) and not isinstance(x, bool) for x in shard)
                    or not 1 <= shard[1] <= MAX_SHARDS or not 1 <= shard[0] <= shard[1]):
                raise v.FieldError("run.shard", f"must be [K, N] with 1 <= K <= N <= {MAX_SHARDS}, "
                                                f"not {str(shard)[:40]}")
            shard = (shard[0], shard[1])
        return cls(id=v.text(data.get("id"), "run.id", limit=256), plan=names("plan"), shard=shard,
                   jobs=names("jobs"), durations=v.text(data.get("durations"), "run.durations", optional=True,
                                                        limit=128),
                   missing=names("missing"))


def plan_id(names: Sequence[str], n: int, durations: str | None) -> str:
    return hashlib.sha256(json.dumps([sorted(names), n, durations]).encode()).hexdigest()[:16]


def plan_run(tasks: Sequence[T], shard: tuple[int, int] | None, durations: Mapping[str, float] | None = None,
             durations_hash: str | None = None, run_id: str | None = None) -> tuple[list[T], RunPlan]:
    """This run's tasks (its shard's, when sharded) and its identity for results.json."""
    names = tuple(sorted(t.name for t in tasks))
    n = shard[1] if shard else 1
    rid = run_id or plan_id(names, n, durations_hash)
    if shard is None:
        return list(tasks), RunPlan(rid, names, None, names, durations_hash)
    chosen = select_shard(tasks, shard[0], shard[1], durations or {})
    return chosen, RunPlan(rid, names, shard, tuple(sorted(t.name for t in chosen)), durations_hash)


def check_run_id(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", text or "", re.ASCII):
        raise LeakHarnessError(f"--run-id {str(text)[:40]!r}: letters, digits and _ . : - only, 1 to 128 of them")
    return text


# --- the parts of one run, merged -----------------------------------------------------------------

_NAME = re.compile(r"^(?P<pattern>.+?)(?:::(?P<variant>[^\[\]]+))?\[(?P<tool>[^\[\]]+)\]$")


def split_name(name: str) -> tuple[str, str | None, str]:
    """`pattern::variant[tool]` (or `program[tool]`) -> (pattern, variant, tool)."""
    match = _NAME.match(name)
    if not match:
        return name, None, "?"
    return match.group("pattern"), match.group("variant"), match.group("tool")


@dataclass(frozen=True)
class Coverage:
    """What the parts of the runs among a merge's inputs hold against their plans."""

    runs: tuple[str, ...] = ()  # the run ids met
    missing: tuple[tuple[str, str], ...] = ()  # (job, why): planned, held by no part
    plan: RunPlan | None = None  # the merged run's identity, when the inputs are parts of one run


def coverage(parts: Sequence[tuple[str, Any]]) -> Coverage:
    """parts: (label, Results) of each input.  Raises a one-line LeakHarnessError when two parts
    overlap (the same shard twice, or parts of one run id planned differently); returns the jobs
    no part holds, with why."""
    groups: dict[str, list[tuple[str, Any, RunPlan]]] = {}
    for label, results in parts:
        if results.run is None:
            continue
        plan = RunPlan.from_dict(results.run)
        if plan.shard is None and not plan.missing and {j.name for j in results.jobs} >= set(plan.jobs):
            continue  # a whole run, whole: nothing to check against another part
        groups.setdefault(plan.id, []).append((label, results, plan))
    missing: list[tuple[str, str]] = []
    merged = None
    for rid, members in groups.items():
        first_label, _, first = members[0]
        for label, _, plan in members[1:]:
            if plan.plan != first.plan or (plan.shard and first.shard and plan.shard[1] != first.shard[1]):
                raise LeakHarnessError(f"{label}: part of run {validate.printable(rid)} like {first_label}, but planned "
                                       f"over a different "
                                       f"job list or number of shards: not parts of one run (give each run its "
                                       f"own --run-id)")
        owner: dict[str, str] = {}
        for label, _, plan in members:
            for job in plan.jobs:
                if job not in first.plan:
                    raise LeakHarnessError(f"{label}: lists {validate.printable(job)} as its own, but that job is not "
                                           f"in run {validate.printable(rid)}'s plan")
                if job in owner:
                    where = f"shard {plan.shard[0]}/{plan.shard[1]}" if plan.shard else "the merged run"
                    dup = [j for j in plan.jobs if j in owner]
                    raise LeakHarnessError(
                        f"{label} and {owner[job]}: both hold {where} of run {validate.printable(rid)} ({len(dup)} "
                        f"job(s) twice: {', '.join(validate.printable(d) for d in dup[:3])}"
                        f"{' ...' if len(dup) > 3 else ''}); give each part once")
                owner[job] = label
        n = first.shard[1] if first.shard else 1
        given = {plan.shard[0] for _, _, plan in members if plan.shard}
        for job in first.plan:
            if job not in owner:
                missing.append((job, f"no part of run {rid} holds it (shards given: "
                                     f"{', '.join(f'{k}/{n}' for k in sorted(given)) or 'none'})"))
        for label, results, plan in members:
            held = {j.name for j in results.jobs}
            for job in plan.jobs:
                if job not in held:
                    why = "interrupted" if results.interrupted else "cut short"
                    missing.append((job, f"{label} ({why}) was to run it and holds no result of it"))
        if len(groups) == 1:
            gone = tuple(sorted({j for j, _ in missing}))
            merged = RunPlan(rid, first.plan, None, tuple(j for j in first.plan if j not in gone), first.durations,
                             gone)
    return Coverage(tuple(groups), tuple(missing), merged)
