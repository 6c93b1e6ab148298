"""The BTT block device, /dev/pmemNs: arenas found (or laid out) on a namespace, exposed
as a disk whose sectors a power failure never tears.

Linux's ``struct btt`` in the model's terms: :func:`discover_arenas` walks the info
blocks from the BTT's initial offset (attach: each arena's flog is recovered as it is
found); :func:`create_arenas` writes a fresh layout (``btt_meta_init``);
:class:`BttDevice` splits I/O into blocks, finds each block's arena and lane, and
hands it to :class:`~drivers.btt.arena.Arena`.

Every write is durable when it returns (each piece ends in ``nvdimm_flush``), so the
queue has no volatile write cache: flushes and FUA cost nothing here.

The block size the disk shows is the BTT's external sector size (512, 520, 528, 4096,
4104, 4160 or 4224): the model keeps the protection-information bytes Linux exposes as
block-integrity metadata inline, in each block after its 512 or 4096 data bytes.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

import attrs

from block.bio import Bio, BufferLike
from block.genhd import Gendisk, complete_bio
from drivers.btt.arena import Arena, PieceHook
from drivers.btt.arena import write_layout as _write_layout
from drivers.btt.format import (
    INFO_SIZE,
    ArenaGeometry,
    BttVersion,
    InfoBlock,
    MapSummary,
    info_is_valid,
    linux_sector_size,
    plan_arenas,
)
from nvdimm.errors import CorruptMetadata, InvalidArgument, MediaError, ReadOnly
from nvdimm.metrics import Metrics
from nvdimm.namespace import Namespace
from nvdimm.platform.memctrl import DimmMedia
from nvdimm.trace import Trace
from nvdimm.units import SECTOR_SIZE

ND_MAX_LANES = 256
NULL_UUID = uuidlib.UUID(int=0)


@attrs.define(slots=True, eq=False)
class NamespaceIO:
    """``nvdimm_read_bytes`` / ``nvdimm_write_bytes`` on a namespace, as the BTT uses them.

    A write is a flushcache copy then ``nvdimm_flush``; ``on_piece``, when set, is
    called in between (the piece is visible, nothing else is pending), which is where
    crash exploration enumerates what a power failure could leave.

    When the CPU model is in its cheap mode (crash tracking off: a store is a media
    write), the namespace lies on one DIMM, nothing is known bad and no hook is set,
    reads and writes go through the kernel's direct map of the range straight to the
    media, counted as the CPU model would count them.
    """

    ns: Namespace
    on_piece: PieceHook | None = None
    _spa: int = attrs.field(init=False, repr=False)
    _size: int = attrs.field(init=False, repr=False)
    _cpu: Any = attrs.field(init=False, repr=False)
    _bus: Any = attrs.field(init=False, repr=False)
    _bad: Any = attrs.field(init=False, repr=False)
    _region: Any = attrs.field(init=False, repr=False)
    _dimm: DimmMedia | None = attrs.field(init=False, default=None, repr=False)
    _media: Any = attrs.field(init=False, default=None, repr=False)
    _dpa: int = attrs.field(init=False, default=0, repr=False)
    _c: Any = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._spa = self.ns.spa
        self._size = self.ns.size
        self._region = self.ns.region
        self._bus = self._region.bus
        self._bad = self._bus.badrange
        platform = self._bus.platform
        self._cpu = platform.cpu
        self._c = self._bus.metrics.c
        dmap = platform.memctrl.direct(self._spa, self._size)
        if dmap is not None:
            self._dimm, self._dpa = dmap
            self._media = self._dimm.media

    def direct(self) -> tuple[Any, int] | None:
        """``(media, DPA of namespace offset 0)`` while a store is exactly a media write
        (cheap mode, one DIMM, nothing known bad or poisoned, writable, no hook), so
        the BTT may copy through the direct map; else None."""
        dimm = self._dimm
        if (dimm is None or not self._cpu.direct or self.on_piece is not None or self._bad
                or dimm.poison or self._region.read_only):
            return None
        return self._media, self._dpa

    def _range(self, off: int, n: int) -> None:
        if off < 0 or n < 0 or off + n > self._size:
            raise InvalidArgument(f"{self.ns.dev}: BTT access [{off:#x}, {off + n:#x}) "
                                  f"outside the namespace's {self._size:#x} bytes")

    def is_bad(self, off: int, n: int) -> bool:
        bad = self._bad
        if not bad:
            return False
        head = off % SECTOR_SIZE
        return bool(bad.overlaps(self._spa + off - head, n + head))

    def read(self, off: int, n: int) -> bytes:
        if off < 0 or off + n > self._size:
            self._range(off, n)
        dimm = self._dimm
        if dimm is not None and self._cpu.direct and not dimm.poison and not self._bad:
            data: bytes = self._media.read(self._dpa + off, n)
            return data
        if self.is_bad(off, n):
            raise MediaError(f"{self.ns.dev}: read of known-bad range at {off:#x}", off, n)
        try:
            data = self._cpu.load(self._spa + off, n)
        except MediaError as e:
            raise MediaError(f"{self.ns.dev}: machine check at offset {e.offset - self._spa:#x}",
                             e.offset - self._spa, e.length) from None
        return data

    def write(self, off: int, data: BufferLike, what: str = "", atomic: bool = True) -> None:
        n = len(data)
        if off < 0 or off + n > self._size:
            self._range(off, n)
        if self._region.read_only:
            raise ReadOnly(f"{self.ns.dev}: region{self._region.id} is read-only")
        if (self._dimm is not None and self._cpu.direct and self.on_piece is None
                and not self._bad):
            # Cheap mode: the flushcache copy is NT stores straight to media, and the
            # nvdimm_flush after it two fences; count them as the CPU model would.
            self._media.write(self._dpa + off, data)
            _count_flushcache(self._c, self._spa + off, n)
            return
        if self.is_bad(off, n):
            if atomic or off % SECTOR_SIZE or n % SECTOR_SIZE:
                raise MediaError(f"{self.ns.dev}: write to a known-bad range at {off:#x}",
                                 off, n)
            try:
                self._bus.clear_poison(self._spa + off, n)
            except InvalidArgument as e:
                raise MediaError(f"{self.ns.dev}: cannot clear poison: {e.message}",
                                 off, n) from None
        cpu = self._cpu
        cpu.write_flushcache(self._spa + off, data)
        hook = self.on_piece
        if hook is not None:
            hook(off, bytes(data), what)
        cpu.nvdimm_flush()


def _count_flushcache(c: Any, addr: int, n: int) -> None:
    """Count a ``memcpy_flushcache`` + ``nvdimm_flush`` as the CPU model does: cached
    store and write-back for an unaligned head and a 1-3 byte tail, NT stores for the
    8-byte body and a 4-byte remainder, two fences."""
    c["cpu.fences"] += 2
    c["cpu.bytes_stored"] += n
    if not (addr | n) & 7:
        c["cpu.nt_stores"] += 1
        return
    head = min(-addr & 7, n)
    if head:
        c["cpu.stores"] += 1
        c["cpu.writebacks"] += 1
    body = (n - head) & ~7
    if body:
        c["cpu.nt_stores"] += 1
    rest = n - head - body
    if rest >= 4:
        c["cpu.nt_stores"] += 1
        rest -= 4
    if rest:
        c["cpu.stores"] += 1
        c["cpu.writebacks"] += 1


# -- the BTT: arenas on a namespace ------------------------------------------------------


def create_arenas(io: Any, *, ns_size: int, lbasize: int, version: BttVersion,
                  uuid: uuidlib.UUID, parent_uuid: uuidlib.UUID | None) -> list[ArenaGeometry]:
    """Lay out a fresh BTT (``create_arenas`` + ``btt_meta_init``): every arena's map,
    flog and info blocks. The data area is left as it is, as Linux leaves it."""
    geos = plan_arenas(ns_size, lbasize, version)
    for g in geos:
        _write_layout(io, g, uuid, parent_uuid or NULL_UUID, version)
    return geos


def discover_arenas(io: Any, *, ns_size: int, version: BttVersion,
                    parent_uuid: uuidlib.UUID | None, metrics: Metrics | None = None,
                    trace: Trace | None = None) -> list[Arena] | None:
    """Linux's ``discover_arenas``: follow the info blocks from the initial offset,
    recovering each arena's flog. None when the first info block is not valid ("No
    existing arenas"); :class:`CorruptMetadata` when a later one is not, or when an
    arena's flog cannot be made sense of."""
    remaining = ns_size - version.initial_offset
    off = version.initial_offset
    lba = 0
    arenas: list[Arena] = []
    sector_size = 0
    while remaining > 0:
        if off + INFO_SIZE > ns_size:
            raise CorruptMetadata(f"BTT arena {len(arenas)} at {off:#x} lies beyond the "
                                  "namespace")
        raw = io.read(off, INFO_SIZE)
        if not info_is_valid(raw, parent_uuid):
            if not arenas:
                return None
            raise CorruptMetadata(f"BTT arena {len(arenas)} at {off:#x}: Found corrupted "
                                  "metadata!")
        info = InfoBlock.unpack(raw)
        geo = ArenaGeometry.from_info(info, off, lba)
        _check_geometry(geo, ns_size, len(arenas))
        if not arenas:
            sector_size = linux_sector_size(info.external_lbasize)
        arenas.append(Arena.load(io, geo, info, sector_size=sector_size, metrics=metrics,
                                 trace=trace))
        remaining -= geo.size
        off += geo.size
        lba += geo.external_nlba
        if info.nextoff == 0:
            break
    return arenas


