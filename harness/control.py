"""The facade: one call per thing a user wants, tying the stages together.

catalog -> generate -> build -> run -> parse -> judge.  The command line, the pytest plugin
and the tests call these functions; the stages never call back up here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from . import build as build_mod
from .catalog import Expectation, Pattern, common_dir
from .generate import render
from .judge import Verdict, judge
from .run import Job, RunResult, run_job


@dataclass(frozen=True)
class Outcome:
    """A finished catalog job: its run and its verdict."""

    pattern: str
    variant: str
    checker: str
    expected: Expectation
    result: RunResult
    verdict: Verdict
    build: build_mod.Build | None = None


def catalog_spec(pattern: Pattern, variant: str, checker: str, cc: str = "gcc",
                 overrides: Mapping[str, Any] | None = None) -> build_mod.BuildSpec:
    name = f"{pattern.id}-{variant}"
    source = render(pattern, variant, overrides)
    return build_mod.BuildSpec(
        name=name,
        sources=((f"{name}.c", source),),
        profile=checker,
        include_dirs=(common_dir(pattern.directory.parent),),
        cflags=("-Wall",),
        cc=cc,
    )


def build_failed(job: Job, b: build_mod.Build) -> RunResult:
    return RunResult(job, "build-failed", message=b.message)


def run_catalog_job(pattern: Pattern, variant: str, checker: str, out_root: Path,
                    cache_dir: Path | None = None, cc: str = "gcc",
                    overrides: Mapping[str, Any] | None = None,
                    timeout: float | None = None) -> Outcome:
    """Render, build (cached), run and judge one (pattern, variant, checker)."""
    expected = pattern.expectation(variant, checker)
    out_dir = Path(out_root) / "logs" / pattern.id / variant / checker
    b = build_mod.build(catalog_spec(pattern, variant, checker, cc, overrides), cache_dir)
    job = Job(checker=checker, command=(str(b.binary) if b.binary else pattern.id,), out_dir=out_dir,
              timeout=timeout or pattern.timeout, pattern=pattern.id, variant=variant)
    result = run_job(job) if b.status == "ok" else build_failed(job, b)
    return Outcome(pattern.id, variant, checker, expected, result, judge(expected, result), b)
