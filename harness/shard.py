"""Shards: split one run's tasks over N machines (CI jobs) so that each takes about as long.

`select_shard(tasks, k, n, durations)` is a pure function of the task names and the remembered
durations, so every shard computes the same split on its own, with no coordination: the
tasks are sorted longest first (ties by name) and each goes to the shard with the least work
so far (ties to the lowest shard).  Every task lands in exactly one shard.  The shards must
see the same durations (the same <cache>/durations.json, or none): two machines with
different caches would compute different splits.  `leakharness report A B C --out M` merges
the shards' results folders afterwards.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence, TypeVar

from .errors import LeakHarnessError
from .orchestrate import estimate  # the scheduler's own weights: shards and the run agree

T = TypeVar("T")

_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def parse_shard(text: str) -> tuple[int, int]:
    """'2/3' -> (2, 3): shard 2 of 3, counted from 1; one line for anything else."""
    match = _SHARD.fullmatch(str(text))
    if not match:
        raise LeakHarnessError(f"--shard {text}: give K/N with whole numbers, e.g. 2/3 (shard 2 of 3)")
    k, n = int(match.group(1)), int(match.group(2))
    if n < 1:
        raise LeakHarnessError(f"--shard {text}: the number of shards must be 1 or more")
    if not 1 <= k <= n:
        raise LeakHarnessError(f"--shard {text}: the shard must be between 1 and {n}")
    return k, n


def split(tasks: Sequence[T], n: int, durations: Mapping[str, float]) -> list[list[T]]:
    """All n shards, each in the tasks' given order."""
    if n < 1:
        raise LeakHarnessError(f"shards: the number of shards must be 1 or more, not {n}")
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
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise LeakHarnessError(f"--shard {k}/{n}: the number of shards must be a whole number, 1 or more")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise LeakHarnessError(f"--shard {k}/{n}: the shard must be between 1 and {n}")
    return split(tasks, n, durations or {})[k - 1]
