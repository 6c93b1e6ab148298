"""Seam ``btt_remap``: what a BTT does to a DAX mapping of a block it is about to move.

A BTT never overwrites a block in place: a write puts the new data into the lane's free
block, commits a flog entry, then flips the map entry; the old block becomes the lane's
free block and takes that lane's next write, for whatever LBA. A pfn handed out for an
LBA's current block therefore goes stale after one block write to that LBA, and the
stale block soon holds another LBA's data. Linux refuses DAX on sector mode for this
reason. The seam is the answer to "what happens to the mapping?":

============= ===== ======== ====== ======== ============================================
variant       dax   lifetime notify atomic   what is lost
============= ===== ======== ====== ======== ============================================
deny-dax      no    n/a      n/a    yes      DAX itself: a sector namespace does block
                                             I/O only (Linux)
unsafe        yes   no       no     yes      the mapping: after a block write to its LBA
                                             it addresses a free block (stores are lost),
                                             and once the lane reuses the block, another
                                             LBA's data (stores corrupt it)
notify-holder yes   yes      yes    yes      nothing, at a price: a block write to a
                                             mapped LBA first waits for every holder to
                                             unmap; one that keeps its mapping makes the
                                             write fail (EBUSY)
defer         yes   yes      no     no       sector atomicity of mapped LBAs: a block
                                             write to one goes in place, so a power
                                             failure inside it can tear the sector
============= ===== ======== ====== ======== ============================================

(dax: a BTT device gets a DAX provider; lifetime: the BTT knows which blocks are mapped
until released; notify: holders hear before a block they map moves; atomic: a block
write to a *mapped* LBA is still all-or-nothing across a power failure. Unmapped LBAs
keep every BTT guarantee under every variant.)

The same three steps under each variant (one lane; LBA 5 in block 5, free block 100)::

    map(LBA 5)            -> pfn of block 5
    write(2) to LBA 5     unsafe:        data -> 100, map 5 -> 100, free = 5;
                                         the mapping still points at block 5
                          notify-holder: holder.on_remap(LBA 5): it unmaps and
                                         releases; then as unsafe; its next access
                                         maps block 100
                          defer:         data over block 5 in place; no flog, no map
    store via mapping     unsafe: into free block 5 (lost); others: into LBA 5
    write(2) to LBA 9     unsafe: data -> block 5, map 9 -> 5: the mapping now shows
                          LBA 9, and its stores corrupt it

:class:`BttDax` is the DAX provider over a BTT device (the ``direct_access`` contract,
:class:`drivers.direct_access.DirectAccess`); ``drivers.direct_access.dax_provider``
builds one for a sector namespace unless the variant is ``deny-dax``. While one of its
extents is open, the arena's ``remap_guard`` is the provider: every block write asks it,
and it asks the variant (:meth:`BttRemap.mapped_write`) when the LBA's current block is
mapped, and checks the lane's free block is not (:meth:`BttRemap.mapped_free_block`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol, cast, runtime_checkable

import attrs

from drivers.btt.arena import Arena
from drivers.btt.btt import BttDevice
from drivers.btt.format import map_decode
from drivers.direct_access import (
    KADDR_BASE,
    PAGE,
    PFN_DEV,
    SECTOR,
    DaxExtent,
    DaxHandle,
    OutOfRange,
    RemapReport,
)
from mm.fault import HwPoisoned
from nvdimm.errors import Busy, InvalidArgument, MediaError, NoDevice, NotSupported, NvdimmError
from nvdimm.seams import variant


class MappedFreeBlock(NvdimmError):
    """A lane's free block was about to take a write while DAX-mapped: the invariant
    ``notify-holder`` and ``defer`` keep (a mapped block never moves) is broken."""


@attrs.define(slots=True, eq=False)
class MappedWrite:
    """A block write of ``lba`` on ``lane`` that meets the mapped internal ``block``: the
    LBA's current block (:meth:`BttRemap.mapped_write`) or the lane's free block
    (:meth:`BttRemap.mapped_free_block`). What a variant decides on, and acts through."""

    provider: BttDax = attrs.field(repr=False)
    arena: Arena = attrs.field(repr=False)
    lane: int
    lba: int  # the device LBA being written
    block: int  # the internal (postmap) block that is mapped

    @property
    def offset(self) -> int:
        """Device offset of the LBA being written."""
        return self.lba * self.provider.device.lbasize

    def mappings(self) -> list[DaxHandle]:
        """The open mappings of :attr:`block`."""
        return self.provider.mappings_of(self.arena, self.block)

    def notify(self) -> int:
        """Call ``on_remap`` on the holder of every open mapping of the block (once per
        mapping still open when its turn comes); returns how many were told."""
        told = 0
        for h in self.mappings():
            if not h.open:
                continue  # an earlier holder's callback closed it
            h.holder.on_remap(h.offset, h.length)
            told += 1
        self.count("btt.remap.notifications", told)
        return told

    def count(self, key: str, n: int = 1) -> None:
        self.provider.device.metrics.c[key] += n

    def event(self, name: str, **fields: Any) -> None:
        tr = self.provider.device.trace
        if tr.on:
            tr.emit(name, dev=self.provider.device.name, lba=self.lba, block=self.block,
                    lane=self.lane, **fields)


@runtime_checkable
class BttRemap(Protocol):
    """The ``btt_remap`` seam's contract (see the module docstring)."""

    @property
    def name(self) -> str: ...

    @property
    def allows_dax(self) -> bool:
        """A BTT device gets a DAX provider at all."""
        ...

    @property
    def sees_lifetime(self) -> bool:
        """The BTT knows which blocks are mapped until they are released, and acts on it."""
        ...

    @property
    def can_notify(self) -> bool:
        """Holders hear (``on_remap``) before a block they map moves."""
        ...

    @property
    def atomic_while_mapped(self) -> bool:
        """A block write to a mapped LBA is still all-or-nothing across a power failure."""
        ...

    def mapped_write(self, w: MappedWrite) -> bool:
        """A block write of an LBA whose current block is mapped is about to start: True
        to remap it (the BTT's atomic path), False to write it in place. May raise to
        refuse the write, before anything is written."""
        ...

    def mapped_free_block(self, w: MappedWrite) -> None:
        """The lane's free block, about to take a remapping write's data, is mapped."""
        ...


