"""dev_pagemap and memremap_pages: device memory given struct pages (ZONE_DEVICE).

A driver that wants the kernel to treat a physical range as pages (fsdax, device-dax)
describes it with a :class:`DevPagemap` (range, :class:`MemoryType`, optional
:class:`~mm.memmap.VmemAltmap`, owner, a ``page_free`` callback, and the ``memmap``
seam variant that decides where the struct pages live) and hands it to
:meth:`PagemapTable.memremap_pages`. That checks the range, asks the variant what the
memmap costs, charges the DRAM part to the machine's DRAM budget (refusing with
:class:`~nvdimm.errors.NoSpace` before anything changes when it does not fit) and
records the pgmap so :meth:`PagemapTable.lookup` (``get_dev_pagemap``) finds it by pfn.

Nothing is created per page: :meth:`DevPagemap.page` makes a :class:`~mm.page.Page`
the first time a pfn is asked for. A 64 TiB range is as cheap to remap as a 2 MiB one.

Worked example (the golden fsdax-dev namespace, map=dev)::

    range [0x100000000, 0x10f000000)  type fsdax  altmap base 0x100000 reserve 2 free 1022
    first data pfn 0x100400 (= range start + dataoff 4 MiB)     pfns below it: reserved
    memmap variant pmem: DRAM 0, pmem 4 MiB - 8 KiB; 0 struct pages created until used
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from mm.memmap import (
    PAGE_SHIFT,
    PAGE_SIZE,
    MemmapCost,
    MemmapPolicy,
    MemmapRequest,
    StructPageHome,
    VmemAltmap,
    capabilities,
)
from mm.page import Page, PageFlags
from nvdimm.errors import Busy, InvalidArgument, NotSupported
from nvdimm.metrics import Metrics
from nvdimm.trace import Trace


class MemoryType(enum.IntEnum):
    """``enum memory_type`` (include/linux/memremap.h)."""

    PRIVATE = 1  # not CPU addressable (device-private memory)
    COHERENT = 2
    FS_DAX = 3  # pmem under a DAX filesystem: pinnable, waiters woken when a page idles
    GENERIC = 4  # device-dax (MEMORY_DEVICE_DEVDAX before 5.9)
    PCI_P2PDMA = 5

    @property
    def word(self) -> str:
        return {MemoryType.FS_DAX: "fsdax", MemoryType.GENERIC: "generic"}.get(
            self, self.name.lower())


class DramBudget(Protocol):
    """The machine's DRAM accounting (``nvdimm.platform.dram.Dram`` satisfies it)."""

    def charge(self, who: str, nbytes: int) -> None: ...

    def uncharge(self, who: str, nbytes: int | None = None) -> None: ...


PageFree = Callable[[Page], None]


