"""Sparse byte-addressable media.

Capacity costs nothing until written: the media is a dict of 4 KiB pages, created on
first write; reads of untouched space return zeros. Memory grows with what was
touched, not with capacity, so a 64 TiB DIMM is as cheap as a 64 MiB one.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from nvdimm.errors import InvalidArgument

PAGE_SHIFT = 12
PAGE = 1 << PAGE_SHIFT
PAGE_MASK = PAGE - 1
_ZERO_PAGE = bytes(PAGE)


@attrs.define(slots=True)
class SparseMedia:
    """``size`` bytes of media; untouched pages read as zeros."""

    size: int
    pages: dict[int, bytearray] = attrs.field(factory=dict, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.size < 0:
            raise InvalidArgument(f"media size must not be negative: {self.size}")

    def _check(self, off: int, n: int) -> None:
        if off < 0 or n < 0 or off + n > self.size:
            raise InvalidArgument(
                f"media access [{off:#x}, {off + n:#x}) outside [0, {self.size:#x})")

    def read(self, off: int, n: int) -> bytes:
        if off < 0 or n < 0 or off + n > self.size:
            self._check(off, n)
        pages = self.pages
        pno, po = off >> PAGE_SHIFT, off & PAGE_MASK
        if po + n <= PAGE:  # fast path: inside one page
            p = pages.get(pno)
            if p is None:
                return bytes(n)
            return bytes(memoryview(p)[po:po + n])  # one copy, not two
        out = bytearray(n)
        done = 0
        while done < n:
            take = min(PAGE - po, n - done)
            p = pages.get(pno)
            if p is not None:
                out[done:done + take] = p[po:po + take]
            done += take
            pno += 1
            po = 0
        return bytes(out)

    def write(self, off: int, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        if off < 0 or off + n > self.size:
            self._check(off, n)
        pages = self.pages
        pno, po = off >> PAGE_SHIFT, off & PAGE_MASK
        if po + n <= PAGE:  # fast path: inside one page
            p = pages.get(pno)
            if p is None:
                if po == 0 and n == PAGE:
                    pages[pno] = bytearray(data)
                    return
                p = pages[pno] = bytearray(PAGE)
            p[po:po + n] = data
            return
        mv = memoryview(data)
        done = 0
        while done < n:
            take = min(PAGE - po, n - done)
            p = pages.get(pno)
            if p is None:
                p = pages[pno] = bytearray(PAGE)
            p[po:po + take] = mv[done:done + take]
            done += take
            pno += 1
            po = 0

    def zero(self, off: int, n: int) -> None:
        """Zero a range, dropping whole pages so zeroed space costs nothing again."""
        self._check(off, n)
        end = off + n
        while off < end:
            pno, po = off >> PAGE_SHIFT, off & PAGE_MASK
            take = min(PAGE - po, end - off)
            if take == PAGE:
                self.pages.pop(pno, None)
            else:
                p = self.pages.get(pno)
                if p is not None:
                    p[po:po + take] = bytes(take)
            off += take

    @property
    def touched_bytes(self) -> int:
        return len(self.pages) * PAGE

    def extents(self) -> Iterator[tuple[int, int]]:
        """Touched ranges ``(offset, length)``, merged, in address order."""
        start = prev = None
        for pno in sorted(self.pages):
            if prev is not None and pno == prev + 1:
                prev = pno
                continue
            if start is not None and prev is not None:
                yield start << PAGE_SHIFT, (prev - start + 1) << PAGE_SHIFT
            start = prev = pno
        if start is not None and prev is not None:
            yield start << PAGE_SHIFT, (prev - start + 1) << PAGE_SHIFT

    def nonzero_pages(self) -> Iterator[int]:
        """Page numbers holding any non-zero byte."""
        for pno in sorted(self.pages):
            if self.pages[pno] != _ZERO_PAGE:
                yield pno

    def copy(self) -> SparseMedia:
        return SparseMedia(self.size, {k: bytearray(v) for k, v in self.pages.items()})

    def same_content(self, other: SparseMedia) -> bool:
        if self.size != other.size:
            return False
        for pno in set(self.pages) | set(other.pages):
            a = self.pages.get(pno, _ZERO_PAGE)
            b = other.pages.get(pno, _ZERO_PAGE)
            if a != b:
                return False
        return True
