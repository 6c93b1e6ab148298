"""Bios: one block I/O request (operation, flags, where, how much, data) and its status.

Addresses are in 512-byte sectors, as in Linux, whatever the device's logical block
size. A device whose logical block size is not a multiple of 512 (a BTT exposing
520-byte blocks with their metadata, say) has no such sectors; it is addressed in its
own blocks, and its gendisk says so with ``sector_size``. Validation takes that unit.

``status`` is 0 or a negative errno, the way ``blk_status_t`` maps to errno.

Flags are an :class:`enum.IntFlag` for reading and printing, but ``Bio.flags`` is a
plain ``int`` and hot paths test it with the plain-int twins :data:`FUA` and
:data:`PREFLUSH`: on CPython 3.11 any ``&``/``|`` that involves an ``IntFlag`` member
goes through the enum machinery and costs about 0.6-0.9 µs, more than a whole
modelled 4 KiB copy.
"""

from __future__ import annotations

import enum
import errno as _errno
from typing import Final

import attrs

from nvdimm.errors import (
    Busy,
    CorruptMetadata,
    InvalidArgument,
    MediaError,
    NoDevice,
    NoSpace,
    NotFound,
    NotSupported,
    NvdimmError,
    ReadOnly,
)
from nvdimm.units import SECTOR_SIZE

BufferLike = bytes | bytearray | memoryview
"""What a bio carries: bytes to write, or a writable buffer a driver fills on a read."""

SECTOR_SHIFT: Final = 9


class ReqOp(enum.IntEnum):
    """Request operations, numbered as Linux's ``REQ_OP_*`` (odd numbers write data)."""

    READ = 0
    WRITE = 1
    FLUSH = 2  # only synthesised for request-based queues; a bio may not carry it
    DISCARD = 3
    WRITE_ZEROES = 9

    @property
    def is_write(self) -> bool:
        """Linux's ``op_is_write``: the low bit. FLUSH (2) is not a data write."""
        return bool(self.value & 1)


class ReqFlag(enum.IntFlag):
    """Request flags that change ordering and durability, not what is transferred."""

    SYNC = 1 << 0
    META = 1 << 1
    FUA = 1 << 2  # data is durable when the bio completes
    PREFLUSH = 1 << 3  # make earlier completed writes durable before this one


REQ_SYNC: Final = ReqFlag.SYNC
REQ_META: Final = ReqFlag.META
REQ_FUA: Final = ReqFlag.FUA
REQ_PREFLUSH: Final = ReqFlag.PREFLUSH

# Plain-int twins for hot paths (see the module docstring for why).
FUA: Final[int] = int(ReqFlag.FUA)
PREFLUSH: Final[int] = int(ReqFlag.PREFLUSH)
FLUSH_FLAGS: Final[int] = FUA | PREFLUSH

# Bound once: looking a member up on an enum class costs ~0.1 µs on CPython 3.11.
_READ: Final = ReqOp.READ
_WRITE: Final = ReqOp.WRITE
_FLUSH: Final = ReqOp.FLUSH


def _flags_repr(value: int) -> str:
    return repr(ReqFlag(value)) if value else "0"


