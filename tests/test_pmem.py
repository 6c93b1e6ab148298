"""The pmem driver: durability per bio flags, poison, badblocks."""

from __future__ import annotations

import pytest

from block.bio import FUA, PREFLUSH, read_bio, write_bio
from nvdimm.errors import MediaError
from nvdimm.platform.crash import KeepEverything, KeepNothing
from nvdimm.units import MiB

BLK = 4096


@pytest.fixture
def pmem(machine):
    machine.bus.create_namespace(mode="raw", size=64 * MiB, name="t")
    return machine, machine.block_device("pmem0")


def reread(machine, off, n):
    machine.boot()
    return machine.block_device("pmem0").read(off, n)


def test_fua_write_survives_a_crash_that_keeps_nothing_in_flight(pmem):
    m, disk = pmem
    disk.write(0, b"F" * BLK, fua=True)
    m.crash(KeepNothing())
    assert reread(m, 0, BLK) == b"F" * BLK


def test_plain_write_is_lost_by_a_crash_that_keeps_nothing_in_flight(pmem):
    m, disk = pmem
    disk.write(0, b"P" * BLK)
    assert disk.read(0, BLK) == b"P" * BLK  # visible before the crash
    m.crash(KeepNothing())
    assert reread(m, 0, BLK) == bytes(BLK)


def test_plain_write_survives_when_the_crash_keeps_everything(pmem):
    m, disk = pmem
    disk.write(0, b"P" * BLK)
    m.crash(KeepEverything())
    assert reread(m, 0, BLK) == b"P" * BLK


def test_flush_makes_earlier_writes_durable(pmem):
    m, disk = pmem
    disk.write(0, b"1" * BLK)
    disk.write(BLK, b"2" * BLK)
    disk.flush()
    m.crash(KeepNothing())
    assert reread(m, 0, 2 * BLK) == b"1" * BLK + b"2" * BLK


def test_preflush_makes_earlier_writes_durable_but_not_its_own(pmem):
    m, disk = pmem
    disk.write(0, b"1" * BLK)
    disk.write(BLK, b"2" * BLK, preflush=True)
    m.crash(KeepNothing())
    assert reread(m, 0, 2 * BLK) == b"1" * BLK + bytes(BLK)


def test_bio_path_reports_eio_as_status_on_a_bad_sector(pmem):
    m, disk = pmem
    disk.write(0, b"x" * BLK, fua=True)
    m.bus.add_badrange(m.bus.namespace("pmem0").spa, 512)
    m.platform.inject_error(m.bus.namespace("pmem0").spa, 512)
    bio = read_bio(0, BLK)
    assert disk.submit_bio(bio) < 0
    ok = write_bio(8, b"y" * BLK, FUA | PREFLUSH)
    assert disk.submit_bio(ok) == 0


def test_injected_error_fails_reads_until_a_whole_sector_write_clears_it(pmem):
    from nvdimm import ndctl

    m, disk = pmem
    disk.write(0, b"x" * BLK, fua=True)
    ndctl.inject_error(m, "namespace0.0", block=2, count=1)
    assert [e.start for e in m.bus.namespace("pmem0").device.badblocks] == [2]
    with pytest.raises(MediaError):
        disk.read(0, BLK)
    assert disk.read(BLK, BLK) == bytes(BLK)  # outside the bad sector
    disk.write(0, b"z" * BLK, fua=True)  # covers sector 2 whole: clears the poison
    assert disk.read(0, BLK) == b"z" * BLK
    assert m.platform.poisoned() == []
    # Linux clears over the whole write, as one CLEAR_ERROR call
    assert m.metrics.get("pmem.poison_cleared") == BLK


def test_unnotified_poison_is_a_machine_check_until_a_scrub_finds_it(pmem):
    from nvdimm import ndctl

    m, disk = pmem
    ndctl.inject_error(m, "namespace0.0", block=8, count=2, notify=False)
    assert len(m.bus.namespace("pmem0").device.badblocks) == 0
    with pytest.raises(MediaError, match="machine check"):
        disk.read(BLK, BLK)
    assert m.metrics.get("pmem.machine_checks") == 1
    ndctl.start_scrub(m)
    bb = list(m.bus.namespace("pmem0").device.badblocks)
    assert [(e.start, e.length) for e in bb] == [(8, 2)]


def test_poison_and_badblocks_survive_reboot(pmem):
    from nvdimm import ndctl

    m, _ = pmem
    ndctl.inject_error(m, "namespace0.0", block=16, count=1)
    m.reboot()  # boot scrubs: firmware still reports the poisoned range
    bb = list(m.bus.namespace("pmem0").device.badblocks)
    assert [(e.start, e.length) for e in bb] == [(16, 1)]


def test_trace_follows_a_write_from_block_layer_to_the_cpu(pmem):
    m, disk = pmem
    seq = m.trace.last_seq
    disk.write(0, b"t" * BLK, fua=True)
    names = [e.name for e in m.trace.since(seq)]
    assert names[:2] == ["block.submit", "pmem.write"]
    assert "cpu.fence" in names and names[-1] == "pmem.flush"


def test_two_machines_in_one_process_keep_separate_traces(pmem):
    from tests.conftest import labelled_machine

    _m, disk = pmem
    other = labelled_machine()
    before = len(other.trace.events())
    disk.write(0, b"q" * BLK)
    assert len(other.trace.events()) == before


@pytest.mark.parametrize("tracking", [True, False])
def test_cheap_mode_and_tracked_mode_give_the_same_device_behaviour(tracking):
    from nvdimm import ndctl
    from tests.conftest import labelled_machine

    m = labelled_machine(tracking=tracking)
    m.bus.create_namespace(mode="raw", size=16 * MiB)
    disk = m.block_device("pmem0")
    disk.write(BLK, b"b" * BLK, fua=True)
    disk.write(0, b"a" * BLK)  # after the last fence: in flight when tracked
    assert disk.read(0, 2 * BLK) == b"a" * BLK + b"b" * BLK
    assert m.metrics.get("cpu.nt_stores") == 2
    ndctl.inject_error(m, "namespace0.0", block=24, count=1, notify=False)
    with pytest.raises(MediaError, match="machine check"):
        disk.read(3 * BLK, BLK)  # unknown poison is consumed in either mode
    m.crash(KeepNothing())
    m.boot()
    # Without tracking a crash keeps everything visible; with it the plain write is lost.
    first = b"a" * BLK if not tracking else bytes(BLK)
    assert m.block_device("pmem0").read(0, 2 * BLK) == first + b"b" * BLK
