"""A block-device cache on pmem, read and written through DAX, in front of a slow disk.

The seed's third shape, and what dm-writecache (Linux 4.18) does with pmem: the cache
device is not driven with bios but mapped with DAX, so a cached block is a memcpy from
or to pmem, and the cache's metadata is committed with persistent-memory flushes. This
model caches reads as well as writes (as bcache and dm-cache do): the cached disk is a
:class:`~block.genhd.Gendisk` with 4 KiB blocks that stacks on ``origin``:

* a READ of a cached block copies it out of pmem (``copy_to_iter``, machine-check
  safe); a miss reads the origin and fills the cache;
* a WRITE goes to the cache only (write-back) and marks the block dirty; FUA or a
  flush commits (``nvdimm_flush``);
* a full cache evicts its least recently used block, writing it to the origin first
  when dirty;
* every time a cache slot takes a new block, its 16-byte metadata entry (original
  block, sequence number: dm-writecache's ``wc_memory_entry``) is written to the
  metadata area at the start of the cache device, so the cache could be found again
  after a reboot.

The cache reaches pmem through a :class:`DaxCopy` (the ``direct_access`` seam's
uniform ``read``, ``write`` and ``flush``). Counters: ``dax_cache.read_hits``,
``.read_misses``, ``.writes``, ``.fills``, ``.evictions``, ``.writebacks``,
``.metadata_writes``; pmem traffic per :func:`mm.numa.count_media`.

::

    read block 5, not cached         origin read (disk), copied into slot 0 (pmem)
    read block 5 again               copied out of slot 0: no disk I/O
    write block 9                    slot 1, dirty; written to the disk only when evicted
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from typing import Protocol

import attrs

from block.bio import Bio, BufferLike
from block.genhd import Gendisk, complete_bio
from mm.numa import count_media
from nvdimm.errors import InvalidArgument
from nvdimm.metrics import Metrics
from nvdimm.trace import Trace
from nvdimm.units import SECTOR_SIZE

BLOCK = 4096
#: dm-writecache's ``struct wc_memory_entry``: original sector, sequence count.
ENTRY = struct.Struct("<QQ")


class DaxCopy(Protocol):
    """Copies to and from a DAX device by byte offset."""

    def read(self, offset: int, n: int) -> bytes: ...

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int: ...

    def flush(self) -> None: ...


@attrs.define(slots=True, eq=False)
class DaxCache:
    """The cache of ``origin`` on the first ``cache_size`` bytes of ``cache``, as the
    block device ``name``."""

    name: str
    origin: Gendisk
    cache: DaxCopy
    cache_size: int
    metrics: Metrics
    trace: Trace = attrs.field(factory=lambda: Trace(on=False))
    capacity: int = attrs.field(init=False, default=0)
    data_offset: int = attrs.field(init=False, default=0)
    disk: Gendisk = attrs.field(init=False)
    _slots: OrderedDict[int, int] = attrs.field(init=False, factory=OrderedDict, repr=False)
    _dirty: set[int] = attrs.field(init=False, factory=set, repr=False)
    _free: list[int] = attrs.field(init=False, factory=list, repr=False)
    _next: int = attrs.field(init=False, default=0)
    _seq: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        if self.origin.size % BLOCK:
            raise InvalidArgument(f"{self.origin.name}: {self.origin.size} bytes is not "
                                  "whole 4 KiB blocks")
        # Metadata first (16 bytes per slot, page aligned), then the cached blocks.
        per = BLOCK + ENTRY.size
        slots = self.cache_size // per
        while slots and -(-slots * ENTRY.size // BLOCK) * BLOCK + slots * BLOCK > self.cache_size:
            slots -= 1
        if slots < 1:
            raise InvalidArgument(f"a {self.cache_size}-byte cache device holds no block")
        self.capacity = slots
        self.data_offset = -(-slots * ENTRY.size // BLOCK) * BLOCK
        self.disk = Gendisk(name=self.name, ops=self, capacity=self.origin.size // SECTOR_SIZE,
                            logical_block_size=BLOCK, metrics=self.metrics, trace=self.trace,
                            write_cache=True, fua=True)

    # -- the cache ----------------------------------------------------------------------

    @property
    def cached(self) -> int:
        return len(self._slots)

    @property
    def dirty(self) -> int:
        return len(self._dirty)

    def _slot_offset(self, slot: int) -> int:
        return self.data_offset + slot * BLOCK

    def _take_slot(self) -> int:
        if self._free:
            return self._free.pop()
        if self._next < self.capacity:
            self._next += 1
            return self._next - 1
        block, slot = self._slots.popitem(last=False)  # least recently used
        c = self.metrics.c
        c["dax_cache.evictions"] += 1
        if block in self._dirty:
            data = self._copy_out(slot)
            self.origin.write(block * BLOCK, data)
            self._dirty.discard(block)
            c["dax_cache.writebacks"] += 1
        return slot

    def _copy_out(self, slot: int) -> bytes:
        count_media(self.metrics, "pmem", reads=1, bytes_read=BLOCK)
        return self.cache.read(self._slot_offset(slot), BLOCK)

    def _copy_in(self, slot: int, data: BufferLike) -> None:
        count_media(self.metrics, "pmem", bytes_written=len(data))
        self.cache.write(self._slot_offset(slot), data)

    def _insert(self, block: int, data: BufferLike) -> None:
        slot = self._take_slot()
        self._copy_in(slot, data)
        self._seq += 1
        self.cache.write(slot * ENTRY.size, ENTRY.pack(block * (BLOCK // SECTOR_SIZE),
                                                       self._seq))
        self._slots[block] = slot
        c = self.metrics.c
        c["dax_cache.metadata_writes"] += 1
        self.metrics.set("dax_cache.blocks", len(self._slots))

    # -- block device ops ---------------------------------------------------------------------

    def do_read(self, sector: int, length: int) -> bytes:
        first = sector * SECTOR_SIZE // BLOCK
        out = []
        c = self.metrics.c
        for block in range(first, first + length // BLOCK):
            slot = self._slots.get(block)
            if slot is not None:
                self._slots.move_to_end(block)  # most recently used now
                c["dax_cache.read_hits"] += 1
                out.append(self._copy_out(slot))
                continue
            c["dax_cache.read_misses"] += 1
            data = self.origin.read(block * BLOCK, BLOCK)
            self._insert(block, data)
            c["dax_cache.fills"] += 1
            out.append(data)
        if self.trace.on:
            self.trace.emit("dax_cache.read", dev=self.name, block=first,
                            blocks=length // BLOCK)
        return b"".join(out)

    def do_write(self, sector: int, data: BufferLike, flags: int) -> None:
        first = sector * SECTOR_SIZE // BLOCK
        mv = memoryview(data)
        c = self.metrics.c
        for i in range(len(mv) // BLOCK):
            block = first + i
            piece = mv[i * BLOCK:(i + 1) * BLOCK]
            slot = self._slots.get(block)
            if slot is None:
                self._insert(block, piece)
            else:
                self._copy_in(slot, piece)
                self._slots.move_to_end(block)
            self._dirty.add(block)
            c["dax_cache.writes"] += 1
        if flags:  # FUA or PREFLUSH: commit
            self.flush()
        if self.trace.on:
            self.trace.emit("dax_cache.write", dev=self.name, block=first,
                            blocks=len(mv) // BLOCK)

    def flush(self) -> None:
        """Commit: make the cache's data and metadata durable (``nvdimm_flush``)."""
        self.cache.flush()
        self.metrics.c["dax_cache.commits"] += 1

    def submit_bio(self, bio: Bio) -> None:
        complete_bio(bio, self.do_read, self.do_write, self.flush)

    def writeback(self) -> int:
        """Write every dirty block to the origin (what detaching the cache does)."""
        done = 0
        for block in sorted(self._dirty):
            self.origin.write(block * BLOCK, self._copy_out(self._slots[block]))
            done += 1
        self._dirty.clear()
        self.metrics.c["dax_cache.writebacks"] += done
        return done

    def check(self) -> list[str]:
        slots = list(self._slots.values())
        bad = []
        if len(set(slots)) != len(slots):
            bad.append("two blocks share a cache slot")
        if set(slots) & set(self._free):
            bad.append("a slot is both free and holding a block")
        if not self._dirty <= self._slots.keys():
            bad.append("a dirty block is not in the cache")
        return bad
