"""Root causes: which leak records are one bug (a definite leak and the indirect records it
owns), and the order bugs are shown in, most severe first.  Used by `check`, `parse --format
text` and the report alike.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Iterable, Sequence

from .findings import Finding, Frame
from .signatures import GO_CALLER, is_startup, own_frame_of, significant_frames

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
        return bool(self.root.suppressed) and all(f.suppressed for f in self.owned)

    def rank(self) -> tuple:
        """Sort key: unsuppressed first; memory errors, then definite leaks by total bytes,
        then indirect, possible, reachable."""
        root = self.root
        owned = self.owned  # most groups own nothing: their key is read off the root alone
        kind = 0 if root.category != "leak" else _LEAK_RANK.get(root.leak_kind, 1)
        if not owned:
            return (bool(root.suppressed), kind, -(root.bytes or 0), root.signature)
        return (self.suppressed, kind, -self.total_bytes, root.signature)

    def where(self) -> str:
        frame = own_frame_of(self.root.stack)
        if frame is None:
            # A leak through cgo: its stack ends at the stub, and the go-asan or memcheck build
            # recorded the Go line that made the call (parsers/go.py): that is where to look.
            callers = [a for a in self.root.aux_stacks if a.label == GO_CALLER and a.frames]
            if callers:
                more = f", and {len(callers) - 1} more" if len(callers) > 1 else ""
                return f"{callers[0].frames[0].describe()} (Go caller{more})"
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


class _Paths:
    """Stacks as paths from main (the process start-up frames below main left out), each frame
    named by a small number: equal frames (every field) get the same one, so paths compare and
    hash as cheaply as tuples of ints.  The parser shares Frame objects: each is named once."""

    def __init__(self):
        self.by_object: dict[int, int] = {}
        self.by_value: dict[tuple, int] = {}
        self.keep: list[Frame] = []  # the frames named by object identity stay alive while named

    def __call__(self, stack: Sequence[Frame]) -> list[int]:
        path = []
        by_object = self.by_object
        for f in stack:
            n = by_object.get(id(f))
            if n is None:
                if is_startup(f):
                    n = -1  # below main: the C runtime's
                else:
                    value = (f.address, f.function, f.file, f.line, f.object, f.offset)
                    n = self.by_value.setdefault(value, len(self.by_value))
                by_object[id(f)] = n
                self.keep.append(f)
            if n < 0:
                break
            path.append(n)
        path.reverse()
        return path


def _owns_indirect(f: Finding) -> bool:
    return f.category == "leak" and (f.leak_kind == "definite" or (f.leak_kind == "possible" and f.indirect_bytes > 0))


def _tool_counts_indirect(f: Finding) -> bool:
    # valgrind's loss records say how many indirect bytes a record owns ("N (D direct, I
    # indirect) bytes"); LeakSanitizer's never do.
    return f.kind.startswith("Leak_")


class _Node:
    """A node of the owners' trie of paths from main: the owners whose path passes through it
    (their indices, ascending), and its place in a walk of the trie (`first`..`last` hold the
    walk positions of every owner below it)."""

    __slots__ = ("children", "owners", "depth", "first", "last", "left")

    def __init__(self, depth: int):
        self.children: dict[int, _Node] = {}
        self.owners: list[int] = []
        self.depth = depth
        self.first = self.last = 0
        # For the greedy pass: budget left -> a heap of the owners below with that much left
        # (an entry whose owner has another amount left now is stale, and dropped when met).
        self.left: dict[int, list[int]] = {}


def _owner_trie(paths: list[list[int]]) -> tuple[_Node, list[int], list[list[_Node]]]:
    """The trie of the owners' paths from main, each owner's position in a walk of it, and the
    nodes each owner's path passes through."""
    root = _Node(0)
    chains: list[list[_Node]] = []
    for o, path in enumerate(paths):
        node = root
        node.owners.append(o)
        chain = [root]
        for frame in path:
            child = node.children.get(frame)
            if child is None:
                child = node.children[frame] = _Node(node.depth + 1)
            node = child
            node.owners.append(o)
            chain.append(node)
        chains.append(chain)
    # Positions: every subtree a contiguous range, so "is owner o below node n" is two comparisons.
    position = [0] * len(paths)
    counter = 0
    stack: list[tuple[_Node, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        if leaving:
            node.last = counter
            continue
        node.first = counter
        stack.append((node, True))
        for o in node.owners:  # the owners whose path ends here, then the children's
            if chains[o][-1] is node:
                position[o] = counter
                counter += 1
        stack.extend((child, False) for child in reversed(list(node.children.values())))
    return root, position, chains


def _descend(root: _Node, path: list[int]) -> list[_Node]:
    """The trie nodes a path from main passes through, root first: the last is the deepest, and
    its depth is the longest path from main the record shares with any owner."""
    chain = [root]
    node = root
    for frame in path:
        node = node.children.get(frame)
        if node is None:
            break
        chain.append(node)
    return chain


def _preferences(chain: list[_Node], position: list[int]):
    """Owners in order of preference for a record whose path passes through `chain`: the longest
    common path from main first, the lower index first among equals (each level's owners not
    below the level under it)."""
    below = None
    for node in reversed(chain):
        for o in node.owners:
            if below is None or not below.first <= position[o] < below.last:
                yield o
        below = node


# Work limits: the exact search is exponential at worst and tried only on small problems; the
# greedy pass gives up (to the longest-path choice) after about this much work per record.
_SEARCH_STEPS = 20_000
_SEARCH_MAX_PAIRS = 250_000  # indirect records x owners
_GREEDY_LOOKS = 16


def _greedy(indirect: list[Finding], order: list[int], chains: list[list[_Node]],
            owner_chains: list[list[_Node]], remaining: list[int]) -> dict[int, int] | None:
    """The exact search's first try (its first way down), in near-linear time: each record, the
    most bytes first, to the first owner in its order of preference with enough budget left: in
    the deepest trie node that has one, the lowest index.  (A level is tried only when every
    owner below it has too little left, so the level's own owners need not be told apart from
    those below.)  None unless every record is placed and every budget spent."""
    choice: dict[int, int] = {}
    looks = _GREEDY_LOOKS * (len(order) + len(remaining)) + 10_000
    for o, chain in enumerate(owner_chains):
        if remaining[o]:
            for node in chain:
                node.left.setdefault(remaining[o], []).append(o)  # ascending: a heap already
    for k in order:
        need = indirect[k].bytes or 0
        chain = chains[k]
        found = None
        if need == 0:  # fits anywhere: the first preference
            found = chain[-1].owners[0] if chain[-1].owners else None
        for node in reversed(chain):
            if found is not None:
                break
            emptied = []
            for value, heap in node.left.items():
                looks -= 1
                if value < need:
                    continue
                while heap and remaining[heap[0]] != value:
                    heapq.heappop(heap)
                    looks -= 1
                if not heap:
                    emptied.append(value)
                elif found is None or heap[0] < found:
                    found = heap[0]
            for value in emptied:
                del node.left[value]
            if looks < 0:
                return None  # not near-linear any more: the longest-path choice instead
        if found is None:
            return None
        remaining[found] -= need
        choice[k] = found
        left = remaining[found]
        if left:
            for node in owner_chains[found]:
                heapq.heappush(node.left.setdefault(left, []), found)
    return choice if not any(remaining) else None


def _search(indirect: list[Finding], order: list[int], prefs: dict[int, list[int]],
            remaining: list[int]) -> dict[int, int] | None:
    """An assignment that spends every budget exactly, tried depth first in order of preference;
    iterative, and given up after _SEARCH_STEPS steps."""
    choice: dict[int, int] = {}
    tried = [0] * (len(order) + 1)  # per position: how far along its preferences the search is
    pos = 0
    steps = 0
    while True:
        if pos == len(order):
            if not any(remaining):
                return choice
            pos -= 1  # a dead end: back to the last choice
            if pos < 0:
                return None
            k = order[pos]
            remaining[choice.pop(k)] += indirect[k].bytes or 0
            continue
        if tried[pos] == 0:
            steps += 1
            if steps > _SEARCH_STEPS:
                return None
        k = order[pos]
        need = indirect[k].bytes or 0
        options = prefs[k]
        i = tried[pos]
        while i < len(options) and remaining[options[i]] < need:
            i += 1
        if i < len(options):
            o = options[i]
            tried[pos] = i + 1
            remaining[o] -= need
            choice[k] = o
            pos += 1
            tried[pos] = 0
            continue
        tried[pos] = 0
        pos -= 1
        if pos < 0:
            return None
        k = order[pos]
        remaining[choice.pop(k)] += indirect[k].bytes or 0


def _assign(owners: list[Finding], indirect: list[Finding]) -> tuple[dict[int, list[int]], list[int], bool | None]:
    """Attach indirect records to owners.  Returns ({owner: [indirect...]}, unowned, checked)."""
    from_main = _Paths()
    root, position, owner_chains = _owner_trie([from_main(o.stack) for o in owners])
    chains = [_descend(root, from_main(i.stack)) for i in indirect]
    budgeted = bool(owners) and all(_tool_counts_indirect(o) for o in owners)
    order = sorted(range(len(indirect)), key=lambda k: (-(indirect[k].bytes or 0), k))

    if budgeted:
        # valgrind says how many indirect bytes each owner has: find an assignment that spends
        # every budget exactly, trying owners in order of the longest common path from main.
        choice = _greedy(indirect, order, chains, owner_chains, [o.indirect_bytes for o in owners])
        if choice is None and len(indirect) * len(owners) <= _SEARCH_MAX_PAIRS:
            prefs = {k: list(_preferences(chains[k], position)) for k in order}
            choice = _search(indirect, order, prefs, [o.indirect_bytes for o in owners])
        if choice is not None:
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
        deepest = chains[k][-1]
        if not owners or (deepest.depth == 0 and len(owners) != 1):
            unowned.append(k)
            continue
        owned[deepest.owners[0]].append(k)  # the lowest index among the longest common paths
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
