import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nvdimm.errors import InvalidArgument
from nvdimm.platform.media import PAGE, SparseMedia
from nvdimm.platform.ranges import RangeSet
from nvdimm.units import TiB


def test_untouched_media_reads_zero_and_costs_nothing():
    m = SparseMedia(64 * TiB)
    assert m.read(12345 * PAGE + 7, 100) == bytes(100)
    assert m.touched_bytes == 0


def test_media_memory_grows_with_touched_pages_not_capacity():
    m = SparseMedia(64 * TiB)
    for i in range(10):
        m.write(i * (1 << 40), b"x" * 10)
    assert m.touched_bytes == 10 * PAGE


def test_media_rejects_access_outside_capacity():
    m = SparseMedia(8192)
    with pytest.raises(InvalidArgument):
        m.write(8190, b"abc")
    with pytest.raises(InvalidArgument):
        m.read(-1, 1)
    assert m.touched_bytes == 0


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 5 * PAGE), st.binary(min_size=0, max_size=3 * PAGE)),
                max_size=20))
def test_media_behaves_like_a_flat_bytearray(writes):
    size = 8 * PAGE
    ref = bytearray(size)
    m = SparseMedia(size)
    for off, data in writes:
        m.write(off, data)
        ref[off:off + len(data)] = data
    assert m.read(0, size) == bytes(ref)
    for off in (0, 100, PAGE - 3, 3 * PAGE + 1):
        assert m.read(off, 2 * PAGE) == bytes(ref[off:off + 2 * PAGE])


def test_zeroing_whole_pages_frees_them():
    m = SparseMedia(4 * PAGE)
    m.write(0, b"\xff" * (4 * PAGE))
    m.zero(PAGE, 2 * PAGE + 5)
    assert m.touched_bytes == 2 * PAGE
    assert m.read(PAGE, 2 * PAGE + 5) == bytes(2 * PAGE + 5)
    assert m.read(3 * PAGE + 5, 1) == b"\xff"


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 300), st.integers(0, 60)), max_size=40))
def test_rangeset_matches_a_set_of_integers(ops):
    rs, ref = RangeSet(), set()
    for add, start, n in ops:
        if add:
            rs.add(start, n)
            ref |= set(range(start, start + n))
        else:
            rs.remove(start, n)
            ref -= set(range(start, start + n))
    covered = {x for s, n in rs for x in range(s, s + n)}
    assert covered == ref
    pieces = list(rs)
    for (s1, n1), (s2, _) in itertools.pairwise(pieces):
        assert s1 + n1 < s2  # sorted, disjoint, merged
    for x in range(0, 370, 7):
        assert rs.overlaps(x, 5) == bool(ref & set(range(x, x + 5)))
