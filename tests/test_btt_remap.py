"""Seam ``btt_remap``: what happens to a DAX mapping of a BTT block when a block write moves
it. Every variant's contract, the damage ``unsafe`` does and the others prevent, the
atomicity ``defer`` gives up for mapped blocks only, and a state machine mixing mmap
stores, block writes and unmaps."""

from __future__ import annotations

import errno
import random
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from drivers.btt import BttDevice, BttDriver
from drivers.btt.remap import BttDax, BttRemap, Defer, MappedFreeBlock, NotifyHolder
from drivers.direct_access import (
    KADDR_BASE,
    PFN_DEV,
    DaxExtent,
    DirectAccess,
    OutOfRange,
    RecordingHolder,
    capabilities,
    dax_provider,
)
from drivers.pmem import PmemDriver
from mm.fault import EHWPOISON, HwPoisoned
from mm.pagetable import PTE_SIZE
from mm.process import Mm, Process
from mm.vma import BaseVmOps, Vma
from nvdimm.claim import DriverRegistry
from nvdimm.errors import Busy, InvalidArgument, NotSupported
from nvdimm.machine import Machine, MachineConfig
from nvdimm.platform.crash import KeepEverything, KeepNothing, RandomCrash
from nvdimm.seams import seam
from nvdimm.units import MiB
from tests.test_btt import device
from tests.test_btt_crash import crash_during_write

PAGE = 4096
VARIANTS = seam("btt_remap").names()
DAX_VARIANTS = [n for n in VARIANTS if seam("btt_remap").create(n).allows_dax]


def machine(variant: str, *, tracking: bool = True, lbasize: int = 4096, ncpus: int = 1,
            size: int = 32 * MiB) -> Machine:
    """A one-DIMM machine configured with ``btt_remap=variant`` and one sector namespace."""
    reg = DriverRegistry()
    reg.register(PmemDriver())
    reg.register(BttDriver(ncpus=ncpus))
    m = Machine.create(MachineConfig(dimms=1, dimm_size=64 * MiB, tracking=tracking,
                                     btt_remap=variant), drivers=reg)
    m.bus.disable_region("region0")
    m.bus.init_labels("nmem0")
    m.bus.enable_region("region0")
    m.bus.create_namespace(mode="sector", size=size, sector_size=lbasize, name="t")
    return m


def provider(m: Machine) -> Any:
    """What a filesystem mounting the BTT with DAX gets, from the machine's config."""
    return dax_provider(device(m), m.config.direct_access, btt_remap=m.config.btt_remap)


def payload(tag: int) -> bytes:
    return random.Random(tag).randbytes(PAGE)


def block_phys(dev: BttDevice, lba: int) -> int:
    """Physical address of the current postmap block of ``lba``."""
    arena, premap = dev.arena_of(lba)
    return dev.ns.spa + arena.geo.data_off(arena.map_lookup(premap))


@attrs.define(slots=True, eq=False)
class DaxFile(BaseVmOps):
    """A DAX file over the whole BTT (file offset = device offset), as a filesystem runs
    it: a fault asks the provider for the pfn of the page's LBA and holds the extent; on
    ``on_remap`` it zaps the page in every process that maps it and releases the extent,
    so the next access faults onto the LBA's new block. Build with :func:`dax_file`."""

    provider: Any = None
    extents: dict[int, DaxExtent] = attrs.field(factory=dict)
    users: dict[int, list[tuple[Mm, int]]] = attrs.field(factory=dict)
    events: list[tuple[str, int, int]] = attrs.field(factory=list)

    def fault(self, vma: Vma, addr: int, size: int, write: bool) -> tuple[int, int]:
        off = vma.offset_of(addr) & ~(PAGE - 1)
        e = self.extents.get(off)
        if e is None:
            e = self.extents[off] = self.provider.map(off, PAGE, self)
        self.users.setdefault(off, []).append((vma.mm, addr & ~(PAGE - 1)))
        return e.pfn, PTE_SIZE

    def on_remap(self, offset: int, length: int) -> None:
        self.events.append(("remap", offset, length))
        for off in [o for o in self.extents if o < offset + length and offset < o + PAGE]:
            self.drop(off)

    def on_error(self, offset: int, length: int) -> None:
        self.events.append(("error", offset, length))

    def drop(self, off: int) -> None:
        """Unmap page ``off`` everywhere and release its extent (truncate, eviction)."""
        for mm, base in self.users.pop(off, []):
            mm.zap(base, base + PAGE)
        e = self.extents.pop(off, None)
        if e is not None:
            self.provider.release(e)

    def close(self) -> None:
        for off in list(self.extents):
            self.drop(off)


