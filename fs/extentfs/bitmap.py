"""The block allocator: the on-media bitmap, and the rules that keep a crash safe.

Each bitmap block covers 32768 blocks and is held as a Python int (bit b of the int is
bit b of the block: little-endian bytes), so the searches run in C.

Two rules matter more than speed:

* a block freed in the running transaction is not reused until that transaction has
  committed (:meth:`Allocator.release_pending`): otherwise a crash would bring back
  metadata that points at a block another file has since overwritten;
* a bitmap block changed since the last commit is *dirty* and goes into the next
  journal transaction (:attr:`Allocator.dirty`).

Allocation is first fit from a goal (the block after the file's previous one; the
data area's start for a file's first block), preferring runs that start on a 2 MiB boundary when
2 MiB or more is asked for, so a DAX file can be mapped with PMD entries.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from fs.extentfs.layout import BITS_PER_BLOCK, BLOCK, DATA_ALIGN_BLOCKS, Superblock
from nvdimm.errors import CorruptMetadata, NoSpace

_FULL = (1 << BITS_PER_BLOCK) - 1


def _lowest_set(v: int) -> int:
    return (v & -v).bit_length() - 1


@attrs.define(slots=True, eq=False)
class Allocator:
    sb: Superblock
    read_block: Callable[[int], bytes]  # a device block's bytes (bitmap blocks only)
    _maps: dict[int, int] = attrs.field(factory=dict, repr=False)  # bitmap index -> bits
    dirty: set[int] = attrs.field(factory=set)  # bitmap indexes changed since the commit
    pending: list[tuple[int, int]] = attrs.field(factory=list)  # freed, not yet committed
    free_count: int = -1  # -1: not counted yet

    # -- the bitmap blocks ---------------------------------------------------------------

    def _bits(self, idx: int) -> int:
        v = self._maps.get(idx)
        if v is None:
            raw = self.read_block(self.sb.bitmap_start + idx)
            v = int.from_bytes(raw, "little")
            self._maps[idx] = v
        return v

    def block_bytes(self, idx: int) -> bytes:
        """The current image of bitmap block ``idx`` (for the journal)."""
        return self._bits(idx).to_bytes(BLOCK, "little")

    def block_number(self, idx: int) -> int:
        return self.sb.bitmap_start + idx

    def _limit(self, idx: int) -> int:
        """Bits of bitmap block ``idx`` that stand for real blocks."""
        return min(BITS_PER_BLOCK, self.sb.blocks - idx * BITS_PER_BLOCK)

    def is_used(self, block: int) -> bool:
        return bool(self._bits(block // BITS_PER_BLOCK) >> (block % BITS_PER_BLOCK) & 1)

    def count_free(self) -> int:
        if self.free_count < 0:
            n = 0
            for idx in range(self.sb.bitmap_blocks):
                lim = self._limit(idx)
                n += lim - (self._bits(idx) & ((1 << lim) - 1)).bit_count()
            self.free_count = n
        return self.free_count

    def available(self) -> int:
        """Free blocks that may be handed out now (freed ones wait for the commit)."""
        return self.count_free() - sum(k for _, k in self.pending)

    # -- changes ----------------------------------------------------------------------------

    def _set(self, block: int, n: int, used: bool) -> None:
        while n:
            idx, bit = divmod(block, BITS_PER_BLOCK)
            k = min(n, BITS_PER_BLOCK - bit)
            mask = ((1 << k) - 1) << bit
            v = self._bits(idx)
            if used:
                if v & mask:
                    raise CorruptMetadata(f"block allocator: blocks [{block}, +{k}) are "
                                          "already in use")
                v |= mask
            else:
                if v & mask != mask:
                    raise CorruptMetadata(f"block allocator: freeing blocks [{block}, +{k}) "
                                          "that are not all in use")
                v &= ~mask
            self._maps[idx] = v
            self.dirty.add(idx)
            if self.free_count >= 0:
                self.free_count += -k if used else k
            block += k
            n -= k

    def free(self, block: int, n: int) -> None:
        """Give ``[block, +n)`` back: cleared in the bitmap now, reusable after commit."""
        if block < self.sb.data_start or block + n > self.sb.blocks:
            raise CorruptMetadata(f"freeing blocks [{block}, +{n}) outside the data area")
        self._set(block, n, False)
        # Until the commit, the allocator must not hand them out: keep them marked in
        # the in-memory map only by remembering them (the bitmap image is already clear).
        self.pending.append((block, n))

    def release_pending(self) -> list[tuple[int, int]]:
        """The running transaction committed: its freed blocks may be reused."""
        done, self.pending = self.pending, []
        return done

    def _is_pending(self, block: int, n: int) -> int:
        """The end of the first pending run overlapping ``[block, +n)``, or -1."""
        for b, k in self.pending:
            if b < block + n and block < b + k:
                return b + k
        return -1

    def _find(self, start: int, want: int, align: int) -> tuple[int, int] | None:
        """The first free run at or after ``start`` (aligned to ``align`` blocks),
        at most ``want`` long."""
        blocks = self.sb.blocks
        pos = max(start, self.sb.data_start)
        while pos < blocks:
            if align > 1:
                pos = -(-pos // align) * align
                if pos >= blocks:
                    return None
            idx, bit = divmod(pos, BITS_PER_BLOCK)
            lim = self._limit(idx)
            free = ~self._bits(idx) & ((1 << lim) - 1)
            free >>= bit
            if not free:
                pos = (idx + 1) * BITS_PER_BLOCK
                continue
            first = pos + _lowest_set(free)
            if align > 1 and first % align:
                pos = first
                continue
            used_after = self._bits(idx) >> (first % BITS_PER_BLOCK)
            run = (_lowest_set(used_after) if used_after else lim - first % BITS_PER_BLOCK)
            run = min(run, want)
            # a run may continue into the next bitmap block
            end = first + run
            while run < want and end % BITS_PER_BLOCK == 0 and end < blocks:
                nidx = end // BITS_PER_BLOCK
                v = self._bits(nidx) & ((1 << self._limit(nidx)) - 1)
                more = _lowest_set(v) if v else self._limit(nidx)
                more = min(more, want - run)
                if not more:
                    break
                run += more
                end += more
            p = self._is_pending(first, run)
            if p >= 0:
                pos = p
                continue
            if align > 1 and run < min(want, align):
                pos = first + run
                continue
            return first, run
        return None

    def alloc(self, want: int, goal: int | None = None) -> list[tuple[int, int]]:
        """``want`` blocks as runs ``(pblk, length)``; raises NoSpace (and takes nothing)
        when there are not that many free."""
        if want <= 0:
            return []
        if self.available() < want:
            raise NoSpace(f"extentfs: {want} blocks wanted, {self.available()} free")
        if (want == 1 and goal is not None and self.sb.data_start <= goal < self.sb.blocks
                and not self.is_used(goal) and self._is_pending(goal, 1) < 0):
            self._set(goal, 1, True)  # the common append: the block after the last one
            return [(goal, 1)]
        runs: list[tuple[int, int]] = []
        left = want
        # No goal (a file's first blocks): first fit from the start of the data area, so
        # freed space is reused soon, as a block group allocator does on a small fs.
        start = self.sb.data_start if goal is None else goal
        while left:
            hit = None
            if left >= DATA_ALIGN_BLOCKS:
                hit = self._find(start, left - left % DATA_ALIGN_BLOCKS, DATA_ALIGN_BLOCKS)
            if hit is None:
                hit = self._find(start, left, 1)
            if hit is None and start > self.sb.data_start:
                start = self.sb.data_start
                continue
            if hit is None:  # pending frees hold the rest: give back what we took
                for b, k in runs:
                    self._set(b, k, False)
                raise NoSpace(f"extentfs: {want} blocks wanted; the rest are freed by a "
                              "transaction that has not committed yet")
            b, k = hit
            self._set(b, k, True)
            runs.append((b, k))
            left -= k
            start = b + k
        return runs
