"""The BTT's on-media format: info block, map entries, flog, and arena geometry.

This module is the only place the BTT's byte offsets appear. Everything is
little-endian, as Linux writes it (``drivers/nvdimm/btt.h``; facts in
``../shared/reference/linux-stack.md`` section 1).

A namespace in sector mode holds one or more *arenas* of at most 512 GiB, each laid
out as::

    [info block 4K][data blocks ...][map][flog][backup info block 4K]

Version 1.1 (Linux's own, label claim class none or BTT) starts arena 0 at namespace
offset 4 KiB; version 2.0 (UEFI 2.7, claim class BTT2 from a v1.2 label) at 0.

Offsets in :class:`ArenaGeometry` are *absolute namespace offsets* (the initial offset
included), so every reader and writer addresses the namespace directly. The info block
itself stores them relative to the arena's info block, as Linux does.

A worked example (a 240 MiB labelled namespace with 4 KiB sectors, BTT 1.1)::

    >>> g, = plan_arenas(240 << 20, 4096, V1_1)
    >>> g.external_nlba, g.internal_nlba, hex(g.mapoff), hex(g.info2off)
    (61116, 61372, '0xefbf000', '0xefff000')
"""

from __future__ import annotations

import functools
import itertools
import operator
import struct
import uuid as uuidlib
from collections.abc import Sequence

import attrs

from nvdimm.errors import CorruptMetadata, InvalidArgument
from nvdimm.label_format import fletcher64

# -- constants (btt.h) -----------------------------------------------------------------

BTT_SIG = b"BTT_ARENA_INFO\x00\x00"
PG = 4096  # BTT_PG_SIZE: unit for the info block, map and log rounding
INFO_SIZE = 4096  # sizeof(struct btt_sb)
ARENA_MIN_SIZE = 1 << 24  # 16 MiB
ARENA_MAX_SIZE = 1 << 39  # 512 GiB
MAP_ENT_SIZE = 4
LOG_ENT_SIZE = 16
LOG_GRP_SIZE = 64  # one lane's log group: 4 slots, two of them padding
LOG_HALF = 8  # a flog entry is written as two 8-byte halves, seq in the second
NFREE = 256  # BTT_DEFAULT_NFREE = ND_MAX_LANES
INT_LBASIZE_ALIGNMENT = 64
LOG_SEQ_INIT = 1
IB_FLAG_ERROR = 0x1

MAP_TRIM_FLAG = 1 << 31  # Z: reads return zeroes
MAP_ERR_FLAG = 1 << 30  # E: reads fail with EIO
MAP_ENT_NORMAL = MAP_TRIM_FLAG | MAP_ERR_FLAG  # both set: a normal mapping
MAP_LBA_MASK = (1 << 30) - 1

RTT_VALID = 1 << 31
RTT_INVALID = 0

SUPPORTED_LBASIZES = (512, 520, 528, 4096, 4104, 4160, 4224)

_NEXT_SEQ = (0, 2, 3, 1)  # nd_inc_seq: 0 stays 0, 1 -> 2 -> 3 -> 1


def next_seq(seq: int) -> int:
    """Linux's ``nd_inc_seq``: the cyclic flog sequence 1 -> 2 -> 3 -> 1 (0 stays 0)."""
    return _NEXT_SEQ[seq & 3]


def linux_sector_size(lbasize: int) -> int:
    """The sector size Linux exposes for a BTT of ``lbasize``: 4096 or 512 (the rest of
    each block, if any, is block-integrity metadata)."""
    return 4096 if lbasize >= 4096 else 512


