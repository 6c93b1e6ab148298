"""VMAs and what backs them: anonymous memory, or a :class:`VmOps` (file, device, pfns).

A :class:`Vma` is ``[start, end)`` of one address space with a protection, shared or
private, and a backing. Anonymous memory is :data:`ANONYMOUS`; everything else is a
*vm operations* object (``vm_operations_struct`` plus the file operations that matter
to mmap), the plug the filesystem's DAX files use later:

* ``fault(vma, addr, size, write) -> (pfn, size)``: the pfn to map for a fault at
  ``addr``; ``size`` is the largest entry the core offers, the answer may be smaller
  (fallback); raise :class:`~mm.fault.SIGBUS` when nothing can back the address;
* ``check_mmap`` (refuse a mapping, EINVAL), ``colour`` / ``align`` (where
  ``get_unmapped_area`` puts it so huge entries line up), ``may_split`` (where munmap
  may cut it), ``fsync`` (msync's MS_SYNC);
* ``pfnmap``: the pages have no struct page (``VM_PFNMAP``): loads and stores work,
  get_user_pages fails with EFAULT; ``fsdax``: long-term pins are refused (EOPNOTSUPP).

Two built-in backings: :class:`DeviceDaxOps` (a /dev/daxR.M, its fault rules decided by
the device itself) and :class:`PfnRangeOps` (a physical range mapped directly, as a
driver's mmap of its own memory, e.g. an fsdax namespace's data area).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import attrs

from mm.fault import BUS_ADRERR, SIGBUS
from mm.pagetable import PMD_SIZE, PTE_SIZE, PUD_SIZE, SIZES
from nvdimm.errors import InvalidArgument

if TYPE_CHECKING:
    from mm.process import Mm


class Prot(enum.IntFlag):
    NONE = 0
    READ = 1
    WRITE = 2


PROT_NONE = Prot.NONE
PROT_READ = Prot.READ
PROT_WRITE = Prot.WRITE
PROT_RW = Prot.READ | Prot.WRITE


@attrs.frozen(slots=True)
class Anonymous:
    """Anonymous memory: zeroed DRAM pages on first touch."""

    kind: str = "anon"
    name: str = "[anon]"


ANONYMOUS = Anonymous()


class VmOps(Protocol):
    """What a non-anonymous mapping is backed by (see the module docstring)."""

    @property
    def kind(self) -> str:
        """``file``, ``device`` or ``pfn``."""
        ...

    @property
    def name(self) -> str: ...

    @property
    def align(self) -> int:
        """The alignment ``get_unmapped_area`` gives a mapping of this object."""
        ...

    @property
    def pfnmap(self) -> bool:
        """No struct pages behind the pfns (``VM_PFNMAP``): GUP fails with EFAULT."""
        ...

    @property
    def fsdax(self) -> bool:
        """A filesystem-DAX file: FOLL_LONGTERM pins are refused (EOPNOTSUPP)."""
        ...

    def check_mmap(self, *, offset: int, length: int, shared: bool,
                   addr: int | None) -> None:
        """Refuse a mapping (InvalidArgument: EINVAL)."""
        ...

    def colour(self, offset: int) -> int:
        """The address a mapping at ``offset`` should be congruent to, modulo
        :attr:`align` (Linux's ``thp_get_unmapped_area`` uses the file offset)."""
        ...

    def may_split(self, addr: int) -> bool:
        """Whether munmap may cut a mapping at ``addr``."""
        ...

    def fault(self, vma: Vma, addr: int, size: int, write: bool) -> tuple[int, int]:
        """``(pfn, size)`` to map at ``addr & ~(size - 1)``; ``size`` no larger than
        offered; raise SIGBUS when nothing backs ``addr``."""
        ...

    def fsync(self, vma: Vma, start: int, end: int) -> None:
        """msync(MS_SYNC) of ``[start, end)``: make stores through the mapping durable."""
        ...

    @property
    def writenotify(self) -> bool:
        """The backing wants to hear of the first store to a page it mapped
        (``vma_wants_writenotify``): read faults are mapped read-only and a store calls
        :meth:`page_mkwrite` first."""
        ...

    def page_mkwrite(self, vma: Vma, addr: int) -> bool:
        """A store to a read-only leaf of a shared mapping: True lets it through (the
        leaf becomes writable); False asks the core to drop the leaf and fault again as
        a write (a zero page over a hole becomes a real block)."""
        ...

    def vma_opened(self, vma: Vma) -> None:
        """A VMA now maps this backing (mmap, or a piece left by a split): a file stays
        alive while mapped (``vm_ops->open``)."""
        ...

    def vma_closed(self, vma: Vma) -> None:
        """A VMA of this backing went (munmap, exit, or replaced by its pieces)."""
        ...

    def leaf_gone(self, vma: Vma, base: int, size: int, pfn: int, dirty: bool) -> None:
        """A leaf this backing's fault gave was removed from the page table (munmap, a
        truncate's unmap, memory failure): a filesystem drops what it held for it, and
        remembers a ``dirty`` one for its next fsync (the DAX entry stays dirty in the
        file's page cache xarray after the mapping goes)."""
        ...


def dax_fsync(vma: Vma, start: int, end: int) -> None:
    """msync of a mapping of pmem: write back the dirty entries' cache lines, then flush
    (``dax_writeback_mapping_range`` then the block device flush)."""
    vma.mm.dax_writeback(start, end)
    vma.mm.system.cpu.nvdimm_flush()


class NoLifetimeHooks:
    """For backings that keep nothing per VMA or per leaf and want no write notice: the
    lifetime hooks of :class:`VmOps` do nothing, and leaves map writable at once."""

    __slots__ = ()
    writenotify: ClassVar[bool] = False

    def page_mkwrite(self, vma: Vma, addr: int) -> bool:
        return True

    def vma_opened(self, vma: Vma) -> None:
        return None

    def vma_closed(self, vma: Vma) -> None:
        return None

    def leaf_gone(self, vma: Vma, base: int, size: int, pfn: int, dirty: bool) -> None:
        return None


@attrs.define(slots=True, eq=False)
class BaseVmOps(NoLifetimeHooks):
    """Defaults for a file-like backing; subclasses override ``fault`` (and more)."""

    name: str = "file"
    kind: str = "file"
    align: int = PMD_SIZE
    pfnmap: bool = False
    fsdax: bool = False

    def __str__(self) -> str:
        return self.name

    def check_mmap(self, *, offset: int, length: int, shared: bool,
                   addr: int | None) -> None:
        return None

    def colour(self, offset: int) -> int:
        return offset

    def may_split(self, addr: int) -> bool:
        return True

    def fault(self, vma: Vma, addr: int, size: int, write: bool) -> tuple[int, int]:
        raise SIGBUS(f"{self.name}: no fault handler", code=BUS_ADRERR, addr=addr)

    def fsync(self, vma: Vma, start: int, end: int) -> None:
        dax_fsync(vma, start, end)



@attrs.define(slots=True, eq=False)
class Vma:
    """``[start, end)`` of ``mm``, mapping ``backing`` from byte ``offset``."""

    mm: Mm = attrs.field(repr=False)
    start: int
    end: int
    prot: Prot
    shared: bool
    backing: Any  # ANONYMOUS or a VmOps
    offset: int = 0
    max_fault: int = PUD_SIZE  # the largest entry a fault may install here

    @property
    def anonymous(self) -> bool:
        return isinstance(self.backing, Anonymous)

    @property
    def ops(self) -> VmOps:
        if isinstance(self.backing, Anonymous):
            raise InvalidArgument("anonymous memory has no vm operations")
        ops: VmOps = self.backing
        return ops

    @property
    def kind(self) -> str:
        return str(self.backing.kind)

    @property
    def backing_name(self) -> str:
        return str(self.backing.name)

    @property
    def readable(self) -> bool:
        return bool(self.prot & (Prot.READ | Prot.WRITE))  # x86: writable implies readable

    @property
    def writable(self) -> bool:
        return bool(self.prot & Prot.WRITE)

    @property
    def pfnmap(self) -> bool:
        return not self.anonymous and self.ops.pfnmap

    @property
    def prot_text(self) -> str:
        r = "r" if self.prot & Prot.READ else "-"
        w = "w" if self.prot & Prot.WRITE else "-"
        return f"{r}{w}{'s' if self.shared else 'p'}"

    def offset_of(self, addr: int) -> int:
        """The backing offset of ``addr``."""
        return self.offset + addr - self.start

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "prot": self.prot_text,
                "backing": self.backing_name, "kind": self.kind, "offset": self.offset}


