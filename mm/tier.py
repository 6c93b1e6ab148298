"""Seam ``pmem_tier``: pmem as a level of the volatile memory hierarchy, in four shapes.

The seed asked what it means to treat high-capacity pmem as "just another level" of
memory and named three shapes: a page-cache extension, a reworked swap, a block-device
cache with DAX. Linux later shipped a fourth: device-dax onlined as System RAM by the
kmem driver, a CPU-less NUMA node in a lower memory tier, with demotion and promotion.
Each is a variant here, so one memory-hungry workload can run on each:

============= ============ ================================================ ===========
variant       pmem is      what goes there                                   used how
============= ============ ================================================ ===========
kmem-numa     a NUMA node  cold pages (anon and file), demoted by reclaim;   in place
                           promoted back when they turn hot
swap          a swap area  anonymous pages, through bios (raw pmem or BTT)   copied back
pagecache-ext a 2nd-level  clean file pages evicted from DRAM (cleancache)   copied back
              page cache
dax-cache     a block      disk blocks (file and swap) under the block       copied back
              cache        layer, read and written through DAX
dram-only     (nothing)    baseline: anon swaps to the slow disk, file pages
                           are dropped and read again
============= ============ ================================================ ===========

What every variant shares (:class:`TieredMemory`): a page table of the workload's
pages (:class:`PageState`, standing in for PTEs, swap entries and page-cache entries),
the nodes of :class:`~mm.numa.MemoryTiers` with one :class:`~mm.reclaim.Lru` each,
allocation by :class:`~mm.numa.MemPolicy` (the first allowed node above its low
watermark, as the page allocator's fast path), and kswapd-like reclaim that takes cold
pages off a node's LRU when every allowed node is low, or to make room for a
promotion. Anonymous pages start nowhere (the zero page) and fault in zero-filled (a
minor fault); file pages start on the disk (:class:`TierEnv` ``disk``) and fault in
with a read (a major fault). What reclaim does with a cold page, where a fault finds a
page, and what happens on an access to a page on a slow node are the variant's.

The model's page table is its own, not :mod:`mm.process`'s, so a run of hundreds of
thousands of accesses takes seconds; the data is real: every page's bytes move through
the DRAM page allocator, the CPU (pmem loads and stores), the block layer (bios to the
pmem, BTT and disk drivers) and DAX copies, so what a variant costs is counted where it
happens. Counters are ``tier.*`` (accesses, hits: the page was resident, in DRAM or used
in place on pmem; faults by kind: minor (zero-fill), major (the page had to be read in
from a swap area, the disk or a pmem cache), NUMA hint; demotions, promotions, swap-outs
and -ins, bytes moved) plus ``media.<medium>.*``.

::

    kmem-numa, DRAM full, a new anon page faults   reclaim demotes the coldest DRAM page
                                                   to node 1 (a 4 KiB copy, pmem writes)
    the demoted page is read                       a load from pmem: no fault
    ... twice within a scan period                 a hint fault, then promotion to DRAM
    swap, same situation                           the cold page goes out in a WRITE bio;
                                                   reading it again is a major fault
"""

from __future__ import annotations

import enum
from collections import Counter
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import attrs

from block.bio import read_bio, write_bio
from block.genhd import Gendisk
from mm.cleancache import Cleancache
from mm.memmap import PAGE_SIZE
from mm.numa import MemoryTiers, MemPolicy, NumaNode
from mm.reclaim import SWAP_CLUSTER_MAX, Lru, NumaBalancing
from mm.swap import SwapDevice
from nvdimm.errors import InvalidArgument, NoSpace
from nvdimm.metrics import Metrics
from nvdimm.seams import variant
from nvdimm.trace import Trace

ANON = "anon"
FILE = "file"

#: kswapd wakes below the low watermark and reclaims up to the high one (free frames).
WMARK_LOW = SWAP_CLUSTER_MAX
WMARK_HIGH = 2 * SWAP_CLUSTER_MAX


class PageKey(NamedTuple):
    """A page of the workload: ``anon`` (process memory) or ``file`` (a mapped file), and
    its page offset in that memory."""

    kind: str
    pgoff: int


