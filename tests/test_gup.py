"""get/pin_user_pages: references and pins, the ways Linux refuses, and the lifecycle."""

from __future__ import annotations

import errno
from collections import Counter

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
)

from mm.fault import BadAddress
from mm.gup import get_user_pages, pin_user_pages, put_user_pages, unpin_user_pages
from mm.pagetable import PTE_SIZE
from mm.process import folio_of
from mm.vma import PROT_READ, DeviceDaxOps, PfnRangeOps
from nvdimm import ndctl
from nvdimm.errors import NotSupported
from nvdimm.units import MiB
from tests.test_mm_process import data_area, machine_with, make_devdax, make_fsdax, mm_for


def test_a_pin_holds_a_reference_and_a_pin_on_the_compound_head():
    m = machine_with()
    dev = make_devdax(m, mapping="mem")  # compound pages, tails shared in DRAM
    system = mm_for(m)
    p = system.spawn("app")
    a = p.mmap(2 * MiB, shared=True, backing=DeviceDaxOps(dev))
    pages = pin_user_pages(p.mm, a + 5 * PTE_SIZE, 3, write=True, who="rdma")
    assert [pg.pfn for pg in pages] == [dev.pfn_of(i * PTE_SIZE) for i in (5, 6, 7)]
    head = dev.pgmap.page(dev.pfn_of(0))
    assert (head.refcount, head.pincount) == (1 + 3, 3)  # the mapping's + one per pin
    assert all(pg.refcount == 0 and pg.pincount == 0 for pg in pages)  # tails count nothing
    assert m.metrics.get("mm.gup.pinned") == 3
    unpin_user_pages(system, pages)
    assert (head.refcount, head.pincount) == (1, 0)


def test_a_pinned_device_page_stays_busy_after_munmap_until_unpinned():
    m = machine_with()
    dev = make_devdax(m)
    system = mm_for(m)
    p = system.spawn("app")
    a = p.mmap(2 * MiB, shared=True, backing=DeviceDaxOps(dev))
    pages = pin_user_pages(p.mm, a, 1, write=True)
    p.munmap(a, 2 * MiB)
    assert dev.pgmap.busy_pages() == [pages[0]]
    seq = m.trace.last_seq
    unpin_user_pages(system, pages)
    assert dev.pgmap.busy_pages() == []
    freed = [e for e in m.trace.since(seq) if e.name == "devdax.page_free"]
    assert [e.fields["pfn"] for e in freed] == [dev.pfn_of(0)]  # the owner hears of it
    assert system.check_invariants() == []


def test_a_pinned_anonymous_page_outlives_its_mapping():
    m = machine_with()
    system = mm_for(m)
    p = system.spawn("app")
    a = p.mmap(2 * PTE_SIZE)
    p.store(a, b"dma target")
    pages = pin_user_pages(p.mm, a, 2, write=True)  # the second page faults in
    p.munmap(a, 2 * PTE_SIZE)
    assert system.pages.nr_allocated == 2
    assert system.pages.read(pages[0].pfn, 0, 10) == b"dma target"
    unpin_user_pages(system, pages)
    assert system.pages.nr_allocated == 0 and "mm:anon" not in m.platform.dram.charges


def test_memmap_none_mapping_works_but_pinning_fails_with_efault():
    """No struct page (memmap ``none``): a VM_PFNMAP mapping; GUP returns -EFAULT."""
    m = machine_with(memmap="none")
    dev = make_devdax(m)
    system = mm_for(m)
    p = system.spawn("app")
    a = p.mmap(2 * MiB, shared=True, backing=DeviceDaxOps(dev))
    p.store(a, b"loads and stores work")
    assert p.load(a, 9) == b"loads and"
    for gup in (pin_user_pages, get_user_pages):
        with pytest.raises(BadAddress, match="VM_PFNMAP") as e:
            gup(p.mm, a, 1)
        assert e.value.errno == errno.EFAULT
    assert system.who_maps(dev.pfn_of(0))[0]["refcounted"] is False
    assert dev.pgmap.pages == {}  # nothing could create a struct page


