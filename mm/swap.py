"""Swap areas: anonymous pages written out to a block device and read back through bios.

A :class:`SwapDevice` is one swap area (``mkswap`` + ``swapon``) on a range of a
:class:`~block.genhd.Gendisk`: a raw pmem disk, a BTT (sector mode) disk, or a slow disk.
Page 0 holds the swap header, laid out as Linux's ``union swap_header``
(``include/linux/swap.h``): ``bootbits[1024]``, then ``version`` (1), ``last_page``,
``nr_badpages``, the uuid and the label; the magic ``SWAPSPACE2`` in the last 10 bytes of
the page. Slots 1 .. ``last_page`` hold pages.

* ``alloc`` hands out slots next-fit from where the last one was taken, as
  ``scan_swap_map_slots`` does within its clusters;
* ``write`` (``swap_writepage``) sends one 4 KiB WRITE bio, without FUA: swap contents
  do not need to survive a crash, nobody reads them after a reboot;
* ``read`` (``swap_readpage``) one READ bio;
* ``synchronous`` marks a device whose I/O completes in the submitter's context (pmem
  and BTT set ``QUEUE_FLAG_SYNCHRONOUS``): Linux then swaps in without the swap cache
  (4.15, "skip swapcache for swapin of synchronous device"), so the slot is freed at
  swap-in and a later swap-out writes the page again;
* ``full`` is ``vm_swap_full()``: more than half the slots in use, when the kernel frees
  a slot at swap-in rather than keep the copy.

Counters: ``swap.pswpout`` / ``swap.pswpin`` (vmstat's names), per area
``swap.<name>.slots_used`` (gauge); with ``medium`` set, the bytes are also counted per
medium (:func:`mm.numa.count_media`) on behalf of a driver that does not count them.

::

    mkswap + swapon pmem0         header at page 0, 16383 slots
    write(alloc(), page)          slot 1: WRITE bio sector 8, 4096 bytes
    read(1)                       READ bio sector 8; synchronous: slot 1 freed
"""

from __future__ import annotations

import struct
import uuid as uuidlib

import attrs

from block.bio import read_bio, write_bio
from block.genhd import Gendisk
from mm.memmap import PAGE_SIZE
from mm.numa import count_media
from nvdimm.errors import InvalidArgument, NoSpace
from nvdimm.metrics import Metrics
from nvdimm.trace import Trace

SWAP_MAGIC = b"SWAPSPACE2"
SWAP_VERSION = 1
#: bootbits[1024], then version, last_page, nr_badpages, uuid[16], volume[16].
SWAP_INFO = struct.Struct("<III16s16s")
SWAP_INFO_OFFSET = 1024


@attrs.frozen(slots=True)
class SwapHeader:
    """The fields of ``union swap_header`` the kernel checks at swapon."""

    last_page: int
    uuid: uuidlib.UUID
    label: str = ""
    nr_badpages: int = 0
    version: int = SWAP_VERSION

    def pack(self) -> bytes:
        label = self.label.encode()
        if len(label) > 16:
            raise InvalidArgument(f"swap label {self.label!r} is longer than 16 bytes")
        page = bytearray(PAGE_SIZE)
        SWAP_INFO.pack_into(page, SWAP_INFO_OFFSET, self.version, self.last_page,
                            self.nr_badpages, self.uuid.bytes, label.ljust(16, b"\0"))
        page[PAGE_SIZE - len(SWAP_MAGIC):] = SWAP_MAGIC
        return bytes(page)

    @classmethod
    def unpack(cls, page: bytes) -> SwapHeader:
        if len(page) != PAGE_SIZE or page[PAGE_SIZE - len(SWAP_MAGIC):] != SWAP_MAGIC:
            raise InvalidArgument("no swap signature (SWAPSPACE2) at the end of page 0: "
                                  "run mkswap first")
        version, last, bad, uid, label = SWAP_INFO.unpack_from(page, SWAP_INFO_OFFSET)
        if version != SWAP_VERSION:
            raise InvalidArgument(f"unsupported swap header version {version}")
        return cls(last, uuidlib.UUID(bytes=uid), label.rstrip(b"\0").decode(errors="replace"),
                   bad, version)


