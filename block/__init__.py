"""Block layer: block devices (gendisk), bios and their flags, badblocks."""

from block.badblocks import BB_MAX_LEN, MAX_BADBLOCKS, BadBlockEntry, BadBlocks
from block.bio import (
    FUA,
    PREFLUSH,
    REQ_FUA,
    REQ_META,
    REQ_PREFLUSH,
    REQ_SYNC,
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
from block.genhd import BlockDevice, BlockDeviceOps, FastRW, Gendisk

__all__ = [
    "BB_MAX_LEN",
    "FUA",
    "MAX_BADBLOCKS",
    "PREFLUSH",
    "REQ_FUA",
    "REQ_META",
    "REQ_PREFLUSH",
    "REQ_SYNC",
    "BadBlockEntry",
    "BadBlocks",
    "Bio",
    "BlockDevice",
    "BlockDeviceOps",
    "FastRW",
    "Gendisk",
    "ReqFlag",
    "ReqOp",
    "discard_bio",
    "flush_bio",
    "read_bio",
    "status_to_error",
    "write_bio",
    "write_zeroes_bio",
]
