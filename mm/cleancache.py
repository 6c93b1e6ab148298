"""A second-level page cache in pmem: clean file pages evicted from DRAM, kept for later.

Linux had the hook for this from 3.0 to 5.16: *cleancache* (Dan Magenheimer's
transcendent memory). When reclaim removes a clean, up-to-date page-cache page, the
filesystem calls ``cleancache_put_page`` and a backend may keep a copy; when a later
read misses the page cache, ``cleancache_get_page`` is asked before any I/O is issued,
and on a hit the page is filled from the copy. The backends were compressed RAM (zcache),
hypervisor memory (Xen tmem) and remote RAM; here it is pmem, reached through DAX (a
:class:`PmemStore`: byte-addressed copies to and from the device).

* the pool is *ephemeral*: it may drop any page at any time (the page is clean, the
  disk has it); when full it drops its least recently put page;
* a ``get`` is *exclusive*: the copy moves back to DRAM and leaves the pool, so a page
  is never cached twice;
* ``invalidate`` drops a copy that would go stale (the file page was written or
  truncated).

Counters: ``cleancache.puts``, ``.gets`` (hits), ``.misses``, ``.evictions``,
``.invalidates``; gauge ``cleancache.pages``; pmem traffic per
:func:`mm.numa.count_media`.

::

    reclaim drops clean file page 7       put: copied to pmem slot 0
    read of page 7 misses the page cache  get: hit, copied back, slot 0 free, no disk I/O
    read of page 9 (never put)            get: miss, read from the disk
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Protocol

import attrs

from mm.memmap import PAGE_SIZE
from mm.numa import count_media
from nvdimm.errors import InvalidArgument
from nvdimm.metrics import Metrics
from nvdimm.trace import Trace


class PmemStore(Protocol):
    """Byte-addressed copies to and from pmem (the ``direct_access`` seam's ``read`` and
    ``write`` have this shape)."""

    def read(self, offset: int, n: int) -> bytes: ...

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int: ...


@attrs.define(slots=True, eq=False)
class Cleancache:
    """An ephemeral pool of ``capacity`` clean pages on ``store`` (page ``i`` of the pool
    at byte ``i * 4096``)."""

    store: PmemStore
    capacity: int
    metrics: Metrics
    trace: Trace = attrs.field(factory=lambda: Trace(on=False))
    _slots: OrderedDict[Hashable, int] = attrs.field(init=False, factory=OrderedDict,
                                                     repr=False)
    _free: list[int] = attrs.field(init=False, factory=list, repr=False)
    _next: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        if self.capacity < 1:
            raise InvalidArgument(f"a cleancache needs at least one page, not {self.capacity}")

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: object) -> bool:
        return key in self._slots

    def keys(self) -> list[Hashable]:
        return list(self._slots)

    def _slot(self) -> int:
        if self._free:
            return self._free.pop()
        if self._next < self.capacity:
            self._next += 1
            return self._next - 1
        self.metrics.c["cleancache.evictions"] += 1
        return self._slots.popitem(last=False)[1]  # the least recently put page goes

    def put(self, key: Hashable, data: bytes) -> None:
        """Keep a copy of clean page ``key`` (replacing an older copy)."""
        if len(data) != PAGE_SIZE:
            raise InvalidArgument(f"cleancache holds whole pages, not {len(data)} bytes")
        slot = self._slots.pop(key, None)
        if slot is None:
            slot = self._slot()
        self.store.write(slot * PAGE_SIZE, data)
        self._slots[key] = slot
        self.metrics.c["cleancache.puts"] += 1
        self.metrics.set("cleancache.pages", len(self._slots))
        count_media(self.metrics, "pmem", bytes_written=PAGE_SIZE)
        if self.trace.on:
            self.trace.emit("cleancache.put", key=str(key), slot=slot)

    def get(self, key: Hashable) -> bytes | None:
        """The copy of ``key``, which leaves the pool (exclusive); None on a miss."""
        slot = self._slots.pop(key, None)
        if slot is None:
            self.metrics.c["cleancache.misses"] += 1
            return None
        data = self.store.read(slot * PAGE_SIZE, PAGE_SIZE)
        self._free.append(slot)
        self.metrics.c["cleancache.gets"] += 1
        self.metrics.set("cleancache.pages", len(self._slots))
        count_media(self.metrics, "pmem", reads=1, bytes_read=PAGE_SIZE)
        if self.trace.on:
            self.trace.emit("cleancache.get", key=str(key), slot=slot)
        return data

    def invalidate(self, key: Hashable) -> bool:
        """Drop the copy of ``key`` if there is one."""
        slot = self._slots.pop(key, None)
        if slot is None:
            return False
        self._free.append(slot)
        self.metrics.c["cleancache.invalidates"] += 1
        self.metrics.set("cleancache.pages", len(self._slots))
        return True

    def check(self) -> list[str]:
        slots = list(self._slots.values())
        bad = []
        if len(set(slots)) != len(slots):
            bad.append("two cached pages share a pmem slot")
        if set(slots) & set(self._free):
            bad.append("a slot is both free and holding a page")
        if any(not 0 <= s < self.capacity for s in slots):
            bad.append("a cached page sits outside the pool")
        return bad
