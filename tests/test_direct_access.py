"""Seam ``direct_access``: each variant's contract, and what the weaker ones cannot say."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from drivers.direct_access import (
    KADDR_BASE,
    PFN_DEV,
    PFN_MAP,
    DaxOps,
    DirectAccess,
    KernelMachineCheck,
    OutOfRange,
    RecordingHolder,
    capabilities,
    dax_provider,
)
from mm.fault import EHWPOISON, HwPoisoned
from nvdimm import ndctl
from nvdimm.errors import Busy, InvalidArgument, MediaError, NoDevice, NotSupported
from nvdimm.machine import Machine
from nvdimm.platform.crash import KeepNothing
from nvdimm.seams import seam
from nvdimm.units import MiB
from tests.test_mm_process import machine_with

PAGE = 4096
VARIANTS = ["bdev-2016", "dax-ops", "widened"]
EXAMPLES = settings(max_examples=30, deadline=None)


def _machine() -> Machine:
    m = machine_with()
    ndctl.create_namespace(m, mode="fsdax", size="64M")  # pmem0, map=dev
    ndctl.create_namespace(m, mode="raw", size="16M")  # pmem0.1
    return m


M = _machine()
FSDAX = M.bus.namespace("pmem0").device
RAW = M.bus.namespace("pmem0.1").device


@contextmanager
def poisoned(dev, offset: int, *, known: bool = True) -> Iterator[None]:
    """One poisoned 512-byte sector at ``offset`` of ``dev`` (in badblocks if ``known``)."""
    spa = dev.spa + offset
    M.platform.inject_error(spa, 512)
    if known:
        M.bus.add_badrange(spa, 512)
    try:
        yield
    finally:
        M.bus.clear_poison(spa, 512)
        M.platform.clear_error(spa, 512)


def test_the_seam_offers_three_variants_and_defaults_to_linux_today():
    s = seam("direct_access")
    assert s.names() == VARIANTS and s.default == "dax-ops"
    for name in VARIANTS:
        da = dax_provider(FSDAX, name)
        assert isinstance(da, DirectAccess) and da.name == name
        assert s.info(name).history and s.info(name).tradeoffs
    assert {n: capabilities(dax_provider(FSDAX, n)) for n in VARIANTS} == {
        "bdev-2016": {"can_report_errors": False, "sees_lifetime": False, "can_notify": False,
                      "notifies_failure": "", "mc_safe": False},
        "dax-ops": {"can_report_errors": True, "sees_lifetime": False, "can_notify": False,
                    "notifies_failure": "device", "mc_safe": True},
        "widened": {"can_report_errors": True, "sees_lifetime": True, "can_notify": True,
                    "notifies_failure": "mapping", "mc_safe": True},
    }


def test_sector_mode_and_device_dax_cannot_provide_direct_access():
    m = machine_with()
    ndctl.create_namespace(m, mode="sector", size="32M")
    ndctl.create_namespace(m, mode="devdax", size="64M")
    btt = m.bus.namespace("namespace0.0").device
    for name in VARIANTS:
        with pytest.raises(NotSupported, match="no DAX on BTT") as e:
            dax_provider(btt, name)
        assert e.value.errno == errno.EOPNOTSUPP
    with pytest.raises(NotSupported, match="no dax_operations"):
        dax_provider(m.bus.namespace("dax0.1").device)


# -- the common contract, over every variant ------------------------------------------------


@pytest.mark.parametrize("name", VARIANTS)
@EXAMPLES
@given(page=st.integers(0, 64 * MiB // PAGE), pages=st.integers(1, 64))
def test_map_gives_the_kaddr_and_pfn_of_the_offset(name, page, pages):
    for dev in (FSDAX, RAW):
        offset = page * PAGE % dev.size
        da = dax_provider(dev, name)
        holder = RecordingHolder(da)
        if name == "bdev-2016" and offset + pages * PAGE > dev.size:
            with pytest.raises(OutOfRange):  # 2016: -ERANGE; later: fewer pages
                holder.take(offset, pages * PAGE)
            continue
        e = holder.take(offset, pages * PAGE)
        phys = dev.spa + offset
        assert (e.pfn, e.kaddr) == (phys >> 12, KADDR_BASE + phys)
        assert 0 < e.length <= min(pages * PAGE, dev.size - offset) and e.length % PAGE == 0
        # fsdax pfns have struct pages (PFN_DEV|PFN_MAP), raw ones not (PFN_DEV)
        assert e.pfn_flags == (PFN_DEV | PFN_MAP if dev is FSDAX else PFN_DEV)
        assert e.has_page is (dev is FSDAX)
        da.release(e)
        assert da.outstanding(0, dev.size) == (0 if da.sees_lifetime else None)


@pytest.mark.parametrize("name", VARIANTS)
def test_misuse_is_refused(name):
    da = dax_provider(FSDAX, name)
    with pytest.raises(InvalidArgument, match="not page aligned"):
        da.map(512, PAGE, RecordingHolder(da))
    with pytest.raises(OutOfRange) as e:
        da.map(FSDAX.size, PAGE, RecordingHolder(da))
    assert e.value.errno == errno.ERANGE
    with pytest.raises(OutOfRange):
        da.write(FSDAX.size - 8, b"x" * 16)


@pytest.mark.parametrize("name", VARIANTS)
@EXAMPLES
@given(bad=st.integers(0, 255), first=st.integers(0, 255), pages=st.integers(1, 16))
def test_a_known_bad_sector_is_refused_only_by_variants_that_report_errors(name, bad, first,
                                                                           pages):
    da = dax_provider(FSDAX, name)
    bad_off = bad * 512
    offset = first * PAGE
    covers = offset <= bad_off < offset + pages * PAGE
    with poisoned(FSDAX, bad_off):
        if covers and da.can_report_errors:
            with pytest.raises(HwPoisoned) as e:
                da.map(offset, pages * PAGE, RecordingHolder(da))
            assert e.value.errno == EHWPOISON
        else:  # bdev-2016 hands out the pfn of a poisoned sector like any other
            e2 = da.map(offset, pages * PAGE, RecordingHolder(da))
            assert e2.pfn == (FSDAX.spa + offset) >> 12
            da.release(e2)


def test_before_5_19_dax_ops_refused_with_eio():
    da = dax_provider(FSDAX, "dax-ops", hwpoison=False)
    with poisoned(FSDAX, 0), pytest.raises(MediaError) as e:
        da.direct_access(0, 1)
    assert e.value.errno == errno.EIO and not isinstance(e.value, HwPoisoned)


@pytest.mark.parametrize("name", VARIANTS)
@EXAMPLES
@given(sector=st.integers(1, 63), start=st.integers(0, 7), n=st.integers(1, 32 * 1024))
def test_a_read_of_poison_is_short_where_machine_check_safe_and_fatal_elsewhere(name, sector,
                                                                               start, n):
    da = dax_provider(FSDAX, name)
    offset = start * 512
    bad = sector * 512
    with poisoned(FSDAX, bad, known=False):
        if not offset <= bad < offset + n:
            assert len(da.read(offset, n)) == n
        elif da.mc_safe:
            data = da.read(offset, n)
            assert len(data) == bad - offset  # up to the poisoned line, not a byte more
        else:
            with pytest.raises(KernelMachineCheck):
                da.read(offset, n)


@pytest.mark.parametrize("name", VARIANTS)
def test_zeroing_clears_poison_only_with_the_driver_helper(name):
    da = dax_provider(FSDAX, name)
    with poisoned(FSDAX, 2 * PAGE):
        da.zero(2 * PAGE, PAGE)
        still = M.platform.poisoned() != []
        assert still is (name == "bdev-2016")  # clear_pmem is only stores
        assert (len(FSDAX.badblocks) == 0) is (name != "bdev-2016")


@pytest.mark.parametrize("name", ["dax-ops", "widened"])
def test_recovery_mode_and_recovery_write(name):
    da = dax_provider(FSDAX, name)
    assert isinstance(da, DaxOps)
    with poisoned(FSDAX, 5 * PAGE + 512):
        assert da.direct_access(2, 8, "recovery_write")[0] == 3  # pages 2, 3, 4 are good
        assert da.direct_access(5, 8, "recovery_write")[0] == 1  # at least one
        assert da.direct_access(6, 8)[0] == 8  # bad blocks elsewhere: exactly what was asked
        with pytest.raises(InvalidArgument, match="whole pages"):
            da.recovery_write(5, b"x" * 100)
        da.recovery_write(5, b"R" * PAGE)
        assert len(FSDAX.badblocks) == 0 and da.read(5 * PAGE, 4) == b"RRRR"
    assert da.direct_access(0, 4)[0] == 4
    with pytest.raises(InvalidArgument):
        da.zero_page_range(0, 2)


@pytest.mark.parametrize("name", VARIANTS)
@EXAMPLES
@given(offset=st.integers(0, 64 * 1024), data=st.binary(min_size=1, max_size=9000),
       flush=st.booleans())
def test_writes_are_durable_after_flush_and_only_then(name, offset, data, flush):
    m = _CRASHY
    dev = m.bus.namespace("pmem0").device
    da = dax_provider(dev, name)
    before = da.read(offset, len(data))
    assume(data != before)  # else "lost" and "kept" look the same
    da.write(offset, data)
    assert da.read(offset, len(data)) == data  # visible at once
    if flush:
        da.flush()
    m.crash(KeepNothing())
    m.boot()
    dev = m.bus.namespace("pmem0").device
    assert dax_provider(dev, name).read(offset, len(data)) == (data if flush else before)


_CRASHY = _machine()


@pytest.mark.parametrize("name", VARIANTS)
def test_a_dead_device_gives_nothing(name):
    m = _machine()
    dev = m.bus.namespace("pmem0").device
    da = dax_provider(dev, name)
    dev.disk.mark_dead()
    with pytest.raises(NoDevice) as e:
        da.map(0, PAGE, RecordingHolder(da))
    assert e.value.errno == errno.ENXIO


# -- what only the widened contract can express ---------------------------------------------


@pytest.mark.parametrize("name", VARIANTS)
@EXAMPLES
@given(held=st.integers(0, 15), npages=st.integers(1, 4), changed=st.integers(0, 15),
       nchanged=st.integers(1, 4))
def test_only_widened_tells_the_holder_before_a_block_changes(name, held, npages, changed,
                                                            nchanged):
    da = dax_provider(FSDAX, name)
    log: list[str] = []
    holder = RecordingHolder(da)
    holder.take(held * PAGE, npages * PAGE)
    overlap = held < changed + nchanged and changed < held + npages
    report = da.remap(changed * PAGE, nchanged * PAGE,
                      change=lambda: log.append(f"change, holder told {len(holder.events)}"))
    assert report.applied
    if da.can_notify and overlap:
        assert holder.events[0][0] == "remap" and log == ["change, holder told 1"]
        assert report.notified == 1 and report.outstanding == 0 and holder.held == []
    else:  # the weaker contracts cannot even know the block was handed out
        assert holder.events == [] and log == ["change, holder told 0"]
        assert report.notified == 0
        assert report.outstanding == (0 if da.sees_lifetime else None)
    for e in holder.held:
        da.release(e)


def test_widened_waits_for_a_holder_that_keeps_its_mapping():
    da = dax_provider(FSDAX, "widened")
    stubborn = RecordingHolder(da, release=False)
    e = stubborn.take(0, 2 * PAGE)
    log: list[str] = []
    with pytest.raises(Busy, match="still open"):
        da.remap(PAGE, PAGE, change=lambda: log.append("changed"))
    assert log == [] and stubborn.events == [("remap", PAGE, PAGE)]
    assert da.outstanding(0, PAGE) == 1
    e.handle.close()
    e.handle.close()  # closing twice is harmless
    assert da.remap(PAGE, PAGE, change=lambda: log.append("changed")).applied
    assert log == ["changed"] and da.outstanding(0, FSDAX.size) == 0


def test_media_failure_reaches_nobody_the_device_holder_or_each_holder():
    told = {}
    for name in VARIANTS:
        da = dax_provider(FSDAX, name)
        near, far = RecordingHolder(da), RecordingHolder(da)
        near.take(0, 2 * PAGE)
        far.take(8 * PAGE, PAGE)
        fs = RecordingHolder()
        if isinstance(da, DaxOps):
            da.set_holder(fs)
            with pytest.raises(Busy):
                da.set_holder(RecordingHolder())  # one holder per dax device
        told[name] = (da.media_error(PAGE, 512), near.events, far.events, fs.events)
    assert told["bdev-2016"] == (0, [], [], [])
    assert told["dax-ops"] == (1, [], [], [("failure", PAGE, 512)])  # after the fact, whole fs
    assert told["widened"] == (2, [("error", PAGE, 512)], [], [("failure", PAGE, 512)])


def test_native_bdev_direct_access_rules():
    da = dax_provider(FSDAX, "bdev-2016")
    ctl = da.bdev_direct_access(8, 3 * PAGE)
    assert ctl.avail == 3 * PAGE and ctl.pfn == (FSDAX.spa + PAGE) >> 12
    assert ctl.addr == KADDR_BASE + FSDAX.spa + PAGE
    with pytest.raises(InvalidArgument, match="not page aligned"):
        da.bdev_direct_access(1, PAGE)
    with pytest.raises(OutOfRange):
        da.bdev_direct_access(FSDAX.size // 512 - 1, PAGE)
    last = FSDAX.size // 512 - 8
    assert da.bdev_direct_access(last, PAGE).avail == PAGE


def test_native_dax_ops_copy_helpers():
    da = dax_provider(FSDAX, "dax-ops")
    assert isinstance(da, DaxOps)
    assert da.copy_from_iter(100, b"copy in") == 7
    assert da.copy_to_iter(100, 7) == (b"copy in", 0)
    with poisoned(FSDAX, 512, known=False):
        data, missed = da.copy_to_iter(0, 1024)
        assert (len(data), missed) == (512, 512)
    assert da.direct_access(FSDAX.size // PAGE - 2, 10)[0] == 2  # to the end only
