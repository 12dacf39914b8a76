"""Leak growth: how many bytes a program loses per operation, and how many once.

A leak that grows with the number of requests a server handles is a different bug from
memory lost once at start-up, though one run's leak report cannot tell them apart.  Running
the same program at several iteration counts and fitting

    bytes = fixed + rate x iterations

by least squares, per finding signature and for the whole job, separates them: `rate` is what
each operation loses, `fixed` what is lost once.  This module is pure: it takes the findings
of runs the caller has already made (complete runs only: a run that could not be checked must
never be read as "0 bytes lost") and returns frozen results; report/svg.py draws them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from .errors import LeakHarnessError
from .findings import Finding

# Below this many bytes per operation a fitted rate is rounding noise, not a leak per operation:
# the allocators the tools replace round block sizes, never by a byte per call on average.
MIN_RATE = 0.5


@dataclass(frozen=True)
class GrowthFit:
    """bytes = fixed_bytes + rate_per_op x iterations, fitted to `points`."""

    rate_per_op: float  # bytes lost per operation (iteration)
    fixed_bytes: float  # bytes lost once, whatever the number of operations
    points: tuple[tuple[int, int], ...]  # (iterations, lost bytes), sorted by iterations
    r2: float  # how well the line fits: 1.0 exactly, lower when the points scatter

    @property
    def kind(self) -> str:
        """"per-operation" (grows with the work done), "one-time" (lost once) or "none"."""
        if self.rate_per_op >= MIN_RATE:
            return "per-operation"
        if max((b for _, b in self.points), default=0) > 0:
            return "one-time"
        return "none"

    def to_dict(self) -> dict:
        return {
            # + 0.0: a fit of exact multiples gives -0.0 for the fixed part; JSON shows 0.0.
            "rate_per_op": round(self.rate_per_op, 3) + 0.0,
            "fixed_bytes": round(self.fixed_bytes, 3) + 0.0,
            "points": [list(p) for p in self.points],
            "r2": round(self.r2, 6),
            "kind": self.kind,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "GrowthFit":
        """Back from results.json (a report draws its plots from there)."""
        return cls(rate_per_op=float(data["rate_per_op"]), fixed_bytes=float(data["fixed_bytes"]),
                   points=tuple((int(n), int(b)) for n, b in data["points"]), r2=float(data["r2"]))


@dataclass(frozen=True)
class GrowthReport:
    """The fit of a job's total lost bytes and of each signature's."""

    total: GrowthFit
    by_signature: tuple[tuple[str, GrowthFit], ...]  # largest rate first

    def to_dict(self) -> dict:
        return {"total": self.total.to_dict(),
                "by_signature": {sig: fit.to_dict() for sig, fit in self.by_signature}}

    @classmethod
    def from_dict(cls, data: dict) -> "GrowthReport":
        fits = [(sig, GrowthFit.from_dict(fit)) for sig, fit in data.get("by_signature", {}).items()]
        fits.sort(key=lambda item: (-item[1].rate_per_op, item[0]))
        return cls(total=GrowthFit.from_dict(data["total"]), by_signature=tuple(fits))


def fit_line(points: Iterable[tuple[int, int]]) -> GrowthFit:
    """Least-squares line through (iterations, bytes); needs two different iteration counts."""
    pts = tuple(sorted((int(n), int(b)) for n, b in points))
    if len({n for n, _ in pts}) < 2:
        raise LeakHarnessError(f"growth: need runs at two or more different iteration counts, got "
                               f"{sorted({n for n, _ in pts}) or 'none'}")
    if any(n < 0 for n, _ in pts):
        raise LeakHarnessError("growth: an iteration count cannot be negative")
    k = len(pts)
    mean_n = sum(n for n, _ in pts) / k
    mean_b = sum(b for _, b in pts) / k
    sxx = sum((n - mean_n) ** 2 for n, _ in pts)
    sxy = sum((n - mean_n) * (b - mean_b) for n, b in pts)
    rate = sxy / sxx
    fixed = mean_b - rate * mean_n
    ss_res = sum((b - (fixed + rate * n)) ** 2 for n, b in pts)
    ss_tot = sum((b - mean_b) ** 2 for _, b in pts)
    # Equal bytes at every count (a one-time leak, or none) fit a flat line exactly.
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res <= 1e-9 else 0.0)
    return GrowthFit(rate_per_op=rate, fixed_bytes=fixed, points=pts, r2=r2)


def lost_bytes(findings: Iterable[Finding]) -> dict[str, int]:
    """Lost (definite + indirect, unsuppressed) bytes per signature of one run."""
    out: dict[str, int] = {}
    for f in findings:
        if f.is_lost_leak and not f.suppressed:
            out[f.signature] = out.get(f.signature, 0) + (f.bytes or 0)
    return out


def fit_growth(runs: Sequence[tuple[int, Iterable[Finding]]]) -> GrowthReport:
    """Fit the total and every signature over runs of one program at several iteration counts.

    `runs` holds (iterations, findings of that run).  A signature missing from a run lost 0
    bytes there (the runs are complete: the caller has checked), so a leak that starts only
    past some count still fits."""
    per_run = [(int(n), lost_bytes(findings)) for n, findings in runs]
    total = fit_line((n, sum(by_sig.values())) for n, by_sig in per_run)
    signatures = sorted({s for _, by_sig in per_run for s in by_sig})
    fits = [(s, fit_line((n, by_sig.get(s, 0)) for n, by_sig in per_run)) for s in signatures]
    fits.sort(key=lambda item: (-item[1].rate_per_op, item[0]))
    return GrowthReport(total=total, by_signature=tuple(fits))
