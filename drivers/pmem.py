"""The pmem driver: a namespace's capacity as a block device, /dev/pmemN.

Linux's ``nd_pmem`` in the model's terms:

* writes copy with ``memcpy_flushcache`` (non-temporal stores) and are *not* durable
  until a fence: a write bio without FUA, followed by no flush, can be lost;
* ``REQ_PREFLUSH`` runs ``nvdimm_flush`` before the data, ``REQ_FUA`` after it;
* reads of sectors in the badblocks list fail with EIO without touching media; a read
  that consumes unknown poison (a machine check) also fails with EIO;
* a write covering whole bad sectors clears their poison through the platform first.

Badblocks come from the bus's badrange list (address range scrub and injected
errors), relative to the start of the device's data.
"""

from __future__ import annotations

from typing import Any

import attrs

from block.badblocks import BadBlocks
from block.bio import FUA, PREFLUSH, Bio
from block.genhd import Gendisk, complete_bio
from nvdimm.errors import InvalidArgument, MediaError
from nvdimm.metrics import Metrics
from nvdimm.namespace import Namespace
from nvdimm.platform.memctrl import DimmMedia
from nvdimm.platform.persistence import PersistenceDomain
from nvdimm.trace import Trace
from nvdimm.units import SECTOR_SIZE

SECTOR_SHIFT = 9


def disk_name(ns: Namespace, suffix: str = "") -> str:
    """Linux's pmem disk names: pmem<region>[.<id>]<suffix> (no .0 for the first)."""
    r = ns.region.id
    return f"pmem{r}.{ns.id}{suffix}" if ns.id else f"pmem{r}{suffix}"


