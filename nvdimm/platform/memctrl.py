"""The memory controller: routes system physical addresses to DIMM media.

It is the durable side of the persistence domain (the ``Backend`` the CPU cache model
writes through): what it holds survives power loss. Poisoned media raises
:class:`MediaError` on read, like a machine check on a real load.
"""

from __future__ import annotations

import bisect

import attrs

from nvdimm.errors import InvalidArgument, MediaError
from nvdimm.platform.media import SparseMedia
from nvdimm.platform.nfit import SpaRange
from nvdimm.platform.ranges import RangeSet


@attrs.define(slots=True)
class DimmMedia:
    """One DIMM's bytes (DPA space followed by the label area) and its poison."""

    capacity: int
    label_size: int
    media: SparseMedia
    poison: RangeSet = attrs.field(factory=RangeSet)  # DPA ranges
    flush_hint_writes: int = 0

    @classmethod
    def blank(cls, capacity: int, label_size: int) -> DimmMedia:
        return cls(capacity, label_size, SparseMedia(capacity + label_size))


@attrs.define(slots=True)
class MemoryController:
    dimms: list[DimmMedia]
    ranges: list[SpaRange]
    _bases: list[int] = attrs.field(init=False)
    _last: SpaRange = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        if not self.ranges:
            raise InvalidArgument("a memory controller needs at least one SPA range")
        self.ranges = sorted(self.ranges, key=lambda r: r.base)
        self._bases = [r.base for r in self.ranges]
        self._last = self.ranges[0]

    def _range(self, addr: int, n: int) -> SpaRange:
        r = self._last  # consecutive accesses nearly always hit the same range
        if r.base <= addr and addr + n <= r.base + r.size:
            return r
        i = bisect.bisect_right(self._bases, addr) - 1
        if i >= 0:
            r = self.ranges[i]
            if addr >= r.base and addr + n <= r.base + r.size:
                self._last = r
                return r
        raise InvalidArgument(f"physical range [{addr:#x}, {addr + n:#x}) is not pmem")

    def pieces(self, addr: int, n: int) -> list[tuple[int, int, int]]:
        """Split an SPA range into ``(dimm, dpa, length)`` pieces."""
        r = self._range(addr, n)
        off = addr - r.base
        if r.ways == 1:
            m = r.mappings[0]
            return [(m.dimm, m.dpa + off, n)]
        out = []
        done = 0
        while done < n:
            way, dpa, room = r.locate(off + done)
            take = min(room, n - done)
            out.append((r.mappings[way].dimm, dpa, take))
            done += take
        return out

    def read(self, addr: int, n: int) -> bytes:
        r = self._last
        if not (r.base <= addr and addr + n <= r.base + r.size):
            r = self._range(addr, n)
        if r.ways == 1:  # the common case, kept short
            m = r.mappings[0]
            d = self.dimms[m.dimm]
            dpa = m.dpa + addr - r.base
            if d.poison and d.poison.overlaps(dpa, n):
                self._poisoned(d, dpa, n, addr - dpa)
            return d.media.read(dpa, n)
        out = bytearray()
        for dimm, dpa, take in self.pieces(addr, n):
            d = self.dimms[dimm]
            if d.poison and d.poison.overlaps(dpa, take):
                self._poisoned(d, dpa, take, addr + len(out) - dpa)
            out += d.media.read(dpa, take)
        return bytes(out)

    def _poisoned(self, d: DimmMedia, dpa: int, n: int, spa_minus_dpa: int) -> None:
        start, length = next(d.poison.intersect(dpa, n))
        raise MediaError(f"machine check: poison at physical address {start + spa_minus_dpa:#x}",
                         offset=start + spa_minus_dpa, length=length)

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        r = self._last
        if not (r.base <= addr and addr + n <= r.base + r.size):
            r = self._range(addr, n)
        if r.ways == 1:
            m = r.mappings[0]
            self.dimms[m.dimm].media.write(m.dpa + addr - r.base, data)
            return
        mv = memoryview(data)
        done = 0
        for dimm, dpa, take in self.pieces(addr, n):
            self.dimms[dimm].media.write(dpa, mv[done:done + take])
            done += take

    def direct(self, addr: int, n: int) -> tuple[DimmMedia, int] | None:
        """The DIMM and DPA of ``[addr, addr+n)`` when it lies on one DIMM (a one-way
        range), for drivers that copy straight to media; None for interleaved ranges."""
        r = self._range(addr, n)
        if r.ways != 1:
            return None
        m = r.mappings[0]
        return self.dimms[m.dimm], m.dpa + addr - r.base

    def spa_of(self, dimm: int, dpa: int) -> int | None:
        """The system physical address of a DIMM byte, or None if no range maps it."""
        for r in self.ranges:
            for way, m in enumerate(r.mappings):
                if m.dimm == dimm and m.dpa <= dpa < m.dpa + m.size:
                    within = dpa - m.dpa
                    if r.ways == 1:
                        return r.base + within
                    row, rem = divmod(within, r.granularity)
                    return r.base + (row * r.ways + way) * r.granularity + rem
        return None
