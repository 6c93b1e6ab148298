"""pmem as a tier of memory: one workload, every shape of the ``pmem_tier`` seam.

Three parts:

* :class:`TierWorkload`, the workload generator: a working set ``ws_ratio`` times the
  DRAM, ``file_fraction`` of it pages of a file on the slow disk (mapped, read through
  the page cache), the rest anonymous memory. A warm-up touches every page once (the
  program initialises its heap and reads its file; not measured), then come
  ``accesses`` accesses of ``access_size`` bytes whose pages follow a Zipf law of
  exponent ``skew`` (0: uniform; larger: a smaller hot set), ``write_ratio`` of them
  stores. With ``phases`` > 1 the ranking changes between phases: the coldest pages of
  one phase become the hottest of the next (pages that turn hot again). Everything is
  drawn from one seeded generator: the same seed gives the same accesses and data.
* :func:`build`, the wiring: a slow disk (memory-backed null_blk) holding the file and a
  swap area, the DRAM node (whatever DRAM the machine has left once everything else is
  set up), and the pmem in the shape the variant ``needs``: a kmem NUMA node made from a
  devdax namespace, a swap area on a raw or sector (BTT) namespace, a cleancache or a
  DAX block cache on a raw namespace reached through the ``direct_access`` seam. Every
  variant gets the same amount of pmem (``pmem_size``).
* :func:`run` (one variant on one machine: warm-up, measured accesses, then everything
  read back and the invariants checked), :func:`compare_variants` / :func:`table`
  (every variant on fresh machines, side by side), and :func:`memory_tiers_workload`,
  the workload of ``nvdimm explore memory-tiers``::

      from nvdimm.explore.tiers import compare_variants, table
      print(table(compare_variants(["kmem-numa", "swap", "pagecache-ext", "dax-cache"])))

Modeled time (:class:`TierCost`) prices each medium with its own preset: DRAM accesses
with ``dram``, pmem loads, stores and fences with ``optane``
(:mod:`nvdimm.explore.cost`), disk I/O with a disk preset (:data:`DISKS`), plus a fixed
software cost per page fault. It is a model output, labelled "modeled", never wall-clock.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable, Iterator, Mapping
from itertools import accumulate
from typing import Any

import attrs

from block.genhd import Gendisk
from drivers.dax.device import DaxDevice
from drivers.dax.kmem import MEMMAP_PLACES, MEMORY_BLOCK_SIZE, KmemDevice, KmemDriver
from drivers.dax_cache import DaxCache
from drivers.direct_access import dax_provider
from drivers.null_blk import NullBlk
from mm.cleancache import Cleancache
from mm.memmap import PAGE_SIZE
from mm.numa import MEMTIER_ADISTANCE_DRAM, DramFrames, MemoryTiers, MemPolicy, NumaNode
from mm.reclaim import NumaBalancing
from mm.swap import SwapDevice
from mm.tier import ANON, FILE, NEEDS, WMARK_HIGH, PageKey, PmemTier, TieredMemory, TierEnv
from nvdimm.errors import InvalidArgument
from nvdimm.explore.cost import CostEstimate, CostPreset, estimate, format_ns
from nvdimm.explore.experiment import Check, Outcome
from nvdimm.machine import Machine, MachineConfig
from nvdimm.seams import seam
from nvdimm.units import GiB, KiB, MiB

REGION_ALIGN = 16 * MiB  # namespace sizes are multiples of the region alignment
SWAP_MODES = ("raw", "sector")

# -- the workload -------------------------------------------------------------------------

Op = tuple[PageKey, bool, int, bytes | None]
"""One access: page, is-a-store, offset in the page, the bytes stored (None: a load)."""


def page_tag(key: PageKey, seq: int, size: int) -> bytes:
    """``size`` bytes naming the page and the store (``seq`` 0: the file's own data)."""
    kind = 1 if key.kind == ANON else 2
    word = struct.pack("<QQ", (kind << 56) | key.pgoff, seq)
    return (word * (size // len(word) + 1))[:size]


@attrs.frozen(slots=True)
class TierWorkload:
    """A memory-hungry workload (see the module docstring); sizes in 4 KiB pages."""

    dram_pages: int
    ws_ratio: float = 3.0
    file_fraction: float = 0.5
    skew: float = 0.99
    write_ratio: float = 0.3
    accesses: int = 200_000
    phases: int = 2
    access_size: int = 64
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        if self.dram_pages < 1:
            raise InvalidArgument(f"dram_pages must be at least 1, not {self.dram_pages}")
        if self.ws_ratio <= 0:
            raise InvalidArgument(f"ws_ratio must be positive, not {self.ws_ratio}")
        if not 0 <= self.file_fraction <= 1 or not 0 <= self.write_ratio <= 1:
            raise InvalidArgument("file_fraction and write_ratio are fractions in [0, 1]")
        if self.skew < 0:
            raise InvalidArgument(f"skew is a Zipf exponent >= 0, not {self.skew}")
        if self.accesses < 0 or self.phases < 1:
            raise InvalidArgument("accesses must be >= 0 and phases >= 1")
        if (self.access_size <= 0 or PAGE_SIZE % self.access_size
                or self.access_size % 16):
            raise InvalidArgument(f"access_size must divide a page and be a multiple of 16 "
                                  f"bytes, not {self.access_size}")
        if self.pages < 1:
            raise InvalidArgument("the working set is empty")

    @property
    def pages(self) -> int:
        return max(1, round(self.dram_pages * self.ws_ratio))

    @property
    def file_pages(self) -> int:
        return round(self.pages * self.file_fraction)

    @property
    def anon_pages(self) -> int:
        return self.pages - self.file_pages

    def keys(self) -> list[PageKey]:
        return ([PageKey(ANON, i) for i in range(self.anon_pages)]
                + [PageKey(FILE, i) for i in range(self.file_pages)])

    def warmup(self) -> Iterator[Op]:
        """The first touch of every page, in order: the program initialises its heap
        (a store to each anonymous page) and reads its file once."""
        size = self.access_size
        for key in self.keys():
            if key.kind == ANON:
                yield key, True, 0, page_tag(key, key.pgoff + 1, size)
            else:
                yield key, False, 0, None

    def _order(self, rng: random.Random) -> list[int]:
        order = list(range(self.pages))
        rng.shuffle(order)
        return order

    def _shift(self, phase: int) -> int:
        # Phase p ranks pages by the order shifted by p * n / phases: the coldest pages
        # of one phase are the hottest of the next.
        return phase * self.pages // self.phases

    def hottest(self, phase: int, k: int) -> list[PageKey]:
        """The ``k`` pages with the most weight in ``phase`` (0-based), hottest first."""
        if not 0 <= phase < self.phases:
            raise InvalidArgument(f"phase {phase} is not in [0, {self.phases})")
        keys = self.keys()
        order = self._order(random.Random(self.seed))
        shift = self._shift(phase)
        return [keys[order[(r + shift) % self.pages]] for r in range(min(k, self.pages))]

    def ops(self) -> Iterator[Op]:
        """The skewed accesses that follow the warm-up (seeded)."""
        rng = random.Random(self.seed)
        keys = self.keys()
        size = self.access_size
        seq = self.anon_pages  # store tags continue after the warm-up's
        n = len(keys)
        order = self._order(rng)
        cum = list(accumulate(1.0 / (r + 1) ** self.skew for r in range(n)))
        slots = PAGE_SIZE // size
        per_phase, extra = divmod(self.accesses, self.phases)
        for phase in range(self.phases):
            shift = self._shift(phase)
            count = per_phase + (1 if phase < extra else 0)
            for rank in rng.choices(range(n), cum_weights=cum, k=count):
                key = keys[order[(rank + shift) % n]]
                offset = rng.randrange(slots) * size
                if rng.random() < self.write_ratio:
                    seq += 1
                    yield key, True, offset, page_tag(key, seq, size)
                else:
                    yield key, False, offset, None


# -- the cost of a run ------------------------------------------------------------------------

SSD = CostPreset(
    name="ssd",
    label="a NAND-flash SSD (assumed round figures, not from the reference)",
    read_latency_ns=80_000.0,
    read_bandwidth_gbs=2.0,
    write_bandwidth_gbs=1.0,
    fence_ns=0.0,
    flush_hint_ns=0.0,
    source="""An assumption, not a measurement from the project's reference: a datacenter
    NAND SSD reads a 4 KiB block in about 80 microseconds and streams about 2 GB/s read,
    1 GB/s write. Writes are posted (the cost model charges bandwidth only).""",
)

OPTANE_SSD = CostPreset(
    name="optane-ssd",
    label="an Optane SSD (Intel's idle read latency, ../shared/reference section 8.2)",
    read_latency_ns=10_000.0,
    read_bandwidth_gbs=2.5,
    write_bandwidth_gbs=2.2,
    fence_ns=0.0,
    flush_hint_ns=0.0,
    source="""Read latency from Intel's pre-launch figure quoted in the reference (section
    8.2: about 10 microseconds for an Optane SSD); the bandwidths are assumed round
    figures.""",
)

DISKS: dict[str, CostPreset] = {p.name: p for p in (SSD, OPTANE_SSD)}

#: Software cost of one page fault (trap, handler, return), excluding the I/O or copy
#: it waits for: an assumed order of magnitude (about a microsecond), not a measurement.
FAULT_NS = 1_000.0


def disk_preset(name: str) -> CostPreset:
    try:
        return DISKS[name]
    except KeyError:
        raise InvalidArgument(f"no disk preset {name!r}; presets: {', '.join(DISKS)}") from None


@attrs.frozen(slots=True)
class TierCost:
    """Modeled time of a run, per medium (nanoseconds, modeled)."""

    dram: CostEstimate
    pmem: CostEstimate
    disk: CostEstimate
    faults: int
    fault_ns: float

    @property
    def total_ns(self) -> float:
        return (self.dram.modeled_ns + self.pmem.modeled_ns + self.disk.modeled_ns
                + self.faults * self.fault_ns)

    @classmethod
    def of(cls, diff: Mapping[str, int | float], disk: CostPreset,
           fault_ns: float = FAULT_NS) -> TierCost:
        def media(m: str) -> dict[str, int | float]:
            return {"app.loads": diff.get(f"media.{m}.reads", 0),
                    "app.bytes_loaded": diff.get(f"media.{m}.bytes_read", 0),
                    "cpu.bytes_stored": diff.get(f"media.{m}.bytes_written", 0)}

        # pmem stores are what the CPU stored to pmem (BTT and cache metadata included),
        # with the fences and flush hints the drivers issued.
        pmem = {**media("pmem"), "cpu.bytes_stored": diff.get("cpu.bytes_stored", 0),
                "cpu.fences": diff.get("cpu.fences", 0),
                "cpu.flush_hints": diff.get("cpu.flush_hints", 0)}
        faults = int(sum(diff.get(f"tier.faults.{k}", 0) for k in ("minor", "major", "hint")))
        return cls(estimate(media("dram"), "dram"), estimate(pmem, "optane"),
                   estimate(media("disk"), disk), faults, fault_ns)


# -- wiring ---------------------------------------------------------------------------------


@attrs.define(slots=True, eq=False)
class TierSetup:
    """One variant wired on one machine."""

    variant: str
    tier: PmemTier
    env: TierEnv
    slow: NullBlk
    pmem: Any = None  # what the variant was given
    kmem: KmemDriver | None = None
    kmem_device: KmemDevice | None = None
    cache: DaxCache | None = None
    swap: SwapDevice | None = None

    @property
    def dram_node(self) -> NumaNode:
        return self.env.tiers.node(self.env.local)

    def pmem_pages_used(self) -> int:
        """Pages of workload data pmem holds now, whatever its shape."""
        if self.kmem_device is not None:
            return self.kmem_device.node.used
        if self.swap is not None:
            return self.swap.used
        if isinstance(self.pmem, Cleancache):
            return len(self.pmem)
        if self.cache is not None:
            return self.cache.cached
        return 0

    def check(self) -> list[str]:
        bad = list(self.tier.check())
        if self.kmem is not None:
            bad += self.kmem.check()
        if self.cache is not None:
            bad += self.cache.check()
        return bad


def _ns_size(nbytes: int) -> int:
    return -(-nbytes // REGION_ALIGN) * REGION_ALIGN


def machine_config(dram_size: int = 64 * MiB, pmem_size: int = 256 * MiB,
                   seed: int = 0) -> MachineConfig:
    """A machine for the tier experiments: ``dram_size`` of DRAM and pmem enough for any
    variant's namespace (media is sparse, so the room costs nothing)."""
    dimm = _ns_size(pmem_size + MEMORY_BLOCK_SIZE + 64 * MiB) + 64 * MiB
    return MachineConfig(dimms=1, dimm_size=max(dimm, 1 * GiB), label_size=128 * KiB,
                         dram_size=dram_size, tracking=False, seed=seed)


def build(m: Machine, variant: str, workload: TierWorkload, *, pmem_size: int = 256 * MiB,
          swap_mode: str = "raw", kmem_memmap: str = "ram",
          memory_block_size: int = MEMORY_BLOCK_SIZE,
          balancing: NumaBalancing | None = None, policy: MemPolicy | None = None,
          demotion: bool = True) -> TierSetup:
    """Wire ``variant`` of the ``pmem_tier`` seam on machine ``m`` (labels initialised)
    for ``workload``: the slow disk, the DRAM node, and ``pmem_size`` of pmem in the
    shape the variant needs (kmem-numa: whole memory blocks of ``memory_block_size``).
    The DRAM node gets whatever DRAM is left. ``policy`` places new pages (default: the
    local node); ``demotion`` is ``demotion_enabled``; ``balancing`` (kmem-numa) decides
    promotion."""
    info = seam("pmem_tier").info(variant)  # an unknown variant names the known ones
    cls: type[TieredMemory] = info.cls
    needs = getattr(cls, "needs", "nothing")
    if needs not in NEEDS:
        raise InvalidArgument(f"pmem_tier {variant!r} needs {needs!r}, which this wiring "
                              f"cannot provide ({', '.join(NEEDS)})")
    if swap_mode not in SWAP_MODES:
        raise InvalidArgument(f"swap_mode is 'raw' or 'sector' (BTT), not {swap_mode!r}")
    if pmem_size < REGION_ALIGN or pmem_size % REGION_ALIGN:
        raise InvalidArgument(f"pmem_size must be a positive multiple of 16 MiB, not "
                              f"{pmem_size}")
    if needs == "numa-node" and pmem_size % memory_block_size:
        raise InvalidArgument(f"kmem-numa onlines whole memory blocks: pmem_size "
                              f"{pmem_size >> 20} MiB is not a multiple of the "
                              f"{memory_block_size >> 20} MiB block size")
    if kmem_memmap not in MEMMAP_PLACES:
        raise InvalidArgument(f"kmem_memmap is where kmem's struct pages live: "
                              f"{' or '.join(MEMMAP_PLACES)}, not {kmem_memmap!r}")
    metrics, trace = m.metrics, m.trace
    file_bytes = workload.file_pages * PAGE_SIZE
    swap_bytes = (workload.anon_pages + workload.anon_pages // 8 + 2) * PAGE_SIZE
    slow = NullBlk("nullb0", file_bytes + swap_bytes, metrics, trace)
    for i in range(workload.file_pages):  # the file's contents, before the run
        key = PageKey(FILE, i)
        slow.disk.write(i * PAGE_SIZE, page_tag(key, 0, PAGE_SIZE))
    # Node 0 first, so kmem's node is another; its size is known once the rest is set up.
    dram = DramFrames(m.mm.pages, 1, metrics)
    tiers = MemoryTiers(demotion_enabled=demotion)
    tiers.add(NumaNode(0, dram, has_cpu=True, adistance=MEMTIER_ADISTANCE_DRAM))
    setup_kw: dict[str, Any] = {}
    pmem: Any = None
    disk: Gendisk = slow.disk
    if needs == "numa-node":
        kmem = KmemDriver(m.mm, _pagemaps(m), tiers, memory_block_size=memory_block_size)
        ns = m.bus.create_namespace(mode="devdax", name="kmem", map="mem", align=2 * MiB,
                                    size=_ns_size(pmem_size + memory_block_size))
        dev = ns.device
        assert isinstance(dev, DaxDevice)
        setup_kw["kmem"] = kmem
        # The data area starts past the info block, off a block boundary: trim to whole
        # blocks, and online exactly pmem_size of them.
        kd = kmem.probe(dev, memmap=kmem_memmap, trim=True, online=False)
        for b in kd.blocks[:pmem_size // memory_block_size]:
            kmem.online_block(b.name)
        setup_kw["kmem_device"] = kd
        pmem = kd.node
    elif needs == "swap-device":
        # A BTT keeps a little of its namespace for metadata; the swap area is pmem_size
        # either way, so raw and sector swap the same pages.
        extra = pmem_size // 32 + 8 * KiB if swap_mode == "sector" else 0
        ns = m.bus.create_namespace(mode=swap_mode, size=_ns_size(pmem_size + extra),
                                    name="swap")
        pdisk = m.block_device(ns.dev)
        sw = SwapDevice(pdisk, metrics, trace, size=min(pmem_size, pdisk.size), priority=10,
                        medium="pmem", synchronous=True)
        sw.mkswap(label="pmem-swap")
        sw.swapon()
        setup_kw["swap"] = sw
        pmem = sw
    elif needs in ("page-frames", "block-cache"):
        ns = m.bus.create_namespace(mode="raw", size=_ns_size(pmem_size), name="tier")
        provider = dax_provider(ns.device, "dax-ops")
        if needs == "page-frames":
            pmem = Cleancache(provider, pmem_size // PAGE_SIZE, metrics, trace)
        else:
            cache = DaxCache("dm-0", slow.disk, provider, pmem_size, metrics, trace)
            setup_kw["cache"] = cache
            disk = cache.disk
            pmem = disk
    disk_swap = SwapDevice(disk, metrics, trace, start=file_bytes, size=swap_bytes,
                           name=f"{disk.name}-swap")
    disk_swap.mkswap(label="disk-swap")
    disk_swap.swapon()
    dram.limit = m.platform.dram.free // PAGE_SIZE
    if dram.limit < 2 * WMARK_HIGH:
        raise InvalidArgument(f"only {dram.limit} pages of DRAM are left for the workload "
                              f"once {variant} is set up; give the machine more DRAM")
    env = TierEnv(tiers, disk, workload.file_pages, [disk_swap], metrics, trace)
    kw: dict[str, Any] = {"env": env, "pmem": pmem}
    if policy is not None:
        kw["policy"] = policy
    if needs == "numa-node" and balancing is not None:
        kw["balancing"] = balancing
    tier = seam("pmem_tier").create(variant, **kw)
    return TierSetup(variant, tier, env, slow, pmem, **setup_kw)


def _pagemaps(m: Machine) -> Any:
    drv = m.drivers.drivers.get("devdax")
    pagemaps = getattr(drv, "pagemaps", None)
    if pagemaps is None:
        raise InvalidArgument("this machine has no device-dax driver to take a range from")
    return pagemaps


# -- running ----------------------------------------------------------------------------------


@attrs.frozen(slots=True)
class TierRun:
    """What one variant did with the workload."""

    variant: str
    diff: dict[str, int | float]
    census: dict[str, int]
    cost: TierCost
    dram_pages: int
    dram_used: int
    pmem_used: int
    memmap_dram: int
    violations: tuple[str, ...]
    mismatches: int
    checked: int

    def row(self) -> dict[str, Any]:
        """The metrics, named for a table (see :func:`table`)."""
        d = self.diff

        def g(k: str) -> int:
            return int(d.get(k, 0))

        acc = max(1, g("tier.accesses"))
        pmem_data = g("media.pmem.bytes_written")
        return {
            "DRAM pages for the workload": self.dram_pages,
            "DRAM for struct pages (KiB)": self.memmap_dram // KiB,
            "DRAM pages used": self.dram_used,
            "pmem pages used": self.pmem_used,
            "accesses": g("tier.accesses"),
            "hits in DRAM %": round(100 * g("tier.hits.dram") / acc, 1),
            "hits in pmem, in place %": round(100 * g("tier.hits.pmem") / acc, 1),
            "faults: minor": g("tier.faults.minor"),
            "faults: major": g("tier.faults.major"),
            "faults: NUMA hint": g("tier.faults.hint"),
            "pages demoted": g("tier.demoted"),
            "pages promoted": g("tier.promoted"),
            "pages swapped out": g("tier.swapped_out"),
            "pages swapped in": g("tier.swapped_in"),
            "file pages dropped": g("tier.file_dropped"),
            "pmem cache hits": g("tier.cleancache_hits") + g("dax_cache.read_hits"),
            "disk reads": g("media.disk.reads"),
            "disk MiB written": round(g("media.disk.bytes_written") / MiB, 2),
            "bytes moved (MiB)": round(g("tier.bytes_moved") / MiB, 2),
            "pmem data written (MiB)": round(pmem_data / MiB, 2),
            "pmem media written (MiB)": round(g("cpu.bytes_stored") / MiB, 2),
            "pmem fences": g("cpu.fences"),
            "modeled time (ms)": round(self.cost.total_ns / 1e6, 2),
            "modeled ns per access": round(self.cost.total_ns / acc),
            "invariant violations": len(self.violations),
            "read-back mismatches": self.mismatches,
        }


def apply(tier: PmemTier, ops: Iterable[Op], size: int,
          shadow: dict[tuple[PageKey, int], bytes] | None = None) -> int:
    """Run ``ops`` on ``tier`` (loads of ``size`` bytes); record what was stored in
    ``shadow``. Returns the number of accesses."""
    n = 0
    read, write = tier.read, tier.write
    for key, _store, offset, data in ops:  # data is None exactly for loads
        if data is not None:
            write(key, offset, data)
            if shadow is not None:
                shadow[key, offset] = data
        else:
            read(key, offset, size)
        n += 1
    return n


def verify(tier: PmemTier, workload: TierWorkload,
           shadow: Mapping[tuple[PageKey, int], bytes]) -> tuple[bytes, bytes, bytes, bytes]:
    """Read back what the workload stored, and the first bytes of every file page (the
    file's own data where nothing was stored): ``(anon expected, anon found, file
    expected, file found)``."""
    size = workload.access_size
    ae: list[bytes] = []
    af: list[bytes] = []
    fe: list[bytes] = []
    ff: list[bytes] = []
    for (key, offset), data in sorted(shadow.items()):
        if key.kind == ANON:
            ae.append(data)
            af.append(tier.read(key, offset, size))
    stored: dict[int, list[int]] = {}
    for key, offset in shadow:
        if key.kind == FILE:
            stored.setdefault(key.pgoff, []).append(offset)
    for i in range(workload.file_pages):
        key = PageKey(FILE, i)
        offsets = sorted({0, *stored.get(i, ())})
        for offset in offsets:
            want = shadow.get((key, offset))
            fe.append(want if want is not None else page_tag(key, 0, PAGE_SIZE)[:size])
            ff.append(tier.read(key, offset, size))
    return b"".join(ae), b"".join(af), b"".join(fe), b"".join(ff)


def run(m: Machine, variant: str, workload: TierWorkload, *, disk: str = "ssd",
        verify_data: bool = True, **build_kw: Any) -> tuple[TierRun, TierSetup, list[Check]]:
    """Wire ``variant`` on ``m``, run ``workload``, measure; then read everything back."""
    preset = disk_preset(disk)
    setup = build(m, variant, workload, **build_kw)
    shadow: dict[tuple[PageKey, int], bytes] = {}
    apply(setup.tier, workload.warmup(), workload.access_size, shadow)
    before = m.metrics.snapshot()  # measured: what follows the warm-up
    apply(setup.tier, workload.ops(), workload.access_size, shadow)
    diff = m.metrics.diff(before)
    census = setup.tier.census()
    violations = tuple(setup.check())
    kd = setup.kmem_device
    dram_node = setup.dram_node
    checks: list[Check] = []
    mismatches = checked = 0
    if verify_data:
        ae, af, fe, ff = verify(setup.tier, workload, shadow)
        checks = [Check("anon pages read back", ae, af), Check("file pages read back", fe, ff)]
        size = workload.access_size
        for e, f in ((ae, af), (fe, ff)):
            checked += len(e) // size
            mismatches += sum(1 for i in range(0, len(e), size)
                              if e[i:i + size] != f[i:i + size])
        violations += tuple(setup.check())
    result = TierRun(variant, dict(diff), census, TierCost.of(diff, preset),
                     dram_node.capacity, census.get("node0_used", dram_node.used),
                     setup.pmem_pages_used(), kd.cost.dram_bytes if kd is not None else 0,
                     violations, mismatches, checked)
    return result, setup, checks


VARIANTS = ("kmem-numa", "swap", "pagecache-ext", "dax-cache")


def fresh_machine(dram_size: int = 64 * MiB, pmem_size: int = 256 * MiB,
                  seed: int = 0) -> Machine:
    """A booted machine with labels, its trace off (runs are long, events many)."""
    m = Machine.create(machine_config(dram_size, pmem_size, seed))
    m.trace.on = False
    m.init_labels()
    return m


def compare_variants(variants: Iterable[str] = VARIANTS, *, dram_size: int = 64 * MiB,
                     pmem_size: int = 256 * MiB, seed: int = 0, disk: str = "ssd",
                     swap_mode: str = "raw", kmem_memmap: str = "ram",
                     memory_block_size: int = MEMORY_BLOCK_SIZE, demotion: bool = True,
                     **workload_kw: Any) -> dict[str, TierRun]:
    """Each variant on a fresh machine with the same DRAM, pmem and workload
    (``workload_kw``: :class:`TierWorkload` fields; the rest as for :func:`build`)."""
    out: dict[str, TierRun] = {}
    for v in variants:
        m = fresh_machine(dram_size, pmem_size, seed)
        wl = TierWorkload(dram_pages=dram_size // PAGE_SIZE, seed=seed, **workload_kw)
        out[v] = run(m, v, wl, disk=disk, pmem_size=pmem_size, swap_mode=swap_mode,
                     kmem_memmap=kmem_memmap, memory_block_size=memory_block_size,
                     demotion=demotion)[0]
    return out


def table(runs: Mapping[str, TierRun]) -> str:
    """The metrics of each run side by side, one column per variant."""
    first = next(iter(runs.values()))
    return rows_table({k: r.row() for k, r in runs.items()}, disk=first.cost.disk.preset,
                      fault_ns=first.cost.fault_ns)


def rows_table(rows: Mapping[str, Mapping[str, Any]], *, disk: str = "ssd",
               fault_ns: float = FAULT_NS) -> str:
    """Rows (:meth:`TierRun.row`, or a run's notes) side by side, one column each."""
    if not rows:
        raise InvalidArgument("no runs to tabulate")
    names = list(next(iter(rows.values())))
    lw = max(len(n) for n in names) + 2
    widths = [max(len(k), *(len(_cell(rows[k].get(n))) for n in names)) for k in rows]
    out = [" " * lw + "  ".join(k.rjust(w) for k, w in zip(rows, widths, strict=True))]
    for n in names:
        out.append(n.ljust(lw) + "  ".join(_cell(rows[k].get(n)).rjust(w)
                                           for k, w in zip(rows, widths, strict=True)))
    out.append(f"(modeled time: DRAM 'dram', pmem 'optane', disk '{disk}' presets plus "
               f"{format_ns(fault_ns)} per fault; a model output, not wall-clock)")
    return "\n".join(out)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.2f}".rstrip("0").rstrip(".") if v % 1 else f"{int(v):,}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


# -- the built-in experiment ---------------------------------------------------------------


def memory_tiers_workload(m: Machine, pmem_tier: str = "kmem-numa", ws_ratio: float = 3.0,
                          skew: float = 0.99, file_fraction: float = 0.5,
                          write_ratio: float = 0.3, accesses: int = 200_000, phases: int = 2,
                          pmem_mib: int = 256, swap_mode: str = "raw",
                          kmem_memmap: str = "ram", mempolicy: str = "default",
                          demotion: bool = True, promote_threshold: int = 2,
                          disk: str = "ssd") -> Outcome:
    """One ``pmem_tier`` variant under the tier workload: a working set ``ws_ratio``
    times the machine's DRAM (``dram_size``), Zipf ``skew``, ``file_fraction`` file
    pages, ``write_ratio`` stores, ``phases`` hot sets; ``pmem_mib`` MiB of pmem in the
    variant's shape (swap on a ``swap_mode`` namespace; kmem struct pages in
    ``kmem_memmap``); new pages placed by ``mempolicy`` (``default``,
    ``preferred=1``, ``bind=0``, ``interleave=0,1``); ``demotion`` is
    demotion_enabled; kmem-numa promotes a page accessed ``promote_threshold`` times in
    a scan period; disk I/O priced as ``disk``. Notes: the metrics table's rows;
    checks: everything the workload stored, read back."""
    seam("pmem_tier").info(pmem_tier)  # unknown variant: say which there are, first
    m.trace.on = False  # hundreds of thousands of accesses: the trace would hold little
    wl = TierWorkload(dram_pages=m.config.dram_size // PAGE_SIZE, ws_ratio=ws_ratio,
                      file_fraction=file_fraction, skew=skew, write_ratio=write_ratio,
                      accesses=accesses, phases=phases, seed=m.config.seed)
    result, _, checks = run(m, pmem_tier, wl, disk=disk, pmem_size=pmem_mib * MiB,
                            swap_mode=swap_mode, kmem_memmap=kmem_memmap,
                            policy=MemPolicy.parse(mempolicy), demotion=demotion,
                            balancing=NumaBalancing(threshold=promote_threshold))
    return Outcome(checks, (), result.row())
