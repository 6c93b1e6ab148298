"""The kit: seam registry (decorator and entry points), trace recorder, metrics, DRAM."""

from __future__ import annotations

import importlib.metadata as md
import io

import attrs
import pytest

from nvdimm import seams
from nvdimm.errors import InvalidArgument, NoSpace
from nvdimm.machine import Machine, MachineConfig
from nvdimm.platform.crash import KeepNothing
from nvdimm.platform.dram import Dram
from nvdimm.platform.persistence import Stage, StageRule
from nvdimm.trace import Trace
from nvdimm.units import GiB, MiB


def test_builtin_persistence_variants_are_documented():
    s = seams.seam("persistence")
    assert s.default == "adr"
    assert {"adr", "eadr", "flush-hint"} <= set(s.names())
    for name in ("adr", "eadr", "flush-hint"):
        info = s.info(name)
        assert info.history and info.tradeoffs and info.cls.__doc__


def test_unknown_seam_or_variant_names_the_choices():
    with pytest.raises(InvalidArgument, match="known seams"):
        seams.seam("nope")
    with pytest.raises(InvalidArgument, match="adr"):
        seams.seam("persistence").info("nope")


@pytest.fixture(autouse=True)
def _forget_test_variants():
    """Variants these tests register leave the catalogue afterwards."""
    before = {s.name: dict(s.variants) for s in seams.all_seams()}
    yield
    for s in seams.all_seams():
        if s.name in before:
            s.variants.clear()
            s.variants.update(before[s.name])


def test_a_variant_registered_by_decorator_drives_a_machine():
    @seams.variant("persistence", "test-eadr-like", history="test", tradeoffs="test")
    @attrs.frozen
    class EverythingDurable(StageRule):
        """Every store is durable when made (test variant)."""

        name: str = "test-eadr-like"
        persistence_domain: str = "cpu_cache"
        cached_durable_at: Stage = Stage.VISIBLE
        nt_durable_at: Stage = Stage.VISIBLE

    m = Machine.create(MachineConfig(dimms=1, dimm_size=64 * MiB, label_size=0,
                                     persistence="test-eadr-like"))
    m.block_device("pmem0").write(0, b"v" * 4096)  # no FUA, no flush
    m.crash(KeepNothing())
    m.boot()
    assert m.block_device("pmem0").read(0, 4096) == b"v" * 4096


def test_a_variant_from_the_entry_point_group_is_loaded(monkeypatch):
    ep = md.EntryPoint(name="nt-only", value="tests.plugins.wpq_lossy:NtOnlyRule",
                       group=seams.ENTRY_POINT_GROUP)
    real = md.entry_points

    def fake(**kw):
        if kw.get("group") == seams.ENTRY_POINT_GROUP:
            return md.EntryPoints([ep])
        return real(**kw)

    monkeypatch.setattr(seams.metadata, "entry_points", fake)
    monkeypatch.setattr(seams, "_entry_points_loaded", False)
    assert "test-plugin-nt-only" in seams.seam("persistence").names()


def test_disabled_trace_records_nothing_and_enabled_trace_echoes():
    t = Trace(on=False)
    t.emit("pmem.write", sector=1)
    assert t.events() == []
    buf = io.StringIO()
    t = Trace()
    t.echo_to(buf)
    t.emit("btt.remap", lba=7, old=12, new=3)
    assert "btt.remap" in buf.getvalue() and "lba=7" in buf.getvalue()
    (ev,) = t.events("btt.")
    assert (ev.subsystem, ev.fields["new"]) == ("btt", 3)


def test_trace_ring_is_bounded():
    t = Trace(capacity=10)
    for i in range(25):
        t.emit("x.y", i=i)
    assert [e.fields["i"] for e in t.events()] == list(range(15, 25))


def test_dram_accounting_refuses_overcommit_and_returns_charges():
    d = Dram(1 * GiB)
    d.charge("memmap:namespace0.0", 512 * MiB)
    with pytest.raises(NoSpace, match="memmap:big"):
        d.charge("memmap:big", 600 * MiB)
    assert d.used == 512 * MiB
    d.uncharge("memmap:namespace0.0")
    assert d.free == 1 * GiB
    with pytest.raises(InvalidArgument):
        d.charge("x", -1)