@attrs.define(slots=True, eq=False)
class DevPagemap:
    """``struct dev_pagemap`` over one physical range ``[start, start + size)``."""

    type: MemoryType
    start: int
    size: int
    owner: str
    memmap: MemmapPolicy
    align: int = PAGE_SIZE  # the mapping alignment
    altmap: VmemAltmap | None = None
    page_free: PageFree | None = None
    vmemmap_shift: int = 0  # compound order of the pages (device-dax: order of align)
    cost: MemmapCost | None = attrs.field(init=False, default=None)
    pages: dict[int, Page] = attrs.field(init=False, factory=dict, repr=False)
    live: bool = attrs.field(init=False, default=False)
    _metrics: Metrics | None = attrs.field(init=False, default=None, repr=False)

    # -- geometry ---------------------------------------------------------------------

    @property
    def start_pfn(self) -> int:
        return self.start >> PAGE_SHIFT

    @property
    def end_pfn(self) -> int:
        return (self.start + self.size) >> PAGE_SHIFT

    @property
    def nr_pages(self) -> int:
        return self.size >> PAGE_SHIFT

    @property
    def first_pfn(self) -> int:
        """``pfn_first``: the first pfn with a usable struct page (after the altmap)."""
        return self.start_pfn + (self.altmap.offset if self.altmap is not None else 0)

    @property
    def request(self) -> MemmapRequest:
        return MemmapRequest(self.start, self.size, self.align, self.altmap,
                             self.vmemmap_shift)

    def contains(self, pfn: int) -> bool:
        return self.start_pfn <= pfn < self.end_pfn

    def pfn_valid(self, pfn: int) -> bool:
        """``pgmap_pfn_valid``: in the range and past the altmap's reservation."""
        return self.contains(pfn) and pfn >= self.first_pfn

    # -- struct pages -------------------------------------------------------------------

    def _check_page(self, pfn: int) -> None:
        if not self.contains(pfn):
            raise InvalidArgument(f"pfn {pfn:#x} is not in {self.owner}'s pagemap "
                                  f"[{self.start_pfn:#x}, {self.end_pfn:#x})")
        if not self.memmap.struct_pages:
            raise NotSupported(f"pfn {pfn:#x} has no struct page: {self.owner} uses memmap "
                               f"variant {self.memmap.name!r}")
        if pfn < self.first_pfn:
            raise InvalidArgument(f"pfn {pfn:#x} is in {self.owner}'s reservation (info "
                                  f"block and memmap, up to {self.first_pfn:#x}): it has no "
                                  "usable struct page")

    def page(self, pfn: int) -> Page:
        """pfn_to_page: the struct page, created on first use."""
        p = self.pages.get(pfn)
        if p is not None:
            return p
        self._check_page(pfn)
        head: int | None = None
        order = 0
        flags = PageFlags(0)
        shift = self.vmemmap_shift
        if shift:
            first = self.first_pfn
            head = first + ((pfn - first) >> shift << shift)
            if head == pfn:
                order, flags = shift, PageFlags.HEAD
        p = Page(pfn, self, flags=flags, head=head, order=order)
        self.pages[pfn] = p
        if self._metrics is not None:
            self._metrics.c["mm.struct_pages_created"] += 1
        return p

    def peek(self, pfn: int) -> Page | None:
        """The struct page if it was already created (looking does not create it)."""
        return self.pages.get(pfn)

    def home(self, pfn: int) -> StructPageHome:
        """Where ``pfn``'s struct page lives, as the memmap variant placed it."""
        return self.memmap.home(self.request, pfn)

    def page_idle(self, page: Page) -> None:
        """The last reference went: tell the owner (``pgmap->ops->page_free``)."""
        if self._metrics is not None:
            self._metrics.c["mm.device_pages_freed"] += 1
        if self.page_free is not None:
            self.page_free(page)

    def busy_pages(self) -> list[Page]:
        return [p for p in self.pages.values() if p.refcount or p.pincount]

    # -- reports ------------------------------------------------------------------------

    @property
    def dram_account(self) -> str:
        """The name its memmap is charged to in the DRAM budget."""
        return f"memmap:{self.owner}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "owner": self.owner, "type": self.type.word, "start": self.start,
            "size": self.size, "pfns": [self.start_pfn, self.end_pfn],
            "first_pfn": self.first_pfn, "vmemmap_shift": self.vmemmap_shift,
            "memmap": self.memmap.name, "can": capabilities(self.memmap),
        }
        if self.altmap is not None:
            out["altmap"] = attrs.asdict(self.altmap)
        if self.cost is not None:
            out["cost"] = self.cost.to_json()
        out["struct_pages_created"] = len(self.pages)
        return out


