"""extentfs on media: every structure, its byte layout, encode and decode.

extentfs is the model's own small filesystem (not a Linux one: Linux cannot mount it).
All integers are little-endian; the block is 4 KiB; every structure that is not file
data carries a CRC-32 (zlib's polynomial) so fsck and mount can tell torn or stray
metadata from good.

::

    block 0                 superblock
    bitmap_start ...        block bitmap: bit b set = block b is in use (metadata too)
    inode_table_start ...   inodes, 256 bytes each, slot = inode number (0 unused)
    journal_start ...       journal: its superblock, then at most one transaction
    data_start ...          data and extent blocks (aligned to 2 MiB from the device
                            start, so 2 MiB of file can be one PMD mapping under DAX)

Superblock (first 128 bytes of block 0)::

    0   magic "EXTENTFS"      8   version u32          12  block_size u32
    16  blocks u64            24  inodes u64           32  bitmap_start u64
    40  bitmap_blocks u64     48  inode_table_start    56  inode_table_blocks u64
    64  journal_start u64     72  journal_blocks u64   80  data_start u64
    88  root_ino u32          92  state u32 (1 clean, 0 mounted or crashed)
    96  mount_count u64       104 uuid[16]             120 crc32 u32 (of bytes 0..120)

Inode (256 bytes)::

    0   mode u16 (S_IFREG/S_IFDIR | perms; 0 = free)   2  flags u16 (bit 0: DAX)
    4   nlink u32             8   size u64              16 mtime u64   24 ctime u64
    32  generation u32        36  nextents u32 (all extents, inline and overflow)
    40  overflow u64 (first extent block, 0 = none)
    48  12 inline extents of 16 bytes: pblk u64, lblk u32, len u32
    252 crc32 u32 (of bytes 0..252)

Extent block (overflow chain)::

    0  magic "EXTB"   4 count u32   8 crc32 u32 (of the block with this field zero)
    16 next u64 (next extent block, 0 = last)   32 count extents of 16 bytes (254 max)

Directory data: 64-byte entries, 64 to a block; entry 0 of the first block is ".",
entry 1 is ".."::

    0 ino u32 (0 = free slot)  4 name_len u8  5 ftype u8 (1 file, 2 directory)
    6 name[58]

Journal: block 0 of the area is the journal superblock; a transaction starts at block 1
with a descriptor, then one block image per target, then the commit block::

    journal superblock: 0 magic "EXTJRNL1"  8 sequence u64 (the next to replay)
                        16 crc32 u32 (of bytes 0..16)
    descriptor:  0 magic "EXTJDESC"  8 sequence u64  16 count u32  20 crc32 u32 (of the
                 block with this field zero)  24 count target block numbers, u64 each
    commit:      0 magic "EXTJCMT1"  8 sequence u64  16 crc32 u32 (of the descriptor
                 and every block image, in order)  20 crc32 u32 (of bytes 0..20)
"""

from __future__ import annotations

import struct
import uuid as uuidlib
import zlib
from collections.abc import Iterable, Sequence

import attrs

from fs.errors import NameTooLong
from nvdimm.errors import CorruptMetadata, InvalidArgument

BLOCK = 4096
MAGIC = b"EXTENTFS"
VERSION = 1
INODE_SIZE = 256
INODES_PER_BLOCK = BLOCK // INODE_SIZE
ROOT_INO = 1
INLINE_EXTENTS = 12
EXTENT_SIZE = 16
EXTENT_BLOCK_MAGIC = b"EXTB"
EXTENT_BLOCK_HEADER = 32
EXTENTS_PER_BLOCK = (BLOCK - EXTENT_BLOCK_HEADER) // EXTENT_SIZE
DIRENT_SIZE = 64
DIRENTS_PER_BLOCK = BLOCK // DIRENT_SIZE
NAME_MAX = DIRENT_SIZE - 6
BITS_PER_BLOCK = BLOCK * 8
#: Data starts on a 2 MiB boundary so extents can line up with PMD mappings.
DATA_ALIGN_BLOCKS = (2 << 20) // BLOCK
MAX_EXTENT_LEN = (1 << 32) - 1