def _check_geometry(g: ArenaGeometry, ns_size: int, num: int) -> None:
    """Refuse an info block whose parts do not fit the namespace (Linux would fault
    reading them; the model says so instead)."""
    parts = (g.infooff < g.dataoff <= g.mapoff <= g.logoff <= g.info2off
             and g.info2off + INFO_SIZE <= ns_size and g.external_lbasize > 0
             and g.internal_lbasize >= g.external_lbasize
             and g.internal_nlba > g.external_nlba >= 0
             and g.dataoff + g.internal_nlba * g.internal_lbasize <= g.mapoff
             and g.mapoff + g.external_nlba * 4 <= g.logoff
             and g.logoff + g.nfree * 64 <= g.info2off and 0 < g.nfree <= ND_MAX_LANES)
    if not parts:
        raise CorruptMetadata(f"BTT arena {num} at {g.infooff:#x}: its info block describes "
                              "a layout that does not fit the namespace")


def read_info(io: Any, off: int, parent_uuid: uuidlib.UUID | None) -> InfoBlock | None:
    """The info block at ``off`` if it is valid (signature, parent uuid, checksum)."""
    raw = io.read(off, INFO_SIZE)
    return InfoBlock.unpack(raw) if info_is_valid(raw, parent_uuid) else None


# -- the block device --------------------------------------------------------------------


