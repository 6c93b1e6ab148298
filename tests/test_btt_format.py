"""The BTT's on-media format: geometry as Linux computes it, the info block, map
entries, flog entries, sequence numbers and slot-layout detection."""

from __future__ import annotations

import itertools
import struct
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.btt.format import (
    ARENA_MAX_SIZE,
    ARENA_MIN_SIZE,
    BTT_SIG,
    INFO_SIZE,
    LOG_GRP_SIZE,
    MAP_ENT_NORMAL,
    MAP_ERR_FLAG,
    MAP_TRIM_FLAG,
    NFREE,
    SUPPORTED_LBASIZES,
    V1_1,
    V2_0,
    ArenaGeometry,
    InfoBlock,
    LogEntry,
    flog_state,
    info_checksum,
    info_is_valid,
    internal_lbasize,
    linux_sector_size,
    log_indices,
    log_old_slot,
    map_decode,
    map_encode,
    map_summary,
    next_seq,
    plan_arenas,
    unpack_groups,
)
from nvdimm.errors import CorruptMetadata, InvalidArgument
from nvdimm.units import GiB, MiB

U0 = uuid.UUID(int=0)
U1 = uuid.UUID("11111111-2222-3333-4444-555555555555")
U2 = uuid.UUID("24d910a9-4ffe-4266-b91c-46e767dbe318")


# -- geometry -----------------------------------------------------------------------------

# The reference's worked examples (1 GiB namespace, BTT 1.1: rawsize = 1 GiB - 4 KiB);
# offsets there are relative to the BTT start, so add the 4 KiB initial offset.
@pytest.mark.parametrize(("lbasize", "ilba", "inlba", "enlba", "mapoff", "logoff", "info2off"), [
    (4096, 4096, 261880, 261624, 0x3FEFA000, 0x3FFFA000, 0x3FFFE000),
    (512, 512, 2080831, 2080575, 0x3F80A000, 0x3FFFA000, 0x3FFFE000),
    (520, 576, 1851222, 1850966, 0x3F8EA000, 0x3FFFA000, 0x3FFFE000),
])
def test_geometry_matches_the_reference_worked_examples(lbasize, ilba, inlba, enlba, mapoff,
                                                        logoff, info2off):
    (g,) = plan_arenas(GiB, lbasize, V1_1)
    assert (g.internal_lbasize, g.internal_nlba, g.external_nlba) == (ilba, inlba, enlba)
    assert (g.mapoff, g.logoff, g.info2off) == (mapoff + 4096, logoff + 4096, info2off + 4096)
    assert g.infooff == 4096 and g.dataoff == 8192 and g.nextoff == 0


# What Linux 6.1 wrote in the golden images (layout.json): size, sector size, version.
@pytest.mark.parametrize(("ns_size", "lbasize", "version", "enlba", "inlba", "abs_mapoff"), [
    (240 * MiB, 4096, V1_1, 61116, 61372, 0xEFBF000),  # sector
    (240 * MiB, 512, V1_1, 487390, 487646, 0xEE1F000),  # sector512
    (240 * MiB, 4096, V2_0, 61117, 61373, 0xEFBF000),  # v12-sector
    (256 * MiB, 4096, V1_1, 65208, 65464, 0xFFBB000),  # labelless-sector
    (64 * MiB, 4096, V1_1, 16104, 16360, 0x3FEB000),  # multi, namespace0.0
])
def test_geometry_matches_what_linux_wrote_in_the_goldens(ns_size, lbasize, version, enlba,
                                                          inlba, abs_mapoff):
    (g,) = plan_arenas(ns_size, lbasize, version)
    assert (g.external_nlba, g.internal_nlba, g.mapoff) == (enlba, inlba, abs_mapoff)
    assert g.info2off + INFO_SIZE == ns_size  # the backup is the namespace's last 4 KiB


@pytest.mark.parametrize(("external", "internal"), [
    (512, 512), (520, 576), (528, 576), (4096, 4096), (4104, 4160), (4160, 4160),
    (4224, 4224)])
def test_internal_block_size_is_rounded_up_to_64_bytes(external, internal):
    assert internal_lbasize(external) == internal
    assert linux_sector_size(external) == (4096 if external >= 4096 else 512)


def test_unsupported_sector_sizes_and_tiny_namespaces_are_refused():
    with pytest.raises(InvalidArgument, match="not supported"):
        plan_arenas(GiB, 1024, V1_1)
    with pytest.raises(InvalidArgument, match="at least"):
        plan_arenas(16 * MiB, 4096, V1_1)  # 16 MiB minus the 4 KiB offset is too small
    assert plan_arenas(16 * MiB, 4096, V2_0)  # BTT 2.0 starts at 0: exactly one arena fits