def internal_lbasize(external: int) -> int:
    """Linux rounds the external block size up to 64 bytes (PMDK would use 256)."""
    return -(-external // INT_LBASIZE_ALIGNMENT) * INT_LBASIZE_ALIGNMENT


@attrs.frozen(slots=True)
class BttVersion:
    """A BTT flavour: its version numbers and where arena 0 starts in the namespace."""

    major: int
    minor: int
    initial_offset: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


V1_1 = BttVersion(1, 1, 4096)
V2_0 = BttVersion(2, 0, 0)
VERSIONS = (V1_1, V2_0)


def version_of(major: int, minor: int) -> BttVersion | None:
    for v in VERSIONS:
        if (v.major, v.minor) == (major, minor):
            return v
    return None


# -- the info block (struct btt_sb) ------------------------------------------------------

_INFO = struct.Struct("<16s16s16sIHHIIIIIIQQQQQ3968xQ")
_CHECKSUM_OFF = INFO_SIZE - 8
assert _INFO.size == INFO_SIZE


def info_checksum(raw: bytes | bytearray | memoryview) -> int:
    """Fletcher-64 over the 4096 bytes with the checksum field read as zero."""
    return _info_checksum(bytes(raw[:_CHECKSUM_OFF]))


@functools.lru_cache(maxsize=16)
def _info_checksum(head: bytes) -> int:
    # Memoised: crash exploration verifies the same few info blocks many times over.
    return fletcher64(head + bytes(INFO_SIZE - len(head)))


@attrs.frozen(slots=True)
class InfoBlock:
    """One arena's info block. Offsets are relative to the block itself, as on media."""

    uuid: uuidlib.UUID
    parent_uuid: uuidlib.UUID
    flags: int
    version_major: int
    version_minor: int
    external_lbasize: int
    external_nlba: int
    internal_lbasize: int
    internal_nlba: int
    nfree: int
    infosize: int
    nextoff: int
    dataoff: int
    mapoff: int
    logoff: int
    info2off: int
    signature: bytes = BTT_SIG
    checksum: int = 0  # as read from media; pack() always writes a fresh one

    def pack(self) -> bytes:
        """The 4096 bytes Linux writes, with a correct checksum."""
        raw = _INFO.pack(self.signature, self.uuid.bytes, self.parent_uuid.bytes,
                         self.flags, self.version_major, self.version_minor,
                         self.external_lbasize, self.external_nlba, self.internal_lbasize,
                         self.internal_nlba, self.nfree, self.infosize, self.nextoff,
                         self.dataoff, self.mapoff, self.logoff, self.info2off, 0)
        return raw[:_CHECKSUM_OFF] + struct.pack("<Q", fletcher64(raw))

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview) -> InfoBlock:
        if len(raw) < INFO_SIZE:
            raise CorruptMetadata(f"BTT info block is {len(raw)} bytes, not {INFO_SIZE}")
        (sig, uid, puid, flags, vmaj, vmin, elba, enlba, ilba, inlba, nfree, infosize,
         nextoff, dataoff, mapoff, logoff, info2off, csum) = _INFO.unpack_from(raw)
        return cls(uuidlib.UUID(bytes=uid), uuidlib.UUID(bytes=puid), flags, vmaj, vmin,
                   elba, enlba, ilba, inlba, nfree, infosize, nextoff, dataoff, mapoff,
                   logoff, info2off, sig, csum)

    @property
    def version(self) -> str:
        return f"{self.version_major}.{self.version_minor}"


def info_is_valid(raw: bytes, parent_uuid: uuidlib.UUID | None) -> bool:
    """Linux's ``nd_btt_arena_is_valid`` (and ndctl's ``btt_info_verify``): the
    signature, a parent uuid that is null or the namespace's, and the checksum.
    A set error flag does not make the block invalid."""
    if raw[:16] != BTT_SIG:
        return False
    parent = raw[32:48]
    if any(parent) and parent != (parent_uuid or uuidlib.UUID(int=0)).bytes:
        return False
    stored = int.from_bytes(raw[_CHECKSUM_OFF:INFO_SIZE], "little")
    return stored == info_checksum(raw)


# -- map entries --------------------------------------------------------------------------

_MAP_ENT = struct.Struct("<I")


