"""On-media layout of index blocks and namespace labels (nvdimm.label_format)."""

from __future__ import annotations

import struct
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nvdimm.errors import InvalidArgument
from nvdimm.label_format import (
    BTT2_GUID,
    BTT_GUID,
    DAX_GUID,
    INDEX_HEADER_SIZE,
    NSINDEX_SIGNATURE,
    NULL_GUID,
    PFN_GUID,
    PMEM_TYPE_GUID,
    ClaimClass,
    IndexBlock,
    LabelFlag,
    NamespaceLabel,
    area_index_size,
    claim_class_guid,
    claim_class_of_guid,
    fletcher64,
    index_size,
    iset_altcookie_v11,
    iset_cookie_v11,
    iset_cookie_v12,
    iset_positions,
    num_label_slots,
)

U8, U16, U32, U64 = (st.integers(0, (1 << b) - 1) for b in (8, 16, 32, 64))
uuids = st.builds(uuid.UUID, int=st.integers(0, (1 << 128) - 1))
# Names are bytes without NUL; decoding with surrogate escapes keeps non-UTF-8 bytes.
names = st.binary(max_size=64).filter(lambda b: b"\0" not in b).map(
    lambda b: b.decode("utf-8", "surrogateescape"))


# -- Fletcher-64 -----------------------------------------------------------------------


def test_fletcher64_test_vector() -> None:
    assert fletcher64(bytes(range(16))) == 0x463C322824201C18


def test_fletcher64_is_not_textbook_fletcher() -> None:
    # lo wraps at 2^32 (not 2^32-1) and trailing bytes short of a word are ignored
    # lo: 0xffffffff then 0xfffffffe; hi: their sum, of which only 32 bits survive
    assert fletcher64(b"\xff\xff\xff\xff" * 2) == 0xFFFFFFFD_FFFFFFFE
    assert fletcher64(b"\x01\x00\x00\x00\x07") == fletcher64(b"\x01\x00\x00\x00")


@given(st.binary(max_size=256))
def test_fletcher64_native_order_is_little_endian_on_x86(data: bytes) -> None:
    assert fletcher64(data, le=False) == fletcher64(data, le=True)


# -- geometry (reference/calc/label_calc.py table) -------------------------------------


@pytest.mark.parametrize(("config_size", "label_size", "nslot", "isize"), [
    (1024, 128, 4, 256), (1024, 256, 2, 256),
    (2048, 128, 12, 256), (2048, 256, 6, 256),
    (128 * 1024, 128, 1020, 256), (128 * 1024, 256, 510, 256),
    (256 * 1024, 128, 2040, 512), (256 * 1024, 256, 1022, 256),
])
def test_geometry(config_size: int, label_size: int, nslot: int, isize: int) -> None:
    assert num_label_slots(config_size, label_size) == nslot
    assert index_size(nslot) == isize
    assert area_index_size(config_size, label_size) == isize


def test_area_too_small() -> None:
    assert area_index_size(512, 128) is None
    assert area_index_size(767, 256) is None


# -- GUIDs, flags, claim classes -------------------------------------------------------


def test_guid_byte_order_matches_linux() -> None:
    # bytes Linux wrote at label+0x80 in the golden v12 images
    assert PMEM_TYPE_GUID.bytes_le == bytes.fromhex("79d3f066f3b47440ac430d3318b78cdb")
    assert BTT2_GUID.bytes_le == bytes.fromhex("fc3b631835171742" "8ac917239282d3f8")


def test_claim_classes() -> None:
    assert claim_class_of_guid(BTT_GUID) is ClaimClass.BTT
    assert claim_class_of_guid(BTT2_GUID) is ClaimClass.BTT2
    assert claim_class_of_guid(PFN_GUID) is ClaimClass.PFN
    assert claim_class_of_guid(DAX_GUID) is ClaimClass.DAX
    assert claim_class_of_guid(NULL_GUID) is ClaimClass.NONE
    assert claim_class_of_guid(PMEM_TYPE_GUID) is ClaimClass.UNKNOWN
    assert claim_class_guid("btt") == BTT2_GUID  # v1.2 areas get the BTT 2.0 layout
    assert claim_class_guid("btt", "1.1") == BTT_GUID
    assert claim_class_guid(ClaimClass.PFN) == PFN_GUID
    assert claim_class_guid("none") == NULL_GUID
    with pytest.raises(InvalidArgument):
        claim_class_guid("unknown")


def test_flags() -> None:
    assert (LabelFlag.ROLABEL, LabelFlag.LOCAL, LabelFlag.BTT, LabelFlag.UPDATING) == (1, 2, 4, 8)


# -- interleave-set cookies ------------------------------------------------------------


def test_qemu_cookies() -> None:
    # QEMU's NFIT: serial 0x123456, vendor 0x8086, no manufacturing date or location
    qemu = [(0, 0x00123456, 0x8086, 0, 0)]
    assert iset_cookie_v11(qemu) == 0x2468AC00123456
    assert iset_cookie_v12(qemu) == 0xBA90120012B4DC