def test_a_pfn_without_struct_page_in_a_mixed_map_is_efault():
    m = machine_with()
    ndctl.create_namespace(m, mode="raw", size="16M")
    raw = m.bus.namespace("pmem0").device
    p = mm_for(m).spawn("app")
    a = p.mmap(2 * MiB, shared=True, backing=PfnRangeOps(raw.spa >> 12, raw.size >> 12))
    p.store(a, b"x")
    with pytest.raises(BadAddress, match="no struct page"):
        get_user_pages(p.mm, a, 1)


def test_fsdax_pages_pin_but_not_for_the_long_term():
    m = machine_with()
    dev = make_fsdax(m)
    system = mm_for(m)
    p = system.spawn("app")
    a = p.mmap(2 * MiB, shared=True, backing=data_area(dev))
    pages = pin_user_pages(p.mm, a, 2, write=True, who="o_direct")
    assert [pg.pincount for pg in pages] == [1, 1]  # fsdax pages are base pages
    with pytest.raises(NotSupported) as e:
        pin_user_pages(p.mm, a, 1, longterm=True, who="rdma")
    assert e.value.errno == errno.EOPNOTSUPP
    unpin_user_pages(system, pages)
    # device-dax allows long-term pins
    dax = make_devdax(m)
    b = p.mmap(2 * MiB, shared=True, backing=DeviceDaxOps(dax))
    unpin_user_pages(system, pin_user_pages(p.mm, b, 1, longterm=True))


def test_gup_fails_on_the_first_page_and_returns_what_it_took_after():
    m = machine_with()
    system = mm_for(m)
    p = system.spawn("app")
    a = p.mmap(2 * PTE_SIZE)
    with pytest.raises(BadAddress):
        get_user_pages(p.mm, a - PTE_SIZE, 2)  # the hole below comes first
    got = get_user_pages(p.mm, a, 5)  # runs into the hole above
    assert len(got) == 2 and m.metrics.get("mm.gup.failed") == 2
    put_user_pages(system, got)
    ro = p.mmap(PTE_SIZE, PROT_READ)
    with pytest.raises(BadAddress, match="does not allow"):
        pin_user_pages(p.mm, ro, 1, write=True)
    assert system.check_invariants() == []


def test_a_write_pin_of_a_private_dax_mapping_pins_the_private_copy():
    m = machine_with()
    dev = make_fsdax(m)
    system = mm_for(m)
    p = system.spawn("app")
    a = p.mmap(2 * MiB, shared=False, backing=data_area(dev))
    pages = pin_user_pages(p.mm, a, 1, write=True)
    assert system.is_dram(pages[0].pfn) and m.metrics.get("mm.faults.cow") == 1
    unpin_user_pages(system, pages)


# -- the lifecycle as a state machine ---------------------------------------------------------


