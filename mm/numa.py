"""NUMA nodes, memory tiers and allocation policy: where a page of memory can live.

A :class:`NumaNode` is memory the page allocator can hand out: the machine's DRAM (node
0, with the CPUs) or, once the kmem driver has onlined a device-dax range as System RAM
(:mod:`drivers.dax.kmem`), a node made of pmem with no CPUs. A node hands out 4 KiB
frames from its :class:`Frames`:

* :class:`DramFrames` -- pages from the DRAM page allocator (:mod:`mm.page_alloc`),
  up to a page limit (the DRAM the workload may use);
* :class:`PmemFrames` -- hot-added physical ranges, one per memory block, whose
  contents are loads and stores through the CPU (the kernel's direct map of System
  RAM): a store is a write to the pmem media.

:class:`MemoryTiers` groups nodes into tiers by *abstract distance*, as
``mm/memory-tiers.c`` does (Linux 6.1): DRAM has ``MEMTIER_ADISTANCE_DRAM`` (4608, tier
``memory_tier4``) and kmem registers its memory type at five times that (23040,
``memory_tier22``). A node's demotion target is a node of the next slower tier;
``demotion_enabled`` is ``/sys/kernel/mm/numa/demotion_enabled``.

:class:`MemPolicy` is ``set_mempolicy(2)``: which nodes an allocation may use, in order.

Every frame source counts what it moves, per medium (:func:`count_media`):
``media.<medium>.reads`` / ``.bytes_read`` / ``.bytes_written``, so an experiment can
price DRAM and pmem accesses with different cost presets.

::

    node 0  dram  cpus  memory_tier4   16384 pages
    node 1  pmem  -     memory_tier22  65536 pages   demotion 0 -> 1
    MemPolicy("interleave", (0, 1)).nodes_for(tiers, local=0, index=7)   -> [1, 0]
"""

from __future__ import annotations

from typing import Protocol

import attrs

from mm.memmap import PAGE_SHIFT
from mm.page import Page
from mm.page_alloc import PageAllocator
from nvdimm.errors import Busy, InvalidArgument, NoSpace
from nvdimm.metrics import Metrics

#: mm/memory-tiers.c: abstract distances are grouped in chunks of 2^10 per tier.
MEMTIER_CHUNK_BITS = 10
MEMTIER_CHUNK_SIZE = 1 << MEMTIER_CHUNK_BITS
#: DRAM's abstract distance (4 chunks and a half: tier 4).
MEMTIER_ADISTANCE_DRAM = 4 * MEMTIER_CHUNK_SIZE + MEMTIER_CHUNK_SIZE // 2
#: What dax/kmem registers for its memory type when firmware gives no figures (5x DRAM).
MEMTIER_DEFAULT_DAX_ADISTANCE = 5 * MEMTIER_ADISTANCE_DRAM


_MEDIA_KEYS: dict[str, tuple[str, str, str]] = {}


def media_keys(medium: str) -> tuple[str, str, str]:
    """The counter names of ``medium``: reads, bytes read, bytes written."""
    keys = _MEDIA_KEYS.get(medium)
    if keys is None:
        keys = _MEDIA_KEYS[medium] = (f"media.{medium}.reads", f"media.{medium}.bytes_read",
                                      f"media.{medium}.bytes_written")
    return keys


def count_media(metrics: Metrics, medium: str, *, reads: int = 0, bytes_read: int = 0,
                bytes_written: int = 0) -> None:
    """Account accesses to ``medium`` (``dram``, ``pmem``, ``disk``) for the cost model."""
    c = metrics.c
    k_reads, k_read, k_written = media_keys(medium)
    if reads:
        c[k_reads] += reads
    if bytes_read:
        c[k_read] += bytes_read
    if bytes_written:
        c[k_written] += bytes_written


class Frames(Protocol):
    """4 KiB frames of one node, with their contents."""

    @property
    def medium(self) -> str: ...

    @property
    def capacity(self) -> int:
        """Frames the node can hand out now."""
        ...

    @property
    def used(self) -> int: ...

    def alloc(self) -> int:
        """A free frame's pfn; NoSpace when there is none."""
        ...

    def free(self, pfn: int) -> None: ...

    def owns(self, pfn: int) -> bool: ...

    def read(self, pfn: int, offset: int, n: int) -> bytes: ...

    def write(self, pfn: int, offset: int, data: bytes | bytearray | memoryview) -> None: ...


