"""Processes: address spaces (:class:`Mm`), and the loads and stores a process makes.

:class:`MemorySystem` is one kernel's mm: the DRAM page allocator, the pfn -> pgmap
table of device memory, the CPU (the platform's persistence domain), the reverse map
and the pin table, and the processes. :meth:`MemorySystem.spawn` makes a
:class:`Process` with an empty :class:`Mm`.

A process maps memory (``mmap``: anonymous, a device-dax, a physical range, or a file's
:class:`~mm.vma.VmOps`) and then touches it. Every access goes through the page table
and faults when the leaf is missing (:mod:`mm.fault`):

* loads and stores to DRAM pages go to the page allocator's contents;
* loads and stores to pmem go through the CPU's :class:`PersistenceDomain`, exactly as
  the kernel's own stores do: a user store to a DAX mapping is visible at once and
  durable only when the platform's rule says (under ADR, after ``clwb`` + ``sfence``;
  under eADR, at once). ``store(..., nt=True)`` is a non-temporal store (MOVNT);
* a load that consumes poison is a machine check: the pages are unmapped from every
  process that maps them (``memory_failure``) and the consumer gets SIGBUS with
  ``BUS_MCEERR_AR``;
* ``msync`` asks the backing to make the range durable: a DAX file writes back the dirty
  entries' cache lines and flushes; device-dax has no fsync and fails with EINVAL.

::

    p = system.spawn("app"); a = p.mmap(2 MiB, shared=True, backing=DeviceDaxOps(dax))
    p.store(a, b"x" * 8)      2 MiB fault (mm.faults.2m), cached store to pmem, not durable
    p.clwb(a, 8); p.sfence()  durable under ADR
"""

from __future__ import annotations

import bisect
import errno
from typing import Any, Protocol

import attrs

from mm.fault import (
    BUS_ADRERR,
    BUS_MCEERR_AR,
    SIGBUS,
    handle_mm_fault,
)
from mm.memmap import PAGE_SIZE
from mm.page import Page
from mm.page_alloc import DRAM_END_PFN, DRAM_START_PFN, PageAllocator
from mm.pagemap import DevPagemap, DramBudget
from mm.pagetable import SIZE_NAMES, SIZES, Entry, PageTable
from mm.rmap import MapRecord, PinTable, Rmap
from mm.vma import ANONYMOUS, PROT_RW, Prot, Vma, VmOps
from nvdimm.errors import InvalidArgument, MediaError, NvdimmError
from nvdimm.metrics import Metrics
from nvdimm.trace import Trace

#: Where top-down mmap placement starts (below the x86_64 47-bit user limit).
MMAP_TOP = 0x7F00_0000_0000


class NotMapped(NvdimmError):
    """ENOMEM: part of the range is not mapped (msync, mprotect)."""

    errno = errno.ENOMEM


class CpuMemory(Protocol):
    """The CPU side of memory (``nvdimm.platform.persistence.PersistenceDomain``)."""

    def load(self, addr: int, n: int) -> bytes: ...

    def store(self, addr: int, data: bytes | bytearray | memoryview) -> None: ...

    def store_nt(self, addr: int, data: bytes | bytearray | memoryview) -> None: ...

    def writeback(self, addr: int, n: int) -> None: ...

    def fence(self) -> None: ...

    def nvdimm_flush(self) -> None: ...


class PagemapLookup(Protocol):
    """``get_dev_pagemap`` (``mm.pagemap.PagemapTable`` has it)."""

    def lookup(self, pfn: int) -> DevPagemap | None: ...


