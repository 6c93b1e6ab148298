"""The page cache: DRAM pages over a disk, dirty tracking, writeback through bios, fsync."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mm.page import PageFlags
from mm.page_alloc import PageAllocator
from mm.pagecache import PageCache
from nvdimm import ndctl
from nvdimm.errors import MediaError, ReadOnly
from nvdimm.machine import Machine
from nvdimm.platform.crash import KeepNothing
from tests.test_mm_process import machine_with

PAGE = 4096


def cached_disk(persistence: str = "adr") -> tuple[Machine, PageCache]:
    m = machine_with(persistence=persistence)
    ndctl.create_namespace(m, mode="raw", size="16M")
    return m, _cache(m)


def _cache(m: Machine) -> PageCache:
    disk = m.block_device("pmem0")
    return PageCache(disk, PageAllocator(m.platform.dram, m.metrics, m.trace), m.metrics,
                     m.trace)


def test_a_miss_reads_the_page_in_and_a_second_read_hits():
    m, pc = cached_disk()
    m.block_device("pmem0").write(PAGE, b"on disk!" * 512, fua=True)
    assert pc.read(PAGE + 8, 8) == b"on disk!"
    assert pc.read(PAGE, 8) == b"on disk!"
    assert (m.metrics.get("mm.pagecache.misses"), m.metrics.get("mm.pagecache.hits")) == (1, 1)
    assert m.platform.dram.charges["mm:pagecache"] == PAGE and pc.nrpages == 1
    page = pc.find_page(1)
    assert page.mapping is pc and page.index == 1 and PageFlags.UPTODATE in page.flags


def test_a_partial_write_reads_the_page_first_and_a_whole_one_does_not():
    m, pc = cached_disk()
    reads = m.metrics.get("block.pmem0.reads")
    pc.write(0, b"x" * PAGE)
    assert m.metrics.get("block.pmem0.reads") == reads  # overwritten whole: no read-in
    pc.write(PAGE + 10, b"y")
    assert m.metrics.get("block.pmem0.reads") == reads + 1  # read-modify-write
    assert pc.nr_dirty == 2 and pc.is_dirty(1)
    assert m.block_device("pmem0").read(0, PAGE) == bytes(PAGE)  # nothing written yet


def test_writeback_sends_one_bio_per_contiguous_run_and_cleans_the_pages():
    m, pc = cached_disk()
    for i in (0, 1, 2, 5):
        pc.write(i * PAGE, bytes([65 + i]) * PAGE)
    assert pc.writeback() == 4
    assert m.metrics.get("mm.pagecache.writeback_bios") == 2  # [0, 3) and [5]
    assert m.metrics.get("mm.pagecache.writeback_pages") == 4 and pc.nr_dirty == 0
    assert all(PageFlags.DIRTY not in pc.find_page(i).flags for i in (0, 1, 2, 5))
    assert m.block_device("pmem0").read(5 * PAGE, PAGE) == b"F" * PAGE
    pc.write(0, b"again")
    assert pc.writeback(PAGE, 3 * PAGE) == 0  # page 0 is outside the range
    assert pc.writeback(0, 1) == 1


@pytest.mark.parametrize(("step", "kept"), [
    ("write", False),  # only in DRAM
    ("writeback", False),  # on its way: pmem NT stores not fenced
    ("fsync", True),
])
def test_only_fsync_makes_buffered_writes_survive_a_crash(step, kept):
    m, pc = cached_disk()
    pc.write(3 * PAGE, b"durable?" * 512)
    if step == "writeback":
        pc.writeback()
    elif step == "fsync":
        pc.fsync()
    m.crash(KeepNothing())
    m.boot()
    got = m.block_device("pmem0").read(3 * PAGE, 512)[:8]
    assert (got == b"durable?") is kept


def test_a_failed_writeback_keeps_the_pages_dirty_and_fsync_reports_it():
    m, pc = cached_disk()
    pc.write(0, b"z" * PAGE)
    disk = m.block_device("pmem0")
    disk.read_only = True
    with pytest.raises(ReadOnly):
        pc.fsync()
    assert pc.is_dirty(0) and m.metrics.get("mm.pagecache.writeback_errors") == 1
    disk.read_only = False
    pc.fsync()
    assert not pc.is_dirty(0) and disk.read(0, 512) == b"z" * 512


def test_a_read_error_caches_nothing():
    m, pc = cached_disk()
    ndctl.inject_error(m, "namespace0.0", block=8, count=1)
    with pytest.raises(MediaError):
        pc.read(PAGE, 16)
    assert pc.nrpages == 0 and "mm:pagecache" not in m.platform.dram.charges


def test_shrink_drops_clean_pages_only_and_gives_the_dram_back():
    m, pc = cached_disk()
    pc.read(0, 1)
    pc.read(PAGE, 1)
    pc.write(2 * PAGE, b"dirty")
    assert pc.shrink() == 2 and pc.nrpages == 1
    assert m.platform.dram.charges["mm:pagecache"] == PAGE
    pc.invalidate()
    assert pc.nrpages == 0 and "mm:pagecache" not in m.platform.dram.charges


def test_a_block_map_hole_reads_zeroes_without_io():
    m, _ = cached_disk()

    class EvenPagesOnly:
        def map_read(self, index: int) -> int | None:
            return None if index % 2 else index * PAGE

        def map_write(self, index: int) -> int:
            return index * PAGE

    disk = m.block_device("pmem0")
    disk.write(PAGE, b"h" * PAGE, fua=True)
    pc = PageCache(disk, PageAllocator(m.platform.dram), m.metrics, blocks=EvenPagesOnly(),
                   size=4 * PAGE, name="file")
    reads = m.metrics.get("block.pmem0.reads")
    assert pc.read(PAGE, 4) == bytes(4)  # a hole, although the disk has data there
    assert m.metrics.get("block.pmem0.reads") == reads


@settings(max_examples=25, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("write"), st.integers(0, 8 * PAGE - 1), st.binary(min_size=1, max_size=5000)),
    st.tuples(st.just("writeback"), st.integers(0, 8 * PAGE - 1), st.integers(1, 3 * PAGE)),
    st.tuples(st.just("shrink"), st.just(0), st.just(0)),
), max_size=15))
def test_reads_see_writes_and_fsync_puts_them_on_the_disk(ops):
    m, pc = _PROP
    pc.invalidate()
    size = 8 * PAGE
    m.block_device("pmem0").write(0, bytes(size), fua=True)
    model = bytearray(size)
    for op, off, arg in ops:
        if op == "write":
            data = arg[:size - off]
            pc.write(off, data)
            model[off:off + len(data)] = data
        elif op == "writeback":
            pc.writeback(off, off + arg)
        else:
            pc.shrink()
        assert pc.read(0, size) == bytes(model)
    pc.fsync()
    assert pc.nr_dirty == 0
    assert m.block_device("pmem0").read(0, size) == bytes(model)


_PROP = cached_disk()