class Where(enum.Enum):
    """Where a page's current contents are."""

    NONE = "none"  # anon, never touched: the zero page, no memory
    DRAM = "dram"  # resident on a top-tier node
    PMEM = "pmem"  # resident on a slower node (kmem): used in place
    SWAP = "swap"  # anon, only in a swap slot
    CLEANCACHE = "cleancache"  # file, a clean copy in the pmem second-level cache
    DISK = "disk"  # file, only on the disk


RESIDENT = (Where.DRAM, Where.PMEM)


@attrs.define(slots=True, eq=False)
class PageState:
    """One page's entry: where it is, its frame when resident, its swap slot (a swap
    cache copy when resident and clean), and NUMA-balancing sampling state."""

    key: PageKey
    where: Where
    nid: int = -1
    pfn: int = -1
    dirty: bool = False
    swap: SwapDevice | None = None
    slot: int = 0
    epoch: int = -1
    hits: int = 0


@attrs.define(slots=True, eq=False)
class TierEnv:
    """What every variant runs on: the nodes (at least the local DRAM node), the disk
    that holds the file (``file_pages`` pages from byte ``file_start``), the swap areas
    in priority order (may be empty: then anonymous memory cannot be reclaimed), and
    the machine's counters."""

    tiers: MemoryTiers
    disk: Gendisk
    file_pages: int
    swaps: list[SwapDevice]
    metrics: Metrics
    trace: Trace = attrs.field(factory=lambda: Trace(on=False))
    local: int = 0
    file_start: int = 0

    def __attrs_post_init__(self) -> None:
        self.tiers.node(self.local)
        if self.file_pages < 0 or self.file_start % PAGE_SIZE:
            raise InvalidArgument("the file must start on a page and have >= 0 pages")
        if self.file_start + self.file_pages * PAGE_SIZE > self.disk.size:
            raise InvalidArgument(f"a {self.file_pages}-page file at {self.file_start:#x} "
                                  f"does not fit {self.disk.name} ({self.disk.size:#x} bytes)")