def dax_file(da: Any) -> DaxFile:
    # PFN_DEV only: no struct pages behind the pfns (VM_PFNMAP); one block per fault.
    return DaxFile(name="btt-file", align=PTE_SIZE, pfnmap=True, fsdax=True, provider=da)


# -- the seam ---------------------------------------------------------------------------------


def test_the_seam_offers_four_variants_and_defaults_to_denying_dax_as_linux_does():
    s = seam("btt_remap")
    assert VARIANTS == ["deny-dax", "unsafe", "notify-holder", "defer"]
    assert s.default == "deny-dax" == MachineConfig().btt_remap and s.contract is BttRemap
    flags = {}
    for name in VARIANTS:
        policy = s.create(name)
        assert isinstance(policy, BttRemap) and policy.name == name
        assert s.info(name).history and s.info(name).tradeoffs
        flags[name] = (policy.allows_dax, policy.sees_lifetime, policy.can_notify,
                       policy.atomic_while_mapped)
    assert flags == {"deny-dax": (False, False, False, True),
                     "unsafe": (True, False, False, True),
                     "notify-holder": (True, True, True, True),
                     "defer": (True, True, False, False)}


@pytest.mark.parametrize("variant", VARIANTS)
def test_only_deny_dax_refuses_a_dax_provider_for_a_btt(variant):
    m = machine(variant)
    dev = device(m)
    if variant == "deny-dax":
        for name in (None, "bdev-2016", "dax-ops", "widened"):
            with pytest.raises(NotSupported, match="no DAX on BTT") as e:
                dax_provider(dev, name, btt_remap=variant)
            assert e.value.errno == errno.EOPNOTSUPP
        with pytest.raises(NotSupported, match="no DAX on BTT"):
            dax_provider(dev)  # the seam's default
        return
    da = provider(m)
    assert isinstance(da, BttDax) and isinstance(da, DirectAccess)
    assert da.name == f"btt:{variant}"
    policy = seam("btt_remap").create(variant)
    assert capabilities(da) == {
        "can_report_errors": True, "sees_lifetime": policy.sees_lifetime,
        "can_notify": policy.can_notify,
        "notifies_failure": "mapping" if policy.sees_lifetime else "", "mc_safe": True}
    with pytest.raises(InvalidArgument, match="no variant"):
        dax_provider(dev, "no-such-direct-access", btt_remap=variant)
    with pytest.raises(InvalidArgument, match="no variant"):
        dax_provider(dev, btt_remap="no-such-remap")


# -- map: the pfn of the LBA's current block ---------------------------------------------------


@pytest.mark.parametrize("tracking", [True, False], ids=["tracked", "fast-path"])
@pytest.mark.parametrize("variant", DAX_VARIANTS)
@settings(max_examples=15, deadline=None)
@given(writes=st.lists(st.integers(0, 15), max_size=12), lba=st.integers(0, 15),
       pages=st.integers(1, 8))
