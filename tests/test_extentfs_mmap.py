"""mmap of extentfs files: DAX faults map pmem (2 MiB where they can), buffered faults
map page-cache pages; truncate and punch-hole against mapped and pinned pages."""

from __future__ import annotations

import pytest

from fs.extentfs.layout import BLOCK
from mm.fault import SIGBUS, BadAddress
from mm.gup import pin_user_pages, unpin_user_pages
from nvdimm.errors import Busy, NotSupported
from nvdimm.platform.crash import KeepNothing
from nvdimm.units import MiB
from tests.fs_helpers import fs_machine, remount

TWO_M = 2 * MiB


def test_dax_mapping_of_an_aligned_file_faults_in_2mib_entries() -> None:
    m, _, fs = fs_machine(tracking=False)
    p = m.mm.spawn("app")
    with m.vfs.open("/mnt/f", "w+") as f:
        f.truncate(8 * MiB)
        a = f.mmap(p, 8 * MiB)
        for off in range(0, 8 * MiB, BLOCK):
            p.store(a + off, b"z")
        c = m.metrics.c
        assert c["mm.faults.2m"] == 4 and c["mm.faults.4k"] == 0
        assert f.pread(1, 5 * MiB) == b"z"
        # the 2 MiB leaves map the file's blocks: no copy, the pmem itself
        pfn = p.translate(a) >> 12  # type: ignore[operator]
        pblk, _ = fs.bmap(fs.iget(f.ino), 0)
        assert pfn == fs.pfn_of_block(pblk)  # type: ignore[arg-type]
        p.munmap(a, 8 * MiB)


def test_dax_mapping_falls_back_to_4k_past_eof_of_a_partial_2mib() -> None:
    m, _, _ = fs_machine(tracking=False)
    p = m.mm.spawn("app")
    with m.vfs.open("/mnt/f", "w+") as f:
        f.truncate(TWO_M + 3 * BLOCK)
        a = f.mmap(p, 2 * TWO_M)
        p.store(a + TWO_M + BLOCK, b"t")
        assert m.metrics.c["mm.faults.4k"] == 1 and m.metrics.c["mm.faults.2m"] == 0
        with pytest.raises(SIGBUS):
            p.load(a + TWO_M + 3 * BLOCK, 1)  # mapped, but past EOF
        p.munmap(a, 2 * TWO_M)


def test_buffered_mapping_maps_page_cache_pages_and_msync_writes_them_back() -> None:
    m, name, _fs = fs_machine(dax="never")
    p = m.mm.spawn("app")
    with m.vfs.open("/mnt/f", "w+") as f:
        f.write(bytes(3 * BLOCK))
        f.fsync()
        a = f.mmap(p, 3 * BLOCK)
        p.store(a + BLOCK, b"mapped")
        assert m.mm.is_dram(p.translate(a + BLOCK) >> 12)  # type: ignore[operator]
        assert f.pread(6, BLOCK) == b"mapped"  # one page: the mapping and read(2) agree
        p.msync(a, 3 * BLOCK)
        p.store(a + 2 * BLOCK, b"again")  # after writeback, a store dirties the page anew
        p.msync(a, 3 * BLOCK)
        p.munmap(a, 3 * BLOCK)
    m.crash(KeepNothing())
    remount(m, name, dax="never")
    with m.vfs.open("/mnt/f") as f:
        assert f.pread(6, BLOCK) == b"mapped" and f.pread(5, 2 * BLOCK) == b"again"


@pytest.mark.parametrize("sync", [True, False])
def test_dax_stores_survive_a_crash_after_msync_and_need_not_without(sync: bool) -> None:
    m, name, _ = fs_machine()
    p = m.mm.spawn("app")
    with m.vfs.open("/mnt/f", "w+") as f:
        f.truncate(TWO_M)
        f.fsync()
        a = f.mmap(p, TWO_M)
        p.store(a + 100, b"durable?")
        if sync:
            p.msync(a, TWO_M)
    m.crash(KeepNothing())
    remount(m, name)
    got = m.vfs.read_file("/mnt/f")[100:108]
    assert got == (b"durable?" if sync else bytes(8))


def test_truncate_unmaps_the_cut_range_and_access_there_is_sigbus() -> None:
    m, _, _fs = fs_machine(tracking=False)
    p = m.mm.spawn("app")
    with m.vfs.open("/mnt/f", "w+") as f:
        f.truncate(4 * BLOCK)
        a = f.mmap(p, 4 * BLOCK)
        for i in range(4):
            p.store(a + i * BLOCK, b"m")
        f.truncate(BLOCK)
        assert p.load(a, 1) == b"m"
        with pytest.raises(SIGBUS):
            p.load(a + 2 * BLOCK, 1)
        assert m.metrics.c["fs.unmapped_leaves"] == 3
        p.munmap(a, 4 * BLOCK)