# -- the variants -------------------------------------------------------------------------


@variant(
    "btt_remap", "deny-dax",
    history="""What Linux does. The BTT (4.2, Vishal Verma) was written for sector atomicity
    of block I/O; DAX arrived at the same time for the pmem driver only. The 2016 LSF/MM
    discussions of DAX on BTT ended with "no": btt_probe sets no QUEUE_FLAG_DAX, there is
    no dax_device for a btt disk, and ndctl refuses fsdax options in sector mode. Ext4 and
    XFS on /dev/pmemNs fall back to the page cache (-o dax fails or is ignored).""",
    tradeoffs="""Every BTT guarantee stays, for every block, at the price of DAX: no mmap of
    pmem, every read and write copies through the page cache and the BTT. Users who want
    both atomic sectors and DAX must pick a filesystem that journals on an fsdax
    namespace instead.""",
)
@attrs.frozen(slots=True)
class DenyDax:
    """No DAX on sector mode: ``dax_provider`` of a BTT raises NotSupported (EOPNOTSUPP).

    ::

        dax_provider(btt)          NotSupported: no DAX on BTT
        write(2) to LBA 5          remap as always; nobody maps anything
    """

    name: ClassVar[str] = "deny-dax"
    allows_dax: ClassVar[bool] = False
    sees_lifetime: ClassVar[bool] = False
    can_notify: ClassVar[bool] = False
    atomic_while_mapped: ClassVar[bool] = True  # vacuously: nothing is ever mapped

    def mapped_write(self, w: MappedWrite) -> bool:
        raise NotSupported("btt_remap=deny-dax hands out no mappings: none can be written")

    def mapped_free_block(self, w: MappedWrite) -> None:
        raise NotSupported("btt_remap=deny-dax hands out no mappings: none can be reused")