# -- device-dax ------------------------------------------------------------------------------


class DaxCharDevice(Protocol):
    """What mm needs of a device-dax instance (``drivers.dax.DaxDevice`` has it)."""

    @property
    def name(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def align(self) -> int: ...

    @property
    def pgmap(self) -> Any: ...

    def check_mmap(self, *, offset: int, length: int, shared: bool = True,
                   addr: int | None = None) -> None: ...

    def fault(self, *, offset: int, size: int, vma_start: int | None = None,
              vma_end: int | None = None, address: int | None = None) -> Any: ...

    def pfn_of(self, offset: int) -> int: ...


@attrs.define(slots=True, eq=False, repr=False)
class DeviceDaxOps(NoLifetimeHooks):
    """A /dev/daxR.M mapping (``drivers/dax/device.c``): shared only, aligned, faults at
    the device's alignment only; no fsync (msync MS_SYNC fails with EINVAL: the device
    has no fsync file operation), user space flushes with clwb + sfence."""

    dev: DaxCharDevice = attrs.field(repr=False)
    kind: str = "device"
    fsdax: bool = False

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"DeviceDaxOps({self.name})"

    @property
    def name(self) -> str:
        return self.dev.name

    @property
    def align(self) -> int:
        return self.dev.align

    @property
    def pfnmap(self) -> bool:
        return not self.dev.pgmap.memmap.struct_pages

    def check_mmap(self, *, offset: int, length: int, shared: bool,
                   addr: int | None) -> None:
        self.dev.check_mmap(offset=offset, length=length, shared=shared, addr=addr)

    def colour(self, offset: int) -> int:
        return offset

    def may_split(self, addr: int) -> bool:
        return addr % self.dev.align == 0  # dev_dax_may_split

    def fault(self, vma: Vma, addr: int, size: int, write: bool) -> tuple[int, int]:
        offset = vma.offset_of(addr)
        for s in SIZES:
            if s > size:
                continue
            verdict = self.dev.fault(offset=offset, size=s, vma_start=vma.start,
                                     vma_end=vma.end, address=addr)
            answer = getattr(verdict, "value", verdict)
            if answer == "inserted":
                return self.dev.pfn_of(offset & ~(s - 1)), s
            if answer == "sigbus":
                raise SIGBUS(f"{self.name}: a {s >> 10} KiB fault at {addr:#x} (device "
                             f"offset {offset:#x}, align {self.dev.align >> 10} KiB)",
                             code=BUS_ADRERR, addr=addr)
        raise SIGBUS(f"{self.name}: no entry size fits at {addr:#x}", code=BUS_ADRERR,
                     addr=addr)

    def fsync(self, vma: Vma, start: int, end: int) -> None:
        raise InvalidArgument(f"{self.name}: device-dax has no fsync (msync MS_SYNC: "
                              "EINVAL); flush with clwb and sfence")



# -- a physical range ------------------------------------------------------------------------


@attrs.define(slots=True, eq=False)
class PfnRangeOps(NoLifetimeHooks):
    """``npages`` pages of physical memory from ``start_pfn`` mapped directly (a driver's
    mmap of its own memory with ``vmf_insert_mixed``/``remap_pfn_range``). ``mixed``:
    struct pages are used where they exist (``VM_MIXEDMAP``); False: never
    (``VM_PFNMAP``, GUP fails with EFAULT). Entries are the largest the physical
    alignment allows. msync writes back dirty lines and flushes, as a DAX file's fsync."""

    start_pfn: int
    npages: int
    name: str = "pfn-range"
    mixed: bool = True
    fsdax: bool = False
    kind: str = "pfn"
    align: int = PMD_SIZE

    def __str__(self) -> str:
        return self.name

    @property
    def pfnmap(self) -> bool:
        return not self.mixed

    @property
    def start(self) -> int:
        return self.start_pfn << 12

    @property
    def size(self) -> int:
        return self.npages << 12

    def check_mmap(self, *, offset: int, length: int, shared: bool,
                   addr: int | None) -> None:
        if offset < 0 or offset % PTE_SIZE:
            raise InvalidArgument(f"{self.name}: offset {offset:#x} is not page aligned")

    def colour(self, offset: int) -> int:
        return self.start + offset

    def may_split(self, addr: int) -> bool:
        return True

    def fault(self, vma: Vma, addr: int, size: int, write: bool) -> tuple[int, int]:
        if vma.offset_of(addr) >= self.size:
            raise SIGBUS(f"{self.name}: {addr:#x} is beyond the {self.size:#x}-byte range",
                         code=BUS_ADRERR, addr=addr)
        end = self.start + self.size
        for s in SIZES:
            if s > size:
                continue
            base = addr & ~(s - 1)
            phys = self.start + vma.offset_of(base)
            if phys % s == 0 and phys >= self.start and phys + s <= end:
                return phys >> 12, s
        raise SIGBUS(f"{self.name}: nothing maps {addr:#x}", code=BUS_ADRERR, addr=addr)

    def fsync(self, vma: Vma, start: int, end: int) -> None:
        dax_fsync(vma, start, end)