class MapPinLifecycle(RuleBasedStateMachine):
    """mmap / touch / pin / unpin / munmap in any order: no mapped pfn is ever freed,
    every reference is accounted for, pins keep pages busy, and at the end everything is
    idle again."""

    mappings = Bundle("mappings")
    pins = Bundle("pins")

    def __init__(self) -> None:
        super().__init__()
        self.m = machine_with()
        self.dax = make_devdax(self.m, size="32M", mapping="mem")
        self.fsdax = make_fsdax(self.m, size="32M")
        self.system = mm_for(self.m)
        self.procs = [self.system.spawn("a"), self.system.spawn("b")]
        self.live: set[tuple[int, int]] = set()
        self.held: dict[int, list] = {}  # pin id -> the pages it pinned
        self.next_key = 0

    @rule(target=mappings, who=st.integers(0, 1), kind=st.sampled_from(["anon", "dax", "fs"]),
          n=st.integers(1, 3), at=st.integers(0, 10))
    def mmap(self, who, kind, n, at):
        p = self.procs[who]
        if kind == "anon":
            length, kw = n * PTE_SIZE, {}
        elif kind == "dax":
            length = n * 2 * MiB
            kw = {"shared": True, "backing": DeviceDaxOps(self.dax),
                  "offset": at * 2 * MiB % (self.dax.size - length + 2 * MiB)}
        else:
            length = n * MiB
            kw = {"shared": True, "backing": data_area(self.fsdax),
                  "offset": at * MiB % (self.fsdax.size - length + MiB)}
        a = p.mmap(length, **kw)
        self.live.add((who, a))
        return (who, a, length)

    @rule(mp=mappings, frac=st.floats(0, 0.999), data=st.binary(min_size=1, max_size=16))
    def touch(self, mp, frac, data):
        who, a, length = mp
        if (who, a) not in self.live:
            return
        off = int(frac * length) // 8 * 8
        self.procs[who].store(a + off, data[:length - off])

    @rule(target=pins, mp=mappings, frac=st.floats(0, 0.999), n=st.integers(1, 3),
          write=st.booleans())
    def pin(self, mp, frac, n, write):
        who, a, length = mp
        if (who, a) not in self.live:
            return -1
        off = int(frac * length) // PTE_SIZE * PTE_SIZE
        n = min(n, (length - off) // PTE_SIZE)
        pages = pin_user_pages(self.procs[who].mm, a + off, n, write=write, who="test")
        assert len(pages) == n
        key = self.next_key
        self.next_key += 1
        self.held[key] = pages
        return key

    @rule(key=consumes(pins))
    def unpin(self, key):
        pages = self.held.pop(key, None)
        if pages is not None:
            unpin_user_pages(self.system, pages)

    @rule(mp=consumes(mappings))
    def munmap(self, mp):
        who, a, length = mp
        if (who, a) in self.live:
            self.procs[who].munmap(a, length)
            self.live.discard((who, a))

    @invariant()
    def nothing_mapped_is_free_and_the_tables_agree(self):
        assert self.system.check_invariants() == []

    @invariant()
    def every_reference_is_a_mapping_or_a_pin(self):
        expect: Counter[int] = Counter()
        pins: Counter[int] = Counter()
        for pfn, rec in self.system.rmap.heads():
            if rec.ref:
                expect[folio_of(self.system.struct_page(pfn)).pfn] += 1
        for pfn, recs in self.system.pins.items():
            head = folio_of(self.system.struct_page(pfn)).pfn
            expect[head] += len(recs)
            pins[head] += len(recs)
        for pg in (self.dax.pgmap, self.fsdax.pgmap):
            for pfn, page in pg.pages.items():
                if not page.is_tail:
                    assert (page.refcount, page.pincount) == (expect[pfn], pins[pfn]), hex(pfn)
        allocated = {pfn for pfn in range(self.system.pages.start_pfn,
                                          self.system.pages._next)
                     if self.system.pages.allocated(pfn)}
        dram_refs = {pfn for pfn in expect if self.system.is_dram(pfn)}
        assert allocated == dram_refs  # no DRAM page without an owner, none freed early
        for pfn in allocated:
            assert self.system.pages.page(pfn).refcount == expect[pfn]

    def teardown(self):
        for pages in self.held.values():
            unpin_user_pages(self.system, pages)
        for p in self.procs:
            p.exit()
        assert self.dax.pgmap.busy_pages() == [] and self.fsdax.pgmap.busy_pages() == []
        assert self.system.pages.nr_allocated == 0 and len(self.system.rmap) == 0


MapPinLifecycle.TestCase.settings = settings(max_examples=25, stateful_step_count=25,
                                             deadline=None)
test_map_fault_pin_unpin_munmap_lifecycle = MapPinLifecycle.TestCase
