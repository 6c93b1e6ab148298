"""Seam ``memmap``: where the struct pages of device memory live, and what they cost.

Every 4 KiB page the kernel manages has a ``struct page`` of 64 bytes (x86_64) in the
*memmap* (mapped at ``vmemmap``). For pmem that is 1.5625 % of the capacity: 16 GiB of
struct pages per TiB, 1 TiB of them for a 64 TiB namespace. A variant of this seam
decides where they go and so what a range of device memory costs and can do:

========== ===================== ============== ==========================================
variant    struct pages in       DRAM per 4 KiB what it cannot do
========== ===================== ============== ==========================================
none       nowhere               0              pin pages (get/pin_user_pages, DMA,
                                                O_DIRECT to a DAX file): nothing to count
ram        DRAM                  64 B           (it costs 1.56 % of the pmem in DRAM)
pmem       the device (altmap)   0              share tail pages; every refcount change
                                                is a write to pmem
compound   DRAM, tails shared    4 B at 2 MiB,  keep per-4K state in tail pages; used by
                                 ~0 at 1 GiB    device-dax only, not with an altmap
========== ===================== ============== ==========================================

A consumer (the pfn and dax drivers, through :mod:`mm.pagemap`) describes the range with
a :class:`MemmapRequest` and asks the variant for its :meth:`~MemmapPolicy.cost` (DRAM
and pmem bytes, computed arithmetically: no per-page objects) and, for one pfn, where
its struct page lives (:meth:`~MemmapPolicy.home`). The variant decides; the consumer
charges the DRAM (refused with NoSpace when it does not fit) and reports both figures.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import attrs

from nvdimm.errors import InvalidArgument
from nvdimm.seams import variant

PAGE_SIZE = 4096
PAGE_SHIFT = 12
STRUCT_PAGE_SIZE = 64  # sizeof(struct page) on x86_64; also nvdimm's MAX_STRUCT_PAGE_SIZE
SUBSECTION_SIZE = 2 << 20  # memory hotplug granularity (memremap_compat_align on x86_64)
#: x86_64's vmemmap base with 4-level paging and no KASLR: struct page of pfn p is at
#: ``VMEMMAP_START + 64 * p``. (With KASLR the base moves; the layout does not.)
VMEMMAP_START = 0xFFFF_EA00_0000_0000
#: Vmemmap pages a deduplicated compound page keeps: the head's and one tail page.
COMPOUND_KEPT_VMEMMAP_PAGES = 2


def struct_page_address(pfn: int) -> int:
    """The virtual address of pfn's struct page in the vmemmap (x86_64, no KASLR)."""
    return VMEMMAP_START + STRUCT_PAGE_SIZE * pfn


@attrs.frozen(slots=True)
class VmemAltmap:
    """``struct vmem_altmap``: device pages set aside to hold the memmap.

    ``reserve`` pages at ``base_pfn`` belong to the driver (the info block area and
    the pad down to a subsection boundary); the next ``free`` pages hold struct pages;
    the first pfn with a usable struct page is ``base_pfn + offset``.
    """

    base_pfn: int
    end_pfn: int
    reserve: int
    free: int
    align: int = 0
    alloc: int = 0

    @property
    def offset(self) -> int:
        """``vmem_altmap_offset``: pfns from ``base_pfn`` to the first data pfn."""
        return self.reserve + self.free


@attrs.frozen(slots=True)
class MemmapRequest:
    """Struct pages wanted for the physical range ``[start, start + size)``.

    ``align`` is the mapping alignment; ``vmemmap_shift`` the compound order of the
    memmap (device-dax: ``align`` as a compound page, 9 for 2 MiB, 18 for 1 GiB; 0 for
    base pages); ``altmap`` is the device's carve-out for the memmap when the owner made
    one (map=dev).
    """

    start: int
    size: int
    align: int = PAGE_SIZE
    altmap: VmemAltmap | None = None
    vmemmap_shift: int = 0

    def __attrs_post_init__(self) -> None:
        if self.start % PAGE_SIZE or self.size % PAGE_SIZE or self.size <= 0:
            raise InvalidArgument(f"memmap range [{self.start:#x}, +{self.size:#x}) must be "
                                  "whole, non-empty pages")
        if self.align < PAGE_SIZE or self.align & (self.align - 1):
            raise InvalidArgument(f"memmap alignment {self.align:#x} must be a power of two "
                                  "of at least 4 KiB")

    @property
    def start_pfn(self) -> int:
        return self.start >> PAGE_SHIFT

    @property
    def compound_pages(self) -> int:
        """Pages per compound page (1: base pages)."""
        return 1 << self.vmemmap_shift

    @property
    def npages(self) -> int:
        return self.size >> PAGE_SHIFT


