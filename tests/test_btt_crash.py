"""Crash consistency: a power failure anywhere in a BTT write leaves every sector with
its complete old or complete new contents, map and free list a permutation of the
internal blocks, and nothing for check-namespace to find. Raw mode, by contrast, tears.

The exhaustive part uses :class:`drivers.btt.crashcheck.CrashExplorer`: at every piece
of a write (data, the two flog halves, the map entry) it enumerates what a crash could
leave (every per-line prefix of 8-byte units the persistence domain allows), recovers
each image as attach does and checks it. The machine-level part really crashes the
machine (``Machine.crash``) inside a write and boots it again.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from drivers.btt.arena import Arena
from drivers.btt.check import check_namespace
from drivers.btt.crashcheck import (
    CrashExplorer,
    combo_patches,
    crash_combos,
    line_options,
    pending_lines,
)
from nvdimm import ndctl
from nvdimm.machine import Machine
from nvdimm.platform.crash import KeepEverything, KeepNothing, RandomCrash
from nvdimm.units import MiB
from tests.test_btt import btt_machine, device

GEOMETRIES = [
    pytest.param("1.1", 32 * MiB, 4096, id="btt1.1-32M-4096"),
    pytest.param("1.1", 32 * MiB, 512, id="btt1.1-32M-512"),
    pytest.param("1.2", 16 * MiB, 4096, id="btt2.0-16M-4096"),
    pytest.param("1.2", 16 * MiB, 512, id="btt2.0-16M-512"),
]


def payload(lbs: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(lbs)


def explorer(version: str, size: int, lbs: int, **kw: object) -> CrashExplorer:
    _, dev = btt_machine(label_version=version, size=size, lbasize=lbs,
                         ncpus=int(kw.pop("ncpus", 1)))  # type: ignore[call-overload]
    return CrashExplorer(dev, **kw)  # type: ignore[arg-type]


def assert_clean(ex: CrashExplorer, *, min_images: int) -> None:
    st_ = ex.stats
    assert st_.failures == [], "\n".join(st_.failures[:10])
    assert st_.images >= min_images, st_
    # The device itself is consistent after the writes ran to completion.
    ex.device.check_invariants()


# -- every crash state of single writes and short sequences --------------------------------


@pytest.mark.parametrize(("version", "size", "lbs"), GEOMETRIES)
def test_every_crash_state_of_a_single_write_recovers_to_old_or_new(version, size, lbs):
    ex = explorer(version, size, lbs)
    ex.write(0, payload(lbs, 1))  # first write of a fresh BTT: lane 0's first flog slot
    assert ex.stats.points == 4  # data, flog half 1, flog half 2, map
    assert_clean(ex, min_images=lbs // 64 + 4)


@pytest.mark.parametrize(("version", "size", "lbs"), GEOMETRIES)
def test_every_crash_state_of_rewrites_through_a_sequence_wrap_recovers(version, size, lbs):
    ex = explorer(version, size, lbs)
    for i in range(7):  # seq 2, 3, 1, 2, 3, 1, 2 in alternating slots
        ex.write(3, payload(lbs, 10 + i))
    assert ex.stats.points == 28
    assert_clean(ex, min_images=7 * (lbs // 64))


def test_every_crash_state_of_a_mixed_sequence_on_two_cpus_recovers():
    ex = explorer("1.1", 32 * MiB, 4096, ncpus=2)
    last = ex.device.nlba - 1
    for i, (lba, cpu) in enumerate([(0, 0), (1, 1), (0, 1), (last, 0), (1, 0), (last, 1)]):
        ex.write(lba, payload(4096, 100 + i), cpu=cpu)
    assert_clean(ex, min_images=6 * 64)


def test_the_shortcut_for_data_only_states_agrees_with_full_recovery():
    """Images that differ from the base only inside data blocks are checked by showing
    no surviving store hits a mapped block; recovering each of them in full finds the
    same: no failure, and the same number of states."""
    results = []
    for fast in (True, False):
        ex = explorer("1.2", 16 * MiB, 512, fast=fast)
        for i in range(3):
            ex.write(i % 2, payload(512, 7 + i))
        assert_clean(ex, min_images=3 * 8)
        results.append((ex.stats.images, ex.stats.points))
    assert results[0] == results[1]


def test_small_pieces_get_the_persistence_domains_full_enumeration():
    """A flog half or a map entry sits in one cache line: every combination is taken,
    so the explorer's images are exactly those of ``cpu.crash_images()``."""
    m, dev = btt_machine()
    cpu = m.platform.cpu
    seen: list[tuple[str, int, int]] = []

    def hook(off: int, data: bytes, what: str) -> None:
        lines = pending_lines(cpu)
        combos = list(crash_combos(lines, line_options(lines, cpu.backend.read)))
        if len(lines) == 1:
            ours = sorted(tuple(sorted(combo_patches(lines, c))) for c in combos)
            theirs = sorted(tuple(sorted(img.patches)) for img in cpu.crash_images())
            assert ours == theirs
        seen.append((what, len(lines), len(combos)))

    dev.io.on_piece = hook
    m.block_device("pmem0s").write(0, payload(4096, 5))
    dev.io.on_piece = None
    assert [(w, n) for w, n, _ in seen] == [("data", 64), ("flog.lba_old", 1),
                                           ("flog.new_seq", 1), ("map", 1)]
    # One 8-byte unit: kept or lost (one outcome only when it rewrites what is there:
    # here {lba 0, old block 0} over the zeroes of a never-used slot).
    assert [k for _, n, k in seen if n == 1] == [1, 2, 2]


