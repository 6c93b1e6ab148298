"""mkfs.extentfs: lay an empty extentfs on a block device.

Writes the superblock, a bitmap with the metadata area and the root directory's block in
use, an inode table holding only the root directory, an empty journal, then flushes.
The superblock goes last, so an interrupted mkfs on a blank device leaves no valid
filesystem; over an old extentfs, the old superblock still describes half-rewritten
metadata, which fsck reports.
"""

from __future__ import annotations

import uuid as uuidlib

from block.genhd import Gendisk
from fs.extentfs.layout import (
    BITS_PER_BLOCK,
    BLOCK,
    FT_DIR,
    INODE_SIZE,
    ROOT_INO,
    S_IFDIR,
    Dirent,
    Extent,
    Inode,
    Superblock,
    encode_dirents,
    encode_inode,
    encode_journal_super,
    plan,
)
from nvdimm.errors import InvalidArgument, ReadOnly

#: Zero the inode table in pieces of this size (bounded memory).
_CHUNK = 256 * BLOCK


def mkfs(disk: Gendisk, *, size: int | None = None, inodes: int | None = None,
         journal_blocks: int | None = None, uuid: uuidlib.UUID | None = None) -> Superblock:
    """Make an extentfs of ``size`` bytes (default: the whole device) on ``disk``."""
    if disk.logical_block_size > BLOCK or BLOCK % disk.logical_block_size:
        raise InvalidArgument(f"{disk.name}: {disk.logical_block_size}-byte sectors do not "
                              f"divide extentfs's {BLOCK}-byte blocks")
    if size is None:
        size = disk.size
    if size <= 0 or size > disk.size:
        raise InvalidArgument(f"mkfs size {size} does not fit {disk.name} ({disk.size} bytes)")
    sb = plan(size // BLOCK, inodes=inodes, journal_blocks=journal_blocks, uuid=uuid)
    if disk.read_only:
        raise ReadOnly(f"{disk.name} is read-only")
    root_block = sb.data_start
    # The bitmap: every metadata block and the root directory's first block.
    used = root_block + 1
    for i in range(sb.bitmap_blocks):
        lo = i * BITS_PER_BLOCK
        n = max(0, min(used - lo, BITS_PER_BLOCK))
        bits = (1 << n) - 1
        # bits beyond the last block are set too, so they are never handed out
        beyond = sb.blocks - lo
        if beyond < BITS_PER_BLOCK:
            bits |= ((1 << BITS_PER_BLOCK) - 1) ^ ((1 << max(beyond, 0)) - 1)
        disk.write((sb.bitmap_start + i) * BLOCK, bits.to_bytes(BLOCK, "little"))
    _zero(disk, sb.inode_table_start, sb.inode_table_blocks)
    root = Inode(ROOT_INO, S_IFDIR | 0o755, 0, 2, BLOCK, 1, 1, 1, [Extent(0, root_block, 1)])
    table = bytearray(BLOCK)
    off = ROOT_INO * INODE_SIZE
    table[off:off + INODE_SIZE] = encode_inode(root)
    disk.write(sb.inode_table_start * BLOCK, bytes(table))
    disk.write(root_block * BLOCK, encode_dirents([Dirent(ROOT_INO, ".", FT_DIR),
                                                   Dirent(ROOT_INO, "..", FT_DIR)]))
    disk.write(sb.journal_start * BLOCK, encode_journal_super(1))
    disk.write((sb.journal_start + 1) * BLOCK, bytes(BLOCK))  # no stale descriptor
    disk.flush()
    disk.write(0, sb.encode(), fua=True)
    disk.flush()
    return sb


def _zero(disk: Gendisk, start: int, count: int) -> None:
    done = 0
    while done < count:
        n = min(count - done, _CHUNK // BLOCK)
        disk.write((start + done) * BLOCK, bytes(n * BLOCK))
        done += n
