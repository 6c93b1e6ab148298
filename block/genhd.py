"""Gendisk: a block device as a driver registers it, and the calls that do I/O on it.

A driver builds a :class:`Gendisk` with itself as ``ops`` and declares the queue's
geometry and features (logical block size, capacity, volatile write cache, FUA).
Callers use the byte-addressed convenience methods (``read``, ``write``, ``flush``,
``discard``, ``write_zeroes``) or submit bios. The block layer knows no driver: it only
calls the :class:`BlockDeviceOps` protocol, and the two optional fast hooks of
:class:`FastRW` when the driver has them.

What the block layer does, as Linux's ``submit_bio_noacct`` does for a bio-based
driver such as pmem:

* validates (alignment to the logical block size, within capacity) and raises
  :class:`InvalidArgument` before anything reaches the driver;
* strips PREFLUSH and FUA when the queue has no volatile write cache, and completes
  an empty flush at once without calling the driver;
* passes FUA through even when the queue does not advertise FUA: only request-based
  queues emulate FUA with a post-flush, a bio-based driver gets the flag as is
  (``fua`` tells upper layers whether FUA is cheaper than a flush, nothing more);
* refuses ``REQ_OP_FLUSH`` bios (not a bio operation) and DISCARD / WRITE_ZEROES on a
  queue that does not support them, with EOPNOTSUPP.

Poison is the driver's business: pmem checks ``disk.badblocks`` itself and fails the
bio with EIO; the block layer only holds the table and its sysfs text.

Two model choices: partitions are not modelled, so a ``block_device`` is its whole
disk (:data:`BlockDevice` names the same class); and a write to a read-only disk fails
with EROFS (Linux only warns at submission and refuses the writable open instead).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any, Final, Protocol

import attrs

from block.badblocks import BadBlocks
from block.bio import (
    FLUSH_FLAGS,
    FUA,
    PREFLUSH,
    Bio,
    BufferLike,
    ReqOp,
    discard_bio,
    flush_bio,
    read_bio,
    status_to_error,
    write_bio,
    write_zeroes_bio,
)
from nvdimm.errors import InvalidArgument, MediaError, NvdimmError, ReadOnly
from nvdimm.metrics import Metrics
from nvdimm.trace import Trace
from nvdimm.units import SECTOR_SIZE

_READ: Final = ReqOp.READ
_WRITE: Final = ReqOp.WRITE
_DISCARD: Final = ReqOp.DISCARD
_WRITE_ZEROES: Final = ReqOp.WRITE_ZEROES
_FLUSH: Final = ReqOp.FLUSH


class BlockDeviceOps(Protocol):
    """What every driver behind a gendisk implements (``block_device_operations``)."""

    def submit_bio(self, bio: Bio) -> None:
        """Carry out ``bio`` synchronously and set ``bio.status`` (0 or -errno).

        Reads fill ``bio.data``. A WRITE may carry PREFLUSH (make earlier completed
        writes durable first) and FUA (make this one durable before returning); an
        empty WRITE with PREFLUSH is a cache flush. Raising an ``NvdimmError``
        instead of setting the status is also accepted: it becomes ``-exc.errno``.
        """
        ...


class FastRW(Protocol):
    """Optional fast hooks for plain reads and writes, used when a driver has them.

    They skip building a :class:`Bio`; the gendisk has validated the range already
    (aligned, inside the capacity, device writable). Errors are raised
    (``MediaError`` for poison), not returned. ``sector`` is in the disk's
    ``sector_size`` units (512 bytes for ordinary devices).
    """

    def do_read(self, sector: int, length: int) -> bytes:
        """Return exactly ``length`` bytes from ``sector``."""
        ...

    def do_write(self, sector: int, data: BufferLike, flags: int) -> None:
        """Store ``data`` at ``sector``; ``flags`` is a plain int of PREFLUSH/FUA bits.

        Test flags with the plain ints ``block.bio.FUA`` / ``PREFLUSH`` (not the
        ``ReqFlag`` members: see ``block.bio``). Do not keep a reference to ``data``:
        the caller may reuse its buffer.
        """
        ...


def complete_bio(bio: Bio, do_read: Callable[[int, int], bytes],
                 do_write: Callable[[int, BufferLike, int], None],
                 flush: Callable[[], None], *, write_zeroes: bool = False) -> None:
    """``submit_bio`` for a bio-based driver that has the :class:`FastRW` hooks: every
    bio is one hook call. An empty WRITE (a PREFLUSH bio) or a FLUSH runs ``flush``; a
    READ fills the bio's buffer; DISCARD and WRITE_ZEROES write zeros when the driver
    says it can (``write_zeroes``), else complete with EOPNOTSUPP. A ``MediaError``
    completes the bio with EIO instead of raising."""
    op = bio.op
    try:
        if op == _FLUSH or (op == _WRITE and not bio.length):
            flush()
        elif op == _READ:
            data = do_read(bio.sector, bio.length)
            buf = bio.data
            if isinstance(buf, (bytearray, memoryview)):
                buf[:] = data
            else:
                bio.data = bytearray(data)
        elif op == _WRITE:
            assert bio.data is not None
            do_write(bio.sector, bio.data, bio.flags)
        elif write_zeroes and op in (_DISCARD, _WRITE_ZEROES):
            do_write(bio.sector, bytes(bio.length), bio.flags)
        else:
            bio.status = -errno.EOPNOTSUPP
            return
        bio.status = 0
    except MediaError:
        bio.status = -errno.EIO


ReadHook = Callable[[int, int], bytes]
WriteHook = Callable[[int, BufferLike, int], None]


def _capacity_changed(disk: Gendisk, _attr: attrs.Attribute[int], value: int) -> int:
    if type(value) is not int or value < 0:
        raise InvalidArgument(f"{disk.name}: capacity must be a non-negative int: {value!r}")
    disk._cap_bytes = value * disk.sector_size
    return value


@attrs.define(slots=True, eq=False)
class Gendisk:
    """A disk as its driver declares it, plus the I/O entry points.

    ``capacity`` is in ``sector_size`` units: 512-byte sectors, as Linux, unless the
    logical block size is not a multiple of 512, in which case the unit is the
    logical block itself.
    """

    name: str = attrs.field(on_setattr=attrs.setters.frozen)
    ops: BlockDeviceOps = attrs.field(repr=False, on_setattr=attrs.setters.frozen)
    capacity: int = attrs.field(on_setattr=_capacity_changed)
    logical_block_size: int = attrs.field(default=SECTOR_SIZE,
                                          on_setattr=attrs.setters.frozen)
    write_cache: bool = False  # the queue has a volatile cache: flushes are sent
    fua: bool = False  # the driver makes a single write durable cheaper than a flush
    read_only: bool = False
    can_discard: bool = False
    can_write_zeroes: bool = False
    badblocks: BadBlocks = attrs.field(factory=BadBlocks, repr=False)
    metrics: Metrics | None = attrs.field(default=None, repr=False)
    trace: Trace = attrs.field(factory=lambda: Trace(on=False), repr=False)
    dead: bool = attrs.field(init=False, default=False)
    sector_size: int = attrs.field(init=False, default=SECTOR_SIZE)
    # Hot-path caches, filled once: bound hooks, byte capacity, metric keys.
    _cap_bytes: int = attrs.field(init=False, default=0, repr=False)
    _do_read: ReadHook | None = attrs.field(init=False, default=None, repr=False)
    _do_write: WriteHook | None = attrs.field(init=False, default=None, repr=False)
    _k_reads: str = attrs.field(init=False, default="", repr=False)
    _k_writes: str = attrs.field(init=False, default="", repr=False)

    def __attrs_post_init__(self) -> None:
        lbs = self.logical_block_size
        if type(lbs) is not int or lbs <= 0:
            raise InvalidArgument(f"{self.name}: logical block size must be positive: {lbs!r}")
        if not self.name:
            raise InvalidArgument("a disk needs a name")
        self.sector_size = SECTOR_SIZE if lbs % SECTOR_SIZE == 0 else lbs
        self.capacity = self.capacity  # validates and sets _cap_bytes
        ops: Any = self.ops
        self._do_read = getattr(ops, "do_read", None)
        self._do_write = getattr(ops, "do_write", None)
        self._k_reads = f"block.{self.name}.reads"
        self._k_writes = f"block.{self.name}.writes"

    @property
    def size(self) -> int:
        """Capacity in bytes."""
        return self._cap_bytes

    # -- byte-addressed convenience (the fast path) ----------------------------------

    def read(self, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at byte ``offset``; both aligned to the block size.

        Raises :class:`InvalidArgument` for a bad range and the mapped exception
        (``MediaError`` for EIO) when the driver fails the I/O.
        """
        lbs = self.logical_block_size
        if (offset < 0 or length <= 0 or offset + length > self._cap_bytes
                or offset % lbs or length % lbs):
            raise self._bad_range(offset, length)
        do_read = self._do_read
        if do_read is None:
            bio = read_bio(offset // self.sector_size, length)
            self.submit_bio_wait(bio)
            assert bio.data is not None
            return bytes(bio.data)
        sector = offset // self.sector_size
        if self.trace.on:
            self.trace.emit("block.submit", disk=self.name, op="read", sector=sector,
                            len=length, flags=0)
        try:
            data = do_read(sector, length)
        except NvdimmError as exc:
            self._error(exc, "read", sector, length, self._k_reads)
            raise
        m = self.metrics
        if m is not None:
            c = m.c
            c[self._k_reads] += 1
            c["block.bytes_read"] += length
        return data

    def write(self, offset: int, data: BufferLike, *, fua: bool = False,
              preflush: bool = False) -> None:
        """Write ``data`` at byte ``offset``; both aligned to the block size.

        ``preflush`` makes earlier completed writes durable before this one, ``fua``
        makes this one durable before returning; both are dropped when the queue has
        no volatile write cache (nothing to flush). Raises :class:`InvalidArgument`
        for a bad range, :class:`ReadOnly` on a read-only disk, and the mapped
        exception when the driver fails the I/O.
        """
        n = len(data)
        lbs = self.logical_block_size
        if offset < 0 or n <= 0 or offset + n > self._cap_bytes or offset % lbs or n % lbs:
            raise self._bad_range(offset, n)
        if self.read_only:
            raise ReadOnly(f"{self.name} is read-only")
        flags = 0
        if (fua or preflush) and self.write_cache:
            flags = (FUA if fua else 0) | (PREFLUSH if preflush else 0)
        do_write = self._do_write
        if do_write is None:
            self.submit_bio_wait(write_bio(offset // self.sector_size, data, flags))
            return
        sector = offset // self.sector_size
        if self.trace.on:
            self.trace.emit("block.submit", disk=self.name, op="write", sector=sector,
                            len=n, flags=flags)
        try:
            do_write(sector, data, flags)
        except NvdimmError as exc:
            self._error(exc, "write", sector, n, self._k_writes)
            raise
        m = self.metrics
        if m is not None:
            c = m.c
            c[self._k_writes] += 1
            c["block.bytes_written"] += n
            if flags and flags & PREFLUSH:
                c["block.flushes"] += 1

    def flush(self) -> None:
        """Make every completed write durable (``blkdev_issue_flush``).

        A no-op without a volatile write cache, as in Linux.
        """
        self.submit_bio_wait(flush_bio())

    def discard(self, offset: int, length: int) -> None:
        """Discard a block-aligned byte range; :class:`NotSupported` unless the queue can."""
        self.submit_bio_wait(discard_bio(self._to_sector(offset), length))

    def write_zeroes(self, offset: int, length: int) -> None:
        """Zero a block-aligned byte range without sending data; needs queue support."""
        self.submit_bio_wait(write_zeroes_bio(self._to_sector(offset), length))

    # -- bios (the general path) -----------------------------------------------------

    def submit_bio(self, bio: Bio) -> int:
        """Validate ``bio``, hand it to the driver, and return its status (0 or -errno).

        A malformed bio raises :class:`InvalidArgument` and never reaches the driver.
        Refusals the block layer makes itself (dead disk, read-only, unsupported
        operation) complete the bio with their errno without calling the driver.
        """
        bio.validate(self.logical_block_size, self.capacity, self.sector_size)
        op = bio.op
        if bio.flags & FLUSH_FLAGS and not self.write_cache:
            bio.flags &= ~FLUSH_FLAGS
            if bio.length == 0:
                bio.status = 0  # nothing to flush: complete without the driver
                return 0
        if self.dead:
            return self._refuse(bio, -errno.ENXIO)
        if (op is _FLUSH or (op is _DISCARD and not self.can_discard)
                or (op is _WRITE_ZEROES and not self.can_write_zeroes)):
            return self._refuse(bio, -errno.EOPNOTSUPP)
        if op.value & 1 and bio.length and self.read_only:
            return self._refuse(bio, -errno.EROFS)
        if self.trace.on:
            self.trace.emit("block.submit", disk=self.name, op=op.name.lower(),
                            sector=bio.sector, len=bio.length, flags=bio.flags)
        bio.status = 0
        try:
            self.ops.submit_bio(bio)
        except NvdimmError as exc:
            bio.status = -exc.errno
        m = self.metrics
        if m is not None:
            c = m.c
            if op is _READ:
                c[self._k_reads] += 1
            elif op is _DISCARD:
                c[f"block.{self.name}.discards"] += 1
            elif bio.length:  # WRITE and WRITE_ZEROES move data; an empty flush does not
                c[self._k_writes] += 1
            if bio.flags & PREFLUSH:
                c["block.flushes"] += 1
            if bio.status:
                c["block.errors"] += 1
            elif op is _READ:
                c["block.bytes_read"] += bio.length
            elif op is not _DISCARD:
                c["block.bytes_written"] += bio.length
        if bio.status and self.trace.on:
            self.trace.emit("block.error", disk=self.name, op=op.name.lower(),
                            sector=bio.sector, len=bio.length, status=bio.status)
        return bio.status

    def submit_bio_wait(self, bio: Bio) -> None:
        """Submit ``bio`` and raise the exception its status maps to, if any."""
        status = self.submit_bio(bio)
        if status:
            offset = bio.sector * self.sector_size
            raise status_to_error(
                status,
                f"{self.name}: {bio.op.name.lower()} [{offset:#x}, +{bio.length:#x}) "
                f"failed: {errno.errorcode.get(-status, str(-status))}",
                offset, bio.length)

    # -- lifecycle -------------------------------------------------------------------

    def mark_dead(self) -> None:
        """The driver is going away: every later I/O fails with ENXIO (``NoDevice``)."""
        self.dead = True
        # Dropping the hooks routes the fast path through submit_bio, which checks.
        self._do_read = None
        self._do_write = None

    # -- helpers ---------------------------------------------------------------------

    def _to_sector(self, offset: int) -> int:
        if offset < 0 or offset % self.sector_size:
            raise InvalidArgument(
                f"{self.name}: offset {offset:#x} is not a multiple of {self.sector_size}")
        return offset // self.sector_size

    def _bad_range(self, offset: int, length: int) -> InvalidArgument:
        lbs = self.logical_block_size
        if offset < 0 or length <= 0:
            why = "offset must not be negative and length must be positive"
        elif offset % lbs or length % lbs:
            why = f"not aligned to the {lbs}-byte logical block size"
        else:
            why = f"beyond the end of the disk ({self._cap_bytes:#x} bytes)"
        return InvalidArgument(f"{self.name}: I/O [{offset:#x}, +{length:#x}): {why}")

    def _refuse(self, bio: Bio, status: int) -> int:
        bio.status = status
        if self.metrics is not None:
            self.metrics.c["block.errors"] += 1
        if self.trace.on:
            self.trace.emit("block.error", disk=self.name, op=bio.op.name.lower(),
                            sector=bio.sector, len=bio.length, status=status)
        return status

    def _error(self, exc: NvdimmError, op: str, sector: int, length: int, key: str) -> None:
        if self.metrics is not None:
            # a failed I/O still counts as one, as in diskstats; its bytes do not
            self.metrics.c[key] += 1
            self.metrics.c["block.errors"] += 1
        if self.trace.on:
            self.trace.emit("block.error", disk=self.name, op=op, sector=sector,
                            len=length, status=-exc.errno)


BlockDevice = Gendisk
"""Partitions are not modelled, so a block device is its whole disk."""