S_IFMT = 0o170000
S_IFREG = 0o100000
S_IFDIR = 0o040000
FT_REG = 1
FT_DIR = 2
INODE_DAX = 1  # FS_DAX_FL: this inode uses DAX when mounted with dax=inode

STATE_MOUNTED = 0
STATE_CLEAN = 1

J_MAGIC = b"EXTJRNL1"
J_DESC = b"EXTJDESC"
J_COMMIT = b"EXTJCMT1"
J_DESC_HEADER = 24
J_MAX_TARGETS = (BLOCK - J_DESC_HEADER) // 8

_SB = struct.Struct("<8sII QQQQQQQQQ II Q 16s")
_INODE_HEAD = struct.Struct("<HHIQQQIIQ")
_EXTENT = struct.Struct("<QII")
_EXTB_HEAD = struct.Struct("<4sII4xQ8x")
_DIRENT = struct.Struct("<IBB58s")
_JSB = struct.Struct("<8sQ")
_JDESC = struct.Struct("<8sQI")
_JCOMMIT = struct.Struct("<8sQI")


def crc(data: bytes | bytearray | memoryview) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def _u32(raw: bytes | bytearray | memoryview, off: int) -> int:
    return int.from_bytes(raw[off:off + 4], "little")


# -- superblock ------------------------------------------------------------------------------


@attrs.define(slots=True)
class Superblock:
    blocks: int
    inodes: int
    bitmap_start: int
    bitmap_blocks: int
    inode_table_start: int
    inode_table_blocks: int
    journal_start: int
    journal_blocks: int
    data_start: int
    root_ino: int = ROOT_INO
    state: int = STATE_CLEAN
    mount_count: int = 0
    uuid: uuidlib.UUID = attrs.field(factory=uuidlib.uuid4)
    version: int = VERSION

    def encode(self) -> bytes:
        head = _SB.pack(MAGIC, self.version, BLOCK, self.blocks, self.inodes,
                        self.bitmap_start, self.bitmap_blocks, self.inode_table_start,
                        self.inode_table_blocks, self.journal_start, self.journal_blocks,
                        self.data_start, self.root_ino, self.state, self.mount_count,
                        self.uuid.bytes)
        return head + crc(head).to_bytes(4, "little") + bytes(BLOCK - len(head) - 4)

    @classmethod
    def decode(cls, raw: bytes | bytearray | memoryview) -> Superblock:
        if bytes(raw[:8]) != MAGIC:
            raise CorruptMetadata("no extentfs superblock (bad magic): run mkfs first")
        if crc(raw[:_SB.size]) != _u32(raw, _SB.size):
            raise CorruptMetadata("extentfs superblock checksum mismatch")
        (_, version, bsize, blocks, inodes, bm_start, bm_blocks, it_start, it_blocks,
         j_start, j_blocks, d_start, root, state, mounts, uid) = _SB.unpack_from(raw)
        if version != VERSION or bsize != BLOCK:
            raise CorruptMetadata(f"extentfs version {version} block size {bsize}: this "
                                  f"model reads version {VERSION} with {BLOCK}-byte blocks")
        sb = cls(blocks, inodes, bm_start, bm_blocks, it_start, it_blocks, j_start, j_blocks,
                 d_start, root, state, mounts, uuidlib.UUID(bytes=uid), version)
        problem = sb.geometry_problem()
        if problem:
            raise CorruptMetadata(f"extentfs superblock: {problem}")
        return sb

    def geometry_problem(self) -> str:
        """What is inconsistent in the region layout, or ``""``."""
        regions = [("bitmap", self.bitmap_start, self.bitmap_blocks),
                   ("inode table", self.inode_table_start, self.inode_table_blocks),
                   ("journal", self.journal_start, self.journal_blocks)]
        at = 1
        for name, start, n in regions:
            if start != at or n <= 0:
                return f"{name} at block {start} ({n} blocks) is out of place"
            at = start + n
        if self.bitmap_blocks * BITS_PER_BLOCK < self.blocks:
            return "the bitmap is too small for the blocks"
        if self.inode_table_blocks * INODES_PER_BLOCK < self.inodes:
            return "the inode table is too small for the inodes"
        if not at <= self.data_start < self.blocks:
            return f"data start {self.data_start} is outside [{at}, {self.blocks})"
        if not 1 <= self.root_ino < self.inodes:
            return f"root inode {self.root_ino} is out of range"
        return ""

    def inode_location(self, ino: int) -> tuple[int, int]:
        """(block, byte offset in it) of inode ``ino``."""
        if not 1 <= ino < self.inodes:
            raise CorruptMetadata(f"inode {ino} is out of range (1..{self.inodes - 1})")
        return (self.inode_table_start + ino // INODES_PER_BLOCK,
                (ino % INODES_PER_BLOCK) * INODE_SIZE)



