"""Leak growth runs: a pattern's leaky variant (or a user's program, or a project target whose
arguments hold {n}) at several iteration counts, and the fit of their lost bytes (growth.py) per signature and in total.

Each count is an ordinary job (build, run, suppressions) written under OUT/growth/iterations-N/
so that the counts never share a log folder.  Only complete runs ("ok") are fitted: a run that
crashed, timed out or was not checked says nothing about how many bytes were lost, and a fit
over it would be a false number; the entry is then "incomplete" with the reason.
"""

from __future__ import annotations

import concurrent.futures as cf
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from . import checkers
from .catalog import Pattern
from .errors import LeakHarnessError
from .growth import GrowthReport, fit_growth
from .orchestrate import Interrupted, perform, result_cache
from .tasks import Task, catalog_task, check_tasks, target_tasks

GROWTH_COUNTS = (1, 2, 4)


@dataclass(frozen=True)
class GrowthEntry:
    """One program's growth: what results.json's "growth" list holds."""

    pattern: str
    variant: str | None
    checker: str
    iterations: tuple[int, ...]
    status: str  # "ok" or "incomplete"
    reason: str = ""
    report: GrowthReport | None = None

    def to_dict(self) -> dict:
        data = {"pattern": self.pattern, "variant": self.variant, "checker": self.checker,
                "iterations": list(self.iterations), "status": self.status, "reason": self.reason}
        if self.report is not None:
            data.update(self.report.to_dict())  # "total" and "by_signature", rates in bytes per operation
        return data


def parse_counts(text: str) -> tuple[int, ...]:
    """`1,2,4` -> (1, 2, 4); two different counts at least."""
    try:
        counts = tuple(sorted({int(x) for x in text.split(",") if x.strip()}))
    except ValueError:
        raise LeakHarnessError(f"--growth-iterations {text}: give whole numbers, e.g. 1,2,4") from None
    if len(counts) < 2 or counts[0] < 0:
        raise LeakHarnessError(f"--growth-iterations {text}: give two or more different counts, 0 or more")
    return counts


def check_template(template: str) -> str:
    """An argument template must say where the count goes, and split as a shell would."""
    if "{n}" not in template:
        raise LeakHarnessError(f"--growth {template!r}: the template must hold {{n}}, the iteration count")
    try:
        shlex.split(template)
    except ValueError as exc:
        raise LeakHarnessError(f"--growth {template!r}: {exc}") from None
    return template


def _fit(pattern: str, variant: str | None, checker: str, tasks: list[tuple[int, Task]], out: Path,
         cache: Path, fresh: bool, suppressions, jobs: int) -> GrowthEntry:
    results = result_cache(cache, fresh)
    with cf.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        done = list(pool.map(lambda nt: (nt[0], perform(nt[1], out / "growth" / f"iterations-{nt[0]}", cache,
                                                         results, suppressions)), tasks))
    counts = tuple(n for n, _ in tasks)
    if any(d is None for _, d in done):
        raise Interrupted("interrupted during the growth runs")
    bad = [(n, d.result) for n, d in done if d.result.status != "ok"]
    if bad:
        n, r = bad[0]
        why = r.message.splitlines()[0] if r.message else r.status_text
        return GrowthEntry(pattern, variant, checker, counts, "incomplete",
                           f"the run at {n} iterations is {r.status_text}: {why}")
    if checkers.get(checker).halts_on_first_error:
        # A checker that stops at the first memory error (ASan) never ran that run's exit-time leak check,
        # so its "0 bytes lost" would be a false number.
        for n, d in done:
            stopped = next((f for f in d.result.findings if f.is_error and f.category != "leak"), None)
            if stopped is not None:
                return GrowthEntry(pattern, variant, checker, counts, "incomplete",
                                   f"the run at {n} iterations stopped at a {stopped.category} before "
                                   f"{checker}'s exit-time leak check: bytes lost are unknown")
    return GrowthEntry(pattern, variant, checker, counts, "ok",
                       report=fit_growth([(n, d.result.findings) for n, d in done]))


def catalog_growth(patterns: Sequence[Pattern], out: Path, cache: Path, checker: str,
                   counts: Sequence[int] = GROWTH_COUNTS, cc: str = "gcc", timeout: float | None = None,
                   cwd: Path | None = None, fresh: bool = False, suppressions=None,
                   jobs: int = 1) -> list[GrowthEntry]:
    """The leaky variant of every leaking pattern with an `iterations` parameter, at each count."""
    entries = []
    for p in patterns:
        if "iterations" not in p.params:
            continue  # nothing to vary
        if not p.per_operation and p.expectation("leaky", checker).category != "leak":
            continue  # not a leak: no bytes to fit
        tasks = [(n, catalog_task(p, "leaky", checker, cc, overrides={"iterations": n}, timeout=timeout, cwd=cwd))
                 for n in counts]
        entries.append(_fit(p.id, "leaky", checker, tasks, out, cache, fresh, suppressions, jobs))
    return entries


def program_growth(program: Sequence[str], template: str, out: Path, cache: Path, checker: str,
                   counts: Sequence[int] = GROWTH_COUNTS, timeout: float = 120.0, cwd: Path | None = None,
                   fresh: bool = False, suppressions=None, jobs: int = 1) -> GrowthEntry:
    """`check --growth ARG-TEMPLATE -- PROGRAM ARGS`: the template ("--requests {n}") gives the
    arguments that set the iteration count, added after the program's own."""
    check_template(template)
    tasks = []
    for n in counts:
        extra = tuple(shlex.split(template.replace("{n}", str(n))))
        (task,) = check_tasks(program=tuple(program), checkers=(checker,), args=extra, timeout=timeout, cwd=cwd)
        tasks.append((n, task))
    name = Path(program[0]).name
    return _fit(name, None, checker, tasks, out, cache, fresh, suppressions, jobs)


def target_growth(project, targets, out: Path, cache: Path, checker: str, counts: Sequence[int] = GROWTH_COUNTS,
                  cc: str = "gcc", timeout: float | None = None, fresh: bool = False, suppressions=None,
                  jobs: int = 1) -> list[GrowthEntry]:
    """Each project target whose arguments hold {n}, at each count, under `checker` (asan is
    go-asan for a Go target; a target no form of it can check is left out)."""
    entries = []
    for target in targets:
        chosen = checkers.for_program(checker, target.language)
        if chosen is None or not target.grows:
            continue
        tasks = [(n, task) for n in counts
                 for task in target_tasks(project, target, cc=cc, timeout=timeout, n=n, only=chosen)]
        entries.append(_fit(target.name, None, chosen, tasks, out, cache, fresh, suppressions, jobs))
    return entries