def map_encode(postmap: int, *, zero: bool = False, error: bool = False) -> bytes:
    """A map entry as Linux's ``btt_map_write`` stores it: no flag asked for is a normal
    mapping (both bits set); Z alone or E alone otherwise; both at once is refused."""
    if zero and error:
        raise InvalidArgument("a map entry cannot ask for both the zero and the error flag")
    flags = MAP_TRIM_FLAG if zero else MAP_ERR_FLAG if error else MAP_ENT_NORMAL
    return _MAP_ENT.pack((postmap & MAP_LBA_MASK) | flags)


_MAP_PACK = _MAP_ENT.pack


def map_normal(postmap: int) -> bytes:
    """A normal map entry for ``postmap`` (the write path's; same as :func:`map_encode`)."""
    return _MAP_PACK((postmap & MAP_LBA_MASK) | MAP_ENT_NORMAL)


def map_decode(raw: int, premap: int) -> tuple[int, bool, bool]:
    """``(postmap, zero, error)`` of a raw map entry, as ``btt_map_read`` sees it: the
    initial (never written) state maps a block to itself."""
    ze = raw >> 30
    if ze == 0:
        return premap, False, False
    return raw & MAP_LBA_MASK, ze == 2, ze == 1


def map_entries(raw: bytes | bytearray | memoryview) -> tuple[int, ...]:
    """A run of raw map entries."""
    return struct.unpack(f"<{len(raw) // MAP_ENT_SIZE}I", raw)


@attrs.frozen(slots=True)
class MapSummary:
    """A whole map decoded: ``lookups[premap]`` is the block each premap reads from
    (initial entries resolved to identity; flags stripped), with what the permutation
    checks need. Build with :func:`map_summary`."""

    data: bytes
    lookups: tuple[int, ...]
    blocks: frozenset[int]
    max_block: int

    @property
    def injective(self) -> bool:
        """No two premaps map to the same block."""
        return len(self.blocks) == len(self.lookups)


@functools.lru_cache(maxsize=8)
def map_summary(raw: bytes) -> MapSummary:
    """Decode a map (memoised on its bytes: a map is re-read far more often than it
    changes, above all when many crash images share it)."""
    ents = map_entries(raw)
    # Identity for every entry, then the written ones (either flag set) decoded: the
    # scan for written entries runs in C, which matters for maps of 10^5 entries.
    out = list(range(len(ents)))
    for i in itertools.compress(range(len(ents)),
                                map(operator.ge, ents, itertools.repeat(MAP_ERR_FLAG))):
        out[i] = ents[i] & MAP_LBA_MASK
    lookups = tuple(out)
    return MapSummary(bytes(raw), lookups, frozenset(lookups), max(lookups, default=-1))


# -- the flog -------------------------------------------------------------------------------

_LOG_ENT = struct.Struct("<IIII")
_LOG_HALF = struct.Struct("<II")


@attrs.frozen(slots=True)
class LogEntry:
    """One flog slot: ``lba`` was remapped from ``old_map`` to ``new_map`` (postmap
    blocks; ``old_map`` may carry the E flag), committed with sequence number ``seq``."""

    lba: int
    old_map: int
    new_map: int
    seq: int

    def pack(self) -> bytes:
        return _LOG_ENT.pack(self.lba, self.old_map, self.new_map, self.seq)

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview, off: int = 0) -> LogEntry:
        return cls(*_LOG_ENT.unpack_from(raw, off))

    def halves(self) -> tuple[bytes, bytes]:
        """The two 8-byte writes Linux makes, in order: ``{lba, old_map}`` then
        ``{new_map, seq}`` (so the sequence number is the last thing to land)."""
        return log_halves(self.lba, self.old_map, self.new_map, self.seq)

    @property
    def is_padding(self) -> bool:
        return not (self.lba or self.old_map or self.new_map or self.seq)


