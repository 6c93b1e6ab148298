"""Reverse maps: which address spaces map a pfn, and who pins it.

Linux finds the mappings of a page through the page (``page->mapping`` and the file's
interval tree of VMAs, or the anon_vma); a pfn without a struct page (``VM_PFNMAP``)
has no reverse map at all, which is why memory-failure handling and truncation can only
work by file range there. The model keeps one machine-wide table keyed by the pfn a
page-table leaf starts at, so it can answer "who maps pfn P" for every kind of mapping;
:meth:`Rmap.lookup` says, too, whether the kernel itself could have answered.

Leaves are naturally aligned in physical memory (a 2 MiB leaf maps a 2 MiB-aligned
pfn range), so a pfn's leaves are found by looking up the pfn itself and its 2 MiB and
1 GiB aligned-down pfns: three dict lookups, whatever the number of mappings.

Pins (``pin_user_pages``) are counted in the struct page (``pincount``), which says how
many but not who; :class:`PinTable` keeps who, for teaching and for the invariants.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from mm.process import Mm

_ORDERS = ((1, 0), (1 << 9, 9), (1 << 18, 18))  # (pages, order) for 4K, 2M, 1G leaves


@attrs.frozen(slots=True, eq=False)
class MapRecord:
    """One page-table leaf as seen from its first pfn. ``ref``: the mapping holds a
    reference on the struct page (False for a pfn without one, or VM_PFNMAP)."""

    mm: Mm
    addr: int
    size: int
    ref: bool

    def covers(self, pfn: int, head: int) -> int:
        """The virtual address of ``pfn`` in this leaf starting at pfn ``head``."""
        return self.addr + ((pfn - head) << 12)


@attrs.define(slots=True, eq=False)
class Rmap:
    """pfn -> the leaves mapping it, machine-wide."""

    _maps: dict[int, list[MapRecord]] = attrs.field(factory=dict, repr=False)
    _count: int = 0

    def add(self, pfn: int, rec: MapRecord) -> None:
        self._maps.setdefault(pfn, []).append(rec)
        self._count += 1

    def remove(self, pfn: int, mm: Mm, addr: int) -> MapRecord:
        recs = self._maps[pfn]
        for i, r in enumerate(recs):
            if r.mm is mm and r.addr == addr:
                del recs[i]
                if not recs:
                    del self._maps[pfn]
                self._count -= 1
                return r
        raise KeyError(f"pfn {pfn:#x} is not mapped at {addr:#x} by {mm.name}")

    def lookup(self, pfn: int) -> list[tuple[MapRecord, int]]:
        """Every leaf covering ``pfn``, with the virtual address of ``pfn`` in it."""
        out: list[tuple[MapRecord, int]] = []
        for pages, order in _ORDERS:
            head = pfn >> order << order
            for r in self._maps.get(head, ()):
                if r.size >> 12 == pages:
                    out.append((r, r.covers(pfn, head)))
        return out

    def heads(self) -> Iterator[tuple[int, MapRecord]]:
        for pfn, recs in self._maps.items():
            for r in recs:
                yield pfn, r

    def __len__(self) -> int:
        return self._count


@attrs.frozen(slots=True)
class PinRecord:
    """One pin of one page: by which process, at which address, for whom."""

    pid: int
    process: str
    addr: int
    who: str
    longterm: bool

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "process": self.process, "address": self.addr,
                "who": self.who, "longterm": self.longterm}


@attrs.define(slots=True, eq=False)
class PinTable:
    """pfn -> the pins on it (the struct page only counts them)."""

    _pins: dict[int, list[PinRecord]] = attrs.field(factory=dict, repr=False)

    def add(self, pfn: int, rec: PinRecord) -> None:
        self._pins.setdefault(pfn, []).append(rec)

    def remove(self, pfn: int) -> PinRecord:
        recs = self._pins[pfn]
        rec = recs.pop(0)
        if not recs:
            del self._pins[pfn]
        return rec

    def lookup(self, pfn: int) -> list[PinRecord]:
        return list(self._pins.get(pfn, ()))

    def items(self) -> Iterator[tuple[int, list[PinRecord]]]:
        yield from self._pins.items()

    def __len__(self) -> int:
        return sum(len(v) for v in self._pins.values())
