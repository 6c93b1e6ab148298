"""dax/kmem: a device-dax range onlined as System RAM, on a NUMA node without CPUs.

Linux 5.1 (Dave Hansen) added ``drivers/dax/kmem.c``: instead of ``device_dax`` (the
character device), the ``kmem`` driver binds the dax device and hot-adds its range as
ordinary memory (``daxctl reconfigure-device --mode=system-ram daxX.Y``). In the model's
terms, :meth:`KmemDriver.probe` does what ``dev_dax_kmem_probe`` does:

1. refuses a device that is in use: mapped by a process (any page-table leaf in its
   range) or holding referenced or pinned pages (the character device must be idle to
   be unbound);
2. rounds the range to whole *memory blocks* (``memory_block_size_bytes``: 128 MiB on
   x86_64), the unit of memory hotplug. Linux trims silently and rejects a range left
   empty ("too small after alignment"); the model refuses any range that is not whole
   blocks unless asked to ``trim``, so no capacity is lost unnoticed;
3. unbinds ``device_dax`` (its ``dev_pagemap`` goes: :meth:`PagemapTable.memunmap_pages`)
   and hot-adds the range as "System RAM (kmem)": one :class:`MemoryBlock` (``memoryN``,
   N = physical address / block size) per block, on node ``node`` (Linux takes the
   region's target node; the model's platform has no proximity domains, so the lowest
   unused node id unless told). The node has no CPUs and joins the memory tiers at
   kmem's abstract distance (``memory_tier22``, below DRAM's ``memory_tier4``);
4. gives the memory struct pages, like any System RAM: in DRAM by default (64 bytes per
   4 KiB page, charged to the DRAM budget as ``memmap:kmem:daxX.Y``, the ``memmap``
   seam's ``ram`` variant) or, with ``memmap="pmem"`` (``memory_hotplug.memmap_on_memory``,
   5.12; offered to kmem since 6.8), carved from the start of each memory block itself
   (the ``pmem`` variant with an altmap per block): no DRAM, 1.56 % of the block;
5. onlines the blocks (``auto_online``; ``online_movable``, so they hold only movable
   pages): their frames join the node's :class:`~mm.numa.PmemFrames`.

A block can be offlined only when none of its frames is in use (Linux would first try to
migrate them away; the model refuses with ``Busy``); :meth:`KmemDriver.remove` hot-removes
a device whose blocks are all offline and gives the range back to ``device_dax``.

::

    dax0.0  [0x108000000, 0x118000000)  256 MiB  node 1  memory_tier22
    memory33 0x108000000 online  node 1  memmap in dram
    memory34 0x110000000 online  node 1  memmap in dram
    struct pages: 4 MiB of DRAM (65536 pages x 64 B)
"""

from __future__ import annotations

from typing import Any

import attrs

from drivers.dax.device import DaxDevice
from mm.memmap import (
    PAGE_SHIFT,
    PAGE_SIZE,
    STRUCT_PAGE_SIZE,
    MemmapCost,
    MemmapPolicy,
    MemmapRequest,
    StructPageHome,
    VmemAltmap,
)
from mm.numa import MEMTIER_DEFAULT_DAX_ADISTANCE, FrameRange, MemoryTiers, NumaNode, PmemFrames
from mm.pagemap import PagemapTable
from mm.process import MemorySystem
from nvdimm.errors import Busy, InvalidArgument, NotFound
from nvdimm.seams import seam
from nvdimm.units import MiB, human_size

#: x86_64's memory block size (MIN_MEMORY_BLOCK_SIZE, 2^27); larger machines use more.
MEMORY_BLOCK_SIZE = 128 * MiB
RESOURCE_NAME = "System RAM (kmem)"
MEMMAP_PLACES = ("ram", "pmem")


@attrs.define(slots=True, eq=False)
class MemoryBlock:
    """``/sys/devices/system/memory/memoryN``: one hot-plugged block."""

    index: int
    start: int
    size: int
    node: int
    device: str
    memmap_pages: int = 0  # pages at the block's start holding its struct pages
    frames: FrameRange | None = attrs.field(default=None, repr=False)  # while online

    @property
    def state(self) -> str:
        """``memoryN/state``: online exactly while its frames are on the node."""
        return "offline" if self.frames is None else "online"

    @property
    def name(self) -> str:
        return f"memory{self.index}"

    @property
    def start_pfn(self) -> int:
        return self.start >> PAGE_SHIFT

    @property
    def npages(self) -> int:
        return self.size >> PAGE_SHIFT

    @property
    def used(self) -> int:
        return self.frames.used if self.frames is not None else 0

    def sysfs(self) -> dict[str, str]:
        return {"phys_index": f"{self.index:08x}", "state": self.state,
                "valid_zones": "Movable",
                "removable": "1", "node": str(self.node)}