_HALF_PACK = _LOG_HALF.pack
log_entry_bytes = _LOG_ENT.pack
"""``log_entry_bytes(lba, old_map, new_map, seq)``: a whole flog entry, both halves."""


def log_halves(lba: int, old_map: int, new_map: int, seq: int) -> tuple[bytes, bytes]:
    """A flog entry's two 8-byte halves, ``{lba, old_map}`` and ``{new_map, seq}``."""
    return _HALF_PACK(lba, old_map), _HALF_PACK(new_map, seq)


LogGroup = tuple[LogEntry, LogEntry, LogEntry, LogEntry]


def unpack_group(raw: bytes | bytearray | memoryview, off: int = 0) -> LogGroup:
    """A lane's 64-byte log group: four slots (two real, two padding)."""
    a, b, c, d = (LogEntry(*_LOG_ENT.unpack_from(raw, off + i * LOG_ENT_SIZE))
                  for i in range(4))
    return a, b, c, d


def unpack_groups(raw: bytes | bytearray | memoryview) -> list[tuple[int, ...]]:
    """Every lane's group as 16 plain ints (4 slots x lba, old, new, seq): the fast form
    used when a whole flog is scanned."""
    n = len(raw) // LOG_GRP_SIZE
    flat = struct.unpack(f"<{n * 16}I", raw[:n * LOG_GRP_SIZE])
    return [flat[i * 16:(i + 1) * 16] for i in range(n)]


def log_old_slot(seq0: int, seq1: int) -> int:
    """Which slot of a lane's pair (0 or 1) holds the *older* entry (``btt_log_get_old``).

    Slot 0 with seq 0 is treated as older (Linux pretends its seq is 1); equal values
    and sums above 5 are corruption (:class:`CorruptMetadata`). The newer entry is the
    other slot; the difference rule handles the 3 -> 1 wrap.
    """
    if seq0 == 0:
        return 0
    if seq0 == seq1 or seq0 + seq1 > 5:
        raise CorruptMetadata(f"log corruption: sequence numbers [{seq0}, {seq1}]")
    if seq0 < seq1:
        return 0 if seq1 - seq0 == 1 else 1
    return 1 if seq0 - seq1 == 1 else 0


def _is_pad(g: Sequence[int], slot: int) -> bool:
    b = slot * 4
    return not (g[b] or g[b + 1] or g[b + 2] or g[b + 3])


def log_indices(groups: Sequence[Sequence[int]]) -> tuple[int, int]:
    """Which two slots of each log group hold entries: (0, 1) for kernels >= 4.15, UEFI
    and PMDK, (0, 2) for older Linux. Detected from the padding as Linux's
    ``log_set_indices`` does; a log never written (every lane in its initial state, one
    entry and three padding slots) is taken as (0, 1). Raises :class:`CorruptMetadata`
    for anything else. ``groups`` are 16-int groups (:func:`unpack_groups`)."""
    idx = [-1, -1]
    idx_set = False
    initial = True
    next_idx = 0
    for g in groups:
        pad_count = 0
        for j in range(4):
            if not idx_set:
                if _is_pad(g, j):
                    pad_count += 1
                    continue
                if next_idx == 1 and j == idx[0]:
                    continue
                if next_idx >= 2:
                    raise CorruptMetadata("log: too many non-padding slots in a group")
                idx[next_idx] = j
                next_idx += 1
                if next_idx == 2:
                    idx_set = True
            elif j == idx[0]:
                if _is_pad(g, j):
                    raise CorruptMetadata("log: a lane's first slot is empty")
            elif j != idx[1] and not _is_pad(g, j):
                raise CorruptMetadata("log: an entry where padding was expected")
        if pad_count < 3:
            initial = False
    if not initial and not idx_set:
        raise CorruptMetadata("log: unable to deduce log/padding indices")
    if initial:
        idx[1] = 1
    if idx[0] != 0 or idx[1] not in (1, 2):
        raise CorruptMetadata("Found an unknown padding scheme")
    return idx[0], idx[1]