def test_map_gives_one_page_at_the_pfn_of_the_lbas_current_postmap_block(variant, tracking,
                                                                        writes, lba, pages):
    m = machine(variant, tracking=tracking)
    dev, da = device(m), provider(m)
    disk = m.block_device("pmem0s")
    for i, w in enumerate(writes):  # move blocks around first
        disk.write(w * PAGE, payload(i))
    holder = RecordingHolder(da)
    e = holder.take(lba * PAGE, pages * PAGE)
    phys = block_phys(dev, lba)
    arena, premap = dev.arena_of(lba)
    assert phys == (dev.ns.spa + arena.geo.dataoff
                    + arena.map_lookup(premap) * arena.geo.internal_lbasize)
    assert (e.offset, e.length) == (lba * PAGE, PAGE)  # one block, never more
    assert (e.pfn, e.kaddr) == (phys >> 12, KADDR_BASE + phys)
    assert e.pfn_flags == PFN_DEV and not e.has_page  # no struct pages: cannot pin
    assert m.platform.cpu.load(phys, PAGE) == disk.read(lba * PAGE, PAGE)
    assert da.outstanding(0, dev.size) == (1 if da.sees_lifetime else None)
    assert arena.remap_guard == da  # BttDax compares by identity
    da.release(e)
    da.release(e)  # twice is harmless
    assert da.outstanding(0, dev.size) == (0 if da.sees_lifetime else None)
    assert arena.remap_guard is None  # nothing mapped: block writes pay nothing


@pytest.mark.parametrize("variant", DAX_VARIANTS)
def test_map_refuses_what_dax_over_a_btt_cannot_map(variant):
    m = machine(variant)
    da = provider(m)
    holder = RecordingHolder(da)
    with pytest.raises(InvalidArgument, match="not page aligned"):
        da.map(512, PAGE, holder)
    with pytest.raises(InvalidArgument, match="a mapping of 0 bytes"):
        da.map(0, 0, holder)
    with pytest.raises(OutOfRange) as e:
        da.map(device(m).size, PAGE, holder)
    assert e.value.errno == errno.ERANGE
    if da.can_notify:
        with pytest.raises(InvalidArgument, match="needs a holder with on_remap"):
            da.map(0, PAGE)
    # A block that would not start on a page boundary has no pfn of its own.
    arena = device(m).arenas[0]
    arena.geo = attrs.evolve(arena.geo, dataoff=arena.geo.dataoff + 64)
    with pytest.raises(InvalidArgument, match="not page aligned: no pfn maps one block"):
        da.map(0, PAGE, holder)
    for lbasize, why in ((512, "not 512-byte ones"),
                         (4160, "not 4160-byte ones .its blocks carry protection")):
        m2 = machine(variant, lbasize=lbasize)
        with pytest.raises(InvalidArgument, match=why):
            provider(m2).map(0, PAGE, RecordingHolder(provider(m2)))


@pytest.mark.parametrize("variant", DAX_VARIANTS)
def test_a_known_bad_block_or_an_error_flagged_lba_is_refused_with_ehwpoison(variant):
    m = machine(variant)
    dev, da = device(m), provider(m)
    arena = dev.arenas[0]
    arena.map_set_error(4, arena.map_lookup(4))  # as a failed read leaves it
    with pytest.raises(HwPoisoned, match="BTT error flag") as e:
        da.map(4 * PAGE, PAGE, RecordingHolder(da))
    assert e.value.errno == EHWPOISON
    spa = block_phys(dev, 6)
    m.platform.inject_error(spa, 512)
    m.bus.add_badrange(spa, 512)
    with pytest.raises(HwPoisoned, match="known-bad block"):
        da.map(6 * PAGE, PAGE, RecordingHolder(da))
    assert da.outstanding(0, dev.size) == (0 if da.sees_lifetime else None)
    assert arena.remap_guard is None