@attrs.define(slots=True, eq=False)
class KmemDevice:
    """A dax device bound to kmem: its hot-added range, blocks, node and memmap."""

    dev: DaxDevice
    node: NumaNode
    start: int
    size: int
    blocks: list[MemoryBlock]
    memmap: MemmapPolicy
    cost: MemmapCost

    @property
    def name(self) -> str:
        return self.dev.name

    @property
    def dram_account(self) -> str:
        return f"memmap:kmem:{self.dev.name}"

    def to_json(self) -> dict[str, Any]:
        return {"chardev": self.dev.name, "mode": "system-ram", "resource": RESOURCE_NAME,
                "start": self.start, "size": self.size, "target_node": self.node.nid,
                "memory_tier": self.node.tier, "memmap": self.memmap.name,
                "memmap_dram": self.cost.dram_bytes, "memmap_pmem": self.cost.pmem_bytes,
                "blocks": [{"name": b.name, "start": b.start, "state": b.state,
                            "used": b.used} for b in self.blocks]}


@attrs.define(slots=True, eq=False)
class KmemDriver:
    """The kmem driver of one kernel: binds dax devices as System RAM on ``tiers``."""

    system: MemorySystem
    pagemaps: PagemapTable
    tiers: MemoryTiers
    memory_block_size: int = MEMORY_BLOCK_SIZE
    adistance: int = MEMTIER_DEFAULT_DAX_ADISTANCE
    bound: dict[str, KmemDevice] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        bs = self.memory_block_size
        if bs < PAGE_SIZE or bs & (bs - 1):
            raise InvalidArgument(f"memory block size {bs:#x} must be a power of two of at "
                                  "least 4 KiB")

    # -- bind ---------------------------------------------------------------------------

    def probe(self, dev: DaxDevice, *, node: int | None = None, memmap: str = "ram",
              trim: bool = False, online: bool = True) -> KmemDevice:
        """``daxctl reconfigure-device --mode=system-ram``: validate everything, then
        unbind device_dax, hot-add, and (``online``) online every block."""
        if not isinstance(dev, DaxDevice):
            raise InvalidArgument(f"kmem binds device-dax instances, not "
                                  f"{type(dev).__name__} (create the namespace with -m devdax)")
        if dev.name in self.bound:
            raise Busy(f"{dev.name} is already System RAM (node "
                       f"{self.bound[dev.name].node.nid})")
        if memmap not in MEMMAP_PLACES:
            raise InvalidArgument(f"kmem memory is System RAM: every page needs a struct page "
                                  f"of its own, in DRAM ('ram') or on the memory itself "
                                  f"('pmem', memmap_on_memory), not {memmap!r}")
        self._check_idle(dev)
        start, size = self._block_range(dev, trim)
        nid = self._node_id(dev, node)
        policy: MemmapPolicy = seam("memmap").create(memmap)
        blocks, cost = self._plan(dev, start, size, nid, policy)
        dram = self.system.pages.dram
        # Validated: now change things. Charge first: NoSpace leaves everything as it was.
        account = f"memmap:kmem:{dev.name}"
        dram.charge(account, cost.dram_bytes)
        try:
            self.pagemaps.memunmap_pages(dev.pgmap, dram=dram, metrics=self.system.metrics,
                                         trace=self.system.trace)
        except BaseException:
            dram.uncharge(account)
            raise
        node_obj = self.tiers.nodes.get(nid)
        if node_obj is None:
            frames = PmemFrames(self.system.cpu, self.system.metrics)
            node_obj = self.tiers.add(NumaNode(nid, frames, has_cpu=False,
                                               adistance=self.adistance))
        kd = KmemDevice(dev, node_obj, start, size, blocks, policy, cost)
        self.bound[dev.name] = kd
        dev.driver = "kmem"
        c = self.system.metrics.c
        c["kmem.hotadd_blocks"] += len(blocks)
        self._gauges()
        tr = self.system.trace
        if tr.on:
            tr.emit("kmem.probe", dev=dev.name, start=start, size=size, node=nid,
                    blocks=len(blocks), memmap=policy.name, dram=cost.dram_bytes,
                    pmem=cost.pmem_bytes)
        if online:
            for b in blocks:
                self.online_block(b.name)
        return kd

    def _check_idle(self, dev: DaxDevice) -> None:
        busy = dev.pgmap.busy_pages()
        if busy:
            raise Busy(f"{dev.name} is in use: {len(busy)} page(s) referenced or pinned "
                       f"(first pfn {busy[0].pfn:#x}); unmap it and release pins first")
        lo, hi = dev.spa >> PAGE_SHIFT, (dev.spa + dev.size) >> PAGE_SHIFT
        for head, rec in self.system.rmap.heads():
            if head < hi and head + (rec.size >> PAGE_SHIFT) > lo:
                raise Busy(f"{dev.name} is mapped by {rec.mm.name} (pid {rec.mm.pid}) at "
                           f"{rec.addr:#x}; unmap it before onlining it as System RAM")

    def _block_range(self, dev: DaxDevice, trim: bool) -> tuple[int, int]:
        bs = self.memory_block_size
        start, end = dev.spa, dev.spa + dev.size
        a_start = -(-start // bs) * bs
        a_end = end // bs * bs
        if a_end <= a_start:
            raise InvalidArgument(
                f"{dev.name}: [{start:#x}, {end:#x}) holds no whole "
                f"{human_size(bs)} memory block (Linux: 'rejecting DAX region too small "
                "after alignment'); make the namespace larger")
        if (a_start, a_end) != (start, end) and not trim:
            lost = (end - start) - (a_end - a_start)
            raise InvalidArgument(
                f"{dev.name}: [{start:#x}, {end:#x}) ({human_size(dev.size)}) is not whole "
                f"{human_size(bs)} memory blocks: memory is hot-added by block, so "
                f"[{a_start:#x}, {a_end:#x}) would be onlined and {human_size(lost)} left "
                "unused (Linux trims silently); size and place the namespace on block "
                "boundaries, or pass trim=True")
        return a_start, a_end - a_start

    def _node_id(self, dev: DaxDevice, node: int | None) -> int:
        if node is None:
            if dev.target_node not in self.tiers.nodes:
                return dev.target_node
            node = 0
            while node in self.tiers.nodes:
                node += 1
            return node
        existing = self.tiers.nodes.get(node)
        if node < 0:
            raise InvalidArgument(f"node id {node} is negative")
        if existing is not None and not isinstance(existing.frames, PmemFrames):
            raise InvalidArgument(
                f"node {node} is {existing.medium} with CPUs: kmem would merge the pmem "
                "into it and there would be no slower tier to demote to; choose a node "
                "of its own")
        return node

    def _plan(self, dev: DaxDevice, start: int, size: int, nid: int,
              policy: MemmapPolicy) -> tuple[list[MemoryBlock], MemmapCost]:
        bs = self.memory_block_size
        block_pages = bs >> PAGE_SHIFT
        on_memory = policy.uses_altmap
        per_block = -(-block_pages * STRUCT_PAGE_SIZE // PAGE_SIZE) if on_memory else 0
        if per_block >= block_pages:
            raise InvalidArgument(f"a {human_size(bs)} block cannot hold its own memmap")
        blocks = [MemoryBlock(a // bs, a, bs, nid, dev.name, per_block)
                  for a in range(start, start + size, bs)]
        if on_memory:
            pmem = sum(policy.cost(self._request(b)).pmem_bytes for b in blocks)
            cost = MemmapCost(policy.name, size >> PAGE_SHIFT, 0, pmem)
        else:
            cost = policy.cost(MemmapRequest(start, size))
        return blocks, cost

    def _request(self, b: MemoryBlock) -> MemmapRequest:
        alt = VmemAltmap(b.start_pfn, b.start_pfn + b.npages, 0, b.memmap_pages)
        return MemmapRequest(b.start, b.size, altmap=alt)

    # -- memory blocks -------------------------------------------------------------------

    def blocks(self) -> list[MemoryBlock]:
        return sorted((b for kd in self.bound.values() for b in kd.blocks),
                      key=lambda b: b.index)

    def block(self, name: str) -> MemoryBlock:
        for b in self.blocks():
            if b.name == name:
                return b
        raise NotFound(f"no memory block {name!r}; blocks: "
                       f"{', '.join(b.name for b in self.blocks()) or 'none'}")

    def _owner(self, b: MemoryBlock) -> KmemDevice:
        return self.bound[b.device]

    def online_block(self, name: str) -> MemoryBlock:
        """``echo online_movable > memoryN/state``: its frames join the node."""
        b = self.block(name)
        if b.state == "online":
            return b
        frames = self._owner(b).node.frames
        assert isinstance(frames, PmemFrames)
        b.frames = frames.add_range(b.start_pfn, b.npages, b.memmap_pages)
        self.system.metrics.c["kmem.online_blocks"] += 1
        self._gauges()
        if self.system.trace.on:
            self.system.trace.emit("kmem.online", block=b.name, node=b.node)
        return b

    def offline_block(self, name: str) -> MemoryBlock:
        """``echo offline > memoryN/state``: refused while any of its frames is in use."""
        b = self.block(name)
        if b.state == "offline":
            return b
        if b.used:
            raise Busy(f"{b.name}: {b.used} page(s) in use on node {b.node}; the kernel "
                       "would have to migrate them first (offline refuses: EBUSY)")
        frames = self._owner(b).node.frames
        assert isinstance(frames, PmemFrames)
        frames.remove_range(b.start_pfn)
        b.frames = None
        self.system.metrics.c["kmem.offline_blocks"] += 1
        self._gauges()
        if self.system.trace.on:
            self.system.trace.emit("kmem.offline", block=b.name, node=b.node)
        return b

    def remove(self, dev_name: str) -> DaxDevice:
        """Hot-remove a device whose blocks are all offline; device_dax gets it back."""
        kd = self.bound.get(dev_name)
        if kd is None:
            raise NotFound(f"{dev_name} is not bound to kmem")
        online = [b.name for b in kd.blocks if b.state == "online"]
        if online:
            raise Busy(f"{dev_name}: memory block(s) {', '.join(online)} still online; "
                       "offline them first")
        dram = self.system.pages.dram
        dev = kd.dev
        self.pagemaps.memremap_pages(dev.pgmap, dram=dram, metrics=self.system.metrics,
                                     trace=self.system.trace, kernel=dev.ns.region.bus)
        dram.uncharge(kd.dram_account)
        del self.bound[dev_name]
        dev.driver = "device_dax"
        node = kd.node
        if not any(k.node is node for k in self.bound.values()):
            self.tiers.remove(node.nid)
        self._gauges()
        if self.system.trace.on:
            self.system.trace.emit("kmem.remove", dev=dev_name, node=node.nid)
        return dev

    # -- questions -------------------------------------------------------------------------

    def home(self, pfn: int) -> StructPageHome:
        """Where the struct page of a kmem pfn lives."""
        for kd in self.bound.values():
            for b in kd.blocks:
                if b.start_pfn <= pfn < b.start_pfn + b.npages:
                    if kd.memmap.uses_altmap:
                        return kd.memmap.home(self._request(b), pfn)
                    return kd.memmap.home(MemmapRequest(kd.start, kd.size), pfn)
        raise InvalidArgument(f"pfn {pfn:#x} is not kmem memory")

    def check(self) -> list[str]:
        """Violations of: a node's capacity is its online blocks' usable pages; an
        offline block holds no page; a kmem range is not also a live device-dax pagemap
        or mapped through the character device; DRAM charged matches the memmaps."""
        bad = []
        dram = self.system.pages.dram
        charges = getattr(dram, "charges", None)
        for kd in self.bound.values():
            if kd.dev.pgmap.live:
                bad.append(f"{kd.name}: device_dax's pagemap is live while kmem holds it")
            lo, hi = kd.start >> PAGE_SHIFT, (kd.start + kd.size) >> PAGE_SHIFT
            for head, rec in self.system.rmap.heads():
                if head < hi and head + (rec.size >> PAGE_SHIFT) > lo:
                    bad.append(f"{kd.name}: System RAM at pfn {head:#x} is also mapped by "
                               f"{rec.mm.name} through the device")
            if charges is not None and charges.get(kd.dram_account, 0) != kd.cost.dram_bytes:
                bad.append(f"{kd.name}: {charges.get(kd.dram_account, 0)} bytes of DRAM "
                           f"charged for a memmap of {kd.cost.dram_bytes}")
        nodes = {id(kd.node): kd.node for kd in self.bound.values()}
        for node in nodes.values():
            want = sum(b.npages - b.memmap_pages for kd in self.bound.values()
                       if kd.node is node for b in kd.blocks if b.state == "online")
            if node.capacity != want:
                bad.append(f"node {node.nid}: capacity {node.capacity}, online blocks hold "
                           f"{want}")
        return bad

    def describe(self) -> list[str]:
        out = []
        for kd in self.bound.values():
            out.append(f"{kd.name}  [{kd.start:#x}, {kd.start + kd.size:#x})  "
                       f"{human_size(kd.size)}  node {kd.node.nid}  "
                       f"memory_tier{kd.node.tier}")
            for b in kd.blocks:
                out.append(f"  {b.name:<10} {b.start:#x}  {b.state:<7}  node {b.node}  "
                           f"{b.used} pages used")
            where = "the memory itself" if kd.memmap.uses_altmap else "DRAM"
            out.append(f"  struct pages in {where}: DRAM {human_size(kd.cost.dram_bytes)}, "
                       f"pmem {human_size(kd.cost.pmem_bytes)}")
        return out

    def _gauges(self) -> None:
        m = self.system.metrics
        m.set("kmem.blocks_online", sum(1 for b in self.blocks() if b.state == "online"))
        m.set("kmem.memmap_dram_bytes", sum(kd.cost.dram_bytes for kd in self.bound.values()))
        m.set("kmem.memmap_pmem_bytes", sum(kd.cost.pmem_bytes for kd in self.bound.values()))