@attrs.define(slots=True, eq=False)
class Bio:
    """One block I/O request.

    ``data`` holds the bytes to write; for a read it is the writable buffer
    (``bytearray`` or writable ``memoryview``) of ``length`` bytes that the driver
    fills. DISCARD, WRITE_ZEROES and an empty PREFLUSH write carry no data.
    """

    op: ReqOp
    sector: int
    length: int = 0
    data: BufferLike | None = attrs.field(default=None, repr=False)
    flags: int = attrs.field(default=0, repr=_flags_repr)
    status: int = 0

    @property
    def size(self) -> int:
        """Bytes to transfer (Linux ``bi_iter.bi_size``)."""
        return self.length

    @property
    def is_write(self) -> bool:
        return bool(self.op & 1)

    @property
    def ok(self) -> bool:
        return self.status == 0

    def validate(self, logical_block_size: int, capacity: int,
                 sector_size: int = SECTOR_SIZE) -> None:
        """Raise :class:`InvalidArgument` unless this bio fits a device of that geometry.

        ``capacity`` is in units of ``sector_size`` (512 bytes unless the device uses
        its own block as the unit). Nothing is submitted, so nothing changes.
        """
        op, length, data, flags = self.op, self.length, self.data, self.flags
        if type(self.sector) is not int or type(length) is not int:
            raise InvalidArgument(f"bio sector and length must be ints: {self!r}")
        if self.sector < 0 or length < 0:
            raise InvalidArgument(f"bio sector and length must not be negative: {self!r}")
        if flags & FLUSH_FLAGS and op is not _WRITE:
            # Linux warns and fails such a bio: only writes are ordered by a cache flush.
            raise InvalidArgument(f"{ReqFlag(flags & FLUSH_FLAGS)!r} only applies to writes")
        if op is _READ or op is _WRITE:
            if data is None:
                if not (op is _WRITE and length == 0):
                    raise InvalidArgument(f"{op.name} bio without a data buffer")
            elif len(data) != length:
                raise InvalidArgument(
                    f"bio length {length} does not match its buffer of {len(data)} bytes")
            if op is _READ and data is not None and (
                    isinstance(data, bytes)
                    or (isinstance(data, memoryview) and data.readonly)):
                raise InvalidArgument("a read bio needs a writable buffer to fill")
            if length == 0:
                if op is _READ or not flags & PREFLUSH:
                    raise InvalidArgument(
                        f"empty {op.name} bio (only a PREFLUSH write may be empty)")
                return
        elif op is _FLUSH:
            return  # well formed; the gendisk refuses it as Linux does (not a bio op)
        else:
            if data is not None:
                raise InvalidArgument(f"{op.name} bio carries no data")
            if length == 0:
                raise InvalidArgument(f"empty {op.name} bio")
        start = self.sector * sector_size
        if start % logical_block_size or length % logical_block_size:
            raise InvalidArgument(
                f"bio [{start:#x}, +{length:#x}) not aligned to the "
                f"{logical_block_size}-byte logical block size")
        if start + length > capacity * sector_size:
            raise InvalidArgument(
                f"bio [{start:#x}, +{length:#x}) beyond the device end "
                f"{capacity * sector_size:#x}")


def read_bio(sector: int, length: int, buf: bytearray | memoryview | None = None,
             flags: int = 0) -> Bio:
    """A READ of ``length`` bytes at ``sector``; allocates the buffer unless given."""
    if buf is None:
        buf = bytearray(length)
    return Bio(_READ, sector, length, buf, flags)


def write_bio(sector: int, data: BufferLike, flags: int = 0) -> Bio:
    """A WRITE of ``data`` at ``sector``; ``flags`` may add FUA and PREFLUSH."""
    return Bio(_WRITE, sector, len(data), data, flags)


def flush_bio() -> Bio:
    """A cache flush as a bio-based driver sees it: an empty WRITE with PREFLUSH."""
    return Bio(_WRITE, 0, 0, None, PREFLUSH)


def discard_bio(sector: int, length: int) -> Bio:
    return Bio(ReqOp.DISCARD, sector, length)


def write_zeroes_bio(sector: int, length: int) -> Bio:
    return Bio(ReqOp.WRITE_ZEROES, sector, length)


_STATUS_ERRORS: dict[int, type[NvdimmError]] = {
    _errno.EIO: MediaError,
    _errno.ENODATA: MediaError,  # BLK_STS_MEDIUM
    _errno.EINVAL: InvalidArgument,
    _errno.ENOSPC: NoSpace,
    _errno.EBUSY: Busy,
    _errno.ENODEV: NotFound,
    _errno.ENXIO: NoDevice,
    _errno.EOPNOTSUPP: NotSupported,
    _errno.EROFS: ReadOnly,
    _errno.EILSEQ: CorruptMetadata,  # BLK_STS_PROTECTION: integrity check failed
}


def status_to_error(status: int, message: str, offset: int = 0,
                    length: int = 0) -> NvdimmError:
    """The exception for a failed bio's ``status`` (a negative errno).

    EIO and ENODATA become :class:`MediaError` carrying ``offset``/``length`` (bytes,
    in the device's address space); an errno without a named exception becomes a
    plain :class:`NvdimmError`. The exception's ``errno`` is always the bio's.
    """
    code = -status
    cls = _STATUS_ERRORS.get(code, NvdimmError)
    err = MediaError(message, offset, length) if cls is MediaError else cls(message)
    err.errno = code  # keep the exact errno (ENODATA is a MediaError too)
    return err