def test_a_namespace_over_512_gib_gets_chained_arenas_and_drops_a_short_tail():
    a, b, c = plan_arenas(2 * ARENA_MAX_SIZE + 20 * MiB, 4096, V1_1)
    assert a.size == b.size == ARENA_MAX_SIZE and a.nextoff == b.nextoff == ARENA_MAX_SIZE
    assert c.size == 20 * MiB - 4096 and c.nextoff == 0
    assert b.infooff == a.infooff + ARENA_MAX_SIZE and c.infooff == b.infooff + ARENA_MAX_SIZE
    assert b.external_lba_start == a.external_nlba
    assert c.external_lba_start == a.external_nlba + b.external_nlba
    # A remainder under 16 MiB is wasted; the arena before it becomes the last one.
    (only,) = plan_arenas(ARENA_MAX_SIZE + 8 * MiB, 4096, V1_1)
    assert only.size == ARENA_MAX_SIZE and only.nextoff == 0


@given(size=st.integers(ARENA_MIN_SIZE + 4096, 3 * ARENA_MAX_SIZE),
       lbasize=st.sampled_from(SUPPORTED_LBASIZES), v2=st.booleans())
def test_planned_arenas_never_overlap_and_hold_what_they_promise(size, lbasize, v2):
    version = V2_0 if v2 else V1_1
    arenas = plan_arenas(size, lbasize, version)
    assert arenas[0].infooff == version.initial_offset
    for g in arenas:
        assert g.internal_nlba - g.external_nlba == NFREE
        assert g.dataoff + g.internal_nlba * g.internal_lbasize <= g.mapoff
        assert g.mapoff + g.external_nlba * 4 <= g.logoff
        assert g.logoff + NFREE * LOG_GRP_SIZE <= g.info2off
        assert g.info2off + INFO_SIZE <= g.infooff + g.size <= size
        assert g.internal_nlba < 1 << 30  # fits the map entry's 30 bits
    for a, b in itertools.pairwise(arenas):
        assert a.nextoff == a.size and b.infooff == a.infooff + a.size
    assert arenas[-1].nextoff == 0


# -- info block ------------------------------------------------------------------------------


def _info() -> InfoBlock:
    (g,) = plan_arenas(240 * MiB, 4096, V1_1)
    return g.info_block(U2, U1, V1_1)


def test_info_block_round_trips_and_carries_a_valid_checksum():
    info = _info()
    raw = info.pack()
    assert len(raw) == INFO_SIZE and raw[:16] == BTT_SIG
    back = InfoBlock.unpack(raw)
    assert back.checksum == info_checksum(raw)
    assert attrs_equal_except_checksum(back, info)
    assert back.pack() == raw
    assert info_is_valid(raw, U1)
    # Offsets are stored relative to the arena's info block.
    assert (back.dataoff, back.mapoff, back.logoff, back.info2off) == (
        0x1000, 0xEFBE000, 0xEFFA000, 0xEFFE000)


def attrs_equal_except_checksum(a: InfoBlock, b: InfoBlock) -> bool:
    import attrs

    return attrs.evolve(a, checksum=0) == attrs.evolve(b, checksum=0)


def test_field_offsets_are_linux_btt_sb():
    raw = _info().pack()
    assert raw[16:32] == U2.bytes and raw[32:48] == U1.bytes
    _flags, major, minor, elba, enlba, ilba, inlba, nfree, infosize = struct.unpack_from(
        "<IHHIIIIII", raw, 48)
    assert (major, minor, elba, enlba, ilba, inlba, nfree, infosize) == (
        1, 1, 4096, 61116, 4096, 61372, 256, 4096)
    nextoff, dataoff = struct.unpack_from("<QQ", raw, 80)
    assert (nextoff, dataoff) == (0, 0x1000)
    assert raw[120:4088] == bytes(3968)


def test_validity_is_signature_parent_uuid_and_checksum_not_the_error_flag():
    raw = bytearray(_info().pack())
    assert info_is_valid(bytes(raw), U1)
    assert not info_is_valid(bytes(raw), uuid.uuid4())  # another namespace's BTT
    torn = bytearray(raw)
    torn[100] ^= 1
    assert not info_is_valid(bytes(torn), U1)
    nosig = bytearray(raw)
    nosig[0] = ord("X")
    assert not info_is_valid(bytes(nosig), U1)
    # A null parent uuid is accepted for any namespace (label-less namespaces have none).
    (g,) = plan_arenas(240 * MiB, 4096, V1_1)
    orphan = g.info_block(U2, U0, V1_1).pack()
    assert info_is_valid(orphan, U1) and info_is_valid(orphan, None)
    flagged = g.info_block(U2, U1, V1_1, flags=1).pack()
    assert info_is_valid(flagged, U1)


def test_geometry_from_an_info_block_is_the_geometry_that_wrote_it():
    for g in plan_arenas(2 * ARENA_MAX_SIZE, 520, V2_0):
        info = InfoBlock.unpack(g.info_block(U2, U1, V2_0).pack())
        assert ArenaGeometry.from_info(info, g.infooff, g.external_lba_start) == g


# -- map entries ------------------------------------------------------------------------------