def _pinned(busy: str):  # type: ignore[no-untyped-def]
    m, _, fs = fs_machine(tracking=False, busy=busy)
    p = m.mm.spawn("dma")
    f = m.vfs.open("/mnt/f", "w+")
    f.write(b"d" * (4 * BLOCK))
    a = f.mmap(p, 4 * BLOCK)
    pages = pin_user_pages(p.mm, a + 2 * BLOCK, 1, write=True, who="rdma")
    return m, fs, p, f, a, pages


def test_truncate_over_a_pinned_dax_page_fails_with_ebusy_under_the_fail_contract() -> None:
    m, fs, _p, f, _a, pages = _pinned("fail")
    free = fs.statfs()["bfree"]
    with pytest.raises(Busy, match="pinned by pid"):
        f.truncate(0)
    assert f.stat().size == 4 * BLOCK and fs.statfs()["bfree"] == free
    assert f.pread(1, 2 * BLOCK) == b"d"
    unpin_user_pages(m.mm, pages)
    f.truncate(0)
    assert f.stat().size == 0


def test_truncate_waits_for_the_pin_to_go_when_someone_releases_it() -> None:
    m, fs, _p, f, _a, pages = _pinned("wait")
    fs.while_waiting = lambda busy: unpin_user_pages(m.mm, pages)
    f.fallocate(2 * BLOCK, BLOCK, punch_hole=True)
    assert f.pread(BLOCK, 2 * BLOCK) == bytes(BLOCK)
    assert m.metrics.c["fs.dax.busy_waits"] == 1


def test_a_wait_nothing_can_end_is_ebusy_and_the_pinned_block_is_never_reused() -> None:
    m, fs, _p, f, _a, _pages = _pinned("wait")
    pblk, _ = fs.bmap(fs.iget(f.ino), 2)
    with pytest.raises(Busy, match="wait forever"):
        f.truncate(0)
    # other files allocate: the pinned block stays with its file
    with m.vfs.open("/mnt/g", "w+") as g:
        g.write(bytes(64 * BLOCK))
        g.fsync()
        blocks = {b for e in fs.iget(g.ino).inode.extents for b in range(e.pblk, e.pend)}
    assert pblk not in blocks


def test_without_struct_pages_dax_mappings_cannot_be_pinned_so_truncate_never_waits() -> None:
    m, _, fs = fs_machine(tracking=False, memmap="none")
    assert fs.dax_has_pages is False
    p = m.mm.spawn("dma")
    with m.vfs.open("/mnt/f", "w+") as f:
        f.write(b"n" * (2 * BLOCK))
        a = f.mmap(p, 2 * BLOCK)
        assert p.load(a, 1) == b"n"  # loads and stores work
        with pytest.raises(BadAddress):
            pin_user_pages(p.mm, a, 1, write=True)
        f.truncate(0)
        p.munmap(a, 2 * BLOCK)


def test_long_term_pins_of_fsdax_pages_are_refused() -> None:
    m, _, _ = fs_machine(tracking=False)
    p = m.mm.spawn("rdma")
    with m.vfs.open("/mnt/f", "w+") as f:
        f.write(bytes(BLOCK))
        a = f.mmap(p, BLOCK)
        with pytest.raises(NotSupported):
            pin_user_pages(p.mm, a, 1, write=True, longterm=True)
        p.munmap(a, BLOCK)


def test_an_unlinked_file_lives_while_mapped() -> None:
    m, _, _fs = fs_machine(tracking=False)
    p = m.mm.spawn("app")
    f = m.vfs.open("/mnt/f", "w+")
    f.write(b"still here")
    a = f.mmap(p, BLOCK)
    f.close()
    m.vfs.unlink("/mnt/f")
    assert p.load(a, 10) == b"still here"
    freed = m.metrics.c["fs.inodes_freed"]
    p.munmap(a, BLOCK)
    assert m.metrics.c["fs.inodes_freed"] == freed + 1


def test_a_dirty_dax_entry_outlives_its_mapping_until_fsync_writes_it_back() -> None:
    m, name, _ = fs_machine()
    p = m.mm.spawn("app")
    with m.vfs.open("/mnt/f", "w+") as f:
        f.write(b"A" * 100)
        f.fsync()
        a = f.mmap(p, 100)
        p.store(a + 5, b"Z")
        p.munmap(a, 100)  # the store is still only in the CPU cache
        f.fsync()  # dax_writeback_mapping_range still finds the dirty entry
    m.crash(KeepNothing())
    remount(m, name)
    assert m.vfs.read_file("/mnt/f")[:8] == b"AAAAAZAA"


