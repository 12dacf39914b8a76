"""Root causes: which leak records are one bug (a definite leak and the indirect records it
owns), and the order bugs are shown in, most severe first.  Used by `check`, `parse --format
text` and the report alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from .findings import Finding, Frame
from .signatures import is_startup, own_frame_of, significant_frames

# --- root causes ------------------------------------------------------------------------------

# Severity classes, most urgent first: memory errors, then leaks by kind.
_LEAK_RANK = {"definite": 1, None: 1, "indirect": 2, "possible": 3, "reachable": 4}


def _bytes(n: int) -> str:
    return f"{n} B"  # no thousands separator: what a user greps for is the number the tool printed


@dataclass(frozen=True)
class FindingGroup:
    """One bug: a root finding and the indirect leak records it owns.

    `checked` says how far the assignment of indirect records is known to be right: True when
    the tool said how many indirect bytes the root owns (valgrind) and the owned records add up
    to exactly that; False when they do not (see `reported_indirect_bytes`); None when the tool
    gives no such total (LeakSanitizer) and the assignment rests on the stacks alone."""

    root: Finding
    owned: tuple[Finding, ...] = ()
    checked: bool | None = None

    @property
    def findings(self) -> tuple[Finding, ...]:
        return (self.root, *self.owned)

    @property
    def bytes(self) -> int:
        return self.root.bytes or 0

    @property
    def indirect_bytes(self) -> int:
        """What the owned records hold (the tool's own figure: `reported_indirect_bytes`)."""
        return sum(f.bytes or 0 for f in self.owned)

    @property
    def reported_indirect_bytes(self) -> int:
        return self.root.indirect_bytes

    @property
    def total_bytes(self) -> int:
        return self.bytes + self.indirect_bytes

    @property
    def is_leak(self) -> bool:
        return self.root.category == "leak"

    @property
    def suppressed(self) -> bool:
        return all(f.suppressed for f in self.findings)

    def rank(self) -> tuple:
        """Sort key: unsuppressed first; memory errors, then definite leaks by total bytes,
        then indirect, possible, reachable."""
        root = self.root
        kind = 0 if root.category != "leak" else _LEAK_RANK.get(root.leak_kind, 1)
        return (self.suppressed, kind, -self.total_bytes, root.signature)

    def where(self) -> str:
        frame = own_frame_of(self.root.stack)
        if frame is None:
            frames = significant_frames(self.root.stack)
            frame = frames[0] if frames else None
        return frame.describe() if frame is not None else ""

    def headline(self) -> str:
        """`leak (definite) 72 B + 933 B indirect at make_ctx ctx.c:12`."""
        root = self.root
        what = root.category
        if root.category == "leak":
            what = f"leak ({root.leak_kind})" if root.leak_kind else "leak"
            if root.bytes is not None:
                what += f" {_bytes(self.bytes)}"
                if self.owned:
                    what += f" + {_bytes(self.indirect_bytes)} indirect"
                elif root.indirect_bytes:  # the tool's figure, no record attached
                    what += f" + {_bytes(root.indirect_bytes)} indirect"
        elif root.count > 1:
            what += f" ×{root.count}"
        where = self.where()
        return what + (f" at {where}" if where else "")


def _frame_id(frame: Frame) -> tuple:
    return (frame.address, frame.function, frame.file, frame.line, frame.object, frame.offset)


def _from_main(stack: Sequence[Frame]) -> list[tuple]:
    """The stack from main up (the process start-up frames below main left out)."""
    frames = []
    for f in stack:
        if is_startup(f):
            break
        frames.append(_frame_id(f))
    frames.reverse()
    return frames


def _common_from_main(a: list[tuple], b: list[tuple]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _owns_indirect(f: Finding) -> bool:
    return f.category == "leak" and (f.leak_kind == "definite" or (f.leak_kind == "possible" and f.indirect_bytes > 0))


def _tool_counts_indirect(f: Finding) -> bool:
    # valgrind's loss records say how many indirect bytes a record owns ("N (D direct, I
    # indirect) bytes"); LeakSanitizer's never do.
    return f.kind.startswith("Leak_")


_SEARCH_STEPS = 20_000


def _assign(owners: list[Finding], indirect: list[Finding]) -> tuple[dict[int, list[int]], list[int], bool | None]:
    """Attach indirect records to owners.  Returns ({owner: [indirect...]}, unowned, checked)."""
    paths_o = [_from_main(o.stack) for o in owners]
    scores = [[_common_from_main(_from_main(i.stack), po) for po in paths_o] for i in indirect]
    budgeted = bool(owners) and all(_tool_counts_indirect(o) for o in owners)
    order = sorted(range(len(indirect)), key=lambda k: (-(indirect[k].bytes or 0), k))
    prefs = {k: sorted(range(len(owners)), key=lambda o: (-scores[k][o], o)) for k in order}

    if budgeted:
        # valgrind says how many indirect bytes each owner has: find an assignment that spends
        # every budget exactly, trying owners in order of the longest common path from main.
        remaining = [o.indirect_bytes for o in owners]
        choice: dict[int, int] = {}
        steps = [0]

        def search(pos: int) -> bool:
            if pos == len(order):
                return not any(remaining)
            steps[0] += 1
            if steps[0] > _SEARCH_STEPS:
                return False
            k = order[pos]
            need = indirect[k].bytes or 0
            for o in prefs[k]:
                if remaining[o] >= need:
                    remaining[o] -= need
                    choice[k] = o
                    if search(pos + 1):
                        return True
                    remaining[o] += need
            return False

        if search(0):
            owned: dict[int, list[int]] = {o: [] for o in range(len(owners))}
            for k in sorted(choice):
                owned[choice[k]].append(k)
            return owned, [], True

    # No exact split (blocks of one loss record owned by different roots, or no totals at all):
    # each indirect record goes to the owner whose stack shares the longest path from main; with
    # nothing in common it goes to the only owner, or stays a root of its own.
    owned = {o: [] for o in range(len(owners))}
    unowned = []
    for k in range(len(indirect)):
        if not owners:
            unowned.append(k)
            continue
        best = prefs[k][0]
        if scores[k][best] > 0 or len(owners) == 1:
            owned[best].append(k)
        else:
            unowned.append(k)
    return owned, unowned, (False if budgeted else None)


def group_findings(findings: Iterable[Finding]) -> list[FindingGroup]:
    """Findings as root causes, most severe first: each definite leak with the indirect leak
    records it owns, and every other finding as a group of its own.

    Neither tool says which indirect record a definite one owns.  The rule, per process (tool,
    pid, log): an indirect record belongs to the definite record whose allocation stack shares
    the longest path from main (frames compared exactly, start-up frames left out), as blocks
    built by one constructor call share that call's path.  Where the tool gives each definite
    record's total of indirect bytes (valgrind), the assignment must spend every total exactly:
    a search tries owners in that order and the group is `checked`; where no exact split exists
    (one loss record whose blocks belong to two roots) the longest-path choice stands and
    `checked` is False.  LeakSanitizer gives no totals: the longest path decides (`checked` None),
    and an indirect record sharing nothing with any of several definite ones (a leaked cycle,
    which LSan reports as indirect only) stays a root of its own."""
    findings = list(findings)
    by_process: dict[tuple, list[int]] = {}
    for n, f in enumerate(findings):
        by_process.setdefault((f.tool, f.pid, f.source), []).append(n)
    groups: list[FindingGroup] = []
    for members in by_process.values():
        owners = [n for n in members if _owns_indirect(findings[n])]
        owner_set = set(owners)
        indirect = [n for n in members if findings[n].category == "leak" and findings[n].leak_kind == "indirect"]
        owned, unowned, checked = _assign([findings[n] for n in owners], [findings[n] for n in indirect])
        taken = set()
        for o, ks in owned.items():
            root = findings[owners[o]]
            parts = tuple(findings[indirect[k]] for k in ks)
            taken.update(indirect[k] for k in ks)
            ok = checked
            if checked is False:  # no exact split overall; this root's own total may still add up
                ok = sum(p.bytes or 0 for p in parts) == root.indirect_bytes
            groups.append(FindingGroup(root, parts, ok))
        for n in members:
            if n in taken or n in owner_set:
                continue
            groups.append(FindingGroup(findings[n]))
    groups.sort(key=FindingGroup.rank)
    return groups
