"""Values remembered by the identity of an object, not its value: for the frozen objects the
parsers share (a stack, a job), looked up without hashing them (hashing a stack hashes every
frame).  Each object is kept alive while it is remembered, so that its id stays its own; beyond
a bound everything is forgotten at once (bounded memory)."""

from __future__ import annotations

MISSING = object()  # what get() gives for an object not remembered (a remembered value may be None)


class IdentityMemo:
    __slots__ = ("_items", "_limit")

    def __init__(self, limit: int = 200_000):
        self._items: dict[tuple, tuple] = {}  # (id(obj), tag) -> (obj, value)
        self._limit = limit

    def get(self, obj, tag=None):
        """The value remembered for obj (and tag), or MISSING."""
        known = self._items.get((id(obj), tag))
        if known is not None and known[0] is obj:
            return known[1]
        return MISSING

    def put(self, obj, value, tag=None):
        """Remember value for obj (and tag); returns value."""
        if len(self._items) >= self._limit:
            self._items.clear()
        self._items[(id(obj), tag)] = (obj, value)
        return value
