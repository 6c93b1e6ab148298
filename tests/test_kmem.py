"""dax/kmem: a device-dax range onlined as System RAM on a CPU-less NUMA node."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from drivers.dax import DaxDevice
from drivers.dax.kmem import MEMORY_BLOCK_SIZE, KmemDriver, MemoryBlock
from mm.memmap import STRUCT_PAGE_SIZE
from mm.numa import (
    MEMTIER_ADISTANCE_DRAM,
    DramFrames,
    MemoryTiers,
    NumaNode,
    PmemFrames,
)
from mm.vma import DeviceDaxOps
from nvdimm.errors import Busy, InvalidArgument, NoSpace, NotFound
from nvdimm.explore.tiers import fresh_machine
from nvdimm.machine import Machine
from nvdimm.units import MiB


def machine_and_kmem(block: int = MEMORY_BLOCK_SIZE) -> tuple[Machine, KmemDriver]:
    m = fresh_machine(64 * MiB, 256 * MiB)
    tiers = MemoryTiers()
    tiers.add(NumaNode(0, DramFrames(m.mm.pages, 64, m.metrics), has_cpu=True,
                       adistance=MEMTIER_ADISTANCE_DRAM))
    pagemaps = m.drivers.drivers["devdax"].pagemaps  # type: ignore[attr-defined]
    return m, KmemDriver(m.mm, pagemaps, tiers, memory_block_size=block)


def devdax(m: Machine, size: int) -> DaxDevice:
    ns = m.bus.create_namespace(mode="devdax", size=size, map="mem", align=2 * MiB)
    assert isinstance(ns.device, DaxDevice)
    return ns.device


def test_probe_hot_adds_whole_blocks_on_a_node_without_cpus():
    m, kmem = machine_and_kmem()
    dev = devdax(m, 384 * MiB)  # data at +2 MiB: not on a 128 MiB boundary
    dram_before = m.platform.dram.charges.copy()
    kd = kmem.probe(dev, trim=True)
    assert kd.start % MEMORY_BLOCK_SIZE == 0 and kd.size == 256 * MiB
    assert [b.name for b in kd.blocks] == [f"memory{kd.start // MEMORY_BLOCK_SIZE + i}"
                                          for i in range(2)]
    assert all(b.state == "online" for b in kd.blocks)
    node = kmem.tiers.node(kd.node.nid)
    assert kd.node.nid == 1 and not node.has_cpu and node.medium == "pmem"
    assert kmem.tiers.tiers() == [(4, [0]), (22, [1])]  # memory_tier4, memory_tier22
    assert kmem.tiers.demotion_target(0) is node and kmem.tiers.demotion_target(1) is None
    assert node.capacity == (256 * MiB) // 4096
    # struct pages in DRAM: 64 bytes per 4 KiB page; device_dax's own memmap is gone
    assert m.platform.dram.charges[f"memmap:kmem:{dev.name}"] == STRUCT_PAGE_SIZE * node.capacity
    assert "memmap:namespace0.0" in dram_before
    assert m.platform.dram.charges.get("memmap:namespace0.0", 0) == 0
    assert not dev.pgmap.live
    home = kmem.home(kd.start >> 12)
    assert home.where == "dram"
    assert kmem.check() == []
    assert any("memory_tier22" in line for line in kmem.describe())
    assert kd.to_json()["mode"] == "system-ram"


def test_a_range_that_is_not_whole_blocks_is_refused_with_the_reason():
    m, kmem = machine_and_kmem()
    dev = devdax(m, 384 * MiB)
    with pytest.raises(InvalidArgument, match=r"not whole 128.*memory blocks.*trim") as e:
        kmem.probe(dev)
    assert "left unused" in str(e.value)
    assert dev.pgmap.live and not kmem.bound  # nothing changed
    small = devdax(m, 64 * MiB)
    with pytest.raises(InvalidArgument, match=r"no whole 128.*too small after alignment"):
        kmem.probe(small, trim=True)


def test_a_mapped_device_cannot_become_system_ram():
    m, kmem = machine_and_kmem(2 * MiB)
    dev = devdax(m, 32 * MiB)
    p = m.mm.spawn("app")
    a = p.mmap(2 * MiB, shared=True, backing=DeviceDaxOps(dev), max_fault=2 * MiB)
    p.store(a, b"in use")
    with pytest.raises(Busy, match=r"in use|mapped by app"):
        kmem.probe(dev)
    assert dev.pgmap.live and not kmem.bound
    p.munmap(a, 2 * MiB)
    kd = kmem.probe(dev)
    assert kd.size == dev.size and kmem.check() == []


def test_memmap_on_memory_costs_no_dram_and_a_slice_of_each_block():
    m, kmem = machine_and_kmem()
    dev = devdax(m, 384 * MiB)
    kd = kmem.probe(dev, trim=True, memmap="pmem")
    per_block = (128 * MiB // 4096) * STRUCT_PAGE_SIZE // 4096  # 512 pages of struct pages
    assert kd.cost.dram_bytes == 0 and kd.cost.pmem_bytes == 2 * per_block * 4096
    assert m.platform.dram.charges.get(kd.dram_account, 0) == 0
    assert kd.node.capacity == 2 * (128 * MiB // 4096 - per_block)
    first = kd.start >> 12
    home = kmem.home(first + 1000)
    assert home.where == "pmem" and first << 12 <= home.phys < (first + per_block) << 12
    pfn = kd.node.frames.alloc()
    assert pfn >= first + per_block  # the memmap's own pages are never handed out
    with pytest.raises(InvalidArgument, match="struct page of its own"):
        kmem.probe(devdax(m, 256 * MiB), trim=True, memmap="none")


def test_user_errors_are_named():
    m, kmem = machine_and_kmem(2 * MiB)
    dev = devdax(m, 32 * MiB)
    with pytest.raises(InvalidArgument, match="device-dax instances"):
        kmem.probe(m.bus.namespace("namespace0.0"))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="node 0 is dram"):
        kmem.probe(dev, node=0)
    kmem.probe(dev)
    with pytest.raises(Busy, match="already System RAM"):
        kmem.probe(dev)
    with pytest.raises(NotFound, match="no memory block 'memory9999'"):
        kmem.offline_block("memory9999")
    with pytest.raises(InvalidArgument, match="power of two"):
        KmemDriver(m.mm, kmem.pagemaps, kmem.tiers, memory_block_size=3 * MiB)


def test_offline_and_remove_give_the_range_back_to_device_dax():
    m, kmem = machine_and_kmem(2 * MiB)
    dev = devdax(m, 32 * MiB)
    kd = kmem.probe(dev)
    node = kd.node
    pfn = node.frames.alloc()
    used = next(b for b in kd.blocks if b.used)
    with pytest.raises(Busy, match=r"1 page.*in use"):
        kmem.offline_block(used.name)
    with pytest.raises(Busy, match="still online"):
        kmem.remove(dev.name)
    node.frames.free(pfn)
    for b in kd.blocks:
        kmem.offline_block(b.name)
    assert node.capacity == 0
    kmem.remove(dev.name)
    assert dev.pgmap.live and kd.dram_account not in m.platform.dram.charges
    assert 1 not in kmem.tiers.nodes and kmem.check() == []
    kmem.probe(dev, online=False)  # and back again, offline this time
    assert kmem.tiers.node(1).capacity == 0


class KmemLifecycle(RuleBasedStateMachine):
    """Memory blocks go online and offline while pages come and go on the node."""

    @initialize()
    def setup(self) -> None:
        self.m, self.kmem = machine_and_kmem(2 * MiB)
        self.dev = devdax(self.m, 32 * MiB)  # 15 blocks of 2 MiB
        self.kmem.probe(self.dev)
        self.pfns: list[int] = []

    @property
    def node(self) -> NumaNode:
        return self.kmem.bound[self.dev.name].node

    @property
    def blocks(self) -> list[MemoryBlock]:
        return self.kmem.bound[self.dev.name].blocks

    @precondition(lambda self: self.dev.name in self.kmem.bound)
    @rule(n=st.integers(1, 600))
    def alloc(self, n: int) -> None:
        for _ in range(n):
            if self.node.free == 0:
                with pytest.raises(NoSpace):
                    self.node.frames.alloc()
                return
            self.pfns.append(self.node.frames.alloc())

    @precondition(lambda self: self.pfns)
    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.pfns) - 1))
        self.node.frames.free(self.pfns.pop(i))

    @precondition(lambda self: self.dev.name in self.kmem.bound)
    @rule(i=st.integers(0, 14))
    def offline(self, i: int) -> None:
        b = self.blocks[i]
        if b.used:
            before = self.node.capacity
            with pytest.raises(Busy, match="in use"):
                self.kmem.offline_block(b.name)
            assert b.state == "online" and self.node.capacity == before
        else:
            self.kmem.offline_block(b.name)
            assert b.state == "offline"

    @precondition(lambda self: self.dev.name in self.kmem.bound)
    @rule(i=st.integers(0, 14))
    def online(self, i: int) -> None:
        self.kmem.online_block(self.blocks[i].name)

    @precondition(lambda self: self.dev.name in self.kmem.bound)
    @rule()
    def remove(self) -> None:
        if any(b.state == "online" for b in self.blocks):
            with pytest.raises(Busy, match="still online"):
                self.kmem.remove(self.dev.name)
            return
        self.kmem.remove(self.dev.name)
        assert self.dev.pgmap.live

    @precondition(lambda self: self.dev.name not in self.kmem.bound)
    @rule(online=st.booleans())
    def reprobe(self, online: bool) -> None:
        self.kmem.probe(self.dev, online=online)

    @invariant()
    def consistent(self) -> None:
        if not hasattr(self, "kmem"):
            return
        assert self.kmem.check() == []
        if self.dev.name not in self.kmem.bound:
            assert not self.pfns and self.dev.pgmap.live
            return
        frames = self.node.frames
        assert isinstance(frames, PmemFrames)
        online = [b for b in self.blocks if b.state == "online"]
        assert self.node.capacity == sum(b.npages for b in online)
        assert sum(b.used for b in self.blocks) == len(self.pfns) == self.node.used
        for pfn in self.pfns:
            assert any(b.start_pfn <= pfn < b.start_pfn + b.npages for b in online)
        assert all(b.used == 0 for b in self.blocks if b.state == "offline")


TestKmemLifecycle = KmemLifecycle.TestCase
TestKmemLifecycle.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)


def test_a_device_bound_to_kmem_has_no_character_device_to_map():
    from nvdimm.errors import NoDevice

    m, kmem = machine_and_kmem(2 * MiB)
    dev = devdax(m, 32 * MiB)
    kmem.probe(dev)
    p = m.mm.spawn("late")
    with pytest.raises(NoDevice, match="bound to kmem"):
        p.mmap(2 * MiB, shared=True, backing=DeviceDaxOps(dev))
    for b in kmem.bound[dev.name].blocks:
        kmem.offline_block(b.name)
    kmem.remove(dev.name)
    a = p.mmap(2 * MiB, shared=True, backing=DeviceDaxOps(dev))  # device_dax has it back
    p.munmap(a, 2 * MiB)
