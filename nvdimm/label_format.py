"""On-media layout of the namespace label storage area (UEFI 2.7 labels, as Linux uses them).

This module is the only place the byte offsets of index blocks and namespace labels
appear. It packs and unpacks; the rules about which index is current, which slot to
use and in what order to write live in :mod:`nvdimm.label`.

Area layout: ``[index 0][index 1][label slot 0][label slot 1]...``; both index blocks
are ``index_size(nslot)`` bytes (256 for a 128 KiB area), labels are 128 bytes (v1.1)
or 256 bytes (v1.2).

Checksums are Linux's "Fletcher-64" (see :func:`fletcher64`). ``pack`` always writes a
freshly computed checksum, as Linux never writes a stale one; ``unpack`` keeps the
stored value in ``checksum`` (which takes no part in equality) and
``checksum_ok(buf)`` says whether the bytes verify.
"""

from __future__ import annotations

import enum
import struct
import uuid as uuidlib
from collections.abc import Iterable, Sequence

import attrs

from nvdimm.errors import InvalidArgument

# -- constants -------------------------------------------------------------------------

NSINDEX_SIGNATURE = b"NAMESPACE_INDEX\0"
NSINDEX_ALIGN = 256
NSLABEL_NAME_LEN = 64
LABEL_SIZE_V11 = 128
LABEL_SIZE_V12 = 256
LABEL_SIZES = (LABEL_SIZE_V11, LABEL_SIZE_V12)
# UEFI 2.7: room for two 256-byte index blocks and two 256-byte labels.
ND_LABEL_MIN_SIZE = 256 * 4
# The kernel keeps the bitmap in unsigned longs; ndctl fills whole longs with ones.
BITS_PER_LONG = 64
# The modelled host is x86_64: "native" word order (le=False) is little-endian.
HOST_BYTEORDER = "little"

NULL_GUID = uuidlib.UUID(int=0)
# ACPI NFIT SPA range type "persistent memory"; v1.2 labels carry it as type_guid.
PMEM_TYPE_GUID = uuidlib.UUID("66f0d379-b4f3-4074-ac43-0d3318b78cdb")
BTT_GUID = uuidlib.UUID("8aed63a2-29a2-4c66-8b12-f05d15d3922a")
BTT2_GUID = uuidlib.UUID("18633bfc-1735-4217-8ac9-17239282d3f8")
PFN_GUID = uuidlib.UUID("266400ba-fb9f-4677-bcb0-968f11d0d225")
DAX_GUID = uuidlib.UUID("97a86d9c-3cdd-4eda-986f-5068b4f80088")


class LabelFlag(enum.IntFlag):
    """Namespace label ``flags``. Linux itself only ever writes UPDATING (or nothing)."""

    ROLABEL = 0x1
    LOCAL = 0x2  # DIMM-local (BLK) label, legacy
    BTT = 0x4  # v1.1-era "has a BTT" marker
    UPDATING = 0x8  # written while not every DIMM of the set carries the new label


class ClaimClass(enum.Enum):
    """Personality recorded in a v1.2 label's ``abstraction_guid``."""

    NONE = "none"
    BTT = "btt"  # BTT v1.1 layout
    BTT2 = "btt2"  # BTT v2.0 (UEFI) layout
    PFN = "pfn"
    DAX = "dax"
    UNKNOWN = "unknown"  # a GUID Linux does not know; it leaves such labels untouched


_CLAIM_GUIDS = {
    ClaimClass.NONE: NULL_GUID,
    ClaimClass.BTT: BTT_GUID,
    ClaimClass.BTT2: BTT2_GUID,
    ClaimClass.PFN: PFN_GUID,
    ClaimClass.DAX: DAX_GUID,
}


def claim_class_of_guid(guid: uuidlib.UUID) -> ClaimClass:
    """``BTT2_GUID`` -> ``ClaimClass.BTT2``; unknown GUIDs give ``ClaimClass.UNKNOWN``."""
    for cls, g in _CLAIM_GUIDS.items():
        if g == guid:
            return cls
    return ClaimClass.UNKNOWN


