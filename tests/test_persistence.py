"""The persistence domain: when a visible store becomes durable, per variant."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nvdimm.errors import Busy, InvalidArgument, MediaError
from nvdimm.metrics import Metrics
from nvdimm.platform.crash import KeepEverything, KeepNothing
from nvdimm.platform.media import SparseMedia
from nvdimm.platform.persistence import (
    AdrRule,
    EadrRule,
    FlushHintRule,
    PersistenceDomain,
    PersistenceRule,
    Stage,
)
from nvdimm.seams import seam
from nvdimm.trace import Trace

SIZE = 1 << 20
RULES: list[PersistenceRule] = [AdrRule(), EadrRule(), FlushHintRule()]


def domain(rule: PersistenceRule, **kw) -> tuple[PersistenceDomain, SparseMedia]:
    media = SparseMedia(SIZE)
    return PersistenceDomain(media, rule, **kw), media


# -- the seam --------------------------------------------------------------------------

def test_persistence_seam_offers_adr_eadr_and_flush_hint_with_adr_default():
    s = seam("persistence")
    assert s.names() == ["adr", "eadr", "flush-hint"]
    assert s.default == "adr"
    assert isinstance(s.create(), AdrRule)
    assert isinstance(s.create("eadr"), EadrRule)
    assert isinstance(s.create("flush-hint"), FlushHintRule)
    for name in s.names():
        info = s.info(name)
        assert info.history and info.tradeoffs
        assert "clwb" in (info.cls.__doc__ or "") and "sfence" in (info.cls.__doc__ or "")


def test_variants_report_linux_persistence_domain():
    assert [r.persistence_domain for r in RULES] == ["memory_controller", "cpu_cache", ""]
    assert [r.name for r in RULES] == ["adr", "eadr", "flush-hint"]
    assert [domain(r)[0].has_cache for r in RULES] == [True, False, True]
    assert [domain(r)[0].has_flush for r in RULES] == [0, 0, 1]


def test_seam_loads_when_the_catalogue_is_imported_first():
    code = "from nvdimm.seams import seam; print(seam('persistence').names())"
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr


def test_a_rule_with_unknown_stages_is_refused():
    class Odd:
        name = "odd"
        persistence_domain = ""
        cached_durable_at = 7
        nt_durable_at = Stage.FENCED
        flush_hints = False

    with pytest.raises(InvalidArgument):
        PersistenceDomain(SparseMedia(SIZE), Odd())  # type: ignore[arg-type]


def test_a_user_rule_durable_when_visible_never_holds_pending_stores():
    class BatteryBacked:
        name = "battery"
        persistence_domain = "cpu_cache"
        cached_durable_at = Stage.VISIBLE
        nt_durable_at = Stage.VISIBLE
        flush_hints = False

    dom, media = domain(BatteryBacked())  # type: ignore[arg-type]
    dom.store(0x10, b"ab")
    dom.store_nt(0x20, b"cd" * 4)
    assert dom.pending_bytes() == 0
    assert media.read(0x10, 2) == b"ab" and media.read(0x20, 8) == b"cd" * 4


# -- ADR -------------------------------------------------------------------------------

def test_adr_store_is_visible_at_once_but_durable_only_after_writeback_and_fence():
    dom, media = domain(AdrRule())
    dom.store(0x40, b"\x01" * 8)
    assert dom.load(0x40, 8) == b"\x01" * 8
    assert media.read(0x40, 8) == bytes(8)
    assert not dom.is_durable(0x40, 8)
    dom.writeback(0x40, 8)
    assert not dom.is_durable(0x40, 8)
    dom.fence()
    assert dom.is_durable(0x40, 8)
    assert media.read(0x40, 8) == b"\x01" * 8
    assert dom.pending_bytes() == 0


def test_adr_fence_without_writeback_leaves_cached_stores_volatile():
    dom, _ = domain(AdrRule())
    dom.store(0x40, b"\x01" * 8)
    dom.fence()
    assert not dom.is_durable(0x40, 8)


def test_adr_nt_store_is_durable_after_a_fence():
    dom, media = domain(AdrRule())
    dom.store_nt(0x80, b"\x02" * 64)
    assert not dom.is_durable(0x80, 64)
    dom.fence()
    assert dom.is_durable(0x80, 64) and media.read(0x80, 64) == b"\x02" * 64


def test_store_after_writeback_is_not_covered_by_it():
    dom, _ = domain(AdrRule())
    dom.store(0x40, b"\x01" * 8)
    dom.writeback(0x40, 8)
    dom.store(0x48, b"\x02" * 8)
    dom.fence()
    assert dom.is_durable(0x40, 8)
    assert not dom.is_durable(0x48, 8)


def test_writeback_of_part_of_a_store_makes_only_those_lines_durable():
    dom, media = domain(AdrRule())
    dom.store(0x30, b"\x03" * 0x60)  # lines 0x00, 0x40, 0x80
    dom.writeback(0x40, 1)
    dom.fence()
    assert dom.is_durable(0x40, 0x40)
    assert not dom.is_durable(0x30, 0x10) and not dom.is_durable(0x80, 0x10)
    assert media.read(0x40, 0x40) == b"\x03" * 0x40
    assert dom.pending_bytes() == 0x20
    assert dom.load(0x30, 0x60) == b"\x03" * 0x60


def test_an_nt_store_carries_earlier_cached_stores_to_its_line():
    dom, media = domain(AdrRule())
    dom.store(0x00, b"\x01" * 8)  # dirty in the cache
    dom.store_nt(0x08, b"\x02" * 8)  # same line: the NT store evicts it first
    dom.store(0x40, b"\x03" * 8)  # another line: stays dirty
    dom.fence()
    assert media.read(0x00, 16) == b"\x01" * 8 + b"\x02" * 8
    assert dom.is_durable(0x00, 16) and not dom.is_durable(0x40, 8)


def test_eviction_makes_cached_stores_durable_early_under_adr():
    dom, media = domain(AdrRule())
    dom.store(0x00, b"\x01" * 8)
    dom.evict(0x00, 1)
    assert media.read(0x00, 8) == b"\x01" * 8


# -- eADR and flush hints --------------------------------------------------------------

def test_eadr_cached_stores_survive_without_any_flush():
    dom, media = domain(EadrRule())
    dom.store(0x40, b"\x01" * 8)
    assert dom.is_durable(0x40, 8) and media.read(0x40, 8) == b"\x01" * 8
    dom.crash(KeepNothing())
    assert media.read(0x40, 8) == b"\x01" * 8


def test_eadr_nt_stores_still_need_a_fence():
    dom, media = domain(EadrRule())
    dom.store_nt(0x40, b"\x01" * 8)
    assert not dom.is_durable(0x40, 8)
    dom.fence()
    assert media.read(0x40, 8) == b"\x01" * 8


def test_eadr_cached_store_takes_unfenced_nt_data_on_its_line_along():
    dom, media = domain(EadrRule())
    dom.store_nt(0x00, b"\x01" * 8)
    dom.store(0x08, b"\x02" * 8)
    assert media.read(0x00, 16) == b"\x01" * 8 + b"\x02" * 8


def test_flush_hint_platform_needs_the_hint_after_writeback_and_fence():
    dom, media = domain(FlushHintRule())
    dom.store(0x40, b"\x01" * 8)
    dom.writeback(0x40, 8)
    dom.fence()
    assert not dom.is_durable(0x40, 8)
    dom.crash(KeepNothing())
    assert media.read(0x40, 8) == bytes(8)

    dom.store(0x40, b"\x01" * 8)
    dom.writeback(0x40, 8)
    dom.fence()
    dom.flush_hint()
    assert dom.is_durable(0x40, 8) and media.read(0x40, 8) == b"\x01" * 8


def test_flush_hint_before_the_fence_drains_nothing():
    dom, _ = domain(FlushHintRule())
    dom.store_nt(0x40, b"\x01" * 8)
    dom.flush_hint()
    assert not dom.is_durable(0x40, 8)
    dom.fence()
    assert not dom.is_durable(0x40, 8)
    dom.flush_hint()
    assert dom.is_durable(0x40, 8)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_nvdimm_flush_makes_flushcache_writes_durable_on_every_platform(rule):
    m = Metrics()
    dom, media = domain(rule, metrics=m)
    dom.write_flushcache(0x1003, bytes(range(1, 200)))
    dom.nvdimm_flush()
    assert dom.pending_bytes() == 0
    assert media.read(0x1003, 199) == bytes(range(1, 200))
    assert m.get("cpu.fences") == 2
    assert m.get("cpu.flush_hints") == (1 if rule.flush_hints else 0)


@settings(max_examples=60, deadline=None)
@given(rule=st.sampled_from(RULES),
       writes=st.lists(st.tuples(st.integers(0, 3 * 4096), st.binary(min_size=1, max_size=300)),
                       max_size=8),
       cached=st.booleans())
def test_flushing_what_was_written_leaves_nothing_pending(rule, writes, cached):
    dom, media = domain(rule)
    for addr, data in writes:
        if cached:
            dom.store(addr, data)
            dom.writeback(addr, len(data))
        else:
            dom.write_flushcache(addr, data)
    visible = dom.load(0, 4 * 4096)
    dom.nvdimm_flush()
    assert dom.pending_bytes() == 0 and dom.is_durable(0, 4 * 4096)
    assert media.read(0, 4 * 4096) == visible


# -- memcpy_flushcache -----------------------------------------------------------------

def test_write_flushcache_of_an_aligned_page_is_one_nt_store():
    m = Metrics()
    dom, _ = domain(AdrRule(), metrics=m)
    dom.write_flushcache(0x2000, b"\x05" * 4096)
    assert m.snapshot("cpu.") == {"cpu.bytes_stored": 4096, "cpu.nt_stores": 1}
    assert [(p.nt, p.stage) for p in dom.pending()] == [(True, Stage.WRITTEN_BACK)]


def test_write_flushcache_writes_back_unaligned_head_and_tail():
    m = Metrics()
    dom, media = domain(AdrRule(), metrics=m)
    dom.write_flushcache(0x3, bytes(range(1, 19)))  # head 5, body 8, 4-byte NT, tail 1
    assert [(p.addr, p.length, p.nt) for p in dom.pending()] == [
        (0x3, 5, False), (0x8, 8, True), (0x10, 4, True), (0x14, 1, False)]
    assert m.get("cpu.stores") == 2 and m.get("cpu.nt_stores") == 2
    assert m.get("cpu.writebacks") == 2
    dom.fence()
    assert media.read(0x3, 18) == bytes(range(1, 19))


# -- loads, tracking, validation -------------------------------------------------------

def test_load_overlays_pending_stores_in_program_order_across_pages():
    dom, media = domain(AdrRule())
    media.write(0xFF0, b"\xee" * 0x20)
    dom.store(0xFF8, b"\x01" * 0x10)  # straddles the page boundary
    dom.store(0xFFC, b"\x02" * 4)
    dom.store_nt(0x1000, b"\x03" * 2)
    assert dom.load(0xFF0, 0x20) == (b"\xee" * 8 + b"\x01" * 4 + b"\x02" * 4 + b"\x03" * 2
                                     + b"\x01" * 6 + b"\xee" * 8)
    assert dom.load(0x5000, 16) == bytes(16)


def test_tracking_off_stores_go_straight_to_media_and_crash_keeps_them():
    dom, media = domain(AdrRule(), tracking=False)
    dom.store(0x40, b"\x01" * 8)
    assert media.read(0x40, 8) == b"\x01" * 8
    assert dom.is_durable(0x40, 8) and dom.pending_bytes() == 0
    report = dom.crash(KeepNothing())
    assert not report.tracking and "tracking off" in report.summary()
    assert media.read(0x40, 8) == b"\x01" * 8


def test_tracking_cannot_be_switched_off_with_stores_pending():
    dom, _ = domain(AdrRule())
    dom.store(0x40, b"\x01")
    with pytest.raises(Busy):
        dom.tracking = False
    assert dom.tracking
    dom.crash(KeepEverything())
    dom.tracking = False
    assert not dom.tracking


@pytest.mark.parametrize("call", [
    lambda d: d.store(-1, b"x"),
    lambda d: d.store_nt(-8, b"x" * 8),
    lambda d: d.write_flushcache(-8, b"x" * 8),
    lambda d: d.store(SIZE - 1, b"xy"),
    lambda d: d.writeback(0, -1),
    lambda d: d.evict(-64, 64),
    lambda d: d.load(0, -1),
    lambda d: d.load(SIZE, 1),
    lambda d: d.is_durable(-1, 1),
])
def test_bad_ranges_are_refused_before_anything_changes(call):
    dom, media = domain(AdrRule())
    dom.store(0x40, b"\x01")
    before = dom.pending()
    with pytest.raises(InvalidArgument):
        call(dom)
    assert dom.pending() == before and media.read(0x40, 1) == b"\x00"


def test_poison_under_a_load_raises_media_error():
    class Poisoned(SparseMedia):
        def read(self, off: int, n: int) -> bytes:
            if off <= 0x100 < off + n:
                raise MediaError("poison", 0x100, 64)
            return super().read(off, n)

    dom = PersistenceDomain(Poisoned(SIZE), AdrRule())
    assert dom.load(0, 0x100) == bytes(0x100)
    with pytest.raises(MediaError):
        dom.load(0xC0, 0x80)


def test_pending_lists_stores_in_program_order_with_their_stage():
    dom, _ = domain(FlushHintRule())
    dom.store(0x80, b"a")
    dom.store_nt(0x00, b"b" * 8)
    dom.fence()
    assert [(p.addr, p.nt, p.stage) for p in dom.pending()] == [
        (0x80, False, Stage.VISIBLE), (0x00, True, Stage.FENCED)]


# -- observing -------------------------------------------------------------------------

def test_metrics_count_stores_writebacks_fences_and_hints():
    m = Metrics()
    dom, _ = domain(FlushHintRule(), metrics=m)
    dom.store(0x3C, b"\x01" * 8)  # two lines
    dom.store_nt(0x100, b"\x02" * 64)
    dom.writeback(0x3C, 8)
    dom.fence()
    dom.flush_hint()
    assert m.snapshot("cpu.") == {"cpu.bytes_stored": 72, "cpu.fences": 1,
                                  "cpu.flush_hints": 1, "cpu.nt_stores": 1,
                                  "cpu.stores": 1, "cpu.writebacks": 2}


def test_trace_records_fences_hints_and_crashes_but_not_stores():
    tr = Trace()
    dom, _ = domain(FlushHintRule(), trace=tr)
    dom.store_nt(0x40, b"\x01" * 16)
    dom.fence()
    dom.flush_hint()
    dom.store(0x80, b"\x02" * 16)
    dom.crash(KeepNothing())
    assert [e.name for e in tr.events()] == ["cpu.fence", "cpu.flush_hint", "power.crash"]
    assert tr.events("cpu.flush_hint")[0].fields == {"durable": 16}
    assert tr.events("power.crash")[0].fields == {"policy": "nothing", "kept": 0, "lost": 1,
                                                  "torn": 0}


def test_a_disabled_trace_records_nothing():
    tr = Trace(on=False)
    dom, _ = domain(AdrRule(), trace=tr)
    dom.store_nt(0, b"\x01" * 8)
    dom.fence()
    dom.crash(KeepNothing())
    assert tr.events() == []


# -- saving in-flight state ------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(rule=st.sampled_from(RULES),
       ops=st.lists(st.tuples(st.sampled_from(["store", "nt", "wb", "fence"]),
                              st.integers(0, 3 * 4096), st.binary(min_size=1, max_size=100)),
                    max_size=10))
def test_exported_pending_stores_come_back_with_the_same_crash_images(rule, ops):
    dom, media = domain(rule)
    for kind, addr, data in ops:
        if kind == "store":
            dom.store(addr, data)
        elif kind == "nt":
            dom.store_nt(addr, data)
        elif kind == "wb":
            dom.writeback(addr, len(data))
        else:
            dom.fence()
    saved, copy = dom.export_pending(), media.copy()
    again = PersistenceDomain(copy, rule)
    again.import_pending(saved)
    assert again.pending() == dom.pending()
    assert again.load(0, 4 * 4096) == dom.load(0, 4 * 4096)
    assert again.count_crash_images() == dom.count_crash_images()
    again.nvdimm_flush()
    dom.nvdimm_flush()
    assert again.pending() == dom.pending()
    assert copy.same_content(media)


def test_importing_into_a_busy_domain_or_from_garbage_is_refused():
    dom, _ = domain(AdrRule())
    dom.store(0x40, b"\x01")
    saved = dom.export_pending()
    with pytest.raises(Busy):
        dom.import_pending(saved)
    fresh, _ = domain(AdrRule())
    for blob in (b"", b"junk" * 4, saved[:-1], saved + b"x"):
        with pytest.raises(InvalidArgument):
            fresh.import_pending(blob)
    assert fresh.pending_bytes() == 0
    fresh.import_pending(saved)
    assert fresh.load(0x40, 1) == b"\x01" and not fresh.is_durable(0x40, 1)


def test_importing_under_eadr_makes_saved_cached_stores_durable():
    dom, _ = domain(AdrRule())
    dom.store(0x40, b"\x01" * 8)
    other, media = domain(EadrRule())
    other.import_pending(dom.export_pending())
    assert other.pending_bytes() == 0 and media.read(0x40, 8) == b"\x01" * 8
