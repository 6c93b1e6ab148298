"""The page cache: an ``address_space`` of DRAM pages in front of a block device.

One :class:`PageCache` caches one object (a block device's own inode, or a file when a
filesystem hands it a :class:`BlockMap`) in 4 KiB DRAM pages from the page allocator
(charged to ``mm:pagecache``). What Linux's buffered I/O does, in the model's terms:

* ``read``: a page not cached is read in from the disk with a READ bio (a hole, as the
  block map says, reads as zeroes without I/O), then copied out; a cached page is a
  hit. ``mm.pagecache.hits`` / ``.misses`` count pages;
* ``write``: copies into cached pages and marks them dirty; a page written only in part
  is read in first (read-modify-write), a page written whole is not;
* ``writeback(start, end)``: dirty pages in the byte range go to the disk as WRITE
  bios, one per run of pages contiguous on the disk; they become clean.
  ``mm.pagecache.writeback_pages`` counts them. Nothing is durable yet: the disk's
  volatile cache (for pmem, stores not yet fenced) may still lose them;
* ``fsync``: writeback of everything, then a cache flush (``REQ_PREFLUSH``), so a
  crash after ``fsync`` returns keeps the data;
* a failed writeback leaves the pages dirty and the error is reported once to the next
  ``fsync`` (errseq-like), as Linux reports writeback errors.

The cache holds a reference on each page; ``shrink`` drops clean, unreferenced pages
(memory pressure), giving their DRAM back.

::

    write(0, b"a" * 4096)   page 0 dirty in DRAM; the disk unchanged
    writeback(0, 4096)      one WRITE bio, sector 0; clean; on pmem, unfenced NT stores
    fsync()                 flush: durable
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs

from block.bio import read_bio, write_bio
from block.genhd import Gendisk
from mm.memmap import PAGE_SIZE
from mm.page import Page, PageFlags
from mm.page_alloc import PageAllocator
from nvdimm.errors import InvalidArgument, NvdimmError
from nvdimm.metrics import Metrics
from nvdimm.trace import Trace


class BlockMap(Protocol):
    """Where an object's pages live on the disk (a filesystem's ``get_block``)."""

    def map_read(self, index: int) -> int | None:
        """Byte offset on the disk of page ``index``, or None for a hole (zeroes)."""
        ...

    def map_write(self, index: int) -> int:
        """Byte offset on the disk for writing page ``index`` (allocating it)."""
        ...


@attrs.frozen(slots=True)
class DiskMap:
    """The block device's own mapping: page ``index`` is at byte ``index * 4096``."""

    size: int

    def map_read(self, index: int) -> int | None:
        return index * PAGE_SIZE

    def map_write(self, index: int) -> int:
        return index * PAGE_SIZE


