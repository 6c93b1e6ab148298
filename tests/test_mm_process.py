"""Processes: address spaces, page tables, faults, user loads/stores/flushes, crashes."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.dax import DaxDevice
from drivers.pfn import FsdaxDevice
from mm.fault import BUS_ADRERR, BUS_MCEERR_AR, SEGV_ACCERR, SEGV_MAPERR, SIGBUS, SIGSEGV
from mm.page_alloc import PageAllocator
from mm.pagetable import PMD_SIZE, PTE_SIZE, PUD_SIZE, Entry, PageTable
from mm.process import MemorySystem, NotMapped
from mm.vma import PROT_READ, DeviceDaxOps, PfnRangeOps
from nvdimm import ndctl
from nvdimm.claim import DriverRegistry
from nvdimm.errors import Busy, InvalidArgument, NoSpace
from nvdimm.machine import Machine, MachineConfig
from nvdimm.platform.crash import KeepNothing
from nvdimm.platform.dram import Dram
from nvdimm.units import GiB, KiB, MiB
from tests.conftest import QEMU_CAPACITY

# -- helpers (other mm tests import these) ----------------------------------------------------


def machine_with(*, memmap: str | None = None, persistence: str = "adr",
                 dimm_size: int = QEMU_CAPACITY, tracking: bool = True,
                 dram_size: int = 16 * GiB) -> Machine:
    """A labelled one-DIMM machine whose pfn/dax drivers use memmap variant ``memmap``."""
    from drivers.btt import BttDriver
    from drivers.dax import DaxDriver
    from drivers.pfn import PfnDriver
    from drivers.pmem import PmemDriver
    from mm.pagemap import PagemapTable

    reg = DriverRegistry()
    reg.register(PmemDriver())
    table = PagemapTable()
    reg.register(PfnDriver(memmap=memmap, pagemaps=table))
    reg.register(DaxDriver(memmap=memmap, pagemaps=table))
    reg.register(BttDriver())
    cfg = MachineConfig(dimms=1, dimm_size=dimm_size, persistence=persistence,
                        tracking=tracking, dram_size=dram_size)
    m = Machine.create(cfg, drivers=reg)
    m.init_labels()
    return m


def mm_for(m: Machine) -> MemorySystem:
    """The machine's kernel mm, wired from its parts."""
    return MemorySystem.create(dram=m.platform.dram, cpu=m.platform.cpu,
                               pagemaps=m.drivers.drivers["fsdax"].pagemaps,
                               metrics=m.metrics, trace=m.trace)


def make_devdax(m: Machine, align: str = "2M", size: str = "64M",
                mapping: str | None = None) -> DaxDevice:
    out = ndctl.create_namespace(m, mode="devdax", size=size, align=align, map=mapping)
    dev = m.bus.namespace(out["dev"]).device
    assert isinstance(dev, DaxDevice)
    return dev


def make_fsdax(m: Machine, size: str = "64M", mapping: str | None = None) -> FsdaxDevice:
    out = ndctl.create_namespace(m, mode="fsdax", size=size, map=mapping)
    dev = m.bus.namespace(out["dev"]).device
    assert isinstance(dev, FsdaxDevice)
    return dev


def data_area(dev: FsdaxDevice) -> PfnRangeOps:
    """The fsdax data area as a directly mappable range (what a DAX file maps, minus fs)."""
    return PfnRangeOps(dev.spa >> 12, dev.size >> 12, name=dev.name, fsdax=True)


# -- anonymous memory ---------------------------------------------------------------------------