@attrs.frozen(slots=False)
class FlogState:
    """A flog as recovery reads it: the slot layout, and per lane its newest entry
    ``(lba, old_map, new_map, seq)`` and which of the pair holds it (0 or 1).
    Build with :func:`flog_state`."""

    index: tuple[int, int]
    groups: tuple[tuple[int, ...], ...]
    newest: tuple[tuple[int, int, int, int], ...]
    new_slot: tuple[int, ...]

    @functools.cached_property
    def moved(self) -> tuple[int, ...]:
        """Lanes whose newest entry remapped a block (old != new, flags stripped): the
        only ones recovery may have to roll forward."""
        return tuple(lane for lane, (_, old, new, _) in enumerate(self.newest)
                     if old & MAP_LBA_MASK != new & MAP_LBA_MASK)

    @functools.cached_property
    def flagged(self) -> tuple[int, ...]:
        """Lanes whose free block carries the error flag (and is not a normal entry)."""
        return tuple(lane for lane, (_, old, _, _) in enumerate(self.newest)
                     if old & MAP_ERR_FLAG and old & MAP_ENT_NORMAL != MAP_ENT_NORMAL)


@functools.lru_cache(maxsize=8)
def flog_state(raw: bytes) -> FlogState:
    """Parse a whole flog (Linux's ``log_set_indices`` then, per lane,
    ``btt_log_read(LOG_NEW_ENT)``). Raises :class:`CorruptMetadata` naming the lane.
    Memoised on the bytes."""
    groups = tuple(unpack_groups(raw))
    index = log_indices(groups)
    i0, i1 = index
    newest = []
    new_slot = []
    for lane, g in enumerate(groups):
        try:
            new = 1 - log_old_slot(g[i0 * 4 + 3], g[i1 * 4 + 3])
        except CorruptMetadata as e:
            raise CorruptMetadata(f"{e.message}: lane {lane}") from None
        b = index[new] * 4
        newest.append((g[b], g[b + 1], g[b + 2], g[b + 3]))
        new_slot.append(new)
    return FlogState(index, groups, tuple(newest), tuple(new_slot))


# -- geometry -----------------------------------------------------------------------------


@attrs.frozen(slots=True)
class ArenaGeometry:
    """Where one arena's parts are, as absolute namespace offsets, and its block counts."""

    infooff: int
    size: int
    nextoff: int  # relative to infooff, as stored; 0 for the last arena
    external_lbasize: int
    internal_lbasize: int
    external_nlba: int
    internal_nlba: int
    nfree: int
    dataoff: int
    mapoff: int
    logoff: int
    info2off: int
    external_lba_start: int = 0

    @property
    def mapsize(self) -> int:
        return self.logoff - self.mapoff

    @property
    def logsize(self) -> int:
        return self.info2off - self.logoff

    def data_off(self, postmap: int) -> int:
        """Namespace offset of internal block ``postmap``."""
        return self.dataoff + postmap * self.internal_lbasize

    def map_off(self, premap: int) -> int:
        return self.mapoff + premap * MAP_ENT_SIZE

    def group_off(self, lane: int) -> int:
        return self.logoff + lane * LOG_GRP_SIZE

    def slot_off(self, lane: int, slot: int) -> int:
        """Namespace offset of slot ``slot`` (0..3) of ``lane``'s log group."""
        return self.logoff + lane * LOG_GRP_SIZE + slot * LOG_ENT_SIZE

    def slot_pairs(self, index: tuple[int, int]) -> tuple[tuple[int, int], ...]:
        """Per lane, the namespace offsets of its two real log slots."""
        return _slot_pairs(self.logoff, self.nfree, index)

    def info_block(self, uuid: uuidlib.UUID, parent_uuid: uuidlib.UUID,
                   version: BttVersion, flags: int = 0) -> InfoBlock:
        """The info block Linux's ``btt_arena_write_layout`` writes for this arena."""
        base = self.infooff
        return InfoBlock(uuid, parent_uuid, flags, version.major, version.minor,
                         self.external_lbasize, self.external_nlba, self.internal_lbasize,
                         self.internal_nlba, self.nfree, INFO_SIZE, self.nextoff,
                         self.dataoff - base, self.mapoff - base, self.logoff - base,
                         self.info2off - base)

    @classmethod
    def from_info(cls, info: InfoBlock, infooff: int, lba_start: int = 0) -> ArenaGeometry:
        """Linux's ``parse_arena_meta``: offsets made absolute; the arena's size is
        ``nextoff``, or for the last arena its extent up to the backup info block."""
        info2off = infooff + info.info2off
        size = info.nextoff if info.nextoff else info2off - infooff + INFO_SIZE
        return cls(infooff, size, info.nextoff, info.external_lbasize,
                   info.internal_lbasize, info.external_nlba, info.internal_nlba,
                   info.nfree, infooff + info.dataoff, infooff + info.mapoff,
                   infooff + info.logoff, info2off, lba_start)