def claim_class_guid(claim: ClaimClass | str, version: str = "1.2") -> uuidlib.UUID:
    """GUID Linux writes for a claim class. ``"btt"`` means BTT2 on a v1.2 label area
    (Linux picks the BTT 2.0 layout there) and BTT on v1.1."""
    cls = ClaimClass(claim) if isinstance(claim, str) else claim
    if cls is ClaimClass.UNKNOWN:
        raise InvalidArgument("the unknown claim class has no GUID")
    if cls is ClaimClass.BTT and version != "1.1":
        cls = ClaimClass.BTT2
    return _CLAIM_GUIDS[cls]


# -- Fletcher-64 -----------------------------------------------------------------------


def fletcher64(data: bytes | bytearray | memoryview, le: bool = True) -> int:
    """Linux's ``nd_fletcher64``: 32-bit words, ``lo`` mod 2^32, ``hi`` sums ``lo``.

    Not the textbook Fletcher (no 2^32-1 modulus). Trailing bytes that do not fill a
    word are ignored. ``le=False`` means CPU-native order, which on the modelled
    x86_64 host reads the same as little-endian.

    >>> hex(fletcher64(bytes(range(16))))
    '0x463c322824201c18'
    """
    n = len(data) // 4
    order = "<" if le or HOST_BYTEORDER == "little" else ">"
    lo = hi = 0
    for w in struct.unpack_from(f"{order}{n}I", data):
        lo = (lo + w) & 0xFFFFFFFF
        hi += lo
    return ((hi << 32) | lo) & 0xFFFFFFFFFFFFFFFF


def _sum_without(buf: bytes | bytearray | memoryview, field_off: int) -> int:
    """Checksum of ``buf`` with its 8-byte checksum field at ``field_off`` read as zero."""
    tmp = bytearray(buf)
    tmp[field_off:field_off + 8] = bytes(8)
    return fletcher64(tmp)


# -- geometry --------------------------------------------------------------------------