def test_unmount_writes_back_dax_stores_whose_mapping_is_gone() -> None:
    m, name, _ = fs_machine()
    p = m.mm.spawn("app")
    with m.vfs.open("/mnt/f", "w+") as f:
        f.write(b"A" * 100)
        a = f.mmap(p, 100)
        p.store(a, b"Z")
        p.munmap(a, 100)
    m.vfs.umount("/mnt")  # sync: the dirty entry is written back although unmapped
    m.crash(KeepNothing())
    remount(m, name)
    assert m.vfs.read_file("/mnt/f")[:2] == b"ZA"


def test_mmap_refuses_what_the_open_mode_does_not_allow_with_eacces() -> None:
    import errno

    from fs.errors import AccessDenied
    from mm.vma import PROT_READ

    m, _, _ = fs_machine(tracking=False)
    p = m.mm.spawn("app")
    m.vfs.write_file("/mnt/f", b"x" * 4096)
    with m.vfs.open("/mnt/f", "r") as f:
        with pytest.raises(AccessDenied) as e:
            f.mmap(p, 4096)  # shared and writable, but open read-only
        assert e.value.errno == errno.EACCES
        a = f.mmap(p, 4096, prot=PROT_READ)
        assert p.load(a, 1) == b"x"
        p.munmap(a, 4096)
    with m.vfs.open("/mnt/f", "a") as f, pytest.raises(AccessDenied):
        f.mmap(p, 4096)


@pytest.mark.parametrize("dax", ["always", "never"])
def test_a_private_mapping_reads_holes_as_zeroes_and_its_writes_never_reach_the_file(
        dax: str) -> None:
    from mm.vma import PROT_RW

    m, _, fs = fs_machine(dax=dax, tracking=False)
    p = m.mm.spawn("app")
    with m.vfs.open("/mnt/sparse", "w+") as f:
        f.truncate(4 * BLOCK)
        f.pwrite(b"data", 0)
        f.fsync()
        free = fs.statfs()["bfree"]
        a = f.mmap(p, 4 * BLOCK, prot=PROT_RW, shared=False)
        assert p.load(a + 2 * BLOCK, 8) == bytes(8)  # a hole
        p.store(a + 2 * BLOCK, b"private!")  # copy on write
        p.store(a, b"DATA")
        assert p.load(a + 2 * BLOCK, 8) == b"private!" and p.load(a, 4) == b"DATA"
        assert f.pread(8, 2 * BLOCK) == bytes(8) and f.pread(4, 0) == b"data"
        assert m.metrics.c["mm.faults.cow"] == 2
        p.munmap(a, 4 * BLOCK)
        f.fsync()  # nothing of the private writes is left to write back
        assert fs.statfs()["bfree"] == free  # no block was allocated for the hole
        cache = fs.iget(f.ino).cache
        assert cache is None or cache.nr_dirty == 0


def test_a_shared_dax_read_of_a_hole_maps_the_zero_page_and_a_store_gets_a_block() -> None:
    m, _, fs = fs_machine(tracking=False)
    p, q = m.mm.spawn("reader"), m.mm.spawn("writer")
    with m.vfs.open("/mnt/sparse", "w+") as f:
        f.truncate(4 * BLOCK)
        f.fsync()
        free = fs.statfs()["bfree"]
        a, b = f.mmap(p, 4 * BLOCK), f.mmap(q, 4 * BLOCK)
        assert p.load(a + BLOCK, 4) == bytes(4)
        assert p.translate(a + BLOCK) >> 12 == m.mm.zero_pfn  # type: ignore[operator]
        assert fs.statfs()["bfree"] == free  # reading allocated nothing
        q.store(b + BLOCK, b"real")  # page_mkwrite refuses the zero page: a block
        assert fs.statfs()["bfree"] == free - 1
        assert p.load(a + BLOCK, 4) == b"real"  # the reader's zero page was unmapped
        assert f.pread(4, BLOCK) == b"real"
        p.munmap(a, 4 * BLOCK)
        q.munmap(b, 4 * BLOCK)


def test_a_buffered_read_fault_leaves_the_page_clean_until_a_store() -> None:
    m, _, fs = fs_machine(dax="never", tracking=False)
    p = m.mm.spawn("app")
    with m.vfs.open("/mnt/f", "w+") as f:
        f.write(b"c" * (2 * BLOCK))
        f.fsync()
        cache = fs.iget(f.ino).cache
        assert cache is not None
        a = f.mmap(p, 2 * BLOCK)
        assert p.load(a, 1) == b"c" and p.load(a + BLOCK, 1) == b"c"
        assert cache.nr_dirty == 0  # read faults map read-only: nothing to write back
        p.store(a + BLOCK, b"d")  # page_mkwrite dirties just that page
        assert cache.dirty_indices() == [1]
        p.munmap(a, 2 * BLOCK)
