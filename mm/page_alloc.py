"""DRAM pages: a page allocator over the machine's DRAM, with accounting.

The platform's :class:`~nvdimm.platform.dram.Dram` is a budget; this allocator turns it
into 4 KiB pages with pfns and contents, as the buddy allocator does for the kernel:

* pfns come from a DRAM pfn range ``[start_pfn, end_pfn)`` below the pmem SPA base
  (the model puts pmem at 4 GiB, so by default DRAM pfns are 1 MiB .. 4 GiB; the first
  MiB is left alone, as x86 keeps it for firmware). A pfn is never shared with pmem,
  so ``owns(pfn)`` tells DRAM from device memory;
* every page allocated is charged to the budget under ``mm:<who>`` (``mm:anon``,
  ``mm:pagecache``...) and uncharged when freed; a page the budget or the pfn range
  cannot supply is refused with :class:`~nvdimm.errors.NoSpace` before anything changes;
* contents are sparse: a page that was never written reads as zeroes (the kernel hands
  out zeroed pages to user space) and costs nothing;
* each allocated page has a :class:`~mm.page.Page` (no pgmap: ordinary memory) holding
  the allocation's reference; :meth:`PageAllocator.put` drops a reference and frees the
  page when the last one goes, as ``put_page`` does.

Metrics: ``mm.page_alloc.allocs`` / ``.frees`` (counters), ``mm.page_alloc.pages`` and
``mm.page_alloc.pages.<who>`` (gauges).

::

    alloc("anon")     pfn 0x100, refcount 1, DRAM charged 4 KiB to mm:anon
    write(0x100, 8, b"hi")   contents kept for that page only
    put(page)         refcount 0: freed, uncharged, contents dropped
"""

from __future__ import annotations

from collections import Counter

import attrs

from mm.memmap import PAGE_SHIFT, PAGE_SIZE
from mm.page import Page
from mm.pagemap import DramBudget
from nvdimm.errors import InvalidArgument, NoSpace
from nvdimm.metrics import Metrics
from nvdimm.trace import Trace

#: The first DRAM pfn handed out (1 MiB: x86 leaves the low MiB to firmware).
DRAM_START_PFN = 0x100
#: Where the model's pmem starts (``nvdimm.platform.nfit.PMEM_SPA_BASE``), so the end of
#: the default DRAM pfn range.
DRAM_END_PFN = (1 << 32) >> PAGE_SHIFT

_ZERO_PAGE = bytes(PAGE_SIZE)


