"""One simulated machine: platform + kernel subsystems, with boot, crash and reboot.

A machine is built from a :class:`MachineConfig`; the platform (DIMM media, CPU cache,
DRAM) survives crashes and reboots, the kernel objects (bus, regions, namespaces,
block devices) are rebuilt on every boot from what the media says, exactly as a real
kernel rediscovers everything from labels and info blocks.

A machine can live in a directory: ``machine.json`` (the config and the platform's
non-media state such as poison), one ``nmemN.img`` per DIMM in QEMU's backing-file
layout, and ``cpu-cache.bin`` holding stores still in flight in the CPU cache, so a
``nvdimm write`` in one command can be lost by ``nvdimm crash`` in the next.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import attrs

from block.genhd import Gendisk
from nvdimm.bus import NvdimmBus
from nvdimm.claim import DriverRegistry
from nvdimm.errors import InvalidArgument, NotFound, NvdimmError
from nvdimm.metrics import Metrics
from nvdimm.platform.crash import CrashPolicy, CrashReport
from nvdimm.platform.image import load_media, save_media
from nvdimm.platform.memctrl import DimmMedia
from nvdimm.platform.nfit import DimmInfo, Mapping, PlatformTable, SpaRange, build_table
from nvdimm.platform.platform import Platform
from nvdimm.seams import seam
from nvdimm.trace import Trace
from nvdimm.units import GiB, KiB, parse_size

CONFIG_FILE = "machine.json"
CACHE_FILE = "cpu-cache.bin"
FORMAT_VERSION = 1


@attrs.frozen(slots=True)
class MachineConfig:
    """What to build. Sizes are bytes; ``dimm_size`` is pmem capacity per DIMM (the
    image file adds the label area)."""

    dimms: int = 2
    dimm_size: int = 4 * GiB
    label_size: int = 128 * KiB
    interleave: bool = False
    persistence: str = "adr"
    tracking: bool = True
    dram_size: int = 16 * GiB
    seed: int = 0
    advertise_persistence: bool = True
    # Seam variants the kernel's filesystems use when they mount with DAX.
    direct_access: str = "dax-ops"
    btt_remap: str = "deny-dax"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MachineConfig:
        fields = {f.name for f in attrs.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise InvalidArgument(f"unknown machine config keys: {', '.join(sorted(unknown))}")
        kw = dict(d)
        for k in ("dimm_size", "label_size", "dram_size"):
            if k in kw:
                kw[k] = parse_size(kw[k])
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    def check_seams(self) -> None:
        """Every field that names a seam's variant names one that exists (InvalidArgument
        naming the variants there are, before anything is built)."""
        for name in seam_fields():
            seam(name).info(getattr(self, name))


def seam_fields() -> set[str]:
    """The MachineConfig fields that pick a seam's variant: those named after a seam."""
    from nvdimm.seams import all_seams

    return {s.name for s in all_seams()} & {f.name for f in attrs.fields(MachineConfig)}


def default_drivers() -> DriverRegistry:
    """The drivers a stock machine loads (more join as their issues land)."""
    from drivers.btt import BttDriver
    from drivers.dax import DaxDriver
    from drivers.pfn import PfnDriver
    from drivers.pmem import PmemDriver
    from mm.pagemap import PagemapTable

    reg = DriverRegistry()
    reg.register(PmemDriver())
    pagemaps = PagemapTable()  # the kernel's pfn -> dev_pagemap table, for both personalities
    reg.register(PfnDriver(pagemaps=pagemaps))
    reg.register(DaxDriver(pagemaps=pagemaps))
    reg.register(BttDriver())
    return reg