class CpuAccess(Protocol):
    """Loads and stores at physical addresses (the platform's persistence domain)."""

    def load(self, addr: int, n: int) -> bytes: ...

    def store(self, addr: int, data: bytes | bytearray | memoryview) -> None: ...


@attrs.define(slots=True, eq=False)
class DramFrames:
    """DRAM frames from the page allocator, at most ``limit`` of them at a time.

    The limit is the DRAM the workload may use (a memory cgroup's limit, or ``mem=`` at
    boot); every frame is also charged to the machine's DRAM budget (``mm:<who>``).
    """

    pages: PageAllocator
    limit: int
    metrics: Metrics
    who: str = "tier"
    medium: str = "dram"
    _held: dict[int, Page] = attrs.field(init=False, factory=dict, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.limit < 1:
            raise InvalidArgument(f"a DRAM node needs at least one page, not {self.limit}")

    @property
    def capacity(self) -> int:
        return self.limit

    @property
    def used(self) -> int:
        return len(self._held)

    def alloc(self) -> int:
        if len(self._held) >= self.limit:
            raise NoSpace(f"DRAM node: all {self.limit} pages in use")
        page = self.pages.alloc(self.who)  # NoSpace from the DRAM budget: nothing changed
        self._held[page.pfn] = page
        return page.pfn

    def free(self, pfn: int) -> None:
        page = self._held.pop(pfn, None)
        if page is None:
            raise InvalidArgument(f"pfn {pfn:#x} is not a frame of this DRAM node")
        self.pages.put(page)

    def owns(self, pfn: int) -> bool:
        return pfn in self._held

    def read(self, pfn: int, offset: int, n: int) -> bytes:
        c = self.metrics.c
        k = media_keys(self.medium)
        c[k[0]] += 1
        c[k[1]] += n
        return self.pages.read(pfn, offset, n)

    def write(self, pfn: int, offset: int, data: bytes | bytearray | memoryview) -> None:
        self.metrics.c[media_keys(self.medium)[2]] += len(data)
        self.pages.write(pfn, offset, data)


@attrs.define(slots=True, eq=False)
class FrameRange:
    """One hot-added range (a memory block): pfns ``[start_pfn, start_pfn + npages)``,
    of which the first ``reserved`` hold its own struct pages (memmap_on_memory)."""

    start_pfn: int
    npages: int
    reserved: int = 0
    used: int = 0
    _next: int = attrs.field(init=False, default=0)
    _freed: list[int] = attrs.field(init=False, factory=list, repr=False)

    def __attrs_post_init__(self) -> None:
        self._next = self.start_pfn + self.reserved

    @property
    def end_pfn(self) -> int:
        return self.start_pfn + self.npages

    @property
    def usable(self) -> int:
        return self.npages - self.reserved

    def contains(self, pfn: int) -> bool:
        return self.start_pfn + self.reserved <= pfn < self.end_pfn

    def take(self) -> int | None:
        if self._freed:
            pfn = self._freed.pop()
        elif self._next < self.end_pfn:
            pfn = self._next
            self._next += 1
        else:
            return None
        self.used += 1
        return pfn

    def give(self, pfn: int) -> None:
        self._freed.append(pfn)
        self.used -= 1


@attrs.define(slots=True, eq=False)
class PmemFrames:
    """Frames in hot-added pmem ranges, read and written through the CPU.

    Ranges join as memory blocks are onlined and leave as they are offlined (refused
    while any of their frames is in use). Pages are handed out from the lowest range
    first, so the last blocks stay empty longest and can be offlined.
    """

    cpu: CpuAccess
    metrics: Metrics
    medium: str = "pmem"
    ranges: list[FrameRange] = attrs.field(factory=list)
    _owned: dict[int, FrameRange] = attrs.field(init=False, factory=dict, repr=False)

    @property
    def capacity(self) -> int:
        return sum(r.usable for r in self.ranges)

    @property
    def used(self) -> int:
        return len(self._owned)

    def add_range(self, start_pfn: int, npages: int, reserved: int = 0) -> FrameRange:
        if npages <= reserved or start_pfn < 0:
            raise InvalidArgument(f"range of {npages} pages with {reserved} reserved "
                                  "leaves nothing to hand out")
        for r in self.ranges:
            if r.start_pfn < start_pfn + npages and start_pfn < r.end_pfn:
                raise Busy(f"pfns [{start_pfn:#x}, +{npages:#x}) overlap a range already "
                           "present")
        fr = FrameRange(start_pfn, npages, reserved)
        self.ranges.append(fr)
        self.ranges.sort(key=lambda r: r.start_pfn)
        return fr

    def remove_range(self, start_pfn: int) -> FrameRange:
        for r in self.ranges:
            if r.start_pfn == start_pfn:
                if r.used:
                    raise Busy(f"pfns [{r.start_pfn:#x}, {r.end_pfn:#x}): {r.used} page(s) "
                               "in use")
                self.ranges.remove(r)
                return r
        raise InvalidArgument(f"no range starts at pfn {start_pfn:#x}")

    def alloc(self) -> int:
        for r in self.ranges:
            pfn = r.take()
            if pfn is not None:
                self._owned[pfn] = r
                return pfn
        raise NoSpace(f"pmem node: all {self.capacity} pages in use")

    def free(self, pfn: int) -> None:
        r = self._owned.pop(pfn, None)
        if r is None:
            raise InvalidArgument(f"pfn {pfn:#x} is not an allocated frame of this node")
        r.give(pfn)

    def owns(self, pfn: int) -> bool:
        return pfn in self._owned

    def read(self, pfn: int, offset: int, n: int) -> bytes:
        c = self.metrics.c
        k = media_keys(self.medium)
        c[k[0]] += 1
        c[k[1]] += n
        return self.cpu.load((pfn << PAGE_SHIFT) + offset, n)

    def write(self, pfn: int, offset: int, data: bytes | bytearray | memoryview) -> None:
        # Ordinary cached stores, as copy_highpage and user stores to System RAM: no
        # flush, the memory is volatile by contract even though the media keeps it.
        self.metrics.c[media_keys(self.medium)[2]] += len(data)
        self.cpu.store((pfn << PAGE_SHIFT) + offset, data)


@attrs.define(slots=True, eq=False)
class NumaNode:
    """One node: an id, its frames, whether CPUs sit on it, and its abstract distance."""

    nid: int
    frames: Frames
    has_cpu: bool
    adistance: int = MEMTIER_ADISTANCE_DRAM

    @property
    def tier(self) -> int:
        """The memory tier id (``/sys/devices/virtual/memory_tiering/memory_tierN``)."""
        return self.adistance >> MEMTIER_CHUNK_BITS

    @property
    def medium(self) -> str:
        return self.frames.medium

    @property
    def capacity(self) -> int:
        return self.frames.capacity

    @property
    def used(self) -> int:
        return self.frames.used

    @property
    def free(self) -> int:
        return self.frames.capacity - self.frames.used

    def describe(self) -> str:
        cpus = "cpus" if self.has_cpu else "-"
        return (f"node {self.nid}  {self.medium:<4}  {cpus:<4}  memory_tier{self.tier:<3}"
                f"  {self.used}/{self.capacity} pages")


@attrs.define(slots=True, eq=False)
class MemoryTiers:
    """The nodes of one kernel, in tiers, and where each demotes to."""

    nodes: dict[int, NumaNode] = attrs.field(factory=dict)
    demotion_enabled: bool = True
    _top: frozenset[int] = attrs.field(init=False, factory=frozenset, repr=False)

    def add(self, node: NumaNode) -> NumaNode:
        if node.nid in self.nodes:
            raise Busy(f"node {node.nid} already exists")
        if node.nid < 0:
            raise InvalidArgument(f"node id {node.nid} is negative")
        self.nodes[node.nid] = node
        self._retier()
        return node

    def remove(self, nid: int) -> NumaNode:
        node = self.node(nid)
        if node.used:
            raise Busy(f"node {nid} still holds {node.used} page(s)")
        del self.nodes[nid]
        self._retier()
        return node

    def _retier(self) -> None:
        # establish_demotion_targets runs when a node comes or goes; cache the top tier.
        tiers = self.tiers()
        self._top = frozenset(tiers[0][1]) if tiers else frozenset()

    def node(self, nid: int) -> NumaNode:
        try:
            return self.nodes[nid]
        except KeyError:
            raise InvalidArgument(f"no node {nid}; nodes: "
                                  f"{', '.join(map(str, sorted(self.nodes))) or 'none'}") from None

    def tiers(self) -> list[tuple[int, list[int]]]:
        """``(tier id, node ids)``, fastest tier first."""
        by: dict[int, list[int]] = {}
        for n in self.nodes.values():
            by.setdefault(n.tier, []).append(n.nid)
        return [(t, sorted(by[t])) for t in sorted(by)]

    def is_top_tier(self, nid: int) -> bool:
        return nid in self._top

    def demotion_target(self, nid: int) -> NumaNode | None:
        """The node pages of ``nid`` demote to: one of the next slower tier (the one with
        most free frames), or None at the bottom or with demotion disabled."""
        if not self.demotion_enabled:
            return None
        tier = self.node(nid).tier
        slower = [t for t in self.tiers() if t[0] > tier]
        if not slower:
            return None
        return max((self.nodes[n] for n in slower[0][1]), key=lambda n: (n.free, -n.nid))

    def top_node(self, local: int) -> NumaNode:
        """Where a promoted page goes: the local node when it is in the top tier."""
        if self.is_top_tier(local):
            return self.nodes[local]
        return self.nodes[self.tiers()[0][1][0]]

    def fallback(self, local: int) -> list[int]:
        """The zonelist: ``local`` first, then the others by tier, then by id."""
        rest = sorted((n for n in self.nodes if n != local),
                      key=lambda n: (self.nodes[n].tier, n))
        return [local, *rest] if local in self.nodes else rest

    def describe(self) -> list[str]:
        out = [n.describe() for n in sorted(self.nodes.values(), key=lambda n: n.nid)]
        for n in sorted(self.nodes):
            t = self.demotion_target(n)
            if t is not None:
                out.append(f"demotion {n} -> {t.nid}")
        return out


MPOL_MODES = ("default", "preferred", "bind", "interleave")


@attrs.frozen(slots=True)
class MemPolicy:
    """A memory policy (``set_mempolicy``): ``default`` (the local node, then the
    zonelist), ``preferred`` (``nodes[0]`` first, then the zonelist), ``bind`` (only
    ``nodes``) or ``interleave`` (round-robin over ``nodes`` by page index)."""

    mode: str = "default"
    nodes: tuple[int, ...] = ()

    def __attrs_post_init__(self) -> None:
        if self.mode not in MPOL_MODES:
            raise InvalidArgument(f"unknown memory policy {self.mode!r}; policies: "
                                  f"{', '.join(MPOL_MODES)}")
        if self.mode == "default" and self.nodes:
            raise InvalidArgument("the default policy takes no nodes")
        if self.mode != "default" and not self.nodes:
            raise InvalidArgument(f"policy {self.mode!r} needs at least one node")
        if len(set(self.nodes)) != len(self.nodes):
            raise InvalidArgument(f"policy {self.mode!r} names a node twice: {self.nodes}")

    @classmethod
    def parse(cls, text: str) -> MemPolicy:
        """``default``, ``preferred=1``, ``bind=0,1``, ``interleave=0,1`` (numactl-like)."""
        mode, _, rest = text.partition("=")
        try:
            nodes = tuple(int(x) for x in rest.split(",") if x.strip())
        except ValueError:
            raise InvalidArgument(f"memory policy {text!r}: node ids are integers") from None
        return cls(mode.strip(), nodes)

    def validate(self, tiers: MemoryTiers) -> None:
        for n in self.nodes:
            tiers.node(n)  # raises, naming the nodes there are

    def nodes_for(self, tiers: MemoryTiers, local: int, index: int) -> list[int]:
        """Nodes to try for the page at ``index``, in order (reclaim may run on the
        first before the next is tried)."""
        if self.mode == "default":
            return tiers.fallback(local)
        if self.mode == "preferred":
            first = self.nodes[0]
            return [first, *(n for n in tiers.fallback(local) if n != first)]
        if self.mode == "bind":
            return list(self.nodes)
        k = index % len(self.nodes)
        return [*self.nodes[k:], *self.nodes[:k]]