@variant(
    "btt_remap", "unsafe",
    history="""What DAX on a BTT would be if the pfn were handed out and forgotten, as the
    bdev-2016 direct_access contract did for pmem: the remap happens regardless of the
    mapping. No kernel shipped it; it is the reason given for denying DAX on sector mode
    (the block under a mapping moves on the next write and is reused by another LBA).""",
    tradeoffs="""Costs nothing and keeps the BTT's atomicity for block I/O, but a mapping is
    coherent only until the first block write to its LBA: stores through it are then lost,
    and once the lane reuses the block they silently corrupt another LBA. Neither side can
    tell: the BTT keeps no record of mappings (the model keeps one only to count the
    damage in btt.remap.mapped_remaps and btt.remap.mapped_reuses).""",
)
@attrs.frozen(slots=True)
class Unsafe:
    """Remap regardless of mappings; nobody is told.

    ::

        map(LBA 5)                 pfn of block 5
        write(2) to LBA 5          map 5 -> 100, free = 5   (mapped_remaps += 1)
        write(2) to LBA 9          data -> 5, map 9 -> 5    (mapped_reuses += 1)
        store via the mapping      lands in LBA 9
    """

    name: ClassVar[str] = "unsafe"
    allows_dax: ClassVar[bool] = True
    sees_lifetime: ClassVar[bool] = False
    can_notify: ClassVar[bool] = False
    atomic_while_mapped: ClassVar[bool] = True

    def mapped_write(self, w: MappedWrite) -> bool:
        w.count("btt.remap.mapped_remaps")
        w.event("btt.remap.unsafe", mappings=len(w.mappings()))
        return True

    def mapped_free_block(self, w: MappedWrite) -> None:
        # The stale block under a mapping takes another LBA's data.
        w.count("btt.remap.mapped_reuses")
        w.event("btt.remap.reuse_mapped", mappings=len(w.mappings()))


@variant(
    "btt_remap", "notify-holder",
    history="""The seed's proposal (LSF/MM 2016) applied to the BTT: a mapping has a lifetime
    the provider sees, and before the provider changes a block it handed out it calls the
    holder back, as the widened direct_access contract does for pmem. Linux has pieces of
    it elsewhere (dax_break_layout before truncate, notify_failure with MF_MEM_PRE_REMOVE)
    but never for the BTT.""",
    tradeoffs="""Block writes stay atomic and mappings never see a moved block, but the BTT
    keeps state per mapping, and every block write to a mapped LBA costs a round trip to
    its holders, who must unmap (and wait for pins) first; the writer waits for them, and
    a holder that keeps its mapping makes the write fail. Each notified mapping refaults
    onto the new block: the next mmap access takes a fault and a new pfn.""",
)
@attrs.frozen(slots=True)
class NotifyHolder:
    """Tell each holder of the LBA's block, then remap once none maps it.

    ::

        map(LBA 5, holder)         pfn of block 5; the BTT records holder
        write(2) to LBA 5          holder.on_remap(LBA 5): it unmaps and releases;
                                   then data -> 100, map 5 -> 100, free = 5
        store via the mapping      faults: map(LBA 5) gives block 100
    """

    name: ClassVar[str] = "notify-holder"
    allows_dax: ClassVar[bool] = True
    sees_lifetime: ClassVar[bool] = True
    can_notify: ClassVar[bool] = True
    atomic_while_mapped: ClassVar[bool] = True

    def mapped_write(self, w: MappedWrite) -> bool:
        told = w.notify()
        left = len(w.mappings())
        w.event("btt.remap.notify", told=told, left=left)
        if left:
            w.count("btt.remap.refused")
            raise Busy(f"{w.provider.device.name}: {left} mapping(s) of LBA {w.lba} still "
                       "open after notice: the block write waits for them")
        return True

    def mapped_free_block(self, w: MappedWrite) -> None:
        raise MappedFreeBlock(f"{w.provider.device.name}: lane {w.lane}'s free block "
                              f"{w.block:#x} is DAX-mapped (btt_remap=notify-holder): a "
                              "remap went ahead without its holder's release")


@variant(
    "btt_remap", "defer",
    history="""An alternative the 2016 discussions raised for DAX on BTT: while a block is
    mapped, leave it where it is and write through to it, resuming copy-on-write
    remapping once the mapping goes. It is what a pmem namespace does for every block
    (writes in place), restricted to the blocks that are mapped. Not in Linux.""",
    tradeoffs="""Mappings stay coherent with block I/O and nobody is called back, but a block
    write to a mapped LBA is an ordinary in-place copy: a power failure inside it can
    leave the sector torn (part old, part new), the one guarantee the BTT exists for.
    Unmapped LBAs keep it. The BTT keeps state per mapping to know which LBAs those are.""",
)
@attrs.frozen(slots=True)
class Defer:
    """While an LBA's block is mapped, write it in place; remap again once released.

    ::

        map(LBA 5)                 pfn of block 5
        write(2) to LBA 5          data over block 5 (in place; deferred_writes += 1)
        power failure inside it    LBA 5 may read part old, part new
        release; write(2) LBA 5    data -> 100, map 5 -> 100 (atomic again)
    """

    name: ClassVar[str] = "defer"
    allows_dax: ClassVar[bool] = True
    sees_lifetime: ClassVar[bool] = True
    can_notify: ClassVar[bool] = False
    atomic_while_mapped: ClassVar[bool] = False

    def mapped_write(self, w: MappedWrite) -> bool:
        w.count("btt.remap.deferred_writes")
        w.event("btt.remap.defer", mappings=len(w.mappings()))
        return False

    def mapped_free_block(self, w: MappedWrite) -> None:
        raise MappedFreeBlock(f"{w.provider.device.name}: lane {w.lane}'s free block "
                              f"{w.block:#x} is DAX-mapped (btt_remap=defer): a mapped "
                              "block was remapped instead of written in place")


