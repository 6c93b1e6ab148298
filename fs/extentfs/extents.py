"""A file's extent map: sorted, non-overlapping runs of blocks, and what changes them.

Pure functions over a list of :class:`~fs.extentfs.layout.Extent` sorted by logical
block, so they can be tested on their own (and are, by hypothesis, in
tests/test_extentfs_extents.py)."""

from __future__ import annotations

import bisect

from fs.extentfs.layout import MAX_EXTENT_LEN, Extent


def lookup(extents: list[Extent], lblk: int) -> tuple[int | None, int]:
    """(device block of file block ``lblk`` or None for a hole, how many blocks from
    ``lblk`` continue the same way: contiguous on the device, or the hole's length;
    0 for a hole that runs to the end of the map)."""
    i = bisect.bisect_right(extents, lblk, key=lambda e: e.lblk) - 1
    if i >= 0:
        e = extents[i]
        if lblk < e.lend:
            return e.pblk + (lblk - e.lblk), e.lend - lblk
    nxt = i + 1
    if nxt < len(extents):
        return None, extents[nxt].lblk - lblk
    return None, 0


def insert(extents: list[Extent], new: Extent) -> None:
    """Add ``new`` (which must not overlap the map), merging with neighbours that continue
    it both logically and physically."""
    if new.length <= 0:
        return
    i = bisect.bisect_left(extents, new.lblk, key=lambda e: e.lblk)
    before = i > 0 and extents[i - 1].lend > new.lblk
    if before or (i < len(extents) and extents[i].lblk < new.lend):
        raise ValueError(f"{new} overlaps the extent map")
    if i > 0:
        p = extents[i - 1]
        if p.lend == new.lblk and p.pend == new.pblk and p.length + new.length <= MAX_EXTENT_LEN:
            new = Extent(p.lblk, p.pblk, p.length + new.length)
            i -= 1
            del extents[i]
    if i < len(extents):
        n = extents[i]
        if new.lend == n.lblk and new.pend == n.pblk and new.length + n.length <= MAX_EXTENT_LEN:
            new = Extent(new.lblk, new.pblk, new.length + n.length)
            del extents[i]
    extents.insert(i, new)


def remove(extents: list[Extent], lblk: int, count: int | None = None) -> list[tuple[int, int]]:
    """Unmap file blocks ``[lblk, lblk + count)`` (None: to the end); returns the device
    runs ``(pblk, length)`` that were mapped there, for the caller to free."""
    end = None if count is None else lblk + count
    freed: list[tuple[int, int]] = []
    out: list[Extent] = []
    for e in extents:
        lo = max(e.lblk, lblk)
        hi = e.lend if end is None else min(e.lend, end)
        if lo >= hi:
            out.append(e)
            continue
        freed.append((e.pblk + (lo - e.lblk), hi - lo))
        if e.lblk < lo:
            out.append(Extent(e.lblk, e.pblk, lo - e.lblk))
        if hi < e.lend:
            out.append(Extent(hi, e.pblk + (hi - e.lblk), e.lend - hi))
    extents[:] = out
    return freed


def mapped_in(extents: list[Extent], lblk: int, count: int) -> list[Extent]:
    """The parts of the map inside ``[lblk, lblk + count)``."""
    end = lblk + count
    out = []
    for e in extents:
        lo, hi = max(e.lblk, lblk), min(e.lend, end)
        if lo < hi:
            out.append(Extent(lo, e.pblk + (lo - e.lblk), hi - lo))
    return out