@attrs.define(slots=True, eq=False)
class Machine:
    config: MachineConfig
    platform: Platform
    trace: Trace
    metrics: Metrics
    drivers: DriverRegistry
    bus: NvdimmBus = attrs.field(init=False)
    booted: bool = attrs.field(init=False, default=False)
    # The running kernel's memory system (processes, page tables, pins); new per boot.
    mm: Any = attrs.field(init=False, default=None)
    # The running kernel's VFS (mounts, open files); new per boot.
    vfs: Any = attrs.field(init=False, default=None)
    boots: int = attrs.field(init=False, default=0)

    # -- construction ---------------------------------------------------------------

    @classmethod
    def create(cls, config: MachineConfig | None = None, *, table: PlatformTable | None = None,
               media: list[DimmMedia] | None = None, drivers: DriverRegistry | None = None,
               boot: bool = True, trace: Trace | None = None) -> Machine:
        config = config or MachineConfig()
        trace = trace or Trace()
        metrics = Metrics()
        table = table or build_table(dimms=config.dimms, dimm_size=config.dimm_size,
                                     label_size=config.label_size, interleave=config.interleave)
        config.check_seams()
        rule = seam("persistence").create(config.persistence)
        if media is None:
            media = [DimmMedia.blank(d.capacity, d.label_size) for d in table.dimms]
        from nvdimm.platform.dram import Dram

        platform = Platform(table, rule, media, Dram(config.dram_size), metrics, trace,
                            config.tracking)
        m = cls(config, platform, trace, metrics, drivers or default_drivers())
        m._new_kernel()
        if boot:
            m.boot()
        return m

    def _new_kernel(self) -> None:
        self.bus = NvdimmBus(self.platform, self.drivers, self.trace, self.metrics,
                             random.Random(self.config.seed * 1_000_003 + self.boots),
                             self.config.advertise_persistence)
        from mm.process import MemorySystem

        pfn = self.drivers.drivers.get("fsdax")
        self.mm = MemorySystem.create(dram=self.platform.dram, cpu=self.platform.cpu,
                                      pagemaps=getattr(pfn, "pagemaps", None),
                                      metrics=self.metrics, trace=self.trace)
        from fs.vfs import Vfs

        self.vfs = Vfs(self.mm, self.metrics, self.trace)

    # -- power ---------------------------------------------------------------------------

    def boot(self) -> None:
        self.boots += 1
        self.trace.emit("machine.boot", boot=self.boots)
        self.bus.probe()
        self.booted = True

    def shutdown(self) -> None:
        """Clean shutdown: filesystems unmount (open files are closed first, as at
        shutdown), drivers flush as they detach, nothing is left in flight."""
        if self.vfs is not None:
            self.vfs.close_all()
            for p in list(self.mm.processes.values()):
                p.exit()  # their mappings hold files open too
            self.vfs.umount_all()
        for ns in self.bus.namespaces():
            self.bus.disable_namespace(ns.dev)
        self.platform.cpu.nvdimm_flush()
        self.booted = False
        self.trace.emit("machine.shutdown")

    def crash(self, policy: CrashPolicy) -> CrashReport:
        """Power failure: the CPU cache decides what survives; the kernel is gone."""
        report = self.platform.cpu.crash(policy)
        self.booted = False
        self._new_kernel()
        return report

    def reboot(self) -> None:
        if self.booted:
            self.shutdown()
        self._new_kernel()
        self.boot()

    def init_labels(self, version: str = "1.1") -> None:
        """``ndctl disable-region all; ndctl init-labels -f all; ndctl enable-region all``:
        fresh, empty label areas on every DIMM that has one."""
        for r in self.bus.regions:
            self.bus.disable_region(r.dev)
        for d in self.bus.dimms:
            if d.has_label_area:
                self.bus.init_labels(d.dev, version=version, force=True)
        for r in self.bus.regions:
            self.bus.enable_region(r.dev)

    # -- devices ------------------------------------------------------------------------

    def block_device(self, name: str) -> Gendisk:
        """A block device by name (``pmem0``) or by its namespace (``namespace0.0``)."""
        ns = self.bus.namespace(name)
        disk = getattr(ns.device, "disk", None)
        if disk is None or not ns.enabled:
            raise NotFound(f"{ns.dev} has no active block device (mode {ns.mode}, "
                           f"{'enabled' if ns.enabled else 'disabled'})")
        assert isinstance(disk, Gendisk)
        return disk

    def dax_provider(self, name: str) -> Any:
        """The DAX provider of a namespace's device under this machine's
        ``direct_access`` and ``btt_remap`` variants (NotSupported when it has none)."""
        from drivers.direct_access import dax_provider

        ns = self.bus.namespace(name)
        if not ns.enabled or ns.device is None:
            raise NotFound(f"{ns.dev} is not enabled")
        return dax_provider(ns.device, self.config.direct_access,
                            btt_remap=self.config.btt_remap)

    def mkfs(self, name: str, **options: Any) -> Any:
        """mkfs.extentfs on a namespace's block device; returns the superblock."""
        from fs.extentfs.mkfs import mkfs

        return mkfs(self.block_device(name), **options)

    def mount(self, name: str, path: str = "/mnt", *, dax: str = "never",
              busy: str = "wait") -> Any:
        """Mount the extentfs on namespace ``name``'s block device at ``path``
        (``dax=always|never|inode``, as ext4/xfs); returns the mounted filesystem."""
        disk = self.block_device(name)
        provider, why = None, None
        if dax != "never":
            try:
                provider = self.dax_provider(name)
            except NvdimmError as e:
                why = e
        return self.vfs.mount(disk, path, dax=dax, provider=provider, provider_error=why,
                              busy=busy)

    # -- directory form ------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for info, d in zip(self.platform.table.dimms, self.platform.dimms, strict=True):
            save_media(directory / f"nmem{info.index}.img", d.media)
        state = {
            "format": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "table": _table_to_json(self.platform.table),
            "poison": [[i, s, n] for i, d in enumerate(self.platform.dimms) for s, n in d.poison],
            # Boots so far: the next boot's random stream (uuids) differs from every
            # earlier one, also across CLI commands that each load and boot the machine.
            "boots": self.boots,
        }
        tmp = directory / (CONFIG_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=1) + "\n")
        tmp.replace(directory / CONFIG_FILE)
        (directory / CACHE_FILE).write_bytes(self.platform.cpu.export_pending())

    @classmethod
    def load(cls, directory: Path, *, drivers: DriverRegistry | None = None,
             trace: Trace | None = None) -> Machine:
        cfg_path = directory / CONFIG_FILE
        try:
            state = json.loads(cfg_path.read_text())
        except FileNotFoundError:
            raise NotFound(f"no machine in {directory} (no {CONFIG_FILE}); create one with "
                           f"'nvdimm --machine {directory} init'") from None
        except json.JSONDecodeError as e:
            raise InvalidArgument(f"{cfg_path} is not valid JSON: {e}") from None
        if state.get("format") != FORMAT_VERSION:
            raise InvalidArgument(f"{cfg_path}: unsupported format {state.get('format')!r}")
        config = MachineConfig.from_dict(state["config"])
        table = _table_from_json(state["table"])
        media = []
        for info in table.dimms:
            img = load_media(directory / f"nmem{info.index}.img", info.image_size)
            media.append(DimmMedia(info.capacity, info.label_size, img))
        for i, s, n in state.get("poison", []):
            media[i].poison.add(s, n)
        m = cls.create(config, table=table, media=media, drivers=drivers, boot=False,
                       trace=trace)
        cache = directory / CACHE_FILE
        if cache.exists():
            m.platform.cpu.import_pending(cache.read_bytes())
        boots = state.get("boots", 0)
        if not isinstance(boots, int) or boots < 0:
            raise InvalidArgument(f"{cfg_path}: 'boots' must be a non-negative integer")
        m.boots = boots
        m._new_kernel()
        m.boot()
        return m

    @classmethod
    def import_image(cls, path: Path, *, label_size: int = 128 * KiB,
                     config: MachineConfig | None = None) -> Machine:
        """Adopt a QEMU nvdimm backing file as a one-DIMM machine (the file is read,
        never modified)."""
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise NotFound(f"image file {path} does not exist") from None
        capacity = size - label_size
        if capacity < 16 * 1024 * 1024:
            raise InvalidArgument(
                f"{path} is {size} bytes: too small for a {label_size}-byte label area plus "
                "the 16 MiB minimum of pmem (is --label-size right?)")
        if capacity % 4096:
            raise InvalidArgument(f"{path}: pmem capacity {capacity} is not a multiple of 4 KiB "
                                  "(truncated image, or a wrong --label-size?)")
        base = config or MachineConfig()
        config = attrs.evolve(base, dimms=1, dimm_size=capacity, label_size=label_size,
                              interleave=False, advertise_persistence=False)
        table = build_table(dimms=1, dimm_size=capacity, label_size=label_size)
        img = load_media(path, size)
        media = [DimmMedia(capacity, label_size, img)]
        return cls.create(config, table=table, media=media)


def _table_to_json(t: PlatformTable) -> dict[str, Any]:
    return {"dimms": [attrs.asdict(d) for d in t.dimms],
            "ranges": [{"index": r.index, "base": r.base, "size": r.size,
                        "granularity": r.granularity,
                        "mappings": [attrs.asdict(m) for m in r.mappings]} for r in t.ranges]}


def _table_from_json(d: dict[str, Any]) -> PlatformTable:
    try:
        dimms = tuple(DimmInfo(**x) for x in d["dimms"])
        ranges = tuple(SpaRange(index=r["index"], base=r["base"], size=r["size"],
                                granularity=r["granularity"],
                                mappings=tuple(Mapping(**m) for m in r["mappings"]))
                       for r in d["ranges"])
    except (KeyError, TypeError) as e:
        raise InvalidArgument(f"machine.json platform table is malformed: {e}") from None
    return PlatformTable(dimms, ranges)