@functools.lru_cache(maxsize=16)
def _slot_pairs(logoff: int, nfree: int, index: tuple[int, int]
                ) -> tuple[tuple[int, int], ...]:
    i0, i1 = index
    return tuple((logoff + lane * LOG_GRP_SIZE + i0 * LOG_ENT_SIZE,
                  logoff + lane * LOG_GRP_SIZE + i1 * LOG_ENT_SIZE) for lane in range(nfree))


def alloc_arena(size: int, lbasize: int, infooff: int, lba_start: int = 0,
                nextoff: int = 0) -> ArenaGeometry:
    """Linux's ``alloc_arena``: lay out an arena of ``size`` bytes at ``infooff``."""
    ilba = internal_lbasize(lbasize)
    available = size - size % PG
    available -= 2 * PG  # info block and its backup
    logsize = -(-NFREE * LOG_GRP_SIZE // PG) * PG
    available -= logsize
    internal_nlba = (available - PG) // (ilba + MAP_ENT_SIZE)
    external_nlba = internal_nlba - NFREE
    mapsize = -(-external_nlba * MAP_ENT_SIZE // PG) * PG
    datasize = available - mapsize
    dataoff = infooff + PG
    mapoff = dataoff + datasize
    logoff = mapoff + mapsize
    info2off = logoff + logsize
    return ArenaGeometry(infooff, size, nextoff, lbasize, ilba, external_nlba, internal_nlba,
                         NFREE, dataoff, mapoff, logoff, info2off, lba_start)


def plan_arenas(ns_size: int, lbasize: int, version: BttVersion) -> list[ArenaGeometry]:
    """Linux's ``create_arenas``: cut ``ns_size - initial_offset`` into arenas of at most
    512 GiB front to back, dropping a tail under 16 MiB."""
    if lbasize not in SUPPORTED_LBASIZES:
        raise InvalidArgument(f"BTT sector size {lbasize} is not supported; choose one of "
                              f"{', '.join(map(str, SUPPORTED_LBASIZES))}")
    rawsize = ns_size - version.initial_offset
    if rawsize < ARENA_MIN_SIZE:
        raise InvalidArgument(f"a BTT needs at least {ARENA_MIN_SIZE + version.initial_offset}"
                              f" bytes of namespace, not {ns_size}")
    arenas: list[ArenaGeometry] = []
    remaining = rawsize
    off = version.initial_offset
    lba = 0
    while remaining:
        size = min(ARENA_MAX_SIZE, remaining)
        remaining -= size
        if size < ARENA_MIN_SIZE:
            break
        nextoff = size if remaining >= ARENA_MIN_SIZE else 0
        g = alloc_arena(size, lbasize, off, lba, nextoff)
        arenas.append(g)
        lba += g.external_nlba
        off += size
    return arenas