def test_cookie_sorts_by_region_offset() -> None:
    a, b = (0x100, 1, 0x8086, 0, 0), (0x1_0000_0000, 2, 0x8086, 0, 0)
    assert iset_cookie_v11([b, a]) == iset_cookie_v11([a, b])
    assert iset_cookie_v12([b, a]) == iset_cookie_v12([a, b])
    assert iset_positions([b, a]) == [1, 0]
    # memcmp order of little-endian offsets puts 0x1_0000_0000 (00 00 00 00 01...) first
    alt_rows = struct.pack("<QII", b[0], b[1], 0) + struct.pack("<QII", a[0], a[1], 0)
    assert iset_altcookie_v11([a, b]) == fletcher64(alt_rows, le=False)
    assert iset_altcookie_v11([a, b]) != iset_cookie_v11([a, b])


def test_cookie_v12_uses_manufacturing_fields() -> None:
    base = (0, 0x123456, 0x8086, 0, 0)
    assert iset_cookie_v12([(0, 0x123456, 0x8086, 0x1234, 0)]) != iset_cookie_v12([base])
    assert iset_cookie_v12([(0, 0x123456, 0x8086, 0, 7)]) != iset_cookie_v12([base])
    assert iset_cookie_v11([(0, 0x123456, 0x8086, 0x1234, 7)]) == iset_cookie_v11([base])


def test_cookie_rejects_out_of_range() -> None:
    with pytest.raises(InvalidArgument):
        iset_cookie_v11([(0, 1 << 32, 0, 0, 0)])


# -- index block -----------------------------------------------------------------------


index_blocks = st.builds(
    IndexBlock, seq=U32, myoff=U64, mysize=U64, otheroff=U64, labeloff=U64, nslot=U32,
    minor=U16, free=st.integers(0, 3).flatmap(
        lambda k: st.binary(min_size=256 * (k + 1) - INDEX_HEADER_SIZE,
                            max_size=256 * (k + 1) - INDEX_HEADER_SIZE)),
    labelsize=U8, major=U16, flags=st.integers(0, (1 << 24) - 1),
    sig=st.one_of(st.just(NSINDEX_SIGNATURE), st.binary(min_size=16, max_size=16)))


@given(index_blocks)
def test_index_block_round_trip(block: IndexBlock) -> None:
    raw = block.pack()
    assert len(raw) == block.size
    back = IndexBlock.unpack(raw)
    assert back == block
    assert back.checksum == IndexBlock.compute_checksum(raw)
    assert IndexBlock.checksum_ok(raw)
    assert back.pack() == raw


@given(st.binary(min_size=256, max_size=256))
def test_index_block_bytes_round_trip(raw: bytes) -> None:
    # any 256 bytes with a correct checksum pack back byte for byte
    buf = bytearray(raw)
    buf[64:72] = IndexBlock.compute_checksum(buf).to_bytes(8, "little")
    assert IndexBlock.unpack(buf).pack() == bytes(buf)


@given(index_blocks, st.data())
def test_index_checksum_detects_any_single_byte_corruption(block: IndexBlock,
                                                           data: st.DataObject) -> None:
    raw = bytearray(block.pack())
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    assert not IndexBlock.checksum_ok(raw)


def test_index_block_field_layout() -> None:
    block = IndexBlock(seq=3, myoff=0, mysize=256, otheroff=256, labeloff=512, nslot=1020,
                       minor=1, free=b"\xff" * 128 + bytes(56))
    raw = block.pack()
    assert raw[:16] == b"NAMESPACE_INDEX\0"
    assert raw[19] == 0 and raw[20:24] == b"\x03\0\0\0"
    assert raw[56:60] == (1020).to_bytes(4, "little") and raw[60:64] == b"\x01\0\x01\0"
    assert IndexBlock.unpack(raw).checksum == 0xEB634621D7313E0A  # golden labels-empty


def test_index_bitmap_helpers() -> None:
    block = IndexBlock(seq=1, myoff=0, mysize=256, otheroff=256, labeloff=512, nslot=10,
                       minor=1, free=b"\xff\xff" + bytes(182))
    assert block.first_free() == 0 and block.used_slots() == []
    b2 = block.with_slots(used=[0, 1, 9])
    assert b2.used_slots() == [0, 1, 9]
    assert b2.first_free() == 2 and not b2.is_free(9) and b2.is_free(8)
    assert b2.free[:2] == b"\xfc\xfd"  # little-endian bit order within bytes
    assert b2.with_slots(freed=[0]).first_free() == 0
    full = block.with_slots(used=range(10))
    assert full.first_free() is None  # bits 10..15 are set but are not slots
    assert block.label_size == 128
    assert IndexBlock(seq=1, myoff=0, mysize=256, otheroff=256, labeloff=512, nslot=1,
                      minor=2, labelsize=1, free=bytes(184)).label_size == 256