def test_anonymous_memory_is_zeroed_dram_charged_and_freed_on_munmap():
    m = machine_with()
    system = mm_for(m)
    p = system.spawn("app")
    a = p.mmap(3 * PTE_SIZE)
    assert p.load(a, 16) == bytes(16)  # first touch: a zeroed page
    p.store(a + PTE_SIZE - 2, b"abcd")  # straddles two pages
    assert p.load(a + PTE_SIZE - 2, 4) == b"abcd"
    assert m.platform.dram.charges["mm:anon"] == 2 * PTE_SIZE
    assert m.metrics.get("mm.faults.4k") == 2
    pfn = p.translate(a)
    assert pfn is not None and system.pages.owns(pfn >> 12)
    p.munmap(a, 3 * PTE_SIZE)
    assert "mm:anon" not in m.platform.dram.charges and system.pages.nr_allocated == 0
    assert system.check_invariants() == []


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5 * PTE_SIZE - 1), st.binary(min_size=1, max_size=300)),
                max_size=12))
def test_loads_see_the_stores_made_across_pages(writes):
    system = _SHARED_MM
    p = system.spawn("prop")
    a = p.mmap(5 * PTE_SIZE)
    model = bytearray(5 * PTE_SIZE)
    for off, data in writes:
        data = data[:5 * PTE_SIZE - off]
        p.store(a + off, data)
        model[off:off + len(data)] = data
    assert p.load(a, len(model)) == bytes(model)
    p.exit()
    assert system.pages.nr_allocated == 0


_SHARED_MM = mm_for(machine_with())


def test_unmapped_and_forbidden_accesses_are_sigsegv():
    system = mm_for(machine_with())
    p = system.spawn("app")
    with pytest.raises(SIGSEGV) as e:
        p.load(0x1000, 1)
    assert e.value.code == SEGV_MAPERR and e.value.addr == 0x1000 and e.value.signo == 11
    ro = p.mmap(PTE_SIZE, PROT_READ)
    assert p.load(ro, 4) == bytes(4)
    with pytest.raises(SIGSEGV) as e:
        p.store(ro, b"x")
    assert e.value.code == SEGV_ACCERR and e.value.errno == errno.EFAULT
    assert system.metrics.get("mm.faults.sigsegv") == 2


def test_dram_budget_and_pfn_range_refuse_before_anything_changes():
    dram = Dram(3 * PTE_SIZE)
    pages = PageAllocator(dram, start_pfn=0x100, end_pfn=0x104)
    got = [pages.alloc() for _ in range(3)]
    with pytest.raises(NoSpace, match="DRAM"):
        pages.alloc()
    assert pages.nr_allocated == 3 and dram.used == 3 * PTE_SIZE
    pages.put(got[0])
    pages.alloc("pagecache")
    assert pages.usage() == {"anon": 2, "pagecache": 1}
    roomy = PageAllocator(Dram(GiB), start_pfn=0x100, end_pfn=0x101)
    roomy.alloc()
    with pytest.raises(NoSpace, match="no DRAM pfn left"):
        roomy.alloc()


def test_page_table_leaves_never_overlap():
    pt = PageTable()
    base = 0x7F00_0000_0000
    pt.insert(base + PTE_SIZE, Entry(0x1001, PTE_SIZE, True))
    with pytest.raises(Busy):
        pt.insert(base, Entry(0x1200, PMD_SIZE, True))  # a PTE lives in that PMD slot
    with pytest.raises(Busy):
        pt.insert(base, Entry(0x40000, PUD_SIZE, True))
    pt.insert(base + PMD_SIZE, Entry(0x1200, PMD_SIZE, True))
    with pytest.raises(InvalidArgument, match="aligned"):
        pt.insert(base + 2 * PMD_SIZE, Entry(0x1201, PMD_SIZE, True))
    assert pt.translate(base + PMD_SIZE + 0x1234) == (0x1200 << 12) + 0x1234
    assert pt.counts() == {"4k": 1, "2m": 1, "1g": 0}
    gone = pt.zap(base + PMD_SIZE + PTE_SIZE, base + PMD_SIZE + 2 * PTE_SIZE)
    assert [g[0] for g in gone] == [base + PMD_SIZE]  # the huge leaf goes whole
    assert pt.is_empty(base + PMD_SIZE, PMD_SIZE) and len(pt) == 1