# -- the provider ----------------------------------------------------------------------------


@attrs.define(slots=True, eq=False)
class BttDax:
    """DAX over a BTT device, under the remap ``policy`` (a :class:`BttRemap` variant).

    ``map(offset, length, holder)`` gives the kaddr and pfn of the *current* postmap block
    of the LBA at ``offset``: one block per extent (postmap blocks are not contiguous),
    pfn flags PFN_DEV only (no struct pages: the pages cannot be pinned). It needs 4096-byte
    sectors without protection information and page-aligned data blocks (else EINVAL);
    a known-bad block or an LBA with the BTT error flag is refused (EHWPOISON). ``read``,
    ``write`` and ``zero`` are block I/O through the BTT (a write remaps, or under
    ``defer`` goes in place while mapped); ``flush`` is a fence with nothing to do.

    A holder under ``notify-holder`` must have ``on_remap(offset, length)``. It is called
    during a block write to the LBA at ``offset``, before anything is written; before it
    returns, the holder must stop using the pfn (zap its page-table entries in every
    process) and :meth:`release` every extent it holds in the range, and must not do
    block I/O to that range. The write then remaps; the holder's next access maps the
    LBA again and gets its new block. A mapping still open when the callbacks return
    makes the write fail with EBUSY, with nothing written. ``on_error(offset, length)``,
    where a holder has it, hears of media failures (``notify-holder`` and ``defer``).

    ::

        e = map(5 * 4096, 4096, holder)   pfn of LBA 5's block; recorded until release(e)
        write(5 * 4096, data)             a block write: the variant decides what e sees
    """

    #: A device offset's pfn is not a fixed distance from another's (blocks move).
    linear: ClassVar[bool] = False
    #: No struct pages behind a BTT's blocks, so nothing can pin them: nothing is busy.
    layout_busy: ClassVar[bool] = True
    device: BttDevice
    policy: BttRemap
    _handles: dict[int, DaxHandle] = attrs.field(factory=dict, repr=False)
    _where: dict[int, tuple[Arena, int]] = attrs.field(factory=dict, repr=False)
    # arena -> internal block -> its open mappings
    _blocks: dict[Arena, dict[int, list[DaxHandle]]] = attrs.field(factory=dict, repr=False)
    _next: int = attrs.field(default=1, repr=False)

    can_report_errors: ClassVar[bool] = True
    mc_safe: ClassVar[bool] = True  # BTT reads stop short at a bad block, no machine check

    def __attrs_post_init__(self) -> None:
        if not self.policy.allows_dax:
            raise NotSupported(f"{self.device.name}: btt_remap={self.policy.name} allows no "
                               "DAX on BTT")

    # -- capabilities ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        return f"btt:{self.policy.name}"

    @property
    def sees_lifetime(self) -> bool:
        return self.policy.sees_lifetime

    @property
    def can_notify(self) -> bool:
        return self.policy.can_notify

    @property
    def notifies_failure(self) -> str:
        return "mapping" if self.policy.sees_lifetime else ""

    @property
    def size(self) -> int:
        return self.device.size

    # -- mappings -------------------------------------------------------------------------

    def map(self, offset: int, length: int, holder: Any = None) -> DaxExtent:
        dev = self.device
        self._alive()
        if offset % PAGE:
            raise InvalidArgument(f"{dev.name}: offset {offset:#x} not page aligned")
        if length <= 0:
            raise InvalidArgument(f"{dev.name}: a mapping of {length} bytes")
        if offset < 0 or offset >= dev.size:
            raise OutOfRange(f"{dev.name}: offset {offset:#x} is beyond its {dev.size:#x} "
                             "bytes")
        self._check_dax_geometry()
        if self.policy.can_notify and not callable(getattr(holder, "on_remap", None)):
            raise InvalidArgument(f"{dev.name}: btt_remap={self.policy.name} needs a holder "
                                  "with on_remap, to tell before a mapped block moves")
        arena, premap = dev.arena_of(offset // PAGE)
        postmap, zero, error = map_decode(arena.map_raw(premap), premap)
        data = arena.geo.data_off(postmap)
        if error or arena.io.is_bad(data, PAGE):
            dev.metrics.c["dax.direct_access_refused"] += 1
            why = "has the BTT error flag" if error else "is a known-bad block"
            raise HwPoisoned(f"{dev.name}: LBA {offset // PAGE} {why}", offset, PAGE)
        if zero:
            # The BTT reads a trimmed LBA as zeroes whatever its block holds.
            raise InvalidArgument(f"{dev.name}: LBA {offset // PAGE} is trimmed (reads as "
                                  "zeroes): write it before mapping it")
        guard = arena.remap_guard
        if guard is not None and guard is not self:
            raise Busy(f"{dev.name}: blocks of this BTT are mapped through another DAX "
                       "provider")
        phys = dev.ns.spa + data
        # The widened contract's handle: id, range, pfn, holder, open until closed.
        h = DaxHandle(cast(Any, self), self._next, offset, PAGE, KADDR_BASE + phys,
                      phys >> 12, holder)
        self._next += 1
        self._handles[h.id] = h
        self._where[h.id] = (arena, postmap)
        self._blocks.setdefault(arena, {}).setdefault(postmap, []).append(h)
        arena.remap_guard = self
        dev.metrics.c["dax.direct_access"] += 1
        self._trace("map", lba=offset // PAGE, block=postmap, handle=h.id)
        return DaxExtent(offset, PAGE, h.kaddr, h.pfn, PFN_DEV, h)

    def set_holder(self, holder: Any) -> None:
        return None  # holders are per mapping here (on_remap/on_error), not per device

    def put_holder(self, holder: Any) -> None:
        return None

    def release(self, extent: DaxExtent) -> None:
        if extent.handle is not None:
            self.close(extent.handle)

    def close(self, handle: DaxHandle) -> None:
        """End a mapping (``DaxHandle.close`` comes here); closing twice is harmless."""
        if self._handles.get(handle.id) is not handle:
            return
        del self._handles[handle.id]
        handle.open = False
        arena, block = self._where.pop(handle.id)
        blocks = self._blocks[arena]
        users = blocks[block]
        users.remove(handle)
        if not users:
            del blocks[block]
        if not blocks:
            del self._blocks[arena]
            if arena.remap_guard is self:
                arena.remap_guard = None  # nothing mapped: block writes pay nothing again
        self._trace("release", handle=handle.id, block=block)

    def mappings_of(self, arena: Arena, block: int) -> list[DaxHandle]:
        """The open mappings of internal ``block`` of ``arena``."""
        return list(self._blocks.get(arena, {}).get(block, ()))

    # -- the arena's guard (drivers.btt.arena.RemapGuard) -----------------------------------

    def before_write(self, arena: Arena, lane: int, premap: int) -> bool:
        lba = arena.geo.external_lba_start + premap
        blocks = self._blocks.get(arena)
        if blocks:
            cur = arena.map_lookup(premap)
            if cur in blocks:
                if not self.policy.mapped_write(MappedWrite(self, arena, lane, lba, cur)):
                    return False
                blocks = self._blocks.get(arena)  # the holders may have released
        if blocks:
            free = arena.free[lane].block
            if free in blocks:
                self.policy.mapped_free_block(MappedWrite(self, arena, lane, lba, free))
        return True

    # -- the consumer's side -------------------------------------------------------------------

    def read(self, offset: int, n: int) -> bytes:
        """Block reads through the BTT; short at the first block that fails (EIO)."""
        self._alive()
        self._check_range(offset, n)
        lbs = self._block_size()
        out = bytearray()
        end = offset + n
        for lba in range(offset // lbs, -(-end // lbs)):
            start = lba * lbs
            try:
                block = self.device.do_read(start // SECTOR, lbs)
            except MediaError:
                self.device.metrics.c["dax.mc_short_copies"] += 1
                break
            out += block[max(offset, start) - start:min(end, start + lbs) - start]
        return bytes(out)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        """Block writes through the BTT (partial blocks read, patched, written whole):
        each block is one atomic block write, durable on return (unless ``defer`` writes
        it in place)."""
        self._alive()
        n = len(data)
        self._check_range(offset, n)
        lbs = self._block_size()
        mv = memoryview(data).cast("B")
        end = offset + n
        for lba in range(offset // lbs, -(-end // lbs)):
            start = lba * lbs
            lo, hi = max(offset, start), min(end, start + lbs)
            if hi - lo == lbs:
                block = bytes(mv[lo - offset:hi - offset])
            else:
                buf = bytearray(self.device.do_read(start // SECTOR, lbs))
                buf[lo - start:hi - start] = mv[lo - offset:hi - offset]
                block = bytes(buf)
            self.device.do_write(start // SECTOR, block, 0)
        self.device.metrics.c["dax.bytes_written"] += n
        return n

    def zero(self, offset: int, length: int) -> None:
        if offset % PAGE or length % PAGE:
            raise InvalidArgument("zeroing goes by whole pages")
        self.write(offset, bytes(length))

    def flush(self) -> None:
        """A fence with nothing behind it: every BTT write was durable when it returned."""
        self.device.flush()

    # -- the provider's side ----------------------------------------------------------------

    def remap(self, offset: int, length: int,
              change: Callable[[], None] | None = None) -> RemapReport:
        """Change the blocks of the range (``change``; default: write zeroes): block
        writes, so the variant decides what mappings of them see. Reports holders told
        (during the change) and mappings open afterwards."""
        self._alive()
        self._check_range(offset, length)
        c = self.device.metrics.c
        before = c.get("btt.remap.notifications", 0)
        (change or self._default_change(offset, length))()
        told = c.get("btt.remap.notifications", 0) - before
        self._trace("remap", offset=offset, len=length, notified=told)
        return RemapReport(told, self.outstanding(offset, length), True)

    def media_error(self, offset: int, length: int) -> int:
        told = 0
        if self.policy.sees_lifetime:
            for h in list(self._handles.values()):
                on_error = getattr(h.holder, "on_error", None)
                if h.overlaps(offset, length) and on_error is not None:
                    lo, hi = max(offset, h.offset), min(offset + length, h.offset + h.length)
                    on_error(lo, hi - lo)
                    told += 1
        self._trace("media_error", offset=offset, len=length, notified=told)
        return told

    def outstanding(self, offset: int, length: int) -> int | None:
        if not self.policy.sees_lifetime:
            return None  # the BTT keeps no record it could answer from
        return sum(h.overlaps(offset, length) for h in self._handles.values())

    # -- helpers ------------------------------------------------------------------------------

    def _alive(self) -> None:
        if self.device.disk.dead:
            raise NoDevice(f"{self.device.name}: the BTT device is gone")

    def _check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.device.size:
            raise OutOfRange(f"{self.device.name}: [{offset:#x}, +{length:#x}) is beyond "
                             f"its {self.device.size:#x} bytes")

    def _block_size(self) -> int:
        lbs = self.device.lbasize
        if lbs != self.device.sector_size:
            raise InvalidArgument(f"{self.device.name}: {lbs}-byte blocks carry protection "
                                  "information: byte access goes through the block layer")
        return lbs

    def _check_dax_geometry(self) -> None:
        """A block must be exactly one page of data, on a page boundary."""
        dev = self.device
        if dev.lbasize != PAGE:
            extra = (" (its blocks carry protection information)"
                     if dev.lbasize != dev.sector_size else "")
            raise InvalidArgument(f"{dev.name}: DAX over a BTT needs 4096-byte sectors with no "
                                  f"protection information, not {dev.lbasize}-byte ones{extra}")
        for a in dev.arenas:
            g = a.geo
            if g.internal_lbasize != PAGE:
                raise InvalidArgument(f"{dev.name}: arena at {g.infooff:#x} has "
                                      f"{g.internal_lbasize}-byte internal blocks: a page "
                                      "would straddle two of them")
            if (dev.ns.spa + g.dataoff) % PAGE:
                raise InvalidArgument(f"{dev.name}: arena at {g.infooff:#x} has its data "
                                      f"blocks at physical {dev.ns.spa + g.dataoff:#x}, not "
                                      "page aligned: no pfn maps one block")

    def _default_change(self, offset: int, length: int) -> Callable[[], None]:
        def reinit() -> None:
            lbs = self._block_size()
            first = offset // lbs * lbs
            last = -(-(offset + length) // lbs) * lbs
            self.write(first, bytes(last - first))

        return reinit

    def _trace(self, event: str, **fields: Any) -> None:
        tr = self.device.trace
        if tr.on:
            tr.emit(f"dax.btt.{event}", dev=self.device.name, variant=self.policy.name,
                    **fields)