@runtime_checkable
class PmemTier(Protocol):
    """The ``pmem_tier`` seam's contract (see the module docstring).

    ``needs`` says which shape of pmem the variant must be given (``numa-node``,
    ``swap-device``, ``page-frames``, ``block-cache`` or ``nothing``); ``in_place``
    whether loads and stores reach pmem without a copy to DRAM; ``pmem_holds`` what
    kinds of pages pmem ends up holding.
    """

    @property
    def name(self) -> str: ...

    @property
    def needs(self) -> str: ...

    @property
    def in_place(self) -> bool: ...

    @property
    def pmem_holds(self) -> tuple[str, ...]: ...

    def read(self, key: PageKey, offset: int, n: int) -> bytes:
        """Load ``n`` bytes of page ``key`` (faulting it in as the variant says)."""
        ...

    def write(self, key: PageKey, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Store into page ``key``."""
        ...

    def where(self, key: PageKey) -> Where: ...

    def census(self) -> dict[str, int]:
        """Pages by :class:`Where`, plus frames used per node."""
        ...

    def check(self) -> list[str]:
        """Violations of: every page is in exactly one place; frames, LRUs, swap slots
        and cache slots agree with the pages that claim them."""
        ...


NEEDS = ("numa-node", "swap-device", "page-frames", "block-cache", "nothing")


@attrs.define(slots=True, eq=False)
class TieredMemory:
    """The machinery every ``pmem_tier`` variant shares; subclasses decide reclaim,
    faults and slow-node accesses (see the module docstring)."""

    env: TierEnv
    pmem: Any = None
    policy: MemPolicy = attrs.field(factory=MemPolicy)
    _pages: dict[PageKey, PageState] = attrs.field(init=False, factory=dict, repr=False)
    _lrus: dict[int, Lru[PageKey]] = attrs.field(init=False, factory=dict, repr=False)
    _c: Any = attrs.field(init=False, default=None, repr=False)

    name: ClassVar[str] = "base"
    needs: ClassVar[str] = "nothing"
    in_place: ClassVar[bool] = False
    pmem_holds: ClassVar[tuple[str, ...]] = ()
    demotes: ClassVar[bool] = False

    def __attrs_post_init__(self) -> None:
        self._c = self.env.metrics.c
        self.policy.validate(self.env.tiers)
        self._setup()

    def _setup(self) -> None:
        """Check and take the pmem this variant needs (``self.pmem``)."""
        if self.pmem is not None:
            raise InvalidArgument(f"pmem_tier {self.name!r} uses no pmem, yet was given "
                                  f"{type(self.pmem).__name__}")

    # -- the contract: accesses ----------------------------------------------------------

    def read(self, key: PageKey, offset: int, n: int) -> bytes:
        _check_span(offset, n)
        st = self._access(key, False)
        return self.env.tiers.nodes[st.nid].frames.read(st.pfn, offset, n)

    def write(self, key: PageKey, offset: int, data: bytes | bytearray | memoryview) -> None:
        _check_span(offset, len(data))
        st = self._access(key, True)
        self.env.tiers.nodes[st.nid].frames.write(st.pfn, offset, data)

    def _access(self, key: PageKey, write: bool) -> PageState:
        c = self._c
        c["tier.accesses"] += 1
        st = self._pages.get(key)
        if st is None:
            st = self._new_state(key)
        self._tick()
        w = st.where
        if w is Where.DRAM:
            c["tier.hits.dram"] += 1
            self._lrus[st.nid].touch(key)
        elif w is Where.PMEM:
            c["tier.hits.pmem"] += 1  # used in place (this access may promote it)
            self._lrus[st.nid].touch(key)
            self._slow_access(st)
        else:
            self._fault(st, write)
        if write:
            c["tier.writes"] += 1
            st.dirty = True
        return st

    def _new_state(self, key: PageKey) -> PageState:
        if key.kind == ANON:
            where = Where.NONE
        elif key.kind == FILE:
            if not 0 <= key.pgoff < self.env.file_pages:
                raise InvalidArgument(f"file page {key.pgoff} is beyond the file's "
                                      f"{self.env.file_pages} pages")
            where = Where.DISK
        else:
            raise InvalidArgument(f"a page is 'anon' or 'file', not {key.kind!r}")
        if key.pgoff < 0:
            raise InvalidArgument(f"page index {key.pgoff} is negative")
        st = PageState(key, where)
        self._pages[key] = st
        return st

    def _tick(self) -> None:
        """One access happened (the NUMA-balancing clock of variants that have one)."""

    def _slow_access(self, st: PageState) -> None:
        """An access to a resident page, before it is served (promotion lives here)."""

    # -- faults ------------------------------------------------------------------------------

    def _fault(self, st: PageState, write: bool) -> None:
        """Bring ``st`` into memory: allocate a frame (reclaiming if needed), fill it."""
        c = self._c
        src = st.where
        node = self._alloc_node(st)
        pfn = node.frames.alloc()
        try:
            data = self._fill(st, write)
        except BaseException:
            node.frames.free(pfn)
            raise
        if data is None:
            c["tier.faults.minor"] += 1
        else:
            c["tier.faults.major"] += 1
            node.frames.write(pfn, 0, data)
            c["tier.bytes_moved"] += PAGE_SIZE
        st.nid, st.pfn = node.nid, pfn
        st.where = Where.DRAM if self.env.tiers.is_top_tier(node.nid) else Where.PMEM
        self._lrus.setdefault(node.nid, Lru()).add(st.key)
        if self.env.trace.on:
            self.env.trace.emit("tier.fault", page=f"{st.key.kind}:{st.key.pgoff}",
                                src=src.value, node=node.nid, major=data is not None)

    def _fill(self, st: PageState, write: bool) -> bytes | None:
        """The contents of a faulting page (None: zero-filled, a minor fault)."""
        w = st.where
        if w is Where.NONE:
            st.dirty = True  # an anon page has no copy anywhere until it is swapped
            return None
        if w is Where.SWAP:
            return self._swap_in(st, write)
        if w is Where.CLEANCACHE:
            data = self._cleancache_get(st)
            if data is not None:
                return data
        return self._read_file(st)

    def _swap_in(self, st: PageState, write: bool) -> bytes:
        dev = st.swap
        assert dev is not None
        data = dev.read(st.slot)
        self._c["tier.swapped_in"] += 1
        # Keep the slot as the swap cache's copy, as Linux does, unless the device
        # skips the swap cache (synchronous), swap is more than half full, or this is
        # a write fault (the copy would be stale at once).
        if dev.synchronous or dev.full or write:
            dev.free(st.slot)
            st.swap, st.slot = None, 0
            st.dirty = True
        else:
            st.dirty = False
        return data

    def _cleancache_get(self, st: PageState) -> bytes | None:
        return None

    def _read_file(self, st: PageState) -> bytes:
        env = self.env
        bio = read_bio((env.file_start + st.key.pgoff * PAGE_SIZE) // env.disk.sector_size,
                       PAGE_SIZE)
        env.disk.submit_bio_wait(bio)
        assert bio.data is not None
        self._c["tier.file_reads"] += 1  # the disk's driver counts the media access
        st.dirty = False
        return bytes(bio.data)

    def _write_file(self, st: PageState, data: bytes) -> None:
        env = self.env
        env.disk.submit_bio_wait(write_bio(
            (env.file_start + st.key.pgoff * PAGE_SIZE) // env.disk.sector_size, data))
        self._c["tier.writeback"] += 1
        self._c["tier.bytes_moved"] += PAGE_SIZE

    # -- allocation and reclaim -------------------------------------------------------------

    def _alloc_node(self, st: PageState) -> NumaNode:
        """The node the policy picks for ``st``, with a free frame.

        As the page allocator's fast path: the first allowed node above its low
        watermark (``node_reclaim_mode`` 0: no reclaim before falling back along the
        zonelist, so with a kmem node new pages spill to pmem once DRAM runs low); when
        every allowed node is low, kswapd on the first, then direct reclaim."""
        tiers = self.env.tiers
        order = self.policy.nodes_for(tiers, self.env.local, st.key.pgoff)
        for nid in order:
            node = tiers.nodes[nid]
            if node.free > WMARK_LOW:
                return node
        self._kswapd(tiers.nodes[order[0]])
        for nid in order:
            node = tiers.nodes[nid]
            if node.free > 0:
                return node
        for nid in order:  # every node short: reclaim harder, anywhere allowed
            node = tiers.nodes[nid]
            self._reclaim(node, SWAP_CLUSTER_MAX)
            if node.free > 0:
                return node
        self._c["tier.oom"] += 1
        raise NoSpace(f"out of memory: no node of {order} can free a page for "
                      f"{st.key.kind} page {st.key.pgoff} (no swap space, or nothing "
                      "reclaimable)")

    def _kswapd(self, node: NumaNode) -> None:
        """Reclaim ``node`` up to its high watermark."""
        want = WMARK_HIGH - node.free
        if want > 0:
            self._reclaim(node, want)

    def _reclaim(self, node: NumaNode, nr: int) -> int:
        """Take up to ``nr`` cold pages off ``node``; returns how many left it."""
        lru = self._lrus.get(node.nid)
        if lru is None:
            return 0
        self._c["tier.reclaim_runs"] += 1
        freed = 0
        for key in lru.isolate(nr):
            st = self._pages[key]
            if self._evict(st, node):
                freed += 1
            else:
                lru.add(key, active=True)  # could not go anywhere: keep it
        return freed

    def _evict(self, st: PageState, node: NumaNode) -> bool:
        """Make a cold page leave ``node``: demote it, or page it out."""
        if self.demotes:
            target = self.env.tiers.demotion_target(node.nid)
            if target is not None and self._migrate(st, target, "demoted"):
                return True
        if st.key.kind == ANON:
            return self._swap_out(st)
        return self._evict_file(st)

    def _migrate(self, st: PageState, target: NumaNode, what: str) -> bool:
        """Copy ``st`` to a frame of ``target`` (migrate_pages); False if none is free."""
        # Isolated first, so the reclaim that makes room on the target cannot pick it.
        lru = self._lrus[st.nid]
        was_listed = lru.remove(st.key)
        if target.free < WMARK_LOW:
            self._kswapd(target)
        if target.free <= 0:
            if was_listed:
                lru.add(st.key, active=True)
            self._c[f"tier.{what}_failed"] += 1
            return False
        src = self.env.tiers.nodes[st.nid]
        data = src.frames.read(st.pfn, 0, PAGE_SIZE)
        pfn = target.frames.alloc()
        target.frames.write(pfn, 0, data)
        self._release_frame(st)
        st.nid, st.pfn = target.nid, pfn
        st.where = Where.DRAM if self.env.tiers.is_top_tier(target.nid) else Where.PMEM
        self._lrus.setdefault(target.nid, Lru()).add(st.key, active=what == "promoted")
        c = self._c
        c[f"tier.{what}"] += 1
        c["tier.bytes_moved"] += PAGE_SIZE
        if self.env.trace.on:
            self.env.trace.emit(f"tier.{what}", page=f"{st.key.kind}:{st.key.pgoff}",
                                src=src.nid, dst=target.nid)
        return True

    def _release_frame(self, st: PageState) -> None:
        node = self.env.tiers.nodes[st.nid]
        self._lrus[st.nid].remove(st.key)  # already off the lists when isolated
        node.frames.free(st.pfn)
        st.nid, st.pfn = -1, -1

    def _swap_out(self, st: PageState) -> bool:
        """pageout of an anonymous page: to its swap-cache slot, or a new one."""
        c = self._c
        if st.swap is not None and not st.dirty:
            self._release_frame(st)  # the swap copy is current: no I/O
            st.where = Where.SWAP
            c["tier.swap_cache_reclaimed"] += 1
            return True
        data = self.env.tiers.nodes[st.nid].frames.read(st.pfn, 0, PAGE_SIZE)
        if st.swap is None:
            for dev in self._swap_areas():
                if dev.free_slots:
                    st.swap, st.slot = dev, dev.alloc()
                    break
            else:
                c["tier.swap_full"] += 1
                return False
        st.swap.write(st.slot, data)
        self._release_frame(st)
        st.where = Where.SWAP
        st.dirty = False
        c["tier.swapped_out"] += 1
        c["tier.bytes_moved"] += PAGE_SIZE
        return True

    def _evict_file(self, st: PageState) -> bool:
        """A file page leaves memory: written back if dirty, then dropped."""
        data = None
        if st.dirty:
            data = self.env.tiers.nodes[st.nid].frames.read(st.pfn, 0, PAGE_SIZE)
            self._write_file(st, data)
            st.dirty = False
        where = self._file_evicted(st, data)
        self._release_frame(st)
        st.where = where
        self._c["tier.file_dropped"] += 1
        return True

    def _file_evicted(self, st: PageState, data: bytes | None) -> Where:
        """Where a clean file page goes when it leaves memory (``data``: its contents
        when already read). The disk has it."""
        return Where.DISK

    # -- the contract: questions -------------------------------------------------------------

    def where(self, key: PageKey) -> Where:
        st = self._pages.get(key)
        if st is None:
            return self._new_state_where(key)
        return st.where

    def _new_state_where(self, key: PageKey) -> Where:
        return Where.NONE if key.kind == ANON else Where.DISK

    def census(self) -> dict[str, int]:
        counts = Counter(self.where(k).value for k in self._pages)
        out = {w.value: counts.get(w.value, 0) for w in Where}
        out["swap_cached"] = sum(1 for st in self._pages.values()
                                 if st.where in RESIDENT and st.swap is not None)
        for nid, node in sorted(self.env.tiers.nodes.items()):
            out[f"node{nid}_used"] = node.used
        return out

    def check(self) -> list[str]:
        bad: list[str] = []
        tiers = self.env.tiers
        frames: dict[tuple[int, int], PageKey] = {}
        on_node: Counter[int] = Counter()
        slots: dict[tuple[int, int], PageKey] = {}
        on_swap: Counter[int] = Counter()
        for key, st in self._pages.items():
            w = st.where
            if key.kind == ANON and w in (Where.DISK, Where.CLEANCACHE):
                bad.append(f"{key}: an anonymous page cannot be at {w.value}")
            if key.kind == FILE and w in (Where.SWAP, Where.NONE):
                bad.append(f"{key}: a file page cannot be at {w.value}")
            if w in RESIDENT:
                node = tiers.nodes.get(st.nid)
                if node is None or not node.frames.owns(st.pfn):
                    bad.append(f"{key}: frame {st.pfn:#x} on node {st.nid} is not allocated")
                elif (w is Where.DRAM) != tiers.is_top_tier(st.nid):
                    bad.append(f"{key}: marked {w.value} on node {st.nid}")
                other = frames.setdefault((st.nid, st.pfn), key)
                if other != key:
                    bad.append(f"{key} and {other} share frame {st.pfn:#x}")
                on_node[st.nid] += 1
                lru = self._lrus.get(st.nid)
                if lru is None or key not in lru:
                    bad.append(f"{key}: resident on node {st.nid} but on none of its lists")
            elif st.nid != -1:
                bad.append(f"{key}: at {w.value} but still holds a frame on node {st.nid}")
            if w is Where.SWAP and st.swap is None:
                bad.append(f"{key}: swapped out without a slot")
            if st.swap is not None:
                if not st.swap.in_use(st.slot):
                    bad.append(f"{key}: its slot {st.slot} on {st.swap.name} is free")
                sid = id(st.swap)
                other = slots.setdefault((sid, st.slot), key)
                if other != key:
                    bad.append(f"{key} and {other} share slot {st.slot} of {st.swap.name}")
                on_swap[sid] += 1
        for nid, node in tiers.nodes.items():
            if node.used != on_node[nid]:
                bad.append(f"node {nid}: {node.used} frames in use, {on_node[nid]} pages "
                           "say they are there")
        for nid, lru in self._lrus.items():
            if len(lru) != on_node[nid]:
                bad.append(f"node {nid}: {len(lru)} pages on its lists, {on_node[nid]} "
                           "resident")
            bad += [f"node {nid}: {m}" for m in lru.check()]
        for dev in self._swap_areas():
            if dev.used != on_swap[id(dev)]:
                bad.append(f"{dev.name}: {dev.used} slots in use, {on_swap[id(dev)]} pages "
                           "hold one")
        return bad

    def _swap_areas(self) -> list[SwapDevice]:
        return list(self.env.swaps)


def _check_span(offset: int, n: int) -> None:
    if offset < 0 or n < 0 or offset + n > PAGE_SIZE:
        raise InvalidArgument(f"[{offset:#x}, +{n:#x}) is outside a 4 KiB page")


# -- the variants ------------------------------------------------------------------------------


@variant(
    "pmem_tier", "kmem-numa",
    history="""Linux 5.1 (Dave Hansen, "Allow persistent memory to be used like normal
    RAM"): the dax kmem driver hot-adds a device-dax range as System RAM on its own NUMA
    node, which has no CPUs (daxctl reconfigure-device --mode=system-ram). 5.15: reclaim
    demotes cold pages to a slower node instead of swapping or discarding them
    (/sys/kernel/mm/numa/demotion_enabled). 5.18: NUMA balancing's memory-tiering mode
    (numa_balancing=2) promotes hot pages back; 6.0 adds the hint-fault latency
    threshold and a promotion rate limit; 6.1 makes the tiers explicit
    (mm/memory-tiers.c, abstract distance: DRAM memory_tier4, kmem memory_tier22).""",
    tradeoffs="""Pages on pmem are used in place: a cold page costs slower loads (about
    3x DRAM) instead of a fault and a copy, and nothing goes through the block layer.
    Every store to a page on pmem is a media write (wear), each migration copies 4 KiB,
    and a hot set that moves costs promotions and demotions (thrashing with too low a
    threshold). The memmap of the hot-added memory costs 1.56 % of it in DRAM (or pmem
    with memmap_on_memory), and the data is volatile by contract though the media
    keeps it.""",
)
@attrs.define(slots=True, eq=False)
class KmemNuma(TieredMemory):
    """pmem is a lower NUMA tier: reclaim demotes, NUMA balancing promotes.

    ::

        DRAM full, page A faults                 coldest DRAM page B demoted to node 1
        B read                                   load from pmem (hits.pmem), no fault
        B read again in the same scan period     hint fault, count 2: B promoted to DRAM
    """

    balancing: NumaBalancing = attrs.field(factory=NumaBalancing)

    name: ClassVar[str] = "kmem-numa"
    needs: ClassVar[str] = "numa-node"
    in_place: ClassVar[bool] = True
    pmem_holds: ClassVar[tuple[str, ...]] = (ANON, FILE)
    demotes: ClassVar[bool] = True

    def _setup(self) -> None:
        tiers = self.env.tiers
        if self.pmem is not None and not isinstance(self.pmem, NumaNode):
            raise InvalidArgument(f"kmem-numa takes the pmem node (a NumaNode), not "
                                  f"{type(self.pmem).__name__}")
        slow = [n for n in tiers.nodes.values() if not tiers.is_top_tier(n.nid)]
        if not slow:
            raise InvalidArgument("kmem-numa needs a slower memory tier: online a device-dax "
                                  "range with the kmem driver first (no node below "
                                  f"memory_tier{tiers.node(self.env.local).tier})")
        if self.pmem is not None and self.pmem.nid not in tiers.nodes:
            raise InvalidArgument(f"node {self.pmem.nid} is not one of the tiers' nodes")

    def _tick(self) -> None:
        self.balancing.tick()

    def _slow_access(self, st: PageState) -> None:
        if st.where is not Where.PMEM:
            return
        fault, promote = self.balancing.sample(st)
        if fault:
            self._c["tier.faults.hint"] += 1
        if promote:
            target = self.env.tiers.top_node(self.env.local)
            if self._migrate(st, target, "promoted"):
                self.balancing.promoted()


@variant(
    "pmem_tier", "swap",
    history="""Swap on a pmem block device worked from the first pmem driver (4.1), on
    raw pmem or on a BTT (4.2), which makes each sector write atomic. 4.15 (Minchan Kim,
    "skip swapcache for swapin of synchronous device") let devices whose I/O completes
    in the caller (pmem, btt, zram: QUEUE_FLAG_SYNCHRONOUS) swap in without the swap
    cache. The seed's "reworked/optimized swap" is this path made cheaper; frontswap
    (3.5 to 6.4) was the hook that let a backend take pages before the block layer.""",
    tradeoffs="""Only anonymous pages go to pmem; file pages are dropped and re-read from
    the disk. Nothing on pmem is used in place: every access to a swapped page is a major
    fault and a 4 KiB read, and since a synchronous device frees the slot at swap-in, a
    page that leaves again is written again. A BTT buys sector atomicity swap never
    needs (a swap area is not read after a crash) and pays metadata writes and fences
    for every page.""",
)
@attrs.define(slots=True, eq=False)
class PmemSwap(TieredMemory):
    """pmem is the highest-priority swap area; the slow disk's area is the overflow.

    ::

        DRAM full, page A faults        cold anon page B: WRITE bio to pmem0 (slot 1)
        B read                          major fault: READ bio, slot freed (synchronous)
        cold file page F                dropped (written back first if dirty)
    """

    name: ClassVar[str] = "swap"
    needs: ClassVar[str] = "swap-device"
    pmem_holds: ClassVar[tuple[str, ...]] = (ANON,)

    def _setup(self) -> None:
        if not isinstance(self.pmem, SwapDevice):
            raise InvalidArgument("pmem_tier 'swap' needs a swap area on a pmem disk (raw "
                                  "or sector namespace) as its pmem, not "
                                  f"{type(self.pmem).__name__}")
        if self.pmem.header is None:
            raise InvalidArgument(f"{self.pmem.name}: swapon first")

    def _swap_areas(self) -> list[SwapDevice]:
        # The pmem area has the higher priority: filled first, then the disk's.
        return [self.pmem, *self.env.swaps]


@variant(
    "pmem_tier", "pagecache-ext",
    history="""Cleancache (Dan Magenheimer, Linux 3.0) let a backend keep clean page-cache
    pages the kernel evicts and give them back on the next miss before any I/O: zcache
    (compressed RAM), Xen's transcendent memory, RAMster. With no backend left in the
    tree it was removed in 5.17. A pmem backend is the seed's "page cache extension".""",
    tradeoffs="""Only clean file pages gain: anonymous memory still swaps to the disk.
    A hit avoids the disk but is still a major fault and a 4 KiB copy back to DRAM;
    pmem is written once per page put (at eviction) and never used in place. The pool
    is ephemeral: a full pool drops its oldest page, and a dirty page must be written
    back before it can be kept.""",
)
@attrs.define(slots=True, eq=False)
class PagecacheExt(TieredMemory):
    """pmem keeps clean file pages evicted from DRAM; a miss looks there first.

    ::

        cold file page F evicted        written back if dirty, copied to pmem (put)
        F read again                    major fault, found in pmem: no disk read
        F read after the pool dropped it   read from the disk
    """

    cache: Cleancache | None = attrs.field(init=False, default=None)

    name: ClassVar[str] = "pagecache-ext"
    needs: ClassVar[str] = "page-frames"
    pmem_holds: ClassVar[tuple[str, ...]] = (FILE,)

    def _setup(self) -> None:
        if not isinstance(self.pmem, Cleancache):
            raise InvalidArgument("pmem_tier 'pagecache-ext' needs a Cleancache on pmem (a "
                                  "pool over a DAX provider) as its pmem, not "
                                  f"{type(self.pmem).__name__}")
        self.cache = self.pmem

    def _file_evicted(self, st: PageState, data: bytes | None) -> Where:
        assert self.cache is not None
        if data is None:
            data = self.env.tiers.nodes[st.nid].frames.read(st.pfn, 0, PAGE_SIZE)
        self.cache.put(st.key, data)
        self._c["tier.bytes_moved"] += PAGE_SIZE
        return Where.CLEANCACHE

    def _cleancache_get(self, st: PageState) -> bytes | None:
        assert self.cache is not None
        data = self.cache.get(st.key)
        if data is not None:
            self._c["tier.cleancache_hits"] += 1
        return data

    def where(self, key: PageKey) -> Where:
        w = TieredMemory.where(self, key)
        if w is Where.CLEANCACHE and self.cache is not None and key not in self.cache:
            return Where.DISK  # the ephemeral pool dropped it: only the disk has it
        return w

    def check(self) -> list[str]:
        bad = TieredMemory.check(self)
        assert self.cache is not None
        bad += self.cache.check()
        for k in self.cache.keys():  # noqa: SIM118 (a Cleancache, not a dict)
            st = self._pages.get(k)  # type: ignore[call-overload]
            if st is None or st.where is not Where.CLEANCACHE:
                bad.append(f"{k}: in the pmem cache but the page is "
                           f"{'unknown' if st is None else st.where.value}")
        return bad


@variant(
    "pmem_tier", "dax-cache",
    history="""bcache (3.10) and dm-cache (3.9) put a fast block device in front of a
    slow one. dm-writecache (4.18, Mikulas Patocka) was written for pmem: it maps the
    cache device with DAX and commits its metadata with persistent-memory flushes
    instead of bios. The seed's "block-device cache with DAX" is this shape.""",
    tradeoffs="""mm is unchanged: the page cache and anonymous memory stay in DRAM, swap
    and file I/O go to the disk, and pmem sits below the block layer caching disk blocks
    (file and swap alike). A cache hit still costs a major fault, a bio and a 4 KiB copy
    into DRAM; hot blocks are cached twice (DRAM and pmem); misses fill the cache, which
    writes pmem even for read-only data. The cache survives a reboot (its metadata is
    persistent), which volatile memory does not need.""",
)
@attrs.define(slots=True, eq=False)
class DaxCacheTier(TieredMemory):
    """The disk (file and swap) seen through a pmem block cache: mm does what it always
    does; the cache decides.

    ::

        file page F read, first time    bio to the cached disk: miss, disk read, cache fill
        F evicted and read again        bio: cache hit, DAX copy from pmem, no disk read
        cold anon page A                swapped to the disk's area: a write into the cache
    """

    name: ClassVar[str] = "dax-cache"
    needs: ClassVar[str] = "block-cache"
    pmem_holds: ClassVar[tuple[str, ...]] = (ANON, FILE)

    def _setup(self) -> None:
        disk = self.env.disk
        cached = self.pmem if isinstance(self.pmem, Gendisk) else None
        if cached is None:
            raise InvalidArgument("pmem_tier 'dax-cache' needs the cached disk (the block "
                                  "device the pmem cache presents) as its pmem, not "
                                  f"{type(self.pmem).__name__}")
        if disk is not cached:
            raise InvalidArgument(f"pmem_tier 'dax-cache': the file lives on {disk.name}, "
                                  f"not on the cached disk {cached.name}; build the "
                                  "environment on the cache")
        for dev in self.env.swaps:
            if dev.disk is not cached:
                raise InvalidArgument(f"swap area {dev.name} is not on the cached disk "
                                      f"{cached.name}")


@variant(
    "pmem_tier", "dram-only",
    history="""The baseline every shape is measured against: a machine without pmem,
    anonymous memory swapping to a disk and file pages read again from it.""",
    tradeoffs="""Costs no pmem and wears nothing; every page that does not fit in DRAM
    costs a major fault and a disk I/O when it is needed again.""",
)
@attrs.define(slots=True, eq=False)
class DramOnly(TieredMemory):
    """No pmem tier: anon swaps to the slow disk's area, file pages are dropped.

    ::

        cold anon page A                WRITE bio to the disk's swap area
        cold file page F                dropped; read from the disk on the next access
    """

    name: ClassVar[str] = "dram-only"
    needs: ClassVar[str] = "nothing"
