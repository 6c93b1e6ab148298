"""pmem as a tier of memory: the ``pmem_tier`` seam's variants under one workload.

The comparisons assert directions a memory-management engineer would predict, never
magic numbers; the property tests check the contract of every variant (no page lost or
duplicated, every page reads back what was stored).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mm.cleancache import Cleancache
from mm.numa import MemoryTiers, MemPolicy, NumaNode, PmemFrames
from mm.reclaim import Lru, NumaBalancing
from mm.swap import SwapDevice, SwapHeader
from mm.tier import ANON, FILE, PageKey, PmemTier, TieredMemory, Where
from nvdimm.errors import InvalidArgument, NoSpace
from nvdimm.explore import builtin
from nvdimm.explore.experiment import parse_vary
from nvdimm.explore.tiers import (
    VARIANTS,
    TierRun,
    TierSetup,
    TierWorkload,
    apply,
    build,
    compare_variants,
    fresh_machine,
    memory_tiers_workload,
    page_tag,
    run,
    table,
)
from nvdimm.metrics import Metrics
from nvdimm.seams import seam
from nvdimm.units import MiB

ALL = (*VARIANTS, "dram-only")
# Small enough for tests: 512 DRAM pages, a working set three times that, 16 MiB of pmem
# (one 16 MiB memory block for kmem).
SMALL = {"dram_size": 2 * MiB, "pmem_size": 16 * MiB, "memory_block_size": 16 * MiB}


def runs(variants: Iterable[str], **kw: Any) -> dict[str, TierRun]:
    return compare_variants(variants, **{**SMALL, "accesses": 20_000, **kw})


def g(run_: TierRun, key: str) -> int | float:
    return run_.diff.get(key, 0)


def setup_for(variant: str, dram: int = 1 * MiB, **wl: Any) -> tuple[TierSetup, TierWorkload]:
    m = fresh_machine(dram, 16 * MiB)
    workload = TierWorkload(dram_pages=dram // 4096, **wl)
    return build(m, variant, workload, pmem_size=16 * MiB, memory_block_size=16 * MiB), workload


# -- the seam ----------------------------------------------------------------------------


def test_every_shape_is_a_variant_of_the_seam():
    s = seam("pmem_tier")
    assert s.default == "kmem-numa"
    assert set(ALL) <= set(s.names())
    for name in ALL:
        info = s.info(name)
        assert info.history and info.tradeoffs
        setup, _ = setup_for(name)
        assert isinstance(setup.tier, PmemTier)
        assert setup.tier.name == name
    kmem = s.info("kmem-numa").cls
    assert kmem.in_place and set(kmem.pmem_holds) == {ANON, FILE}
    assert s.info("swap").cls.pmem_holds == (ANON,)
    assert s.info("pagecache-ext").cls.pmem_holds == (FILE,)
    assert not any(s.info(n).cls.in_place for n in ALL if n != "kmem-numa")


def test_unknown_variant_names_the_known_ones():
    m = fresh_machine(1 * MiB, 16 * MiB)
    with pytest.raises(InvalidArgument, match=r"no variant 'bogus'.*kmem-numa"):
        build(m, "bogus", TierWorkload(dram_pages=256))
    with pytest.raises(InvalidArgument, match="no variant 'bogus'"):
        memory_tiers_workload(m, pmem_tier="bogus")


def test_a_variant_refuses_the_wrong_shape_of_pmem():
    setup, _ = setup_for("dram-only")
    env = setup.env
    for name in ("swap", "pagecache-ext", "dax-cache"):
        with pytest.raises(InvalidArgument, match=f"'{name}' needs"):
            seam("pmem_tier").create(name, env=env, pmem=object())
    with pytest.raises(InvalidArgument, match="slower memory tier"):
        seam("pmem_tier").create("kmem-numa", env=env)
    with pytest.raises(InvalidArgument, match="uses no pmem"):
        seam("pmem_tier").create("dram-only", env=env, pmem=object())


def test_bad_parameters_are_refused_before_anything_runs():
    m = fresh_machine(1 * MiB, 16 * MiB)
    wl = TierWorkload(dram_pages=256)
    with pytest.raises(InvalidArgument, match="swap_mode"):
        build(m, "swap", wl, swap_mode="btt")
    with pytest.raises(InvalidArgument, match="multiple of 16 MiB"):
        build(m, "swap", wl, pmem_size=5 * MiB)
    with pytest.raises(InvalidArgument, match="whole memory blocks"):
        build(m, "kmem-numa", wl, pmem_size=16 * MiB)  # 128 MiB blocks by default
    with pytest.raises(InvalidArgument, match="Zipf"):
        TierWorkload(dram_pages=256, skew=-1)
    with pytest.raises(InvalidArgument, match="fractions"):
        TierWorkload(dram_pages=256, write_ratio=1.5)
    with pytest.raises(InvalidArgument, match="access_size"):
        TierWorkload(dram_pages=256, access_size=100)


# -- the comparisons: directions, not numbers ----------------------------------------------


def test_kmem_numa_serves_more_from_memory_than_swap_at_the_same_dram():
    # memmap on the memory itself: kmem costs no DRAM, so both have the same DRAM.
    r = runs(["kmem-numa", "swap"], kmem_memmap="pmem")
    kmem, swap = r["kmem-numa"], r["swap"]
    assert kmem.dram_pages == swap.dram_pages
    assert g(kmem, "tier.faults.major") < g(swap, "tier.faults.major")
    assert g(kmem, "tier.faults.major") == 0  # cold pages are used in place
    in_memory = g(kmem, "tier.hits.dram") + g(kmem, "tier.hits.pmem")
    assert in_memory > g(swap, "tier.hits.dram") + g(swap, "tier.hits.pmem")
    assert g(kmem, "tier.hits.pmem") > 0 and g(swap, "tier.hits.pmem") == 0
    assert kmem.cost.total_ns < swap.cost.total_ns


def test_kmem_struct_pages_in_dram_cost_the_workload_dram():
    r = runs(["kmem-numa", "swap"], accesses=1000)
    assert r["kmem-numa"].memmap_dram == 64 * (16 * MiB // 4096)  # 64 B per 4 KiB page
    assert r["kmem-numa"].dram_pages < r["swap"].dram_pages


def test_swap_writes_more_pmem_than_kmem_for_a_write_heavy_cold_set():
    r = runs(["kmem-numa", "swap"], write_ratio=0.9, skew=0.6, file_fraction=0.0)
    kmem, swap = r["kmem-numa"], r["swap"]
    # kmem-numa stores 64 bytes in place; swap brings the page in and writes 4 KiB out.
    assert g(swap, "cpu.bytes_stored") > g(kmem, "cpu.bytes_stored")
    assert g(swap, "tier.swapped_out") > 0 and g(kmem, "tier.swapped_out") == 0


def test_swap_on_btt_moves_more_media_bytes_than_on_raw():
    r = {mode: runs(["swap"], swap_mode=mode, file_fraction=0.0, write_ratio=0.5)["swap"]
         for mode in ("raw", "sector")}
    raw, btt = r["raw"], r["sector"]
    assert g(raw, "tier.swapped_out") == g(btt, "tier.swapped_out") > 0
    # the same pages went out; the BTT also wrote its flog and map entries, and fenced
    assert g(btt, "cpu.bytes_stored") > g(raw, "cpu.bytes_stored")
    assert g(btt, "cpu.fences") > g(raw, "cpu.fences")
    assert btt.cost.pmem.modeled_ns > raw.cost.pmem.modeled_ns


def test_pagecache_ext_turns_rereads_of_evicted_file_pages_into_pmem_hits():
    r = runs(["pagecache-ext", "dram-only"], file_fraction=1.0)
    ext, base = r["pagecache-ext"], r["dram-only"]
    assert g(ext, "tier.faults.major") == g(base, "tier.faults.major") > 0  # same mm
    assert g(ext, "tier.cleancache_hits") > 0
    assert g(ext, "media.disk.reads") < g(base, "media.disk.reads")
    assert (g(ext, "media.disk.reads") + g(ext, "tier.cleancache_hits")
            == g(base, "media.disk.reads"))


def test_pagecache_ext_does_nothing_for_anonymous_memory():
    r = runs(["pagecache-ext", "dram-only"], file_fraction=0.0)
    assert g(r["pagecache-ext"], "media.disk.reads") == g(r["dram-only"], "media.disk.reads")
    assert g(r["pagecache-ext"], "tier.cleancache_hits") == 0


def test_dax_cache_reads_hit_pmem_not_the_disk_after_warmup():
    r = runs(["dax-cache", "dram-only"])
    cache, base = r["dax-cache"], r["dram-only"]
    assert g(base, "media.disk.reads") > 0
    assert g(cache, "media.disk.reads") == 0  # the 16 MiB cache holds the working set
    assert g(cache, "dax_cache.read_hits") == g(cache, "tier.faults.major") > 0
    assert g(cache, "media.pmem.reads") >= g(cache, "dax_cache.read_hits")


def test_a_small_dax_cache_still_misses():
    m = fresh_machine(2 * MiB, 16 * MiB)
    wl = TierWorkload(dram_pages=512, accesses=10_000, ws_ratio=12)  # 24 MiB > the cache
    result, setup, _ = run(m, "dax-cache", wl, pmem_size=16 * MiB,
                           memory_block_size=16 * MiB)
    assert g(result, "dax_cache.read_misses") > 0 and g(result, "dax_cache.evictions") > 0
    assert setup.check() == []
    assert result.mismatches == 0


def test_promotion_moves_pages_that_turn_hot_back_to_dram():
    wl_kw = {"dram_pages": 512, "accesses": 30_000, "phases": 2, "skew": 1.1}
    found = {}
    for enabled in (True, False):
        m = fresh_machine(2 * MiB, 16 * MiB)
        wl = TierWorkload(**wl_kw)
        # (no read-back afterwards: reading everything would move pages itself)
        result, setup, _ = run(m, "kmem-numa", wl, pmem_size=16 * MiB, kmem_memmap="pmem",
                               memory_block_size=16 * MiB, verify_data=False,
                               balancing=NumaBalancing(enabled=enabled))
        hot = wl.hottest(1, 100)
        found[enabled] = sum(setup.tier.where(k) is Where.DRAM for k in hot)
        assert (g(result, "tier.promoted") > 0) == enabled
        # the hot pages of the second phase were the cold ones of the first
        assert not set(hot) & set(wl.hottest(0, 100))
    assert found[True] > found[False]
    assert found[True] >= 90  # nearly all of the new hot set is back in DRAM


def test_more_skew_means_fewer_demotions():
    r = {s: runs(["kmem-numa"], skew=s)["kmem-numa"] for s in (0.3, 1.3)}
    assert g(r[1.3], "tier.demoted") < g(r[0.3], "tier.demoted")
    assert g(r[1.3], "tier.hits.dram") > g(r[0.3], "tier.hits.dram")


def test_same_seed_same_metrics_other_seed_other_metrics():
    a = runs(["kmem-numa", "swap"], accesses=5000)
    b = runs(["kmem-numa", "swap"], accesses=5000)
    c = runs(["kmem-numa", "swap"], accesses=5000, seed=1)
    for v in a:
        assert a[v].diff == b[v].diff and a[v].census == b[v].census
        assert a[v].row() == b[v].row()
    assert a["swap"].diff != c["swap"].diff


def test_every_variant_reads_back_what_it_stored_and_keeps_its_invariants():
    r = runs(ALL, accesses=10_000, write_ratio=0.5)
    for v, result in r.items():
        assert result.violations == (), v
        assert result.mismatches == 0 and result.checked > 0, v
    text = table(r)
    assert "modeled" in text and all(v in text for v in ALL)


# -- the workload generator -----------------------------------------------------------------


def test_workload_is_deterministic_and_mixes_what_it_says():
    wl = TierWorkload(dram_pages=100, accesses=5000, write_ratio=0.25, file_fraction=0.4)
    ops = list(wl.ops())
    assert ops == list(wl.ops())
    assert ops != list(TierWorkload(dram_pages=100, accesses=5000, seed=1).ops())
    assert len(ops) == 5000 and len(list(wl.warmup())) == wl.pages == 300
    writes = sum(1 for op in ops if op[3] is not None)
    assert 0.2 < writes / len(ops) < 0.3
    files = sum(1 for op in ops if op[0].kind == FILE)
    assert 0.2 < files / len(ops) < 0.6
    assert all(op[2] % 64 == 0 for op in ops)


def test_skew_concentrates_accesses():
    def top_share(skew: float) -> float:
        wl = TierWorkload(dram_pages=1000, accesses=20_000, skew=skew, phases=1)
        hot = set(wl.hottest(0, 100))
        return sum(1 for op in wl.ops() if op[0] in hot) / 20_000

    assert top_share(0.0) < 0.1 < top_share(1.0) < top_share(1.5)


# -- the contract, by property -------------------------------------------------------------

OPS = st.lists(st.tuples(st.sampled_from((ANON, FILE)), st.integers(0, 383), st.booleans(),
                         st.integers(0, 63), st.integers(1, 255)), max_size=120)


@pytest.mark.parametrize("variant", ALL)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_no_page_lost_or_duplicated_and_every_store_reads_back(variant, ops):
    setup, wl = setup_for(variant, write_ratio=0.5, accesses=300)
    tier = setup.tier
    shadow: dict[tuple[PageKey, int], bytes] = {}
    apply(tier, wl.warmup(), 64, shadow)  # every page touched: DRAM is full
    apply(tier, wl.ops(), 64, shadow)
    for kind, pgoff, store, slot, byte in ops:
        key = PageKey(kind, pgoff)
        if store:
            data = bytes([byte]) * 64
            tier.write(key, slot * 64, data)
            shadow[key, slot * 64] = data
        else:
            tier.read(key, slot * 64, 64)
    assert tier.check() == []
    census = tier.census()
    assert sum(census[w.value] for w in Where) == wl.pages
    for (key, off), data in shadow.items():
        assert tier.read(key, off, 64) == data, (key, off)
    for i in range(wl.file_pages):  # what was never stored is the file's own data
        key = PageKey(FILE, i)
        if (key, 128) not in shadow:
            assert tier.read(key, 128, 64) == page_tag(key, 0, 4096)[128:192]
    assert tier.check() == []


@pytest.mark.parametrize("variant", ALL)
def test_untouched_anonymous_memory_reads_as_zeroes(variant):
    setup, _ = setup_for(variant)
    key = PageKey(ANON, 7)
    assert setup.tier.where(key) is Where.NONE
    assert setup.tier.read(key, 0, 64) == bytes(64)
    assert setup.tier.where(key) is Where.DRAM
    with pytest.raises(InvalidArgument, match="outside a 4 KiB page"):
        setup.tier.read(key, 4090, 64)
    with pytest.raises(InvalidArgument, match="beyond the file"):
        setup.tier.read(PageKey(FILE, 10**6), 0, 8)


def test_without_swap_anonymous_memory_runs_out():
    setup, wl = setup_for("dram-only")
    tier = setup.tier
    assert isinstance(tier, TieredMemory)
    tier.env.swaps.clear()
    with pytest.raises(NoSpace, match="out of memory"):
        for i in range(wl.dram_pages + 1):
            tier.write(PageKey(ANON, i), 0, b"x" * 16)


# -- the parts ---------------------------------------------------------------------------------


def test_lru_gives_referenced_pages_a_second_chance():
    lru: Lru[int] = Lru()
    for k in range(6):
        lru.add(k)
    lru.touch(0)
    lru.touch(1)
    assert lru.isolate(2) == [2, 3]  # 0 and 1 were referenced: activated instead
    assert 0 in lru.active and 1 in lru.active
    assert lru.isolate(4) == [4, 5, 0, 1]  # the active list refills the inactive one
    assert len(lru) == 0 and lru.check() == []


def test_numa_balancing_counts_accesses_per_scan_period():
    nb = NumaBalancing(scan_period=10, threshold=3, rate_limit=1)

    class Page:
        epoch = -1
        hits = 0

    p, q = Page(), Page()
    assert nb.sample(p) == (True, False)  # first access in the period: a hint fault
    assert nb.sample(p) == (False, False)
    assert nb.sample(p) == (False, True)
    nb.promoted()
    for _ in range(3):
        _, promote = nb.sample(q)
    assert not promote  # the rate limit: one promotion per period
    for _ in range(10):
        nb.tick()
    assert nb.sample(q) == (True, False)  # a new period: counts start again


def test_memory_policies():
    tiers = MemoryTiers()
    tiers.add(NumaNode(0, PmemFrames(cpu=None, metrics=Metrics()), has_cpu=True,  # type: ignore[arg-type]
                       adistance=4608))
    tiers.add(NumaNode(1, PmemFrames(cpu=None, metrics=Metrics()), has_cpu=False,  # type: ignore[arg-type]
                       adistance=23040))
    assert [t for t, _ in tiers.tiers()] == [4, 22]
    assert MemPolicy().nodes_for(tiers, 0, 5) == [0, 1]
    assert MemPolicy.parse("preferred=1").nodes_for(tiers, 0, 5) == [1, 0]
    assert MemPolicy.parse("bind=0").nodes_for(tiers, 0, 5) == [0]
    il = MemPolicy.parse("interleave=0,1")
    assert [il.nodes_for(tiers, 0, i)[0] for i in range(4)] == [0, 1, 0, 1]
    with pytest.raises(InvalidArgument, match="unknown memory policy"):
        MemPolicy.parse("spread=0")
    with pytest.raises(InvalidArgument, match="no node 7"):
        MemPolicy.parse("bind=7").validate(tiers)
    tiers.demotion_enabled = False
    assert tiers.demotion_target(0) is None


def test_swap_header_round_trip_and_swapon_needs_mkswap():
    import uuid

    hdr = SwapHeader(1023, uuid.UUID(int=5), "pmem-swap")
    page = hdr.pack()
    assert page.endswith(b"SWAPSPACE2") and SwapHeader.unpack(page) == hdr
    setup, _ = setup_for("dram-only")
    area = SwapDevice(setup.slow.disk, Metrics(), start=0, size=64 * 4096)
    with pytest.raises(InvalidArgument, match="mkswap"):
        area.swapon()
    area.mkswap()
    area.swapon()
    slots = [area.alloc() for _ in range(area.nr_slots)]
    assert slots == list(range(1, 64))
    with pytest.raises(NoSpace, match="full"):
        area.alloc()
    area.free(5)
    assert area.alloc() == 5


def test_cleancache_is_ephemeral_and_exclusive():
    class Store:
        def __init__(self):
            self.data = bytearray(4 * 4096)

        def read(self, off, n):
            return bytes(self.data[off:off + n])

        def write(self, off, data):
            self.data[off:off + len(data)] = data
            return len(data)

    cc = Cleancache(Store(), 2, Metrics())
    for k in "abc":
        cc.put(k, k.encode() * 4096)
    assert "a" not in cc and cc.metrics.c["cleancache.evictions"] == 1
    assert cc.get("b") == b"b" * 4096 and "b" not in cc
    assert cc.get("b") is None and cc.check() == []


# -- the experiment and the CLI's way in ---------------------------------------------------


def test_builtin_memory_tiers_runs_each_variant():
    b = builtin.get("memory-tiers")
    vary = parse_vary(["pmem_tier=kmem-numa,swap,pagecache-ext,dax-cache",
                       "dram_size=4M", "accesses=3000", "pmem_mib=128"], b.workload, b.base)
    assert vary["pmem_tier"] == ("kmem-numa", "swap", "pagecache-ext", "dax-cache")
    comparison = builtin.run("memory-tiers", vary=vary, jobs=1)
    notes = comparison.section("workload notes")
    rows = {r.label: r.values for r in notes.rows}
    assert rows["faults: major"][0] == 0 and all(v > 0 for v in rows["faults: major"][1:])
    assert rows["invariant violations"] == (0.0, 0.0, 0.0, 0.0)
    assert all(r.error is None for r in comparison.results.runs)
    data = comparison.section("data after recovery")
    assert all(c.startswith("1/0/0") for r in data.rows for c in r.cells)


def test_a_run_with_the_trace_on_tells_what_moved():
    setup, wl = setup_for("kmem-numa", accesses=2000)
    trace = setup.env.trace
    trace.on = True
    apply(setup.tier, wl.warmup(), 64)
    apply(setup.tier, wl.ops(), 64)
    names = {e.name for e in trace.events("tier.")}
    assert {"tier.fault", "tier.demoted"} <= names
    demoted = trace.events("tier.demoted")[0]
    assert demoted.fields["src"] == 0 and demoted.fields["dst"] == 1
    setup, wl = setup_for("swap", accesses=0)
    setup.env.trace.on = True
    apply(setup.tier, wl.warmup(), 64)
    assert setup.env.trace.events("swap.out")


def test_kmem_numa_without_demotion_swaps_instead():
    r = {d: runs(["kmem-numa"], demotion=d)["kmem-numa"] for d in (True, False)}
    assert g(r[False], "tier.demoted") == 0 and g(r[True], "tier.demoted") > 0
    assert g(r[False], "tier.faults.major") > g(r[True], "tier.faults.major") == 0


def test_memory_policy_places_new_pages():
    for text, on_pmem in (("default", False), ("preferred=1", True), ("bind=0", False)):
        setup, _ = setup_for("kmem-numa")
        tier = seam("pmem_tier").create("kmem-numa", env=setup.env,
                                        policy=MemPolicy.parse(text))
        tier.write(PageKey(ANON, 0), 0, b"x" * 16)
        assert (tier.where(PageKey(ANON, 0)) is Where.PMEM) == on_pmem, text
    setup, _ = setup_for("kmem-numa")
    tier = seam("pmem_tier").create("kmem-numa", env=setup.env,
                                    policy=MemPolicy.parse("interleave=0,1"))
    for i in range(4):
        tier.write(PageKey(ANON, i), 0, b"x" * 16)
    assert [tier.where(PageKey(ANON, i)).value for i in range(4)] == ["dram", "pmem"] * 2
    setup, _ = setup_for("swap")
    with pytest.raises(InvalidArgument, match="no node 1"):
        seam("pmem_tier").create("swap", env=setup.env, pmem=setup.pmem,
                                 policy=MemPolicy.parse("bind=1"))
