"""A set of half-open integer ranges, kept sorted and merged.

Used for media poison, DPA allocations and anything else that is "which bytes".
No object per byte: a list of ``[start, end)`` pairs.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

import attrs


@attrs.define(slots=True)
class RangeSet:
    _starts: list[int] = attrs.field(factory=list)
    _ends: list[int] = attrs.field(factory=list)

    def add(self, start: int, length: int) -> None:
        if length <= 0:
            return
        end = start + length
        i = bisect.bisect_left(self._ends, start)
        j = i
        while j < len(self._starts) and self._starts[j] <= end:
            start = min(start, self._starts[j])
            end = max(end, self._ends[j])
            j += 1
        self._starts[i:j] = [start]
        self._ends[i:j] = [end]

    def remove(self, start: int, length: int) -> None:
        if length <= 0:
            return
        end = start + length
        i = bisect.bisect_right(self._ends, start)
        new_s: list[int] = []
        new_e: list[int] = []
        j = i
        while j < len(self._starts) and self._starts[j] < end:
            s, e = self._starts[j], self._ends[j]
            if s < start:
                new_s.append(s)
                new_e.append(start)
            if e > end:
                new_s.append(end)
                new_e.append(e)
            j += 1
        self._starts[i:j] = new_s
        self._ends[i:j] = new_e

    def overlaps(self, start: int, length: int) -> bool:
        if length <= 0:
            return False
        i = bisect.bisect_right(self._ends, start)
        return i < len(self._starts) and self._starts[i] < start + length

    def intersect(self, start: int, length: int) -> Iterator[tuple[int, int]]:
        """Pieces of the set inside ``[start, start+length)`` as ``(start, length)``."""
        end = start + length
        i = bisect.bisect_right(self._ends, start)
        while i < len(self._starts) and self._starts[i] < end:
            s = max(self._starts[i], start)
            e = min(self._ends[i], end)
            yield s, e - s
            i += 1

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((s, e - s) for s, e in zip(self._starts, self._ends, strict=True))

    def __len__(self) -> int:
        return len(self._starts)

    def __bool__(self) -> bool:
        return bool(self._starts)

    @property
    def total(self) -> int:
        return sum(e - s for s, e in zip(self._starts, self._ends, strict=True))

    def copy(self) -> RangeSet:
        return RangeSet(list(self._starts), list(self._ends))
