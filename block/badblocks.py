"""Known-bad sector ranges of a block device, with Linux's ``badblocks`` semantics.

The table holds at most :data:`MAX_BADBLOCKS` entries (Linux keeps one page of u64),
each ``(start, length, acknowledged)`` with ``1 <= length <= BB_MAX_LEN`` blocks,
sorted, never overlapping. The API speaks 512-byte sectors; with ``shift`` > 0 the
table counts blocks of ``512 << shift`` bytes (ranges are widened to whole blocks on
set and check, narrowed on clear so a block is never forgotten by mistake).
``shift == -1`` disables the table, as Linux's ``badblocks_init(bb, 0)`` does.

Rules, as in the 6.x rework of ``block/badblocks.c``:

* **set** marks every sector of the range bad. An acknowledged range overwrites
  unacknowledged entries (splitting them); an unacknowledged range never downgrades
  an acknowledged one. New sectors first extend an adjacent entry of the same
  acknowledgement up to ``BB_MAX_LEN``, then take new entries. Returns ``False`` when
  a needed slot is missing; what was done before stays (partial counts as failure).
* **clear** removes the range. It can split one entry in two; when the table is full
  that split is refused and nothing is cleared (``False``). Clearing sectors that are
  not bad succeeds.
* **check** reports 0 (no bad sector in the range), 1 (bad, all acknowledged) or -1
  (some unacknowledged), with the first overlapping entry's start and length.

Where this model differs from Linux, on purpose:

* Linux refuses any set once the table is full, even one that needs no slot; here a
  set fails only when it needs a slot that is not there.
* After every change, touched entries that became adjacent, share their
  acknowledgement and fit in one entry are combined (Linux misses some after a clear),
  so the table never holds a mergeable pair.
* With ``shift`` > 0, ``check`` returns ``first_bad``/``bad_sectors`` in sectors, not
  in table blocks. (The 6.x rework also discards its own rounding results, so shifted
  tables are inconsistent in recent Linux; the model does what the code meant.)

Example::

    >>> bb = BadBlocks()
    >>> bb.set(8, 8), bb.set(16, 4, ack=False)
    (True, True)
    >>> bb.show()
    '8 8\\n16 4\\n'
    >>> bb.check(0, 32)
    (-1, 8, 8)
    >>> bb.clear(10, 2), bb.show()
    (True, '8 2\\n12 4\\n16 4\\n')
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from typing import Final

import attrs

from nvdimm.errors import InvalidArgument, NoSpace
from nvdimm.units import PAGE_SIZE

MAX_BADBLOCKS: Final = PAGE_SIZE // 8  # one page of u64 entries
BB_MAX_LEN: Final = 512  # 9 length bits hold length - 1
BB_OFFSET_BITS: Final = 54  # start field width in the u64 encoding
_NOTHING: Final = (0, 0, 0)
# sysfs input is "%llu %d" then an optional newline; possessive quantifiers keep
# "105" from being read as "10 5", as sscanf would not split it either.
_STORE_RE = re.compile(r"\s*(\d++)\s*([+-]?\d++)(.?)", re.DOTALL)


@attrs.frozen(slots=True)
class BadBlockEntry:
    """One table entry, in 512-byte sectors."""

    start: int
    length: int
    acknowledged: bool

    @property
    def end(self) -> int:
        return self.start + self.length


@attrs.define(slots=True)
class BadBlocks:
    """A badblocks table (``struct badblocks``).

    ``count`` is a plain attribute (kept equal to the number of entries) so a driver's
    hot path can test ``if bb.count and ...`` for the price of one attribute load.
    """

    shift: int = attrs.field(default=0, on_setattr=attrs.setters.frozen)
    count: int = attrs.field(init=False, default=0)
    # Parallel lists, indexed alike: start and length in table blocks, acknowledged.
    _start: list[int] = attrs.field(init=False, factory=list, repr=False)
    _len: list[int] = attrs.field(init=False, factory=list, repr=False)
    _ack: list[bool] = attrs.field(init=False, factory=list, repr=False)

    def __attrs_post_init__(self) -> None:
        if not -1 <= self.shift <= 20:
            raise InvalidArgument(f"badblocks shift must be -1 (disabled) to 20: {self.shift}")

    # -- queries ---------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.shift >= 0

    @property
    def full(self) -> bool:
        return self.count >= MAX_BADBLOCKS

    @property
    def has_unacked(self) -> bool:
        return not all(self._ack)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[BadBlockEntry]:
        sh = self.shift
        for s, n, a in zip(self._start, self._len, self._ack, strict=True):
            yield BadBlockEntry(s << sh, n << sh, a)

    def entries(self) -> list[BadBlockEntry]:
        return list(self)

    def check(self, start: int, nsectors: int) -> tuple[int, int, int]:
        """``(rc, first_bad, bad_sectors)`` for ``[start, start + nsectors)``.

        rc is 0 when no sector in the range is known bad, 1 when some are and all of
        those are acknowledged, -1 when any is unacknowledged. ``first_bad`` and
        ``bad_sectors`` describe the first entry overlapping the range (it may start
        before ``start``); both are 0 when rc is 0.
        """
        if not self.count or nsectors <= 0 or self.shift < 0:
            return _NOTHING
        sh = self.shift
        s, e = start >> sh, -(-(start + nsectors) >> sh)
        starts, lens = self._start, self._len
        i = bisect_right(starts, s) - 1
        if i < 0 or starts[i] + lens[i] <= s:
            i += 1
        n = self.count
        if i >= n or starts[i] >= e:
            return _NOTHING
        first, rc, acks = i, 1, self._ack
        while i < n and starts[i] < e:
            if not acks[i]:
                rc = -1
                break
            i += 1
        return rc, starts[first] << sh, lens[first] << sh

    def is_bad(self, start: int, nsectors: int) -> bool:
        """Whether any sector of the range is known bad (pmem's ``is_bad_pmem``)."""
        return self.count != 0 and self.check(start, nsectors)[0] != 0

    # -- changes ---------------------------------------------------------------------

    def set(self, start: int, nsectors: int, ack: bool = True) -> bool:
        """Mark ``[start, start + nsectors)`` bad; ``False`` if it did not all fit."""
        self._check_range(start, nsectors)
        if self.shift < 0 or nsectors == 0:
            return False
        sh = self.shift
        s, e = start >> sh, -(-(start + nsectors) >> sh)
        if e > 1 << BB_OFFSET_BITS:
            raise InvalidArgument(f"bad range ends past the {BB_OFFSET_BITS}-bit start field")
        return self._set(s, e, bool(ack))

    def clear(self, start: int, nsectors: int) -> bool:
        """Forget ``[start, start + nsectors)``; ``False`` if a needed split did not fit."""
        self._check_range(start, nsectors)
        if self.shift < 0 or nsectors == 0:
            return False
        sh = self.shift
        s, e = -(-start >> sh), (start + nsectors) >> sh
        if s >= e or not self.count:
            return True
        return self._clear(s, e)

    def ack_all(self) -> None:
        """Acknowledge every entry (``ack_all_badblocks``), combining what now can be."""
        if self.count:
            self._ack[:] = [True] * self.count
            self._combine(0, self.count - 1)

    def reset(self) -> None:
        """Forget everything."""
        self._start.clear()
        self._len.clear()
        self._ack.clear()
        self.count = 0

    # -- sysfs -----------------------------------------------------------------------

    def show(self, unack: bool = False) -> str:
        """The sysfs ``badblocks`` text: ``"<start> <len>\\n"`` per entry, in sectors.

        ``unack=True`` lists only unacknowledged entries (``unacknowledged_bad_blocks``).
        Like sysfs, the text is cut to one page.
        """
        if self.shift < 0:
            return ""
        sh = self.shift
        text = "".join(
            f"{s << sh} {n << sh}\n"
            for s, n, a in zip(self._start, self._len, self._ack, strict=True)
            if not (unack and a))
        return text[:PAGE_SIZE - 1]  # snprintf into a page keeps room for the NUL

    def store(self, text: str, unack: bool = False) -> None:
        """Parse one ``"<start> <len>"`` line (newline optional) and set it bad.

        Raises :class:`InvalidArgument` for malformed text or a length < 1, and
        :class:`NoSpace` when the table cannot take it, as the sysfs file does.
        """
        m = _STORE_RE.match(text)
        if m is None or m.group(3) not in ("", "\n"):
            raise InvalidArgument(f"badblocks: expected '<sector> <length>', got {text!r}")
        sector, length = int(m.group(1)), int(m.group(2))
        if length <= 0:
            raise InvalidArgument(f"badblocks: length must be positive, got {length}")
        if not self.set(sector, length, ack=not unack):
            raise NoSpace(f"badblocks table full ({MAX_BADBLOCKS} entries)")

    # -- internals (all in table blocks) ---------------------------------------------

    @staticmethod
    def _check_range(start: int, nsectors: int) -> None:
        if start < 0 or nsectors < 0:
            raise InvalidArgument(f"bad range must not be negative: {start}+{nsectors}")

    def _set(self, s: int, e: int, ack: bool) -> bool:
        starts, lens, acks = self._start, self._len, self._ack
        i = bisect_right(starts, s) - 1  # last entry starting at or before s
        lo = max(i, 0)
        ok = True
        while s < e:
            while i + 1 < self.count and starts[i + 1] <= s:
                i += 1
            if i >= 0 and s < starts[i] + lens[i]:
                # s lies inside entry i: only acknowledged-over-unacknowledged changes it
                end_i = starts[i] + lens[i]
                stop = min(end_i, e)
                if ack and not acks[i]:
                    if not self._overwrite(i, s, stop):
                        ok = False
                        break
                    i += s > starts[i]  # the acked piece follows a kept head
                s = stop
                continue
            gap_end = starts[i + 1] if i + 1 < self.count else e
            stop = min(e, gap_end)
            if i >= 0 and starts[i] + lens[i] == s and acks[i] == ack and lens[i] < BB_MAX_LEN:
                take = min(stop - s, BB_MAX_LEN - lens[i])
                lens[i] += take
            else:
                if self.count >= MAX_BADBLOCKS:
                    ok = False
                    break
                take = min(stop - s, BB_MAX_LEN)
                i += 1
                starts.insert(i, s)
                lens.insert(i, take)
                acks.insert(i, ack)
                self.count += 1
            s += take
        if self.count:
            # i + 1 may be the kept tail of an overwritten entry, itself next to i + 2
            self._combine(lo - 1, i + 2)
        return ok

    def _overwrite(self, i: int, s: int, stop: int) -> bool:
        """Acknowledge ``[s, stop)`` inside unacknowledged entry ``i``, splitting it."""
        starts, lens, acks = self._start, self._len, self._ack
        head = s - starts[i]
        tail = starts[i] + lens[i] - stop
        if self.count + (head > 0) + (tail > 0) > MAX_BADBLOCKS:
            return False
        pieces = [(starts[i], head, False)] if head else []
        pieces.append((s, stop - s, True))
        if tail:
            pieces.append((stop, tail, False))
        starts[i:i + 1] = [p[0] for p in pieces]
        lens[i:i + 1] = [p[1] for p in pieces]
        acks[i:i + 1] = [p[2] for p in pieces]
        self.count += len(pieces) - 1
        return True

    def _clear(self, s: int, e: int) -> bool:
        starts, lens, acks = self._start, self._len, self._ack
        j = bisect_left(starts, s)  # first entry starting at or after s
        p = j - 1
        if p >= 0 and starts[p] + lens[p] > s:
            end_p = starts[p] + lens[p]
            if end_p > e:
                # strictly inside one entry: it splits in two, which needs a slot
                if self.count >= MAX_BADBLOCKS:
                    return False
                lens[p] = s - starts[p]
                starts.insert(j, e)
                lens.insert(j, end_p - e)
                acks.insert(j, acks[p])
                self.count += 1
                self._combine(p - 1, j + 1)
                return True
            lens[p] = s - starts[p]  # cut the tail of the entry straddling s
        k = j
        while k < self.count and starts[k] + lens[k] <= e:
            k += 1
        if k > j:  # entries wholly inside the range go
            del starts[j:k], lens[j:k], acks[j:k]
            self.count -= k - j
        if j < self.count and starts[j] < e:
            lens[j] -= e - starts[j]  # cut the head of the entry straddling e
            starts[j] = e
        if self.count:
            # a shortened entry may now fit together with its outer neighbour
            self._combine(p - 1, j + 1)
        return True

    def _combine(self, lo: int, hi: int) -> None:
        """Merge adjacent same-acknowledgement entries in ``[lo, hi]`` that fit in one."""
        starts, lens, acks = self._start, self._len, self._ack
        j = max(lo, 0)
        hi = min(hi, self.count - 1)
        while j < hi:
            if (starts[j] + lens[j] == starts[j + 1] and acks[j] == acks[j + 1]
                    and lens[j] + lens[j + 1] <= BB_MAX_LEN):
                lens[j] += lens[j + 1]
                del starts[j + 1], lens[j + 1], acks[j + 1]
                self.count -= 1
                hi -= 1
            else:
                j += 1
