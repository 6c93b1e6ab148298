"""Page faults: ``handle_mm_fault``, and the signals and errors a bad access gets.

A fault at ``addr`` finds the VMA (none: SIGSEGV, ``SEGV_MAPERR``), checks the access
against its protection (SIGSEGV, ``SEGV_ACCERR``), then fills the page table:

* **anonymous** memory gets a zeroed DRAM page from the page allocator, 4 KiB (the model
  has no transparent huge pages for anonymous memory, and maps no zero page for an
  anonymous read; a backing may map :meth:`~mm.process.MemorySystem.zero_page` into a
  private mapping, as a filesystem does over a hole);
* any other VMA asks its backing's :class:`~mm.vma.VmOps` ``fault(vma, addr, size,
  write)`` for ``(pfn, size)``. The core offers the largest entry that fits: 1 GiB,
  2 MiB or 4 KiB, no larger than the VMA allows (``max_fault``), inside the VMA and
  over an empty slot of the page table (a PMD slot holding PTEs cannot take a 2 MiB
  leaf). The backing may answer with a smaller size (Linux's ``VM_FAULT_FALLBACK``),
  or raise SIGBUS. Device-dax answers by its alignment rules: smaller than its
  alignment is SIGBUS, larger falls back, exact is inserted;
* a **private** file or device mapping maps the backing's pages read-only; the first
  write copies the 4 KiB page into DRAM (copy on write), so stores to a MAP_PRIVATE
  DAX mapping never reach pmem.

Faults are counted by the size installed: ``mm.faults.4k``, ``mm.faults.2m``,
``mm.faults.1g`` (and ``mm.faults.cow``, ``mm.faults.sigbus``, ``mm.faults.sigsegv``).

Signals are exceptions. Each carries the signal number, ``si_code`` and address, and
an errno for when a system call meets the bad address instead of a user access
(a ``read(2)`` into such a buffer fails with EFAULT).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from mm.pagetable import PTE_SIZE, SIZE_NAMES, SIZES, Entry
from nvdimm.errors import InvalidArgument, MediaError, NvdimmError

if TYPE_CHECKING:
    from mm.process import Mm
    from mm.vma import Vma

# si_code values (include/uapi/asm-generic/siginfo.h)
SEGV_MAPERR = 1  # address not mapped to object
SEGV_ACCERR = 2  # invalid permissions for mapped object
BUS_ADRALN = 1
BUS_ADRERR = 2  # non-existent physical address
BUS_OBJERR = 3
BUS_MCEERR_AR = 4  # hardware memory error consumed on a machine check: action required
BUS_MCEERR_AO = 5  # hardware memory error detected in process but not consumed


class Signal(NvdimmError):
    """A signal delivered to the process that made the access."""

    signo: int = 0
    errno = errno.EFAULT

    def __init__(self, message: str, *, code: int, addr: int) -> None:
        super().__init__(message)
        self.code = code
        self.addr = addr


class SIGSEGV(Signal):
    """Segmentation fault: no mapping (``SEGV_MAPERR``) or a forbidden access
    (``SEGV_ACCERR``)."""

    signo = 11


class SIGBUS(Signal):
    """Bus error: the mapping exists but nothing can back the access: beyond the end of
    the object (``BUS_ADRERR``, also device-dax's fault smaller than its alignment), or
    poisoned memory consumed (``BUS_MCEERR_AR``)."""

    signo = 7


class BadAddress(NvdimmError):
    """EFAULT from a system call (get_user_pages and friends)."""

    errno = errno.EFAULT


#: Linux's EHWPOISON ("memory page has hardware error"); Python's errno lacks it.
EHWPOISON = 133


class HwPoisoned(MediaError):
    """EHWPOISON: the page holds a memory error (GUP on a poisoned page; dax_direct_access
    on a known-bad range since 5.19)."""

    errno = EHWPOISON


def fault_size(mm: Mm, vma: Vma, addr: int) -> int:
    """The largest entry a fault at ``addr`` may install: not above the VMA's
    ``max_fault``, inside the VMA, over an empty page-table slot."""
    for size in SIZES:
        if size > vma.max_fault:
            continue
        base = addr & ~(size - 1)
        if base < vma.start or base + size > vma.end:
            continue
        if size == PTE_SIZE or mm.pt.is_empty(base, size):
            return size
    return PTE_SIZE


def handle_mm_fault(mm: Mm, addr: int, *, write: bool) -> tuple[int, Entry]:
    """Resolve a fault at ``addr``; returns the leaf now covering it and its virtual base.
    Raises :class:`SIGSEGV` or :class:`SIGBUS`."""
    c = mm.system.metrics.c
    vma = mm.find_vma(addr)
    if vma is None:
        c["mm.faults.sigsegv"] += 1
        raise SIGSEGV(f"{mm.name}: no mapping at {addr:#x}", code=SEGV_MAPERR, addr=addr)
    if (write and not vma.writable) or not vma.readable:
        c["mm.faults.sigsegv"] += 1
        raise SIGSEGV(f"{mm.name}: {'write' if write else 'read'} at {addr:#x} not allowed "
                      f"by the mapping's protection ({vma.prot_text})", code=SEGV_ACCERR,
                      addr=addr)
    try:
        return _resolve(mm, vma, addr, write)
    except SIGBUS:
        c["mm.faults.sigbus"] += 1  # counted once, whichever path raised it
        raise


def _resolve(mm: Mm, vma: Vma, addr: int, write: bool) -> tuple[int, Entry]:
    hit = mm.pt.lookup(addr)
    if hit is not None:
        e = hit[1]
        if not write or e.writable:
            return hit  # someone else filled it
        if vma.shared:  # a write to a clean shared entry: make it writable (mkwrite)
            mm.system.metrics.c["mm.faults.wp"] += 1
            if vma.anonymous or not vma.ops.writenotify or vma.ops.page_mkwrite(vma, addr):
                e.writable = True
                return hit
            # the backing wants another page here (a zero page over a hole): refault
            mm.zap(hit[0], hit[0] + e.size)
            return _backing(mm, vma, addr, True)
        return _cow(mm, vma, addr)
    if vma.anonymous:
        return _anon(mm, vma, addr, write)
    if write and not vma.shared:
        return _cow(mm, vma, addr)
    return _backing(mm, vma, addr, write)


def _done(mm: Mm, vma: Vma, base: int, e: Entry, write: bool) -> tuple[int, Entry]:
    name = SIZE_NAMES[e.size]
    mm.system.metrics.c[f"mm.faults.{name}"] += 1
    tr = mm.system.trace
    if tr.on:
        tr.emit("mm.fault", pid=mm.pid, addr=base, size=name, pfn=e.pfn,
                backing=vma.backing_name, write=write)
    return base, e


def _anon(mm: Mm, vma: Vma, addr: int, write: bool) -> tuple[int, Entry]:
    page = mm.system.pages.alloc("anon")
    base = addr & ~(PTE_SIZE - 1)
    e = Entry(page.pfn, PTE_SIZE, vma.writable)
    mm.install(base, e, vma, ref_taken=True)
    return _done(mm, vma, base, e, write)


def _backing(mm: Mm, vma: Vma, addr: int, write: bool) -> tuple[int, Entry]:
    ops = vma.ops
    size = fault_size(mm, vma, addr)
    pfn, got = ops.fault(vma, addr, size, write)
    if got not in SIZES or got > size or pfn & ((got >> 12) - 1):
        raise InvalidArgument(f"{ops.name}: fault answered pfn {pfn:#x} size {got:#x} for a "
                              f"fault of at most {size:#x}")
    base = addr & ~(got - 1)
    # A backing that tracks writes (writenotify) gets read faults mapped read-only, so
    # the first store comes back through page_mkwrite; the zero page is never writable.
    writable = (vma.writable and vma.shared and (write or not ops.writenotify)
                and pfn != mm.system.zero_pfn)
    e = Entry(pfn, got, writable)
    mm.install(base, e, vma)
    return _done(mm, vma, base, e, write)


def _cow(mm: Mm, vma: Vma, addr: int) -> tuple[int, Entry]:
    """Copy the backing's 4 KiB page into a private DRAM page (do_cow_fault / wp_page_copy)."""
    base = addr & ~(PTE_SIZE - 1)
    hit = mm.pt.lookup(addr)
    if hit is not None:  # a read-only entry (a huge one is dropped whole; the rest refaults)
        mm.zap(hit[0], hit[0] + hit[1].size)
    pfn, got = vma.ops.fault(vma, base, PTE_SIZE, False)
    if got != PTE_SIZE:
        raise InvalidArgument(f"{vma.ops.name}: a 4 KiB fault got {got:#x}")
    try:
        src = mm.system.read_phys(pfn << 12, PTE_SIZE)
    except MediaError:
        raise SIGBUS(f"{mm.name}: poison in the page to copy at {base:#x}",
                     code=BUS_MCEERR_AR, addr=base) from None
    page = mm.system.pages.alloc("anon")
    mm.system.pages.copy(page.pfn, src)
    e = Entry(page.pfn, PTE_SIZE, True)
    mm.install(base, e, vma, ref_taken=True)
    mm.system.metrics.c["mm.faults.cow"] += 1
    return _done(mm, vma, base, e, True)