def test_index_pack_rejects_out_of_range() -> None:
    with pytest.raises(InvalidArgument):
        IndexBlock(seq=1 << 32, myoff=0, mysize=256, otheroff=256, labeloff=512, nslot=1,
                   minor=1, free=bytes(184)).pack()


# -- namespace label -------------------------------------------------------------------


def labels(label_size: int) -> st.SearchStrategy[NamespaceLabel]:
    guids = uuids if label_size == 256 else st.just(NULL_GUID)
    return st.builds(NamespaceLabel, uuid=uuids, name=names, flags=U32, nlabel=U16,
                     position=U16, isetcookie=U64, lbasize=U64, dpa=U64, rawsize=U64,
                     slot=U32, align=U8, type_guid=guids, abstraction_guid=guids)


@pytest.mark.parametrize("label_size", [128, 256])
@given(data=st.data())
def test_label_round_trip(label_size: int, data: st.DataObject) -> None:
    label = data.draw(labels(label_size))
    raw = label.pack(label_size)
    assert len(raw) == label_size
    back = NamespaceLabel.unpack(raw, label_size)
    assert back == label
    assert NamespaceLabel.checksum_ok(raw, label_size)
    assert back.pack(label_size) == raw


@given(labels(256), st.data())
def test_label_checksum_detects_any_single_byte_corruption(label: NamespaceLabel,
                                                           data: st.DataObject) -> None:
    raw = bytearray(label.pack(256))
    pos = data.draw(st.integers(0, 255))
    raw[pos] ^= data.draw(st.integers(1, 255))
    assert not NamespaceLabel.checksum_ok(raw, 256)


def test_v11_label_has_no_checksum_or_guids() -> None:
    label = NamespaceLabel(uuid=uuid.uuid4(), type_guid=PMEM_TYPE_GUID,
                           abstraction_guid=PFN_GUID)
    raw = label.pack(128)
    assert len(raw) == 128 and NamespaceLabel.checksum_ok(raw, 128)
    back = NamespaceLabel.unpack(raw, 128)
    assert back.type_guid == NULL_GUID and back.claim_class is ClaimClass.NONE


def test_label_field_layout() -> None:
    # the golden raw case's final label (slot 1), byte for byte
    label = NamespaceLabel(uuid=uuid.UUID("11111111-2222-3333-4444-555555555555"),
                           name="golden-raw", nlabel=1, isetcookie=0x2468AC00123456,
                           lbasize=512, dpa=0, rawsize=0xF000000, slot=1)
    expect = (bytes.fromhex("11111111222233334444555555555555") + b"golden-raw".ljust(64, b"\0")
              + bytes.fromhex("00000000" "0100" "0000" "563412" "00ac682400" "0002000000000000"
                              "0000000000000000" "0000000f00000000" "01000000" "00000000"))
    assert label.pack(128) == expect


def test_v12_label_layout() -> None:
    label = NamespaceLabel(uuid=uuid.uuid4(), flags=LabelFlag.UPDATING, slot=0,
                           type_guid=PMEM_TYPE_GUID, abstraction_guid=BTT2_GUID)
    raw = label.pack(256)
    assert raw[0x80:0x90] == PMEM_TYPE_GUID.bytes_le
    assert raw[0x90:0xA0] == BTT2_GUID.bytes_le
    assert raw[0xA0:0xF8] == bytes(88)
    assert int.from_bytes(raw[0xF8:], "little") == NamespaceLabel.compute_checksum(raw)
    assert NamespaceLabel.unpack(raw, 256).updating


@pytest.mark.parametrize("bad", [
    {"name": "x" * 65}, {"name": "a\0b"}, {"nlabel": 1 << 16}, {"slot": -1},
    {"rawsize": 1 << 64}, {"align": 256},
])
def test_label_pack_rejects(bad: dict[str, object]) -> None:
    label = NamespaceLabel(uuid=uuid.uuid4(), **bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        label.pack(256)


def test_label_size_must_be_known() -> None:
    with pytest.raises(InvalidArgument):
        NamespaceLabel(uuid=uuid.uuid4()).pack(512)
    with pytest.raises(InvalidArgument):
        NamespaceLabel.unpack(bytes(100), 128)


def test_name_round_trips_non_utf8_and_64_bytes() -> None:
    raw = NamespaceLabel(uuid=uuid.uuid4(), name="n" * 64).pack(128)
    assert NamespaceLabel.unpack(raw, 128).name == "n" * 64
    odd = b"\xff\xfe-name".decode("utf-8", "surrogateescape")
    raw = NamespaceLabel(uuid=uuid.uuid4(), name=odd).pack(128)
    assert raw[16:24] == b"\xff\xfe-name\0"
    assert NamespaceLabel.unpack(raw, 128).name == odd