def test_map_flags_are_z_bit_31_and_e_bit_30_both_set_meaning_normal():
    assert struct.unpack("<I", map_encode(5))[0] == 5 | MAP_ENT_NORMAL
    assert struct.unpack("<I", map_encode(5, zero=True))[0] == 5 | MAP_TRIM_FLAG
    assert struct.unpack("<I", map_encode(5, error=True))[0] == 5 | MAP_ERR_FLAG
    with pytest.raises(InvalidArgument):
        map_encode(5, zero=True, error=True)
    assert map_decode(0, 42) == (42, False, False)  # never written: identity
    assert map_decode(7 | MAP_ENT_NORMAL, 42) == (7, False, False)
    assert map_decode(7 | MAP_TRIM_FLAG, 42) == (7, True, False)
    assert map_decode(7 | MAP_ERR_FLAG, 42) == (7, False, True)


def test_map_summary_resolves_identity_and_reports_duplicates():
    raw = struct.pack("<4I", 0, 9 | MAP_ENT_NORMAL, 0, 3 | MAP_ERR_FLAG)
    s = map_summary(raw)
    assert s.lookups == (0, 9, 2, 3) and s.injective and s.max_block == 9
    dup = map_summary(struct.pack("<2I", 1 | MAP_ENT_NORMAL, 0))
    assert dup.lookups == (1, 1) and not dup.injective


# -- flog ---------------------------------------------------------------------------------------


def test_log_entry_is_written_as_two_halves_with_seq_in_the_second():
    e = LogEntry(lba=3, old_map=10, new_map=20, seq=2)
    h1, h2 = e.halves()
    assert h1 == struct.pack("<II", 3, 10) and h2 == struct.pack("<II", 20, 2)
    assert h1 + h2 == e.pack() and LogEntry.unpack(e.pack()) == e
    assert LogEntry(0, 0, 0, 0).is_padding and not e.is_padding


def test_sequence_numbers_cycle_1_2_3_and_0_stays_0():
    assert [next_seq(s) for s in (0, 1, 2, 3)] == [0, 2, 3, 1]


@pytest.mark.parametrize(("seq0", "seq1", "old"), [
    (1, 0, 1),  # fresh lane: slot 1 never written
    (1, 2, 0), (2, 1, 1), (2, 3, 0), (3, 2, 1),
    (3, 1, 0), (1, 3, 1),  # the wrap: 1 follows 3
    (0, 2, 0),  # slot 0 empty: Linux treats it as the older one
])
def test_older_slot_by_the_difference_rule(seq0, seq1, old):
    assert log_old_slot(seq0, seq1) == old


@pytest.mark.parametrize(("seq0", "seq1"), [(2, 2), (3, 3), (3, 4), (4, 2)])
def test_equal_or_impossible_sequence_pairs_are_corruption(seq0, seq1):
    with pytest.raises(CorruptMetadata):
        log_old_slot(seq0, seq1)


def _flog(lanes: int, used: dict[int, tuple[LogEntry, ...]], layout=(0, 1)) -> bytes:
    out = bytearray(lanes * LOG_GRP_SIZE)
    for lane in range(lanes):
        ents = used.get(lane, (LogEntry(lane, 100 + lane, 100 + lane, 1),))
        for slot, e in zip(layout, ents, strict=False):
            off = lane * LOG_GRP_SIZE + slot * 16
            out[off:off + 16] = e.pack()
    return bytes(out)


def test_slot_layout_detection_new_old_and_untouched():
    fresh = _flog(4, {})
    assert log_indices(unpack_groups(fresh)) == (0, 1)  # never written: assume new format
    used = {2: (LogEntry(2, 102, 102, 1), LogEntry(5, 5, 102, 2))}
    assert log_indices(unpack_groups(_flog(4, used))) == (0, 1)
    assert log_indices(unpack_groups(_flog(4, used, layout=(0, 2)))) == (0, 2)
    with pytest.raises(CorruptMetadata, match="unknown padding scheme"):
        log_indices(unpack_groups(_flog(4, used, layout=(1, 3))))
    # Once the layout is known, an entry in a padding slot is corruption.
    bad = bytearray(_flog(4, used))
    bad[3 * LOG_GRP_SIZE + 48:3 * LOG_GRP_SIZE + 64] = LogEntry(1, 2, 3, 1).pack()
    with pytest.raises(CorruptMetadata):
        log_indices(unpack_groups(bytes(bad)))


def test_flog_state_finds_each_lanes_newest_entry():
    used = {1: (LogEntry(7, 8, 8, 3), LogEntry(7, 8, 9, 1))}  # 1 follows 3: slot 1 newest
    state = flog_state(_flog(3, used))
    assert state.index == (0, 1)
    assert state.newest[0] == (0, 100, 100, 1) and state.new_slot[0] == 0
    assert state.newest[1] == (7, 8, 9, 1) and state.new_slot[1] == 1
    with pytest.raises(CorruptMetadata, match="lane 1"):
        flog_state(_flog(3, {1: (LogEntry(7, 8, 8, 2), LogEntry(7, 8, 9, 2))}))