@attrs.frozen(slots=True)
class MemmapCost:
    """What a variant spends on the struct pages of a range (bytes)."""

    variant: str
    npages: int
    dram_bytes: int
    pmem_bytes: int

    @property
    def full_bytes(self) -> int:
        """64 bytes per page: the memmap with nothing shared."""
        return STRUCT_PAGE_SIZE * self.npages

    def to_json(self) -> dict[str, int | str]:
        return {"variant": self.variant, "pages": self.npages, "dram": self.dram_bytes,
                "pmem": self.pmem_bytes, "full": self.full_bytes}


@attrs.frozen(slots=True)
class StructPageHome:
    """Where one pfn's struct page lives.

    ``where`` is ``"dram"``, ``"pmem"`` or ``"none"``; ``phys`` is the physical address
    of its 64 bytes when the model knows it (pmem: inside the device's reservation);
    ``shared`` says whether other struct pages alias the same bytes (deduplicated tail
    pages of a compound page).
    """

    where: str
    vaddr: int | None
    phys: int | None = None
    shared: bool = False
    note: str = ""


@runtime_checkable
class MemmapPolicy(Protocol):
    """The ``memmap`` seam's contract (see the module docstring)."""

    @property
    def name(self) -> str: ...

    @property
    def struct_pages(self) -> bool:
        """Whether pages of the range have struct pages at all."""
        ...

    @property
    def can_pin(self) -> bool:
        """Whether get/pin_user_pages (DMA, O_DIRECT, RDMA) can hold a page of the range."""
        ...

    @property
    def per_page_state(self) -> bool:
        """Whether every 4 KiB page has struct page fields of its own (not shared)."""
        ...

    @property
    def uses_altmap(self) -> bool:
        """Whether the struct pages are stored on the device itself."""
        ...

    def cost(self, req: MemmapRequest) -> MemmapCost:
        """DRAM and pmem spent on the struct pages of ``req``'s range."""
        ...

    def home(self, req: MemmapRequest, pfn: int) -> StructPageHome:
        """Where ``pfn``'s struct page lives (``pfn`` must be in the range)."""
        ...


def capabilities(policy: MemmapPolicy) -> dict[str, bool]:
    """A variant's can/cannot flags, for reports."""
    return {"struct_pages": policy.struct_pages, "can_pin": policy.can_pin,
            "per_page_state": policy.per_page_state, "uses_altmap": policy.uses_altmap}


def _check_pfn(req: MemmapRequest, pfn: int) -> None:
    if not req.start_pfn <= pfn < req.start_pfn + req.npages:
        raise InvalidArgument(f"pfn {pfn:#x} is outside the range [{req.start_pfn:#x}, "
                              f"{req.start_pfn + req.npages:#x})")