# -- the checker has teeth -----------------------------------------------------------------


def test_a_btt_that_writes_the_map_before_the_data_is_caught(monkeypatch):
    def map_first(self: Arena, lane: int, premap: int, data: bytes) -> None:
        fe = self.free[lane]
        new, old = fe.block, self.map_lookup(premap)
        from drivers.btt.format import LOG_HALF, LogEntry, map_encode, next_seq

        self.io.write(self.geo.map_off(premap), map_encode(new), "map")
        h1, h2 = LogEntry(premap, old, new, fe.seq).halves()
        slot = self.geo.slot_off(lane, self.log_index[fe.sub])
        self.io.write(slot, h1, "flog.lba_old")
        self.io.write(slot + LOG_HALF, h2, "flog.new_seq")
        fe.sub, fe.seq, fe.block = 1 - fe.sub, next_seq(fe.seq), old
        self.io.write(self.geo.data_off(new), data, "data")

    ex = explorer("1.1", 32 * MiB, 4096)
    monkeypatch.setattr(Arena, "write_block", map_first)
    ex.write(0, payload(4096, 1))
    ex.write(0, payload(4096, 2))
    assert any("torn" in f for f in ex.stats.failures)
    assert any("bitmap error" in f or "referenced twice" in f or "mapped and free" in f
               for f in ex.stats.failures)


def test_a_btt_that_commits_seq_before_the_rest_of_the_entry_is_caught(monkeypatch):
    """Writing the flog entry with seq first (the wrong half first) lets a crash leave a
    'newest' entry whose lba and old block are stale: recovery then frees a block that
    is still mapped."""
    real = Arena.write_block

    def seq_first(self: Arena, lane: int, premap: int, data: bytes) -> None:
        io = self.io
        calls: list[tuple[int, bytes, str]] = []

        class Swap:
            def read(self, off: int, n: int) -> bytes:
                return io.read(off, n)

            def is_bad(self, off: int, n: int) -> bool:
                return io.is_bad(off, n)

            def direct(self) -> None:
                return None

            def write(self, off: int, d: bytes, what: str = "", atomic: bool = True) -> None:
                if what == "flog.lba_old":
                    calls.append((off, d, what))
                    return
                io.write(off, d, what, atomic)
                if what == "flog.new_seq":
                    for c in calls:
                        io.write(*c)

        self.io = Swap()  # type: ignore[assignment]
        try:
            real(self, lane, premap, data)
        finally:
            self.io = io

    ex = explorer("1.1", 32 * MiB, 4096)
    ex.write(5, payload(4096, 1))  # a correct first write of lba 5 and lane 0
    monkeypatch.setattr(Arena, "write_block", seq_first)
    ex.write(6, payload(4096, 2))
    assert ex.stats.failures


# -- real crashes of the machine ------------------------------------------------------------


class PowerCut(Exception):
    """Raised from inside a write once the machine has crashed, to abandon it."""


def crash_during_write(m: Machine, lba: int, data: bytes, piece: int, policy: object) -> None:
    dev = device(m)
    count = [0]

    def hook(off: int, d: bytes, what: str) -> None:
        if count[0] == piece:
            m.crash(policy)  # type: ignore[arg-type]
            raise PowerCut
        count[0] += 1

    dev.io.on_piece = hook
    try:
        m.block_device("pmem0s").write(lba * dev.lbasize, data)
    except PowerCut:
        pass
    finally:
        dev.io.on_piece = None
    if not m.booted:
        m.boot()


POLICIES = [KeepNothing(), KeepEverything(), *(RandomCrash(s) for s in range(4))]


@pytest.mark.parametrize("lbs", [4096, 512])
@pytest.mark.parametrize("piece", range(5))
def test_machine_crash_inside_each_piece_boots_to_old_or_new(lbs, piece):
    for policy in POLICIES:
        m, _ = btt_machine(lbasize=lbs)
        disk = m.block_device("pmem0s")
        old = payload(lbs, 1)
        disk.write(2 * lbs, old)
        new = payload(lbs, 2)
        crash_during_write(m, 2, new, piece, policy)
        got = m.block_device("pmem0s").read(2 * lbs, lbs)
        assert got in (old, new), f"piece {piece}, {policy.name}: torn sector"
        if piece <= 1:  # data or the flog's first half: the commit point is not reached
            assert got == old
        elif piece == 2:  # inside the write of {new_map, seq}: the commit point itself
            if isinstance(policy, KeepNothing):
                assert got == old
            if isinstance(policy, KeepEverything):
                assert got == new
        else:  # seq is durable: the map write landed or is rolled forward at attach
            assert got == new
        device(m).check_invariants()
        m.bus.disable_namespace("namespace0.0")
        assert check_namespace(m.bus.namespace("namespace0.0")).clean


