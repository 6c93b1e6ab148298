import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from block.bio import FUA, PREFLUSH, Bio, ReqOp, read_bio, write_bio
from block.genhd import BlockDevice, Gendisk
from nvdimm.errors import (
    InvalidArgument,
    MediaError,
    NoDevice,
    NoSpace,
    NotSupported,
    ReadOnly,
)
from nvdimm.metrics import Metrics
from nvdimm.trace import Trace

KiB = 1024


class BioDriver:
    """A RAM disk that only implements submit_bio; it fails I/O on known bad sectors."""

    def __init__(self, size, unit=512):
        self.store = bytearray(size)
        self.unit = unit
        self.calls = []  # what reached the driver, in order
        self.disk = None
        self.fail_status = 0

    def _bad(self, sector, length):
        return self.disk.badblocks.is_bad(sector * self.unit // 512, -(-length // 512))

    def submit_bio(self, bio):
        self.calls.append(("bio", bio.op, bio.sector, bio.length, bio.flags))
        if self.fail_status:
            bio.status = self.fail_status
            return
        off = bio.sector * self.unit
        if bio.flags & PREFLUSH:
            self.calls.append(("preflush",))
        if bio.op is ReqOp.READ:
            if self._bad(bio.sector, bio.length):
                bio.status = -errno.EIO
                return
            bio.data[:] = self.store[off:off + bio.length]
        elif bio.op is ReqOp.WRITE and bio.length:
            self.store[off:off + bio.length] = bio.data
            self.calls.append(("data", bio.sector))
        elif bio.op in (ReqOp.DISCARD, ReqOp.WRITE_ZEROES):
            self.store[off:off + bio.length] = bytes(bio.length)
        if bio.flags & FUA:
            self.calls.append(("fua",))


class FastDriver(BioDriver):
    """The same disk with the fast hooks; errors are raised, as the hooks require."""

    def do_read(self, sector, length):
        self.calls.append(("do_read", sector, length))
        if self._bad(sector, length):
            raise MediaError("poison", sector * self.unit, length)
        off = sector * self.unit
        return bytes(self.store[off:off + length])

    def do_write(self, sector, data, flags):
        self.calls.append(("do_write", sector, len(data), flags))
        if flags & PREFLUSH:
            self.calls.append(("preflush",))
        off = sector * self.unit
        self.store[off:off + len(data)] = data
        self.calls.append(("data", sector))
        if flags & FUA:
            self.calls.append(("fua",))


def make_disk(driver_cls=FastDriver, size=1 << 20, lbs=512, **kw):
    unit = 512 if lbs % 512 == 0 else lbs
    drv = driver_cls(size, unit)
    disk = Gendisk("pmem0", drv, capacity=size // unit, logical_block_size=lbs, **kw)
    drv.disk = disk
    return disk, drv


drivers = pytest.mark.parametrize("driver_cls", [BioDriver, FastDriver],
                                  ids=["submit_bio", "fast_hooks"])


@drivers
@pytest.mark.parametrize("lbs", [512, 4096])
def test_written_data_reads_back(driver_cls, lbs):
    disk, _ = make_disk(driver_cls, lbs=lbs)
    data = bytes(range(256)) * 16
    disk.write(8 * KiB, data)
    assert disk.read(8 * KiB, 4 * KiB) == data
    assert disk.read(0, 4 * KiB) == bytes(4 * KiB)
    assert type(disk.read(0, lbs)) is bytes


def test_fast_hooks_are_used_when_the_driver_has_them():
    disk, drv = make_disk(FastDriver)
    disk.write(4096, b"a" * 4096)
    disk.read(4096, 4096)
    assert [c[0] for c in drv.calls] == ["do_write", "data", "do_read"]
    assert drv.calls[0] == ("do_write", 8, 4096, 0)


def test_without_fast_hooks_every_io_is_a_bio():
    disk, drv = make_disk(BioDriver)
    disk.write(4096, b"a" * 4096)
    disk.read(4096, 4096)
    assert [c[:4] for c in drv.calls if c[0] == "bio"] == [
        ("bio", ReqOp.WRITE, 8, 4096), ("bio", ReqOp.READ, 8, 4096)]


@drivers
@pytest.mark.parametrize("offset, length, lbs", [
    (1, 512, 512),  # misaligned offset
    (512, 100, 512),  # misaligned length
    (512, 4096, 4096),  # sector-aligned but not block-aligned
    ((1 << 20) - 512, 1024, 512),  # past the end
    (-512, 512, 512),
    (0, 0, 512),
])
def test_bad_ranges_are_refused_before_the_driver_sees_them(driver_cls, offset, length, lbs):
    disk, drv = make_disk(driver_cls, lbs=lbs)
    with pytest.raises(InvalidArgument):
        disk.write(offset, b"z" * length)
    with pytest.raises(InvalidArgument):
        disk.read(offset, length)
    assert drv.calls == []
    assert drv.store == bytearray(1 << 20)


@drivers
def test_read_only_disk_refuses_writes_and_keeps_its_data(driver_cls):
    disk, drv = make_disk(driver_cls, read_only=True)
    with pytest.raises(ReadOnly):
        disk.write(0, b"x" * 512)
    with pytest.raises(ReadOnly):
        disk.submit_bio_wait(write_bio(0, b"x" * 512))
    assert drv.calls == [] and drv.store == bytearray(1 << 20)
    assert disk.read(0, 512) == bytes(512)


@drivers
def test_preflush_and_fua_reach_the_driver_with_a_write_cache(driver_cls):
    disk, drv = make_disk(driver_cls, write_cache=True, fua=True)
    disk.write(0, b"x" * 512, fua=True, preflush=True)
    assert [c for c in drv.calls if c[0] in ("preflush", "data", "fua")] == [
        ("preflush",), ("data", 0), ("fua",)]


@drivers
def test_fua_is_passed_even_when_the_queue_does_not_advertise_it(driver_cls):
    # a bio-based driver receives FUA as is; only request queues emulate it
    disk, drv = make_disk(driver_cls, write_cache=True, fua=False)
    disk.write(0, b"x" * 512, fua=True)
    assert ("fua",) in drv.calls


@drivers
def test_flush_flags_are_dropped_without_a_write_cache(driver_cls):
    disk, drv = make_disk(driver_cls, write_cache=False)
    disk.write(0, b"x" * 512, fua=True, preflush=True)
    assert ("fua",) not in drv.calls and ("preflush",) not in drv.calls
    assert drv.store[:512] == b"x" * 512


@drivers
def test_flush_is_an_empty_preflush_write_to_submit_bio(driver_cls):
    disk, drv = make_disk(driver_cls, write_cache=True)
    disk.flush()
    assert drv.calls == [("bio", ReqOp.WRITE, 0, 0, PREFLUSH), ("preflush",)]


@drivers
def test_flush_without_a_write_cache_completes_without_the_driver(driver_cls):
    disk, drv = make_disk(driver_cls, write_cache=False)
    disk.flush()
    assert drv.calls == []


@drivers
def test_read_of_a_known_bad_sector_raises_media_error_saying_where(driver_cls):
    m, tr = Metrics(), Trace()
    disk, _ = make_disk(driver_cls, metrics=m, trace=tr)
    disk.write(8192, b"x" * 4096)
    disk.badblocks.set(17, 1)
    with pytest.raises(MediaError) as ei:
        disk.read(8192, 4096)
    assert ei.value.errno == errno.EIO
    assert (ei.value.offset, ei.value.length) == (8192, 4096)
    assert disk.read(12288, 4096) == bytes(4096)  # the next page is fine
    assert m.get("block.errors") == 1
    assert [e.fields["status"] for e in tr.events("block.error")] == [-errno.EIO]


def test_driver_status_maps_to_the_named_exception():
    disk, drv = make_disk(BioDriver)
    drv.fail_status = -errno.ENOSPC
    with pytest.raises(NoSpace):
        disk.write(0, b"x" * 512)


def test_submit_bio_returns_the_status_instead_of_raising():
    disk, drv = make_disk(BioDriver)
    drv.fail_status = -errno.EIO
    bio = read_bio(0, 512)
    assert disk.submit_bio(bio) == -errno.EIO == bio.status


def test_driver_exception_in_submit_bio_becomes_the_bio_status():
    class Raising(BioDriver):
        def submit_bio(self, bio):
            raise MediaError("machine check", 0, 512)

    disk, _ = make_disk(Raising)
    bio = read_bio(0, 512)
    assert disk.submit_bio(bio) == -errno.EIO
    with pytest.raises(MediaError):
        disk.read(0, 512)


def test_malformed_bio_is_refused_before_submission():
    disk, drv = make_disk(BioDriver)
    with pytest.raises(InvalidArgument):
        disk.submit_bio(Bio(ReqOp.WRITE, 1, 512, b"x" * 100))
    with pytest.raises(InvalidArgument):
        disk.submit_bio(read_bio(2048, 512))  # one sector past the end
    assert drv.calls == []


def test_request_only_flush_op_is_not_supported_on_a_bio():
    disk, drv = make_disk(BioDriver, write_cache=True)
    bio = Bio(ReqOp.FLUSH, 0)
    assert disk.submit_bio(bio) == -errno.EOPNOTSUPP
    assert drv.calls == []


@drivers
def test_discard_needs_queue_support(driver_cls):
    disk, drv = make_disk(driver_cls)
    disk.write(0, b"x" * 4096)
    with pytest.raises(NotSupported):
        disk.discard(0, 4096)
    with pytest.raises(NotSupported):
        disk.write_zeroes(0, 4096)
    assert drv.store[:4096] == b"x" * 4096
    disk2, drv2 = make_disk(driver_cls, can_discard=True, can_write_zeroes=True)
    disk2.write(0, b"x" * 8192)
    disk2.discard(0, 4096)
    disk2.write_zeroes(4096, 4096)
    assert drv2.store[:8192] == bytes(8192)


def test_discard_range_is_validated():
    disk, drv = make_disk(BioDriver, can_discard=True, lbs=4096)
    with pytest.raises(InvalidArgument):
        disk.discard(512, 4096)
    with pytest.raises(InvalidArgument):
        disk.discard(0, 100)
    with pytest.raises(InvalidArgument):
        disk.discard(-4096, 4096)
    assert drv.calls == []


@drivers
def test_metrics_count_ios_bytes_flushes_and_errors(driver_cls):
    m = Metrics()
    disk, _ = make_disk(driver_cls, metrics=m, write_cache=True)
    disk.write(0, b"x" * 4096)
    disk.write(4096, b"x" * 1024, preflush=True)
    disk.read(0, 4096)
    disk.flush()
    disk.badblocks.set(0, 1)
    with pytest.raises(MediaError):
        disk.read(0, 512)
    assert m.snapshot("block.") == {
        "block.bytes_read": 4096,
        "block.bytes_written": 5120,
        "block.errors": 1,
        "block.flushes": 2,
        "block.pmem0.reads": 2,
        "block.pmem0.writes": 2,
    }


@drivers
def test_submissions_are_traced_only_when_the_trace_is_on(driver_cls):
    tr = Trace()
    disk, _ = make_disk(driver_cls, trace=tr, write_cache=True)
    disk.write(4096, b"x" * 4096, fua=True)
    disk.read(4096, 4096)
    evs = tr.events("block.submit")
    assert [(e.fields["op"], e.fields["sector"], e.fields["len"]) for e in evs] == [
        ("write", 8, 4096), ("read", 8, 4096)]
    assert evs[0].fields["flags"] == FUA and evs[0].fields["disk"] == "pmem0"
    tr.on = False
    disk.read(4096, 4096)
    assert len(tr.events("block.submit")) == 2


def test_a_disk_without_a_trace_records_nothing():
    disk, _ = make_disk()
    assert disk.trace.on is False


@drivers
def test_dead_disk_fails_io_with_no_device_and_spares_the_driver(driver_cls):
    disk, drv = make_disk(driver_cls, write_cache=True)
    disk.mark_dead()
    with pytest.raises(NoDevice):
        disk.read(0, 512)
    with pytest.raises(NoDevice):
        disk.write(0, b"x" * 512)
    with pytest.raises(NoDevice):
        disk.flush()
    assert drv.calls == []


def test_capacity_change_moves_the_end_of_the_disk():
    disk, _ = make_disk(size=1 << 20)
    disk.capacity = 8
    assert disk.size == 4096
    with pytest.raises(InvalidArgument):
        disk.read(4096, 512)
    with pytest.raises(InvalidArgument):
        disk.capacity = -1


def test_geometry_and_name_are_fixed_once_registered():
    disk, _ = make_disk()
    with pytest.raises(Exception):  # noqa: B017 - attrs FrozenAttributeError
        disk.logical_block_size = 4096
    with pytest.raises(Exception):  # noqa: B017
        disk.name = "pmem1"


@pytest.mark.parametrize("lbs", [0, -512])
def test_nonsense_block_size_is_refused(lbs):
    with pytest.raises(InvalidArgument):
        Gendisk("x", BioDriver(4096), capacity=8, logical_block_size=lbs)


@drivers
def test_odd_block_size_disk_is_addressed_in_its_own_blocks(driver_cls):
    disk, drv = make_disk(driver_cls, size=520 * 100, lbs=520)
    assert disk.sector_size == 520 and disk.capacity == 100 and disk.size == 52000
    disk.write(520 * 3, b"q" * 1040)
    assert drv.store[1560:2600] == b"q" * 1040
    assert disk.read(520 * 4, 520) == b"q" * 520
    with pytest.raises(InvalidArgument):
        disk.read(512, 520)


def test_block_device_is_the_whole_disk():
    assert BlockDevice is Gendisk


def test_caller_bio_flags_are_stripped_like_linux_does():
    disk, _ = make_disk(BioDriver, write_cache=False)
    bio = write_bio(0, b"x" * 512, FUA | PREFLUSH)
    disk.submit_bio(bio)
    assert bio.flags == 0 and bio.status == 0


@given(ios=st.lists(st.tuples(st.booleans(), st.integers(-2, 40), st.integers(0, 10),
                              st.integers(0, 255)), max_size=25),
       fast=st.booleans(), lbs=st.sampled_from([512, 4096]))
@settings(max_examples=150)
def test_disk_behaves_like_a_bytearray_and_bad_input_changes_nothing(ios, fast, lbs):
    size = 32 * KiB
    disk, drv = make_disk(FastDriver if fast else BioDriver, size=size, lbs=lbs)
    ref = bytearray(size)
    for is_write, blk, nblk, fill in ios:
        off, n = blk * 512, nblk * 512
        ok = off >= 0 and n > 0 and off + n <= size and off % lbs == 0 and n % lbs == 0
        if is_write:
            data = bytes([fill]) * n
            if ok:
                disk.write(off, data)
                ref[off:off + n] = data
            else:
                with pytest.raises(InvalidArgument):
                    disk.write(off, data)
        elif ok:
            assert disk.read(off, n) == ref[off:off + n]
        else:
            with pytest.raises(InvalidArgument):
                disk.read(off, n)
        assert drv.store == ref
