"""The pfn/dax info block: layout, checksum, nd_pfn_init sizing, nd_pfn_validate."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import pfn_format as pf
from drivers.pfn_format import (
    DAX_SIG,
    INFO_RESERVE,
    PAGE_SIZE,
    PFN_SIG,
    SUPPORTED_ALIGNMENTS,
    BadInfoMode,
    CannotFit,
    NoInfoBlock,
    PfnInfo,
    PfnMode,
    UnsupportedInfoBlock,
    plan,
    validate,
)
from mm.memmap import linux_reservation
from nvdimm.errors import InvalidArgument
from nvdimm.units import GiB, MiB, TiB

PARENT = uuid.UUID("11111111-2222-3333-4444-555555555555")
ME = uuid.UUID("41ce5fd0-9803-4242-bd57-4628fbebc135")
START = 1 << 32  # QEMU's first pmem SPA

# -- the reference's own rules, restated independently (reference section 2.4) ----------


def reference_init(start: int, size: int, align: int, mode: str) -> dict[str, int]:
    """nd_pfn_init as the reference states it, step by step."""
    align_eff = max(align, 2 * MiB)
    end_trunc = start + size - (start + size) // align_eff * align_eff
    npfns = (size - 8192) // 4096
    if mode == "pmem":
        dataoff = -(-(start + 8192 + 64 * npfns) // align_eff) * align_eff - start
    else:
        dataoff = -(-(start + 8192) // align_eff) * align_eff - start
    return {"dataoff": dataoff, "npfns": (size - dataoff - end_trunc) // 4096,
            "end_trunc": end_trunc}


# The reference's worked examples (start 0x240000000).
@pytest.mark.parametrize(("size", "align", "mode", "dataoff", "npfns"), [
    (16 * GiB, 2 * MiB, PfnMode.PMEM, 270532608, 4128256),
    (1 * TiB, 2 * MiB, PfnMode.PMEM, 16386 * MiB, 264240640),
    (16 * GiB, 1 * GiB, PfnMode.PMEM, 1024 * MiB, 3932160),
    (16 * GiB, 2 * MiB, PfnMode.RAM, 2 * MiB, 4193792),
])
def test_reference_worked_examples(size, align, mode, dataoff, npfns):
    lay = plan(start=0x240000000, size=size, align=align, mode=mode)
    assert (lay.dataoff, lay.npfns, lay.end_trunc) == (dataoff, npfns, 0)


def test_altmap_example_of_the_reference():
    from drivers.pfn import setup_altmap

    lay = plan(start=0x240000000, size=16 * GiB, align=2 * MiB, mode=PfnMode.PMEM)
    alt = setup_altmap(lay)
    assert (alt.base_pfn, alt.reserve, alt.free, alt.offset) == (0x240000, 2, 66046, 66048)
    assert alt.offset * PAGE_SIZE == lay.dataoff


starts = st.integers(min_value=1, max_value=1 << 15).map(lambda k: k * 2 * MiB)
sizes = st.integers(min_value=16 * MiB // 4096, max_value=(1 << 46) // 4096).map(
    lambda n: n * 4096)
aligns = st.sampled_from(SUPPORTED_ALIGNMENTS)
modes = st.sampled_from([PfnMode.RAM, PfnMode.PMEM])


@given(starts, sizes, aligns, modes)
def test_plan_follows_the_reference_rules(start, size, align, mode):
    ref = reference_init(start, size, align, "pmem" if mode == PfnMode.PMEM else "ram")
    if ref["dataoff"] >= size - ref["end_trunc"]:
        with pytest.raises(CannotFit):
            plan(start=start, size=size, align=align, mode=mode)
        return
    lay = plan(start=start, size=size, align=align, mode=mode)
    assert {"dataoff": lay.dataoff, "npfns": lay.npfns, "end_trunc": lay.end_trunc} == ref
    eff = max(align, 2 * MiB)
    # What those numbers promise:
    assert lay.dataoff >= INFO_RESERVE and lay.dataoff % PAGE_SIZE == 0
    assert (start + lay.dataoff) % eff == 0  # data starts on the mapping alignment
    assert (start + size - lay.end_trunc) % eff == 0 and lay.end_trunc < eff
    assert lay.data_size == lay.npfns * PAGE_SIZE  # size - dataoff - end_trunc is whole pages
    assert lay.align == align  # the block records the alignment asked for
    if mode == PfnMode.PMEM:  # room for 64 bytes per page of the namespace, rounded to eff
        need = 64 * ((size - INFO_RESERVE) // PAGE_SIZE)
        assert need <= lay.memmap_reserved < need + eff
        assert lay.memmap_reserved == linux_reservation(
            start, (size - INFO_RESERVE) // PAGE_SIZE, align, INFO_RESERVE)
    else:
        assert lay.memmap_reserved == 0 and lay.dataoff < eff + INFO_RESERVE


@given(starts, sizes, aligns, modes, st.sampled_from([PFN_SIG, DAX_SIG]), st.uuids())
def test_what_plan_writes_validates_on_the_same_namespace(start, size, align, mode, sig, me):
    try:
        lay = plan(start=start, size=size, align=align, mode=mode)
    except CannotFit:
        return
    raw = lay.info(signature=sig, uuid=me, parent_uuid=PARENT).pack()
    info = validate(raw, signature=sig, parent_uuid=PARENT, start=start, size=size)
    assert pf.layout_of(info, start=start, size=size) == lay


def test_misaligned_start_is_refused():
    with pytest.raises(InvalidArgument, match="not aligned"):
        plan(start=START + 4096, size=64 * MiB)


def test_an_alignment_that_leaves_no_data_cannot_fit():
    with pytest.raises(CannotFit, match="cannot satisfy"):
        plan(start=START, size=1 * GiB, align=1 * GiB, mode=PfnMode.PMEM)
    # map=mem needs only the first 8 KiB, rounded to 1 GiB: that still fits in 2 GiB
    assert plan(start=START, size=2 * GiB, align=1 * GiB, mode=PfnMode.RAM).dataoff == GiB


def test_check_align_accepts_4k_2m_1g_only():
    for a in SUPPORTED_ALIGNMENTS:
        pf.check_align(a)
    for a in (0, 8192, 64 * 1024, 4 * MiB, 2 * GiB):
        with pytest.raises(InvalidArgument, match="unsupported align"):
            pf.check_align(a)


# -- the block --------------------------------------------------------------------------

infos = st.builds(
    PfnInfo, signature=st.sampled_from([PFN_SIG, DAX_SIG]), uuid=st.uuids(),
    parent_uuid=st.uuids(), dataoff=st.integers(0, 2**64 - 1),
    npfns=st.integers(0, 2**64 - 1), mode=st.integers(0, 2**32 - 1),
    align=st.integers(0, 2**32 - 1), end_trunc=st.integers(0, 2**32 - 1),
    start_pad=st.integers(0, 2**32 - 1), flags=st.integers(0, 2**32 - 1),
    version_major=st.integers(0, 2**16 - 1), version_minor=st.integers(0, 2**16 - 1),
    page_size=st.integers(0, 2**32 - 1), page_struct_size=st.integers(0, 2**16 - 1))


@given(infos)
def test_pack_unpack_round_trip_with_a_correct_checksum(info):
    raw = info.pack()
    assert len(raw) == 4096
    back = PfnInfo.unpack(raw)
    assert back == pf.attrs.evolve(info, checksum=pf.info_checksum(raw))
    assert back.pack() == raw
    assert raw[94:4088] == bytes(3994)  # padding stays zero


def test_field_offsets_are_linuxs():
    info = PfnInfo(signature=PFN_SIG, uuid=ME, parent_uuid=PARENT, dataoff=0x1122334455667788,
                   npfns=0x0102030405060708, mode=2, align=0x200000, end_trunc=0x1000,
                   start_pad=0x2000, flags=0xAABBCCDD, page_size=4096, page_struct_size=64)
    raw = info.pack()
    le = int.from_bytes
    assert raw[0:16] == b"NVDIMM_PFN_INFO\x00"
    assert raw[16:32] == ME.bytes and raw[32:48] == PARENT.bytes
    assert le(raw[48:52], "little") == 0xAABBCCDD
    assert (le(raw[52:54], "little"), le(raw[54:56], "little")) == (1, 4)
    assert le(raw[56:64], "little") == 0x1122334455667788
    assert le(raw[64:72], "little") == 0x0102030405060708
    assert [le(raw[o:o + 4], "little") for o in (72, 76, 80, 84, 88)] == [
        2, 0x2000, 0x1000, 0x200000, 4096]
    assert le(raw[92:94], "little") == 64
    assert le(raw[4088:4096], "little") == pf.info_checksum(raw)


@given(st.integers(0, 4087), st.integers(1, 255))
def test_any_corrupted_byte_fails_the_checksum(pos, flip):
    lay = plan(start=START, size=240 * MiB)
    raw = bytearray(lay.info(signature=PFN_SIG, uuid=ME, parent_uuid=PARENT).pack())
    raw[pos] ^= flip
    with pytest.raises(NoInfoBlock):
        validate(bytes(raw), signature=PFN_SIG, parent_uuid=PARENT, start=START,
                 size=240 * MiB)


def block(**changes) -> bytes:
    lay = plan(start=START, size=240 * MiB)
    info = lay.info(signature=changes.pop("signature", PFN_SIG), uuid=ME, parent_uuid=PARENT)
    return pf.attrs.evolve(info, **changes).pack()


def check(raw: bytes, sig: bytes = PFN_SIG, size: int = 240 * MiB, start: int = START,
          parent: uuid.UUID | None = PARENT) -> PfnInfo:
    return validate(raw, signature=sig, parent_uuid=parent, start=start, size=size)


def test_validate_refuses_like_nd_pfn_validate():
    with pytest.raises(NoInfoBlock, match="signature"):
        check(block(), sig=DAX_SIG)  # a pfn block is not a dax block
    with pytest.raises(NoInfoBlock, match="parent"):
        check(block(), parent=uuid.uuid4())
    with pytest.raises(NoInfoBlock, match="parent"):
        check(block(), parent=None)  # label-less namespaces expect a null parent
    with pytest.raises(BadInfoMode):
        check(block(mode=0))
    with pytest.raises(UnsupportedInfoBlock, match="page size"):
        check(block(page_size=8192))
    with pytest.raises(UnsupportedInfoBlock, match="struct page"):
        check(block(page_struct_size=56))
    with pytest.raises(UnsupportedInfoBlock, match="device-dax alignment"):
        check(block(signature=DAX_SIG, align=64 * 1024), sig=DAX_SIG)
    check(block(align=64 * 1024))  # fsdax does not check the alignment list
    with pytest.raises(UnsupportedInfoBlock, match="exceeds capacity"):
        check(block(align=1 << 30))
    with pytest.raises(UnsupportedInfoBlock, match="beyond"):
        check(block(), size=4 * MiB)
    with pytest.raises(UnsupportedInfoBlock, match="bad data offset"):
        check(block(dataoff=0x401000))
    with pytest.raises(UnsupportedInfoBlock, match="start misaligned"):
        check(block(align=4096), start=START + 4096)
    with pytest.raises(UnsupportedInfoBlock, match="end misaligned"):
        check(block(), size=240 * MiB + 4096)


def test_configured_device_must_match_the_media():
    exp = pf.Expected(ME, 2 * MiB, PfnMode.PMEM)
    assert check(block()) == validate(block(), signature=PFN_SIG, parent_uuid=PARENT,
                                      start=START, size=240 * MiB, expected=exp)
    with pytest.raises(NoInfoBlock, match="uuid"):
        validate(block(), signature=PFN_SIG, parent_uuid=PARENT, start=START,
                 size=240 * MiB, expected=pf.Expected(PARENT, 2 * MiB, PfnMode.PMEM))
    with pytest.raises(UnsupportedInfoBlock, match="mismatch"):
        validate(block(), signature=PFN_SIG, parent_uuid=PARENT, start=START,
                 size=240 * MiB, expected=pf.Expected(ME, 2 * MiB, PfnMode.RAM))


def test_older_versions_are_back_filled():
    v0 = check(block(version_minor=0, end_trunc=0x1000, start_pad=0x2000))
    assert (v0.start_pad, v0.end_trunc) == (0, 0)
    v1 = check(block(version_minor=1, align=0))  # align from dataoff: 1 << ilog2(4 MiB)
    assert v1.align == 4 * MiB
    v3 = check(block(version_minor=3, page_size=0, page_struct_size=0))
    assert (v3.page_size, v3.page_struct_size) == (4096, 64)


def test_read_infoblock_json_has_ndctls_keys_in_order():
    j = PfnInfo.unpack(block()).to_json("namespace0.0")
    assert list(j) == ["dev", "signature", "uuid", "parent_uuid", "flags", "version",
                       "dataoff", "npfns", "mode", "start_pad", "end_trunc", "align",
                       "page_size", "page_struct_size"]
    assert (j["signature"], j["version"], j["dataoff"], j["npfns"]) == (
        "NVDIMM_PFN_INFO", "1.4", 0x400000, 60416)