# -- device-dax ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("align", "max_fault", "fault"), [
    ("2M", PUD_SIZE, "2m"),  # 1G tried, falls back, 2M inserted
    ("2M", PMD_SIZE, "2m"),
    ("2M", PTE_SIZE, "sigbus"),  # a 4K fault on a 2M device
    ("4K", PUD_SIZE, "4k"),  # 1G and 2M fall back
    ("1G", PUD_SIZE, "1g"),
    ("1G", PMD_SIZE, "sigbus"),  # no PUD leaves here: a 2M fault on a 1G device
])
def test_device_dax_faults_only_at_its_alignment(align, max_fault, fault):
    big = align == "1G"
    m = machine_with(dimm_size=2 * GiB + 16 * MiB if big else QEMU_CAPACITY)
    dev = make_devdax(m, align=align, size="2G" if big else "64M")
    system = mm_for(m)
    p = system.spawn("app")
    length = min(dev.align * 2, dev.size)
    a = p.mmap(length, shared=True, backing=DeviceDaxOps(dev), max_fault=max_fault)
    assert a % dev.align == 0
    if fault == "sigbus":
        with pytest.raises(SIGBUS) as e:
            p.store(a + 5, b"x")
        assert e.value.code == BUS_ADRERR and e.value.signo == 7
        assert m.metrics.get("mm.faults.sigbus") == 1
        return
    last = length - dev.align  # the last leaf of the mapping
    p.store(a + last + 5, b"hello")
    assert m.metrics.get(f"mm.faults.{fault}") == 1
    _, entry = p.mm.pt.lookup(a + last)
    assert entry.size == dev.align and entry.pfn == dev.pfn_of(last)
    assert m.platform.cpu.load(dev.spa + last + 5, 5) == b"hello"


def test_touching_a_2m_device_faults_once_per_2m():
    m = machine_with()
    dev = make_devdax(m)
    p = mm_for(m).spawn("app")
    a = p.mmap(16 * MiB, shared=True, backing=DeviceDaxOps(dev))
    for off in range(0, 16 * MiB, 64 * KiB):
        p.store(a + off, b"t")
    assert m.metrics.snapshot("mm.faults") == {"mm.faults.2m": 8}
    # a 16 MiB mapping cannot hold a 1 GiB leaf, so the core never offers one
    assert m.metrics.get("dax.fault_pmd_inserted") == 8
    assert not m.metrics.get("dax.fault_pud_fallback")


def test_device_dax_mmap_rules():
    m = machine_with()
    dev = make_devdax(m)
    p = mm_for(m).spawn("app")
    ops = DeviceDaxOps(dev)
    with pytest.raises(InvalidArgument, match="shared"):
        p.mmap(2 * MiB, shared=False, backing=ops)
    with pytest.raises(InvalidArgument, match="not aligned"):
        p.mmap(PTE_SIZE, shared=True, backing=ops)
    with pytest.raises(InvalidArgument, match="offset"):
        p.mmap(2 * MiB, shared=True, backing=ops, offset=PTE_SIZE)
    a = p.mmap(4 * MiB, shared=True, backing=ops)
    with pytest.raises(InvalidArgument, match="split"):
        p.munmap(a + PTE_SIZE, PTE_SIZE)
    p.munmap(a, 2 * MiB)  # at the alignment: fine
    assert [(v.start, v.offset) for v in p.mm.vmas] == [(a + 2 * MiB, 2 * MiB)]
    # past the end of the device: the mapping is accepted, the fault is SIGBUS
    beyond = p.mmap(4 * MiB, shared=True, backing=ops, offset=dev.size - 2 * MiB)
    p.store(beyond, b"ok")
    with pytest.raises(SIGBUS):
        p.store(beyond + 2 * MiB, b"no")


