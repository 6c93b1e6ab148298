"""get_user_pages and pin_user_pages: holding a process's pages for the kernel or a device.

``get_user_pages(mm, addr, nr)`` walks a process range, faulting pages in as an access
would, and takes one reference per page; ``pin_user_pages`` also counts a pin (``FOLL_PIN``:
DMA, RDMA, O_DIRECT), which is what keeps a filesystem from reusing the block behind a
DAX page (``dax_layout_busy_page``). References and pins go to the compound head, as in
a folio: a pin adds 1 to the head's refcount and 1 to its pincount (Linux's rule for
large folios; small folios add a bias of 1024 to the refcount instead, which the model
does not copy).

Where Linux fails, the model fails the same way:

* no VMA, or an access the VMA's protection forbids: ``-EFAULT`` (:class:`~mm.fault.BadAddress`);
* a ``VM_PFNMAP`` / ``VM_IO`` mapping, or a pfn without a struct page (memmap variant
  ``none``, a raw pfn mapping): ``-EFAULT``, there is nothing to hold a count in;
* a fault that gets SIGBUS: ``-EFAULT``; one that hits poison: ``-EHWPOISON``;
* ``longterm=True`` (``FOLL_LONGTERM``) on a filesystem-DAX mapping: ``-EOPNOTSUPP``
  (a long-term pin would block truncate and hole punch for as long as the device
  holds it).

Like Linux, a walk that fails after some pages were taken returns those pages (fewer
than asked); only a failure on the first page raises.

``unpin_user_pages`` drops the pins and references; when a ZONE_DEVICE page goes idle,
its pgmap's owner hears of it (``page_free``), and a DRAM page whose last reference goes
is freed.

::

    pages = pin_user_pages(p.mm, a, 1, write=True, who="rdma")   head refcount 2 pincount 1
    p.munmap(a, 2 MiB)                                           refcount 1: still pinned
    unpin_user_pages(p.system, pages)                            refcount 0: owner told
"""

from __future__ import annotations

from collections.abc import Sequence

from mm.fault import BUS_MCEERR_AR, BadAddress, HwPoisoned, Signal, handle_mm_fault
from mm.memmap import PAGE_SIZE
from mm.page import Page
from mm.process import MemorySystem, Mm, folio_of
from mm.rmap import PinRecord
from nvdimm.errors import InvalidArgument, NotSupported, NvdimmError


def get_user_pages(mm: Mm, addr: int, nr_pages: int, *, write: bool = False) -> list[Page]:
    """One reference on each of ``nr_pages`` pages from ``addr``. Release with
    :func:`put_user_pages`."""
    return _gup(mm, addr, nr_pages, write=write, pin=False, longterm=False, who="")


def pin_user_pages(mm: Mm, addr: int, nr_pages: int, *, write: bool = False,
                   longterm: bool = False, who: str = "") -> list[Page]:
    """A pin (and a reference) on each of ``nr_pages`` pages from ``addr``; ``who``
    names the holder for reports. Release with :func:`unpin_user_pages`."""
    return _gup(mm, addr, nr_pages, write=write, pin=True, longterm=longterm, who=who)


def put_user_pages(system: MemorySystem, pages: Sequence[Page]) -> None:
    for page in pages:
        system.put_page(page)
    system.metrics.c["mm.gup.put"] += len(pages)


def unpin_user_pages(system: MemorySystem, pages: Sequence[Page]) -> None:
    for page in pages:
        head = folio_of(page)
        assert head is not None
        if head.pincount <= 0:
            raise InvalidArgument(f"unpin of pfn {page.pfn:#x}: it is not pinned")
        head.pincount -= 1
        system.pins.remove(page.pfn)
        system.put_page(page)
        if system.trace.on:
            system.trace.emit("mm.unpin", pfn=page.pfn, refcount=head.refcount)
    system.metrics.c["mm.gup.unpinned"] += len(pages)


def _gup(mm: Mm, addr: int, nr_pages: int, *, write: bool, pin: bool, longterm: bool,
         who: str) -> list[Page]:
    if nr_pages < 0:
        raise InvalidArgument(f"get_user_pages of {nr_pages} pages")
    system = mm.system
    start = addr & ~(PAGE_SIZE - 1)
    pages: list[Page] = []
    for i in range(nr_pages):
        a = start + i * PAGE_SIZE
        try:
            page = _one(mm, a, write, longterm)
        except NvdimmError as e:
            system.metrics.c["mm.gup.failed"] += 1
            if system.trace.on:
                system.trace.emit("mm.gup_fail", pid=mm.pid, addr=a, errno=e.errno,
                                  done=len(pages))
            if pages:
                break  # partial success: the caller gets what was taken
            raise
        page.get()
        if pin:
            head = folio_of(page)
            assert head is not None
            head.pincount += 1
            system.pins.add(page.pfn, PinRecord(mm.pid, mm.name, a, who, longterm))
        pages.append(page)
    c = system.metrics.c
    c["mm.gup.pages"] += len(pages)
    if pin:
        c["mm.gup.pinned"] += len(pages)
    if system.trace.on and pages:
        system.trace.emit("mm.pin" if pin else "mm.gup", pid=mm.pid, addr=start,
                          pages=len(pages), write=write, who=who)
    return pages


def _one(mm: Mm, a: int, write: bool, longterm: bool) -> Page:
    vma = mm.find_vma(a)
    if vma is None:
        raise BadAddress(f"{mm.name}: {a:#x} is not mapped")
    if vma.pfnmap:
        raise BadAddress(f"{mm.name}: {a:#x} is in a VM_PFNMAP mapping of "
                         f"{vma.backing_name}: no struct pages to hold")
    if (write and not vma.writable) or not vma.readable:
        raise BadAddress(f"{mm.name}: {a:#x}: the mapping does not allow this access")
    if longterm and not vma.anonymous and vma.ops.fsdax:
        raise NotSupported(f"{mm.name}: long-term pin of a filesystem-DAX page at {a:#x}")
    hit = mm.pt.lookup(a)
    if hit is None or (write and not hit[1].writable):
        try:
            hit = handle_mm_fault(mm, a, write=write)
        except Signal as sig:
            if sig.code == BUS_MCEERR_AR and sig.signo == 7:
                raise HwPoisoned(f"{mm.name}: poison at {a:#x}", a, PAGE_SIZE) from None
            raise BadAddress(f"{mm.name}: fault at {a:#x}: {sig.message}") from None
    base, e = hit
    pfn = e.pfn + ((a - base) >> 12)
    page = mm.system.struct_page(pfn)
    if page is None:
        raise BadAddress(f"{mm.name}: pfn {pfn:#x} at {a:#x} has no struct page")
    return page
