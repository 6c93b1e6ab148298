"""Built-in experiments: the seed's questions, each one CLI line (``nvdimm explore NAME``).

==============  ===================================================================
persistence     the ``persistence`` seam (adr, eadr, flush-hint) under raw-pmem block
                writes and application-style stores, with crashes: what survives
crash-states    how many distinct crash images N in-flight 4 KiB writes can leave:
                why exhaustive enumeration explodes and random crashes are sampled
btt-remap       ``btt_remap`` variants under mixed mmap and block writes
memmap          ``memmap`` variants (none, ram, pmem, compound) across namespace sizes
                from 16 GiB to 64 TiB: DRAM spent, pmem lost, DMA pinning
direct-access   ``direct_access`` variants under truncate with a pinned page, a media
                error in a mapped range, and DAX over BTT
fs-paths        one file through the page cache and through DAX: copies, pmem traffic,
                DRAM held, faults, modeled time
persistence-    the ``persistence`` seam under a BTT and extentfs (DAX, page cache)
stack           with and without fsync/msync, with crashes
memory-tiers    ``pmem_tier`` variants (kmem-numa, swap, pagecache-ext, dax-cache)
                under one memory-hungry workload larger than DRAM (issue 8)
==============  ===================================================================

An experiment whose seams are not built yet can be declared with ``needs``; asking for
it raises :class:`~nvdimm.errors.NotAvailableYet` naming the issue.

Each workload here is a module-level function, so sweeps can send it to other
processes and Dask workers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor
from typing import Any

import attrs

from nvdimm.errors import InvalidArgument, NotAvailableYet
from nvdimm.explore.compare import Comparison, compare
from nvdimm.explore.experiment import Check, Experiment, Outcome, Workload, tagged_block
from nvdimm.explore.fs_workloads import (
    SCENARIOS,
    STACKS,
    btt_remap_workload,
    direct_access_workload,
    fs_paths_workload,
    persistence_stack_workload,
)
from nvdimm.explore.sweep import ProgressFn, sweep
from nvdimm.explore.tiers import machine_config as tiers_machine_config
from nvdimm.explore.tiers import memory_tiers_workload
from nvdimm.machine import Machine, MachineConfig
from nvdimm.platform.crash import policy_from_name
from nvdimm.seams import all_seams
from nvdimm.units import KiB, MiB, parse_size

BLOCK = 4096
NS_SIZE = 16 * MiB


class _App:
    """An application's view of pmem through a DAX-style mapping: loads and stores at
    system physical addresses inside a raw namespace, straight to the CPU model. Its
    loads are counted (``app.loads``, ``app.bytes_loaded``) for the cost model."""

    def __init__(self, m: Machine, spa: int) -> None:
        self.cpu = m.platform.cpu
        self.metrics = m.metrics
        self.spa = spa

    def load(self, off: int, n: int) -> bytes:
        self.metrics.c["app.loads"] += 1
        self.metrics.c["app.bytes_loaded"] += n
        return self.cpu.load(self.spa + off, n)


# -- persistence -----------------------------------------------------------------------

# (group name, promised durable). Order matters: everything that fences or flushes comes
# before what must stay in flight, so a later fence never rescues an earlier pattern.
PERSISTENCE_PATTERNS: tuple[tuple[str, bool], ...] = (
    ("write+fua", True),
    ("write+flush", True),
    ("app clwb+sfence+deep_flush", True),
    ("app clwb+sfence", True),
    ("app nt+sfence", True),
    ("write (no flush)", False),
    ("app clwb (no sfence)", False),
    ("app store (no clwb)", False),
)


def persistence_workload(m: Machine, crash: str = "random", blocks: int = 4) -> Outcome:
    """Raw pmem, eight ways of writing ``blocks`` 4 KiB blocks each, then a crash.

    Through the block device: a FUA write; writes then a cache flush; writes with
    neither. Through an application's mapping (cached stores, CLWB, SFENCE on the CPU
    model at addresses inside the namespace): the full recipe plus the region's
    ``deep_flush``; CLWB + SFENCE (what PMDK does); NT stores + SFENCE; CLWB without
    the fence; plain stores. The first five were promised durable by the recipe their
    writer followed. Then the power fails (``crash``: ``nothing`` keeps no in-flight
    store, ``random`` a random prefix per cache line, seeded by the run's seed), the
    machine reboots, and every block is read back.
    """
    if blocks < 1:
        raise InvalidArgument(f"blocks must be at least 1, not {blocks}")
    seed = m.config.seed
    policy = policy_from_name(crash, seed)
    ns = m.bus.create_namespace(mode="raw", size=max(NS_SIZE, 2 * len(PERSISTENCE_PATTERNS)
                                                     * blocks * BLOCK), name="explore")
    disk = m.block_device(ns.dev)
    cpu = m.platform.cpu
    app = _App(m, ns.spa)
    data: dict[tuple[int, int], bytes] = {}
    for tag in range(len(PERSISTENCE_PATTERNS)):
        for i in range(blocks):
            data[tag, i] = tagged_block(seed, tag, i)

    def off(tag: int, i: int) -> int:
        return (tag * blocks + i) * BLOCK

    def app_store(tag: int, *, clwb: bool, nt: bool = False) -> None:
        for i in range(blocks):
            addr = ns.spa + off(tag, i)
            if nt:
                cpu.store_nt(addr, data[tag, i])
            else:
                cpu.store(addr, data[tag, i])
                if clwb:
                    cpu.writeback(addr, BLOCK)

    for i in range(blocks):                                    # 0: FUA
        disk.write(off(0, i), data[0, i], fua=True)
    for i in range(blocks):                                    # 1: writes, then a flush
        disk.write(off(1, i), data[1, i])
    disk.flush()
    app_store(2, clwb=True)                                    # 2: recipe + deep_flush
    cpu.fence()
    cpu.nvdimm_flush()  # echo 1 > /sys/bus/nd/devices/regionN/deep_flush
    app_store(3, clwb=True)                                    # 3: clwb + sfence
    cpu.fence()
    app_store(4, clwb=False, nt=True)                          # 4: NT stores + sfence
    cpu.fence()
    for i in range(blocks):                                    # 5: no FUA, no flush
        disk.write(off(5, i), data[5, i])
    app_store(6, clwb=True)                                    # 6: clwb, no fence
    app_store(7, clwb=False)                                   # 7: stores only

    domain = cpu.persistence_domain or "(none)"
    fua = disk.fua
    report = m.crash(policy)
    m.boot()
    disk = m.block_device(ns.dev)
    checks = []
    for tag, (group, durable) in enumerate(PERSISTENCE_PATTERNS):
        for i in range(blocks):
            found = (app.load(off(tag, i), BLOCK) if group.startswith("app")
                     else disk.read(off(tag, i), BLOCK))
            checks.append(Check(f"{group}[{i}]", data[tag, i], found, durable=durable,
                                group=group))
    notes = {"region persistence_domain": domain, "pmem queue advertises FUA": fua,
             "crash: lines in flight": report.lines_pending,
             "crash: lines kept whole": report.lines_kept,
             "crash: lines lost": report.lines_lost, "crash: lines torn": report.lines_torn}
    return Outcome(checks, (report,), notes)


# -- crash states ----------------------------------------------------------------------

SECONDS_PER_YEAR = 31_557_600


def crash_states_workload(m: Machine, writes: int = 1) -> Outcome:
    """``writes`` 4 KiB block writes in flight (NT stores, no fence), then count the
    distinct images a crash could leave, against the ``2**writes`` a device with atomic
    sectors allows; then one random crash (seeded by the run's seed) as a sample."""
    if writes < 1:
        raise InvalidArgument(f"writes must be at least 1, not {writes}")
    seed = m.config.seed
    ns = m.bus.create_namespace(mode="raw", size=max(NS_SIZE, writes * BLOCK), name="explore")
    disk = m.block_device(ns.dev)
    cpu = m.platform.cpu
    blocks = [tagged_block(seed, 0, i) for i in range(writes)]
    for i, b in enumerate(blocks):
        disk.write(i * BLOCK, b)
    pending = cpu.pending()
    lines = {a >> 6 for s in pending for a in range(s.addr, s.addr + s.length, 64)}
    units = sum(((s.addr + s.length - 1) >> 3) - (s.addr >> 3) + 1 for s in pending)
    images = cpu.count_crash_images()
    report = m.crash(policy_from_name("random", seed))
    m.boot()
    disk = m.block_device(ns.dev)
    checks = [Check(f"sampled crash[{i}]", b, disk.read(i * BLOCK, BLOCK), group="sampled crash")
              for i, b in enumerate(blocks)]
    notes = {
        "in-flight 4 KiB writes": writes,
        "cache lines in flight": len(lines),
        "8-byte units in flight": units,
        "distinct crash images": images,
        "log10(crash images)": round(math.log10(images), 2),
        "images if each write were atomic": 2 ** writes,
        "years to enumerate at 10^6 images/s": images // (10**6 * SECONDS_PER_YEAR),
    }
    return Outcome(checks, (report,), notes)


# -- memmap ---------------------------------------------------------------------------

MEMMAP_PERSONALITY = {"none": "fsdax", "ram": "fsdax", "pmem": "fsdax", "compound": "devdax"}


def memmap_workload(m: Machine, variant: str = "pmem", size_gib: int = 16,
                    align: str = "2M") -> Outcome:
    """One namespace of ``size_gib`` GiB whose struct pages come from memmap variant
    ``variant``: fsdax for ``none``, ``ram`` (``--map=mem``) and ``pmem`` (``--map=dev``,
    ndctl's default); devdax for ``compound`` (Linux gives compound pages only to
    device-dax). Reports what the memmap costs in DRAM and in pmem capacity, where a
    struct page lives, and whether the pages can be pinned for DMA (the variant's
    capability), then writes and reads a block at the end of the data area."""
    from drivers.dax import DaxDriver
    from drivers.pfn import PfnDriver

    if variant not in MEMMAP_PERSONALITY:
        raise InvalidArgument(f"memmap variant must be one of "
                              f"{', '.join(MEMMAP_PERSONALITY)}, not {variant!r}")
    mode = MEMMAP_PERSONALITY[variant]
    pfn = m.drivers.drivers["fsdax"]
    assert isinstance(pfn, PfnDriver)
    cls = DaxDriver if mode == "devdax" else PfnDriver
    m.drivers.register(cls(memmap=variant, pagemaps=pfn.pagemaps))
    dram_before = m.platform.dram.used
    ns = m.bus.create_namespace(mode=mode, size=size_gib << 30, name="explore",
                                align=parse_size(align))
    dev = ns.device
    layout = getattr(dev, "layout", None)
    pgmap = getattr(dev, "pgmap", None)
    assert layout is not None and pgmap is not None
    dram = m.platform.dram.used - dram_before
    reserved = int(layout.memmap_reserved)
    usable = int(getattr(dev, "size", 0))
    home = pgmap.home(pgmap.first_pfn)
    checks: list[Check] = []
    if mode == "fsdax":
        disk = m.block_device(ns.dev)
        block = tagged_block(m.config.seed, 1, 0)
        disk.write(disk.size - BLOCK, block, fua=True)
        checks.append(Check("last data block", block, disk.read(disk.size - BLOCK, BLOCK),
                            durable=True, group="data"))
    size = size_gib << 30
    notes = {
        "personality": mode,
        "namespace GiB": size_gib,
        "DRAM for struct pages (GiB)": round(dram / (1 << 30), 3),
        "DRAM per TiB of pmem (GiB)": round(dram * 1024 / size, 3),
        "pmem reserved for struct pages (GiB)": round(reserved / (1 << 30), 3),
        "capacity lost %": round(100 * (size - usable) / size, 3),
        "struct page lives in": home.where,
        "pin for DMA": "yes" if pgmap.memmap.can_pin else "no (no struct page)",
        "per-4K page state": ("yes" if pgmap.memmap.per_page_state
                              else "no (shared tails)" if pgmap.memmap.struct_pages
                              else "no (no struct page)"),
        "struct pages created": len(pgmap.pages),
    }
    return Outcome(checks, (), notes)


# -- the catalogue ----------------------------------------------------------------------


@attrs.frozen(slots=True)
class Builtin:
    """A named experiment with defaults; ``needs`` names what is missing when it
    cannot run yet: ``((seam, issue), ...)``."""

    name: str
    summary: str
    workload: Workload | None = None
    base: MachineConfig = attrs.field(factory=MachineConfig)
    vary: dict[str, tuple[Any, ...]] = attrs.field(factory=dict)
    seeds: int = 1
    params: dict[str, Any] = attrs.field(factory=dict)
    headline: str = ""
    needs: tuple[tuple[str, int], ...] = ()

    @property
    def available(self) -> bool:
        return self.workload is not None

    def unavailable_reason(self) -> str:
        have = {s.name for s in all_seams()}
        parts = []
        for s, issue in self.needs:
            if s in have:
                parts.append(f"seam {s!r} (registered now) and a workload for it, which is "
                             "not written yet (issue 7)")
            else:
                parts.append(f"seam {s!r}, not available yet (issue {issue})")
        return f"experiment {self.name!r} needs " + "; and ".join(parts)

    def experiment(self, *, vary: Mapping[str, Iterable[Any]] | None = None,
                   seeds: int | Iterable[int] | None = None) -> Experiment:
        if self.workload is None:
            raise NotAvailableYet(self.unavailable_reason())
        exp = Experiment(self.name, self.workload, self.base, self.vary,
                         list(range(self.seeds)), self.params, description=self.summary,
                         headline=self.headline)
        if isinstance(seeds, int):
            if seeds < 1:
                raise InvalidArgument(f"seeds must be at least 1, not {seeds}")
            seeds = range(seeds)
        return exp.with_overrides(vary=vary, seeds=seeds)


SMALL = MachineConfig(dimms=1, dimm_size=64 * MiB, label_size=128 * KiB, dram_size=1 << 30)
# 64 TiB of pmem (plus room for the 16 MiB region alignment) and 2 TiB of DRAM, so memmap
# in DRAM fits even for the largest namespace; sparse media makes this free.
HUGE = MachineConfig(dimms=1, dimm_size=(64 << 40) + 64 * MiB, label_size=128 * KiB,
                     dram_size=2 << 40)

BUILTINS: dict[str, Builtin] = {b.name: b for b in (
    Builtin(
        "persistence",
        "seam persistence (adr, eadr, flush-hint) under raw-pmem block writes and "
        "application stores through a mapping, then a power failure: what survives, "
        "what tears",
        persistence_workload, SMALL,
        {"persistence": ("adr", "eadr", "flush-hint"), "crash": ("nothing", "random")},
        seeds=4,
        headline="""What to look for: FUA and flushed writes survive on all three (pmem's
flush writes the flush hint). eadr keeps application stores even without clwb; adr loses
what was not written back and fenced; flush-hint also loses what the application wrote
back and fenced but never drained through the hint (data.expected violations: user-space
flushing is not enough without ADR). A block write with no FUA or flush is NT stores
without a fence: lost everywhere, eadr included.""",
    ),
    Builtin(
        "crash-states",
        "distinct crash images left by N in-flight 4 KiB writes, against the 2^N a "
        "sector-atomic device allows: why exhaustive enumeration explodes and random "
        "crashes are sampled",
        crash_states_workload, SMALL, {"writes": (1, 2, 4, 8)}, seeds=2,
        headline="""What to look for: each 4 KiB write is 64 independent cache lines of 8
atomic words each, so it alone can leave 9^64 (about 10^61) images; N writes multiply.
No enumeration can cover that: tests sample random crashes, and BTT exists to shrink the
answer to old-or-new per sector (2^N).""",
    ),
    Builtin(
        "btt-remap",
        "btt_remap variants (deny-dax, unsafe, notify-holder, defer) under a workload "
        "mixing mmap stores and block writes to the same blocks",
        btt_remap_workload, SMALL,
        {"btt_remap": ("deny-dax", "unsafe", "notify-holder", "defer")},
        headline="""What to look for: unsafe corrupts (the stores after a block write go to
the block the BTT just freed: lost for the file, and the next write that reuses it hands
them to another LBA); notify-holder loses nothing (the filesystem unmaps when told, then
refaults onto the new block) at the price of a notification and a refault per write;
defer loses nothing without a crash but gives up sector atomicity for mapped blocks
(their writes go in place); deny-dax (Linux) is safe because there is no DAX at all.""",
    ),
    Builtin(
        "memmap",
        "memmap variants (none, ram, pmem, compound) across namespace sizes from 16 GiB "
        "to 64 TiB: DRAM spent, pmem lost, DMA pinning, struct page cost",
        memmap_workload, HUGE,
        {"variant": ("none", "ram", "pmem", "compound"), "size_gib": (16, 1024, 65536)},
        headline="""What to look for: struct pages cost 64 bytes per 4 KiB page. In DRAM
(ram) that is 16 GiB per TiB, 1 TiB of DRAM for 64 TiB of pmem; on the device (pmem,
ndctl's default) it costs no DRAM but 1.56 % of the namespace; compound pages (device-dax)
share tail struct pages and cut DRAM by 75 % at 2 MiB alignment, at the price of per-4K
state; none costs nothing and cannot pin pages for DMA.""",
    ),
    Builtin(
        "direct-access",
        "direct_access variants under truncate with a pinned page, a media error inside "
        "a mapped range, and DAX over BTT",
        direct_access_workload, SMALL,
        {"direct_access": ("bdev-2016", "dax-ops", "widened"), "scenario": SCENARIOS},
        headline="""What to look for: under bdev-2016 truncate cannot see a page pinned for
DMA, frees its block, and the DMA lands in the next file that gets it; dax-ops and widened
find the busy page and refuse (or wait). A media error: bdev-2016's kernel copy is not
machine-check safe (a panic) and nobody is told, so the process consumes the poison;
dax-ops tells the one device holder and widened each mapping's holder, the filesystem
pulls the mapping, and the process gets SIGBUS without touching the poison, while read(2)
comes back short. DAX over BTT exists only if the btt_remap variant allows it
(--vary btt_remap=...).""",
    ),
    Builtin(
        "fs-paths",
        "one file on extentfs through the page cache and through DAX: copies per byte, "
        "pmem traffic, DRAM held, faults and modeled time for write, cold read, re-read "
        "and mmap",
        fs_paths_workload, SMALL, {"dax": ("never", "always"), "io_kib": (4, 2048)},
        headline="""What to look for: the page cache copies every byte twice (user <-> DRAM,
DRAM <-> pmem) and holds the file in DRAM pages; DAX copies once and holds nothing. The
page cache wins re-reads (DRAM speed, no pmem traffic) and loses the cold read and the
write; DAX pays pmem latency on every read, and its mapping is the pmem itself: 2 MiB entries
where the extents line up (a file written 2 MiB at a time), 4 KiB where they do not (one
written 4 KiB at a time starts a block past a 2 MiB boundary here: alignment is the
filesystem's job), while a page-cache mapping always takes one 4 KiB fault per page.""",
    ),
    Builtin(
        "persistence-stack",
        "seam persistence (adr, eadr, flush-hint) one layer up: a BTT namespace and "
        "extentfs (DAX and page cache) written with and without fsync/msync, then a "
        "power failure",
        persistence_stack_workload, SMALL,
        {"persistence": ("adr", "eadr", "flush-hint"), "stack": STACKS},
        seeds=2,
        headline="""What to look for: fsync and msync keep data on every platform and stack.
BTT writes are durable when they complete, flush or not. Without fsync, write(2) is lost
on the page cache (it never left DRAM) and torn on DAX (its non-temporal stores were not
fenced); a store through a DAX mapping without msync survives only under eadr, where the
CPU caches are inside the persistence domain.""",
    ),
    Builtin(
        "memory-tiers",
        "pmem_tier variants (kmem-numa, swap, pagecache-ext, dax-cache): pmem as a NUMA "
        "tier, a swap area, a page-cache extension or a DAX block cache, under one "
        "workload three times the size of DRAM",
        memory_tiers_workload, tiers_machine_config(),
        {"pmem_tier": ("kmem-numa", "swap", "pagecache-ext", "dax-cache")},
        headline="""What to look for: kmem-numa has no major faults at all (cold pages are
used in place on pmem, hot ones promoted back) and the least modeled time, at the price of
NUMA hint faults, 1.56 % of the pmem in DRAM for struct pages, and stores that reach pmem
in place. swap, pagecache-ext and dax-cache fault exactly as often as each other (mm is the
same); they differ in where a fault is served from: swap serves anonymous pages from pmem
and file pages from the disk, pagecache-ext the reverse, dax-cache both from pmem through
the block layer (after the cache has warmed up, no disk reads). Swap on a sector namespace
(--vary swap_mode=sector) adds the BTT's fences and metadata writes for atomicity swap
never needs.""",
    ),
)}


def get(name: str) -> Builtin:
    key = name.replace("_", "-")
    try:
        return BUILTINS[key]
    except KeyError:
        raise InvalidArgument(f"no built-in experiment {name!r}; experiments: "
                              f"{', '.join(BUILTINS)}") from None


def list_experiments() -> list[Builtin]:
    return list(BUILTINS.values())


def run(name: str, *, vary: Mapping[str, Iterable[Any]] | None = None,
        seeds: int | Iterable[int] | None = None, jobs: int | None = None,
        scheduler: str | None = None, executor: Executor | None = None,
        progress: bool | ProgressFn | None = None, all_rows: bool = False) -> Comparison:
    """Run built-in experiment ``name`` (``jobs``/``scheduler``/``executor`` as in
    :func:`~nvdimm.explore.sweep.sweep`) and compare its configurations."""
    exp = get(name).experiment(vary=vary, seeds=seeds)
    results = sweep(exp, jobs=jobs, scheduler=scheduler, executor=executor, progress=progress)
    return compare(results, all_rows=all_rows)