@attrs.define(slots=True, eq=False)
class PageCache:
    """``struct address_space`` for one object on ``disk``; ``size`` is its length."""

    disk: Gendisk
    pages: PageAllocator
    metrics: Metrics = attrs.field(factory=Metrics)
    trace: Trace = attrs.field(factory=lambda: Trace(on=False))
    blocks: Any = None  # a BlockMap; None: the disk itself (DiskMap)
    size: int | None = None
    name: str = ""
    _cache: dict[int, Page] = attrs.field(init=False, factory=dict, repr=False)
    _dirty: set[int] = attrs.field(init=False, factory=set, repr=False)
    _error: NvdimmError | None = attrs.field(init=False, default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.size is None:
            self.size = self.disk.size
        if self.blocks is None:
            self.blocks = DiskMap(self.size)
        if not self.name:
            self.name = self.disk.name
        if self.disk.logical_block_size > PAGE_SIZE or PAGE_SIZE % self.disk.logical_block_size:
            raise InvalidArgument(f"{self.disk.name}: a {self.disk.logical_block_size}-byte "
                                  "block does not divide a page")

    def __str__(self) -> str:
        return f"pagecache:{self.name}"

    # -- pages ------------------------------------------------------------------------------

    @property
    def nrpages(self) -> int:
        return len(self._cache)

    @property
    def nr_dirty(self) -> int:
        return len(self._dirty)

    def find_page(self, index: int) -> Page | None:
        return self._cache.get(index)

    def dirty_indices(self) -> list[int]:
        return sorted(self._dirty)

    def is_dirty(self, index: int) -> bool:
        return index in self._dirty

    def get_page(self, index: int) -> Page:
        """The cached page ``index``, read in on a miss (``read_cache_page``)."""
        page = self._cache.get(index)
        c = self.metrics.c
        if page is not None:
            c["mm.pagecache.hits"] += 1
            return page
        c["mm.pagecache.misses"] += 1
        page = self._new_page(index)
        try:
            where = self.blocks.map_read(index)
            if where is not None:
                bio = read_bio(where // self.disk.sector_size, PAGE_SIZE)
                self.disk.submit_bio_wait(bio)
                assert bio.data is not None
                self.pages.write(page.pfn, 0, bytes(bio.data))
                c["mm.pagecache.read_pages"] += 1  # read in from the disk
        except BaseException:
            self._drop(index)
            raise
        page.flags |= PageFlags.UPTODATE
        return page

    def _new_page(self, index: int) -> Page:
        page = self.pages.alloc("pagecache")
        page.mapping = self
        page.index = index
        self._cache[index] = page
        self._gauges()
        return page

    def _drop(self, index: int) -> None:
        page = self._cache.pop(index)
        self._dirty.discard(index)
        page.mapping = None
        page.flags &= ~(PageFlags.DIRTY | PageFlags.UPTODATE)
        self.pages.put(page)
        self._gauges()

    # -- buffered I/O -----------------------------------------------------------------------

    def _check(self, offset: int, n: int) -> None:
        assert self.size is not None
        if offset < 0 or n < 0 or offset + n > self.size:
            raise InvalidArgument(f"{self}: [{offset:#x}, +{n:#x}) is outside its "
                                  f"{self.size:#x} bytes")

    def read(self, offset: int, n: int) -> bytes:
        self._check(offset, n)
        out = []
        end = offset + n
        a = offset
        while a < end:
            index, off = divmod(a, PAGE_SIZE)
            take = min(end - a, PAGE_SIZE - off)
            page = self.get_page(index)
            out.append(self.pages.read(page.pfn, off, take))
            a += take
        return b"".join(out)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        self._check(offset, n)
        mv = memoryview(data)
        end = offset + n
        a = offset
        c = self.metrics.c
        while a < end:
            index, off = divmod(a, PAGE_SIZE)
            take = min(end - a, PAGE_SIZE - off)
            page = self._cache.get(index)
            if page is None and take == PAGE_SIZE:
                c["mm.pagecache.misses"] += 1
                page = self._new_page(index)  # overwritten whole: no read-in
                page.flags |= PageFlags.UPTODATE
            elif page is None:
                page = self.get_page(index)  # read-modify-write
            else:
                c["mm.pagecache.hits"] += 1
            self.pages.write(page.pfn, off, mv[a - offset:a - offset + take])
            self._set_dirty(index, page)
            a += take

    def _set_dirty(self, index: int, page: Page) -> None:
        if index not in self._dirty:
            self._dirty.add(index)
            page.flags |= PageFlags.DIRTY
            self.metrics.set("mm.pagecache.dirty", self.nr_dirty)

    # -- writeback ----------------------------------------------------------------------------

    def writeback(self, start: int = 0, end: int | None = None) -> int:
        """Write the dirty pages of ``[start, end)`` (bytes; None: to the end) as bios, one
        per disk-contiguous run. Returns pages written. On an I/O error the pages of the
        failed run stay dirty and the error is raised (and kept for the next fsync)."""
        first = start // PAGE_SIZE
        last = None if end is None else -(-end // PAGE_SIZE)
        todo = sorted(i for i in self._dirty if i >= first and (last is None or i < last))
        if not todo:
            return 0
        runs: list[tuple[int, list[int]]] = []
        for index in todo:
            where = self.blocks.map_write(index)
            if runs and runs[-1][0] + len(runs[-1][1]) * PAGE_SIZE == where:
                runs[-1][1].append(index)
            else:
                runs.append((where, [index]))
        written = 0
        for where, indices in runs:
            data = b"".join(self.pages.read(self._cache[i].pfn, 0, PAGE_SIZE) for i in indices)
            for i in indices:
                self._cache[i].flags |= PageFlags.WRITEBACK
            try:
                self.disk.submit_bio_wait(write_bio(where // self.disk.sector_size, data))
            except NvdimmError as e:
                self._error = e
                self.metrics.c["mm.pagecache.writeback_errors"] += 1
                raise
            finally:
                for i in indices:
                    self._cache[i].flags &= ~PageFlags.WRITEBACK
            for i in indices:
                self._dirty.discard(i)
                self._cache[i].flags &= ~PageFlags.DIRTY
            written += len(indices)
        c = self.metrics.c
        c["mm.pagecache.writeback_pages"] += written
        c["mm.pagecache.writeback_bios"] += len(runs)
        self.metrics.set("mm.pagecache.dirty", self.nr_dirty)
        if self.trace.on:
            self.trace.emit("mm.writeback", mapping=self.name, pages=written, bios=len(runs))
        return written

    def fsync(self) -> None:
        """Writeback of everything, then a flush: what was written is durable. A writeback
        error since the last fsync is raised once."""
        try:
            self.writeback()
        finally:
            err, self._error = self._error, None
        self.disk.flush()
        self.metrics.c["mm.pagecache.fsyncs"] += 1
        if err is not None:
            raise err

    # -- reclaim ------------------------------------------------------------------------------

    def shrink(self, nr: int | None = None) -> int:
        """Drop up to ``nr`` clean pages nobody else references (all when None)."""
        dropped = 0
        for index in sorted(self._cache):
            if nr is not None and dropped >= nr:
                break
            page = self._cache[index]
            if index in self._dirty or page.refcount != 1 or page.pincount:
                continue
            self._drop(index)
            dropped += 1
        self.metrics.c["mm.pagecache.reclaimed"] += dropped
        return dropped

    def set_dirty(self, index: int) -> None:
        """A store through a shared mapping made cached page ``index`` dirty."""
        page = self._cache.get(index)
        if page is not None:
            self._set_dirty(index, page)

    def truncate_range(self, start: int, end: int | None = None) -> int:
        """``truncate_inode_pages_range``: drop the pages wholly inside ``[start, end)``
        (bytes; None: to the end), dirty ones too; zero the part of a page the range
        cuts. Mappings of the pages are the caller's to remove first. Returns pages
        dropped."""
        first = -(-start // PAGE_SIZE)
        last = None if end is None else end // PAGE_SIZE
        for edge in {start // PAGE_SIZE, None if end is None else end // PAGE_SIZE}:
            page = None if edge is None else self._cache.get(edge)
            if page is None or edge is None:
                continue
            lo = max(start, edge * PAGE_SIZE) - edge * PAGE_SIZE
            hi = PAGE_SIZE if end is None else min(end, (edge + 1) * PAGE_SIZE) - edge * PAGE_SIZE
            if 0 < hi - lo < PAGE_SIZE:
                self.pages.write(page.pfn, lo, bytes(hi - lo))
                self._set_dirty(edge, page)
        gone = [i for i in self._cache if i >= first and (last is None or i < last)]
        for i in gone:
            self._drop(i)
        if gone:
            self.metrics.set("mm.pagecache.dirty", self.nr_dirty)
        return len(gone)

    def invalidate(self) -> None:
        """Drop every page nobody else holds, dirty ones too (their data is lost), as
        truncating to 0; a page still mapped or pinned stays."""
        for index in list(self._cache):
            if self._cache[index].refcount == 1:
                self._drop(index)
        self.metrics.set("mm.pagecache.dirty", self.nr_dirty)

    def _gauges(self) -> None:
        self.metrics.set(f"mm.pagecache.pages.{self.name}", len(self._cache))
