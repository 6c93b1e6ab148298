import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from block.bio import (
    FUA,
    PREFLUSH,
    REQ_FUA,
    REQ_PREFLUSH,
    Bio,
    ReqFlag,
    ReqOp,
    discard_bio,
    flush_bio,
    read_bio,
    status_to_error,
    write_bio,
    write_zeroes_bio,
)
from nvdimm.errors import (
    InvalidArgument,
    MediaError,
    NoDevice,
    NoSpace,
    NotSupported,
    NvdimmError,
    ReadOnly,
)


def test_req_op_numbers_and_write_bit_follow_linux():
    assert [ReqOp.READ, ReqOp.WRITE, ReqOp.FLUSH, ReqOp.DISCARD, ReqOp.WRITE_ZEROES] == \
        [0, 1, 2, 3, 9]
    assert [op.is_write for op in ReqOp] == [False, True, False, True, True]


def test_plain_int_flag_twins_equal_the_intflag_members():
    assert FUA == REQ_FUA == ReqFlag.FUA
    assert PREFLUSH == REQ_PREFLUSH == ReqFlag.PREFLUSH
    assert type(FUA) is int and type(PREFLUSH) is int
    assert isinstance(REQ_FUA, ReqFlag)


def test_helpers_build_the_bios_linux_would_send():
    r = read_bio(8, 4096)
    assert (r.op, r.sector, r.size, r.flags) == (ReqOp.READ, 8, 4096, 0)
    assert isinstance(r.data, bytearray) and len(r.data) == 4096
    w = write_bio(16, b"a" * 512, FUA)
    assert (w.op, w.sector, w.size, w.flags, w.data) == (ReqOp.WRITE, 16, 512, FUA, b"a" * 512)
    f = flush_bio()
    # a flush reaches a bio-based driver as an empty write carrying PREFLUSH
    assert (f.op, f.size, f.data, f.flags) == (ReqOp.WRITE, 0, None, PREFLUSH)
    assert discard_bio(0, 4096).op is ReqOp.DISCARD
    assert write_zeroes_bio(0, 4096).data is None


def test_read_bio_uses_a_caller_buffer_when_given():
    buf = bytearray(1024)
    assert read_bio(0, 1024, buf).data is buf


def test_bio_repr_names_its_flags():
    assert "FUA" in repr(write_bio(0, b"x" * 512, FUA | PREFLUSH))


@pytest.mark.parametrize("bio", [
    read_bio(0, 4096),
    write_bio(8, b"x" * 4096, FUA | PREFLUSH),
    flush_bio(),
    discard_bio(0, 8192),
    write_zeroes_bio(8, 4096),
    Bio(ReqOp.FLUSH, 0),
    read_bio(2040, 4096),  # ends exactly at capacity
])
def test_well_formed_bios_validate(bio):
    bio.validate(4096, 2048)


@pytest.mark.parametrize("bio, why", [
    (read_bio(1, 4096), "not aligned"),
    (read_bio(8, 1024), "not aligned"),
    (read_bio(2048, 4096), "beyond"),
    (Bio(ReqOp.READ, -8, 512, bytearray(512)), "negative"),
    (Bio(ReqOp.READ, 0, 512, b"x" * 512), "writable"),
    (Bio(ReqOp.READ, 0, 512, memoryview(b"x" * 512)), "writable"),
    (Bio(ReqOp.READ, 0, 512), "without a data buffer"),
    (Bio(ReqOp.WRITE, 0, 1024, b"x" * 512), "does not match"),
    (Bio(ReqOp.WRITE, 0, 0, b""), "empty"),
    (Bio(ReqOp.READ, 0, 512, bytearray(512), FUA), "only applies to writes"),
    (Bio(ReqOp.DISCARD, 0, 512, None, PREFLUSH), "only applies to writes"),
    (Bio(ReqOp.DISCARD, 0, 512, b"x" * 512), "carries no data"),
    (Bio(ReqOp.WRITE_ZEROES, 0, 0), "empty"),
    (Bio(ReqOp.READ, 0.5, 512, bytearray(512)), "ints"),
])
def test_malformed_bios_are_rejected_with_a_reason(bio, why):
    with pytest.raises(InvalidArgument, match=why):
        bio.validate(4096, 2048)


def test_validation_uses_the_logical_block_size_not_the_sector():
    write_bio(8, b"x" * 4096).validate(4096, 64)
    with pytest.raises(InvalidArgument, match="4096-byte"):
        write_bio(1, b"x" * 4096).validate(4096, 64)
    with pytest.raises(InvalidArgument, match="4096-byte"):
        write_bio(8, b"x" * 512).validate(4096, 64)


def test_a_device_with_odd_blocks_is_addressed_in_its_own_blocks():
    # 520-byte blocks: sector counts blocks, capacity counts blocks
    write_bio(3, b"x" * 1040).validate(520, 5, sector_size=520)
    with pytest.raises(InvalidArgument, match="beyond"):
        write_bio(4, b"x" * 1040).validate(520, 5, sector_size=520)
    with pytest.raises(InvalidArgument, match="not aligned"):
        write_bio(0, b"x" * 512).validate(520, 5, sector_size=520)


@given(sector=st.integers(0, 4096), nblocks=st.integers(0, 16),
       lbs=st.sampled_from([512, 4096]), capacity=st.integers(0, 4096))
def test_validation_accepts_exactly_the_aligned_in_range_bios(sector, nblocks, lbs, capacity):
    bio = read_bio(sector, nblocks * lbs)
    fits = (nblocks > 0 and (sector * 512) % lbs == 0
            and sector * 512 + nblocks * lbs <= capacity * 512)
    if fits:
        bio.validate(lbs, capacity)
    else:
        with pytest.raises(InvalidArgument):
            bio.validate(lbs, capacity)


@pytest.mark.parametrize("status, exc", [
    (-errno.EIO, MediaError),
    (-errno.ENODATA, MediaError),
    (-errno.ENOSPC, NoSpace),
    (-errno.EOPNOTSUPP, NotSupported),
    (-errno.EROFS, ReadOnly),
    (-errno.ENXIO, NoDevice),
])
def test_failed_status_maps_to_the_named_exception(status, exc):
    err = status_to_error(status, "boom", 4096, 512)
    assert type(err) is exc
    assert err.errno == -status


def test_media_error_from_status_says_where():
    err = status_to_error(-errno.EIO, "boom", 8192, 4096)
    assert isinstance(err, MediaError)
    assert (err.offset, err.length) == (8192, 4096)


def test_unnamed_errno_keeps_its_number():
    err = status_to_error(-errno.ETIMEDOUT, "slow")
    assert type(err) is NvdimmError and err.errno == errno.ETIMEDOUT