def linux_reservation(start: int, npages: int, align: int, reserve: int = 0) -> int:
    """Bytes nvdimm sets aside on the device for ``npages`` struct pages (``nd_pfn_init``):
    the memmap placed after ``reserve`` bytes at physical ``start``, its end rounded up
    to ``max(align, 2 MiB)``. With ``reserve`` = 8 KiB this is an info block's
    ``dataoff - 8K``."""
    align_eff = max(align, SUBSECTION_SIZE)
    end = -(-(start + reserve + STRUCT_PAGE_SIZE * npages) // align_eff) * align_eff
    return end - start - reserve


@variant(
    "memmap", "none",
    history="""The first DAX (2014-2015) mapped pmem by pfn alone: no struct pages, so
    nothing in the kernel could take a reference on a DAX page. get_user_pages() on such a
    mapping failed, so O_DIRECT to or from a DAX-mapped file and RDMA to pmem did not work.
    ZONE_DEVICE (4.3) and the pfn device (4.5) added struct pages; filesystem DAX without
    them was deprecated and then removed in the 4.x series. Raw-mode pmem namespaces still
    get none today, and therefore no DAX.""",
    tradeoffs="""Costs nothing in DRAM or pmem and starts instantly at any size. Loads and
    stores through a mapping work, but the range cannot be pinned (no GUP, no DMA into it,
    no direct I/O from a DAX file to a device) and no page-based kernel code can touch it
    (no page cache, no migration, no memory-failure handling by page).""",
)
@attrs.frozen(slots=True)
class NoMemmap:
    """No struct pages: the range is pfns only.

    ::

        64 GiB devdax namespace, memmap none   DRAM 0, pmem 0
        store through a 2 MiB mapping          works (a pfn mapping, VM_PFNMAP)
        pin a page for DMA (pin_user_pages)    fails: no struct page to count (-EFAULT)
    """

    name: str = "none"
    struct_pages: bool = False
    can_pin: bool = False
    per_page_state: bool = False
    uses_altmap: bool = False

    def cost(self, req: MemmapRequest) -> MemmapCost:
        return MemmapCost(self.name, req.npages, 0, 0)

    def home(self, req: MemmapRequest, pfn: int) -> StructPageHome:
        _check_pfn(req, pfn)
        return StructPageHome("none", None, note="no struct page: the range is pfn-only")


@variant(
    "memmap", "ram",
    history="""ZONE_DEVICE (Linux 4.3, "mm: ZONE_DEVICE for device memory") lets a driver
    hot-add struct pages for device memory with devm_memremap_pages(); the pfn device of
    4.5 ("libnvdimm, pfn: struct page provisioning for pmem") stores the choice in its
    info block as PFN_MODE_RAM, ndctl's --map=mem. It is also how raw pmem with the
    region's PAGEMAP flag (memmap=ss!nn ranges) gets pages.""",
    tradeoffs="""Struct pages in DRAM are fast to update (every get/put_page and pin is a
    DRAM write) and the namespace keeps all its capacity (dataoff is only 2 MiB), but DRAM
    pays 1.5625 % of the pmem: 16 GiB per TiB, 1 TiB for 64 TiB, which on large pmem
    systems can exceed the DRAM installed.""",
)
@attrs.frozen(slots=True)
class RamMemmap:
    """Struct pages in system DRAM, 64 bytes per 4 KiB page.

    ::

        16 GiB fsdax namespace, --map=mem   4 Mi pages x 64 B = 256 MiB of DRAM, pmem 0
        1 TiB                               16 GiB of DRAM ("16 GB per 1 TB")
        pin a page for DMA                  works: refcount lives in DRAM
    """

    name: str = "ram"
    struct_pages: bool = True
    can_pin: bool = True
    per_page_state: bool = True
    uses_altmap: bool = False

    def cost(self, req: MemmapRequest) -> MemmapCost:
        return MemmapCost(self.name, req.npages, STRUCT_PAGE_SIZE * req.npages, 0)

    def home(self, req: MemmapRequest, pfn: int) -> StructPageHome:
        _check_pfn(req, pfn)
        return StructPageHome("dram", struct_page_address(pfn),
                              note="vmemmap page allocated from DRAM")


@variant(
    "memmap", "pmem",
    history="""vmem_altmap (4.5-4.7, Dan Williams) lets vmemmap_populate() take the pages
    that back the memmap from the device being hot-added instead of from DRAM; nvdimm
    reserves them between the info block and dataoff (PFN_MODE_PMEM, ndctl --map=dev,
    ndctl's default). The reservation is 64 bytes per page even when the running kernel's
    struct page is smaller, so a namespace survives a kernel with a bigger one.""",
    tradeoffs="""No DRAM at all, whatever the size, at the price of 1.5625 % of the
    namespace (rounded up to the alignment: a 1 GiB-aligned 16 GiB namespace loses
    6.25 %) and of struct page updates that are writes to slower, wearing pmem. Compound
    page deduplication does not apply with an altmap.""",
)
@attrs.frozen(slots=True)
class PmemMemmap:
    """Struct pages on the device itself, in the reservation the info block records.

    ::

        16 GiB fsdax at 0x240000000, --map=dev, align 2M   DRAM 0, pmem 258 MiB - 8 KiB
        struct page of the first data pfn 0x250200        on the device at 0x24040a000
        same namespace with align 1G                      pmem 1 GiB - 8 KiB
    """

    name: str = "pmem"
    struct_pages: bool = True
    can_pin: bool = True
    per_page_state: bool = True
    uses_altmap: bool = True

    def cost(self, req: MemmapRequest) -> MemmapCost:
        if req.altmap is not None:
            reserved = req.altmap.free * PAGE_SIZE
        else:  # what nvdimm would reserve for this range
            reserved = linux_reservation(req.start, req.npages, req.align)
        return MemmapCost(self.name, req.npages, 0, reserved)

    def home(self, req: MemmapRequest, pfn: int) -> StructPageHome:
        _check_pfn(req, pfn)
        alt = req.altmap
        if alt is None:
            return StructPageHome("pmem", struct_page_address(pfn),
                                  note="no altmap given: placement not known")
        # The model lays struct pages out linearly from the first free altmap page.
        # (Linux's vmemmap_populate takes PMD-sized, aligned blocks from the altmap when
        # it can, so the exact offsets differ; the range they come from is the same.)
        phys = (alt.base_pfn + alt.reserve) * PAGE_SIZE + (pfn - alt.base_pfn) * STRUCT_PAGE_SIZE
        return StructPageHome("pmem", struct_page_address(pfn), phys,
                              note="vmemmap page taken from the device's altmap")


@variant(
    "memmap", "compound",
    history="""Device-dax maps pmem only at its alignment, so since 5.17 it describes each
    2 MiB or 1 GiB chunk as one compound page (pgmap vmemmap_shift); since 5.19 ("improve
    memory savings for compound devmaps", Joao Martins) the vmemmap of a compound page
    keeps only the page holding the head and one page of tail struct pages, and maps that
    tail page again in place of all the others, as HugeTLB's vmemmap optimisation does.""",
    tradeoffs="""Saves 6 of 8 vmemmap pages per 2 MiB (75 %) and 4094 of 4096 per 1 GiB,
    in DRAM, so --map=mem device-dax becomes cheap. Tail struct pages are identical, so no
    per-4K state (refcount, mapping) can live in them: pins and references go to the
    head, and the range can only be mapped at its alignment. Not applied with an altmap,
    and not used by fsdax, whose filesystem hands out 4 KiB blocks.""",
)
@attrs.frozen(slots=True)
class CompoundMemmap:
    """Struct pages in DRAM, tail pages of each compound page (``vmemmap_shift``) shared.

    ::

        64 GiB devdax, align 2M, memmap ram   1 GiB of DRAM (16 Mi pages x 64 B)
        same, compound                       256 MiB (32768 chunks x 2 vmemmap pages)
        same, align 1G                       512 KiB (64 chunks x 2 vmemmap pages)
    """

    name: str = "compound"
    struct_pages: bool = True
    can_pin: bool = True
    per_page_state: bool = False
    uses_altmap: bool = False

    def cost(self, req: MemmapRequest) -> MemmapCost:
        per_chunk = req.compound_pages  # struct pages per compound page
        vmemmap_pages = per_chunk * STRUCT_PAGE_SIZE // PAGE_SIZE
        if vmemmap_pages <= COMPOUND_KEPT_VMEMMAP_PAGES:  # nothing to share: base pages
            return MemmapCost(self.name, req.npages, STRUCT_PAGE_SIZE * req.npages, 0)
        chunks, rest = divmod(req.npages, per_chunk)
        dram = chunks * COMPOUND_KEPT_VMEMMAP_PAGES * PAGE_SIZE + rest * STRUCT_PAGE_SIZE
        return MemmapCost(self.name, req.npages, dram, 0)

    def home(self, req: MemmapRequest, pfn: int) -> StructPageHome:
        _check_pfn(req, pfn)
        per_chunk = req.compound_pages
        j = (pfn - req.start_pfn) % per_chunk
        vm_page = j * STRUCT_PAGE_SIZE // PAGE_SIZE
        if per_chunk * STRUCT_PAGE_SIZE // PAGE_SIZE <= COMPOUND_KEPT_VMEMMAP_PAGES:
            return StructPageHome("dram", struct_page_address(pfn), note="base pages")
        if vm_page == 0:
            return StructPageHome("dram", struct_page_address(pfn),
                                  note=f"own vmemmap page: the head of its "
                                       f"{per_chunk * PAGE_SIZE:#x} compound page and the "
                                       "first tails")
        return StructPageHome("dram", struct_page_address(pfn), shared=True,
                              note="deduplicated tail page: every vmemmap page after the "
                                   "first of this compound page maps the same 4 KiB")
