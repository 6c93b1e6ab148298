"""Memory controller: SPA routing to DIMMs, interleave, poison, out-of-range refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nvdimm.errors import InvalidArgument, MediaError
from nvdimm.platform.memctrl import DimmMedia, MemoryController
from nvdimm.platform.nfit import build_table
from nvdimm.units import MiB


def controller(dimms: int, interleave: bool) -> tuple[MemoryController, list[DimmMedia]]:
    t = build_table(dimms=dimms, dimm_size=16 * MiB, label_size=128 * 1024,
                    interleave=interleave)
    media = [DimmMedia.blank(d.capacity, d.label_size) for d in t.dimms]
    return MemoryController(media, list(t.ranges)), media


def test_each_region_routes_to_its_own_dimm_whatever_the_access_order():
    mc, media = controller(3, False)
    bases = [r.base for r in mc.ranges]
    for i in (2, 0, 1, 2, 0):
        mc.write(bases[i] + 4096, bytes([i + 1]) * 8)
    for i in range(3):
        assert media[i].media.read(4096, 8) == bytes([i + 1]) * 8
        assert mc.read(bases[i] + 4096, 8) == bytes([i + 1]) * 8


def test_addresses_outside_every_range_are_refused():
    mc, _ = controller(2, False)
    with pytest.raises(InvalidArgument):
        mc.read(0, 8)
    r = mc.ranges[0]
    with pytest.raises(InvalidArgument):
        mc.write(r.base + r.size - 4, b"12345678")  # straddles the end


@given(st.integers(0, 32 * MiB - 1), st.binary(min_size=1, max_size=20000))
def test_interleaved_writes_read_back_and_map_back_to_the_same_spa(off, data):
    mc, _ = controller(2, True)
    r = mc.ranges[0]
    off = min(off, r.size - len(data))
    mc.write(r.base + off, data)
    assert mc.read(r.base + off, len(data)) == data
    for dimm, dpa, _n in mc.pieces(r.base + off, len(data)):
        assert mc.spa_of(dimm, dpa) is not None
    dimm, dpa, _ = mc.pieces(r.base + off, 1)[0]
    assert mc.spa_of(dimm, dpa) == r.base + off


def test_poisoned_bytes_raise_a_machine_check_with_the_spa():
    mc, media = controller(1, False)
    base = mc.ranges[0].base
    media[0].poison.add(8192, 256)
    assert mc.read(base, 4096) == bytes(4096)
    with pytest.raises(MediaError) as e:
        mc.read(base + 8000, 512)
    assert e.value.offset == base + 8192