def plan(blocks: int, *, inodes: int | None = None, journal_blocks: int | None = None,
         uuid: uuidlib.UUID | None = None) -> Superblock:
    """The layout mkfs gives ``blocks`` 4 KiB blocks (defaults: an inode per 64 KiB,
    between 64 and 65536; a journal of 1/64 of the blocks, between 64 and 8192)."""
    if inodes is None:
        inodes = min(65536, max(64, blocks // 16))
    inodes = -(-inodes // INODES_PER_BLOCK) * INODES_PER_BLOCK
    if journal_blocks is None:
        journal_blocks = min(8192, max(64, blocks // 64))
    if journal_blocks < 4:
        raise InvalidArgument(f"a journal of {journal_blocks} blocks is too small (at least 4)")
    bitmap_blocks = -(-blocks // BITS_PER_BLOCK)
    it_blocks = inodes // INODES_PER_BLOCK
    j_start = 1 + bitmap_blocks + it_blocks
    meta_end = j_start + journal_blocks
    data_start = -(-meta_end // DATA_ALIGN_BLOCKS) * DATA_ALIGN_BLOCKS
    if data_start + 16 > blocks:
        raise InvalidArgument(f"{blocks} blocks ({blocks * BLOCK >> 20} MiB) is too small for "
                              f"extentfs: metadata needs {meta_end} blocks and data starts "
                              f"at {data_start} (2 MiB aligned)")
    return Superblock(blocks, inodes, 1, bitmap_blocks, 1 + bitmap_blocks, it_blocks,
                      j_start, journal_blocks, data_start, uuid=uuid or uuidlib.uuid4())


# -- extents and inodes ----------------------------------------------------------------------


@attrs.frozen(slots=True, order=True)
class Extent:
    """``length`` blocks of the file from block ``lblk`` live at device block ``pblk``."""

    lblk: int
    pblk: int
    length: int

    @property
    def lend(self) -> int:
        return self.lblk + self.length

    @property
    def pend(self) -> int:
        return self.pblk + self.length


@attrs.define(slots=True)
class Inode:
    ino: int
    mode: int = 0
    flags: int = 0
    nlink: int = 0
    size: int = 0
    mtime: int = 0
    ctime: int = 0
    generation: int = 0
    extents: list[Extent] = attrs.field(factory=list)  # sorted by lblk, non-overlapping
    overflow: int = 0  # first extent block of the chain (0: all extents are inline)

    @property
    def is_dir(self) -> bool:
        return self.mode & S_IFMT == S_IFDIR

    @property
    def is_reg(self) -> bool:
        return self.mode & S_IFMT == S_IFREG

    @property
    def in_use(self) -> bool:
        return self.mode != 0

    @property
    def blocks(self) -> int:
        return sum(e.length for e in self.extents)


def encode_inode(inode: Inode) -> bytes:
    """The 256 bytes of ``inode``; only its first 12 extents go inline (the rest live in
    the overflow chain the caller writes)."""
    head = _INODE_HEAD.pack(inode.mode, inode.flags, inode.nlink, inode.size, inode.mtime,
                            inode.ctime, inode.generation, len(inode.extents), inode.overflow)
    body = b"".join(_EXTENT.pack(e.pblk, e.lblk, e.length)
                    for e in inode.extents[:INLINE_EXTENTS])
    raw = head + body + bytes(252 - len(head) - len(body))
    return raw + crc(raw).to_bytes(4, "little")


def decode_inode(ino: int, raw: bytes | bytearray | memoryview) -> tuple[Inode, int]:
    """The inode and how many extents are in its overflow chain (to be read by the
    caller). A never-used slot (all zeroes) is a free inode; anything else must check."""
    if not any(raw[:INODE_SIZE]):
        return Inode(ino), 0
    if crc(raw[:252]) != _u32(raw, 252):
        raise CorruptMetadata(f"inode {ino}: checksum mismatch")
    mode, flags, nlink, size, mtime, ctime, gen, n, overflow = _INODE_HEAD.unpack_from(raw)
    inline = min(n, INLINE_EXTENTS)
    off = _INODE_HEAD.size
    extents = [_extent_at(raw, off + i * EXTENT_SIZE) for i in range(inline)]
    if n > INLINE_EXTENTS and not overflow:
        raise CorruptMetadata(f"inode {ino}: {n} extents but no overflow block")
    return Inode(ino, mode, flags, nlink, size, mtime, ctime, gen, extents, overflow), n - inline


def slot_in_use(raw: bytes | bytearray | memoryview) -> bool:
    """Whether an inode slot holds a live inode (mode not 0), without decoding it."""
    return bool(raw[0] | raw[1])


def slot_generation(raw: bytes | bytearray | memoryview) -> int:
    """The generation a slot records (kept when the inode is freed)."""
    return int.from_bytes(raw[32:36], "little")


def _extent_at(raw: bytes | bytearray | memoryview, off: int) -> Extent:
    pblk, lblk, length = _EXTENT.unpack_from(raw, off)
    return Extent(lblk, pblk, length)


def encode_extent_block(extents: Sequence[Extent], next_block: int) -> bytes:
    if len(extents) > EXTENTS_PER_BLOCK:
        raise InvalidArgument(f"{len(extents)} extents do not fit one extent block")
    body = b"".join(_EXTENT.pack(e.pblk, e.lblk, e.length) for e in extents)
    raw = bytearray(_EXTB_HEAD.pack(EXTENT_BLOCK_MAGIC, len(extents), 0, next_block) + body)
    raw += bytes(BLOCK - len(raw))
    raw[8:12] = crc(raw).to_bytes(4, "little")
    return bytes(raw)


def decode_extent_block(block: int, raw: bytes | bytearray | memoryview
                        ) -> tuple[list[Extent], int]:
    """(extents, next extent block) of extent block ``block``."""
    magic, count, stored, nxt = _EXTB_HEAD.unpack_from(raw)
    if magic != EXTENT_BLOCK_MAGIC or count > EXTENTS_PER_BLOCK:
        raise CorruptMetadata(f"block {block} is not an extent block")
    check = bytearray(raw)
    check[8:12] = bytes(4)
    if crc(check) != stored:
        raise CorruptMetadata(f"extent block {block}: checksum mismatch")
    return [_extent_at(raw, EXTENT_BLOCK_HEADER + i * EXTENT_SIZE) for i in range(count)], nxt


# -- directories ---------------------------------------------------------------------------


@attrs.frozen(slots=True)
class Dirent:
    ino: int
    name: str
    ftype: int

    def encode(self) -> bytes:
        raw = self.name.encode()
        return _DIRENT.pack(self.ino, len(raw), self.ftype, raw)


def check_name(name: str) -> bytes:
    """The bytes of a valid file name (ENAMETOOLONG / EINVAL otherwise)."""
    raw = name.encode()
    if not raw or "/" in name or "\0" in name or name in (".", ".."):
        raise InvalidArgument(f"{name!r} is not a valid file name")
    if len(raw) > NAME_MAX:
        raise NameTooLong(f"{name!r} is {len(raw)} bytes; extentfs names are at most "
                          f"{NAME_MAX} bytes")
    return raw


def decode_dirents(raw: bytes | bytearray | memoryview) -> list[Dirent | None]:
    """The slots of one directory block (None: free)."""
    out: list[Dirent | None] = []
    for i in range(DIRENTS_PER_BLOCK):
        ino, n, ftype, name = _DIRENT.unpack_from(raw, i * DIRENT_SIZE)
        if ino == 0:
            out.append(None)
            continue
        if not 1 <= n <= NAME_MAX:
            raise CorruptMetadata(f"directory entry {i}: name length {n}")
        out.append(Dirent(ino, name[:n].decode(errors="replace"), ftype))
    return out


def encode_dirents(slots: Iterable[Dirent | None]) -> bytes:
    raw = b"".join(bytes(DIRENT_SIZE) if d is None else d.encode() for d in slots)
    if len(raw) > BLOCK:
        raise InvalidArgument("too many directory entries for one block")
    return raw + bytes(BLOCK - len(raw))


# -- journal ---------------------------------------------------------------------------------


def encode_journal_super(sequence: int) -> bytes:
    head = _JSB.pack(J_MAGIC, sequence)
    return head + crc(head).to_bytes(4, "little") + bytes(BLOCK - len(head) - 4)


def decode_journal_super(raw: bytes | bytearray | memoryview) -> int:
    """The next sequence number to replay."""
    if bytes(raw[:8]) != J_MAGIC or crc(raw[:16]) != _u32(raw, 16):
        raise CorruptMetadata("the journal superblock is damaged")
    return int(_JSB.unpack_from(raw)[1])


def encode_descriptor(sequence: int, targets: Sequence[int]) -> bytes:
    if len(targets) > J_MAX_TARGETS:
        raise InvalidArgument(f"a transaction of {len(targets)} blocks is too large")
    raw = bytearray(_JDESC.pack(J_DESC, sequence, len(targets)) + bytes(4))
    raw += b"".join(t.to_bytes(8, "little") for t in targets)
    raw += bytes(BLOCK - len(raw))
    raw[20:24] = crc(raw).to_bytes(4, "little")
    return bytes(raw)


def decode_descriptor(raw: bytes | bytearray | memoryview, sequence: int) -> list[int] | None:
    """The targets of a descriptor for ``sequence``, or None when there is none."""
    magic, seq, count = _JDESC.unpack_from(raw)
    if magic != J_DESC or seq != sequence or count > J_MAX_TARGETS:
        return None
    check = bytearray(raw)
    check[20:24] = bytes(4)
    if crc(check) != _u32(raw, 20):
        return None
    return [int.from_bytes(raw[J_DESC_HEADER + 8 * i:J_DESC_HEADER + 8 * i + 8], "little")
            for i in range(count)]


def encode_commit(sequence: int, body_crc: int) -> bytes:
    head = _JCOMMIT.pack(J_COMMIT, sequence, body_crc)
    return head + crc(head).to_bytes(4, "little") + bytes(BLOCK - len(head) - 4)


def decode_commit(raw: bytes | bytearray | memoryview, sequence: int) -> int | None:
    """The body checksum a commit block for ``sequence`` records, or None."""
    magic, seq, body = _JCOMMIT.unpack_from(raw)
    if magic != J_COMMIT or seq != sequence or crc(raw[:20]) != _u32(raw, 20):
        return None
    return int(body)