def test_processes_sharing_a_device_page_see_each_others_stores():
    m = machine_with()
    dev = make_devdax(m)
    system = mm_for(m)
    p, q = system.spawn("p"), system.spawn("q")
    a = p.mmap(2 * MiB, shared=True, backing=DeviceDaxOps(dev))
    b = q.mmap(2 * MiB, shared=True, backing=DeviceDaxOps(dev))
    p.store(a + 100, b"shared")
    assert q.load(b + 100, 6) == b"shared"
    head = dev.pgmap.page(dev.pfn_of(0))
    assert head.refcount == 2 and str(head.mapping) == "dax0.0"  # one per mapping
    assert [w["process"] for w in system.who_maps(dev.pfn_of(4096))] == ["p", "q"]
    p.exit()
    q.exit()
    assert head.refcount == 0 and system.check_invariants() == []


def test_msync_on_device_dax_is_einval_and_on_a_hole_enomem():
    m = machine_with()
    dev = make_devdax(m)
    p = mm_for(m).spawn("app")
    a = p.mmap(2 * MiB, shared=True, backing=DeviceDaxOps(dev))
    with pytest.raises(InvalidArgument, match="no fsync") as e:
        p.msync(a, 2 * MiB)
    assert e.value.errno == errno.EINVAL
    anon = p.mmap(PTE_SIZE)
    p.msync(anon, PTE_SIZE)  # nothing to do for anonymous memory
    with pytest.raises(NotMapped) as e2:
        p.msync(anon - PTE_SIZE, 2 * PTE_SIZE)  # the page below is a hole
    assert e2.value.errno == errno.ENOMEM


# -- pfn ranges (the fsdax data area) -----------------------------------------------------------


def test_a_data_area_maps_with_2m_leaves_and_a_partial_munmap_refaults_4k():
    m = machine_with()
    dev = make_fsdax(m)
    system = mm_for(m)
    p = system.spawn("app")
    a = p.mmap(8 * MiB, shared=True, backing=data_area(dev))
    p.store(a + 3 * PTE_SIZE, b"x")
    assert m.metrics.get("mm.faults.2m") == 1
    p.munmap(a, PTE_SIZE)  # cuts into the 2 MiB leaf: it goes whole
    assert p.load(a + 3 * PTE_SIZE, 1) == b"x"
    assert m.metrics.get("mm.faults.4k") == 1
    assert system.check_invariants() == []


def test_a_private_mapping_copies_on_write_and_never_stores_to_pmem():
    m = machine_with()
    dev = make_fsdax(m)
    system = mm_for(m)
    p = system.spawn("app")
    shared = p.mmap(2 * MiB, shared=True, backing=data_area(dev))
    p.store(shared, b"original")
    private = p.mmap(2 * MiB, shared=False, backing=data_area(dev))
    assert p.load(private, 8) == b"original"  # read: the pmem page, read-only
    p.store(private, b"PRIVATE!")
    assert p.load(private, 8) == b"PRIVATE!" and p.load(shared, 8) == b"original"
    assert m.platform.cpu.load(dev.spa, 8) == b"original"
    assert m.metrics.get("mm.faults.cow") == 1
    assert system.pages.owns(p.translate(private) >> 12)


def test_consuming_poison_is_sigbus_mceerr_and_unmaps_it_everywhere():
    m = machine_with()
    dev = make_devdax(m)
    system = mm_for(m)
    p, q = system.spawn("p"), system.spawn("q")
    a = p.mmap(2 * MiB, shared=True, backing=DeviceDaxOps(dev))
    b = q.mmap(2 * MiB, shared=True, backing=DeviceDaxOps(dev))
    q.load(b, 1)
    m.platform.inject_error(dev.spa + 8 * KiB, 512)
    with pytest.raises(SIGBUS) as e:
        p.load(a + 8 * KiB - 16, 64)
    assert e.value.code == BUS_MCEERR_AR and e.value.addr == a + 8 * KiB
    assert system.who_maps(dev.pfn_of(8 * KiB)) == []  # memory_failure unmapped both
    assert len(q.mm.pt) == 0 and m.metrics.get("mm.memory_failures") == 1


# -- crash semantics of user stores -----------------------------------------------------------


