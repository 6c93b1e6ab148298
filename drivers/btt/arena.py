"""One BTT arena at run time: its free list, read tracking table and map locks, and the
read, write and recovery paths in Linux's order.

Every write to the namespace goes through an :class:`ArenaIO` whose ``write`` is
Linux's ``nvdimm_write_bytes``: a flushcache copy then ``nvdimm_flush``, durable and
ordered on return. A sector write is therefore a sequence of durable *pieces*::

    data     the new contents, into the lane's free block
    flog     {lba, old_map}          first 8-byte half of the log entry
    flog     {new_map, seq}          second half: the commit point
    map      map[lba] = new block    (a crash before this is rolled forward)

and a power failure can only land between pieces, or inside the one being written.

Lanes: one per simulated CPU (Linux: lane = CPU when there are no more CPUs than 256
lanes). A lane owns a free block, a flog group and an RTT slot. The model runs one
thing at a time, so where Linux would spin (a writer whose free block a reader still
holds in the RTT, a map lock held by another lane) the model raises :class:`Busy`
naming what it would wait for; :meth:`Arena.read_begin` / :meth:`Arena.read_end` split a
read so a test can hold one open across a write.

DAX mappings of data blocks (``drivers.btt.remap``): while one exists the arena's
:attr:`Arena.remap_guard` is set and every block write asks it first whether to remap
as usual or write in place; with no mapping the guard is None and costs one test.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from typing import Any, NoReturn, Protocol

import attrs

from block.bio import BufferLike
from drivers.btt.format import (
    IB_FLAG_ERROR,
    LOG_GRP_SIZE,
    LOG_HALF,
    LOG_SEQ_INIT,
    MAP_ENT_SIZE,
    MAP_ERR_FLAG,
    MAP_LBA_MASK,
    RTT_INVALID,
    RTT_VALID,
    ArenaGeometry,
    BttVersion,
    FlogState,
    InfoBlock,
    LogEntry,
    MapSummary,
    flog_state,
    log_entry_bytes,
    log_halves,
    map_decode,
    map_encode,
    map_normal,
    map_summary,
    next_seq,
)
from nvdimm.errors import Busy, CorruptMetadata, MediaError
from nvdimm.metrics import Metrics
from nvdimm.trace import Trace

_CACHE_LINE = 64
_NEXT_SEQ = (0, 2, 3, 1)  # next_seq, inlined on the fast path
MAP_ZERO_CHUNK = 2 << 20  # btt_map_init zeroes the map 2 MiB at a time
LOG_ZERO_CHUNK = 4096  # btt_log_init zeroes the flog 4 KiB at a time


class ArenaIO(Protocol):
    """Byte access to the namespace under the BTT (``nvdimm_{read,write}_bytes``).

    Offsets are namespace offsets. ``write`` is durable on return; ``what`` names the
    piece for tracing and crash exploration; ``atomic`` is ``NVDIMM_IO_ATOMIC`` (the
    I/O path): a write to a known-bad range then fails instead of clearing poison.
    Reads of known-bad ranges or poison raise :class:`MediaError`.
    """

    def read(self, off: int, n: int) -> bytes: ...

    def write(self, off: int, data: BufferLike, what: str = "", atomic: bool = True) -> None:
        ...

    def is_bad(self, off: int, n: int) -> bool:
        """Whether ``[off, off+n)`` touches a known-bad sector (the badblocks list)."""
        ...

    def direct(self) -> tuple[Any, int] | None:
        """``(media, offset)`` when reads and writes may go straight to ``media`` at
        ``offset + namespace offset`` (crash tracking off, nothing bad): the fast path.
        None otherwise, or always for an I/O object that does not offer it."""
        ...


PieceHook = Callable[[int, bytes, str], None]


class RemapGuard(Protocol):
    """Whoever holds DAX mappings of an arena's blocks (``drivers.btt.remap.BttDax``);
    installed as :attr:`Arena.remap_guard` only while at least one block is mapped."""

    def before_write(self, arena: Arena, lane: int, premap: int) -> bool:
        """A block write of ``premap`` on ``lane`` is about to start: True to remap it as
        usual (data into the free block, flog, map), False to write it in place into
        its current block. May call holders back, or raise to refuse the write."""
        ...


@attrs.define(slots=True)
class FreeEntry:
    """A lane's free block, and where and with which sequence number its next flog entry
    goes (``sub`` indexes the lane's pair of log slots)."""

    block: int
    sub: int
    seq: int
    has_err: bool = False


@attrs.frozen(slots=True)
class Recovery:
    """A roll-forward done at attach: the crash hit after the flog commit of a write to
    ``lba`` and before its map update, so the map now points at ``new_map``."""

    lane: int
    lba: int
    old_map: int
    new_map: int


def _decoded(raw: int, premap: int) -> tuple[int, int]:
    """(postmap, flags) of a map entry as a reader compares them: the initial state and
    a normal entry to the same block read the same."""
    ze = raw >> 30
    if ze == 0 or ze == 3:
        return (raw & MAP_LBA_MASK if ze else premap), 0
    return raw & MAP_LBA_MASK, ze


def zero_range(io: ArenaIO, off: int, n: int, chunk: int, what: str) -> None:
    """Zero ``[off, off+n)`` in ``chunk``-sized durable writes, as Linux's map and log
    init do. Chunks that already read as zeroes are skipped: the media ends up the same,
    and never-written (sparse) capacity stays unallocated."""
    zeros = bytes(min(chunk, n))
    end = off + n
    while off < end:
        take = min(chunk, end - off)
        z = zeros if take == len(zeros) else bytes(take)
        if io.read(off, take) != z:
            io.write(off, z, what, atomic=False)
        off += take


def write_layout(io: ArenaIO, geo: ArenaGeometry, uuid: uuidlib.UUID,
                 parent_uuid: uuidlib.UUID, version: BttVersion) -> InfoBlock:
    """Linux's ``btt_arena_write_layout``: zero the map, zero the flog and give every
    lane its initial entry (``lba = lane``, ``old = new = external_nlba + lane``,
    ``seq = 1`` in slot 0), then the backup info block, then the info block."""
    zero_range(io, geo.mapoff, geo.mapsize, MAP_ZERO_CHUNK, "init.map")
    zero_range(io, geo.logoff, geo.logsize, LOG_ZERO_CHUNK, "init.flog")
    for lane in range(geo.nfree):
        block = geo.external_nlba + lane
        h1, h2 = LogEntry(lane, block, block, LOG_SEQ_INIT).halves()
        off = geo.slot_off(lane, 0)
        io.write(off, h1, "init.flog", atomic=False)
        io.write(off + LOG_HALF, h2, "init.flog", atomic=False)
    info = geo.info_block(uuid, parent_uuid, version)
    raw = info.pack()
    io.write(geo.info2off, raw, "init.info2", atomic=False)
    io.write(geo.infooff, raw, "init.info", atomic=False)
    return InfoBlock.unpack(raw)


@attrs.define(slots=True, eq=False)
class Arena:
    """An arena's run-time state; build with :meth:`load` (attach: recovery included)."""

    geo: ArenaGeometry
    io: ArenaIO
    info: InfoBlock
    sector_size: int  # Linux's sector size for this BTT (512 or 4096): what error
    # clearing zeroes
    log_index: tuple[int, int]
    free: list[FreeEntry]
    rtt: list[int]
    map_locks: list[int]  # per lock: the holding lane + 1, or 0
    recovered: list[Recovery] = attrs.field(factory=list)
    metrics: Metrics | None = attrs.field(default=None, repr=False)
    trace: Trace = attrs.field(factory=lambda: Trace(on=False), repr=False)
    # hot-path copies of the geometry
    _dataoff: int = attrs.field(init=False, repr=False)
    _mapoff: int = attrs.field(init=False, repr=False)
    _ilba: int = attrs.field(init=False, repr=False)
    _elba: int = attrs.field(init=False, repr=False)
    _inlba: int = attrs.field(init=False, repr=False)
    _slots: tuple[tuple[int, int], ...] = attrs.field(init=False, repr=False)
    _readers: int = attrs.field(init=False, default=0, repr=False)
    # More than one lane in use: a reader re-reads its map entry after publishing its
    # RTT slot, in case a writer moved it in between (with one lane nothing can).
    concurrent: bool = attrs.field(init=False, default=True)
    # None unless a block of this arena is DAX-mapped: the write path checks it once.
    remap_guard: RemapGuard | None = attrs.field(init=False, default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        g = self.geo
        self._dataoff = g.dataoff
        self._mapoff = g.mapoff
        self._ilba = g.internal_lbasize
        self._elba = g.external_lbasize
        self._inlba = g.internal_nlba
        self._slots = g.slot_pairs(self.log_index)

    # -- attach ---------------------------------------------------------------------------

    @classmethod
    def load(cls, io: ArenaIO, geo: ArenaGeometry, info: InfoBlock, *, sector_size: int,
             metrics: Metrics | None = None, trace: Trace | None = None) -> Arena:
        """Linux's ``log_set_indices`` then ``btt_freelist_init`` (recovery), RTT and map
        locks. Raises :class:`CorruptMetadata` when the flog cannot be made sense of."""
        flog = flog_state(io.read(geo.logoff, geo.nfree * LOG_GRP_SIZE))
        arena = cls(geo, io, info, sector_size, flog.index, [], [RTT_INVALID] * geo.nfree,
                    [0] * geo.nfree, metrics=metrics, trace=trace or Trace(on=False))
        arena._freelist_init(flog)
        return arena

    def _freelist_init(self, flog: FlogState) -> None:
        """Per lane: the free block is the newest entry's old block, the next entry goes
        to the other slot with the next sequence number; a free block with the error
        flag is zeroed now; a lane whose flog committed a remap the map does not show
        yet is rolled forward."""
        self.free = [FreeEntry(old & MAP_LBA_MASK, 1 - new, _NEXT_SEQ[seq & 3])
                     for (_, old, _, seq), new in zip(flog.newest, flog.new_slot, strict=True)]
        for lane in flog.flagged:
            self.free[lane].has_err = True
            try:
                self.clear_free_error(lane)
            except MediaError:
                self._event("btt.clear_error_failed", lane=lane, block=self.free[lane].block)
        for lane in flog.moved:  # lanes whose old and new blocks are the same: untouched
            lba, old_map, new_map, _ = flog.newest[lane]
            old_blk, new_blk = old_map & MAP_LBA_MASK, new_map & MAP_LBA_MASK
            if lba >= self.geo.external_nlba:
                raise CorruptMetadata(f"flog lane {lane}: lba {lba:#x} is beyond the map "
                                      f"({self.geo.external_nlba:#x} entries)")
            mapping = self.map_lookup(lba)
            if mapping != new_blk and mapping == old_blk:
                # The flog committed but the map write did not land: roll forward.
                self.io.write(self.geo.map_off(lba), map_encode(new_map), "recover.map",
                              atomic=False)
                self.recovered.append(Recovery(lane, lba, old_map, new_map))
                self._event("btt.recover", lane=lane, lba=lba, old=old_blk, new=new_blk)

    # -- map --------------------------------------------------------------------------------

    def map_raw(self, premap: int) -> int:
        return int.from_bytes(self.io.read(self._mapoff + premap * MAP_ENT_SIZE,
                                           MAP_ENT_SIZE), "little")

    def map_lookup(self, premap: int) -> int:
        """The postmap block ``premap`` reads from (flags stripped; initial = identity)."""
        return map_decode(self.map_raw(premap), premap)[0]

    def map_set_error(self, premap: int, postmap: int) -> None:
        """Persistently mark ``premap`` bad (E flag), as a failed read does."""
        self.io.write(self._mapoff + premap * MAP_ENT_SIZE, map_encode(postmap, error=True),
                      "map.error")

    # -- reads -------------------------------------------------------------------------------

    def read_block(self, lane: int, premap: int) -> bytes:
        """``btt_read_pg`` for one block: zeroes for a trimmed entry, EIO for the E flag or
        poison (which also sets the E flag on media), else the mapped block's contents."""
        if self.concurrent:
            postmap = self.read_begin(lane, premap)
            if postmap < 0:
                return bytes(self._elba)
            return self.read_end(lane, premap, postmap)
        d = self.io.direct()
        if d is not None:  # nothing bad, nothing poisoned: the same steps, straight to media
            media, base = d
            raw = int.from_bytes(media.read(base + self._mapoff + premap * MAP_ENT_SIZE,
                                            MAP_ENT_SIZE), "little")
            postmap = self._postmap(raw, premap)
            if postmap < 0:
                return bytes(self._elba)
            rtt = self.rtt
            rtt[lane] = RTT_VALID | postmap
            out: bytes = media.read(base + self._dataoff + postmap * self._ilba, self._elba)
            rtt[lane] = RTT_INVALID
            return out
        raw = int.from_bytes(self.io.read(self._mapoff + premap * MAP_ENT_SIZE, MAP_ENT_SIZE),
                             "little")
        postmap = self._postmap(raw, premap)
        if postmap < 0:
            return bytes(self._elba)
        self.rtt[lane] = RTT_VALID | postmap
        self._readers += 1
        return self.read_end(lane, premap, postmap)

    def _postmap(self, raw: int, premap: int) -> int:
        """The block a raw map entry reads from; -1 for a trimmed (zero) entry; EIO for
        the error flag (``map_decode``'s rules)."""
        postmap, zero, error = map_decode(raw, premap)
        if error:
            self._error_flag(premap)
        return -1 if zero else postmap

    def _error_flag(self, premap: int) -> NoReturn:
        self._count("btt.read_errors")
        raise MediaError(f"btt: premap {premap:#x} has the error flag set",
                         premap * self._elba, self._elba)

    def read_begin(self, lane: int, premap: int) -> int:
        """First half of a read: resolve the map and publish ``RTT_VALID | postmap`` in
        this lane's RTT slot, then re-read the map entry in case a writer moved it.
        Returns the postmap, or -1 for a trimmed (zero) entry."""
        raw = self.map_raw(premap)
        while True:
            ze = raw >> 30
            postmap = raw & MAP_LBA_MASK if ze else premap
            if ze == 2:
                return -1
            if ze == 1:
                self._error_flag(premap)
            self.rtt[lane] = RTT_VALID | postmap
            self._readers += 1
            again = self.map_raw(premap)
            if again == raw or _decoded(again, premap) == (postmap, 0):
                return postmap
            self.rtt[lane] = RTT_INVALID  # the map moved under us: retry with its new value
            self._readers -= 1
            raw = again

    def read_end(self, lane: int, premap: int, postmap: int) -> bytes:
        """Second half of a read: copy the block out, then clear the RTT slot."""
        try:
            return self.io.read(self._dataoff + postmap * self._ilba, self._elba)
        except MediaError:
            self._count("btt.read_errors")
            try:
                self.map_set_error(premap, postmap)
            except MediaError:
                self._event("btt.map_error_failed", premap=premap)
            raise MediaError(f"btt: media error reading premap {premap:#x} "
                             f"(block {postmap:#x})", premap * self._elba,
                             self._elba) from None
        finally:
            self.rtt[lane] = RTT_INVALID
            self._readers -= 1

    # -- writes ------------------------------------------------------------------------------

    def write_block(self, lane: int, premap: int, data: BufferLike) -> None:
        """``btt_write_pg`` for one block: data into the lane's free block, the flog entry
        in two halves (seq last), then the map entry. Raises :class:`MediaError` (EIO)
        when the arena's error flag is set or a block cannot be written."""
        if self.info.flags & IB_FLAG_ERROR:
            raise MediaError("btt: arena has its error flag set: writes fail with EIO",
                             premap * self._elba, self._elba)
        guard = self.remap_guard
        if guard is not None and not guard.before_write(self, lane, premap):
            self._write_in_place(lane, premap, data)
            return
        fe = self.free[lane]
        io = self.io
        dataoff, ilba = self._dataoff, self._ilba
        if not fe.has_err and not self._readers:
            d = io.direct()
            if d is not None:
                self._write_direct(lane, premap, data, fe, d[0], d[1])
                return
        while True:
            if io.is_bad(dataoff + fe.block * ilba, ilba):
                fe.has_err = True
            if not fe.has_err:
                break
            self.clear_free_error(lane)  # zero (and un-poison) it first, then retry
        new = fe.block
        if self._readers and (RTT_VALID | new) in self.rtt:
            holder = self.rtt.index(RTT_VALID | new)
            raise Busy(f"free block {new:#x} of lane {lane} is being read on lane {holder} "
                       "(RTT): the writer would spin until the read ends")
        if new >= self._inlba:
            raise MediaError(f"btt: free block {new:#x} is out of range", premap * self._elba,
                             self._elba)
        io.write(dataoff + new * ilba, data, "data")
        locks = self.map_locks
        lock = (premap * MAP_ENT_SIZE // _CACHE_LINE) % len(locks)
        if locks[lock]:
            raise Busy(f"map lock {lock} (premap {premap:#x}) is held by lane "
                       f"{locks[lock] - 1}: lane {lane} would spin")
        locks[lock] = lane + 1
        try:
            mapoff = self._mapoff + premap * MAP_ENT_SIZE
            raw = int.from_bytes(io.read(mapoff, MAP_ENT_SIZE), "little")
            old = raw & MAP_LBA_MASK if raw >> 30 else premap
            if old >= self._inlba:
                raise MediaError(f"btt: map entry {premap:#x} points outside the arena",
                                 premap * self._elba, self._elba)
            err = raw >> 30 == 1
            h1, h2 = log_halves(premap, old | MAP_ERR_FLAG if err else old, new, fe.seq)
            slot = self._slots[lane][fe.sub]
            io.write(slot, h1, "flog.lba_old")
            io.write(slot + LOG_HALF, h2, "flog.new_seq")
            fe.sub = 1 - fe.sub
            fe.seq = next_seq(fe.seq)
            fe.has_err = err
            fe.block = old
            io.write(mapoff, map_normal(new), "map")
        finally:
            locks[lock] = 0
        tr = self.trace
        if tr.on:
            tr.emit("btt.remap", lba=premap, old=old, new=new, lane=lane)
        if err:
            self.clear_free_error(lane)

    def _write_direct(self, lane: int, premap: int, data: BufferLike, fe: FreeEntry,
                      media: Any, base: int) -> None:
        """:meth:`write_block`'s steps, in its order, through the direct map (crash
        tracking off, nothing known bad, no reader in the RTT, lane's free block clean):
        each durable piece is one media write, counted as the CPU model would count its
        NT stores and the two fences of ``nvdimm_flush``. The two flog halves are
        adjacent and land in one copy: with no crash tracking their order is not
        observable."""
        new = fe.block
        elba = self._elba
        if new >= self._inlba:
            raise MediaError(f"btt: free block {new:#x} is out of range", premap * elba, elba)
        write = media.write
        n = len(data)
        write(base + self._dataoff + new * self._ilba, data)
        locks = self.map_locks
        lock = (premap * MAP_ENT_SIZE // _CACHE_LINE) % len(locks)
        if locks[lock]:
            raise Busy(f"map lock {lock} (premap {premap:#x}) is held by lane "
                       f"{locks[lock] - 1}: lane {lane} would spin")
        mapoff = base + self._mapoff + premap * MAP_ENT_SIZE
        raw = int.from_bytes(media.read(mapoff, MAP_ENT_SIZE), "little")
        old = raw & MAP_LBA_MASK if raw >> 30 else premap
        if old >= self._inlba:
            raise MediaError(f"btt: map entry {premap:#x} points outside the arena",
                             premap * elba, elba)
        err = raw >> 30 == 1
        write(base + self._slots[lane][fe.sub],
              log_entry_bytes(premap, old | MAP_ERR_FLAG if err else old, new, fe.seq))
        fe.sub = 1 - fe.sub
        fe.seq = _NEXT_SEQ[fe.seq & 3]
        fe.has_err = err
        fe.block = old
        write(mapoff, map_normal(new))
        m = self.metrics
        if m is not None:
            c = m.c
            if premap & 1:  # a map entry in the second half of its 8-byte word:
                # memcpy_flushcache stores it cached and writes the line back
                c["cpu.nt_stores"] += 3
                c["cpu.stores"] += 1
                c["cpu.writebacks"] += 1
            else:
                c["cpu.nt_stores"] += 4
            c["cpu.bytes_stored"] += n + 20
            c["cpu.fences"] += 8
        tr = self.trace
        if tr.on:
            tr.emit("btt.remap", lba=premap, old=old, new=new, lane=lane)
        if err:
            self.clear_free_error(lane)

    def _write_in_place(self, lane: int, premap: int, data: BufferLike) -> None:
        """A block write that a remap policy keeps out of the BTT (``defer``: the block
        is DAX-mapped): one durable copy over the current block, no flog, no map change.
        Not atomic: a crash inside the copy can leave the sector torn."""
        raw = self.map_raw(premap)
        postmap, _, error = map_decode(raw, premap)
        if error:
            # Only a remap clears the error flag, and the mapped block cannot move.
            raise MediaError(f"btt: premap {premap:#x} has the error flag set and its block "
                             "is mapped: it cannot be rewritten in place", premap * self._elba,
                             self._elba)
        if self._readers and (RTT_VALID | postmap) in self.rtt:
            reader = self.rtt.index(RTT_VALID | postmap)
            raise Busy(f"block {postmap:#x} is being read on lane {reader} (RTT): an in-place "
                       f"write on lane {lane} would wait for the read to end")
        self.io.write(self._dataoff + postmap * self._ilba, data, "data.inplace")
        self._event("btt.write_in_place", lba=premap, block=postmap, lane=lane)

    def clear_free_error(self, lane: int) -> None:
        """``arena_clear_freelist_error``: zero the lane's free block with a non-atomic
        write (which clears known poison), then trust it again."""
        fe = self.free[lane]
        if not fe.has_err:
            return
        off = self._dataoff + fe.block * self._ilba
        self.io.write(off, bytes(self.sector_size), "clear_error", atomic=False)
        fe.has_err = False
        self._count("btt.errors_cleared")
        self._event("btt.clear_error", lane=lane, block=fe.block)

    # -- introspection ----------------------------------------------------------------------

    def map_summary(self) -> MapSummary:
        """The whole map, decoded (see :func:`~drivers.btt.format.map_summary`)."""
        return map_summary(self.io.read(self._mapoff, self.geo.external_nlba * MAP_ENT_SIZE))

    def map_table(self) -> list[int]:
        """Every premap's postmap (initial entries resolved to identity)."""
        return list(self.map_summary().lookups)

    def free_blocks(self) -> list[int]:
        return [fe.block for fe in self.free]

    def _count(self, key: str, n: int = 1) -> None:
        if self.metrics is not None:
            self.metrics.c[key] += n

    def _event(self, name: str, **fields: object) -> None:
        if self.trace.on:
            self.trace.emit(name, **fields)