@attrs.define(slots=True, eq=False)
class PagemapTable:
    """The running kernel's pfn -> dev_pagemap index, with the memmap charges.

    One table serves every driver of a machine. It belongs to one kernel (``kernel``,
    any object, e.g. the bus): when a new kernel remaps pages (after a crash, where no
    driver detached), what the old one held is forgotten and its DRAM given back, as a
    reboot does.
    """

    kernel: object | None = None
    maps: list[DevPagemap] = attrs.field(factory=list)
    _dram: DramBudget | None = attrs.field(default=None, repr=False)

    def _new_kernel(self, kernel: object) -> None:
        if self.kernel is kernel:
            return
        if self._dram is not None:
            for pg in self.maps:
                self._dram.uncharge(pg.dram_account)
        for pg in self.maps:
            pg.live = False
        self.maps = []
        self.kernel = kernel

    def memremap_pages(self, pgmap: DevPagemap, *, dram: DramBudget, metrics: Metrics,
                       trace: Trace, kernel: object | None = None) -> DevPagemap:
        """Give ``pgmap``'s range struct pages (by arithmetic). Validates, then charges
        the DRAM, then records it; a refusal changes nothing."""
        self._new_kernel(kernel)
        if pgmap.live:
            raise Busy(f"{pgmap.owner}: pagemap already remapped")
        if pgmap.start % PAGE_SIZE or pgmap.size % PAGE_SIZE or pgmap.size <= 0:
            raise InvalidArgument(f"{pgmap.owner}: range [{pgmap.start:#x}, "
                                  f"+{pgmap.size:#x}) is not whole pages")
        for other in self.maps:
            if other.start < pgmap.start + pgmap.size and pgmap.start < other.start + other.size:
                raise Busy(f"{pgmap.owner}: range [{pgmap.start:#x}, "
                           f"{pgmap.start + pgmap.size:#x}) overlaps {other.owner}'s")
        alt = pgmap.altmap
        if alt is not None:
            if not pgmap.memmap.uses_altmap:
                raise InvalidArgument(f"{pgmap.owner}: memmap variant {pgmap.memmap.name!r} "
                                      "does not store struct pages on the device")
            if alt.base_pfn > pgmap.start_pfn or pgmap.first_pfn > pgmap.end_pfn:
                raise InvalidArgument(f"{pgmap.owner}: altmap {alt} does not fit the range")
        elif pgmap.memmap.uses_altmap:
            raise InvalidArgument(f"{pgmap.owner}: memmap variant {pgmap.memmap.name!r} "
                                  "needs room on the device (an info block with map=dev)")
        cost = pgmap.memmap.cost(pgmap.request)
        dram.charge(pgmap.dram_account, cost.dram_bytes)  # NoSpace: nothing changed
        self._dram = dram
        pgmap.cost = cost
        pgmap.live = True
        pgmap._metrics = metrics
        starts = [m.start for m in self.maps]
        self.maps.insert(bisect.bisect(starts, pgmap.start), pgmap)
        metrics.c["mm.memremap_pages"] += 1
        self._gauges(metrics)
        if trace.on:
            trace.emit("mm.memremap_pages", owner=pgmap.owner, type=pgmap.type.word,
                       start=pgmap.start, size=pgmap.size, memmap=pgmap.memmap.name,
                       dram=cost.dram_bytes, pmem=cost.pmem_bytes)
        return pgmap

    def memunmap_pages(self, pgmap: DevPagemap, *, dram: DramBudget, metrics: Metrics,
                       trace: Trace) -> None:
        """Tear down: refused while any page is referenced or pinned."""
        if not pgmap.live:
            return
        busy = pgmap.busy_pages()
        if busy:
            raise Busy(f"{pgmap.owner}: {len(busy)} page(s) still referenced or pinned "
                       f"(first pfn {busy[0].pfn:#x})")
        dram.uncharge(pgmap.dram_account)
        self.maps.remove(pgmap)
        pgmap.live = False
        self._gauges(metrics)
        if trace.on:
            trace.emit("mm.memunmap_pages", owner=pgmap.owner)

    def lookup(self, pfn: int) -> DevPagemap | None:
        """``get_dev_pagemap``: the pgmap whose range holds ``pfn``."""
        starts = [m.start_pfn for m in self.maps]
        i = bisect.bisect_right(starts, pfn) - 1
        if i >= 0 and self.maps[i].contains(pfn):
            return self.maps[i]
        return None

    def totals(self) -> tuple[int, int]:
        """(DRAM, pmem) bytes spent on memmaps by every live pgmap."""
        costs = [m.cost for m in self.maps if m.cost is not None]
        return sum(c.dram_bytes for c in costs), sum(c.pmem_bytes for c in costs)

    def _gauges(self, metrics: Metrics) -> None:
        dram, pmem = self.totals()
        metrics.set("mm.memmap_dram_bytes", dram)
        metrics.set("mm.memmap_pmem_bytes", pmem)