@pytest.mark.parametrize(("persistence", "flush", "kept"), [
    ("adr", "none", False),
    ("adr", "clwb", False),  # written back but not fenced
    ("adr", "clwb+sfence", True),
    ("adr", "nt", False),
    ("adr", "nt+sfence", True),
    ("eadr", "none", True),  # the caches are in the persistence domain
    ("eadr", "nt", False),  # NT stores still need a fence
    ("flush-hint", "clwb+sfence", False),  # user space cannot write the flush hint
])
def test_user_stores_to_device_dax_survive_a_crash_as_the_platform_says(persistence, flush,
                                                                         kept):
    m = machine_with(persistence=persistence)
    dev = make_devdax(m)
    p = mm_for(m).spawn("app")
    a = p.mmap(2 * MiB, shared=True, backing=DeviceDaxOps(dev))
    data = b"D" * 64
    p.store(a + 4096, data, nt=flush.startswith("nt"))
    if "clwb" in flush:
        p.clwb(a + 4096, 64)
    if "sfence" in flush:
        p.sfence()
    spa = dev.spa + 4096
    m.crash(KeepNothing())
    m.boot()
    assert (m.platform.cpu.load(spa, 64) == data) is kept


@pytest.mark.parametrize("persistence", ["adr", "flush-hint"])
def test_msync_of_a_dax_range_makes_its_stores_durable(persistence):
    m = machine_with(persistence=persistence)
    dev = make_fsdax(m)
    p = mm_for(m).spawn("app")
    a = p.mmap(4 * MiB, shared=True, backing=data_area(dev))
    p.store(a + 2 * MiB + 10, b"synced")
    p.msync(a, 4 * MiB)
    assert m.metrics.get("mm.dax_writeback_bytes") == 2 * MiB  # the whole dirty leaf
    p.store(a + 20, b"lost")  # after the msync, never flushed
    m.crash(KeepNothing())
    m.boot()
    disk = m.block_device("pmem0")
    assert disk.read(2 * MiB, 4096)[10:16] == b"synced"
    assert disk.read(0, 4096)[20:24] == bytes(4)


# -- explain-page ------------------------------------------------------------------------------


def test_explain_page_names_who_maps_and_who_pins():
    from mm.gup import pin_user_pages, unpin_user_pages

    m = machine_with()
    dev = make_devdax(m)
    system = mm_for(m)
    p = system.spawn("db")
    a = p.mmap(2 * MiB, shared=True, backing=DeviceDaxOps(dev))
    pages = pin_user_pages(p.mm, a + 3 * PTE_SIZE, 1, write=True, who="rdma")
    e = ndctl.explain_page(m, "dax0.0", 3 * PTE_SIZE, mm=system)
    assert e["mapped_by"] == [{"pid": p.pid, "process": "db", "address": a + 3 * PTE_SIZE,
                               "entry": "2m", "writable": True, "refcounted": True}]
    assert e["pinned_by"][0]["who"] == "rdma" and e["pinned_by"][0]["address"] == a + 3 * 4096
    text = ndctl.render_explain(e)
    assert "2m entry rw" in text and "for rdma" in text
    unpin_user_pages(system, pages)
    p.exit()
    after = ndctl.explain_page(m, "dax0.0", 3 * PTE_SIZE, mm=system)
    assert after["mapped_by"] == [] == after["pinned_by"]
    assert "nobody" in ndctl.render_explain(after)
    # by default the machine's own memory system answers: none of its processes map it
    assert ndctl.explain_page(m, "dax0.0", 0)["mapped_by"] == []


def test_explain_page_says_the_kernel_has_no_rmap_without_struct_pages():
    m = machine_with()
    ndctl.create_namespace(m, mode="raw", size="16M")
    dev = m.bus.namespace("pmem0").device
    system = mm_for(m)
    p = system.spawn("dd")
    a = p.mmap(2 * MiB, shared=True,
               backing=PfnRangeOps(dev.spa >> 12, dev.size >> 12, name="pmem0", mixed=False))
    p.store(a, b"raw")
    e = ndctl.explain_page(m, "pmem0", 0, mm=system)
    assert e["mapped_by"][0]["refcounted"] is False and "VM_PFNMAP" in e["rmap_note"]

