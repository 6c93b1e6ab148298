"""The sector-mode driver: Linux's ``nd_btt`` personality on the claim model.

* ``validate`` refuses what Linux and ndctl refuse (sector sizes other than 512, 520,
  528, 4096, 4104, 4160, 4224; a namespace too small for a 16 MiB arena; options that
  belong to other modes) and fixes the sector size the label will carry (ndctl's
  default for sector mode is 4096);
* ``format`` lays out fresh arenas as ``btt_meta_init`` does, with a new BTT uuid and
  the namespace's uuid as parent (null for a label-less namespace): version 2.0 at
  offset 0 when the region has v1.2 labels (claim class BTT2), else 1.1 at 4 KiB;
* ``attach`` finds the info block where the claim class says it is, discovers the
  arenas (running recovery on every one) and registers /dev/pmemNs;
* ``detach`` kills the disk.
"""

from __future__ import annotations

import uuid as uuidlib

import attrs

from drivers.btt.btt import (
    ND_MAX_LANES,
    BttDevice,
    NamespaceIO,
    create_arenas,
    discover_arenas,
    read_info,
)
from drivers.btt.format import (
    ARENA_MIN_SIZE,
    SUPPORTED_LBASIZES,
    V1_1,
    V2_0,
    BttVersion,
)
from drivers.pmem import disk_name
from nvdimm.errors import CorruptMetadata, InvalidArgument
from nvdimm.namespace import Namespace

DEFAULT_SECTOR_SIZE = 4096  # ndctl create-namespace -m sector without -l


def btt_version(ns: Namespace) -> BttVersion:
    """Which BTT a namespace holds, from its claim class (``nd_btt_version``): BTT2 (a v1.2
    label claimed for "btt") means 2.0 at offset 0; none or BTT means 1.1 at 4 KiB."""
    if ns.label_claim_class == "btt" and ns.region.label_version == "1.2":
        return V2_0
    return V1_1


@attrs.define(slots=True)
class BttDriver:
    """Binds sector-mode namespaces as BTT disks. ``ncpus`` is the number of simulated
    CPUs, hence of lanes (Linux: one per CPU, at most 256); the goldens used one."""

    mode: str = "sector"
    ncpus: int = 1

    def detect(self, ns: Namespace) -> bool:
        """A valid info block of the right version where the claim class puts it."""
        v = btt_version(ns)
        if ns.size - v.initial_offset < ARENA_MIN_SIZE:
            return False
        info = read_info(NamespaceIO(ns), v.initial_offset, ns.uuid)
        return info is not None and (info.version_major, info.version_minor) == (v.major,
                                                                                  v.minor)

    def validate(self, ns: Namespace, **options: object) -> None:
        extra = {k for k, v in options.items() if v is not None and k != "sector_size"}
        if extra:
            raise InvalidArgument(f"sector mode takes no {', '.join(sorted(extra))} option")
        size = options.get("sector_size")
        lbasize = DEFAULT_SECTOR_SIZE if size is None else size
        if not isinstance(lbasize, int) or lbasize not in SUPPORTED_LBASIZES:
            raise InvalidArgument(f"sector mode supports sector sizes "
                                  f"{', '.join(map(str, SUPPORTED_LBASIZES))}, not {size}")
        v = V2_0 if ns.region.label_version == "1.2" else V1_1
        if ns.size - v.initial_offset < ARENA_MIN_SIZE:
            raise InvalidArgument(f"{ns.dev}: {ns.size} bytes is too small for a BTT (at "
                                  f"least {ARENA_MIN_SIZE + v.initial_offset})")
        ns.lbasize = lbasize  # what the label records, as Linux does

    def format(self, ns: Namespace, **options: object) -> None:
        size = options.get("sector_size")
        lbasize = size if isinstance(size, int) else ns.lbasize
        if ns.region.label_version == "1.2":
            ns.label_claim_class = "btt"  # the label just written says BTT2
        v = btt_version(ns)
        bus = ns.region.bus
        uid = uuidlib.UUID(int=bus.rng.getrandbits(128), version=4)
        geos = create_arenas(NamespaceIO(ns), ns_size=ns.size, lbasize=lbasize, version=v,
                             uuid=uid, parent_uuid=ns.uuid)
        bus.metrics.c["btt.formats"] += 1
        if bus.trace.on:
            bus.trace.emit("btt.format", ns=ns.dev, version=str(v), lbasize=lbasize,
                           arenas=len(geos), uuid=str(uid))

    def attach(self, ns: Namespace) -> BttDevice:
        """Find and recover the BTT (``nd_btt_probe`` + ``nvdimm_namespace_attach_btt``).
        :class:`CorruptMetadata` when there is none or it cannot be recovered."""
        v = btt_version(ns)
        if ns.size - v.initial_offset < ARENA_MIN_SIZE:
            raise CorruptMetadata(f"{ns.dev}: too small for a BTT")
        bus = ns.region.bus
        io = NamespaceIO(ns)
        info = read_info(io, v.initial_offset, ns.uuid)
        if info is None or (info.version_major, info.version_minor) != (v.major, v.minor):
            raise CorruptMetadata(f"{ns.dev}: no valid BTT {v} info block at "
                                  f"{v.initial_offset:#x}")
        arenas = discover_arenas(io, ns_size=ns.size, version=v, parent_uuid=ns.uuid,
                                 metrics=bus.metrics, trace=bus.trace)
        if not arenas:
            raise CorruptMetadata(f"{ns.dev}: no existing BTT arenas")
        dev = BttDevice(ns, disk_name(ns, "s"), io, arenas, info.uuid, v, bus.metrics,
                        bus.trace, nlanes=min(self.ncpus, ND_MAX_LANES))
        recovered = sum(len(a.recovered) for a in arenas)
        bus.metrics.c["btt.attaches"] += 1
        bus.metrics.c["btt.recovered"] += recovered
        if bus.trace.on:
            bus.trace.emit("btt.attach", ns=ns.dev, dev=dev.name, arenas=len(arenas),
                           recovered=recovered, lanes=dev.nlanes)
        return dev

    def detach(self, ns: Namespace, device: object) -> None:
        assert isinstance(device, BttDevice)
        device.disk.mark_dead()