def _align(x: int, a: int) -> int:
    return -(-x // a) * a


def index_size(nslot: int) -> int:
    """Bytes of one index block describing ``nslot`` slots: header plus bitmap, rounded
    up to 256. ``index_size(1020) == 256``, ``index_size(2040) == 512``."""
    return _align(_INDEX_HDR.size + (nslot + 7) // 8, NSINDEX_ALIGN)


def num_label_slots(config_size: int, label_size: int) -> int:
    """Linux's slot count: size the index for ``config_size / label_size`` slots, then
    fill what is left after two such index blocks. 128 KiB -> 1020 (128 B) / 510 (256 B)."""
    n = index_size(config_size // label_size) // NSINDEX_ALIGN
    return (config_size - 2 * NSINDEX_ALIGN * n) // label_size


def area_index_size(config_size: int, label_size: int) -> int | None:
    """Index block size Linux uses for this area and label size, or None when the area
    cannot hold two index blocks and at least two labels."""
    nslot = num_label_slots(config_size, label_size)
    size = index_size(nslot)
    if nslot >= 2 and 2 * size <= config_size - nslot * label_size:
        return size
    return None


# -- index block -----------------------------------------------------------------------

# sig, flags[3], labelsize, seq, myoff, mysize, otheroff, labeloff, nslot, major, minor,
# checksum; the free bitmap follows.
_INDEX_HDR = struct.Struct("<16s3sBIQQQQIHHQ")
INDEX_HEADER_SIZE = _INDEX_HDR.size  # 72
_INDEX_CSUM_OFF = _INDEX_HDR.size - 8


@attrs.frozen(slots=True)
class IndexBlock:
    """``struct nd_namespace_index``.

    ``free`` is every byte after the 72-byte header up to the end of the block: the
    slot bitmap (bit i set = slot i free, little-endian bit order) and whatever follows
    it, so a block packs back byte for byte.
    """

    seq: int
    myoff: int
    mysize: int
    otheroff: int
    labeloff: int
    nslot: int
    minor: int
    free: bytes
    labelsize: int = 0  # log2(label size) - 7, honoured from v1.2 on
    major: int = 1
    flags: int = 0
    sig: bytes = NSINDEX_SIGNATURE
    checksum: int = attrs.field(default=0, eq=False)

    @property
    def size(self) -> int:
        return _INDEX_HDR.size + len(self.free)

    @property
    def version(self) -> int:
        """major * 100 + minor, as Linux compares it (101 = v1.1, 102 = v1.2)."""
        return self.major * 100 + self.minor

    @property
    def label_size(self) -> int:
        """Label size this block implies: ``1 << (7 + labelsize)`` from v1.2, else 128."""
        if self.version >= 102:
            return 1 << (7 + self.labelsize)
        return LABEL_SIZE_V11

    def pack(self) -> bytes:
        try:
            hdr = _INDEX_HDR.pack(self.sig, self.flags.to_bytes(3, "little"), self.labelsize,
                                  self.seq, self.myoff, self.mysize, self.otheroff,
                                  self.labeloff, self.nslot, self.major, self.minor, 0)
        except (struct.error, OverflowError) as e:
            raise InvalidArgument(f"index block field out of range: {e}") from None
        buf = bytearray(hdr + self.free)
        buf[_INDEX_CSUM_OFF:_INDEX_HDR.size] = fletcher64(buf).to_bytes(8, "little")
        return bytes(buf)

    @classmethod
    def unpack(cls, buf: bytes | bytearray | memoryview) -> IndexBlock:
        """Parse a whole block (its length is the block size). Never validates."""
        if len(buf) < _INDEX_HDR.size:
            raise InvalidArgument(f"index block needs {_INDEX_HDR.size} bytes, got {len(buf)}")
        (sig, flags, labelsize, seq, myoff, mysize, otheroff, labeloff, nslot, major, minor,
         checksum) = _INDEX_HDR.unpack_from(buf)
        return cls(seq=seq, myoff=myoff, mysize=mysize, otheroff=otheroff, labeloff=labeloff,
                   nslot=nslot, minor=minor, free=bytes(buf[_INDEX_HDR.size:]),
                   labelsize=labelsize, major=major, flags=int.from_bytes(flags, "little"),
                   sig=sig, checksum=checksum)

    @staticmethod
    def compute_checksum(buf: bytes | bytearray | memoryview) -> int:
        return _sum_without(buf, _INDEX_CSUM_OFF)

    @staticmethod
    def checksum_ok(buf: bytes | bytearray | memoryview) -> bool:
        stored = int.from_bytes(buf[_INDEX_CSUM_OFF:_INDEX_HDR.size], "little")
        return IndexBlock.compute_checksum(buf) == stored

    # -- the free bitmap ---------------------------------------------------------------

    def is_free(self, slot: int) -> bool:
        byte = slot // 8
        if byte >= len(self.free):
            return False
        return bool(self.free[byte] >> (slot % 8) & 1)

    def used_slots(self) -> list[int]:
        """Slots below ``nslot`` whose bit is clear (in use)."""
        return [s for s in range(self.nslot) if not self.is_free(s)]

    def first_free(self) -> int | None:
        """Lowest free slot below ``nslot`` (Linux allocates this one), or None."""
        for byte_no, byte in enumerate(self.free[:(self.nslot + 7) // 8]):
            if byte:
                slot = byte_no * 8 + (byte & -byte).bit_length() - 1
                return slot if slot < self.nslot else None
        return None

    def with_slots(self, *, used: Iterable[int] = (), freed: Iterable[int] = ()) -> IndexBlock:
        """Copy with the given slots marked in use / free."""
        bits = bytearray(self.free)
        for s in used:
            bits[s // 8] &= ~(1 << (s % 8)) & 0xFF
        for s in freed:
            bits[s // 8] |= 1 << (s % 8)
        return attrs.evolve(self, free=bytes(bits))


# -- namespace label -------------------------------------------------------------------

# uuid, name, flags, nlabel, position, isetcookie, lbasize, dpa, rawsize, slot, align,
# reserved[3]: the whole v1.1 label and the first half of a v1.2 one.
_LABEL_V11 = struct.Struct("<16s64sIHHQQQQIB3x")
# v1.2 adds type_guid, abstraction_guid, reserved2[88], checksum.
_LABEL_V12 = struct.Struct(_LABEL_V11.format + "16s16s88xQ")
_LABEL_CSUM_OFF = _LABEL_V12.size - 8
assert _LABEL_V11.size == LABEL_SIZE_V11 and _LABEL_V12.size == LABEL_SIZE_V12


def _check_label_size(label_size: int) -> None:
    if label_size not in LABEL_SIZES:
        raise InvalidArgument(f"label size must be 128 or 256, not {label_size}")


@attrs.frozen(slots=True)
class NamespaceLabel:
    """``struct nvdimm_efi_label``: one DIMM's extent of a pmem namespace.

    ``uuid`` is stored in RFC-4122 byte order (``UUID.bytes``); ``type_guid`` and
    ``abstraction_guid`` are EFI ``guid_t`` (``UUID.bytes_le``) and exist only in
    256-byte labels, as does the checksum. ``name`` is the NUL-terminated alt name
    (up to 64 bytes; bytes that are not UTF-8 survive via surrogate escapes). ``align``
    sits at byte 124, which v1.1 calls reserved; Linux always writes 0 there.
    """

    uuid: uuidlib.UUID
    name: str = ""
    flags: int = 0
    nlabel: int = 1
    position: int = 0
    isetcookie: int = 0
    lbasize: int = 0
    dpa: int = 0
    rawsize: int = 0
    slot: int = 0
    align: int = 0
    type_guid: uuidlib.UUID = NULL_GUID
    abstraction_guid: uuidlib.UUID = NULL_GUID
    checksum: int = attrs.field(default=0, eq=False)

    @property
    def claim_class(self) -> ClaimClass:
        return claim_class_of_guid(self.abstraction_guid)

    @property
    def updating(self) -> bool:
        return bool(self.flags & LabelFlag.UPDATING)

    def encoded_name(self) -> bytes:
        try:
            raw = self.name.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as e:
            raise InvalidArgument(f"label name {self.name!r} cannot be encoded: {e}") from None
        if len(raw) > NSLABEL_NAME_LEN or b"\0" in raw:
            raise InvalidArgument(f"label name must be at most {NSLABEL_NAME_LEN} bytes "
                                  f"without NUL, got {len(raw)}: {self.name!r}")
        return raw

    def pack(self, label_size: int) -> bytes:
        """The ``label_size``-byte image; v1.2 gets its checksum computed."""
        _check_label_size(label_size)
        head = (self.uuid.bytes, self.encoded_name(), self.flags, self.nlabel, self.position,
                self.isetcookie, self.lbasize, self.dpa, self.rawsize, self.slot, self.align)
        try:
            if label_size == LABEL_SIZE_V11:
                return _LABEL_V11.pack(*head)
            buf = bytearray(_LABEL_V12.pack(*head, self.type_guid.bytes_le,
                                            self.abstraction_guid.bytes_le, 0))
        except (struct.error, OverflowError) as e:
            raise InvalidArgument(f"namespace label field out of range: {e}") from None
        buf[_LABEL_CSUM_OFF:] = fletcher64(buf).to_bytes(8, "little")
        return bytes(buf)

    @classmethod
    def unpack(cls, buf: bytes | bytearray | memoryview, label_size: int) -> NamespaceLabel:
        """Parse the first ``label_size`` bytes of ``buf``. Never validates."""
        _check_label_size(label_size)
        if len(buf) < label_size:
            raise InvalidArgument(f"label needs {label_size} bytes, got {len(buf)}")
        type_guid = abstraction_guid = NULL_GUID
        checksum = 0
        if label_size == LABEL_SIZE_V11:
            head = _LABEL_V11.unpack_from(buf)
        else:
            full = _LABEL_V12.unpack_from(buf)
            head, (tg, ag, checksum) = full[:-3], full[-3:]
            type_guid, abstraction_guid = uuidlib.UUID(bytes_le=tg), uuidlib.UUID(bytes_le=ag)
        (uid, name, flags, nlabel, position, isetcookie, lbasize, dpa, rawsize, slot,
         align) = head
        return cls(uuid=uuidlib.UUID(bytes=uid),
                   name=name.split(b"\0", 1)[0].decode("utf-8", "surrogateescape"),
                   flags=flags, nlabel=nlabel, position=position, isetcookie=isetcookie,
                   lbasize=lbasize, dpa=dpa, rawsize=rawsize, slot=slot, align=align,
                   type_guid=type_guid, abstraction_guid=abstraction_guid, checksum=checksum)

    @staticmethod
    def compute_checksum(buf: bytes | bytearray | memoryview) -> int:
        """Checksum of a 256-byte label image."""
        return _sum_without(buf[:LABEL_SIZE_V12], _LABEL_CSUM_OFF)

    @staticmethod
    def checksum_ok(buf: bytes | bytearray | memoryview, label_size: int) -> bool:
        """True when a v1.2 label verifies; v1.1 labels have no checksum, so always True."""
        _check_label_size(label_size)
        if label_size == LABEL_SIZE_V11:
            return True
        stored = int.from_bytes(buf[_LABEL_CSUM_OFF:LABEL_SIZE_V12], "little")
        return NamespaceLabel.compute_checksum(buf) == stored


# -- interleave-set cookie -------------------------------------------------------------

# One DIMM of an interleave set: (region_offset, serial_number, vendor_id,
# manufacturing_date, manufacturing_location), all from the NFIT.
DimmRecord = tuple[int, int, int, int, int]

# v1.1: u64 region_offset, u32 serial, u32 pad.
_ISET_V11 = struct.Struct("<QII")
# v1.2: u64 region_offset, u32 serial, u16 vendor, u16 date, u8 location, u8 reserved[31].
_ISET_V12 = struct.Struct("<QIHHB31x")


def _pack_records(st: struct.Struct, rows: Iterable[tuple[int, ...]]) -> bytes:
    try:
        return b"".join(st.pack(*row) for row in rows)
    except (struct.error, OverflowError) as e:
        raise InvalidArgument(f"interleave-set record field out of range: {e}") from None


def iset_cookie_v11(records: Sequence[DimmRecord]) -> int:
    """``cookie1``: 16-byte records sorted by region_offset, Fletcher-64 in native order.

    >>> hex(iset_cookie_v11([(0, 0x00123456, 0x8086, 0, 0)]))
    '0x2468ac00123456'
    """
    rows = sorted(((r[0], r[1], 0) for r in records), key=lambda row: row[0])
    return fletcher64(_pack_records(_ISET_V11, rows), le=False)


def iset_altcookie_v11(records: Sequence[DimmRecord]) -> int:
    """``altcookie``: as v1.1 but sorted by a byte-wise compare of the little-endian
    region_offset, an early Linux bug Linux still accepts for compatibility."""
    rows = sorted(((r[0], r[1], 0) for r in records),
                  key=lambda row: row[0].to_bytes(8, "little"))
    return fletcher64(_pack_records(_ISET_V11, rows), le=False)


def iset_cookie_v12(records: Sequence[DimmRecord]) -> int:
    """``cookie2``: 48-byte records (adding vendor, manufacturing date and location)
    sorted by region_offset, Fletcher-64 in native order. QEMU fills neither date nor
    location (its NFIT marks them invalid), so they are zero there.

    >>> hex(iset_cookie_v12([(0, 0x00123456, 0x8086, 0, 0)]))
    '0xba90120012b4dc'
    """
    rows = sorted((tuple(r) for r in records), key=lambda row: row[0])
    return fletcher64(_pack_records(_ISET_V12, rows), le=False)


def iset_positions(records: Sequence[DimmRecord]) -> list[int]:
    """Each record's ``position`` in the set: its rank when sorted by region_offset."""
    order = sorted(range(len(records)), key=lambda i: records[i][0])
    pos = [0] * len(records)
    for rank, i in enumerate(order):
        pos[i] = rank
    return pos