@attrs.define(slots=True, eq=False)
class PmemDevice:
    """The pmem disk bound to one namespace: ``[data_offset, data_offset + size)``."""

    ns: Namespace
    name: str
    data_offset: int
    size: int
    cpu: PersistenceDomain
    metrics: Metrics
    trace: Trace
    lbasize: int = SECTOR_SIZE
    spa: int = attrs.field(init=False)
    badblocks: BadBlocks = attrs.field(init=False)
    disk: Gendisk = attrs.field(init=False)
    # The kernel's direct map of our range: (DIMM media, DPA of our first byte), used
    # only while the CPU model is in its cheap mode, where a store is a media write.
    _dmap: tuple[DimmMedia, int] | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        self.spa = self.ns.spa + self.data_offset
        self._dmap = self.ns.region.bus.platform.memctrl.direct(self.spa, self.size)
        self.badblocks = BadBlocks()
        # The queue always advertises a volatile write cache (so flushes are sent); FUA
        # only when the platform has a flush mechanism (nvdimm_has_flush() == 1), as
        # Linux does. A bio-based driver sees the FUA flag either way.
        self.disk = Gendisk(name=self.name, ops=self, capacity=self.size >> SECTOR_SHIFT,
                            logical_block_size=self.lbasize, badblocks=self.badblocks,
                            metrics=self.metrics, trace=self.trace,
                            fua=self.cpu.has_flush == 1,
                            write_cache=True, can_write_zeroes=True)
        self.refresh_badblocks()

    # -- badblocks --------------------------------------------------------------------

    def refresh_badblocks(self) -> None:
        """nvdimm_badblocks_populate: bus badrange -> sectors relative to our data."""
        bb = BadBlocks()
        bus = self.ns.region.bus
        for start, n in bus.badrange.intersect(self.spa, self.size):
            first = (start - self.spa) >> SECTOR_SHIFT
            last = -(-(start + n - self.spa) // SECTOR_SIZE)
            while first < last:
                take = min(last - first, 512)
                bb.set(first, take, True)
                first += take
        self.badblocks = bb
        self.disk.badblocks = bb

    def badblocks_json(self) -> list[dict[str, Any]]:
        dimms = [d.dev for d in self.ns.region.dimms]
        return [{"offset": e.start, "length": e.length, "dimms": dimms} for e in self.badblocks]

    # -- I/O ------------------------------------------------------------------------------

    def flush(self) -> None:
        """nvdimm_flush: fence, flush hints, fence."""
        self.cpu.nvdimm_flush()
        self.metrics.c["pmem.flushes"] += 1
        if self.trace.on:
            self.trace.emit("pmem.flush", dev=self.name)

    def do_read(self, sector: int, length: int) -> bytes:
        """Fast hook: read ``length`` bytes at ``sector``; MediaError means EIO."""
        bb = self.badblocks
        if bb.count and bb.check(sector, -(-length >> SECTOR_SHIFT))[0]:
            self.metrics.c["pmem.read_errors"] += 1
            raise MediaError(f"{self.name}: read of bad sector(s) near {sector}",
                             sector << SECTOR_SHIFT, length)
        off = sector << SECTOR_SHIFT
        dmap = self._dmap
        if dmap is not None and self.cpu.direct and not dmap[0].poison:
            out = dmap[0].media.read(dmap[1] + off, length)
            c = self.metrics.c
            c["pmem.bytes_read"] += length
            if self.trace.on:
                self.trace.emit("pmem.read", dev=self.name, sector=sector, len=length)
            return out
        try:
            out = self.cpu.load(self.spa + off, length)
        except MediaError as e:  # consumed poison: copy_mc_to_kernel came up short
            self.metrics.c["pmem.read_errors"] += 1
            self.metrics.c["pmem.machine_checks"] += 1
            raise MediaError(f"{self.name}: machine check reading sector {sector}",
                             e.offset - self.spa, e.length) from None
        self.metrics.c["pmem.bytes_read"] += length
        if self.trace.on:
            self.trace.emit("pmem.read", dev=self.name, sector=sector, len=length)
        return out

    def do_write(self, sector: int, data: bytes | bytearray | memoryview, flags: int) -> None:
        """Fast hook: PREFLUSH, then flushcache copy, then FUA, as pmem_submit_bio."""
        if flags & PREFLUSH:
            self.flush()
        n = len(data)
        bb = self.badblocks
        if bb.count and bb.check(sector, -(-n >> SECTOR_SHIFT))[0]:
            self._clear_poison(sector, n)
        off = sector << SECTOR_SHIFT
        cpu = self.cpu
        dmap = self._dmap
        c = self.metrics.c
        if dmap is not None and cpu.direct:
            # Cheap mode: memcpy_flushcache of an aligned block is NT stores straight to
            # media; count them as the CPU model would.
            dmap[0].media.write(dmap[1] + off, data)
            c["cpu.nt_stores"] += 1
            c["cpu.bytes_stored"] += n
        else:
            cpu.write_flushcache(self.spa + off, data)
        c["pmem.bytes_written"] += n
        if self.trace.on:
            self.trace.emit("pmem.write", dev=self.name, sector=sector, len=n,
                            fua=bool(flags & FUA), spa=self.spa + off)
        if flags & FUA:
            self.flush()

    def _clear_poison(self, sector: int, n: int) -> None:
        bus = self.ns.region.bus
        start = self.spa + (sector << SECTOR_SHIFT)
        try:
            cleared = bus.clear_poison(start, n)
        except InvalidArgument as e:
            self.metrics.c["pmem.write_errors"] += 1
            raise MediaError(f"{self.name}: cannot clear poison: {e.message}",
                             sector << SECTOR_SHIFT, n) from None
        self.metrics.c["pmem.poison_cleared"] += cleared
        if self.trace.on:
            self.trace.emit("pmem.clear_poison", dev=self.name, sector=sector, len=cleared)

    def submit_bio(self, bio: Bio) -> None:
        """The general path: one bio, completed with a status instead of raising."""
        complete_bio(bio, self.do_read, self.do_write, self.flush, write_zeroes=True)

    # -- what ndctl shows -------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"size": self.size}
        if self.ns.uuid is not None:
            out["uuid"] = str(self.ns.uuid)
        out["sector_size"] = self.lbasize
        out["blockdev"] = self.name
        return out


@attrs.define(slots=True)
class PmemDriver:
    """Binds raw-mode namespaces (and, through pfn, fsdax ones later) as pmem disks."""

    mode: str = "raw"

    def detect(self, ns: Namespace) -> bool:
        return ns.mode == "raw"

    def validate(self, ns: Namespace, **options: object) -> None:
        extra = {k for k, v in options.items() if v is not None and k != "sector_size"}
        if extra:
            raise InvalidArgument(f"raw mode takes no {', '.join(sorted(extra))} option")

    def format(self, ns: Namespace, **options: object) -> None:
        """Raw mode has no metadata: Linux writes nothing. (Stale info blocks are wiped
        when the namespace that owned them is destroyed, as ndctl does.)"""

    def attach(self, ns: Namespace) -> PmemDevice:
        bus = ns.region.bus
        dev = PmemDevice(ns, disk_name(ns), 0, ns.size, bus.platform.cpu, bus.metrics,
                         bus.trace, lbasize=ns.lbasize)
        return dev

    def detach(self, ns: Namespace, device: object) -> None:
        assert isinstance(device, PmemDevice)
        device.flush()  # driver remove flushes, as Linux's pmem does