@pytest.mark.parametrize("variant", DAX_VARIANTS)
def test_read_write_and_zero_are_atomic_block_io_through_the_btt(variant):
    m = machine(variant)
    dev, da = device(m), provider(m)
    disk = m.block_device("pmem0s")
    disk.write(0, payload(1) + payload(2))
    before = dev.arenas[0].map_lookup(1)
    data = bytes(range(256)) * 20  # 5120 bytes across LBAs 0 and 1, partial both
    assert da.write(3000, data) == len(data)
    want = bytearray(payload(1) + payload(2))
    want[3000:3000 + len(data)] = data
    assert disk.read(0, 2 * PAGE) == bytes(want) == da.read(0, 2 * PAGE)
    assert da.read(3000, 100) == data[:100]
    assert dev.arenas[0].map_lookup(1) != before  # nothing mapped: a block write remaps
    da.zero(PAGE, PAGE)
    assert disk.read(PAGE, PAGE) == bytes(PAGE)
    with pytest.raises(InvalidArgument, match="whole pages"):
        da.zero(100, PAGE)
    with pytest.raises(OutOfRange):
        da.write(dev.size - 8, b"x" * 16)
    da.flush()  # nothing to wait for
    # A block the BTT cannot read ends the copy short, as a machine-check-safe copy does.
    arena = dev.arenas[0]
    arena.map_set_error(2, arena.map_lookup(2))
    assert da.read(PAGE, 2 * PAGE + 10) == bytes(PAGE)


# -- the provider's side: lifetime, notices, errors --------------------------------------------


@pytest.mark.parametrize("variant", DAX_VARIANTS)
def test_only_notify_holder_tells_the_holder_before_its_block_moves(variant):
    m = machine(variant)
    dev, da = device(m), provider(m)
    holder = RecordingHolder(da)
    e = holder.take(3 * PAGE, PAGE)
    block = dev.arenas[0].map_lookup(3)
    report = da.remap(2 * PAGE, 2 * PAGE)  # zeroes LBAs 2 and 3 with block writes
    assert report.applied and dev.arenas[0].map_lookup(2) != 2
    assert m.block_device("pmem0s").read(2 * PAGE, 2 * PAGE) == bytes(2 * PAGE)
    moved = dev.arenas[0].map_lookup(3) != block
    if variant == "notify-holder":
        assert holder.events == [("remap", 3 * PAGE, PAGE)] and holder.held == []
        assert (report.notified, report.outstanding, moved) == (1, 0, True)
    elif variant == "defer":  # written in place: the mapping still addresses LBA 3
        assert holder.events == [] and (report.notified, report.outstanding) == (0, 1)
        assert not moved and m.platform.cpu.load(e.pfn << 12, PAGE) == bytes(PAGE)
        assert m.metrics.c["btt.remap.deferred_writes"] == 1
    else:  # unsafe: moved under the mapping, and nobody can tell
        assert holder.events == [] and (report.notified, report.outstanding) == (0, None)
        assert moved and m.metrics.c["btt.remap.mapped_remaps"] == 1


def test_notify_holder_fails_a_block_write_while_a_holder_keeps_its_mapping():
    m = machine("notify-holder")
    dev, da = device(m), provider(m)
    disk = m.block_device("pmem0s")
    disk.write(5 * PAGE, payload(1))
    stubborn = RecordingHolder(da, release=False)
    e = stubborn.take(5 * PAGE, PAGE)
    block = dev.arenas[0].map_lookup(5)
    with pytest.raises(Busy, match="still open after notice"):
        disk.write(5 * PAGE, payload(2))
    assert stubborn.events == [("remap", 5 * PAGE, PAGE)]
    assert disk.read(5 * PAGE, PAGE) == payload(1) and dev.arenas[0].map_lookup(5) == block
    assert m.metrics.c["btt.remap.refused"] == 1
    dev.check_invariants()
    da.release(e)
    disk.write(5 * PAGE, payload(2))
    assert disk.read(5 * PAGE, PAGE) == payload(2) and dev.arenas[0].map_lookup(5) != block