@attrs.define(slots=True, eq=False)
class BttDevice:
    """The sector-mode disk bound to one namespace."""

    ns: Namespace
    name: str
    io: NamespaceIO
    arenas: list[Arena]
    uuid: uuidlib.UUID  # the BTT instance's (info block) uuid
    version: BttVersion
    metrics: Metrics
    trace: Trace
    nlanes: int = 1
    cpu: int = 0  # the simulated CPU issuing I/O: it picks the lane
    lbasize: int = attrs.field(init=False)
    sector_size: int = attrs.field(init=False)  # what Linux exposes: 512 or 4096
    nlba: int = attrs.field(init=False)
    disk: Gendisk = attrs.field(init=False)
    _unit: int = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        first = self.arenas[0].geo
        self.lbasize = first.external_lbasize
        self.sector_size = linux_sector_size(self.lbasize)
        self.nlba = sum(a.geo.external_nlba for a in self.arenas)
        self.nlanes = max(1, min(self.nlanes, ND_MAX_LANES, first.nfree))
        for a in self.arenas:
            a.concurrent = self.nlanes > 1
        lbs = self.lbasize
        self._unit = SECTOR_SIZE if lbs % SECTOR_SIZE == 0 else lbs
        self.disk = Gendisk(name=self.name, ops=self,
                            capacity=self.nlba * lbs // self._unit,
                            logical_block_size=lbs, metrics=self.metrics, trace=self.trace,
                            write_cache=False, fua=False,
                            read_only=bool(self.ns.region.read_only))

    @property
    def size(self) -> int:
        """Exported capacity, as Linux counts it: blocks times the Linux sector size."""
        return self.nlba * self.sector_size

    @property
    def lane(self) -> int:
        """``nd_region_acquire_lane``: the issuing CPU's lane."""
        return self.cpu % self.nlanes

    def arena_of(self, lba: int) -> tuple[Arena, int]:
        """``lba_to_arena``: the arena holding external block ``lba`` and its premap."""
        for a in self.arenas:
            n = a.geo.external_nlba
            if lba < n:
                return a, lba
            lba -= n
        raise MediaError(f"{self.name}: block {lba} is beyond the BTT", 0, 0)

    # -- I/O ------------------------------------------------------------------------------

    def do_read(self, sector: int, length: int) -> bytes:
        lbs = self.lbasize
        lba = sector * self._unit // lbs
        lane = self.cpu % self.nlanes
        if length == lbs and len(self.arenas) == 1:
            out = self.arenas[0].read_block(lane, lba)
        else:
            buf = bytearray()
            for i in range(length // lbs):
                arena, premap = self.arena_of(lba + i)
                buf += arena.read_block(lane, premap)
            out = bytes(buf)
        self.metrics.c["btt.bytes_read"] += length
        if self.trace.on:
            self.trace.emit("btt.read", dev=self.name, lba=lba, blocks=length // lbs,
                            lane=lane)
        return out

    def do_write(self, sector: int, data: BufferLike, flags: int) -> None:
        lbs = self.lbasize
        lba = sector * self._unit // lbs
        lane = self.cpu % self.nlanes
        n = len(data)
        if self.trace.on:
            self.trace.emit("btt.write", dev=self.name, lba=lba, blocks=n // lbs, lane=lane)
        if n == lbs and len(self.arenas) == 1:
            # The caller may reuse its buffer: the data piece takes a copy (bytes() of a
            # bytes object is the object itself).
            self.arenas[0].write_block(lane, lba, bytes(data))
        else:
            mv = memoryview(data)
            for i in range(n // lbs):
                arena, premap = self.arena_of(lba + i)
                arena.write_block(lane, premap, bytes(mv[i * lbs:(i + 1) * lbs]))
        self.metrics.c["btt.bytes_written"] += n

    def flush(self) -> None:
        """Nothing to do: every BTT write was durable when it completed."""

    def submit_bio(self, bio: Bio) -> None:
        complete_bio(bio, self.do_read, self.do_write, self.flush)

    # -- what ndctl shows ------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """``ndctl list -N`` for a sector namespace: the BTT's uuid as ``uuid``, the
        label's as ``raw_uuid``, the external sector size."""
        out: dict[str, Any] = {"size": self.size, "uuid": str(self.uuid)}
        if self.ns.uuid is not None:
            out["raw_uuid"] = str(self.ns.uuid)
        out["sector_size"] = self.lbasize
        out["blockdev"] = self.name
        return out

    # -- invariants ------------------------------------------------------------------------

    def check_invariants(self) -> None:
        """Map and free list form a permutation of each arena's internal blocks (raises
        :class:`CorruptMetadata` naming the first block that breaks it)."""
        for n, a in enumerate(self.arenas):
            summary = a.map_summary()
            free = a.free_blocks()
            if permutation_ok(summary, free, a.geo.internal_nlba):
                continue
            problem = permutation_problem(list(summary.lookups), free, a.geo.internal_nlba)
            raise CorruptMetadata(f"{self.name}: arena {n}: {problem}")


def permutation_ok(summary: MapSummary, free: list[int], internal_nlba: int) -> bool:
    """Whether the mapped blocks and the free blocks are each internal block once."""
    free_set = set(free)
    return (summary.injective and len(free_set) == len(free)
            and len(summary.lookups) + len(free) == internal_nlba
            and summary.max_block < internal_nlba and max(free, default=0) < internal_nlba
            and summary.blocks.isdisjoint(free_set))


def permutation_problem(mapped: list[int], free: list[int], internal_nlba: int) -> str:
    """Why map + free list are not exactly the internal blocks, or "" when they are."""
    seen = bytearray(internal_nlba)
    for lba, blk in enumerate(mapped):
        if blk >= internal_nlba:
            return f"map[{lba:#x}] = {blk:#x} is out of range"
        if seen[blk]:
            return f"internal block {blk:#x} is referenced twice (map[{lba:#x}])"
        seen[blk] = 1
    for lane, blk in enumerate(free):
        if blk >= internal_nlba:
            return f"lane {lane}'s free block {blk:#x} is out of range"
        if seen[blk]:
            return f"internal block {blk:#x} is mapped and free, or free twice (lane {lane})"
        seen[blk] = 1
    if seen.count(0):
        return f"internal block {seen.index(0):#x} is neither mapped nor free"
    return ""