# -- raw mode, for contrast -----------------------------------------------------------------


def test_raw_mode_tears_sectors_where_the_btt_does_not():
    """The same enumeration over a plain pmem write (memcpy_flushcache, then a crash
    before the flush) finds images where the sector is neither old nor new."""
    from tests.conftest import labelled_machine

    m = labelled_machine(dimm_size=64 * MiB)
    ndctl.create_namespace(m, mode="raw", size="32M")
    disk = m.block_device("pmem0")
    old, new = payload(4096, 1), payload(4096, 2)
    disk.write(0, old, fua=True)
    disk.write(0, new)  # in flight until a flush
    cpu = m.platform.cpu
    ns = m.bus.namespace("pmem0")
    lines = pending_lines(cpu)
    torn = total = 0
    for combo in crash_combos(lines, line_options(lines, cpu.backend.read)):
        image = bytearray(cpu.backend.read(ns.spa, 4096))
        for a, d in combo_patches(lines, combo):
            image[a - ns.spa:a - ns.spa + len(d)] = d
        total += 1
        torn += bytes(image) not in (old, new)
    assert total > 1000 and torn > 0.9 * total
    # The BTT, over the same kind of machine and the same enumeration: nothing torn.
    ex = explorer("1.1", 32 * MiB, 4096)
    ex.write(0, old)
    ex.write(0, new)
    assert_clean(ex, min_images=total)


# -- a state machine: writes, reads, crashes, reattaches -------------------------------------


class BttWithCrashes(RuleBasedStateMachine):
    """Writes and reads on two CPUs, power failures inside writes and between them with a
    random crash policy, reattaches with an offline check. Invariants: every sector reads
    what was last written (or, for the one a crash interrupted, its old or its new
    contents), and map + free list stay a permutation of the internal blocks."""

    LBAS = 8

    @initialize(lbs=st.sampled_from([512, 4096]))
    def setup(self, lbs: int) -> None:
        self.m, _ = btt_machine(lbasize=lbs, ncpus=2, label_version="1.2", size=16 * MiB)
        self.lbs = lbs
        disk = self.m.block_device("pmem0s")
        self.model = {i: disk.read(i * lbs, lbs) for i in range(self.LBAS)}

    def data(self, tag: int) -> bytes:
        return bytes([tag]) * self.lbs

    @rule(lba=st.integers(0, LBAS - 1), tag=st.integers(0, 255), cpu=st.integers(0, 1))
    def write(self, lba: int, tag: int, cpu: int) -> None:
        device(self.m).cpu = cpu
        self.m.block_device("pmem0s").write(lba * self.lbs, self.data(tag))
        self.model[lba] = self.data(tag)

    @rule(lba=st.integers(0, LBAS - 1))
    def read(self, lba: int) -> None:
        assert self.m.block_device("pmem0s").read(lba * self.lbs, self.lbs) == self.model[lba]

    @rule(lba=st.integers(0, LBAS - 1), tag=st.integers(0, 255), cpu=st.integers(0, 1),
          piece=st.integers(0, 4), seed=st.integers(0, 2**16))
    def crash_in_write(self, lba: int, tag: int, cpu: int, piece: int, seed: int) -> None:
        device(self.m).cpu = cpu
        crash_during_write(self.m, lba, self.data(tag), piece, RandomCrash(seed))
        got = self.m.block_device("pmem0s").read(lba * self.lbs, self.lbs)
        assert got in (self.model[lba], self.data(tag)), "torn sector after a crash"
        self.model[lba] = got

    @rule(seed=st.integers(0, 2**16))
    def crash_between_writes(self, seed: int) -> None:
        self.m.crash(RandomCrash(seed))  # nothing is in flight: every write was durable
        self.m.boot()

    @rule()
    def reattach(self) -> None:
        self.m.bus.disable_namespace("namespace0.0")
        assert check_namespace(self.m.bus.namespace("namespace0.0")).clean
        self.m.bus.enable_namespace("namespace0.0")

    @invariant()
    def consistent(self) -> None:
        if hasattr(self, "m"):
            device(self.m).check_invariants()
            disk = self.m.block_device("pmem0s")
            for lba, want in self.model.items():
                assert disk.read(lba * self.lbs, self.lbs) == want


TestBttWithCrashes = BttWithCrashes.TestCase
TestBttWithCrashes.settings = settings(max_examples=40, stateful_step_count=20,
                                       deadline=None)