@pytest.mark.parametrize("variant", ["notify-holder", "defer"])
def test_the_free_block_invariant_catches_a_variant_that_remaps_a_mapped_block(variant,
                                                                            monkeypatch):
    """Remapping a mapped block makes it a free block while mapped; the lane's next write
    would hand it out. Both variants that promise a mapped block never moves refuse that
    write before writing anything."""
    m = machine(variant)
    dev, da = device(m), provider(m)
    disk = m.block_device("pmem0s")
    cls = NotifyHolder if variant == "notify-holder" else Defer
    monkeypatch.setattr(cls, "mapped_write", lambda self, w: True)  # forgets its promise
    RecordingHolder(da).take(1 * PAGE, PAGE)
    disk.write(1 * PAGE, payload(1))  # remaps under the mapping: block 1 is now free
    free = dev.arenas[0].free_blocks()
    with pytest.raises(MappedFreeBlock, match="is DAX-mapped"):
        disk.write(2 * PAGE, payload(2))
    assert dev.arenas[0].free_blocks() == free and disk.read(2 * PAGE, PAGE) == bytes(PAGE)


def test_media_errors_reach_each_holder_where_the_btt_sees_mappings():
    told = {}
    for variant in DAX_VARIANTS:
        m = machine(variant)
        da = provider(m)
        near, far = RecordingHolder(da), RecordingHolder(da)
        near.take(PAGE, PAGE)
        far.take(8 * PAGE, PAGE)
        told[variant] = (da.media_error(PAGE, 512), near.events, far.events)
    assert told == {"unsafe": (0, [], []),
                    "notify-holder": (1, [("error", PAGE, 512)], []),
                    "defer": (1, [("error", PAGE, 512)], [])}


def test_one_provider_maps_a_btt_at_a_time():
    m = machine("defer")
    first, second = provider(m), provider(m)
    e = first.map(0, PAGE)
    with pytest.raises(Busy, match="another DAX provider"):
        second.map(PAGE, PAGE)
    first.release(e)
    second.release(second.map(PAGE, PAGE))


# -- the key behaviour: mmap stores around a block write ---------------------------------------


def mixed_workload(m: Machine) -> dict[str, Any]:
    """Map LBAs 0-7 into a process; store through LBA 3's page, block-write LBA 3, store
    again, block-write LBA 7 (the lane's next write: it takes the lane's free block),
    store a third time. Returns what each LBA should hold and what it holds."""
    dev, da = device(m), provider(m)
    disk = m.block_device("pmem0s")
    k, j = 3, 7
    want = {lba: payload(100 + lba) for lba in range(8)}
    for lba, data in want.items():
        disk.write(lba * PAGE, data)
    f = dax_file(da)
    p: Process = m.mm.spawn("app")
    addr = p.mmap(8 * PAGE, shared=True, backing=f)
    va = addr + k * PAGE

    def store(off: int, data: bytes) -> None:
        p.store(va + off, data)
        want[k] = want[k][:off] + data + want[k][off + len(data):]

    store(0, b"A" * 16)
    pfn_before = p.translate(va)
    want[k] = payload(1)
    disk.write(k * PAGE, want[k])  # write(2) to the mapped LBA: a block write
    store(16, b"B" * 16)
    want[j] = payload(2)
    disk.write(j * PAGE, want[j])
    store(32, b"C" * 16)
    out = {"want": want, "got": {lba: disk.read(lba * PAGE, PAGE) for lba in want},
           "mapped": p.load(va, PAGE), "file": f, "pfn_moved": p.translate(va) != pfn_before,
           "metrics": {k_: v for k_, v in m.metrics.c.items() if k_.startswith("btt.remap.")}}
    dev.check_invariants()  # the BTT's own metadata is sound under every variant
    f.close()
    assert all(a.remap_guard is None for a in dev.arenas)
    return out