@attrs.define(slots=True, eq=False)
class PageAllocator:
    """4 KiB DRAM pages over ``dram`` (a :class:`~mm.pagemap.DramBudget`)."""

    dram: DramBudget
    metrics: Metrics = attrs.field(factory=Metrics)
    trace: Trace = attrs.field(factory=lambda: Trace(on=False))
    start_pfn: int = DRAM_START_PFN
    end_pfn: int = DRAM_END_PFN
    _next: int = attrs.field(init=False, default=0)
    _free: list[int] = attrs.field(init=False, factory=list, repr=False)
    _pages: dict[int, Page] = attrs.field(init=False, factory=dict, repr=False)
    _who: dict[int, str] = attrs.field(init=False, factory=dict, repr=False)
    _data: dict[int, bytearray] = attrs.field(init=False, factory=dict, repr=False)
    _by_who: Counter[str] = attrs.field(init=False, factory=Counter, repr=False)

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.start_pfn < self.end_pfn:
            raise InvalidArgument(f"DRAM pfn range [{self.start_pfn:#x}, {self.end_pfn:#x}) "
                                  "is empty")
        self._next = self.start_pfn

    # -- allocation ---------------------------------------------------------------------

    def alloc(self, who: str = "anon") -> Page:
        """One zeroed page with one reference (the caller's)."""
        if self._free:
            pfn = self._free[-1]
        elif self._next < self.end_pfn:
            pfn = self._next
        else:
            raise NoSpace(f"no DRAM pfn left in [{self.start_pfn:#x}, {self.end_pfn:#x}) "
                          f"for {who}")
        self.dram.charge(f"mm:{who}", PAGE_SIZE)  # NoSpace: nothing changed
        if self._free:
            self._free.pop()
        else:
            self._next += 1
        page = Page(pfn, refcount=1)
        self._pages[pfn] = page
        self._who[pfn] = who
        self._by_who[who] += 1
        c = self.metrics.c
        c["mm.page_alloc.allocs"] += 1
        self._gauges(who)
        if self.trace.on:
            self.trace.emit("mm.page_alloc", pfn=pfn, who=who)
        return page

    def put(self, page: Page) -> bool:
        """put_page: drop one reference; free the page when it was the last. Returns
        whether the page was freed."""
        page.put()
        if page.refcount == 0:
            self.free(page)
            return True
        return False

    def free(self, page: Page) -> None:
        """Give an unreferenced page back (``__free_page``)."""
        pfn = page.pfn
        if self._pages.get(pfn) is not page:
            raise InvalidArgument(f"pfn {pfn:#x} is not an allocated DRAM page")
        if page.refcount or page.pincount:
            raise InvalidArgument(f"freeing pfn {pfn:#x} with refcount {page.refcount} "
                                  f"pincount {page.pincount}")
        del self._pages[pfn]
        who = self._who.pop(pfn)
        self._by_who[who] -= 1
        self._data.pop(pfn, None)
        self._free.append(pfn)
        self.dram.uncharge(f"mm:{who}", PAGE_SIZE)
        self.metrics.c["mm.page_alloc.frees"] += 1
        self._gauges(who)
        if self.trace.on:
            self.trace.emit("mm.page_free", pfn=pfn, who=who)

    # -- questions ------------------------------------------------------------------------

    def owns(self, pfn: int) -> bool:
        """Whether ``pfn`` is in the DRAM pfn range (allocated or not)."""
        return self.start_pfn <= pfn < self.end_pfn

    def allocated(self, pfn: int) -> bool:
        return pfn in self._pages

    def page(self, pfn: int) -> Page:
        """The struct page of an allocated DRAM pfn."""
        try:
            return self._pages[pfn]
        except KeyError:
            raise InvalidArgument(f"pfn {pfn:#x} is not an allocated DRAM page") from None

    def peek(self, pfn: int) -> Page | None:
        return self._pages.get(pfn)

    @property
    def nr_allocated(self) -> int:
        return len(self._pages)

    def usage(self) -> dict[str, int]:
        """Pages allocated, by who asked."""
        return {k: v for k, v in sorted(self._by_who.items()) if v}

    # -- contents ---------------------------------------------------------------------------

    def read(self, pfn: int, offset: int, n: int) -> bytes:
        self._check(pfn, offset, n)
        data = self._data.get(pfn)
        if data is None:
            return _ZERO_PAGE[:n] if n <= PAGE_SIZE else bytes(n)
        return bytes(data[offset:offset + n])

    def write(self, pfn: int, offset: int, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        self._check(pfn, offset, n)
        buf = self._data.get(pfn)
        if buf is None:
            if not any(data):
                return  # zeroes over a zero page: stay sparse
            buf = self._data[pfn] = bytearray(PAGE_SIZE)
        buf[offset:offset + n] = data

    def copy(self, dst: int, src: bytes) -> None:
        """Fill page ``dst`` with ``src`` (a whole page), as copy_user_highpage."""
        if len(src) != PAGE_SIZE:
            raise InvalidArgument(f"a page copy moves {PAGE_SIZE} bytes, not {len(src)}")
        self.write(dst, 0, src)

    def _check(self, pfn: int, offset: int, n: int) -> None:
        if pfn not in self._pages:
            raise InvalidArgument(f"pfn {pfn:#x} is not an allocated DRAM page")
        if offset < 0 or n < 0 or offset + n > PAGE_SIZE:
            raise InvalidArgument(f"[{offset:#x}, +{n:#x}) is outside a 4 KiB page")

    def _gauges(self, who: str) -> None:
        m = self.metrics
        m.set("mm.page_alloc.pages", len(self._pages))
        m.set(f"mm.page_alloc.pages.{who}", self._by_who[who])
