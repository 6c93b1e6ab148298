"""Page tables: leaf entries of 4 KiB (PTE), 2 MiB (PMD) and 1 GiB (PUD).

A real x86_64 page table is a 4-level radix tree; only its *leaves* matter to the
model (which pfn backs a virtual address, at what size, writable, dirty), so the table
is three dicts of leaves keyed by virtual page number at their level. Mapping 4 GiB
with 2 MiB entries costs 2048 small objects, not a tree of 1 M PTEs.

The tree's one structural rule is kept: a virtual range is covered by at most one
leaf. A PMD slot holds either a 2 MiB leaf or a table of PTEs, never both, so a 2 MiB
entry can be inserted only where no 4 KiB entry lives in that 2 MiB, and likewise for
1 GiB. Per-slot counters make that check O(1).

::

    insert(0x7f0000200000, pfn 0x100200, 2M)   pmd[0x3f80001] = Entry(0x100200, 2M)
    lookup(0x7f0000234567)                    -> that entry; phys 0x100234567
    insert(0x7f0000201000, pfn .., 4K)         refused: a 2 MiB leaf covers it
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from nvdimm.errors import Busy, InvalidArgument

PTE_SIZE = 1 << 12
PMD_SIZE = 1 << 21
PUD_SIZE = 1 << 30
#: Entry sizes, largest first (the order a fault tries them).
SIZES = (PUD_SIZE, PMD_SIZE, PTE_SIZE)
SHIFTS = {PTE_SIZE: 12, PMD_SIZE: 21, PUD_SIZE: 30}
#: Metric/trace names of the sizes: ``mm.faults.4k`` ...
SIZE_NAMES = {PTE_SIZE: "4k", PMD_SIZE: "2m", PUD_SIZE: "1g"}


class Entry:
    """One leaf: ``size`` bytes at pfn ``pfn`` (aligned to ``size``)."""

    __slots__ = ("dirty", "pfn", "size", "writable")

    def __init__(self, pfn: int, size: int, writable: bool, dirty: bool = False) -> None:
        self.pfn = pfn
        self.size = size
        self.writable = writable
        self.dirty = dirty

    def __repr__(self) -> str:
        flags = ("w" if self.writable else "r") + ("d" if self.dirty else "")
        return f"Entry(pfn={self.pfn:#x}, size={SIZE_NAMES[self.size]}, {flags})"

    @property
    def npages(self) -> int:
        return self.size >> 12


@attrs.define(slots=True, eq=False)
class PageTable:
    """The leaves of one address space's page table."""

    pte: dict[int, Entry] = attrs.field(factory=dict, repr=False)
    pmd: dict[int, Entry] = attrs.field(factory=dict, repr=False)
    pud: dict[int, Entry] = attrs.field(factory=dict, repr=False)
    # How many leaves live below a PMD slot (PTEs) and below a PUD slot (PMDs + PTEs).
    _below_pmd: dict[int, int] = attrs.field(factory=dict, repr=False)
    _below_pud: dict[int, int] = attrs.field(factory=dict, repr=False)

    def _level(self, size: int) -> dict[int, Entry]:
        if size == PTE_SIZE:
            return self.pte
        if size == PMD_SIZE:
            return self.pmd
        if size == PUD_SIZE:
            return self.pud
        raise InvalidArgument(f"a page table entry maps 4 KiB, 2 MiB or 1 GiB, not {size:#x}")

    # -- lookups --------------------------------------------------------------------------

    def lookup(self, addr: int) -> tuple[int, Entry] | None:
        """The leaf covering ``addr`` and the virtual address it starts at."""
        e = self.pte.get(addr >> 12)
        if e is not None:
            return addr & ~(PTE_SIZE - 1), e
        e = self.pmd.get(addr >> 21)
        if e is not None:
            return addr & ~(PMD_SIZE - 1), e
        e = self.pud.get(addr >> 30)
        if e is not None:
            return addr & ~(PUD_SIZE - 1), e
        return None

    def translate(self, addr: int) -> int | None:
        """The physical address behind ``addr``, or None when nothing maps it."""
        hit = self.lookup(addr)
        if hit is None:
            return None
        base, e = hit
        return (e.pfn << 12) + addr - base

    def is_empty(self, base: int, size: int) -> bool:
        """Whether no leaf lies in ``[base, base + size)`` (``base`` aligned to ``size``),
        so a leaf of ``size`` may go there."""
        if self.pud.get(base >> 30) is not None:
            return False
        if size == PUD_SIZE:
            return not self._below_pud.get(base >> 30)
        if self.pmd.get(base >> 21) is not None:
            return False
        if size == PMD_SIZE:
            return not self._below_pmd.get(base >> 21)
        return self.pte.get(base >> 12) is None

    # -- changes --------------------------------------------------------------------------

    def insert(self, base: int, entry: Entry) -> None:
        size = entry.size
        level = self._level(size)
        if base & (size - 1) or entry.pfn & ((size >> 12) - 1):
            raise InvalidArgument(f"a {SIZE_NAMES[size]} entry needs virtual {base:#x} and "
                                  f"pfn {entry.pfn:#x} aligned to its size")
        if not self.is_empty(base, size):
            raise Busy(f"[{base:#x}, +{size:#x}) is already mapped")
        level[base >> SHIFTS[size]] = entry
        if size == PTE_SIZE:
            k = base >> 21
            self._below_pmd[k] = self._below_pmd.get(k, 0) + 1
        if size != PUD_SIZE:
            k = base >> 30
            self._below_pud[k] = self._below_pud.get(k, 0) + 1

    def remove(self, base: int, size: int) -> Entry:
        level = self._level(size)
        e = level.pop(base >> SHIFTS[size])
        if size == PTE_SIZE:
            _dec(self._below_pmd, base >> 21)
        if size != PUD_SIZE:
            _dec(self._below_pud, base >> 30)
        return e

    def entries(self, start: int, end: int) -> list[tuple[int, Entry]]:
        """Every leaf overlapping ``[start, end)``, by address."""
        out: list[tuple[int, Entry]] = []
        for size in SIZES:
            shift = SHIFTS[size]
            level = self._level(size)
            if not level:
                continue
            lo, hi = start >> shift, (end - 1) >> shift
            out.extend((k << shift, level[k]) for k in _keys(level, lo, hi))
        out.sort(key=lambda t: t[0])
        return out

    def zap(self, start: int, end: int) -> list[tuple[int, Entry]]:
        """Remove every leaf overlapping ``[start, end)`` (a huge leaf only partly inside
        goes whole, as zapping a DAX PMD does: the rest of it refaults). Returns them."""
        gone = self.entries(start, end)
        for base, e in gone:
            self.remove(base, e.size)
        return gone

    def __iter__(self) -> Iterator[tuple[int, Entry]]:
        for size in SIZES:
            shift = SHIFTS[size]
            for k, e in self._level(size).items():
                yield k << shift, e

    def __len__(self) -> int:
        return len(self.pte) + len(self.pmd) + len(self.pud)

    def counts(self) -> dict[str, int]:
        return {"4k": len(self.pte), "2m": len(self.pmd), "1g": len(self.pud)}


def _keys(level: dict[int, Entry], lo: int, hi: int) -> list[int]:
    # Walk whichever is smaller: the index range, or the level's keys.
    if hi - lo + 1 <= len(level):
        return [k for k in range(lo, hi + 1) if k in level]
    return [k for k in level if lo <= k <= hi]


def _dec(d: dict[int, int], k: int) -> None:
    n = d[k] - 1
    if n:
        d[k] = n
    else:
        del d[k]