def _page_round(n: int) -> int:
    return -(-n // PAGE_SIZE) * PAGE_SIZE


@attrs.define(slots=True, eq=False)
class MemorySystem:
    """One kernel's mm. Build it with :meth:`create` from the machine's parts."""

    cpu: CpuMemory
    pages: PageAllocator
    pagemaps: PagemapLookup | None = None
    metrics: Metrics = attrs.field(factory=Metrics)
    trace: Trace = attrs.field(factory=lambda: Trace(on=False))
    rmap: Rmap = attrs.field(factory=Rmap)
    pins: PinTable = attrs.field(factory=PinTable)
    processes: dict[int, Process] = attrs.field(factory=dict)
    _next_pid: int = 1
    _zero_pfn: int | None = None

    @classmethod
    def create(cls, *, dram: DramBudget, cpu: CpuMemory, pagemaps: PagemapLookup | None = None,
               metrics: Metrics | None = None, trace: Trace | None = None,
               dram_start_pfn: int = DRAM_START_PFN,
               dram_end_pfn: int = DRAM_END_PFN) -> MemorySystem:
        metrics = metrics or Metrics()
        trace = trace or Trace(on=False)
        pages = PageAllocator(dram, metrics, trace, dram_start_pfn, dram_end_pfn)
        return cls(cpu, pages, pagemaps, metrics, trace)

    def spawn(self, name: str = "proc") -> Process:
        pid = self._next_pid
        self._next_pid += 1
        proc = Process(Mm(self, pid, name))
        self.processes[pid] = proc
        if self.trace.on:
            self.trace.emit("mm.spawn", pid=pid, comm=name)
        return proc

    # -- pages ----------------------------------------------------------------------------

    @property
    def zero_pfn(self) -> int | None:
        """The zero page's pfn if it has been allocated (None: nothing maps it)."""
        return self._zero_pfn

    def zero_page(self) -> int:
        """The pfn of the shared zero page (ZERO_PAGE), allocated on first use and held
        by the kernel for good: mapped read-only wherever a private mapping reads a
        hole, copied on the first write."""
        pfn = self._zero_pfn
        if pfn is None:
            pfn = self._zero_pfn = self.pages.alloc("zero-page").pfn
        return pfn

    def is_dram(self, pfn: int) -> bool:
        return self.pages.owns(pfn)

    def struct_page(self, pfn: int) -> Page | None:
        """pfn_to_page where there is one: an allocated DRAM page, or a usable struct page
        of device memory (created on first use). None: no struct page."""
        if self.pages.owns(pfn):
            return self.pages.peek(pfn)
        pg = self.pagemaps.lookup(pfn) if self.pagemaps is not None else None
        if pg is None or not pg.memmap.struct_pages or not pg.pfn_valid(pfn):
            return None
        return pg.page(pfn)

    def put_page(self, page: Page) -> None:
        """Drop a reference: a DRAM page is freed at 0, an idle device page goes back to
        its pgmap's owner."""
        if page.pgmap is None:
            self.pages.put(page)
        else:
            page.put()

    def read_phys(self, phys: int, n: int) -> bytes:
        """Bytes at a physical address (within one page for DRAM)."""
        pfn = phys >> 12
        if self.pages.owns(pfn):
            return self.pages.read(pfn, phys & (PAGE_SIZE - 1), n)
        return self.cpu.load(phys, n)

    # -- reverse map ------------------------------------------------------------------------

    def memory_failure(self, pfn: int) -> int:
        """Poison consumed at ``pfn``: unmap it from every process (``memory_failure``
        unmaps the whole leaf: a 2 MiB entry goes whole). Returns leaves unmapped."""
        hits = self.rmap.lookup(pfn)
        for rec, _ in hits:
            rec.mm.zap(rec.addr, rec.addr + rec.size)
        self.metrics.c["mm.memory_failures"] += 1
        if self.trace.on:
            self.trace.emit("mm.memory_failure", pfn=pfn, unmapped=len(hits))
        return len(hits)

    def who_maps(self, pfn: int) -> list[dict[str, Any]]:
        """Every process mapping ``pfn``, with the address and the leaf."""
        out = []
        for rec, addr in self.rmap.lookup(pfn):
            hit = rec.mm.pt.lookup(addr)
            out.append({"pid": rec.mm.pid, "process": rec.mm.name, "address": addr,
                        "entry": SIZE_NAMES[rec.size],
                        "writable": bool(hit and hit[1].writable),
                        "refcounted": rec.ref})
        return sorted(out, key=lambda d: (d["pid"], d["address"]))

    def who_pins(self, pfn: int) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.pins.lookup(pfn)]

    # -- invariants -------------------------------------------------------------------------

    def check_invariants(self) -> list[str]:
        """Violations of: every mapped pfn is in use (no mapped pfn is freed); the page
        tables and the reverse map agree; every pin is counted by its page."""
        bad: list[str] = []
        leaves = 0
        for proc in self.processes.values():
            for base, e in proc.mm.pt:
                leaves += 1
                if not any(r.mm is proc.mm and a == base for r, a in self.rmap.lookup(e.pfn)):
                    bad.append(f"{proc.name}: leaf {base:#x} -> pfn {e.pfn:#x} not in the rmap")
        if leaves != len(self.rmap):
            bad.append(f"{leaves} page-table leaves but {len(self.rmap)} rmap records")
        for pfn, rec in self.rmap.heads():
            if self.pages.owns(pfn):
                if not self.pages.allocated(pfn):
                    bad.append(f"pfn {pfn:#x} is mapped by {rec.mm.name} but free")
                continue
            pg = self.pagemaps.lookup(pfn) if self.pagemaps is not None else None
            if pg is not None and not pg.live:
                bad.append(f"pfn {pfn:#x} is mapped but its pagemap is gone")
            if rec.ref:
                page = self.struct_page(pfn)
                head = folio_of(page)
                if head is None or head.refcount < 1:
                    bad.append(f"pfn {pfn:#x} is mapped with a reference but its struct "
                               "page is idle")
        for pfn, recs in self.pins.items():
            head = folio_of(self.struct_page(pfn))
            if head is None or head.pincount < len(recs) or head.refcount < len(recs):
                bad.append(f"pfn {pfn:#x} has {len(recs)} pin(s) its struct page does not "
                           "count")
        return bad