@pytest.mark.parametrize("tracking", [True, False], ids=["tracked", "fast-path"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_mmap_stores_around_a_block_write_are_lost_and_corrupt_only_under_unsafe(variant,
                                                                              tracking):
    m = machine(variant, tracking=tracking)
    if variant == "deny-dax":
        with pytest.raises(NotSupported, match="no DAX on BTT"):
            mixed_workload(m)
        return
    r = mixed_workload(m)
    want, got = r["want"], r["got"]
    lost = got[3] != want[3]
    corrupted = [lba for lba in want if lba != 3 and got[lba] != want[lba]]
    if variant == "unsafe":
        assert lost and got[3] == payload(1)  # B and C went elsewhere: a lost update
        assert corrupted == [7]  # ... into the block LBA 7 got from the lane
        assert got[7][32:48] == b"C" * 16
        assert r["metrics"] == {"btt.remap.mapped_remaps": 1, "btt.remap.mapped_reuses": 1}
        assert not r["pfn_moved"] and r["file"].events == []
        return
    assert not lost and corrupted == []
    assert r["mapped"] == want[3]  # the mapping shows what block I/O shows
    if variant == "notify-holder":  # told, unmapped, refaulted onto the new block
        assert r["file"].events == [("remap", 3 * PAGE, PAGE)] and r["pfn_moved"]
        assert r["metrics"] == {"btt.remap.notifications": 1}
    else:  # defer: written in place under the mapping
        assert r["file"].events == [] and not r["pfn_moved"]
        assert r["metrics"] == {"btt.remap.deferred_writes": 1}


@pytest.mark.parametrize("variant", DAX_VARIANTS)
def test_after_the_last_release_block_writes_remap_again(variant):
    m = machine(variant)
    dev, da = device(m), provider(m)
    disk = m.block_device("pmem0s")
    a, b = RecordingHolder(da), RecordingHolder(da)
    ea, eb = a.take(2 * PAGE, PAGE), b.take(2 * PAGE, PAGE)
    da.release(ea)
    if variant != "notify-holder":  # (notify-holder would tell b and wait for it)
        block = dev.arenas[0].map_lookup(2)
        disk.write(2 * PAGE, payload(1))
        assert (dev.arenas[0].map_lookup(2) == block) is (variant == "defer")
    da.release(eb)
    assert dev.arenas[0].remap_guard is None
    block = dev.arenas[0].map_lookup(2)
    disk.write(2 * PAGE, payload(2))
    assert dev.arenas[0].map_lookup(2) != block and disk.read(2 * PAGE, PAGE) == payload(2)


# -- crashes: the atomicity defer gives up, and only for mapped blocks -------------------------


POLICIES = [KeepNothing(), KeepEverything(), *(RandomCrash(s) for s in range(4))]


def crash_outcomes(variant: str, *, mapped: bool) -> set[str]:
    """Crash inside each piece of a block write to LBA 2 (mapped or not; LBA 5 is mapped
    either way, so the remap guard is active) under each crash policy; what LBA 2 reads
    after the reboot: ``old``, ``new`` or ``torn``."""
    seen = set()
    for piece in range(4):
        for policy in POLICIES:
            m = machine(variant)
            da = provider(m)
            disk = m.block_device("pmem0s")
            old, new = payload(1), payload(2)
            disk.write(2 * PAGE, old)
            RecordingHolder(da).take(5 * PAGE, PAGE)
            if mapped:
                RecordingHolder(da).take(2 * PAGE, PAGE)
            crash_during_write(m, 2, new, piece, policy)
            got = m.block_device("pmem0s").read(2 * PAGE, PAGE)
            seen.add("old" if got == old else "new" if got == new else "torn")
            device(m).check_invariants()
    return seen


@pytest.mark.parametrize("variant", DAX_VARIANTS)
def test_a_crash_tears_a_sector_only_when_defer_writes_a_mapped_block_in_place(variant):
    policy = seam("btt_remap").create(variant)
    assert crash_outcomes(variant, mapped=False) == {"old", "new"}
    mapped = crash_outcomes(variant, mapped=True)
    if policy.atomic_while_mapped:
        assert mapped == {"old", "new"}
    else:
        assert mapped == {"old", "new", "torn"}


# -- a state machine: mmap stores, loads, block writes and reads, unmaps -------------------------


class BttDaxWorkload(RuleBasedStateMachine):
    """A process maps LBAS pages of a DAX file over a BTT on two lanes; rules store and
    load through the mapping, write and read blocks, and unmap pages. The model says
    what each LBA holds if mappings and block I/O are coherent. notify-holder and defer
    must keep it exact; unsafe must, until a store goes through a mapping whose block
    has moved (after which nothing is promised)."""

    LBAS = 6

    @initialize(variant=st.sampled_from(DAX_VARIANTS), tracking=st.booleans())
    def setup(self, variant: str, tracking: bool) -> None:
        self.variant = variant
        self.m = machine(variant, tracking=tracking, ncpus=2)
        self.dev = device(self.m)
        self.da = provider(self.m)
        self.disk = self.m.block_device("pmem0s")
        self.model = {i: self.disk.read(i * PAGE, PAGE) for i in range(self.LBAS)}
        self.file = dax_file(self.da)
        self.p = self.m.mm.spawn("app")
        self.addr = self.p.mmap(self.LBAS * PAGE, shared=True, backing=self.file)
        self.tainted = False

    def stale(self, lba: int) -> bool:
        """The page of ``lba`` is mapped at a block that is no longer the LBA's."""
        phys = self.p.translate(self.addr + lba * PAGE)
        return phys is not None and phys & ~(PAGE - 1) != block_phys(self.dev, lba)

    @rule(lba=st.integers(0, LBAS - 1), off=st.integers(0, PAGE - 1),
          tag=st.integers(0, 255), n=st.integers(1, 64))
    def store(self, lba: int, off: int, tag: int, n: int) -> None:
        n = min(n, PAGE - off)
        if self.stale(lba):
            assert self.variant == "unsafe", "a mapping outlived its block's move"
            self.tainted = True
        self.p.store(self.addr + lba * PAGE + off, bytes([tag]) * n)
        old = self.model[lba]
        self.model[lba] = old[:off] + bytes([tag]) * n + old[off + n:]

    @rule(lba=st.integers(0, LBAS - 1))
    def load(self, lba: int) -> None:
        got = self.p.load(self.addr + lba * PAGE, PAGE)
        if not self.tainted and not self.stale(lba):
            assert got == self.model[lba]

    @rule(lba=st.integers(0, LBAS - 1), tag=st.integers(0, 255), cpu=st.integers(0, 1))
    def write(self, lba: int, tag: int, cpu: int) -> None:
        self.dev.cpu = cpu
        self.disk.write(lba * PAGE, payload(tag))
        self.model[lba] = payload(tag)

    @rule(lba=st.integers(0, LBAS - 1))
    def read(self, lba: int) -> None:
        if not self.tainted:
            assert self.disk.read(lba * PAGE, PAGE) == self.model[lba]

    @rule(lba=st.integers(0, LBAS - 1))
    def unmap(self, lba: int) -> None:
        self.file.drop(lba * PAGE)

    @invariant()
    def consistent(self) -> None:
        if not hasattr(self, "m"):
            return
        self.dev.check_invariants()
        arena = self.dev.arenas[0]
        assert arena.remap_guard is (self.da if self.file.extents else None)
        mapped = {e.pfn for e in self.file.extents.values()}
        free = {(self.dev.ns.spa + arena.geo.data_off(b)) >> 12 for b in arena.free_blocks()}
        if self.variant != "unsafe":  # a mapped block never moves, so it is never free
            assert not mapped & free
            assert self.da.outstanding(0, self.dev.size) == len(self.file.extents)
        if not self.tainted:
            for lba, want in self.model.items():
                assert self.disk.read(lba * PAGE, PAGE) == want


TestBttDaxWorkload = BttDaxWorkload.TestCase
TestBttDaxWorkload.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
