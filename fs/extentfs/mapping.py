"""mmap of an extentfs file: the :class:`~mm.vma.VmOps` a file's VMAs carry.

* DAX file: a fault maps the pmem block itself (``dax_iomap_fault``). A 2 MiB entry
  when the fault may install one, the 2 MiB of file lies inside ``i_size``, is one extent
  and starts on a 2 MiB physical boundary; otherwise 4 KiB. A read of a hole maps the
  shared zero page, read-only; a write fault on a hole allocates zeroed blocks (a whole
  aligned 2 MiB when a 2 MiB entry could be used), and a store to a zero page comes
  back through :meth:`FileMapping.page_mkwrite`, which sends it round again as a write
  fault. When a hole gets blocks, the zero pages mapped over it are unmapped. No struct
  pages behind the pmem (``memmap=none``, DAX over BTT): the mapping is VM_PFNMAP-like
  and get_user_pages fails with EFAULT, so nothing can DMA to it.
* Buffered file: a fault maps the page cache page (DRAM), read-only on a read fault;
  the first store calls :meth:`FileMapping.page_mkwrite`, which dirties the page.
  After writeback the fs unmaps the file's leaves so the next store faults and dirties
  the page again (the model's page_mkclean).
* A private mapping copies on write (the zero page over a hole), never touching the
  file.

Every leaf is recorded on the inode (:class:`~fs.extentfs.fs.Leaf`) so truncate can
unmap it, fsync can write back its dirty lines, and the DAX provider's handle (under a
lifetime-tracking ``direct_access`` or ``btt_remap`` variant) is released when the leaf
goes (:meth:`FileMapping.leaf_gone`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import attrs

from fs.extentfs.fs import PMD_BLOCKS, ExtentFs, InodeState, Leaf
from fs.extentfs.layout import BLOCK
from mm.fault import BUS_ADRERR, BUS_MCEERR_AR, SIGBUS, HwPoisoned
from mm.pagetable import PMD_SIZE, PTE_SIZE
from nvdimm.errors import InvalidArgument, NvdimmError

if TYPE_CHECKING:
    from mm.vma import Vma


@attrs.define(slots=True, eq=False)
class FileMapping:
    fs: ExtentFs
    st: InodeState
    kind: str = "file"

    def __str__(self) -> str:
        return self.name

    @property
    def name(self) -> str:
        return f"{self.fs.name}:ino{self.st.ino}"

    @property
    def align(self) -> int:
        return PMD_SIZE if self.st.dax else PTE_SIZE

    @property
    def pfnmap(self) -> bool:
        return self.st.dax and not self.fs.dax_has_pages

    @property
    def fsdax(self) -> bool:
        return self.st.dax

    def check_mmap(self, *, offset: int, length: int, shared: bool,
                   addr: int | None) -> None:
        if not self.st.inode.is_reg:
            raise InvalidArgument(f"{self.name}: only regular files can be mapped")

    def colour(self, offset: int) -> int:
        return offset

    def may_split(self, addr: int) -> bool:
        return True

    # -- faults ----------------------------------------------------------------------------

    def fault(self, vma: Vma, addr: int, size: int, write: bool) -> tuple[int, int]:
        st, fs = self.st, self.fs
        off = vma.offset_of(addr)
        eof = -(-st.inode.size // BLOCK) * BLOCK
        if off >= eof:
            raise SIGBUS(f"{self.name}: {addr:#x} (file offset {off:#x}) is past the end of "
                         f"the file ({st.inode.size} bytes)", code=BUS_ADRERR, addr=addr)
        try:
            if st.dax:
                pfn, got, lblk, hold = self._dax_fault(vma, addr, size, write)
            else:
                pfn, got, lblk, hold = self._page_fault(vma, addr, write)
        except SIGBUS:
            raise
        except HwPoisoned as e:  # the provider refuses a known-bad block
            fs._count("fs.fault_errors")
            raise SIGBUS(f"{self.name}: fault at {addr:#x}: {e.message}",
                         code=BUS_MCEERR_AR, addr=addr) from None
        except NvdimmError as e:  # ENOSPC or EIO while filling a hole: VM_FAULT_SIGBUS
            fs._count("fs.fault_errors")
            raise SIGBUS(f"{self.name}: fault at {addr:#x}: {e.message}", code=BUS_ADRERR,
                         addr=addr) from None
        base = addr & ~(got - 1)
        key = (vma.mm.pid, base)
        old = st.leaves.pop(key, None)
        if old is not None and old.hold is not None:
            fs.provider.release(old.hold)
        st.leaves[key] = Leaf(vma.mm, base, got, lblk, hold)
        fs._count("fs.dax.faults" if st.dax else "fs.page_faults")
        return pfn, got

    def _dax_fault(self, vma: Vma, addr: int, size: int,
                   write: bool) -> tuple[int, int, int, object]:
        st, fs = self.st, self.fs
        if size >= PMD_SIZE and vma.shared:
            base = addr & ~(PMD_SIZE - 1)
            boff = vma.offset_of(base)
            b0 = boff // BLOCK
            if boff % PMD_SIZE == 0 and boff + PMD_SIZE <= st.inode.size:
                pblk, run = fs.bmap(st, b0)
                if pblk is None and write and (run == 0 or run >= PMD_BLOCKS):
                    fs._begin()
                    fs.allocate_zeroed(st, b0, PMD_BLOCKS)
                    pblk, run = fs.bmap(st, b0)
                pfn = fs.pfn_of_block(pblk) if pblk is not None else None
                if pblk is not None and run >= PMD_BLOCKS and pfn is not None \
                        and pfn % PMD_BLOCKS == 0:
                    hold = fs.provider.map(pblk * BLOCK, PMD_SIZE, self)
                    if hold.length >= PMD_SIZE:
                        return hold.pfn, PMD_SIZE, b0, hold
                    fs.provider.release(hold)
                fs._count("fs.dax.pmd_fallbacks")
        lblk = vma.offset_of(addr) // BLOCK
        pblk, _ = fs.bmap(st, lblk)
        if pblk is None and not (write and vma.shared):
            # a read of a hole: the zero page, read-only. A store through a shared
            # mapping comes back through page_mkwrite and gets a block; through a
            # private one it copies the zero page (COW) and the file is never touched.
            return vma.mm.system.zero_page(), PTE_SIZE, lblk, None
        if pblk is None:
            fs._begin()
            fs.allocate_zeroed(st, lblk, 1)
            pblk, _ = fs.bmap(st, lblk)
            assert pblk is not None
        hold = fs.provider.map(pblk * BLOCK, BLOCK, self)
        return hold.pfn, PTE_SIZE, lblk, hold

    def _page_fault(self, vma: Vma, addr: int, write: bool) -> tuple[int, int, int, object]:
        st = self.st
        assert st.cache is not None
        lblk = vma.offset_of(addr) // BLOCK
        page = st.cache.get_page(lblk)
        if write and vma.shared:
            self._dirty_page(lblk)  # a read fault maps it read-only: clean until stored to
        return page.pfn, PTE_SIZE, lblk, None

    def _dirty_page(self, lblk: int) -> None:
        st = self.st
        assert st.cache is not None
        st.cache.set_dirty(lblk)
        self.fs._mark(st, datasync=False)

    # -- the rest of the VmOps contract --------------------------------------------------

    #: Read faults map read-only; the first store calls page_mkwrite (the page cache
    #: dirties the page; DAX turns a zero page over a hole into a block).
    writenotify: ClassVar[bool] = True

    def page_mkwrite(self, vma: Vma, addr: int) -> bool:
        lblk = vma.offset_of(addr) // BLOCK
        if self.st.dax:
            if self.fs.bmap(self.st, lblk)[0] is None:
                return False  # the zero page: fault again as a write, for a block
            self.fs._count("fs.dax.mkwrite")
            return True
        self._dirty_page(lblk)
        return True

    def fsync(self, vma: Vma, start: int, end: int) -> None:
        """msync(MS_SYNC) is vfs_fsync_range on the file: the whole fsync here."""
        self.fs.fsync(self.st.ino)

    def vma_opened(self, vma: Vma) -> None:
        self.st.vmas += 1

    def vma_closed(self, vma: Vma) -> None:
        self.st.vmas -= 1
        if self.st.inode.nlink == 0 and self.fs.mounted:
            self.fs._maybe_evict(self.st)

    def leaf_gone(self, vma: Vma, base: int, size: int, pfn: int, dirty: bool) -> None:
        if dirty and self.st.dax:
            self.st.unsynced.append((pfn, size))  # the next fsync writes it back
        leaf = self.st.leaves.pop((vma.mm.pid, base), None)
        if leaf is not None and leaf.hold is not None and self.fs.provider is not None:
            self.fs.provider.release(leaf.hold)

    # -- the widened contract's holder side ------------------------------------------------

    def on_remap(self, offset: int, length: int) -> None:
        """The provider is about to move device bytes ``[offset, +length)``: unmap every
        leaf of this file over them (the handles are released as the leaves go)."""
        n = self.fs.unmap_device_range(offset, length, [self.st])
        if n:
            self.fs._count("fs.dax.remap_unmaps", n)

    def on_error(self, offset: int, length: int) -> None:
        """Media under the range failed: unmap it, so the next access faults and sees
        the error instead of reading poison."""
        self.on_remap(offset, length)
        self.fs._count("fs.dax.error_notices")
