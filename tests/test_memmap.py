"""Seam ``memmap`` and the mm objects: struct page costs, dev_pagemap, lazy struct pages,
and the 64 TiB machine."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mm.memmap import (
    STRUCT_PAGE_SIZE,
    CompoundMemmap,
    MemmapRequest,
    NoMemmap,
    PmemMemmap,
    RamMemmap,
    VmemAltmap,
    capabilities,
    linux_reservation,
    struct_page_address,
)
from mm.page import Page, PageFlags
from mm.pagemap import DevPagemap, MemoryType, PagemapTable
from nvdimm import ndctl
from nvdimm.errors import Busy, InvalidArgument, NoSpace, NotSupported
from nvdimm.machine import Machine, MachineConfig
from nvdimm.metrics import Metrics
from nvdimm.platform.dram import Dram
from nvdimm.seams import seam
from nvdimm.trace import Trace
from nvdimm.units import GiB, MiB, TiB

VARIANTS = ["none", "ram", "pmem", "compound"]
PAGE = 4096


# -- the seam ---------------------------------------------------------------------------


def test_memmap_seam_offers_four_variants_with_pmem_default():
    s = seam("memmap")
    assert s.names() == VARIANTS and s.default == "pmem"
    assert s.between == "pfn/dax drivers and mm"
    assert isinstance(s.create(), PmemMemmap)
    for name in VARIANTS:
        info = s.info(name)
        assert info.history and info.tradeoffs
        doc = info.cls.__doc__ or ""
        example = [ln for ln in doc.split("::", 1)[1].splitlines() if ln.strip()]
        assert len(example) == 3, f"{name}: a three-line worked example"
        v = s.create(name)
        assert v.name == name and isinstance(v, s.contract)


@pytest.mark.parametrize("name", VARIANTS)
def test_what_each_variant_can_do(name):
    caps = capabilities(seam("memmap").create(name))
    assert caps == {
        "none": {"struct_pages": False, "can_pin": False, "per_page_state": False,
                 "uses_altmap": False},
        "ram": {"struct_pages": True, "can_pin": True, "per_page_state": True,
                "uses_altmap": False},
        "pmem": {"struct_pages": True, "can_pin": True, "per_page_state": True,
                 "uses_altmap": True},
        "compound": {"struct_pages": True, "can_pin": True, "per_page_state": False,
                     "uses_altmap": False},
    }[name]


ranges = st.sampled_from([0, 9, 18]).flatmap(lambda shift: st.builds(
    MemmapRequest,
    start=st.integers(1, 1 << 20).map(lambda k: k * 2 * MiB),
    size=st.integers(1, 1 << 34).map(lambda n: n * PAGE),
    align=st.just(PAGE << shift), vmemmap_shift=st.just(shift)))


@given(ranges)
def test_costs_follow_linuxs_figures(req):
    full = STRUCT_PAGE_SIZE * req.npages
    none, ram, pmem, comp = (seam("memmap").create(n).cost(req) for n in VARIANTS)
    assert (none.dram_bytes, none.pmem_bytes) == (0, 0)
    assert (ram.dram_bytes, ram.pmem_bytes) == (full, 0)
    assert pmem.dram_bytes == 0
    assert full <= pmem.pmem_bytes < full + max(req.align, 2 * MiB)  # rounded to the align
    assert comp.pmem_bytes == 0 and comp.dram_bytes <= full
    chunk = req.align // PAGE
    if req.align == PAGE:
        assert comp.dram_bytes == full
    else:
        whole, rest = divmod(req.npages, chunk)
        assert comp.dram_bytes == whole * 2 * PAGE + rest * STRUCT_PAGE_SIZE
    for c in (none, ram, pmem, comp):
        assert c.npages == req.npages and c.full_bytes == full


def test_compound_savings_as_section_5_8():
    two_m = CompoundMemmap().cost(MemmapRequest(1 << 32, 2 * MiB, 2 * MiB, vmemmap_shift=9))
    assert (two_m.full_bytes // PAGE, two_m.dram_bytes // PAGE) == (8, 2)  # 6 of 8 saved
    one_g = CompoundMemmap().cost(MemmapRequest(1 << 32, GiB, GiB, vmemmap_shift=18))
    assert (one_g.full_bytes // PAGE, one_g.dram_bytes // PAGE) == (4096, 2)  # 4094 saved
    # the docstring's worked example: 64 GiB device-dax
    req = MemmapRequest(1 << 32, 64 * GiB, 2 * MiB, vmemmap_shift=9)
    assert RamMemmap().cost(req).dram_bytes == GiB
    assert CompoundMemmap().cost(req).dram_bytes == 256 * MiB
    one_g_aligned = attrs_evolve(req, align=GiB, vmemmap_shift=18)
    assert CompoundMemmap().cost(one_g_aligned).dram_bytes == 512 * 1024
    # no compound pages, nothing to share
    assert CompoundMemmap().cost(attrs_evolve(req, vmemmap_shift=0)).dram_bytes == GiB


def attrs_evolve(req: MemmapRequest, **kw: int) -> MemmapRequest:
    import attrs

    return attrs.evolve(req, **kw)


def test_pmem_variant_worked_example_and_altmap():
    req = MemmapRequest(0x240000000, 16 * GiB, 2 * MiB,
                        VmemAltmap(0x240000, 0x63FFFF, reserve=2, free=66046))
    cost = PmemMemmap().cost(req)
    assert cost.pmem_bytes == 258 * MiB - 8192 and cost.dram_bytes == 0
    home = PmemMemmap().home(req, 0x250200)
    assert (home.where, home.phys) == ("pmem", 0x24040A000)
    assert home.vaddr == struct_page_address(0x250200) == 0xFFFFEA0000000000 + 64 * 0x250200
    # the same reservation without an altmap: what nvdimm would set aside
    assert linux_reservation(0x240000000, (16 * GiB - 8192) // PAGE, 2 * MiB, 8192) == (
        258 * MiB - 8192)
    assert linux_reservation(0x240000000, (16 * GiB - 8192) // PAGE, GiB, 8192) == GiB - 8192


def test_struct_page_homes():
    req = MemmapRequest(1 << 32, 4 * MiB, 2 * MiB, vmemmap_shift=9)
    pfn = (1 << 32) // PAGE + 700  # tail 188 of the second compound page
    assert NoMemmap().home(req, pfn).where == "none"
    assert RamMemmap().home(req, pfn).where == "dram"
    h = CompoundMemmap().home(req, pfn)
    assert h.where == "dram" and h.shared
    assert not CompoundMemmap().home(req, (1 << 32) // PAGE + 512 + 63).shared
    with pytest.raises(InvalidArgument):
        RamMemmap().home(req, pfn + 1024)


def test_requests_must_be_whole_pages():
    with pytest.raises(InvalidArgument):
        MemmapRequest(4096, 100)
    with pytest.raises(InvalidArgument):
        MemmapRequest(4096, 8192, align=3 * PAGE)


# -- dev_pagemap, struct pages, the table -----------------------------------------------


def remap(table: PagemapTable, pg: DevPagemap, dram: Dram | None = None) -> DevPagemap:
    return table.memremap_pages(pg, dram=dram or Dram(64 * GiB), metrics=Metrics(),
                                trace=Trace(), kernel="k")


def test_struct_pages_are_created_lazily_and_only_past_the_altmap():
    freed: list[int] = []
    alt = VmemAltmap(0x100000, 0x10EFFF, reserve=2, free=1022)
    pg = DevPagemap(MemoryType.FS_DAX, 1 << 32, 240 * MiB, "namespace0.0", PmemMemmap(),
                    align=2 * MiB, altmap=alt, page_free=lambda p: freed.append(p.pfn))
    remap(PagemapTable(), pg)
    assert pg.first_pfn == 0x100400 and pg.pages == {}
    assert not pg.pfn_valid(0x1003FF) and pg.pfn_valid(0x100400)
    with pytest.raises(InvalidArgument, match="reservation"):
        pg.page(0x100001)
    p = pg.page(0x100400)
    assert pg.page(0x100400) is p and len(pg.pages) == 1 and pg.peek(0x100401) is None
    assert (p.refcount, p.pincount, p.mapping, p.pgmap) == (0, 0, None, pg)
    p.get()
    p.get()
    p.put()
    assert freed == []
    p.put()
    assert freed == [0x100400]  # idle again: the owner hears of it
    with pytest.raises(InvalidArgument):
        p.put()
    assert p.to_json()["flags"] == []


def test_no_struct_pages_with_memmap_none():
    pg = remap(PagemapTable(), DevPagemap(MemoryType.GENERIC, 1 << 32, 64 * MiB, "x",
                                          NoMemmap()))
    with pytest.raises(NotSupported, match="no struct page"):
        pg.page(pg.first_pfn)
    assert pg.cost is not None and pg.cost.dram_bytes == 0


def test_table_refuses_overlaps_and_charges_dram_or_nothing():
    table, dram = PagemapTable(), Dram(1 * GiB)
    a = remap(table, DevPagemap(MemoryType.FS_DAX, 1 << 32, 64 * MiB, "a", RamMemmap()), dram)
    assert dram.charges == {"memmap:a": 1 * MiB}
    with pytest.raises(Busy, match="overlaps"):
        remap(table, DevPagemap(MemoryType.FS_DAX, (1 << 32) + 32 * MiB, 64 * MiB, "b",
                                RamMemmap()), dram)
    with pytest.raises(NoSpace):  # 64 GiB of pages need 1 GiB of memmap: 1 MiB too many
        remap(table, DevPagemap(MemoryType.FS_DAX, 1 << 40, 64 * GiB, "c", RamMemmap()),
              dram)
    assert dram.charges == {"memmap:a": 1 * MiB} and table.maps == [a]
    with pytest.raises(InvalidArgument, match="needs room on the device"):
        remap(table, DevPagemap(MemoryType.FS_DAX, 1 << 41, 64 * MiB, "d", PmemMemmap()))
    assert table.lookup((1 << 32) // PAGE + 5) is a and table.lookup(5) is None
    a.page(a.first_pfn).get()
    with pytest.raises(Busy, match="referenced"):
        table.memunmap_pages(a, dram=dram, metrics=Metrics(), trace=Trace())
    a.page(a.first_pfn).put()
    table.memunmap_pages(a, dram=dram, metrics=Metrics(), trace=Trace())
    assert dram.charges == {} and table.maps == []


def test_a_new_kernel_forgets_the_old_ones_pagemaps():
    table, dram = PagemapTable(), Dram(1 * GiB)
    pg = DevPagemap(MemoryType.FS_DAX, 1 << 32, 64 * MiB, "a", RamMemmap())
    table.memremap_pages(pg, dram=dram, metrics=Metrics(), trace=Trace(), kernel="boot1")
    pg2 = DevPagemap(MemoryType.FS_DAX, 1 << 32, 64 * MiB, "a", RamMemmap())
    table.memremap_pages(pg2, dram=dram, metrics=Metrics(), trace=Trace(), kernel="boot2")
    assert table.maps == [pg2] and not pg.live and dram.used == 1 * MiB


def test_page_flags_and_json():
    p = Page(7, flags=PageFlags.DIRTY | PageFlags.UPTODATE)
    assert p.to_json()["flags"] == ["UPTODATE", "DIRTY"]


# -- the 64 TiB machine --------------------------------------------------------------------


def big_machine(dram: int) -> Machine:
    m = Machine.create(MachineConfig(dimms=1, dimm_size=64 * TiB, dram_size=dram))
    m.init_labels()
    return m


def test_64_tib_fsdax_map_mem_reports_1_tib_of_dram_memmap_without_per_page_objects():
    m = big_machine(2 * TiB)
    out = ndctl.create_namespace(m, mode="fsdax", map="mem")
    dev = m.bus.namespace(out["dev"]).device
    assert m.platform.dram.charges == {"memmap:namespace0.0": 1 * TiB}
    assert dev.pgmap.cost.dram_bytes == 1 * TiB and dev.pgmap.cost.npages == 16 << 30
    assert m.metrics.gauges["mm.memmap_dram_bytes"] == 1 * TiB
    assert dev.pgmap.pages == {} and m.metrics.c["mm.struct_pages_created"] == 0
    assert dev.size == 64 * TiB - 2 * MiB
    # touching a few pages creates just those
    disk = m.block_device("pmem0")
    for off in (0, 17 * GiB, dev.size - PAGE):
        disk.write(off, b"t" * PAGE, fua=True)
        dev.pgmap.page(dev.pfn_of(off)).get()
    assert len(dev.pgmap.pages) == 3


def test_64_tib_fsdax_map_dev_spends_no_dram():
    m = big_machine(16 * GiB)
    out = ndctl.create_namespace(m, mode="fsdax", map="dev")
    dev = m.bus.namespace(out["dev"]).device
    assert m.platform.dram.used == 0
    assert dev.layout.dataoff == 1 * TiB + 2 * MiB  # 64 B x (64 TiB - 8K) / 4K, to 2 MiB
    assert dev.pgmap.cost.pmem_bytes == 1 * TiB + 2 * MiB - 8192
    assert dev.pgmap.pages == {}


def test_64_tib_map_mem_with_too_little_dram_is_refused():
    m = big_machine(512 * GiB)
    before = m.platform.dimms[0].media.read(64 * TiB, 128 * 1024)
    with pytest.raises(NoSpace, match=r"1024\.00 GiB"):
        ndctl.create_namespace(m, mode="fsdax", map="mem")
    assert m.platform.dimms[0].media.read(64 * TiB, 128 * 1024) == before
    assert m.platform.dram.used == 0


# -- explain-page ---------------------------------------------------------------------------


def explained_machine() -> Machine:
    from tests.conftest import labelled_machine

    m = labelled_machine()
    ndctl.create_namespace(m, mode="fsdax", size="64M")  # map=dev: memmap on the device
    ndctl.create_namespace(m, mode="devdax", size="64M", map="mem")  # compound in DRAM
    ndctl.create_namespace(m, mode="raw", size="16M")
    return m


def test_explain_page_fsdax_map_dev_points_into_the_reservation():
    m = explained_machine()
    e = ndctl.explain_page(m, "pmem0", 0x1000)
    ns = m.bus.namespace("namespace0.0")
    assert e["phys"] == ns.spa + 2 * MiB + 0x1000 and e["pfn"] == e["phys"] // PAGE
    assert e["media"] == {"dimm": "nmem0", "dpa": 2 * MiB + 0x1000}
    sp = e["struct_page"]
    assert sp["lives_in"] == "pmem" and sp["usable"] and not sp["created"]
    assert 8192 <= sp["pmem"]["offset"] < 2 * MiB == sp["pmem"]["reserved"][1]
    assert e["pgmap"]["type"] == "fsdax" and e["pgmap"]["memmap"] == "pmem"
    assert e["mapped_by"] == e["pinned_by"] == []  # no process maps or pins it yet
    assert ns.device.pgmap.pages == {}  # looking creates nothing
    text = ndctl.render_explain(e)
    assert "on pmem at" in text and "not created yet" in text and "pinned by" in text


def test_explain_page_devdax_compound_tail_is_shared_dram():
    m = explained_machine()
    dev = m.bus.namespace("dax0.1").device
    dev.pgmap.page(dev.pfn_of(0)).get()
    e = ndctl.explain_page(m, "dax0.1", 0x40000)  # tail 64 of the first 2 MiB page
    sp = e["struct_page"]
    assert sp["lives_in"] == "dram" and sp["shared"]
    assert sp["fields"]["compound_head"] == dev.pfn_of(0) and sp["fields"]["compound_order"] == 9
    head = ndctl.explain_page(m, "dax0.1", 0)["struct_page"]
    assert head["created"] and head["fields"]["refcount"] == 1 and not head["shared"]
    assert "shared tail page" in ndctl.render_explain(e)


def test_explain_page_raw_sector_reserved_and_errors():
    m = explained_machine()
    raw = ndctl.explain_page(m, "pmem0.2", 0)
    assert raw["pgmap"] is None and not raw["struct_page"]["exists"]
    ndctl.create_namespace(m, mode="sector", size="32M")
    sec = ndctl.explain_page(m, "namespace0.3", 0)
    assert sec["pfn"] is None and "BTT" in sec["why"]
    assert "no fixed pfn" in ndctl.render_explain(sec)
    with pytest.raises(InvalidArgument, match="outside"):
        ndctl.explain_page(m, "pmem0", 62 * MiB)
    # a pfn in the reserved head of a map=dev namespace: no usable struct page
    pg = m.bus.namespace("pmem0").device.pgmap
    reserved = _explain_pfn(m, pg, pg.start_pfn + 3)
    assert reserved["usable"] is False and "reserved head" in reserved["why"]


def _explain_pfn(m: Machine, pg: DevPagemap, pfn: int) -> dict:
    return ndctl._struct_page_json(m, m.bus.namespace("namespace0.0"), pg, pfn)


def test_cli_explain_page(tmp_path, capsys):
    from nvdimm.cli import main

    d = str(tmp_path / "m")
    assert main(["--machine", d, "init", "--dimms", "1", "--dimm-size", "256M"]) == 0
    assert main(["--machine", d, "create-namespace", "-s", "64M", "-M", "mem"]) == 0
    capsys.readouterr()
    assert main(["--machine", d, "explain-page", "pmem0", "--offset", "8K"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "device      pmem0 (namespace0.0, fsdax, map=mem)"
    assert "in DRAM" in out and "mapped by   nobody" in out
    assert main(["--machine", d, "explain-page", "pmem0", "--json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out)["struct_page"]["lives_in"] == "dram"
    assert main(["--machine", d, "explain-page", "pmem0", "--offset", "1G"]) == 1
    assert "outside" in capsys.readouterr().err