def folio_of(page: Page | None) -> Page | None:
    """The compound head holding ``page``'s counts (the page itself for a base page)."""
    if page is None:
        return None
    if page.is_tail and page.pgmap is not None and page.head is not None:
        return page.pgmap.page(page.head)
    return page


@attrs.define(slots=True, eq=False)
class Mm:
    """``struct mm_struct``: VMAs sorted by address, and the page table."""

    system: MemorySystem = attrs.field(repr=False)
    pid: int
    name: str
    pt: PageTable = attrs.field(factory=PageTable, repr=False)
    vmas: list[Vma] = attrs.field(factory=list, repr=False)
    _starts: list[int] = attrs.field(factory=list, repr=False)
    _top: int = MMAP_TOP

    # -- VMAs -----------------------------------------------------------------------------

    def find_vma(self, addr: int) -> Vma | None:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self.vmas[i].end:
            return self.vmas[i]
        return None

    def vmas_in(self, start: int, end: int) -> list[Vma]:
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        out = []
        for v in self.vmas[i:]:
            if v.start >= end:
                break
            if v.end > start:
                out.append(v)
        return out

    def _insert_vma(self, vma: Vma) -> None:
        i = bisect.bisect(self._starts, vma.start)
        self._starts.insert(i, vma.start)
        self.vmas.insert(i, vma)

    def _remove_vma(self, vma: Vma) -> None:
        i = self.vmas.index(vma)
        del self.vmas[i]
        del self._starts[i]

    def mmap(self, length: int, prot: Prot = PROT_RW, *, shared: bool = False,
             backing: Any = ANONYMOUS, offset: int = 0, addr: int | None = None,
             max_fault: int = SIZES[0]) -> int:
        """Map ``length`` bytes of ``backing`` from ``offset``; returns the address.
        ``addr`` places it there (MAP_FIXED: whatever was mapped there goes);
        ``max_fault`` caps the entry size faults may install (a machine or a mapping
        without PUD or PMD leaves). Raises InvalidArgument (EINVAL) for what mmap
        refuses, before anything changes."""
        if length <= 0:
            raise InvalidArgument(f"mmap of {length} bytes")
        length = _page_round(length)
        if offset < 0 or offset % PAGE_SIZE:
            raise InvalidArgument(f"mmap offset {offset:#x} is not page aligned")
        if max_fault not in SIZES:
            raise InvalidArgument(f"max_fault must be 4 KiB, 2 MiB or 1 GiB, not {max_fault:#x}")
        if addr is not None and (addr % PAGE_SIZE or addr <= 0 or addr + length > MMAP_TOP):
            raise InvalidArgument(f"mmap address {addr:#x} is not a page-aligned user address")
        ops: VmOps | None = None
        if backing is not ANONYMOUS:
            ops = backing
            ops.check_mmap(offset=offset, length=length, shared=shared, addr=addr)
        if addr is None:
            addr = self._unmapped_area(length, ops, offset)
        else:
            self._check_unmap(addr, addr + length)
            self.munmap(addr, length)
        vma = Vma(self, addr, addr + length, Prot(prot), shared, backing, offset, max_fault)
        self._insert_vma(vma)
        if ops is not None:
            ops.vma_opened(vma)
        self.system.metrics.c["mm.mmaps"] += 1
        if self.system.trace.on:
            self.system.trace.emit("mm.mmap", pid=self.pid, addr=addr, len=length,
                                   backing=vma.backing_name, prot=vma.prot_text)
        return addr

    def _unmapped_area(self, length: int, ops: VmOps | None, offset: int) -> int:
        align = PAGE_SIZE if ops is None else max(PAGE_SIZE, ops.align)
        colour = 0 if ops is None else ops.colour(offset) % align
        top = self._top
        while True:
            a = top - length
            a -= (a - colour) % align
            if a <= 0:
                raise InvalidArgument(f"no room for {length:#x} bytes in {self.name}'s "
                                      "address space")
            clash = self.vmas_in(a, a + length)
            if not clash:
                self._top = a
                return a
            top = min(v.start for v in clash)

    def _check_unmap(self, start: int, end: int) -> None:
        for v in self.vmas_in(start, end):
            for cut in (start, end):
                if v.start < cut < v.end and not v.anonymous and not v.ops.may_split(cut):
                    raise InvalidArgument(f"{v.backing_name}: cannot split its mapping at "
                                          f"{cut:#x}")

    def munmap(self, addr: int, length: int) -> None:
        """Unmap ``[addr, addr + length)``: leaves zapped (their page references dropped),
        VMAs trimmed or split. EINVAL for a bad range or a split the backing refuses."""
        if addr % PAGE_SIZE or length <= 0:
            raise InvalidArgument(f"munmap [{addr:#x}, +{length:#x}): bad range")
        end = addr + _page_round(length)
        self._check_unmap(addr, end)
        hit = self.vmas_in(addr, end)
        if not hit:
            return
        self.zap(addr, end)
        for v in hit:
            self._remove_vma(v)
            pieces = []
            if v.start < addr:
                pieces.append(attrs.evolve(v, end=addr))
            if end < v.end:
                pieces.append(attrs.evolve(v, start=end, offset=v.offset_of(end)))
            for piece in pieces:
                self._insert_vma(piece)
                if not piece.anonymous:
                    piece.ops.vma_opened(piece)
            if not v.anonymous:
                v.ops.vma_closed(v)
        self.system.metrics.c["mm.munmaps"] += 1
        if self.system.trace.on:
            self.system.trace.emit("mm.munmap", pid=self.pid, addr=addr, len=end - addr)

    def exit(self) -> None:
        """Tear the address space down (exit_mmap)."""
        for v in list(self.vmas):
            self.munmap(v.start, v.end - v.start)

    # -- leaves ---------------------------------------------------------------------------

    def install(self, base: int, e: Entry, vma: Vma, *, ref_taken: bool = False) -> None:
        """Put a leaf in the page table: take a reference on its struct page (unless the
        caller hands one over, or the mapping is VM_PFNMAP), record it in the rmap."""
        self.pt.insert(base, e)  # Busy: nothing changed
        page: Page | None = None
        ref = ref_taken
        if not ref_taken and not vma.pfnmap:
            page = self.system.struct_page(e.pfn)
            if page is not None:
                page.get()
                ref = True
        self.system.rmap.add(e.pfn, MapRecord(self, base, e.size, ref))
        if page is not None and page.pgmap is not None and page.mapping is None:
            page.mapping = vma.backing  # dax_set_mapping: the device's address_space
            page.index = vma.offset_of(base) >> 12

    def zap(self, start: int, end: int) -> int:
        """Remove the leaves overlapping ``[start, end)`` and drop their references."""
        gone = self.pt.zap(start, end)
        system = self.system
        for base, e in gone:
            rec = system.rmap.remove(e.pfn, self, base)
            if rec.ref:
                page = system.struct_page(e.pfn)
                if page is not None:
                    system.put_page(page)
            v = self.find_vma(base)
            if v is not None and not v.anonymous:
                v.ops.leaf_gone(v, base, e.size, e.pfn, e.dirty)
        return len(gone)

    def dax_writeback(self, start: int, end: int) -> int:
        """Write back the cache lines of every dirty pmem leaf in ``[start, end)`` (the
        whole leaf, as ``dax_writeback_one``), then fence; the leaves become clean.
        Returns bytes written back."""
        system = self.system
        done = 0
        for _, e in self.pt.entries(start, end):
            if e.dirty and not system.is_dram(e.pfn):
                system.cpu.writeback(e.pfn << 12, e.size)
                e.dirty = False
                done += e.size
        system.cpu.fence()
        system.metrics.c["mm.dax_writeback_bytes"] += done
        return done

    def msync(self, addr: int, length: int) -> None:
        """msync(MS_SYNC): each shared file/device mapping in the range is made durable
        by its backing. EINVAL for an unaligned address (or a backing without fsync),
        ENOMEM when part of the range is not mapped (the rest is still synced)."""
        if addr % PAGE_SIZE or length < 0:
            raise InvalidArgument(f"msync at {addr:#x}: address not page aligned")
        end = addr + _page_round(length)
        covered = addr
        for v in self.vmas_in(addr, end):
            if v.start > covered:
                break
            covered = v.end
        for v in self.vmas_in(addr, end):
            if v.shared and not v.anonymous:
                v.ops.fsync(v, max(addr, v.start), min(end, v.end))
        self.system.metrics.c["mm.msyncs"] += 1
        if covered < end:
            raise NotMapped(f"msync [{addr:#x}, {end:#x}): {covered:#x} is not mapped")