@attrs.define(slots=True, eq=False)
class SwapDevice:
    """One active swap area on ``disk`` bytes ``[start, start + size)``."""

    disk: Gendisk
    metrics: Metrics
    trace: Trace = attrs.field(factory=lambda: Trace(on=False))
    start: int = 0
    size: int = 0  # 0: to the end of the disk
    priority: int = -2
    #: Counted as ``media.<medium>.*`` here, for a disk whose driver does not count
    #: itself (pmem, BTT); None when the driver counts (null_blk).
    medium: str | None = None
    synchronous: bool = False
    name: str = ""
    header: SwapHeader | None = attrs.field(init=False, default=None)
    _map: bytearray = attrs.field(init=False, factory=bytearray, repr=False)
    _next: int = attrs.field(init=False, default=1)
    used: int = attrs.field(init=False, default=0)
    _k_used: str = attrs.field(init=False, default="", repr=False)

    def __attrs_post_init__(self) -> None:
        if not self.size:
            self.size = self.disk.size - self.start
        if self.start < 0 or self.start % PAGE_SIZE or self.size < 2 * PAGE_SIZE:
            raise InvalidArgument(f"swap area [{self.start:#x}, +{self.size:#x}) on "
                                  f"{self.disk.name} must be page aligned and hold a header "
                                  "page and at least one slot")
        if self.start + self.size > self.disk.size:
            raise InvalidArgument(f"swap area [{self.start:#x}, +{self.size:#x}) is beyond "
                                  f"the end of {self.disk.name} ({self.disk.size:#x} bytes)")
        if PAGE_SIZE % self.disk.logical_block_size:
            raise InvalidArgument(f"{self.disk.name}: a {self.disk.logical_block_size}-byte "
                                  "block does not divide a page")
        if not self.name:
            self.name = self.disk.name
        self._k_used = f"swap.{self.name}.slots_used"

    # -- mkswap / swapon ---------------------------------------------------------------

    @property
    def nr_slots(self) -> int:
        """Slots for pages (the header page excluded)."""
        return self.size // PAGE_SIZE - 1

    def mkswap(self, label: str = "", uuid: uuidlib.UUID | None = None) -> SwapHeader:
        """Write a swap header (``mkswap``): every slot free."""
        hdr = SwapHeader(self.nr_slots, uuid or uuidlib.UUID(int=0), label)
        self.disk.write(self.start, hdr.pack(), fua=True)
        return hdr

    def swapon(self) -> SwapHeader:
        """Read and check the header, and start with every slot free."""
        hdr = SwapHeader.unpack(self.disk.read(self.start, PAGE_SIZE))
        if hdr.last_page > self.nr_slots:
            raise InvalidArgument(f"{self.name}: the header says {hdr.last_page} pages but "
                                  f"the area holds {self.nr_slots}")
        self.header = hdr
        self._map = bytearray(hdr.last_page + 1)
        self._map[0] = 1  # the header page
        self._next = 1
        self.used = 0
        return hdr

    def _active(self) -> bytearray:
        if self.header is None:
            raise InvalidArgument(f"{self.name} is not an active swap area (swapon first)")
        return self._map

    # -- slots -------------------------------------------------------------------------------

    @property
    def free_slots(self) -> int:
        return len(self._active()) - 1 - self.used

    @property
    def full(self) -> bool:
        """``vm_swap_full``: more than half the slots are in use."""
        return self.used * 2 > len(self._active()) - 1

    def alloc(self) -> int:
        """A free slot, next-fit; NoSpace when the area is full."""
        smap = self._active()
        n = len(smap)
        if self.used >= n - 1:
            raise NoSpace(f"swap area {self.name} is full ({n - 1} slots)")
        i = smap.find(0, self._next)
        if i < 0:
            i = smap.find(0, 1)
        smap[i] = 1
        self._next = i + 1
        self.used += 1
        self.metrics.set(self._k_used, self.used)
        return i

    def free(self, slot: int) -> None:
        smap = self._active()
        if not 0 < slot < len(smap) or not smap[slot]:
            raise InvalidArgument(f"{self.name}: slot {slot} is not in use")
        smap[slot] = 0
        self.used -= 1
        self.metrics.set(self._k_used, self.used)

    def in_use(self, slot: int) -> bool:
        smap = self._active()
        return 0 < slot < len(smap) and bool(smap[slot])

    # -- I/O -------------------------------------------------------------------------------

    def _sector(self, slot: int) -> int:
        return (self.start + slot * PAGE_SIZE) // self.disk.sector_size

    def write(self, slot: int, data: bytes) -> None:
        """swap_writepage: one WRITE bio of the page."""
        if not self.in_use(slot):
            raise InvalidArgument(f"{self.name}: writing to free slot {slot}")
        if len(data) != PAGE_SIZE:
            raise InvalidArgument(f"a swap slot holds {PAGE_SIZE} bytes, not {len(data)}")
        self.disk.submit_bio_wait(write_bio(self._sector(slot), data))
        self.metrics.c["swap.pswpout"] += 1
        if self.medium is not None:
            count_media(self.metrics, self.medium, bytes_written=PAGE_SIZE)
        if self.trace.on:
            self.trace.emit("swap.out", dev=self.name, slot=slot)

    def read(self, slot: int) -> bytes:
        """swap_readpage: one READ bio of the page."""
        if not self.in_use(slot):
            raise InvalidArgument(f"{self.name}: reading free slot {slot}")
        bio = read_bio(self._sector(slot), PAGE_SIZE)
        self.disk.submit_bio_wait(bio)
        assert bio.data is not None
        self.metrics.c["swap.pswpin"] += 1
        if self.medium is not None:
            count_media(self.metrics, self.medium, reads=1, bytes_read=PAGE_SIZE)
        if self.trace.on:
            self.trace.emit("swap.in", dev=self.name, slot=slot)
        return bytes(bio.data)

    def describe(self) -> str:
        """``swapon --show`` style."""
        return (f"{self.name:<10} partition {self.size >> 20} MiB used {self.used} of "
                f"{self.nr_slots} slots prio {self.priority}"
                f"{' synchronous' if self.synchronous else ''}")