@attrs.define(slots=True, eq=False)
class Process:
    """A process: its address space and the accesses it makes."""

    mm: Mm

    @property
    def pid(self) -> int:
        return self.mm.pid

    @property
    def name(self) -> str:
        return self.mm.name

    @property
    def system(self) -> MemorySystem:
        return self.mm.system

    # -- the address space -------------------------------------------------------------------

    def mmap(self, length: int, prot: Prot = PROT_RW, *, shared: bool = False,
             backing: Any = ANONYMOUS, offset: int = 0, addr: int | None = None,
             max_fault: int = SIZES[0]) -> int:
        return self.mm.mmap(length, prot, shared=shared, backing=backing, offset=offset,
                            addr=addr, max_fault=max_fault)

    def munmap(self, addr: int, length: int) -> None:
        self.mm.munmap(addr, length)

    def msync(self, addr: int, length: int) -> None:
        self.mm.msync(addr, length)

    def exit(self) -> None:
        self.mm.exit()
        self.system.processes.pop(self.pid, None)

    # -- accesses ----------------------------------------------------------------------------

    def _leaf(self, addr: int, write: bool) -> tuple[int, Entry]:
        hit = self.mm.pt.lookup(addr)
        if hit is None or (write and not hit[1].writable):
            hit = handle_mm_fault(self.mm, addr, write=write)
        return hit

    def load(self, addr: int, n: int) -> bytes:
        """Read ``n`` bytes at ``addr`` (faulting pages in)."""
        if n < 0:
            raise InvalidArgument(f"load of {n} bytes")
        system = self.system
        parts: list[bytes] = []
        end = addr + n
        a = addr
        while a < end:
            base, e = self._leaf(a, False)
            take = min(end, base + e.size) - a
            phys = (e.pfn << 12) + a - base
            if system.is_dram(e.pfn):
                parts.append(system.pages.read(e.pfn, phys & (PAGE_SIZE - 1), take))
            else:
                parts.append(self._pmem_load(a, phys, take, e))
            a += take
        system.metrics.c["mm.user_bytes_loaded"] += n
        return b"".join(parts)

    def _pmem_load(self, addr: int, phys: int, n: int, e: Entry) -> bytes:
        system = self.system
        c = system.metrics.c
        c["mm.pmem_loads"] += 1  # for the cost model: loads that reach pmem
        c["mm.pmem_bytes_loaded"] += n
        try:
            return system.cpu.load(phys, n)
        except MediaError as err:
            bad = err.offset if phys <= err.offset < phys + n else phys
            vaddr = addr + bad - phys
            system.memory_failure(bad >> 12)
            raise SIGBUS(f"{self.name}: machine check consuming poison at {vaddr:#x} "
                         f"(physical {bad:#x})", code=BUS_MCEERR_AR, addr=vaddr) from None
        except InvalidArgument:
            raise SIGBUS(f"{self.name}: no memory behind physical {phys:#x}",
                         code=BUS_ADRERR, addr=addr) from None

    def store(self, addr: int, data: bytes | bytearray | memoryview, *, nt: bool = False) -> None:
        """Store ``data`` at ``addr`` (faulting pages in): cached, or non-temporal with
        ``nt``. To pmem through the CPU's persistence domain."""
        system = self.system
        mv = memoryview(data)
        n = len(mv)
        end = addr + n
        a = addr
        while a < end:
            base, e = self._leaf(a, True)
            take = min(end, base + e.size) - a
            phys = (e.pfn << 12) + a - base
            chunk = mv[a - addr:a - addr + take]
            e.dirty = True
            if system.is_dram(e.pfn):
                system.pages.write(e.pfn, phys & (PAGE_SIZE - 1), chunk)
            else:
                try:
                    if nt:
                        system.cpu.store_nt(phys, chunk)
                    else:
                        system.cpu.store(phys, chunk)
                except InvalidArgument:
                    raise SIGBUS(f"{self.name}: no memory behind physical {phys:#x}",
                                 code=BUS_ADRERR, addr=a) from None
            a += take
        system.metrics.c["mm.user_bytes_stored"] += n

    def clwb(self, addr: int, n: int) -> None:
        """CLWB every cache line of ``[addr, addr + n)`` (a no-op on DRAM lines)."""
        system = self.system
        end = addr + n
        a = addr
        while a < end:
            base, e = self._leaf(a, False)
            take = min(end, base + e.size) - a
            if not system.is_dram(e.pfn):
                system.cpu.writeback((e.pfn << 12) + a - base, take)
            a += take

    def sfence(self) -> None:
        self.system.cpu.fence()

    def persist(self, addr: int, n: int) -> None:
        """libpmem's pmem_persist: clwb the range, then sfence."""
        self.clwb(addr, n)
        self.sfence()

    def translate(self, addr: int) -> int | None:
        """The physical address behind ``addr`` now (no fault)."""
        return self.mm.pt.translate(addr)
